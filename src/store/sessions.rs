//! Login sessions and failed-login counters.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::Connection;

use super::keys::Keys;
use super::users::{encode_time, transact, Plan, StoredFields};
use super::{RedisConn, StoreError};
use crate::domain::{SessionId, UserEmail, UserId};

#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub created: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The absolute end: no renewal goes past it.
    pub expires_at: DateTime<Utc>,
    pub ip: String,
    pub user_agent: String,
}

impl SessionRecord {
    /// When the session ends if it is not used again: the idle timeout from
    /// `now`, capped by the absolute end.
    pub fn ends_at(&self, now: DateTime<Utc>, idle: Duration) -> DateTime<Utc> {
        let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
        now.checked_add_signed(idle)
            .unwrap_or(self.expires_at)
            .min(self.expires_at)
    }
}

/// Failed logins counted in the current window.
pub struct LoginFailures {
    pub of_account: u32,
    pub of_ip: u32,
    /// Until the fuller of the two counters expires.
    pub retry_after: Duration,
}

impl RedisConn {
    /// Stores a new session, unless the user is gone (`false`).
    pub async fn create_session(
        &mut self,
        session: SessionRecord,
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
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.run(move |conn, keys| use_session(conn, keys, &id, idle))
            .await
    }

    /// The user's live sessions, oldest first. Ids of sessions that expired
    /// are dropped from the user's set on the way.
    pub async fn sessions_of(&mut self, user: UserId) -> Result<Vec<SessionRecord>, StoreError> {
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
                let ids: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query(conn)?;
                let mut writes = redis::pipe();
                for id in ids.iter().filter_map(|id| SessionId::parse(id)) {
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

    pub async fn login_failures(
        &mut self,
        email: UserEmail,
        ip: String,
    ) -> Result<LoginFailures, StoreError> {
        self.run(move |conn, keys| {
            let (of_account, of_ip, account_ttl, ip_ttl): (Option<u32>, Option<u32>, i64, i64) =
                redis::pipe()
                    .cmd("GET")
                    .arg(keys.login_failures_of_account(&email))
                    .cmd("GET")
                    .arg(keys.login_failures_of_ip(&ip))
                    .cmd("PTTL")
                    .arg(keys.login_failures_of_account(&email))
                    .cmd("PTTL")
                    .arg(keys.login_failures_of_ip(&ip))
                    .query(conn)?;
            let retry_after_ms = account_ttl.max(ip_ttl).max(0);
            Ok(LoginFailures {
                of_account: of_account.unwrap_or(0),
                of_ip: of_ip.unwrap_or(0),
                retry_after: Duration::from_millis(u64::try_from(retry_after_ms).unwrap_or(0)),
            })
        })
        .await
    }

    /// Counts a failed login against the account and the IP. A window starts
    /// with its first failure and ends `window` later.
    pub async fn record_login_failure(
        &mut self,
        email: UserEmail,
        ip: String,
        window: Duration,
    ) -> Result<(), StoreError> {
        self.run(move |conn, keys| {
            let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            let mut writes = redis::pipe();
            writes.atomic();
            for key in [
                keys.login_failures_of_account(&email),
                keys.login_failures_of_ip(&ip),
            ] {
                writes
                    .cmd("INCR")
                    .arg(&key)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(window_ms)
                    .arg("NX")
                    .ignore();
            }
            Ok(writes.exec(conn)?)
        })
        .await
    }

    pub async fn reset_login_failures(&mut self, email: UserEmail) -> Result<(), StoreError> {
        self.run(move |conn, keys| {
            Ok(redis::cmd("DEL")
                .arg(keys.login_failures_of_account(&email))
                .exec(conn)?)
        })
        .await
    }
}

const USER_ID: &str = "user_id";
const CREATED: &str = "created";
const LAST_SEEN: &str = "last_seen";
const EXPIRES_AT: &str = "expires_at";
const IP: &str = "ip";
const USER_AGENT: &str = "user_agent";

fn ttl_ms(session: &SessionRecord, now: DateTime<Utc>, idle: Duration) -> i64 {
    (session.ends_at(now, idle) - now).num_milliseconds().max(1)
}

fn create_session(
    conn: &mut Connection,
    keys: &Keys,
    session: &SessionRecord,
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
            .cmd("HSET")
            .arg(&key)
            .arg(USER_ID)
            .arg(session.user_id.to_string())
            .arg(CREATED)
            .arg(encode_time(session.created))
            .arg(LAST_SEEN)
            .arg(encode_time(session.last_seen))
            .arg(EXPIRES_AT)
            .arg(encode_time(session.expires_at))
            .arg(IP)
            .arg(&session.ip)
            .arg(USER_AGENT)
            .arg(&session.user_agent)
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

fn read_session(
    conn: &mut Connection,
    keys: &Keys,
    id: &SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    let key = keys.session(id);
    let fields: HashMap<String, String> = redis::cmd("HGETALL").arg(&key).query(conn)?;
    if fields.is_empty() {
        return Ok(None);
    }
    decode_session(id.clone(), &key, fields).map(Some)
}

fn decode_session(
    id: SessionId,
    key: &str,
    fields: HashMap<String, String>,
) -> Result<SessionRecord, StoreError> {
    let mut fields = StoredFields { key, fields };
    Ok(SessionRecord {
        id,
        user_id: fields.take_parsed(USER_ID, |raw| {
            UserId::parse(raw).ok_or_else(|| "is not a UUID".into())
        })?,
        created: fields.take_time(CREATED)?,
        last_seen: fields.take_time(LAST_SEEN)?,
        expires_at: fields.take_time(EXPIRES_AT)?,
        ip: fields.take(IP)?,
        user_agent: fields.take(USER_AGENT)?,
    })
}

fn use_session(
    conn: &mut Connection,
    keys: &Keys,
    id: &SessionId,
    idle: Duration,
) -> Result<Option<SessionRecord>, StoreError> {
    let key = keys.session(id);
    transact(conn, &key, |conn| {
        let Some(mut session) = read_session(conn, keys, id)? else {
            return Ok(Plan::Answer(None));
        };
        let now = crate::domain::now();
        let mut writes = redis::pipe();
        if session.expires_at <= now {
            writes
                .cmd("DEL")
                .arg(&key)
                .ignore()
                .cmd("SREM")
                .arg(keys.sessions_of(session.user_id))
                .arg(id.as_str())
                .ignore();
            return Ok(Plan::Write(writes, None));
        }
        session.last_seen = now;
        writes
            .cmd("HSET")
            .arg(&key)
            .arg(LAST_SEEN)
            .arg(encode_time(now))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(&session, now, idle))
            .ignore();
        Ok(Plan::Write(writes, Some(session)))
    })
}

fn sessions_of(
    conn: &mut Connection,
    keys: &Keys,
    user: UserId,
) -> Result<Vec<SessionRecord>, StoreError> {
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

/// Adds to a MULTI/EXEC the commands that end every session of `user`;
/// the caller has WATCHed the user's session set before reading `ids`.
pub(super) fn revoke_all(writes: &mut redis::Pipeline, keys: &Keys, user: UserId, ids: &[String]) {
    for id in ids.iter().filter_map(|id| SessionId::parse(id)) {
        writes.cmd("DEL").arg(keys.session(&id)).ignore();
    }
    writes.cmd("DEL").arg(keys.sessions_of(user)).ignore();
}
