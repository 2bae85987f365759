//! The transactional outbox: every account change appends an event to a
//! stream that other services read (with consumer groups), and to the user's
//! own activity list, inside the MULTI/EXEC of the change itself.

use chrono::{DateTime, Utc};
use redis::aio::MultiplexedConnection;
use redis::Pipeline;
use serde::{Deserialize, Serialize};

use super::keys::Keys;
use super::{RedisConn, StoreError};
use crate::domain::UserId;

/// How many events a user's activity list keeps.
const ACTIVITY_LEN: isize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "user.created")]
    Created,
    #[serde(rename = "user.updated")]
    ProfileUpdated,
    #[serde(rename = "user.password_changed")]
    PasswordChanged,
    #[serde(rename = "user.deleted")]
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "user.created",
            Self::ProfileUpdated => "user.updated",
            Self::PasswordChanged => "user.password_changed",
            Self::Deleted => "user.deleted",
        }
    }
}

/// An event as stored in a user's activity list and in the stream. It holds
/// no password, hash or token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub user_id: String,
    pub at: DateTime<Utc>,
}

/// Adds the commands that record `kind` for `user` to a MULTI/EXEC pipeline.
pub(super) fn record(
    writes: &mut Pipeline,
    keys: &Keys,
    kind: EventKind,
    user: UserId,
    at: DateTime<Utc>,
) {
    let event = Event {
        kind,
        user_id: user.to_string(),
        at,
    };
    writes
        .cmd("XADD")
        .arg(keys.events())
        .arg("MAXLEN")
        .arg("~")
        .arg(keys.events_max_len())
        .arg("*")
        .arg("type")
        .arg(kind.as_str())
        .arg("user_id")
        .arg(&event.user_id)
        .arg("at")
        .arg(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .ignore();
    let activity = keys.activity(user);
    if kind == EventKind::Deleted {
        // The user is gone; so is their activity. The stream keeps the record.
        writes.cmd("DEL").arg(activity).ignore();
    } else {
        let entry = serde_json::to_string(&event).unwrap_or_default();
        writes
            .cmd("LPUSH")
            .arg(&activity)
            .arg(entry)
            .ignore()
            .cmd("LTRIM")
            .arg(&activity)
            .arg(0)
            .arg(ACTIVITY_LEN - 1)
            .ignore();
    }
}

impl RedisConn {
    /// The user's last events, newest first.
    pub async fn activity(&self, user: UserId) -> Result<Vec<Event>, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move { activity(&mut conn, keys, user).await })
            .await
    }
}

async fn activity(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    user: UserId,
) -> Result<Vec<Event>, StoreError> {
    let entries: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.activity(user))
        .arg(0)
        .arg(ACTIVITY_LEN - 1)
        .query_async(conn)
        .await?;
    entries
        .iter()
        .map(|entry| {
            serde_json::from_str(entry).map_err(|error| StoreError::Corrupt {
                key: keys.activity(user),
                reason: error.to_string(),
            })
        })
        .collect()
}
