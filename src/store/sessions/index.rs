//! The per-user session index (`{prefix}sessions:{id}`), as the writes of
//! users and sessions both use it.
//!
//! The index is a sorted set of session ids, each scored by when its session
//! ends if it is not used again (Unix milliseconds: the idle end, capped by
//! the absolute end). Every write to it drops the ids whose score has passed
//! and sets the key to expire at its highest score, so the index goes with
//! the user's last session.
//!
//! Versions before the index kept a plain set, `{prefix}sessions_of:{id}`,
//! which no write adds to any more. Ending all of a user's sessions still
//! reads and deletes it, a use of a session listed there moves it into the
//! index, and the doctor folds what is left into the index.

use crate::domain::{SessionId, UserId};
use crate::store::layout::Keys;
use crate::store::plumbing::transaction::{Tx, Writes};
use crate::store::StoreError;

/// A session id as the index lists it, with the end of its session.
#[derive(Clone, Debug)]
pub(in crate::store) struct Listed {
    pub id: SessionId,
    /// Unix milliseconds.
    pub ends_at: i64,
}

/// What both of a user's session lists hold, as a step read them.
pub(in crate::store) struct UserSessions {
    /// In the index, in order of their ends, ended ones included.
    pub indexed: Vec<Listed>,
    /// In the legacy set only.
    pub legacy: Vec<SessionId>,
}

impl UserSessions {
    /// Every id either list holds, once.
    pub fn ids(&self) -> Vec<SessionId> {
        self.indexed
            .iter()
            .map(|listed| listed.id.clone())
            .chain(self.legacy.iter().cloned())
            .collect()
    }
}

/// The command that reads the whole index with its scores, lowest first.
pub(in crate::store) fn index_entries(index: &str) -> redis::Cmd {
    redis::cmd("ZRANGE")
        .arg(index)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .take()
}

/// The reply to [`index_entries`]; members that are not session ids are left out.
pub(in crate::store) fn decode_index(reply: Vec<(String, f64)>) -> Vec<Listed> {
    reply
        .into_iter()
        .filter_map(|(id, score)| {
            Some(Listed {
                id: SessionId::parse(&id)?,
                // Every score is a whole number of milliseconds.
                ends_at: score as i64,
            })
        })
        .collect()
}

/// Reads the user's index and legacy set, so that a login, a renewal or a
/// revocation meanwhile starts over the step that acts on them. One round
/// trip.
pub(in crate::store) fn read_sessions(
    tx: &mut Tx,
    keys: &Keys,
    user: UserId,
) -> Result<UserSessions, StoreError> {
    let index = keys.session_index(user);
    let legacy = keys.legacy_session_set(user);
    let (indexed, legacy_ids): (Vec<(String, f64)>, Vec<String>) = tx.read_all(&[
        index_entries(&index),
        redis::cmd("SMEMBERS").arg(&legacy).take(),
    ])?;
    let indexed = decode_index(indexed);
    let legacy = legacy_ids
        .iter()
        .filter_map(|id| SessionId::parse(id))
        .filter(|id| !indexed.iter().any(|listed| &listed.id == id))
        .collect();
    Ok(UserSessions { indexed, legacy })
}

/// Reads every id the user's session lists hold, so a login that adds a
/// session meanwhile starts over the step that revokes them all.
pub(in crate::store) fn session_ids(
    tx: &mut Tx,
    keys: &Keys,
    user: UserId,
) -> Result<Vec<SessionId>, StoreError> {
    Ok(read_sessions(tx, keys, user)?.ids())
}

/// Adds to a step's writes the commands that end every session of `user`
/// in `ids` (read with [`session_ids`]), the index and the legacy set.
pub(in crate::store) fn revoke_all(
    writes: &mut Writes,
    keys: &Keys,
    user: UserId,
    ids: &[SessionId],
) {
    for id in ids {
        writes.cmd("DEL").arg(keys.session(id)).ignore();
    }
    writes
        .cmd("DEL")
        .arg(keys.session_index(user))
        .arg(keys.legacy_session_set(user))
        .ignore();
}

/// Adds to a step's writes the commands that bring the index up to date:
/// drop the ids whose end is at or before `now`, `remove` some, `add` some,
/// and expire the key with the last session. `ends_last` is the highest end
/// among the ids that stay, as the caller read and wrote them.
pub(in crate::store) fn update(
    writes: &mut Writes,
    index: &str,
    now: i64,
    remove: &[SessionId],
    add: &[Listed],
    ends_last: Option<i64>,
) {
    writes
        .cmd("ZREMRANGEBYSCORE")
        .arg(index)
        .arg("-inf")
        .arg(now)
        .ignore();
    if !remove.is_empty() {
        writes
            .cmd("ZREM")
            .arg(index)
            .arg(remove.iter().map(SessionId::as_str).collect::<Vec<_>>())
            .ignore();
    }
    for listed in add {
        writes
            .cmd("ZADD")
            .arg(index)
            .arg("GT")
            .arg(listed.ends_at)
            .arg(listed.id.as_str())
            .ignore();
    }
    if let Some(ends_last) = ends_last.filter(|end| *end > now) {
        writes.cmd("PEXPIREAT").arg(index).arg(ends_last).ignore();
    }
}

/// A Lua function for scripts that write to an index: `tidy_index(index,
/// now)` drops the ids whose end is at or before `now` and expires the key
/// with its last session. Scripts start with it.
pub(in crate::store) const TIDY_INDEX_LUA: &str = r"
local function tidy_index(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if #last == 2 then
    redis.call('PEXPIREAT', index, last[2])
  end
end
";
