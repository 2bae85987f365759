//! Login sessions and failed-login counters.

pub(super) mod index;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{Cmd, ConnectionLike, Script};

use crate::domain::{PasswordHash, Session, SessionId, User, UserId};
use crate::store::layout::{self, session_fields, user_fields, Keys};
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::link::{query_each, Link, SharedLink};
use crate::store::plumbing::records::{
    decode_password_values, decode_public_values, decode_session, encode_time, hgetall,
    hmget_password_fields, hmget_public_fields, hset_session,
};
use crate::store::plumbing::transaction::{transact, Plan, Tx, Writes};
use crate::store::sessions::index::{
    decode_index, index_entries, read_sessions, update, Listed, TIDY_INDEX_LUA,
};
use crate::store::StoreError;

impl RedisConn {
    /// Stores a new session, provided the user's password hash is still
    /// `verified`; `false` when the user is gone or its password changed
    /// since. When the user holds `max_per_user` live sessions already, the
    /// same transaction ends the ones with the oldest logins.
    pub async fn create_session(
        &mut self,
        session: Session,
        verified: PasswordHash,
        idle: Duration,
        max_per_user: u32,
    ) -> Result<bool, StoreError> {
        self.run(move |conn, keys| {
            let login = Login {
                session: &session,
                verified: &verified,
                idle,
                max_per_user,
            };
            create_session(conn, keys, &login)
        })
        .await
    }

    /// The live session `id`; `None` when it does not exist or has ended.
    /// A session renewed less than `renewal_step` ago is only read (one
    /// `HGETALL` on the shared read connection); an older one is renewed for
    /// another idle period by one script on the shared script connection.
    /// So under a burst of requests with one session, Redis runs the script
    /// about once per `renewal_step`, not once per request.
    pub async fn use_session(
        &self,
        id: SessionId,
        idle: Duration,
        renewal_step: Duration,
    ) -> Result<Option<Session>, StoreError> {
        let key = self.keys.session(&id);
        let key = key.as_str();
        let fields = self
            .read(|mut conn| async move { Ok(hgetall(key).query_async(&mut conn).await?) })
            .await?;
        self.settle_session(id, key, fields, idle, renewal_step)
            .await
    }

    /// Whether the session `id` still exists.
    pub async fn session_is_live(&self, id: &SessionId) -> Result<bool, StoreError> {
        let key = self.keys.session(id);
        let key = key.as_str();
        self.read(|mut conn| async move {
            Ok(redis::cmd("EXISTS").arg(key).query_async(&mut conn).await?)
        })
        .await
    }

