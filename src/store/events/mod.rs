//! A user's activity: the last events the outbox recorded for them.

pub(super) mod outbox;

use crate::domain::{Event, UserId};
use crate::store::events::outbox::{StoredEvent, ACTIVITY_LEN};
use crate::store::layout::Keys;
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::link::SharedLink;
use crate::store::StoreError;

impl RedisConn {
    /// The user's last events, newest first.
    pub async fn activity(&self, user: UserId) -> Result<Vec<Event>, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move { activity(&mut conn, keys, user).await })
            .await
    }
}

async fn activity(
    conn: &mut SharedLink,
    keys: &Keys,
    user: UserId,
) -> Result<Vec<Event>, StoreError> {
    let key = keys.activity(user);
    let entries: Vec<String> = redis::cmd("LRANGE")
        .arg(&key)
        .arg(0)
        .arg(ACTIVITY_LEN - 1)
        .query_async(conn)
        .await?;
    entries
        .iter()
        .map(|entry| {
            serde_json::from_str::<StoredEvent>(entry)
                .map_err(|error| error.to_string())
                .and_then(StoredEvent::decode)
                .map_err(|reason| StoreError::Corrupt {
                    key: key.clone(),
                    reason,
                })
        })
        .collect()
}
