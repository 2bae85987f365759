//! argon2id hashing and verification, off the async workers and bounded.
//!
//! Each hash takes tens of milliseconds of one core. Running them on Rocket's
//! async workers would stall every other request, and running unboundedly
//! many on the blocking pool would let a burst of sign-ups starve reads of
//! CPU. So every job waits for one of `max_concurrent` permits, then runs on
//! the blocking pool.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rocket::tokio::sync::{OnceCell, Semaphore};
use rocket::tokio::task;

use crate::config::HashingSettings;
use crate::domain::{Password, PasswordHash};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("argon2 failed: {0}")]
    Argon2(password_hash::Error),
    #[error("the hashing task did not finish: {0}")]
    Task(#[from] task::JoinError),
    #[error("the hashing queue is closed")]
    Closed,
}

pub struct PasswordHasher {
    params: Params,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    /// Verified against when a login names no user, so that case costs the
    /// same argon2 work as a wrong password.
    dummy_hash: OnceCell<PasswordHash>,
}

impl PasswordHasher {
    pub fn new(settings: &HashingSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            params: settings.params.clone(),
            metrics,
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            dummy_hash: OnceCell::new(),
        }
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, HashingError> {
        let argon2 = self.argon2();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|hash| PasswordHash::from_phc(hash.to_string()))
                .map_err(HashingError::Argon2)
        })
        .await
    }

    /// Whether `password` matches `hash`, with the parameters stored in the hash.
    pub async fn verify(
        &self,
        password: Password,
        hash: PasswordHash,
    ) -> Result<bool, HashingError> {
        let argon2 = self.argon2();
        self.run(move || {
            let parsed =
                password_hash::PasswordHash::new(hash.as_phc()).map_err(HashingError::Argon2)?;
            match argon2.verify_password(password.expose().as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(password_hash::Error::Password) => Ok(false),
                Err(error) => Err(HashingError::Argon2(error)),
            }
        })
        .await
    }

    /// A hash of a random password, made with the configured parameters.
    pub async fn dummy_hash(&self) -> Result<PasswordHash, HashingError> {
        self.dummy_hash
            .get_or_try_init(|| self.hash(Password::candidate(&uuid::Uuid::new_v4().to_string())))
            .await
            .cloned()
    }

    /// Whether `hash` was made with other parameters than the configured
    /// ones, and should be replaced at the next successful login.
    pub fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        let Ok(parsed) = password_hash::PasswordHash::new(hash.as_phc()) else {
            return true;
        };
        let current = Params::try_from(&parsed);
        parsed.algorithm != Algorithm::Argon2id.ident()
            || parsed.version != Some(Version::V0x13.into())
            || current.map_or(true, |params| {
                (params.m_cost(), params.t_cost(), params.p_cost())
                    != (
                        self.params.m_cost(),
                        self.params.t_cost(),
                        self.params.p_cost(),
                    )
            })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, HashingError> + Send + 'static,
    ) -> Result<T, HashingError> {
        self.metrics.argon2_waiting.inc();
        let permit = self.permits.acquire().await;
        self.metrics.argon2_waiting.dec();
        let _permit = permit.map_err(|_| HashingError::Closed)?;
        self.metrics.argon2_running.inc();
        let result = task::spawn_blocking(job).await;
        self.metrics.argon2_running.dec();
        result?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(
            &HashingSettings::new(1024, 1, 1, 2).expect("valid parameters"),
            Arc::new(Metrics::new().expect("metrics")),
        )
    }

    #[rocket::async_test]
    async fn hashes_are_argon2id_phc_strings_with_the_configured_cost() {
        let hash = hasher()
            .hash(Password::parse("correct horse").expect("valid"))
            .await
            .expect("hashed");
        assert!(
            hash.as_phc().starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{}",
            hash.as_phc()
        );
    }

    #[rocket::async_test]
    async fn a_hash_with_other_parameters_needs_rehashing() {
        let cheap = hasher();
        let hash = cheap
            .hash(Password::parse("correct horse").expect("valid"))
            .await
            .expect("hashed");
        assert!(!cheap.needs_rehash(&hash));
        let costlier = PasswordHasher::new(
            &HashingSettings::new(2048, 1, 1, 2).expect("valid"),
            Arc::new(Metrics::new().expect("metrics")),
        );
        assert!(costlier.needs_rehash(&hash));
    }

    #[rocket::async_test]
    async fn the_dummy_hash_has_the_configured_parameters() {
        let hasher = hasher();
        let dummy = hasher.dummy_hash().await.expect("hashed");
        assert!(!hasher.needs_rehash(&dummy));
        assert_eq!(
            dummy,
            hasher.dummy_hash().await.expect("hashed"),
            "made once"
        );
    }

    #[rocket::async_test]
    async fn the_same_password_gets_a_different_salt_each_time() {
        let hasher = hasher();
        let password = Password::parse("correct horse").expect("valid");
        let first = hasher.hash(password.clone()).await.expect("hashed");
        let second = hasher.hash(password).await.expect("hashed");
        assert_ne!(first, second);
    }

    #[rocket::async_test]
    async fn verify_accepts_the_right_password_and_rejects_others() {
        let hasher = hasher();
        let hash = hasher
            .hash(Password::parse("correct horse").expect("valid"))
            .await
            .expect("hashed");
        assert!(hasher
            .verify(Password::candidate("correct horse"), hash.clone())
            .await
            .expect("verified"));
        assert!(!hasher
            .verify(Password::candidate("wrong horse"), hash)
            .await
            .expect("verified"));
    }
}