    /// As [`Self::use_session`], and, when the session is `user`'s, that
    /// user's public fields, read in the same round trip (one pipeline): for
    /// a request that reads its own user with a session. The user's fields
    /// are read whoever the session belongs to, but decoded and answered
    /// only for the session's own user; `None` for anyone else's.
    pub async fn use_session_reading_user(
        &self,
        id: SessionId,
        idle: Duration,
        renewal_step: Duration,
        user: UserId,
    ) -> Result<(Option<Session>, Option<User>), StoreError> {
        let session_key = self.keys.session(&id);
        let user_key = self.keys.user(user);
        let (session_key, user_key) = (session_key.as_str(), user_key.as_str());
        let (fields, values) = self
            .read(|mut conn| async move {
                Ok(redis::pipe()
                    .add_command(hgetall(session_key))
                    .add_command(hmget_public_fields(user_key))
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        let session = self
            .settle_session(id, session_key, fields, idle, renewal_step)
            .await?;
        let own = match &session {
            Some(session) if session.user_id == user => {
                decode_public_values(user, user_key, values)?
            }
            _ => None,
        };
        Ok((session, own))
    }

    /// The session `id` as read (`fields`): live as it is, renewed when its
    /// last renewal is `renewal_step` old, or ended.
    async fn settle_session(
        &self,
        id: SessionId,
        key: &str,
        fields: HashMap<String, String>,
        idle: Duration,
        renewal_step: Duration,
    ) -> Result<Option<Session>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let session = decode_session(id.clone(), key, fields)?;
        let now = crate::domain::now();
        // A last renewal in the future (another instance's clock runs ahead)
        // is due: waiting for this clock to catch up could let Redis's TTL
        // end a session in constant use.
        let since_renewal = (now - session.last_seen).to_std().unwrap_or(renewal_step);
        if session.expires_at > now && since_renewal < renewal_step {
            return Ok(Some(session));
        }
        if session.ends_at(session.last_seen, idle) <= now && session.expires_at > now {
            // Idle past its end by this clock (or by an idle timeout lowered
            // since its last renewal), not yet by its TTL: renewing it would
            // bring it back, so it ends here, off its user's index too.
            let (keys, user, id) = (&*self.keys, session.user_id, &id);
            self.script(|mut conn| async move {
                let _: bool = revocation(keys, user, id).invoke_async(&mut conn).await?;
                Ok(())
            })
            .await?;
            return Ok(None);
        }
        self.renew_session(id, idle).await
    }

    /// Renews the live session `id` for another idle period, or ends it
    /// when it has passed its absolute end.
    async fn renew_session(
        &self,
        id: SessionId,
        idle: Duration,
    ) -> Result<Option<Session>, StoreError> {
        let keys = &*self.keys;
        let id = &id;
        self.script(|mut conn| async move { renew_session(&mut conn, keys, id, idle).await })
            .await
    }

    /// The user's live sessions, oldest login first. Ids of sessions that
    /// ended are dropped from the user's index on the way.
    pub async fn sessions_of(&mut self, user: UserId) -> Result<Vec<Session>, StoreError> {
        self.run(move |conn, keys| sessions_of(conn, keys, user))
            .await
    }

    /// Ends one of the user's sessions; `false`, having changed nothing,
    /// when it is not live or not theirs.
    pub async fn revoke_session(
        &mut self,
        user: UserId,
        id: SessionId,
    ) -> Result<bool, StoreError> {
        self.run(move |conn, keys| Ok(revocation(keys, user, &id).invoke(conn)?))
            .await
    }

    /// Ends all of the user's sessions but `keep`.
    pub async fn revoke_sessions(
        &mut self,
        user: UserId,
        keep: Option<SessionId>,
    ) -> Result<(), StoreError> {
        self.run(move |conn, keys| revoke_sessions(conn, keys, user, keep.as_ref()))
            .await
    }
}

fn ttl_ms(session: &Session, now: DateTime<Utc>, idle: Duration) -> i64 {
    (session.ends_at(now, idle) - now).num_milliseconds().max(1)
}

/// What a login writes, and what it must still hold to write it: the
/// user, not disabled, with the password hash the login verified.
struct Login<'a> {
    session: &'a Session,
    /// The password hash the login's password was verified against.
    verified: &'a PasswordHash,
    idle: Duration,
    max_per_user: u32,
}

/// Reads the user and its session index; writes the session, its index
/// entry and the eviction of the oldest logins past the cap in one atomic
/// step, so that concurrent logins never leave more than the cap.
fn create_session(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    login: &Login,
) -> Result<bool, StoreError> {
    let session = login.session;
    let user_key = keys.user(session.user_id);
    let index = keys.session_index(session.user_id);
    let key = keys.session(&session.id);
    let now = encode_time(session.last_seen);
    let ends_at = encode_time(session.ends_at(session.last_seen, login.idle));
    transact(conn, |tx| {
        let (password, disabled, indexed): (Vec<Option<String>>, bool, Vec<(String, f64)>) = tx
            .read_all(&[
                hmget_password_fields(&user_key),
                redis::cmd("HEXISTS")
                    .arg(&user_key)
                    .arg(user_fields::DISABLED)
                    .take(),
                index_entries(&index),
            ])?;
        match decode_password_values(&user_key, password)? {
            Some(current) if &current == login.verified && !disabled => {}
            // Gone, disabled, or a new password since the check: no session.
            _ => return Ok(Plan::Answer(false)),
        }
        let live: Vec<Listed> = decode_index(indexed)
            .into_iter()
            .filter(|listed| listed.ends_at > now)
            .collect();
        let (kept, evicted) = oldest_past_cap(tx, keys, live, login.max_per_user)?;
        let ends_last = kept
            .iter()
            .map(|listed| listed.ends_at)
            .chain([ends_at])
            .max();
        let mut writes = Writes::new();
        writes
            .add_command(hset_session(&key, session))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(session, session.last_seen, login.idle))
            .ignore();
        for id in &evicted {
            writes.cmd("DEL").arg(keys.session(id)).ignore();
        }
        let added = Listed {
            id: session.id.clone(),
            ends_at,
        };
        update(&mut writes, &index, now, &evicted, &[added], ends_last);
        Ok(Plan::Write(writes, true))
    })
}

