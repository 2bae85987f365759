//! The transactional outbox: every account change appends an event to the
//! stream of the user's bucket, which other services read (with consumer
//! groups), and to the user's own activity list, inside the MULTI/EXEC of
//! the change itself.

use crate::store::plumbing::transaction::Writes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Event, EventKind, UserId};
use crate::store::layout::{event_fields, Keys};

/// How many events a user's activity list keeps.
pub(in crate::store) const ACTIVITY_LEN: isize = 50;

/// An entry of a user's activity list, as stored: JSON.
#[derive(Serialize, Deserialize)]
pub(in crate::store) struct StoredEvent {
    #[serde(rename = "type")]
    kind: String,
    user_id: String,
    at: DateTime<Utc>,
}

impl StoredEvent {
    pub(in crate::store) fn decode(self) -> Result<Event, String> {
        Ok(Event {
            kind: EventKind::parse(&self.kind)
                .ok_or_else(|| format!("unknown event type {:?}", self.kind))?,
            user_id: UserId::parse(&self.user_id).ok_or("the user id is not a UUID")?,
            at: self.at,
        })
    }
}

/// Adds the commands that record `kind` for `user` to a step's writes.
pub(in crate::store) fn record(
    writes: &mut Writes,
    keys: &Keys,
    kind: EventKind,
    user: UserId,
    at: DateTime<Utc>,
) {
    let user_id = user.to_string();
    writes
        .cmd("XADD")
        .arg(keys.events(user))
        .arg("MAXLEN")
        .arg("~")
        .arg(keys.events_max_len_per_stream())
        .arg("*")
        .arg(event_fields::TYPE)
        .arg(kind.as_str())
        .arg(event_fields::USER_ID)
        .arg(&user_id)
        .arg(event_fields::AT)
        .arg(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .ignore();
    let activity = keys.activity(user);
    if kind == EventKind::Deleted {
        // The user is gone; so is their activity. The stream keeps the record.
        writes.cmd("DEL").arg(activity).ignore();
    } else {
        let entry = StoredEvent {
            kind: kind.as_str().to_owned(),
            user_id,
            at,
        };
        let entry = serde_json::to_string(&entry).unwrap_or_default();
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
