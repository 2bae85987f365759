//! Optimistic transactions: WATCH, read and decide, then MULTI/EXEC, retried
//! a bounded number of times when another client's write got in between.

use std::time::Duration;

use redis::{Connection, Pipeline, Value};

use crate::store::StoreError;

/// A WATCH/MULTI/EXEC that another client's write aborted is retried this
/// many times before the request gives up with 503.
const MAX_TRANSACTION_ATTEMPTS: u32 = 32;

/// What a transaction attempt decided after reading under WATCH.
pub(in crate::store) enum Plan<T> {
    /// Run these commands in MULTI/EXEC; on success, answer `T`.
    Write(Pipeline, T),
    /// Nothing to write: answer `T` at once.
    Answer(T),
}

/// Runs optimistic transactions: WATCH `watched`, let `plan` read and decide,
/// then EXEC its writes. An EXEC aborted by a concurrent write to a watched
/// key starts over, at most [`MAX_TRANSACTION_ATTEMPTS`] times.
pub(in crate::store) fn transact<T>(
    conn: &mut Connection,
    watched: &str,
    plan: impl FnMut(&mut Connection) -> Result<Plan<T>, StoreError>,
) -> Result<T, StoreError> {
    transact_with_replies(conn, watched, plan).map(|(answer, _)| answer)
}

/// Like [`transact`], with the replies of the written commands that were
/// not ignored (none when nothing was written).
pub(in crate::store) fn transact_with_replies<T>(
    conn: &mut Connection,
    watched: &str,
    mut plan: impl FnMut(&mut Connection) -> Result<Plan<T>, StoreError>,
) -> Result<(T, Vec<Value>), StoreError> {
    for attempt in 0..MAX_TRANSACTION_ATTEMPTS {
        watch(conn, watched)?;
        match plan(conn) {
            Ok(Plan::Write(mut writes, answer)) => {
                let committed: Option<Vec<Value>> = writes.atomic().query(conn)?;
                if let Some(replies) = committed {
                    return Ok((answer, replies));
                }
            }
            Ok(Plan::Answer(answer)) => {
                redis::cmd("UNWATCH").exec(conn)?;
                return Ok((answer, Vec::new()));
            }
            Err(error) => {
                // The request fails anyway; a failed UNWATCH adds nothing to it.
                let _ = redis::cmd("UNWATCH").exec(conn);
                return Err(error);
            }
        }
        // Contention: let the winner finish before reading again.
        std::thread::sleep(Duration::from_micros(50 << attempt.min(6)));
    }
    Err(StoreError::Contention(MAX_TRANSACTION_ATTEMPTS))
}

/// Adds `key` to the keys the current transaction watches.
pub(in crate::store) fn watch(conn: &mut Connection, key: &str) -> Result<(), StoreError> {
    Ok(redis::cmd("WATCH").arg(key).exec(conn)?)
}