/// Splits the user's live sessions into those a new login keeps and those
/// it ends: the oldest logins, as many as it takes to stay within `cap`
/// with the new one. Ids whose session is gone already count as ended.
fn oldest_past_cap(
    tx: &mut Tx,
    keys: &Keys,
    live: Vec<Listed>,
    cap: u32,
) -> Result<(Vec<Listed>, Vec<SessionId>), StoreError> {
    let room = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(1);
    if live.len() <= room {
        return Ok((live, Vec::new()));
    }
    let reads: Vec<redis::Cmd> = live
        .iter()
        .map(|listed| {
            redis::cmd("HGET")
                .arg(keys.session(&listed.id))
                .arg(session_fields::CREATED)
                .take()
        })
        .collect();
    let created: Vec<Option<i64>> = tx.read_all(&reads)?;
    let mut by_login: Vec<(i64, Listed)> = Vec::new();
    let mut ended = Vec::new();
    for (listed, created) in live.into_iter().zip(created) {
        match created {
            Some(created) => by_login.push((created, listed)),
            None => ended.push(listed.id),
        }
    }
    by_login.sort_by_key(|(created, _)| *created);
    let excess = by_login.len().saturating_sub(room);
    let kept = by_login.split_off(excess);
    ended.extend(by_login.into_iter().map(|(_, listed)| listed.id));
    Ok((kept.into_iter().map(|(_, listed)| listed).collect(), ended))
}

/// Ends every session of the user but `keep`, from the index and the legacy
/// set, in one atomic step.
fn revoke_sessions(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    keep: Option<&SessionId>,
) -> Result<(), StoreError> {
    let index = keys.session_index(user);
    let legacy = keys.legacy_session_set(user);
    transact(conn, |tx| {
        let lists = read_sessions(tx, keys, user)?;
        let ending: Vec<SessionId> = lists
            .ids()
            .into_iter()
            .filter(|id| Some(id) != keep)
            .collect();
        if ending.is_empty() {
            return Ok(Plan::Answer(()));
        }
        let ends_last = lists
            .indexed
            .iter()
            .filter(|listed| Some(&listed.id) == keep)
            .map(|listed| listed.ends_at)
            .max();
        let mut writes = Writes::new();
        for id in &ending {
            writes.cmd("DEL").arg(keys.session(id)).ignore();
        }
        let now = encode_time(crate::domain::now());
        update(&mut writes, &index, now, &ending, &[], ends_last);
        writes
            .cmd("SREM")
            .arg(&legacy)
            .arg(ending.iter().map(SessionId::as_str).collect::<Vec<_>>())
            .ignore();
        Ok(Plan::Write(writes, ()))
    })
}

/// Ends a session if it is the user's, in one atomic step: whose it is is
/// read from the session itself, so naming another user's session id
/// changes nothing.
/// KEYS: the session, the user's index and legacy set. ARGV: the session
/// id, the user id, the name of the `user_id` field, now (ms).
const REVOKE_SESSION: &str = r"
if redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
tidy_index(KEYS[2], ARGV[4])
return 1
";

static REVOKE_SESSION_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{TIDY_INDEX_LUA}{REVOKE_SESSION}")));

/// [`REVOKE_SESSION`] for the session `id` of `user`.
fn revocation(keys: &Keys, user: UserId, id: &SessionId) -> redis::ScriptInvocation<'static> {
    let mut invocation = REVOKE_SESSION_SCRIPT.prepare_invoke();
    invocation
        .key(keys.session(id))
        .key(keys.session_index(user))
        .key(keys.legacy_session_set(user))
        .arg(id.as_str())
        .arg(user.to_string())
        .arg(session_fields::USER_ID)
        .arg(encode_time(crate::domain::now()));
    invocation
}

/// Renews a live session in one atomic step and returns its fields, so that
/// concurrent requests with one session never abort each other's renewal
/// (as a WATCH/MULTI/EXEC on the session would). A session past its absolute
/// end is deleted and answered as `expired`.
///
/// The same step moves the session's entry in its user's index to the new
/// end and pushes the index's expiry to it (`GT`: a renewal only ever moves
/// an end later). Only when the entry was missing (a session listed in a
/// legacy set, or dropped from the index by a clock running ahead) does it
/// take the session out of the legacy set and tidy the whole index: done on
/// every request, that tidying made the script cost Redis about 18 µs per
/// call instead of 13 (9 before the index; `INFO commandstats`, Redis 7.0).
///
/// The index's name is built from the session's `user_id`, which only the
/// session holds (`user_key`): this script touches keys it is not given.
/// They carry the session's own hash tag when the session was made by this
/// release (its token is drawn in its user's bucket), so on Redis Cluster
/// they are in the session's slot.
/// KEYS[1]: the session. ARGV: now and the idle timeout (ms), the names of
/// the `expires_at`, `last_seen` and `user_id` fields, the key prefix, the
/// names of the index and the legacy set before the user id, and the
/// session id.
const RENEW_SESSION: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
local expires_at, user_id
for i = 1, #fields, 2 do
  if fields[i] == ARGV[3] then
    expires_at = tonumber(fields[i + 1])
  elseif fields[i] == ARGV[5] then
    user_id = fields[i + 1]
  end
