//! Validated types: once a value has one of these types, it is valid.

mod admin_key;
mod client_address;
mod code;
mod email;
mod event;
mod mail;
mod name;
mod password;
mod session;
mod user;

pub use admin_key::{AdminKey, AdminKeyDigest, KeyName, KeyScope};
pub use client_address::ClientAddress;
pub use code::{CodePurpose, CodeSealer, CodeSecret, OneTimeCode, RevertCode, SealedCode};
pub use email::UserEmail;
pub use event::{Event, EventKind};
pub use mail::{MailContent, MailId, MailKind, QueuedMail};
pub use name::UserName;
pub use password::{Password, PasswordHash};
pub use session::{Session, SessionId, SessionToken};
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
