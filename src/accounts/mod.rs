//! The service layer: every operation on accounts, sessions and the
//! service's own health, in as many store steps as it takes. Routes call
//! only this; it calls the store, the hasher and the domain.
//!
//! - `access`: who the caller is, and what each kind of caller may do.
//! - `admin_keys`: creating, listing, revoking and checking admin keys.
//! - `codes`: email verification and password reset by one-time codes.
//! - `login_limits`: every password check, through the attempt limiter.
//! - `reverts`: undoing an email change from the old address.
//! - `users`: sign-up, reads, the list, profile and password changes,
//!   deletion, disabling.
//! - `sessions`: log in, check a token, list and end sessions, activity.
//! - `operations`: readiness and the pool figures for metrics.
//! - `mail`: whether mail is on, a message queued on its own, the dead
//!   letters.

mod access;
mod admin_keys;
mod codes;
mod login_limits;
mod mail;
mod operations;
mod reverts;
mod sessions;
mod users;

use std::sync::Arc;
use std::time::Duration;

use rocket::tokio;
use tokio_util::task::TaskTracker;

use crate::config::{AccessSettings, CodeSettings, LogFormat, LoginSettings, SessionSettings};
use crate::domain::{CodeSecret, Password, User, UserEmail, UserId, UserName};
use crate::hashing::{HashingError, PasswordHasher};
use crate::logging::log_line;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, Written};

pub use access::{Absence, Caller};
pub use admin_keys::AdminKeyInfo;
pub use mail::TestMail;
pub use operations::{PoolFigures, Readiness};
pub use sessions::{Client, NewSession};
pub use users::{NewUser, SignedUp, UserList};

pub use crate::store::MailCounts;

/// The service layer's one error type. Its message is what clients read;
/// the causes of the last three go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("id {0} not found")]
    NotFound(String),
    #[error("user {0} not found")]
    EmailNotFound(String),
    #[error("session {0} not found")]
    SessionNotFound(String),
    /// No usable credential where one is needed.
    #[error("{0}")]
    Unauthenticated(Absence),
    /// A login whose email or password is wrong (which one, it never says).
    #[error("wrong email or password")]
    WrongLogin,
    /// A current password, sent to prove a change, that is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("sign-up is closed: only an admin key creates users")]
    SignupClosed,
    /// A credential that may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("this change needs a recent login or the current password")]
    ReauthenticationRequired,
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("this account's email is not verified yet")]
    EmailNotVerified,
    #[error("the code is invalid or has expired")]
    InvalidCode,
    #[error("too many code requests from this address; retry later")]
    TooManyCodeRequests { retry_after: Duration },
    #[error("too many wrong codes for this account today; retry later")]
    TooManyWrongCodes { retry_after: Duration },
    #[error("this account changed its email as often as a day allows; retry later")]
    TooManyEmailChanges { retry_after: Duration },
    #[error("an admin key named {0} exists already")]
    KeyNameTaken(String),
    #[error("no admin key is named {0}")]
    KeyNotFound(String),
    #[error("email already in use")]
    EmailInUse,
    /// A field of the request that only the service can judge.
    #[error("{field} {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("too many failed logins; retry later")]
    TooManyAttempts { retry_after: Duration },
    #[error("the account changed during the request; retry")]
    PasswordKeptChanging,
    #[error("the user store is unavailable ({}); retry later", .0.summary())]
    StoreUnavailable(#[source] StoreError),
    #[error("too many passwords are waiting to be checked; retry later")]
    HashingBusy(#[source] HashingError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<StoreError> for AccountError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailInUse => Self::EmailInUse,
            error if error.is_unavailable() => Self::StoreUnavailable(error),
            error => Self::Internal(error.into()),
        }
    }
}

impl From<HashingError> for AccountError {
    fn from(error: HashingError) -> Self {
        match error {
            HashingError::QueueFull(_) => Self::HashingBusy(error),
            error => Self::Internal(error.into()),
        }
    }
}

/// A password change between our check and our write makes the write start
/// over (and the check then fails if the old password no longer holds).
const MAX_ATTEMPTS: usize = 3;

/// Session, login, access and code settings.
pub struct AuthPolicy {
    pub sessions: SessionSettings,
    pub login: LoginSettings,
    pub access: AccessSettings,
    pub codes: CodeSettings,
    /// The key codes are hashed under: `TOKEN_SECRET`, or one made at start.
    pub code_secret: CodeSecret,
}

