//! The mail queue's reading end, for the sender of each instance: a
//! consumer group shares the queue among instances, a sorted set holds the
//! messages waiting for a retry, and a second stream keeps the dead letters.
//!
//! - A message read (`XREADGROUP`) stays pending for its reader until it is
//!   sent, rescheduled or buried; each of those takes it out of the queue
//!   (`XACK` and `XDEL`) in the same MULTI/EXEC as its next place.
//! - A message pending with a reader that stopped (a crash) for longer than
//!   the claim timeout is taken over by another reader (`XAUTOCLAIM`).
//! - A failed message waits in `{prefix}mail:retry`, scored by when it is
//!   due; a script moves due ones back to the queue, atomically, so each is
//!   moved by one instance only.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{Script, Value};

use crate::config::RedisSettings;
use crate::domain::QueuedMail;
use crate::store::layout::{mail_fields, Keys, MAIL_GROUP};
use crate::store::mail::queue::{decode, encode, enqueue};
use crate::store::plumbing::conn::{RedisConn, Store};
use crate::store::plumbing::link::Link;
use crate::store::plumbing::transaction::Writes;
use crate::store::StoreError;

/// A message as one reader got it from the queue.
#[derive(Debug)]
pub struct Delivery {
    /// The stream entry's id, which acknowledges it.
    pub entry: String,
    /// The message, or why its fields do not make one.
    pub mail: Result<QueuedMail, String>,
    /// The fields as stored, kept for the dead letters when malformed.
    fields: HashMap<String, String>,
    /// How many times a reader got it: 1 when read new, more each time it
    /// is taken over from a reader that stopped holding it.
    pub times_delivered: u64,
}

/// How many messages wait where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailCounts {
    /// In the queue: not yet read, or being sent.
    pub queued: u64,
    /// Waiting for a retry.
    pub retrying: u64,
    /// Failed every attempt.
    pub dead: u64,
}

/// KEYS: the retry set, the queue, the dead letters. ARGV: now (Unix ms),
/// the most to move, the dead letters' reason and failed_at field names.
/// Moves due messages (each a JSON object of its fields) to the queue, and
/// one that is no JSON object to the dead letters as it is; returns how
/// many moved and the score of the next one waiting, if any.
const RELEASE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local ok, decoded = pcall(cjson.decode, member)
  local fields = {}
  if ok and type(decoded) == 'table' then
    for name, value in pairs(decoded) do
      table.insert(fields, name)
      table.insert(fields, tostring(value))
    end
  end
  if #fields > 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[3], '*', 'raw', member,
      ARGV[3], 'malformed retry entry', ARGV[4], ARGV[1])
  end
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next[2] or false}
";

static RELEASE_DUE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_DUE));

/// One sender's way to the queue, on a connection of its own: a blocking
/// read must never hold a pooled connection a request could use. Every
/// method blocks; run them off the async workers.
pub struct MailConsumer {
    settings: RedisSettings,
    keys: Keys,
    /// This reader's name in the group; unique per process start.
    name: String,
    conn: Option<Link>,
    /// Where the last `XAUTOCLAIM` stopped.
    claim_cursor: String,
}

