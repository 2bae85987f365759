//! The user commands. Reads run on the shared multiplexed connection; writes
//! run on a blocking thread with a pooled connection, and the writes that
//! belong together go in one MULTI/EXEC.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::MultiplexedConnection;
use redis::{Connection, Pipeline, Value};

use super::events::{self, EventKind};
use super::keys::{email_prefix_range, exact_email_range, index_member, parse_index_member, Keys};
use super::sessions::revoke_all;
use super::{RedisConn, StoreError};
use crate::domain::{now, PasswordHash, User, UserEmail, UserId, UserName};

/// A user as stored: the public fields and the password hash.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: PasswordHash,
}

/// The outcome of a write that is conditional on the user's current state.
#[derive(Debug)]
pub enum Written<T> {
    Done(T),
    /// The user does not exist (any more).
    Missing,
    /// The password hash is no longer the one the caller verified against:
    /// the password changed in between.
    PasswordChanged,
}

/// Why a password hash is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashReplacement {
    /// A new password: sessions end and an event is recorded.
    PasswordChange,
    /// The same password hashed with the current parameters.
    Rehash,
}

/// One page of the email index.
pub struct ListQuery {
    /// A normalized email prefix; empty for all users.
    pub prefix: String,
    /// The index member the previous page ended with.
    pub after: Option<String>,
    pub limit: usize,
}

pub struct UserPage {
    pub users: Vec<User>,
    /// How many users match the prefix.
    pub total: usize,
    /// The index member to continue after, when more users follow.
    pub next: Option<String>,
}

/// A WATCH/MULTI/EXEC that another client's write aborted is retried this
/// many times before the request gives up with 503.
const MAX_TRANSACTION_ATTEMPTS: u32 = 32;

const NAME: &str = "name";
const EMAIL: &str = "email";
const CREATED: &str = "created";
const UPDATED: &str = "updated";
/// The password hash is kept as its three PHC parts, not one string: each
/// part stays within Redis's compact (listpack) encoding for hash values
/// (64 bytes by default), which a 97-character PHC string does not, and
/// that encoding takes a user from about 840 to about 520 bytes.
const PASSWORD_PARAMS: &str = "password_params";
const PASSWORD_SALT: &str = "password_salt";
const PASSWORD_HASH: &str = "password_hash";
/// The fields a user's public view needs: no password material.
const PUBLIC_FIELDS: [&str; 4] = [NAME, EMAIL, CREATED, UPDATED];

/// A PHC string split for storage: `$argon2id$v=19$m=…,t=…,p=…`, the
/// salt and the hash, all without their `$` separators.
struct StoredPasswordHash<'a> {
    params: &'a str,
    salt: &'a str,
    hash: &'a str,
}

impl<'a> StoredPasswordHash<'a> {
    fn split(hash: &'a PasswordHash) -> Result<Self, StoreError> {
        let mut parts = hash.as_phc().rsplitn(3, '$');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(hash), Some(salt), Some(params)) if params.starts_with('$') => {
                Ok(Self { params, salt, hash })
            }
            _ => Err(StoreError::Invalid(
                "a password hash that is not a PHC string",
            )),
        }
    }

    fn join(params: &str, salt: &str, hash: &str) -> PasswordHash {
        PasswordHash::from_phc(format!("{params}${salt}${hash}"))
    }

    /// Appends the three fields to an HSET.
    fn add_fields(&self, hset: &mut redis::Cmd) {
        hset.arg(PASSWORD_PARAMS)
            .arg(self.params)
            .arg(PASSWORD_SALT)
            .arg(self.salt)
            .arg(PASSWORD_HASH)
            .arg(self.hash);
    }
}