/// The service, shared by every request.
pub struct Accounts {
    store: Store,
    hasher: PasswordHasher,
    policy: AuthPolicy,
    metrics: Arc<Metrics>,
    admin_keys: admin_keys::KeyCache,
    /// On while `MAIL_URL` is set; while it is not, nothing is queued.
    mailer: mail::Mailer,
    /// The work requests left to do after their answer.
    after_answers: TaskTracker,
    log_format: LogFormat,
}

impl Accounts {
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        policy: AuthPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            hasher,
            policy,
            metrics,
            admin_keys: admin_keys::KeyCache::default(),
            mailer: mail::Mailer { enabled: false },
            after_answers: TaskTracker::new(),
            log_format: LogFormat::Text,
        }
    }

    /// The same service, logging in `format`.
    pub fn logging_as(self, log_format: LogFormat) -> Self {
        Self { log_format, ..self }
    }

    /// At shutdown: waits up to `grace` for the work requests left to do
    /// after their answer, and says when some of it is cut short.
    pub async fn finish_after_answers(&self, grace: Duration) {
        self.after_answers.close();
        if tokio::time::timeout(grace, self.after_answers.wait())
            .await
            .is_err()
        {
            log_line(
                self.log_format,
                "warn",
                &format!(
                    "{} request(s) left work undone within the shutdown grace period \
                     (a code or a sign-up not stored)",
                    self.after_answers.len()
                ),
            );
        }
    }

    /// Logs the failure of work no request waits for; the message names no
    /// secret and no email.
    fn log_failure(&self, what: &str, error: &AccountError) {
        let cause = std::error::Error::source(error)
            .map(|cause| format!(": {cause}"))
            .unwrap_or_default();
        log_line(self.log_format, "error", &format!("{what}: {error}{cause}"));
    }

    /// The same service, with mail on or off.
    pub fn sending_mail(self, enabled: bool) -> Self {
        Self {
            mailer: mail::Mailer { enabled },
            ..self
        }
    }
}

/// Rejects a weak new password. zxcvbn takes up to tens of milliseconds on a
/// long password, so it runs as a job of the hashing queue: on its threads,
/// not on an async worker, which also serves reads, nor on the blocking pool,
/// which Redis calls need; and past its limit it is refused at once (503).
async fn check_strength(
    hasher: &PasswordHasher,
    field: &'static str,
    password: &Password,
    email: &UserEmail,
    name: &UserName,
) -> Result<(), AccountError> {
    match weakness(hasher, password, Some(email), Some(name)).await? {
        None => Ok(()),
        Some(reason) => Err(AccountError::InvalidField { field, reason }),
    }
}

/// Why `password` is too weak for the user the email and name (those that
/// are known) describe; `None` when it is strong enough.
async fn weakness(
    hasher: &PasswordHasher,
    password: &Password,
    email: Option<&UserEmail>,
    name: Option<&UserName>,
) -> Result<Option<String>, AccountError> {
    Ok(hasher.check_strength(password, email, name).await?.err())
}

impl Accounts {
    /// Why `password` is too weak for a sign-up whose other fields are
    /// invalid, judged against the ones that are valid; `None` when it is
    /// strong enough. So a client learns of all its mistakes at once.
    pub async fn weakness_of(
        &self,
        password: &Password,
        email: Option<&UserEmail>,
        name: Option<&UserName>,
    ) -> Result<Option<String>, AccountError> {
        weakness(&self.hasher, password, email, name).await
    }

    /// Rejects a weak new password for `user`, naming the field
    /// `new_password`.
    async fn judge_new_password(
        &self,
        password: &Password,
        user: &User,
    ) -> Result<(), AccountError> {
        check_strength(
            &self.hasher,
            "new_password",
            password,
            &user.email,
            &user.name,
        )
        .await
    }
}

/// `Some` when the write happened, `None` when it must start over.
fn settle<T>(id: UserId, written: Written<T>) -> Result<Option<T>, AccountError> {
    match written {
        Written::Done(value) => Ok(Some(value)),
        Written::Missing => Err(AccountError::NotFound(id.to_string())),
        Written::PasswordChanged => Ok(None),
        Written::EmailChangesSpent { retry_after } => {
            Err(AccountError::TooManyEmailChanges { retry_after })
        }
    }
}