impl MailConsumer {
    /// Connects nowhere yet.
    pub fn new(settings: &RedisSettings, name: String) -> Self {
        let mut settings = settings.clone();
        // The sender has one connection; a pool of one would only add a check.
        settings.pool_size = 1;
        let keys = Keys::new(&settings.key_prefix);
        Self {
            settings,
            keys,
            name,
            conn: None,
            claim_cursor: "0-0".into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` on the connection, opening it first when there is none,
    /// and drops it after a failure that leaves it unusable.
    fn with_conn<T>(
        &mut self,
        read_timeout: Option<Duration>,
        work: impl FnOnce(&mut Link, &Keys) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            empty => {
                let (conn, _) = Store::dedicated_connection(&self.settings)?;
                empty.insert(conn)
            }
        };
        let timeout = self.settings.timeout;
        conn.set_read_timeout(Some(read_timeout.unwrap_or(timeout)))?;
        let result = work(conn, &self.keys);
        if result.as_ref().is_err_and(StoreError::breaks_connection) {
            self.conn = None;
        }
        result
    }

    /// Creates the group (and the queue) unless they exist.
    pub fn join(&mut self) -> Result<(), StoreError> {
        self.with_conn(None, |conn, keys| {
            let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(keys.mail_queue())
                .arg(MAIL_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .exec(conn);
            match created {
                Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
                other => Ok(other?),
            }
        })
    }

    /// Up to `count` messages no reader has had, waiting up to `block` for
    /// the first one.
    pub fn read_new(&mut self, count: usize, block: Duration) -> Result<Vec<Delivery>, StoreError> {
        let name = self.name.clone();
        // The reply may take `block`; the read timeout covers that too.
        let timeout = block + self.settings.timeout;
        let block_ms = block.as_millis().max(1);
        let read = self.with_conn(Some(timeout), move |conn, keys| {
            let reply: Option<Vec<(String, Vec<RawEntry>)>> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(MAIL_GROUP)
                .arg(&name)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block_ms as u64)
                .arg("STREAMS")
                .arg(keys.mail_queue())
                .arg(">")
                .query(conn)?;
            Ok(reply
                .into_iter()
                .flatten()
                .flat_map(|(_, entries)| entries)
                .collect::<Vec<_>>())
        });
        match read {
            Ok(entries) => Ok(entries.into_iter().map(Delivery::from).collect()),
            // Someone deleted the queue and its group (while the read waited,
            // or before): make them again.
            Err(StoreError::Redis(error))
                if matches!(error.code(), Some("NOGROUP" | "UNBLOCKED")) =>
            {
                self.join()?;
                Ok(Vec::new())
            }
            Err(error) => Err(error),
        }
    }

    /// Takes over up to `count` messages that other readers have held for
    /// longer than `idle` without finishing them.
    pub fn claim_stale(
        &mut self,
        idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let name = self.name.clone();
        let cursor = self.claim_cursor.clone();
        let (next, entries, times) = self.with_conn(None, move |conn, keys| {
            let reply: Vec<Value> = redis::cmd("XAUTOCLAIM")
                .arg(keys.mail_queue())
                .arg(MAIL_GROUP)
                .arg(&name)
                .arg(idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(count)
                .query(conn)?;
            // [next cursor, claimed entries, (Redis 7) deleted ids]
            let mut reply = reply.into_iter();
            let next: String = parsed(reply.next().unwrap_or(Value::Nil), keys)?;
            let entries: Vec<RawEntry> = parsed(reply.next().unwrap_or(Value::Nil), keys)?;
            let times = times_delivered(conn, keys, &entries)?;
            Ok((next, entries, times))
        })?;
        self.claim_cursor = next;
        Ok(entries
            .into_iter()
            .map(Delivery::from)
            .map(|delivery| {
                let times_delivered = times.get(&delivery.entry).copied().unwrap_or(1);
                Delivery {
                    times_delivered,
                    ..delivery
                }
            })
            .collect())
    }

    /// Moves up to `limit` messages whose retry is due by `now` back to the
    /// queue. Returns how many moved, and when the next retry is due, if
    /// any message still waits for one.
    pub fn release_due(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.with_conn(None, |conn, keys| {
            let (moved, next): (u64, Option<String>) = RELEASE_DUE_SCRIPT
                .key(keys.mail_retry())
                .key(keys.mail_queue())
                .key(keys.mail_dead())
                .arg(now.timestamp_millis())
                .arg(limit)
                .arg(mail_fields::REASON)
                .arg(mail_fields::FAILED_AT)
                .invoke(conn)?;
            let next = next
                .and_then(|score| score.parse::<f64>().ok())
                .and_then(|score| DateTime::from_timestamp_millis(score as i64));
            Ok((moved, next))
        })
    }

    /// Takes sent (or expired) messages out of the queue, at once.
    pub fn finish(&mut self, entries: &[String]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.with_conn(None, |conn, keys| {
            let mut writes = redis::pipe();
            writes.atomic();
            acknowledge(&mut writes, keys, entries);
            Ok(writes.exec(conn)?)
        })
    }

    /// Takes a failed message out of the queue and has it wait until `due`
    /// with the count of its failed attempts.
    pub fn reschedule(
        &mut self,
        entry: &str,
        mail: &QueuedMail,
        due: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let member = retry_member(mail);
        self.with_conn(None, |conn, keys| {
            let mut writes = redis::pipe();
            writes.atomic();
            acknowledge(&mut writes, keys, &[entry.to_owned()]);
            writes
                .cmd("ZADD")
                .arg(keys.mail_retry())
                .arg(due.timestamp_millis())
                .arg(member)
                .ignore();
            Ok(writes.exec(conn)?)
        })
    }

    /// Takes a message that will never be sent out of the queue and keeps it
    /// with the dead letters, with `reason` (fixed words, no values).
    pub fn bury(
        &mut self,
        delivery: &Delivery,
        mail: Option<&QueuedMail>,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut fields: Vec<(String, String)> = match mail {
            Some(mail) => encode(mail)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            None => delivery.fields.clone().into_iter().collect(),
        };
        fields.retain(|(name, _)| name != mail_fields::REASON && name != mail_fields::FAILED_AT);
        fields.push((mail_fields::REASON.into(), reason.to_owned()));
        fields.push((
            mail_fields::FAILED_AT.into(),
            at.timestamp_millis().to_string(),
        ));
        self.with_conn(None, |conn, keys| {
            let mut writes = redis::pipe();
            writes.atomic();
            acknowledge(&mut writes, keys, std::slice::from_ref(&delivery.entry));
            writes
                .cmd("XADD")
                .arg(keys.mail_dead())
                .arg("*")
                .arg(fields)
                .ignore();
            Ok(writes.exec(conn)?)
        })
    }

    /// How many messages wait where.
    pub fn counts(&mut self) -> Result<MailCounts, StoreError> {
        self.with_conn(None, counts)
    }

    /// Puts messages this reader took but will not send (it is stopping)
    /// back at the end of the queue, at once, for another reader: the same
    /// fields in a new entry, and the old entry gone, in one MULTI/EXEC.
    pub fn hand_back(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.with_conn(None, |conn, keys| {
            let mut writes = redis::pipe();
            writes.atomic();
            let mut entries = Vec::new();
            for delivery in deliveries {
                let fields: Vec<(&String, &String)> = delivery.fields.iter().collect();
                writes
                    .cmd("XADD")
                    .arg(keys.mail_queue())
                    .arg("*")
                    .arg(fields)
                    .ignore();
                entries.push(delivery.entry.clone());
            }
            acknowledge(&mut writes, keys, &entries);
            Ok(writes.exec(conn)?)
        })
    }

    /// Removes from the group the readers that hold no message and have not
    /// read for `idle`: instances that stopped without leaving (killed).
    /// Returns how many went.
    pub fn forget_stopped(&mut self, idle: Duration) -> Result<u64, StoreError> {
        let me = self.name.clone();
        self.with_conn(None, move |conn, keys| {
            let readers: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(keys.mail_queue())
                .arg(MAIL_GROUP)
                .query(conn)?;
            let mut forgotten = 0;
            for reader in readers {
                let number = |field: &str| -> Option<i64> {
                    reader
                        .get(field)
                        .and_then(|value| redis::from_redis_value_ref(value).ok())
                };
                let name: Option<String> = reader
                    .get("name")
                    .and_then(|value| redis::from_redis_value_ref(value).ok());
                let (Some(name), Some(pending), Some(idle_ms)) =
                    (name, number("pending"), number("idle"))
                else {
                    continue;
                };
                if name != me && pending == 0 && idle_ms as u128 >= idle.as_millis() {
                    forgotten += u64::from(remove_if_idle(conn, keys, &name)?);
                }
            }
            Ok(forgotten)
        })
    }

    /// Leaves the group when this reader holds no message, so that stopped
    /// instances do not pile up in it. One that holds some stays, for
    /// another reader to claim them from.
    pub fn leave(&mut self) -> Result<(), StoreError> {
        let name = self.name.clone();
        self.with_conn(None, move |conn, keys| {
            remove_if_idle(conn, keys, &name)?;
            Ok(())
        })
    }
}

/// KEYS: the queue. ARGV: the group, a reader. Removes the reader from the
/// group if it holds no message, in one step: a reader removed while it
/// held one would leave that message pending for no one, never sent.
const REMOVE_IF_IDLE: &str = r"
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
";

static REMOVE_IF_IDLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_IF_IDLE));

/// Whether `reader` held nothing and so left the group.
fn remove_if_idle(conn: &mut Link, keys: &Keys, reader: &str) -> Result<bool, StoreError> {
    let removed: i64 = REMOVE_IF_IDLE_SCRIPT
        .key(keys.mail_queue())
        .arg(MAIL_GROUP)
        .arg(reader)
        .invoke(conn)?;
    Ok(removed == 1)
}

/// `XACK` and `XDEL` of `entries`, for a MULTI/EXEC: a message leaves the
/// queue entirely, code and all, the moment it is done with.
fn acknowledge(writes: &mut redis::Pipeline, keys: &Keys, entries: &[String]) {
    writes
        .cmd("XACK")
        .arg(keys.mail_queue())
        .arg(MAIL_GROUP)
        .arg(entries)
        .ignore()
        .cmd("XDEL")
        .arg(keys.mail_queue())
        .arg(entries)
        .ignore();
}

/// A message waiting for its retry: a JSON object of its fields. Should two
/// readers both hold one message (a claim that raced its sender), their
/// retries of it merge into one.
fn retry_member(mail: &QueuedMail) -> String {
    let fields: serde_json::Map<String, serde_json::Value> = encode(mail)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), serde_json::Value::String(value)))
        .collect();
    serde_json::Value::Object(fields).to_string()
}

type RawEntry = (String, HashMap<String, String>);

impl From<RawEntry> for Delivery {
    fn from((entry, fields): RawEntry) -> Self {
        Self {
            entry,
            mail: decode(&fields),
            fields,
            times_delivered: 1,
        }
    }
}

/// How many times each of `entries`, pending in the group, was delivered
/// (`XPENDING` of each, pipelined); an entry no longer pending is absent.
fn times_delivered(
    conn: &mut Link,
    keys: &Keys,
    entries: &[RawEntry],
) -> Result<HashMap<String, u64>, StoreError> {
    if entries.is_empty() {
        return Ok(HashMap::new());
    }
    let mut lookups = redis::pipe();
    for (entry, _) in entries {
        lookups
            .cmd("XPENDING")
            .arg(keys.mail_queue())
            .arg(MAIL_GROUP)
            .arg(entry)
            .arg(entry)
            .arg(1);
    }
    // Each reply: [[id, reader, idle ms, times delivered]], or [] once gone.
    let replies: Vec<Vec<(String, String, u64, u64)>> = lookups.query(conn)?;
    Ok(replies
        .into_iter()
        .flatten()
        .map(|(entry, _, _, times)| (entry, times))
        .collect())
}

fn parsed<T: redis::FromRedisValue>(value: Value, keys: &Keys) -> Result<T, StoreError> {
    redis::from_redis_value(value).map_err(|error| StoreError::Corrupt {
        key: keys.mail_queue(),
        reason: error.to_string(),
    })
}

fn counts(conn: &mut Link, keys: &Keys) -> Result<MailCounts, StoreError> {
    let (queued, retrying, dead): (u64, u64, u64) = redis::pipe()
        .cmd("XLEN")
        .arg(keys.mail_queue())
        .cmd("ZCARD")
        .arg(keys.mail_retry())
        .cmd("XLEN")
        .arg(keys.mail_dead())
        .query(conn)?;
    Ok(MailCounts {
        queued,
        retrying,
        dead,
    })
}

/// Dead letters go back to the queue in batches of this many per MULTI/EXEC.
const REQUEUE_BATCH: usize = 100;

/// Moves every dead letter back to the queue, with its attempt count reset,
/// and returns how many moved. A dead letter whose fields make no message
/// stays where it is.
fn requeue_dead(conn: &mut Link, keys: &Keys) -> Result<u64, StoreError> {
    let mut moved = 0;
    let mut after = "-".to_owned();
    loop {
        let batch: Vec<RawEntry> = redis::cmd("XRANGE")
            .arg(keys.mail_dead())
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(REQUEUE_BATCH)
            .query(conn)?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = format!("({last}");
        let full = batch.len() == REQUEUE_BATCH;
        let mut writes = Writes::new();
        let mut ids = Vec::new();
        for (id, fields) in batch {
            let Ok(mut mail) = decode(&fields) else {
                continue;
            };
            mail.attempts = 0;
            enqueue(&mut writes, keys, &mail);
            ids.push(id);
        }
        if !ids.is_empty() {
            writes.cmd("XDEL").arg(keys.mail_dead()).arg(&ids).ignore();
            writes.apply(conn)?;
            moved += ids.len() as u64;
        }
        if !full {
            break;
        }
    }
    Ok(moved)
}

impl RedisConn {
    /// Moves every dead letter back to the queue (see `requeue_dead`).
    pub async fn requeue_dead_mail(&mut self) -> Result<u64, StoreError> {
        self.run(requeue_dead).await
    }

    /// How many messages wait where.
    pub async fn mail_counts(&mut self) -> Result<MailCounts, StoreError> {
        self.run(counts).await
    }
}
