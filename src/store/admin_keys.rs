//! Admin keys: a hash per key under its digest, and a hash from names to
//! digests so operators can list and revoke keys by name.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;

use crate::domain::{now, AdminKeyDigest, KeyName, KeyScope};
use crate::store::layout::{admin_key_fields, Keys};
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::link::{query_each, Link};
use crate::store::plumbing::records::{encode_time, StoredFields};
use crate::store::plumbing::transaction::{transact, Plan, Writes};
use crate::store::StoreError;

/// An admin key as listed: never the key itself.
#[derive(Clone, Debug)]
pub struct AdminKeyRecord {
    pub name: KeyName,
    pub scope: KeyScope,
    pub created: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
}

/// KEYS[1]: the key's hash. ARGV: now (ms) and the last-used field's name.
/// Notes a use of a key that still exists, and never brings back a revoked
/// one.
const NOTE_USE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
end
return 0
";

static NOTE_USE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(NOTE_USE));

impl RedisConn {
    /// Stores a new key; `false` when the name is taken.
    pub async fn create_admin_key(
        &mut self,
        name: KeyName,
        scope: KeyScope,
        digest: AdminKeyDigest,
    ) -> Result<bool, StoreError> {
        self.run(move |conn, keys| create_admin_key(conn, keys, &name, scope, &digest))
            .await
    }

    /// Every key, by name.
    pub async fn admin_keys(&mut self) -> Result<Vec<AdminKeyRecord>, StoreError> {
        self.run(list_admin_keys).await
    }

    /// Removes the key named `name`; `false` when there is none.
    pub async fn revoke_admin_key(&mut self, name: KeyName) -> Result<bool, StoreError> {
        self.run(move |conn, keys| revoke_admin_key(conn, keys, &name))
            .await
    }

    /// The scope of the key with `digest`; `None` when no such key exists
    /// (any more).
    pub async fn admin_key_scope(
        &self,
        digest: &AdminKeyDigest,
    ) -> Result<Option<KeyScope>, StoreError> {
        let key = self.keys.admin_key(digest);
        let key = &key;
        let scope: Option<String> = self
            .read(|mut conn| async move {
                Ok(redis::cmd("HGET")
                    .arg(key)
                    .arg(admin_key_fields::SCOPE)
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        scope
            .map(|raw| {
                KeyScope::parse(&raw).ok_or_else(|| StoreError::Corrupt {
                    key: key.clone(),
                    reason: format!("scope {raw:?} is unknown"),
                })
            })
            .transpose()
    }

    /// Notes that the key with `digest` was used just now.
    pub async fn note_admin_key_use(&self, digest: &AdminKeyDigest) -> Result<(), StoreError> {
        let key = self.keys.admin_key(digest);
        let key = &key;
        self.script(|mut conn| async move {
            Ok(NOTE_USE_SCRIPT
                .key(key)
                .arg(encode_time(now()))
                .arg(admin_key_fields::LAST_USED)
                .invoke_async(&mut conn)
                .await?)
        })
        .await
    }
}

fn create_admin_key(
    conn: &mut Link,
    keys: &Keys,
    name: &KeyName,
    scope: KeyScope,
    digest: &AdminKeyDigest,
) -> Result<bool, StoreError> {
    let by_name = keys.admin_keys_by_name();
    transact(conn, |tx| {
        let taken: bool = tx.read(redis::cmd("HEXISTS").arg(&by_name).arg(name.as_str()))?;
        if taken {
            return Ok(Plan::Answer(false));
        }
        let mut writes = Writes::new();
        writes
            .cmd("HSET")
            .arg(keys.admin_key(digest))
            .arg(admin_key_fields::NAME)
            .arg(name.as_str())
            .arg(admin_key_fields::SCOPE)
            .arg(scope.as_str())
            .arg(admin_key_fields::CREATED)
            .arg(encode_time(now()))
            .ignore()
            .cmd("HSET")
            .arg(&by_name)
            .arg(name.as_str())
            .arg(digest.as_str())
            .ignore();
        Ok(Plan::Write(writes, true))
    })
}

fn list_admin_keys(conn: &mut Link, keys: &Keys) -> Result<Vec<AdminKeyRecord>, StoreError> {
    let by_name: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.admin_keys_by_name())
        .query(conn)?;
    let mut digests: Vec<String> = by_name.into_values().collect();
    digests.sort();
    let fetch = digests
        .iter()
        .map(|digest| {
            let mut fetch = redis::cmd("HGETALL");
            fetch.arg(admin_key_hash(keys, digest)?);
            Ok(fetch)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let hashes: Vec<HashMap<String, String>> = query_each(conn, &fetch)?;
    let mut records = digests
        .iter()
        .zip(hashes)
        // A key revoked between the two reads is left out.
        .filter(|(_, fields)| !fields.is_empty())
        .map(|(digest, fields)| decode_admin_key(&admin_key_hash(keys, digest)?, fields))
        .collect::<Result<Vec<_>, _>>()?;
    records.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(records)
}

fn admin_key_hash(keys: &Keys, digest: &str) -> Result<String, StoreError> {
    AdminKeyDigest::parse(digest)
        .map(|digest| keys.admin_key(&digest))
        .ok_or_else(|| StoreError::Corrupt {
            key: keys.admin_keys_by_name(),
            reason: format!("{digest:?} is no key digest"),
        })
}

fn decode_admin_key(
    key: &str,
    fields: HashMap<String, String>,
) -> Result<AdminKeyRecord, StoreError> {
    let mut fields = StoredFields::new(key, fields);
    Ok(AdminKeyRecord {
        name: fields.take_parsed(admin_key_fields::NAME, KeyName::parse)?,
        scope: fields.take_parsed(admin_key_fields::SCOPE, |raw| {
            KeyScope::parse(raw).ok_or_else(|| "is no scope".into())
        })?,
        created: fields.take_time(admin_key_fields::CREATED)?,
        last_used: fields.take_optional_time(admin_key_fields::LAST_USED)?,
    })
}

fn revoke_admin_key(conn: &mut Link, keys: &Keys, name: &KeyName) -> Result<bool, StoreError> {
    let by_name = keys.admin_keys_by_name();
    transact(conn, |tx| {
        let digest: Option<String> =
            tx.read(redis::cmd("HGET").arg(&by_name).arg(name.as_str()))?;
        let Some(digest) = digest else {
            return Ok(Plan::Answer(false));
        };
        let mut writes = Writes::new();
        writes
            .cmd("DEL")
            .arg(admin_key_hash(keys, &digest)?)
            .ignore()
            .cmd("HDEL")
            .arg(&by_name)
            .arg(name.as_str())
            .ignore();
        Ok(Plan::Write(writes, true))
    })
}