end
local uuid = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
if expires_at == nil or user_id == nil or not string.find(user_id, uuid) then
  return {'unreadable', fields}
end
local index = user_key(ARGV[6], ARGV[7], user_id)
local legacy = user_key(ARGV[6], ARGV[8], user_id)
if expires_at <= now then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', index, ARGV[9])
  redis.call('SREM', legacy, ARGV[9])
  tidy_index(index, now)
  return {'expired', fields}
end
local ends_at = math.min(now + idle, expires_at)
redis.call('HSET', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(1, ends_at - now))
local ends = string.format('%d', ends_at)
if redis.call('ZADD', index, 'GT', ends, ARGV[9]) == 1 then
  redis.call('SREM', legacy, ARGV[9])
  tidy_index(index, now)
else
  redis.call('PEXPIREAT', index, ends, 'GT')
end
return {'live', fields}
";

static RENEW_SESSION_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{TIDY_INDEX_LUA}{RENEW_SESSION}",
        layout::user_key_lua()
    ))
});

async fn renew_session(
    conn: &mut SharedLink,
    keys: &Keys,
    id: &SessionId,
    idle: Duration,
) -> Result<Option<Session>, StoreError> {
    let key = keys.session(id);
    let now = crate::domain::now();
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    let renewed: Option<(String, HashMap<String, String>)> = RENEW_SESSION_SCRIPT
        .key(&key)
        .arg(encode_time(now))
        .arg(idle_ms)
        .arg(session_fields::EXPIRES_AT)
        .arg(session_fields::LAST_SEEN)
        .arg(session_fields::USER_ID)
        .arg(keys.prefix())
        .arg(layout::SESSION_INDEX)
        .arg(layout::LEGACY_SESSION_SET)
        .arg(id.as_str())
        .invoke_async(conn)
        .await?;
    let Some((state, fields)) = renewed else {
        return Ok(None);
    };
    let mut session = decode_session(id.clone(), &key, fields)?;
    if state == "expired" {
        return Ok(None);
    }
    session.last_seen = now;
    Ok(Some(session))
}

/// The user's sessions from the index and the legacy set, oldest login
/// first. A listed session that is gone is dropped from both; one that
/// belongs to another user is not shown.
fn sessions_of(conn: &mut Link, keys: &Keys, user: UserId) -> Result<Vec<Session>, StoreError> {
    let index = keys.session_index(user);
    let legacy = keys.legacy_session_set(user);
    let mut members = redis::cmd("SMEMBERS");
    members.arg(&legacy);
    let (indexed, legacy_ids): (Vec<(String, f64)>, Vec<String>) =
        query_each(conn, &[index_entries(&index), members])?;
    let mut ids: Vec<SessionId> = decode_index(indexed)
        .into_iter()
        .map(|listed| listed.id)
        .collect();
    for id in legacy_ids.iter().filter_map(|id| SessionId::parse(id)) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let fetch: Vec<Cmd> = ids.iter().map(|id| hgetall(&keys.session(id))).collect();
    let records: Vec<HashMap<String, String>> = query_each(conn, &fetch)?;
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for (id, fields) in ids.into_iter().zip(records) {
        if fields.is_empty() {
            gone.push(id);
        } else {
            let key = keys.session(&id);
            let session = decode_session(id, &key, fields)?;
            if session.user_id == user {
                live.push(session);
            }
        }
    }
    if !gone.is_empty() {
        let gone: Vec<&str> = gone.iter().map(SessionId::as_str).collect();
        let mut writes = Writes::new();
        writes
            .cmd("ZREM")
            .arg(&index)
            .arg(&gone)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(encode_time(crate::domain::now()))
            .ignore()
            .cmd("SREM")
            .arg(&legacy)
            .arg(&gone)
            .ignore();
        writes.apply(conn)?;
    }
    live.sort_by_key(|session| session.created);
    Ok(live)
}
