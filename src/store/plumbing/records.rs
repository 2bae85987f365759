//! How records are written to and read from their hashes: times, the split
//! password hash, and the user and session records. A field that is missing
//! or unreadable is a [`StoreError::Corrupt`] naming the key.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::{PasswordHash, Session, SessionId, User, UserEmail, UserId, UserName};
use crate::store::layout::{session_fields, user_fields};
use crate::store::StoreError;

/// A user as stored: the public fields and the password hash.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: PasswordHash,
}

/// Times are stored as Unix milliseconds: compact, and exact to the ms.
pub(in crate::store) fn encode_time(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    raw.parse()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| "is not a time".into())
}

/// The fields of a hash read from Redis, taken one by one.
pub(in crate::store) struct StoredFields<'k> {
    key: &'k str,
    fields: HashMap<String, String>,
}

impl<'k> StoredFields<'k> {
    pub(in crate::store) fn new(key: &'k str, fields: HashMap<String, String>) -> Self {
        Self { key, fields }
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            key: self.key.to_owned(),
            reason,
        }
    }

    fn take(&mut self, field: &str) -> Result<String, StoreError> {
        self.fields
            .remove(field)
            .ok_or_else(|| self.corrupt(format!("field {field} is missing")))
    }

    pub(in crate::store) fn take_parsed<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, StoreError> {
        let raw = self.take(field)?;
        parse(&raw).map_err(|reason| self.corrupt(format!("{field} {reason}")))
    }

    /// A field that is `1` when set and absent otherwise.
    fn take_flag(&mut self, field: &str) -> Result<bool, StoreError> {
        match self.fields.remove(field).as_deref() {
            None => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(self.corrupt(format!("{field} is {other:?}, not 1"))),
        }
    }

    pub(in crate::store) fn take_time(&mut self, field: &str) -> Result<DateTime<Utc>, StoreError> {
        self.take_parsed(field, parse_time)
    }

    /// A time that may not have been set yet.
    pub(in crate::store) fn take_optional_time(
        &mut self,
        field: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.fields.contains_key(field) {
            true => self.take_time(field).map(Some),
            false => Ok(None),
        }
    }
}

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
}

/// Appends the three fields of `hash` to an HSET.
pub(in crate::store) fn add_password_fields(
    hset: &mut redis::Cmd,
    hash: &PasswordHash,
) -> Result<(), StoreError> {
    let parts = StoredPasswordHash::split(hash)?;
    hset.arg(user_fields::PASSWORD_PARAMS)
        .arg(parts.params)
        .arg(user_fields::PASSWORD_SALT)
        .arg(parts.salt)
        .arg(user_fields::PASSWORD_HASH)
        .arg(parts.hash);
    Ok(())
}

/// The HSET that stores a whole new user.
pub(in crate::store) fn hset_user(
    key: &str,
    record: &UserRecord,
) -> Result<redis::Cmd, StoreError> {
    let user = &record.user;
    let mut hset = redis::cmd("HSET");
    hset.arg(key)
        .arg(user_fields::NAME)
        .arg(user.name.as_str())
        .arg(user_fields::EMAIL)
        .arg(user.email.as_str())
        .arg(user_fields::CREATED)
        .arg(encode_time(user.created))
        .arg(user_fields::UPDATED)
        .arg(encode_time(user.updated));
    add_password_fields(&mut hset, &record.password_hash)?;
    Ok(hset)
}

pub(in crate::store) fn hgetall(key: &str) -> redis::Cmd {
    redis::cmd("HGETALL").arg(key).take()
}

/// The reply to [`hgetall`] on a user: `None` when the user does not exist.
pub(in crate::store) fn decode_user_fields(
    id: UserId,
    key: &str,
    fields: HashMap<String, String>,
) -> Result<Option<UserRecord>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    decode_user(id, key, fields).map(Some)
}

/// The HMGET of the three parts of a user's password hash.
pub(in crate::store) fn hmget_password_fields(key: &str) -> redis::Cmd {
    redis::cmd("HMGET")
        .arg(key)
        .arg(user_fields::PASSWORD_PARAMS)
        .arg(user_fields::PASSWORD_SALT)
        .arg(user_fields::PASSWORD_HASH)
        .take()
}