impl RedisConn {
    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move {
            let key = keys.user(id);
            let fields = hgetall_user(&key).query_async(&mut conn).await?;
            decode_user_fields(id, &key, fields)
        })
        .await
    }

    /// The user's public fields only, without its password hash.
    pub async fn public_user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move {
            let key = keys.user(id);
            let values = hmget_public_fields(&key).query_async(&mut conn).await?;
            decode_public_values(id, &key, values)
        })
        .await
    }

    /// The public fields of the user holding `email`.
    pub async fn public_user_by_email(
        &self,
        email: &UserEmail,
    ) -> Result<Option<User>, StoreError> {
        match self.id_by_email(email).await? {
            Some(id) => self.public_user_by_id(id).await,
            None => Ok(None),
        }
    }

    async fn id_by_email(&self, email: &UserEmail) -> Result<Option<UserId>, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move {
            let members = email_lookup(keys, email).query_async(&mut conn).await?;
            Ok(first_id(members))
        })
        .await
    }

    /// Stores a new user, unless another user holds the email already
    /// ([`StoreError::EmailInUse`]).
    pub async fn create_user(&mut self, record: UserRecord) -> Result<(), StoreError> {
        self.run(move |conn, keys| create_user(conn, keys, &record))
            .await
    }

    /// Replaces name and email, provided the password hash is still `verified`.
    pub async fn update_profile(
        &mut self,
        id: UserId,
        verified: PasswordHash,
        name: UserName,
        email: UserEmail,
    ) -> Result<Written<User>, StoreError> {
        self.run(move |conn, keys| update_profile(conn, keys, id, &verified, name, email))
            .await
    }

    /// Replaces the password hash, provided it is still `verified`. A
    /// password change also ends all of the user's sessions, in the same
    /// transaction.
    pub async fn replace_password_hash(
        &mut self,
        id: UserId,
        verified: PasswordHash,
        new_hash: PasswordHash,
        reason: HashReplacement,
    ) -> Result<Written<()>, StoreError> {
        self.run(move |conn, keys| {
            replace_password_hash(conn, keys, id, &verified, &new_hash, reason)
        })
        .await
    }

    /// Removes the user, its index entry and its sessions, provided the hash
    /// is still `verified`.
    pub async fn delete_user(
        &mut self,
        id: UserId,
        verified: PasswordHash,
    ) -> Result<Written<User>, StoreError> {
        self.run(move |conn, keys| delete_user(conn, keys, id, &verified))
            .await
    }

    pub async fn list_users(&self, query: &ListQuery) -> Result<UserPage, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move { list_users(&mut conn, keys, query).await })
            .await
    }
}

fn read_user(
    conn: &mut Connection,
    keys: &Keys,
    id: UserId,
) -> Result<Option<UserRecord>, StoreError> {
    let key = keys.user(id);
    let fields = hgetall_user(&key).query(conn)?;
    decode_user_fields(id, &key, fields)
}

fn hgetall_user(key: &str) -> redis::Cmd {
    redis::cmd("HGETALL").arg(key).take()
}

/// The reply to [`hgetall_user`]: `None` when the user does not exist.
fn decode_user_fields(
    id: UserId,
    key: &str,
    fields: HashMap<String, String>,
) -> Result<Option<UserRecord>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    decode_user(id, key, fields).map(Some)
}

fn hmget_public_fields(key: &str) -> redis::Cmd {
    let mut hmget = redis::cmd("HMGET");
    hmget.arg(key).arg(&PUBLIC_FIELDS[..]);
    hmget
}

/// The reply to [`hmget_public_fields`]: `None` when the user does not exist.
fn decode_public_values(
    id: UserId,
    key: &str,
    values: Vec<Option<String>>,
) -> Result<Option<User>, StoreError> {
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let fields = PUBLIC_FIELDS
        .iter()
        .zip(values)
        .filter_map(|(field, value)| Some(((*field).to_owned(), value?)))
        .collect();
    decode_public_user(id, &mut StoredFields { key, fields }).map(Some)
}

pub(super) fn decode_user(
    id: UserId,
    key: &str,
    fields: HashMap<String, String>,
) -> Result<UserRecord, StoreError> {
    let mut fields = StoredFields { key, fields };
    Ok(UserRecord {
        user: decode_public_user(id, &mut fields)?,
        password_hash: StoredPasswordHash::join(
            &fields.take(PASSWORD_PARAMS)?,
            &fields.take(PASSWORD_SALT)?,
            &fields.take(PASSWORD_HASH)?,
        ),
    })
}

fn decode_public_user(id: UserId, fields: &mut StoredFields<'_>) -> Result<User, StoreError> {
    Ok(User {
        id,
        name: fields.take_parsed(NAME, UserName::parse)?,
        email: fields.take_parsed(EMAIL, UserEmail::parse)?,
        created: fields.take_time(CREATED)?,
        updated: fields.take_time(UPDATED)?,
    })
}

