//! Request guards for bearer sessions.

use rocket::http::Status;
use rocket::outcome::try_outcome;
use rocket::request::{FromRequest, Outcome, Request};

use super::problem::ApiError;
use crate::accounts::{AccountError, Accounts, Client, Proof};
use crate::domain::{SessionToken, UserId};
use crate::store::SessionRecord;

/// A caller with a live session (`Authorization: Bearer <token>`). Without
/// one the request fails with 401 and `WWW-Authenticate: Bearer`.
pub struct Authenticated(pub SessionRecord);

/// A caller who may have a session: none is fine, a bad one is a 401.
pub struct MaybeAuthenticated(pub Option<SessionRecord>);

impl Authenticated {
    /// The caller's session, if it belongs to `user`; another user's → 403.
    pub fn acting_on(self, user: UserId) -> Result<SessionRecord, ApiError> {
        if self.0.user_id == user {
            Ok(self.0)
        } else {
            Err(ApiError::Forbidden(
                "this session belongs to another user".into(),
            ))
        }
    }
}

impl MaybeAuthenticated {
    /// Proof for acting on `user` by this session; 403 when it is another
    /// user's. `None` when there is no session.
    pub fn proof_for(self, user: UserId) -> Result<Option<Proof>, ApiError> {
        match self.0 {
            Some(session) => Authenticated(session)
                .acting_on(user)
                .map(|_| Some(Proof::Session)),
            None => Ok(None),
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

async fn session_for(
    request: &Request<'_>,
    token: SessionToken,
) -> Outcome<SessionRecord, ApiError> {
    let accounts = try_outcome!(request
        .guard::<Accounts<'_>>()
        .await
        .map_error(|(status, error)| (status, ApiError::Internal(anyhow::anyhow!(error)))));
    match accounts.session(&token).await {
        Ok(session) => Outcome::Success(session),
        Err(AccountError::Unauthenticated) => {
            Outcome::Error((Status::Unauthorized, ApiError::Unauthenticated))
        }
        Err(error) => {
            let error = ApiError::from(error);
            let status = if matches!(error, ApiError::Unavailable { .. }) {
                Status::ServiceUnavailable
            } else {
                Status::InternalServerError
            };
            Outcome::Error((status, error))
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Authenticated {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match bearer_token(request) {
            Some(Some(token)) => session_for(request, token).await.map(Authenticated),
            _ => Outcome::Error((Status::Unauthorized, ApiError::Unauthenticated)),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MaybeAuthenticated {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match bearer_token(request) {
            None => Outcome::Success(MaybeAuthenticated(None)),
            Some(None) => Outcome::Error((Status::Unauthorized, ApiError::Unauthenticated)),
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
