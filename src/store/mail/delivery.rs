//! The mail queues' reading end, for the sender of each instance. Each
//! bucket has a queue (a stream), a retry set and dead letters of its own,
//! in its slot, so that every step here touches one bucket:
//!
//! - A consumer group per queue shares it among instances. A message read
//!   (`XREADGROUP`) stays pending for its reader until it is sent,
//!   rescheduled or buried; each of those takes it out of the queue (`XACK`
//!   and `XDEL`) in the same step as its next place.
//! - A message pending with a reader that stopped (a crash) for longer than
//!   the claim timeout is taken over by another reader (`XAUTOCLAIM`).
//! - A failed message waits in its bucket's retry set, scored by when it is
//!   due; a script moves due ones back to the queue, atomically, so each is
//!   moved by one instance only.
//! - Before a message is sent, a script in its recipient's slot admits it
//!   within the recipient's hourly bound (`MAIL_MAX_PER_RECIPIENT`) or
//!   holds it back: every message to an address counts, whichever route
//!   queued it and in whichever bucket.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{Cmd, Script, Value};

use crate::config::RedisSettings;
use crate::domain::QueuedMail;
use crate::store::layout::{mail_fields, Bucket, Keys, MAIL_GROUP};
use crate::store::mail::queue::{bound_of, decode, encode, enqueue};
use crate::store::plumbing::conn::{RedisConn, Store};
use crate::store::plumbing::link::{query_all, Link};
use crate::store::plumbing::transaction::Writes;
use crate::store::StoreError;

/// On a cluster no command reads queues of two slots, so the queues are
/// read one after another; after a sweep that found nothing, the reader
/// waits this long (or less, when asked to) before the next.
const CLUSTER_SWEEP_PAUSE: Duration = Duration::from_millis(200);

/// The retry sets are looked at when a retry this reader knows of is due,
/// and at least this often for those other readers scheduled.
const RETRY_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Where a message is: its bucket's queue, and its entry there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    bucket: Bucket,
    id: String,
}

impl fmt::Display for QueueEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of queue {}", self.id, self.bucket.number())
    }
}

/// A message as one reader got it from a queue.
#[derive(Debug)]
pub struct Delivery {
    /// Where it is, which acknowledges it.
    pub entry: QueueEntry,
    /// The message, or why its fields do not make one.
    pub mail: Result<QueuedMail, String>,
    /// The fields as stored, kept for the dead letters when malformed.
    fields: HashMap<String, String>,
    /// How many times a reader got it: 1 when read new, more each time it
    /// is taken over from a reader that stopped holding it.
    pub times_delivered: u64,
}

impl Delivery {
    fn new(bucket: Bucket, (id, fields): RawEntry) -> Self {
        Self {
            entry: QueueEntry { bucket, id },
            mail: decode(&fields),
            fields,
            times_delivered: 1,
        }
    }
}

/// How many messages wait where, over every bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailCounts {
    /// In the queues: not yet read, or being sent.
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

/// KEYS: the recipient's last hour of mail. ARGV: the bound, the message's
/// id. Returns 1 when the message may be sent (counting it, once: a retry
/// of a message admitted in the last hour is admitted again), 0 when the
/// recipient had its share.
const ADMIT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
";

static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIT));

/// One sender's way to the queues, on a connection of its own: a blocking
/// read must never hold a pooled connection a request could use. Every
/// method blocks; run them off the async workers.
pub struct MailConsumer {
    settings: RedisSettings,
    keys: Keys,
    /// Each bucket's queue, in bucket order.
    queues: Vec<(Bucket, String)>,
    /// This reader's name in the groups; unique per process start.
    name: String,
    conn: Option<Link>,
    /// Where the last `XAUTOCLAIM` of each bucket's queue stopped.
    claim_cursors: Vec<String>,
    /// The earliest retry known to be waiting, and when the retry sets
    /// were last looked at.
    next_due: Option<DateTime<Utc>>,
    swept_at: Option<DateTime<Utc>>,
}

