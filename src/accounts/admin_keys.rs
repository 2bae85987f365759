//! Admin keys: created, listed and revoked by operators with the command
//! line, and checked on every request that carries one.
//!
//! A known key is answered from memory for [`CACHE_FOR`], so checking it
//! costs no Redis round trip; after that it is looked up again, so a
//! revoked key stops working within that time on every instance. A key the
//! cache does not know is looked up at once: a new key works as soon as it
//! is created. Each look-up also notes the key's last use, off the
//! request's path, so `last used` is exact to about [`CACHE_FOR`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rocket::tokio::task;

use super::{AccountError, Accounts};
use crate::domain::{AdminKey, AdminKeyDigest, KeyName, KeyScope};

/// How long a checked key is trusted without asking Redis again.
const CACHE_FOR: Duration = Duration::from_secs(2);

/// An admin key as operators see it: never the key itself.
pub struct AdminKeyInfo {
    pub name: KeyName,
    pub scope: KeyScope,
    pub created: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
}

/// The keys checked lately. Only keys that exist are kept, so the cache
/// holds at most as many entries as there are keys.
#[derive(Default)]
pub(super) struct KeyCache {
    known: Mutex<HashMap<AdminKeyDigest, (KeyScope, Instant)>>,
}

impl KeyCache {
    fn fresh(&self, digest: &AdminKeyDigest) -> Option<KeyScope> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get(digest)
            .filter(|(_, checked)| checked.elapsed() < CACHE_FOR)
            .map(|(scope, _)| *scope)
    }

    fn remember(&self, digest: AdminKeyDigest, scope: Option<KeyScope>) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        match scope {
            Some(scope) => known.insert(digest, (scope, Instant::now())),
            None => known.remove(&digest),
        };
    }
}

impl Accounts {
    /// Creates a key and returns it: the only time it is ever shown.
    pub async fn create_admin_key(
        &self,
        name: KeyName,
        scope: KeyScope,
    ) -> Result<AdminKey, AccountError> {
        let key = AdminKey::generate();
        let created = self
            .store
            .connection()
            .create_admin_key(name.clone(), scope, key.digest())
            .await?;
        if created {
            Ok(key)
        } else {
            Err(AccountError::KeyNameTaken(name.to_string()))
        }
    }

    pub async fn admin_keys(&self) -> Result<Vec<AdminKeyInfo>, AccountError> {
        let records = self.store.connection().admin_keys().await?;
        Ok(records
            .into_iter()
            .map(|record| AdminKeyInfo {
                name: record.name,
                scope: record.scope,
                created: record.created,
                last_used: record.last_used,
            })
            .collect())
    }

    pub async fn revoke_admin_key(&self, name: KeyName) -> Result<(), AccountError> {
        let revoked = self
            .store
            .connection()
            .revoke_admin_key(name.clone())
            .await?;
        if revoked {
            Ok(())
        } else {
            Err(AccountError::KeyNotFound(name.to_string()))
        }
    }

    /// The scope of `key`, when it exists.
    pub(super) async fn key_scope(&self, key: &AdminKey) -> Result<Option<KeyScope>, AccountError> {
        let digest = key.digest();
        if let Some(scope) = self.admin_keys.fresh(&digest) {
            return Ok(Some(scope));
        }
        let conn = self.store.connection();
        let scope = conn.admin_key_scope(&digest).await?;
        if scope.is_some() {
            // Off the request's path: a Redis that takes no writes for a
            // while must not hold up reads, and a lost note harms nothing.
            let digest = digest.clone();
            task::spawn(async move { conn.note_admin_key_use(&digest).await });
        }
        self.admin_keys.remember(digest, scope);
        Ok(scope)
    }
}
