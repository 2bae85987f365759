//! `user-accounts migrate`: rewrites the keys of the first layout (no hash
//! tags, one email index) into this release's ([`crate::store::layout`]).
//! Each key moves by one atomic step of its own, so a run that stops
//! half-way leaves every key whole, under its old name or its new one, and
//! the next run goes on from there. While it runs, the marker says so and
//! every instance of this release refuses to serve; the earlier release must
//! be stopped first, or its writes after the move would be lost to view.

use crate::config::RedisSettings;
use std::collections::HashMap;

use crate::store::layout::{
    mail_fields, parse_index_member, Bucket, Keys, LAYOUT_MIGRATING, LAYOUT_VERSION,
};
use crate::store::plumbing::layout_check::mismatch;
use crate::store::plumbing::link::Link;
use crate::store::{Store, StoreError};

/// Keys asked for per SCAN, and index members moved per step.
const BATCH: usize = 1000;

/// Renames a key unless it is gone (expired since the SCAN) or its new
/// name is taken: 1 moved, 0 taken, -1 gone.
const MOVE_KEY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('RENAMENX', KEYS[1], KEYS[2])
";

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// Keys moved to their new names.
    pub moved_keys: u64,
    /// Email index entries moved into their emails' buckets.
    pub moved_entries: u64,
    /// Index entries that named no user (not an email and an id), dropped:
    /// the doctor would have removed them too.
    pub dropped_entries: u64,
    /// Mail messages (queued, waiting for a retry, or dead) moved from the
    /// one queue of the first layout into their recipients' buckets.
    pub moved_mail: u64,
    /// Keys left under their old names because their new names were
    /// taken: the marker stays at "migrating" until a person looks.
    pub conflicts: Vec<String>,
}

impl Migration {
    /// Counts the move of `old`: 1 moved, 0 taken, -1 gone.
    fn count(&mut self, old: String, outcome: i64) {
        match outcome {
            1 => self.moved_keys += 1,
            0 => self.conflicts.push(old),
            _ => {}
        }
    }

    /// Whether every key is in this release's layout now.
    pub fn finished(&self) -> bool {
        self.conflicts.is_empty()
    }
}

/// Moves every key of the first layout, then marks the layout as this
/// release's. Running it again finds nothing to move.
pub fn migrate(settings: &RedisSettings) -> Result<Migration, StoreError> {
    let (mut conn, keys) = Store::migration_connection(settings)?;
    let marker: Option<String> = redis::cmd("GET")
        .arg(keys.layout_marker())
        .query(&mut conn)?;
    if marker
        .as_deref()
        .is_some_and(|marker| marker != LAYOUT_VERSION && marker != LAYOUT_MIGRATING)
    {
        return Err(StoreError::Redis(mismatch(
            "Redis holds data in a layout a later release wrote: this release cannot migrate it",
        )));
    }
    if let Link::Cluster(_) = conn {
        return nothing_to_move_on_a_cluster(&mut conn, &keys);
    }
    redis::cmd("SET")
        .arg(keys.layout_marker())
        .arg(LAYOUT_MIGRATING)
        .exec(&mut conn)?;
    let mut migration = Migration::default();
    move_keys(&mut conn, &keys, &mut migration)?;
    move_index_entries(&mut conn, &keys, &mut migration)?;
    move_mail(&mut conn, &keys, &mut migration)?;
    if migration.finished() {
        redis::cmd("SET")
            .arg(keys.layout_marker())
            .arg(LAYOUT_VERSION)
            .exec(&mut conn)?;
    }
    Ok(migration)
}

/// The first layout only ever ran on one server, and its keys could not
/// be renamed across a cluster's slots anyway: on a cluster, a run only
/// marks the layout of new data, and refuses data of the first layout.
fn nothing_to_move_on_a_cluster(conn: &mut Link, keys: &Keys) -> Result<Migration, StoreError> {
    for key in keys.first_layout_keys() {
        if redis::cmd("EXISTS").arg(&key).query::<bool>(conn)? {
            return Err(StoreError::Redis(mismatch(
                "the cluster holds keys of the first layout: run migrate against the one \
                 server the earlier release used, then move the data to the cluster",
            )));
        }
    }
    redis::cmd("SET")
        .arg(keys.layout_marker())
        .arg(LAYOUT_VERSION)
        .exec(conn)?;
    Ok(Migration::default())
}