/// The reply to [`hmget_password_fields`]: `None` when the user does not exist.
pub(in crate::store) fn decode_password_values(
    key: &str,
    values: Vec<Option<String>>,
) -> Result<Option<PasswordHash>, StoreError> {
    match <[Option<String>; 3]>::try_from(values) {
        Ok([None, None, None]) => Ok(None),
        Ok([Some(params), Some(salt), Some(hash)]) => {
            Ok(Some(StoredPasswordHash::join(&params, &salt, &hash)))
        }
        _ => Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: "the password hash is incomplete".into(),
        }),
    }
}

pub(in crate::store) fn hmget_public_fields(key: &str) -> redis::Cmd {
    let mut hmget = redis::cmd("HMGET");
    hmget.arg(key).arg(&user_fields::PUBLIC[..]);
    hmget
}

/// The reply to [`hmget_public_fields`]: `None` when the user does not exist.
pub(in crate::store) fn decode_public_values(
    id: UserId,
    key: &str,
    values: Vec<Option<String>>,
) -> Result<Option<User>, StoreError> {
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let fields = user_fields::PUBLIC
        .iter()
        .zip(values)
        .filter_map(|(field, value)| Some(((*field).to_owned(), value?)))
        .collect();
    decode_public_user(id, &mut StoredFields::new(key, fields)).map(Some)
}

pub(in crate::store) fn decode_user(
    id: UserId,
    key: &str,
    fields: HashMap<String, String>,
) -> Result<UserRecord, StoreError> {
    let mut fields = StoredFields::new(key, fields);
    Ok(UserRecord {
        user: decode_public_user(id, &mut fields)?,
        password_hash: StoredPasswordHash::join(
            &fields.take(user_fields::PASSWORD_PARAMS)?,
            &fields.take(user_fields::PASSWORD_SALT)?,
            &fields.take(user_fields::PASSWORD_HASH)?,
        ),
    })
}

fn decode_public_user(id: UserId, fields: &mut StoredFields<'_>) -> Result<User, StoreError> {
    Ok(User {
        id,
        name: fields.take_parsed(user_fields::NAME, UserName::parse)?,
        email: fields.take_parsed(user_fields::EMAIL, UserEmail::from_stored)?,
        created: fields.take_time(user_fields::CREATED)?,
        updated: fields.take_time(user_fields::UPDATED)?,
        disabled: fields.take_flag(user_fields::DISABLED)?,
        email_verified: fields.take_flag(user_fields::EMAIL_VERIFIED)?,
    })
}

/// The HSET that stores a new session.
pub(in crate::store) fn hset_session(key: &str, session: &Session) -> redis::Cmd {
    redis::cmd("HSET")
        .arg(key)
        .arg(session_fields::USER_ID)
        .arg(session.user_id.to_string())
        .arg(session_fields::CREATED)
        .arg(encode_time(session.created))
        .arg(session_fields::LAST_SEEN)
        .arg(encode_time(session.last_seen))
        .arg(session_fields::EXPIRES_AT)
        .arg(encode_time(session.expires_at))
        .arg(session_fields::IP)
        .arg(&session.ip)
        .arg(session_fields::USER_AGENT)
        .arg(&session.user_agent)
        .take()
}

pub(in crate::store) fn decode_session(
    id: SessionId,
    key: &str,
    fields: HashMap<String, String>,
) -> Result<Session, StoreError> {
    let mut fields = StoredFields::new(key, fields);
    Ok(Session {
        id,
        user_id: fields.take_parsed(session_fields::USER_ID, |raw| {
            UserId::parse(raw).ok_or_else(|| "is not a UUID".into())
        })?,
        created: fields.take_time(session_fields::CREATED)?,
        last_seen: fields.take_time(session_fields::LAST_SEEN)?,
        expires_at: fields.take_time(session_fields::EXPIRES_AT)?,
        ip: fields.take(session_fields::IP)?,
        user_agent: fields.take(session_fields::USER_AGENT)?,
    })
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
