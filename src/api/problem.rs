//! RFC 9457 problem details: the one place where errors become HTTP responses.

use std::io::Cursor;
use std::time::Duration;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::Serialize;

use crate::accounts::{Absence, AccountError};
use crate::domain::FieldError;
use crate::logging::log_problem;

/// `value` as JSON and a newline.
pub(super) fn to_json_line<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    let mut body = serde_json::to_vec(value).map_err(|_| Status::InternalServerError)?;
    body.push(b'\n');
    Ok(body)
}

/// How long clients should wait before retrying after a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// Everything a request can fail with, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// `401`; `invalid_token`: the credential sent names nothing, which
    /// `WWW-Authenticate` says (RFC 6750).
    #[error("{detail}")]
    Unauthenticated {
        detail: String,
        problem_type: &'static str,
        invalid_token: bool,
    },
    #[error("{detail}")]
    Forbidden {
        detail: String,
        problem_type: &'static str,
    },
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        problem_type: &'static str,
        retry_after_secs: u64,
    },
    #[error("the code is invalid or has expired")]
    InvalidCode,
    /// A path routes take with other methods, `allow` (for the header).
    #[error("{detail}")]
    MethodNotAllowed { detail: String, allow: String },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{detail}")]
    Unavailable { detail: String, cause: String },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// A status Rocket answered with outside any route, by its reason.
    #[error("{}", .0.reason_lossy())]
    Unrouted(Status),
}

