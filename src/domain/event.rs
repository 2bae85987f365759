use chrono::{DateTime, Utc};

use super::UserId;

/// What happened to an account. It holds no password, hash or token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub user_id: UserId,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    ProfileUpdated,
    PasswordChanged,
    Deleted,
    Disabled,
    Enabled,
}

impl EventKind {
    const ALL: [Self; 6] = [
        Self::Created,
        Self::ProfileUpdated,
        Self::PasswordChanged,
        Self::Deleted,
        Self::Disabled,
        Self::Enabled,
    ];

    /// The name other services and clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "user.created",
            Self::ProfileUpdated => "user.updated",
            Self::PasswordChanged => "user.password_changed",
            Self::Deleted => "user.deleted",
            Self::Disabled => "user.disabled",
            Self::Enabled => "user.enabled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("user.renamed"), None);
    }
}