/// The fields of a hash read from Redis, taken one by one; a missing or
/// unreadable field is a [`StoreError::Corrupt`] naming the key.
pub(super) struct StoredFields<'k> {
    pub(super) key: &'k str,
    pub(super) fields: HashMap<String, String>,
}

impl StoredFields<'_> {
    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            key: self.key.to_owned(),
            reason,
        }
    }

    pub(super) fn take(&mut self, field: &str) -> Result<String, StoreError> {
        self.fields
            .remove(field)
            .ok_or_else(|| self.corrupt(format!("field {field} is missing")))
    }

    pub(super) fn take_parsed<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        let raw = self.take(field)?;
        parse(&raw).map_err(|reason| self.corrupt(format!("{field} {reason}")))
    }

    pub(super) fn take_time(&mut self, field: &str) -> Result<DateTime<Utc>, StoreError> {
        self.take_parsed(field, |raw| {
            decode_time(raw).ok_or_else(|| "is not a time".into())
        })
    }
}

/// Times are stored as Unix milliseconds: compact, and exact to the ms.
pub(super) fn encode_time(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(super) fn decode_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(raw.parse().ok()?)
}

fn find_id_by_email(
    conn: &mut Connection,
    keys: &Keys,
    email: &UserEmail,
) -> Result<Option<UserId>, StoreError> {
    Ok(first_id(email_lookup(keys, email).query(conn)?))
}

/// The index member for `email`, if any: at most one.
pub(super) fn email_lookup(keys: &Keys, email: &UserEmail) -> redis::Cmd {
    let (min, max) = exact_email_range(email);
    redis::cmd("ZRANGEBYLEX")
        .arg(keys.email_index())
        .arg(min)
        .arg(max)
        .arg("LIMIT")
        .arg(0)
        .arg(1)
        .take()
}

/// The user id in the reply to [`email_lookup`].
pub(super) fn first_id(members: Vec<String>) -> Option<UserId> {
    members
        .first()
        .and_then(|member| parse_index_member(member))
        .map(|(_, id)| id)
}

/// What a transaction attempt decided after reading under WATCH.
pub(super) enum Plan<T> {
    /// Run these commands in MULTI/EXEC; on success, answer `T`.
    Write(Pipeline, T),
    /// Nothing to write: answer `T` at once.
    Answer(T),
}

