//! Validated types: once a value has one of these types, it is valid.

mod email;
mod name;
mod password;
mod session;
mod user;

pub use email::UserEmail;
pub use name::UserName;
pub use password::{Password, PasswordHash};
pub use session::{SessionId, SessionToken};
pub use user::{now, User, UserId};

use serde::Serialize;

/// One reason one field of a request was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses a required field, collecting its error instead of stopping at the
/// first one, so a client learns about every bad field at once.
pub fn parse_field<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let Some(value) = value else {
        errors.push(FieldError::new(field, "is required"));
        return None;
    };
    parse(value)
        .map_err(|message| errors.push(FieldError::new(field, message)))
        .ok()
}