impl ApiError {
    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        Self::Validation {
            detail: "the request has invalid fields".into(),
            errors,
        }
    }

    fn too_many(detail: String, problem_type: &'static str, retry_after: Duration) -> Self {
        Self::TooManyRequests {
            detail,
            problem_type,
            // Round up: retrying a moment too early would fail again.
            retry_after_secs: retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
        }
    }

    fn forbidden(detail: String, problem_type: &'static str) -> Self {
        Self::Forbidden {
            detail,
            problem_type,
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Self::Validation { .. } => Status::UnprocessableEntity,
            Self::BadRequest(_) => Status::BadRequest,
            Self::NotFound(_) => Status::NotFound,
            Self::Conflict(_) => Status::Conflict,
            Self::Unauthenticated { .. } => Status::Unauthorized,
            Self::Forbidden { .. } => Status::Forbidden,
            Self::TooManyRequests { .. } => Status::TooManyRequests,
            Self::InvalidCode => Status::UnprocessableEntity,
            Self::MethodNotAllowed { .. } => Status::MethodNotAllowed,
            Self::UnsupportedMediaType(_) => Status::UnsupportedMediaType,
            Self::PayloadTooLarge(_) => Status::PayloadTooLarge,
            Self::Unavailable { .. } => Status::ServiceUnavailable,
            Self::Internal(_) => Status::InternalServerError,
            Self::Unrouted(status) => *status,
        }
    }

    fn problem_type(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "/problems/validation",
            Self::Conflict(_) => "/problems/email-in-use",
            Self::Unauthenticated { problem_type, .. } => problem_type,
            Self::Forbidden { problem_type, .. } => problem_type,
            Self::TooManyRequests { problem_type, .. } => problem_type,
            Self::InvalidCode => "/problems/invalid-code",
            Self::Unavailable { .. } => "/problems/unavailable",
            _ => "about:blank",
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        let detail = error.to_string();
        match error {
            AccountError::NotFound(_)
            | AccountError::EmailNotFound(_)
            | AccountError::SessionNotFound(_) => Self::NotFound(detail),
            AccountError::Unauthenticated(absence) => Self::Unauthenticated {
                detail,
                problem_type: match absence {
                    Absence::UnknownCredential => "/problems/invalid-token",
                    _ => "/problems/unauthenticated",
                },
                invalid_token: absence == Absence::UnknownCredential,
            },
            AccountError::WrongLogin | AccountError::WrongPassword => Self::Unauthenticated {
                detail,
                problem_type: "/problems/invalid-credentials",
                invalid_token: false,
            },
            AccountError::SignupClosed => Self::forbidden(detail, "/problems/signup-closed"),
            AccountError::Forbidden(_) => Self::forbidden(detail, "/problems/forbidden"),
            AccountError::ReauthenticationRequired => {
                Self::forbidden(detail, "/problems/reauthentication-required")
            }
            AccountError::AccountDisabled => Self::forbidden(detail, "/problems/account-disabled"),
            AccountError::EmailNotVerified => {
                Self::forbidden(detail, "/problems/email-not-verified")
            }
            AccountError::InvalidCode => Self::InvalidCode,
            AccountError::TooManyCodeRequests { retry_after } => {
                Self::too_many(detail, "/problems/too-many-code-requests", retry_after)
            }
            AccountError::TooManyWrongCodes { retry_after } => {
                Self::too_many(detail, "/problems/too-many-wrong-codes", retry_after)
            }
            AccountError::TooManyEmailChanges { retry_after } => {
                Self::too_many(detail, "/problems/too-many-email-changes", retry_after)
            }
            AccountError::EmailInUse | AccountError::KeyNameTaken(_) => Self::Conflict(detail),
            AccountError::KeyNotFound(_) => Self::NotFound(detail),
            AccountError::InvalidField { field, reason } => {
                Self::invalid_fields(vec![FieldError::new(field, reason)])
            }
            AccountError::TooManyAttempts { retry_after } => {
                Self::too_many(detail, "/problems/too-many-logins", retry_after)
            }
            AccountError::PasswordKeptChanging => Self::Unavailable {
                cause: detail.clone(),
                detail,
            },
            AccountError::StoreUnavailable(cause) => Self::Unavailable {
                detail,
                cause: cause.to_string(),
            },
            AccountError::HashingBusy(cause) => Self::Unavailable {
                detail,
                cause: cause.to_string(),
            },
            AccountError::Internal(cause) => Self::Internal(cause),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Sent as `Retry-After`, in seconds.
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// Sent as `Allow`: the methods the path takes.
    #[serde(skip)]
    pub allow: Option<String>,
    /// `WWW-Authenticate` of a `401`: `Bearer`, with `error="invalid_token"`
    /// when the credential sent names nothing.
    #[serde(skip)]
    pub invalid_token: bool,
}

impl Problem {
    pub fn new(status: Status, detail: impl Into<String>) -> Self {
        Self {
            problem_type: "about:blank",
            title: status.reason_lossy(),
            status: status.code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: (status == Status::ServiceUnavailable).then_some(RETRY_AFTER_SECS),
            allow: None,
            invalid_token: false,
        }
    }
}

impl<'r> Responder<'r, 'static> for Problem {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let status = Status::from_code(self.status).unwrap_or(Status::InternalServerError);
        let body = to_json_line(&self)?;
        let mut response = Response::build();
        response
            .status(status)
            .header(ContentType::new("application", "problem+json"))
            .sized_body(body.len(), Cursor::new(body));
        if let Some(seconds) = self.retry_after {
            response.header(Header::new("Retry-After", seconds.to_string()));
        }
        if let Some(allow) = self.allow {
            response.header(Header::new("Allow", allow));
        }
        if status == Status::Unauthorized {
            let challenge = if self.invalid_token {
                r#"Bearer error="invalid_token""#
            } else {
                "Bearer"
            };
            response.header(Header::new("WWW-Authenticate", challenge));
        }
        Ok(response.finalize())
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        // The cause goes to the log, never to the client.
        match &self {
            Self::Internal(cause) => log_problem(request, "error", &format!("{cause:#}")),
            Self::Unavailable { cause, .. } => log_problem(request, "warn", cause),
            _ => {}
        }
        let mut problem = Problem::new(status, self.to_string());
        problem.problem_type = self.problem_type();
        match self {
            Self::Validation { errors, .. } => problem.errors = errors,
            Self::TooManyRequests {
                retry_after_secs, ..
            } => {
                problem.retry_after = Some(retry_after_secs.max(1));
            }
            Self::MethodNotAllowed { allow, .. } => problem.allow = Some(allow),
            Self::Unauthenticated { invalid_token, .. } => problem.invalid_token = invalid_token,
            _ => {}
        }
        problem.respond_to(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::HashingError;

    #[test]
    fn a_full_hashing_queue_is_a_503_with_retry_after_and_a_failed_thread_a_500() {
        let refused = ApiError::from(AccountError::from(HashingError::QueueFull(8)));
        assert_eq!(refused.status(), Status::ServiceUnavailable);
        assert_eq!(refused.problem_type(), "/problems/unavailable");
        assert!(Problem::new(refused.status(), refused.to_string())
            .retry_after
            .is_some());
        assert_eq!(
            ApiError::from(AccountError::from(HashingError::Closed)).status(),
            Status::InternalServerError
        );
    }
}
