//! Every password check, login or proof of a change, goes through here:
//! the attempt is counted by the limiter before argon2 runs.

use super::{AccountError, Accounts};
use crate::domain::{ClientAddress, Password, PasswordHash, UserEmail};
use crate::store::{Admission, AttemptProof};

impl Accounts {
    /// Whether `password` matches `hash`, the stored hash of `email`'s user
    /// (`None` when there is no such user: then a dummy hash costs the same
    /// work, and the answer is no). Past a limit of the attempt limiter,
    /// 429 before any work.
    pub(super) async fn check_password(
        &self,
        email: &UserEmail,
        address: &ClientAddress,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, AccountError> {
        self.admit_attempt(email, address, AttemptProof::Password)
            .await?;
        let matches = match hash {
            Some(hash) => self.hasher.verify(password, hash).await?,
            None => {
                self.hasher
                    .verify(password, self.hasher.dummy_hash().await?)
                    .await?;
                false
            }
        };
        if matches {
            self.attempt_succeeded(email, address, AttemptProof::Password)
                .await?;
        }
        Ok(matches)
    }

    /// Counts an attempt to prove `email` (a password, a code) from
    /// `address`; past a limit, 429.
    pub(super) async fn admit_attempt(
        &self,
        email: &UserEmail,
        address: &ClientAddress,
        proof: AttemptProof,
    ) -> Result<(), AccountError> {
        let admission = self
            .store
            .connection()
            .admit_password_attempt(email, address, &self.policy.login, proof)
            .await?;
        match admission {
            Admission::Admitted => Ok(()),
            Admission::Refused { retry_after } => {
                Err(AccountError::TooManyAttempts { retry_after })
            }
        }
    }

    /// The attempt admitted for `email` from `address` was right.
    pub(super) async fn attempt_succeeded(
        &self,
        email: &UserEmail,
        address: &ClientAddress,
        proof: AttemptProof,
    ) -> Result<(), AccountError> {
        Ok(self
            .store
            .connection()
            .password_attempt_succeeded(email, address, proof)
            .await?)
    }
}
