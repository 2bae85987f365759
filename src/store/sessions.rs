//! Login sessions and failed-login counters.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{Connection, Script};

use super::conn::RedisConn;
use super::layout::{session_fields, Keys};
use super::records::{decode_session, encode_time, hset_session};
use super::session_index::watched_session_ids;
use super::transaction::{transact, Plan};
use super::StoreError;
use crate::domain::{Session, SessionId, UserId};

impl RedisConn {
    /// Stores a new session, unless the user is gone (`false`).
    pub async fn create_session(
        &mut self,
        session: Session,
        idle: Duration,
    ) -> Result<bool, StoreError> {
        self.run(move |conn, keys| create_session(conn, keys, &session, idle))
            .await
    }

    /// The live session `id`, renewed for another idle period; `None` when
    /// it does not exist or has passed its absolute end.
    pub async fn use_session(
        &mut self,
        id: SessionId,
        idle: Duration,
    ) -> Result<Option<Session>, StoreError> {
        self.run(move |conn, keys| use_session(conn, keys, &id, idle))
            .await
    }

    /// The user's live sessions, oldest first. Ids of sessions that expired
    /// are dropped from the user's set on the way.
    pub async fn sessions_of(&mut self, user: UserId) -> Result<Vec<Session>, StoreError> {
        self.run(move |conn, keys| sessions_of(conn, keys, user))
            .await
    }

    /// Ends one of the user's sessions; `false` when it was not theirs or not live.
    pub async fn revoke_session(
        &mut self,
        user: UserId,
        id: SessionId,
    ) -> Result<bool, StoreError> {
        self.run(move |conn, keys| {
            let (removed, _): (u32, u32) = redis::pipe()
                .atomic()
                .cmd("SREM")
                .arg(keys.sessions_of(user))
                .arg(id.as_str())
                .cmd("DEL")
                .arg(keys.session(&id))
                .query(conn)?;
            Ok(removed == 1)
        })
        .await
    }

    /// Ends all of the user's sessions but `keep`.
    pub async fn revoke_sessions(
        &mut self,
        user: UserId,
        keep: Option<SessionId>,
    ) -> Result<(), StoreError> {
        self.run(move |conn, keys| {
            let set = keys.sessions_of(user);
            transact(conn, &set, |conn| {
                let ids = watched_session_ids(conn, keys, user)?;
                let mut writes = redis::pipe();
                for id in ids {
                    if Some(&id) != keep.as_ref() {
                        writes.cmd("DEL").arg(keys.session(&id)).ignore();
                        writes.cmd("SREM").arg(&set).arg(id.as_str()).ignore();
                    }
                }
                Ok(Plan::Write(writes, ()))
            })
        })
        .await
    }
}

fn ttl_ms(session: &Session, now: DateTime<Utc>, idle: Duration) -> i64 {
    (session.ends_at(now, idle) - now).num_milliseconds().max(1)
}

fn create_session(
    conn: &mut Connection,
    keys: &Keys,
    session: &Session,
    idle: Duration,
) -> Result<bool, StoreError> {
    let user_key = keys.user(session.user_id);
    transact(conn, &user_key, |conn| {
        let exists: bool = redis::cmd("EXISTS").arg(&user_key).query(conn)?;
        if !exists {
            return Ok(Plan::Answer(false));
        }
        let key = keys.session(&session.id);
        let mut writes = redis::pipe();
        writes
            .add_command(hset_session(&key, session))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(session, session.last_seen, idle))
            .ignore()
            .cmd("SADD")
            .arg(keys.sessions_of(session.user_id))
            .arg(session.id.as_str())
            .ignore();
        Ok(Plan::Write(writes, true))
    })
}

/// Renews a live session in one atomic step and returns its fields, so that
/// concurrent requests with one session never abort each other's renewal
/// (as a WATCH/MULTI/EXEC on the session would). A session past its
/// absolute end is deleted and answered as `expired`.
/// KEYS[1]: the session. ARGV: now and the idle timeout (ms), then the names
/// of the `expires_at` and `last_seen` fields.
const RENEW_SESSION: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
local expires_at
for i = 1, #fields, 2 do
  if fields[i] == ARGV[3] then
    expires_at = tonumber(fields[i + 1])
  end
end
if expires_at == nil then
  return {'unreadable', fields}
end
if expires_at <= now then
  redis.call('DEL', KEYS[1])
  return {'expired', fields}
end
redis.call('HSET', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(1, math.min(idle, expires_at - now)))
return {'live', fields}
";

static RENEW_SESSION_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW_SESSION));

fn use_session(
    conn: &mut Connection,
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
        .invoke(conn)?;
    let Some((state, fields)) = renewed else {
        return Ok(None);
    };
    let mut session = decode_session(id.clone(), &key, fields)?;
    if state == "expired" {
        redis::cmd("SREM")
            .arg(keys.sessions_of(session.user_id))
            .arg(id.as_str())
            .exec(conn)?;
        return Ok(None);
    }
    session.last_seen = now;
    Ok(Some(session))
}

fn sessions_of(
    conn: &mut Connection,
    keys: &Keys,
    user: UserId,
) -> Result<Vec<Session>, StoreError> {
    let set = keys.sessions_of(user);
    let ids: Vec<SessionId> = redis::cmd("SMEMBERS")
        .arg(&set)
        .query::<Vec<String>>(conn)?
        .iter()
        .filter_map(|id| SessionId::parse(id))
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut fetch = redis::pipe();
    for id in &ids {
        fetch.cmd("HGETALL").arg(keys.session(id));
    }
    let records: Vec<HashMap<String, String>> = fetch.query(conn)?;
    let mut live = Vec::new();
    let mut expired = Vec::new();
    for (id, fields) in ids.into_iter().zip(records) {
        if fields.is_empty() {
            expired.push(id);
        } else {
            let key = keys.session(&id);
            live.push(decode_session(id, &key, fields)?);
        }
    }
    if !expired.is_empty() {
        redis::cmd("SREM")
            .arg(&set)
            .arg(expired.iter().map(SessionId::as_str).collect::<Vec<_>>())
            .exec(conn)?;
    }
    live.sort_by_key(|session| session.created);
    Ok(live)
}