/// Runs optimistic transactions: WATCH `watched`, let `plan` read and decide,
/// then EXEC its writes. An EXEC aborted by a concurrent write to a watched
/// key starts over, at most [`MAX_TRANSACTION_ATTEMPTS`] times.
pub(super) fn transact<T>(
    conn: &mut Connection,
    watched: &str,
    mut plan: impl FnMut(&mut Connection) -> Result<Plan<T>, StoreError>,
) -> Result<T, StoreError> {
    for attempt in 0..MAX_TRANSACTION_ATTEMPTS {
        redis::cmd("WATCH").arg(watched).exec(conn)?;
        match plan(conn) {
            Ok(Plan::Write(mut writes, answer)) => {
                let committed: Option<Value> = writes.atomic().query(conn)?;
                if committed.is_some() {
                    return Ok(answer);
                }
            }
            Ok(Plan::Answer(answer)) => {
                redis::cmd("UNWATCH").exec(conn)?;
                return Ok(answer);
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

/// Adds to a transaction that puts `email` in the index the write that
/// aborts every other transaction watching that email's claim key. The key
/// is set and deleted at once: nothing stays in Redis.
pub(super) fn claim_email(writes: &mut Pipeline, keys: &Keys, email: &UserEmail) {
    let claim = keys.email_claim(email);
    writes
        .cmd("SET")
        .arg(&claim)
        .arg(1)
        .ignore()
        .cmd("DEL")
        .arg(&claim)
        .ignore();
}

fn watch(conn: &mut Connection, key: &str) -> Result<(), StoreError> {
    Ok(redis::cmd("WATCH").arg(key).exec(conn)?)
}

fn create_user(conn: &mut Connection, keys: &Keys, record: &UserRecord) -> Result<(), StoreError> {
    let user = &record.user;
    let password = StoredPasswordHash::split(&record.password_hash)?;
    let index = keys.email_index();
    transact(conn, &keys.email_claim(&user.email), |conn| {
        if find_id_by_email(conn, keys, &user.email)?.is_some() {
            return Err(StoreError::EmailInUse);
        }
        let mut hset = redis::cmd("HSET");
        hset.arg(keys.user(user.id))
            .arg(NAME)
            .arg(user.name.as_str())
            .arg(EMAIL)
            .arg(user.email.as_str())
            .arg(CREATED)
            .arg(encode_time(user.created))
            .arg(UPDATED)
            .arg(encode_time(user.updated));
        password.add_fields(&mut hset);
        let mut writes = redis::pipe();
        writes
            .add_command(hset)
            .ignore()
            .cmd("ZADD")
            .arg(&index)
            .arg(0)
            .arg(index_member(&user.email, user.id))
            .ignore();
        claim_email(&mut writes, keys, &user.email);
        events::record(&mut writes, keys, EventKind::Created, user.id, user.created);
        Ok(Plan::Write(writes, ()))
    })
}

/// Why a write conditional on the verified password hash did not happen.
enum Refusal {
    Missing,
    PasswordChanged,
}

impl<T> From<Refusal> for Written<T> {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Missing => Written::Missing,
            Refusal::PasswordChanged => Written::PasswordChanged,
        }
    }
}

/// Reads the user under WATCH and checks it is still the one whose password
/// the caller verified.
fn read_verified(
    conn: &mut Connection,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
) -> Result<Result<User, Refusal>, StoreError> {
    Ok(match read_user(conn, keys, id)? {
        None => Err(Refusal::Missing),
        Some(record) if &record.password_hash != verified => Err(Refusal::PasswordChanged),
        Some(record) => Ok(record.user),
    })
}

fn update_profile(
    conn: &mut Connection,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
    name: UserName,
    email: UserEmail,
) -> Result<Written<User>, StoreError> {
    let key = keys.user(id);
    let index = keys.email_index();
    transact(conn, &key, |conn| {
        let current = match read_verified(conn, keys, id, verified)? {
            Ok(user) => user,
            Err(refusal) => return Ok(Plan::Answer(refusal.into())),
        };
        let email_changes = current.email != email;
        if email_changes {
            watch(conn, &keys.email_claim(&email))?;
            if find_id_by_email(conn, keys, &email)?.is_some_and(|owner| owner != id) {
                return Err(StoreError::EmailInUse);
            }
        }
        let updated = User {
            name: name.clone(),
            email: email.clone(),
            updated: now().max(current.updated),
            ..current.clone()
        };
        let mut writes = redis::pipe();
        writes
            .cmd("HSET")
            .arg(&key)
            .arg(NAME)
            .arg(updated.name.as_str())
            .arg(EMAIL)
            .arg(updated.email.as_str())
            .arg(UPDATED)
            .arg(encode_time(updated.updated))
            .ignore();
        if email_changes {
            writes
                .cmd("ZREM")
                .arg(&index)
                .arg(index_member(&current.email, id))
                .ignore()
                .cmd("ZADD")
                .arg(&index)
                .arg(0)
                .arg(index_member(&updated.email, id))
                .ignore();
            claim_email(&mut writes, keys, &updated.email);
        }
        events::record(
            &mut writes,
            keys,
            EventKind::ProfileUpdated,
            id,
            updated.updated,
        );
        Ok(Plan::Write(writes, Written::Done(updated)))
    })
}

fn replace_password_hash(
    conn: &mut Connection,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
    new_hash: &PasswordHash,
    reason: HashReplacement,
) -> Result<Written<()>, StoreError> {
    let key = keys.user(id);
    let password = StoredPasswordHash::split(new_hash)?;
    transact(conn, &key, |conn| {
        let current = match read_verified(conn, keys, id, verified)? {
            Ok(user) => user,
            Err(refusal) => return Ok(Plan::Answer(refusal.into())),
        };
        let updated = now().max(current.updated);
        let mut hset = redis::cmd("HSET");
        hset.arg(&key);
        password.add_fields(&mut hset);
        let mut writes = redis::pipe();
        match reason {
            HashReplacement::PasswordChange => {
                hset.arg(UPDATED).arg(encode_time(updated));
                writes.add_command(hset).ignore();
                let sessions = live_session_ids(conn, keys, id)?;
                revoke_all(&mut writes, keys, id, &sessions);
                events::record(&mut writes, keys, EventKind::PasswordChanged, id, updated);
            }
            HashReplacement::Rehash => {
                writes.add_command(hset).ignore();
            }
        }
        Ok(Plan::Write(writes, Written::Done(())))
    })
}

/// WATCHes the user's session set and reads it, so a login that adds a
/// session meanwhile aborts the transaction that revokes them all.
fn live_session_ids(
    conn: &mut Connection,
    keys: &Keys,
    id: UserId,
) -> Result<Vec<String>, StoreError> {
    let set = keys.sessions_of(id);
    watch(conn, &set)?;
    Ok(redis::cmd("SMEMBERS").arg(&set).query(conn)?)
}

fn delete_user(
    conn: &mut Connection,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
) -> Result<Written<User>, StoreError> {
    let key = keys.user(id);
    transact(conn, &key, |conn| {
        let current = match read_verified(conn, keys, id, verified)? {
            Ok(user) => user,
            Err(refusal) => return Ok(Plan::Answer(refusal.into())),
        };
        let sessions = live_session_ids(conn, keys, id)?;
        let mut writes = redis::pipe();
        writes
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .cmd("ZREM")
            .arg(keys.email_index())
            .arg(index_member(&current.email, id))
            .ignore();
        revoke_all(&mut writes, keys, id, &sessions);
        events::record(&mut writes, keys, EventKind::Deleted, id, now());
        Ok(Plan::Write(writes, Written::Done(current)))
    })
}

async fn list_users(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    query: &ListQuery,
) -> Result<UserPage, StoreError> {
    let index = keys.email_index();
    let (min, max) = email_prefix_range(&query.prefix, query.after.as_deref());
    let mut lookup = redis::pipe();
    // One extra member tells whether another page follows.
    lookup
        .cmd("ZRANGEBYLEX")
        .arg(&index)
        .arg(min)
        .arg(max)
        .arg("LIMIT")
        .arg(0)
        .arg(query.limit + 1);
    if query.prefix.is_empty() {
        lookup.cmd("ZCARD").arg(&index);
    } else {
        let (min, max) = email_prefix_range(&query.prefix, None);
        lookup.cmd("ZLEXCOUNT").arg(&index).arg(min).arg(max);
    }
    let (mut members, total): (Vec<String>, usize) = lookup.query_async(conn).await?;
    let next = if members.len() > query.limit {
        members.truncate(query.limit);
        members.last().cloned()
    } else {
        None
    };

    let ids: Vec<UserId> = members
        .iter()
        .filter_map(|member| parse_index_member(member).map(|(_, id)| id))
        .collect();
    let mut fetch = redis::pipe();
    for id in &ids {
        fetch.add_command(hmget_public_fields(&keys.user(*id)));
    }
    let replies: Vec<Vec<Option<String>>> = if ids.is_empty() {
        Vec::new()
    } else {
        fetch.query_async(conn).await?
    };
    let users = ids
        .into_iter()
        .zip(replies)
        .map(|(id, values)| decode_public_values(id, &keys.user(id), values))
        // A user deleted between the two round trips is left out.
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    Ok(UserPage { users, total, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$\
                       aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

    #[test]
    fn a_phc_string_splits_into_parts_that_join_back_to_it() {
        let hash = PasswordHash::from_phc(PHC.into());
        let parts = StoredPasswordHash::split(&hash).expect("a PHC string");
        assert_eq!(parts.params, "$argon2id$v=19$m=19456,t=2,p=1");
        assert_eq!(parts.salt, "c2FsdHNhbHRzYWx0c2FsdA");
        let joined = StoredPasswordHash::join(parts.params, parts.salt, parts.hash);
        assert_eq!(joined.as_phc(), PHC);
    }

    #[test]
    fn every_stored_part_fits_the_compact_hash_encoding() {
        let hash = PasswordHash::from_phc(PHC.into());
        let parts = StoredPasswordHash::split(&hash).expect("a PHC string");
        for part in [parts.params, parts.salt, parts.hash] {
            assert!(part.len() <= 64, "{part}");
        }
    }

    #[test]
    fn a_string_without_salt_and_hash_is_refused() {
        let hash = PasswordHash::from_phc("not-a-phc-string".into());
        assert!(StoredPasswordHash::split(&hash).is_err());
    }
}
