//! Request guards: the service, the caller's credential and the client's
//! address. A guard that fails hands the route an `ApiError`; routes take
//! such guards as `Result<_, ApiError>` and pass a failure on with `?`, so
//! it reaches the client as the problem it is.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use rocket::outcome::try_outcome;
use rocket::request::{FromRequest, Outcome, Request};

use super::problem::ApiError;
use crate::accounts::{Absence, Accounts, Caller, Client};
use crate::domain::ClientAddress;

/// The networks whose forwarding headers name the client
/// (`TRUSTED_PROXIES`), managed by Rocket.
pub struct TrustedProxies(pub Vec<IpNet>);

fn fail<T>(error: ApiError) -> Outcome<T, ApiError> {
    Outcome::Error((error.status(), error))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for &'r Accounts {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match request.rocket().state::<Arc<Accounts>>() {
            Some(accounts) => Outcome::Success(accounts),
            None => fail(ApiError::Internal(anyhow::anyhow!(
                "the accounts service is not managed"
            ))),
        }
    }
}

/// The bearer credential of `Authorization: Bearer …`; else why there is
/// none: no header, or one of another form.
fn bearer<'r>(request: &'r Request<'_>) -> Result<&'r str, Absence> {
    let header = request
        .headers()
        .get_one("Authorization")
        .ok_or(Absence::NoCredential)?;
    match header.split_once(' ') {
        Some((scheme, credential))
            if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() =>
        {
            Ok(credential.trim())
        }
        _ => Err(Absence::NotBearer),
    }
}

/// The bearer credential as sent, unchecked: for a route that checks it
/// together with what it reads.
pub struct Bearer<'r>(pub Result<&'r str, Absence>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Bearer<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Bearer(bearer(request)))
    }
}

/// The caller, by the credential in `Authorization`: an admin key or a
/// session token. None, or one that names nothing, is an anonymous caller;
/// the route decides whether that is enough (401 when it is not).
#[rocket::async_trait]
impl<'r> FromRequest<'r> for Caller {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let bearer = match bearer(request) {
            Ok(bearer) => bearer,
            Err(absence) => return Outcome::Success(Caller::Anonymous(absence)),
        };
        let accounts = try_outcome!(request.guard::<&Accounts>().await);
        match accounts.caller(bearer).await {
            Ok(caller) => Outcome::Success(caller),
            Err(error) => fail(error.into()),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Client {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let headers = request.headers();
        let trusted = request
            .rocket()
            .state::<TrustedProxies>()
            .map_or(&[][..], |proxies| &proxies.0[..]);
        // Rocket's own `ip_header` is off: the peer is the TCP peer.
        let peer = request
            .remote()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |remote| remote.ip());
        // Several X-Forwarded-For headers read as one list, in their order.
        let forwarded: Vec<&str> = headers.get("X-Forwarded-For").collect();
        let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
        Outcome::Success(Client {
            address: ClientAddress::resolve(
                peer,
                forwarded.as_deref(),
                headers.get_one("X-Real-IP"),
                trusted,
            ),
            user_agent: headers.get_one("User-Agent").unwrap_or_default().to_owned(),
        })
    }
}
