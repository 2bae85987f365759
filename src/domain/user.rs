use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::{UserEmail, UserName};

/// A user's id: a random (v4) UUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct UserId(Uuid);

impl UserId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl From<Uuid> for UserId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A user as clients see it: no password, no hash.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: UserId,
    pub name: UserName,
    pub email: UserEmail,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// An admin has disabled the account: no login, no session.
    pub disabled: bool,
    /// The user confirmed a code sent to this email.
    pub email_verified: bool,
}

/// The current time at the precision the store keeps (milliseconds), so a
/// user reads back exactly as it was written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}