fn move_keys(conn: &mut Link, keys: &Keys, migration: &mut Migration) -> Result<(), StoreError> {
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys.everything_pattern())
            .arg("COUNT")
            .arg(BATCH)
            .query(conn)?;
        // Each move is atomic on its own; a batch of them goes out in one
        // pipeline, in one round trip.
        let mut moves = redis::pipe();
        let mut moved = Vec::new();
        for old in batch {
            let Some(new) = keys.relocated(&old) else {
                continue;
            };
            if is_revert_list(keys, &old) {
                let outcome = move_revert_list(conn, keys, &old, &new)?;
                migration.count(old, outcome);
            } else {
                moves.cmd("EVAL").arg(MOVE_KEY).arg(2).arg(&old).arg(new);
                moved.push(old);
            }
        }
        if !moved.is_empty() {
            let outcomes: Vec<i64> = moves.query(conn)?;
            for (old, outcome) in moved.into_iter().zip(outcomes) {
                migration.count(old, outcome);
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Whether `key` is a user's list of revert keys, whose members are key
/// names that move too.
fn is_revert_list(keys: &Keys, key: &str) -> bool {
    key.strip_prefix(keys.prefix())
        .is_some_and(|rest| rest.starts_with("email_reverts:"))
}

/// Rewrites a revert list under its new name with its members' new names,
/// in one MULTI/EXEC, keeping its expiry. 1 moved, 0 taken, -1 gone.
fn move_revert_list(conn: &mut Link, keys: &Keys, old: &str, new: &str) -> Result<i64, StoreError> {
    let taken: bool = redis::cmd("EXISTS").arg(new).query(conn)?;
    if taken {
        return Ok(0);
    }
    let (members, ttl_ms): (Vec<(String, f64)>, i64) = redis::pipe()
        .cmd("ZRANGE")
        .arg(old)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .cmd("PTTL")
        .arg(old)
        .query(conn)?;
    if members.is_empty() {
        return Ok(-1);
    }
    let mut rewrite = redis::pipe();
    rewrite.atomic().cmd("DEL").arg(old).ignore();
    let zadd = rewrite.cmd("ZADD").arg(new);
    for (member, score) in &members {
        zadd.arg(*score)
            .arg(keys.relocated(member).as_deref().unwrap_or(member));
    }
    zadd.ignore();
    if ttl_ms > 0 {
        rewrite.cmd("PEXPIRE").arg(new).arg(ttl_ms).ignore();
    }
    rewrite.exec(conn)?;
    Ok(1)
}

/// Moves the first layout's index entries into their emails' buckets, a
/// batch per MULTI/EXEC, until none is left.
fn move_index_entries(
    conn: &mut Link,
    keys: &Keys,
    migration: &mut Migration,
) -> Result<(), StoreError> {
    let index = keys.first_layout_email_index();
    loop {
        let batch: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(BATCH - 1)
            .query(conn)?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut step = redis::pipe();
        step.atomic();
        for member in &batch {
            match parse_index_member(member) {
                Some((email, _)) => {
                    step.cmd("ZADD")
                        .arg(keys.email_index_of(email))
                        .arg(0)
                        .arg(member)
                        .ignore();
                    migration.moved_entries += 1;
                }
                None => migration.dropped_entries += 1,
            }
        }
        step.cmd("ZREM").arg(&index).arg(&batch).ignore();
        step.exec(conn)?;
    }
}

/// Moves the first layout's mail (its one queue, retry set and dead
/// letters) into the queues, retry sets and dead letters of the
/// recipients' buckets, a batch per MULTI/EXEC, until none is left. The
/// earlier release is stopped, so no sender holds a message meanwhile.
fn move_mail(conn: &mut Link, keys: &Keys, migration: &mut Migration) -> Result<(), StoreError> {
    let [queue, retry, dead] = keys.first_layout_mail();
    for (old, to) in [
        (&queue, Keys::mail_queue as fn(&Keys, Bucket) -> String),
        (&dead, Keys::mail_dead),
    ] {
        loop {
            let batch: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(old)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(BATCH)
                .query(conn)?;
            if batch.is_empty() {
                break;
            }
            let mut step = redis::pipe();
            step.atomic();
            for (id, fields) in &batch {
                let pairs: Vec<(&String, &String)> = fields.iter().collect();
                let recipient = fields.get(mail_fields::TO).map(String::as_str);
                step.cmd("XADD")
                    .arg(to(keys, recipient_bucket(recipient)))
                    .arg("*")
                    .arg(pairs)
                    .ignore()
                    .cmd("XDEL")
                    .arg(old)
                    .arg(id)
                    .ignore();
            }
            step.exec(conn)?;
            migration.moved_mail += batch.len() as u64;
        }
    }
    // Emptied, the streams stay as keys (the queue with its group).
    redis::cmd("DEL").arg(&queue).arg(&dead).exec(conn)?;
    loop {
        let batch: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&retry)
            .arg(0)
            .arg(BATCH - 1)
            .arg("WITHSCORES")
            .query(conn)?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut step = redis::pipe();
        step.atomic();
        for (member, due) in &batch {
            // A retry is a JSON object of the message's fields.
            let fields: Option<HashMap<String, String>> = serde_json::from_str(member).ok();
            let recipient = fields
                .as_ref()
                .and_then(|fields| fields.get(mail_fields::TO));
            step.cmd("ZADD")
                .arg(keys.mail_retry(recipient_bucket(recipient.map(String::as_str))))
                .arg(*due)
                .arg(member)
                .ignore()
                .cmd("ZREM")
                .arg(&retry)
                .arg(member)
                .ignore();
        }
        step.exec(conn)?;
        migration.moved_mail += batch.len() as u64;
    }
}

/// The bucket a moved message goes to: its recipient's, or the first for
/// one without a recipient (the sender buries it as malformed).
fn recipient_bucket(recipient: Option<&str>) -> Bucket {
    recipient.map_or(Bucket::of_email(""), Bucket::of_email)
}
