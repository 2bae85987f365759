//! Request guards: the service, bearer sessions and the client's address.
//! Routes take the session guards as `Result<_, ApiError>` and pass a
//! failure on with `?`, so it reaches the client as the problem it is.

use rocket::outcome::try_outcome;
use rocket::request::{FromRequest, Outcome, Request};

use super::problem::ApiError;
use crate::accounts::{Accounts, Client};
use crate::domain::{Session, SessionToken, UserId};

/// A caller with a live session (`Authorization: Bearer <token>`). Without
/// one the request fails with 401 and `WWW-Authenticate: Bearer`.
pub struct Authenticated(pub Session);

/// A caller who may have a session: none is fine, a bad one is a 401.
pub struct MaybeAuthenticated(pub Option<Session>);

impl Authenticated {
    /// The caller's session, if it belongs to `user`; another user's → 403.
    pub fn acting_on(self, user: UserId) -> Result<Session, ApiError> {
        if self.0.user_id == user {
            Ok(self.0)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl MaybeAuthenticated {
    /// Whether the caller acts on `user` by a session of that user; another
    /// user's session → 403.
    pub fn acting_on(&self, user: UserId) -> Result<bool, ApiError> {
        match &self.0 {
            Some(session) if session.user_id != user => Err(ApiError::Forbidden),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }
}

fn fail<T>(error: ApiError) -> Outcome<T, ApiError> {
    Outcome::Error((error.status(), error))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for &'r Accounts {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match request.rocket().state::<Accounts>() {
            Some(accounts) => Outcome::Success(accounts),
            None => fail(ApiError::Internal(anyhow::anyhow!(
                "the accounts service is not managed"
            ))),
        }
    }
}

/// `None` without an Authorization header; `Some(None)` when it holds no
/// well-formed bearer token.
fn bearer_token(request: &Request<'_>) -> Option<Option<SessionToken>> {
    let header = request.headers().get_one("Authorization")?;
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, token)| SessionToken::parse(token.trim()));
    Some(token)
}

async fn session_for(request: &Request<'_>, token: SessionToken) -> Outcome<Session, ApiError> {
    let accounts = try_outcome!(request.guard::<&Accounts>().await);
    match accounts.session(&token).await {
        Ok(session) => Outcome::Success(session),
        Err(error) => fail(error.into()),
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Authenticated {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match bearer_token(request) {
            Some(Some(token)) => session_for(request, token).await.map(Authenticated),
            _ => fail(ApiError::Unauthenticated),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MaybeAuthenticated {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match bearer_token(request) {
            None => Outcome::Success(MaybeAuthenticated(None)),
            Some(None) => fail(ApiError::Unauthenticated),
            Some(Some(token)) => session_for(request, token)
                .await
                .map(|session| MaybeAuthenticated(Some(session))),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Client {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Client {
            ip: request
                .client_ip()
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            user_agent: request
                .headers()
                .get_one("User-Agent")
                .unwrap_or_default()
                .to_owned(),
        })
    }
}
