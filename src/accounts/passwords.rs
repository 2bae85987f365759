//! Every password check, login or proof of a change, goes through here:
//! the attempt is counted by the limiter before argon2 runs.

use super::{AccountError, Accounts};
use crate::domain::{ClientAddress, Password, PasswordHash, UserEmail};
use crate::store::Admission;

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
        // Each step takes a pooled connection of its own: none is held
        // while argon2 runs.
        let admission = self
            .store
            .connection()
            .admit_password_attempt(email, address, &self.policy.login)
            .await?;
        if let Admission::Refused { retry_after } = admission {
            return Err(AccountError::TooManyAttempts { retry_after });
        }
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
            self.store
                .connection()
                .password_attempt_succeeded(email, address)
                .await?;
        }
        Ok(matches)
    }
}
