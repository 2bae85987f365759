//! The per-user session set (`{prefix}sessions_of:{id}`), as the writes of
//! users and sessions both use it: read under WATCH, then end them all.

use redis::{Connection, Pipeline};

use super::layout::Keys;
use super::transaction::watch;
use super::StoreError;
use crate::domain::{SessionId, UserId};

/// WATCHes the user's session set and reads it, so a login that adds a
/// session meanwhile aborts the transaction that revokes them all.
pub(super) fn watched_session_ids(
    conn: &mut Connection,
    keys: &Keys,
    user: UserId,
) -> Result<Vec<SessionId>, StoreError> {
    let set = keys.sessions_of(user);
    watch(conn, &set)?;
    let ids: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query(conn)?;
    Ok(ids.iter().filter_map(|id| SessionId::parse(id)).collect())
}

/// Adds to a MULTI/EXEC the commands that end every session of `user` in
/// `ids` (read with [`watched_session_ids`]) and the set itself.
pub(super) fn revoke_all(writes: &mut Pipeline, keys: &Keys, user: UserId, ids: &[SessionId]) {
    for id in ids {
        writes.cmd("DEL").arg(keys.session(id)).ignore();
    }
    writes.cmd("DEL").arg(keys.sessions_of(user)).ignore();
}