impl MailConsumer {
    /// Connects nowhere yet. A message goes out only while its recipient
    /// had fewer than `max_per_recipient` in the last hour.
    pub fn new(settings: &RedisSettings, name: String, max_per_recipient: u32) -> Self {
        let mut settings = settings.clone();
        // The sender has one connection; a pool of one would only add a check.
        settings.pool_size = 1;
        let keys = Keys::new(&settings.key_prefix).bounding_mail_at(max_per_recipient);
        let queues = Bucket::all()
            .map(|bucket| (bucket, keys.mail_queue(bucket)))
            .collect();
        Self {
            settings,
            keys,
            queues,
            name,
            conn: None,
            claim_cursors: Bucket::all().map(|_| "0-0".to_owned()).collect(),
            next_due: None,
            swept_at: None,
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

    /// Creates each bucket's group (and queue) unless they exist.
    pub fn join(&mut self) -> Result<(), StoreError> {
        let queues = self.queues.clone();
        self.with_conn(None, move |conn, _| {
            for (_, queue) in &queues {
                let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(queue)
                    .arg(MAIL_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .exec(conn);
                match created {
                    Err(error) if error.code() == Some("BUSYGROUP") => {}
                    other => other?,
                }
            }
            Ok(())
        })
    }

    /// Up to `count` messages of each queue that no reader has had,
    /// waiting up to `block` for the first one.
    pub fn read_new(&mut self, count: usize, block: Duration) -> Result<Vec<Delivery>, StoreError> {
        let name = self.name.clone();
        let queues = self.queues.clone();
        // The reply may take `block`; the read timeout covers that too.
        let timeout = block + self.settings.timeout;
        let read = self.with_conn(Some(timeout), move |conn, _| {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(MAIL_GROUP)
                .arg(&name)
                .arg("COUNT")
                .arg(count);
            if redis::ConnectionLike::supports_pipelining(conn) {
                // One server: one read waits on every queue at once.
                let block_ms = block.as_millis().max(1) as u64;
                read.arg("BLOCK").arg(block_ms).arg("STREAMS");
                read.arg(queues.iter().map(|(_, queue)| queue).collect::<Vec<_>>());
                read.arg(vec![">"; queues.len()]);
                return Ok(deliveries(read.query(conn)?, &queues));
            }
            let mut found = Vec::new();
            for (bucket, queue) in &queues {
                let mut read = read.clone();
                read.arg("STREAMS").arg(queue).arg(">");
                found.extend(deliveries(read.query(conn)?, &[(*bucket, queue.clone())]));
            }
            if found.is_empty() {
                std::thread::sleep(block.min(CLUSTER_SWEEP_PAUSE));
            }
            Ok(found)
        });
        match read {
            Ok(found) => Ok(found),
            // Someone deleted a queue and its group (while the read waited,
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
        let mut claimed = Vec::new();
        for (index, (bucket, queue)) in self.queues.clone().into_iter().enumerate() {
            let wanted = count.saturating_sub(claimed.len());
            if wanted == 0 {
                break;
            }
            let name = self.name.clone();
            let cursor = self.claim_cursors[index].clone();
            let (next, entries, times) = self.with_conn(None, move |conn, _| {
                let reply: Vec<Value> = redis::cmd("XAUTOCLAIM")
                    .arg(&queue)
                    .arg(MAIL_GROUP)
                    .arg(&name)
                    .arg(idle.as_millis() as u64)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(wanted)
                    .query(conn)?;
                // [next cursor, claimed entries, (Redis 7) deleted ids]
                let mut reply = reply.into_iter();
                let next: String = parsed(reply.next().unwrap_or(Value::Nil), &queue)?;
                let entries: Vec<RawEntry> = parsed(reply.next().unwrap_or(Value::Nil), &queue)?;
                let times = times_delivered(conn, &queue, &entries)?;
                Ok((next, entries, times))
            })?;
            self.claim_cursors[index] = next;
            claimed.extend(entries.into_iter().map(|entry| {
                let delivery = Delivery::new(bucket, entry);
                let times_delivered = times.get(&delivery.entry.id).copied().unwrap_or(1);
                Delivery {
                    times_delivered,
                    ..delivery
                }
            }));
        }
        Ok(claimed)
    }

    /// Moves up to `limit` messages of each bucket whose retry is due by
    /// `now` back to their queues. Returns how many moved, and when the
    /// next retry is due, if any message still waits for one.
    pub fn release_due(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        let due = self.next_due.is_some_and(|next| next <= now);
        let swept_lately = self
            .swept_at
            .is_some_and(|at| (now - at).to_std().is_ok_and(|ago| ago < RETRY_SWEEP_EVERY));
        if !due && swept_lately {
            return Ok((0, self.next_due));
        }
        let (moved, next) = self.with_conn(None, |conn, keys| {
            let mut moved = 0;
            let mut next: Option<DateTime<Utc>> = None;
            for bucket in Bucket::all() {
                let (moved_here, next_here): (u64, Option<String>) = RELEASE_DUE_SCRIPT
                    .key(keys.mail_retry(bucket))
                    .key(keys.mail_queue(bucket))
                    .key(keys.mail_dead(bucket))
                    .arg(now.timestamp_millis())
                    .arg(limit)
                    .arg(mail_fields::REASON)
                    .arg(mail_fields::FAILED_AT)
                    .invoke(conn)?;
                moved += moved_here;
                let next_here = next_here
                    .and_then(|score| score.parse::<f64>().ok())
                    .and_then(|score| DateTime::from_timestamp_millis(score as i64));
                next = next.into_iter().chain(next_here).min();
            }
            Ok((moved, next))
        })?;
        self.swept_at = Some(now);
        self.next_due = next;
        Ok((moved, next))
    }

    /// Which of `mails` their recipients' bounds let out now, in order:
    /// each admitted one is counted against its recipient's hour.
    pub fn admit(&mut self, mails: &[QueuedMail]) -> Result<Vec<bool>, StoreError> {
        self.with_conn(None, |conn, keys| {
            mails
                .iter()
                .map(|mail| {
                    let admitted: i64 = ADMIT_SCRIPT
                        .key(keys.mail_to_recipient(&mail.to))
                        .arg(bound_of(mail, keys))
                        .arg(mail.id.to_string())
                        .invoke(conn)?;
                    Ok(admitted == 1)
                })
                .collect()
        })
    }

    /// Takes sent (or expired, or held back) messages out of their queues,
    /// at once.
    pub fn finish(&mut self, entries: &[QueueEntry]) -> Result<(), StoreError> {
        let mut by_bucket: BTreeMap<Bucket, Vec<String>> = BTreeMap::new();
        for entry in entries {
            by_bucket
                .entry(entry.bucket)
                .or_default()
                .push(entry.id.clone());
        }
        self.with_conn(None, |conn, keys| {
            for (bucket, ids) in by_bucket {
                let mut writes = Writes::new();
                acknowledge(&mut writes, keys, bucket, &ids);
                writes.apply(conn)?;
            }
            Ok(())
        })
    }

    /// Takes a failed message out of its queue and has it wait until `due`
    /// with the count of its failed attempts.
    pub fn reschedule(
        &mut self,
        entry: &QueueEntry,
        mail: &QueuedMail,
        due: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let member = retry_member(mail);
        self.with_conn(None, |conn, keys| {
            let mut writes = Writes::new();
            acknowledge(
                &mut writes,
                keys,
                entry.bucket,
                std::slice::from_ref(&entry.id),
            );
            writes
                .cmd("ZADD")
                .arg(keys.mail_retry(entry.bucket))
                .arg(due.timestamp_millis())
                .arg(member)
                .ignore();
            writes.apply(conn)
        })?;
        self.next_due = self.next_due.into_iter().chain([due]).min();
        Ok(())
    }

    /// Takes a message that will never be sent out of its queue and keeps
    /// it with its bucket's dead letters, with `reason` (fixed words, no
    /// values).
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
        let entry = &delivery.entry;
        self.with_conn(None, |conn, keys| {
            let mut writes = Writes::new();
            acknowledge(
                &mut writes,
                keys,
                entry.bucket,
                std::slice::from_ref(&entry.id),
            );
            writes
                .cmd("XADD")
                .arg(keys.mail_dead(entry.bucket))
                .arg("*")
                .arg(fields)
                .ignore();
            writes.apply(conn)
        })?;
        Ok(())
    }

    /// How many messages wait where.
    pub fn counts(&mut self) -> Result<MailCounts, StoreError> {
        self.with_conn(None, counts)
    }

    /// Puts messages this reader took but will not send (it is stopping)
    /// back at the end of their queues, at once, for another reader: the
    /// same fields in a new entry, and the old entry gone, in one step per
    /// bucket.
    pub fn hand_back(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut by_bucket: BTreeMap<Bucket, Vec<&Delivery>> = BTreeMap::new();
        for delivery in deliveries {
            by_bucket
                .entry(delivery.entry.bucket)
                .or_default()
                .push(delivery);
        }
        self.with_conn(None, |conn, keys| {
            for (bucket, deliveries) in by_bucket {
                let mut writes = Writes::new();
                let mut ids = Vec::new();
                for delivery in deliveries {
                    let fields: Vec<(&String, &String)> = delivery.fields.iter().collect();
                    writes
                        .cmd("XADD")
                        .arg(keys.mail_queue(bucket))
                        .arg("*")
                        .arg(fields)
                        .ignore();
                    ids.push(delivery.entry.id.clone());
                }
                acknowledge(&mut writes, keys, bucket, &ids);
                writes.apply(conn)?;
            }
            Ok(())
        })
    }

    /// Removes from the groups the readers that hold no message and have
    /// not read for `idle`: instances that stopped without leaving
    /// (killed). Returns how many memberships went.
    pub fn forget_stopped(&mut self, idle: Duration) -> Result<u64, StoreError> {
        let me = self.name.clone();
        let queues = self.queues.clone();
        self.with_conn(None, move |conn, _| {
            let mut forgotten = 0;
            for (_, queue) in &queues {
                let readers: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(queue)
                    .arg(MAIL_GROUP)
                    .query(conn)?;
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
                        forgotten += u64::from(remove_if_idle(conn, queue, &name)?);
                    }
                }
            }
            Ok(forgotten)
        })
    }

    /// Leaves the groups where this reader holds no message, so that
    /// stopped instances do not pile up in them. Where it holds some, it
    /// stays, for another reader to claim them from.
    pub fn leave(&mut self) -> Result<(), StoreError> {
        let name = self.name.clone();
        let queues = self.queues.clone();
        self.with_conn(None, move |conn, _| {
            for (_, queue) in &queues {
                remove_if_idle(conn, queue, &name)?;
            }
            Ok(())
        })
    }
}

/// KEYS: a queue. ARGV: the group, a reader. Removes the reader from the
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

/// Whether `reader` held nothing in `queue` and so left its group.
fn remove_if_idle(conn: &mut Link, queue: &str, reader: &str) -> Result<bool, StoreError> {
    let removed: i64 = REMOVE_IF_IDLE_SCRIPT
        .key(queue)
        .arg(MAIL_GROUP)
        .arg(reader)
        .invoke(conn)?;
    Ok(removed == 1)
}

/// `XACK` and `XDEL` of entries of `bucket`'s queue, for a step: a message
/// leaves the queue entirely, code and all, the moment it is done with.
fn acknowledge(writes: &mut Writes, keys: &Keys, bucket: Bucket, ids: &[String]) {
    let queue = keys.mail_queue(bucket);
    writes
        .cmd("XACK")
        .arg(&queue)
        .arg(MAIL_GROUP)
        .arg(ids)
        .ignore()
        .cmd("XDEL")
        .arg(&queue)
        .arg(ids)
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

/// The deliveries in an `XREADGROUP` reply over `queues`.
fn deliveries(
    reply: Option<Vec<(String, Vec<RawEntry>)>>,
    queues: &[(Bucket, String)],
) -> Vec<Delivery> {
    let mut found = Vec::new();
    for (stream, entries) in reply.into_iter().flatten() {
        let Some((bucket, _)) = queues.iter().find(|(_, queue)| *queue == stream) else {
            continue;
        };
        found.extend(
            entries
                .into_iter()
                .map(|entry| Delivery::new(*bucket, entry)),
        );
    }
    found
}

/// How many times each of `entries`, pending in `queue`'s group, was
/// delivered (`XPENDING` of each); an entry no longer pending is absent.
fn times_delivered(
    conn: &mut Link,
    queue: &str,
    entries: &[RawEntry],
) -> Result<HashMap<String, u64>, StoreError> {
    let lookups: Vec<Cmd> = entries
        .iter()
        .map(|(entry, _)| {
            let mut lookup = redis::cmd("XPENDING");
            lookup
                .arg(queue)
                .arg(MAIL_GROUP)
                .arg(entry)
                .arg(entry)
                .arg(1);
            lookup
        })
        .collect();
    // Each reply: [[id, reader, idle ms, times delivered]], or [] once gone.
    let replies = query_all(conn, &lookups)?;
    let mut times = HashMap::new();
    for reply in replies {
        let pending: Vec<(String, String, u64, u64)> = parsed(reply, queue)?;
        times.extend(
            pending
                .into_iter()
                .map(|(entry, _, _, count)| (entry, count)),
        );
    }
    Ok(times)
}

fn parsed<T: redis::FromRedisValue>(value: Value, key: &str) -> Result<T, StoreError> {
    redis::from_redis_value(value).map_err(|error| StoreError::Corrupt {
        key: key.to_owned(),
        reason: error.to_string(),
    })
}

pub(in crate::store) fn counts(conn: &mut Link, keys: &Keys) -> Result<MailCounts, StoreError> {
    let mut counted = Vec::new();
    let mut lookups = Vec::new();
    for bucket in Bucket::all() {
        for (command, key) in [
            ("XLEN", keys.mail_queue(bucket)),
            ("ZCARD", keys.mail_retry(bucket)),
            ("XLEN", keys.mail_dead(bucket)),
        ] {
            let mut lookup = redis::cmd(command);
            lookup.arg(&key);
            lookups.push(lookup);
            counted.push(key);
        }
    }
    let mut total = MailCounts::default();
    let replies = query_all(conn, &lookups)?;
    for (index, (reply, key)) in replies.into_iter().zip(&counted).enumerate() {
        let count: u64 = parsed(reply, key)?;
        match index % 3 {
            0 => total.queued += count,
            1 => total.retrying += count,
            _ => total.dead += count,
        }
    }
    Ok(total)
}

/// Dead letters go back to their queue in batches of this many per step.
const REQUEUE_BATCH: usize = 100;

/// Moves every dead letter back to its bucket's queue, with its attempt
/// count reset, and returns how many moved. A dead letter whose fields
/// make no message stays where it is.
fn requeue_dead(conn: &mut Link, keys: &Keys) -> Result<u64, StoreError> {
    let mut moved = 0;
    for bucket in Bucket::all() {
        let dead = keys.mail_dead(bucket);
        let mut after = "-".to_owned();
        loop {
            let batch: Vec<RawEntry> = redis::cmd("XRANGE")
                .arg(&dead)
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
                enqueue(&mut writes, keys, bucket, &mail);
                ids.push(id);
            }
            if !ids.is_empty() {
                writes.cmd("XDEL").arg(&dead).arg(&ids).ignore();
                writes.apply(conn)?;
                moved += ids.len() as u64;
            }
            if !full {
                break;
            }
        }
    }
    Ok(moved)
}

impl RedisConn {
    /// Moves every dead letter back to the queues (see `requeue_dead`).
    pub async fn requeue_dead_mail(&mut self) -> Result<u64, StoreError> {
        self.run(requeue_dead).await
    }

    /// How many messages wait where.
    pub async fn mail_counts(&mut self) -> Result<MailCounts, StoreError> {
        self.run(counts).await
    }
}
