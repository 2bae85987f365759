//! The account operations that need more than one step: hash or verify a
//! password, then write. Reads take no pooled connection and each write step
//! takes its own, so no connection sits idle while argon2 runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::tokio::task::{self, JoinError};

use crate::config::{LoginSettings, SessionSettings};
use crate::domain::{now, Password, SessionToken, User, UserEmail, UserId, UserName};
use crate::hashing::{HashingError, PasswordHasher};
use crate::metrics::Metrics;
use crate::store::{HashReplacement, SessionRecord, Store, StoreError, UserRecord, Written};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("id {0} not found")]
    NotFound(UserId),
    #[error("user not authenticated")]
    Unauthenticated,
    #[error("the password {reason}")]
    WeakPassword { field: &'static str, reason: String },
    #[error("too many failed logins")]
    TooManyAttempts { retry_after: Duration },
    #[error("the password kept changing during the request")]
    PasswordKeptChanging,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error("the password strength check did not finish: {0}")]
    StrengthCheck(#[from] JoinError),
}

/// A password change between our check and our write makes the write start
/// over (and the check then fails if the old password no longer holds).
const MAX_ATTEMPTS: usize = 3;

/// The longest user agent a session keeps.
const MAX_USER_AGENT_LEN: usize = 256;

pub struct NewUser {
    pub name: UserName,
    pub email: UserEmail,
    pub password: Password,
}

/// How a caller proves they are the user they act on.
#[derive(Clone)]
pub enum Proof {
    Password(Password),
    /// A live session of that user, checked by the request guard.
    Session,
}

/// Where a login comes from, kept with its session.
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

pub struct NewSession {
    pub token: SessionToken,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

/// Session and login settings, managed by Rocket.
pub struct AuthPolicy {
    pub sessions: SessionSettings,
    pub login: LoginSettings,
}

pub struct Accounts<'r> {
    store: &'r Store,
    hasher: &'r PasswordHasher,
    policy: &'r AuthPolicy,
    metrics: &'r Metrics,
}

/// Rejects a weak new password. zxcvbn takes up to several milliseconds on a
/// long password, so it runs on a blocking thread, not on an async worker,
/// which also serves reads.
async fn check_strength(
    field: &'static str,
    password: &Password,
    email: &UserEmail,
    name: &UserName,
) -> Result<(), AccountError> {
    let (password, email, name) = (password.clone(), email.clone(), name.clone());
    task::spawn_blocking(move || password.check_strength(&email, &name))
        .await?
        .map_err(|reason| AccountError::WeakPassword { field, reason })
}

impl<'r> Accounts<'r> {
    /// Hashes the password first, outside any transaction, then stores the
    /// user if the email is free.
    pub async fn sign_up(&self, new: NewUser) -> Result<User, AccountError> {
        check_strength("password", &new.password, &new.email, &new.name).await?;
        let password_hash = self.hasher.hash(new.password).await?;
        let now = now();
        let user = User {
            id: UserId::generate(),
            name: new.name,
            email: new.email,
            created: now,
            updated: now,
        };
        let record = UserRecord {
            user: user.clone(),
            password_hash,
        };
        self.store.connection().create_user(record).await?;
        Ok(user)
    }

    pub async fn update_profile(
        &self,
        id: UserId,
        proof: Proof,
        name: UserName,
        email: UserEmail,
    ) -> Result<User, AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let verified = self.authenticate(id, proof.clone()).await?.password_hash;
            let written = self
                .store
                .connection()
                .update_profile(id, verified, name.clone(), email.clone())
                .await?;
            if let Some(user) = settle(id, written)? {
                return Ok(user);
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    /// Sets a new password and ends every session of the user.
    pub async fn change_password(
        &self,
        id: UserId,
        proof: Proof,
        new_password: Password,
    ) -> Result<(), AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.authenticate(id, proof.clone()).await?;
            let user = &current.user;
            check_strength("new_password", &new_password, &user.email, &user.name).await?;
            let verified = current.password_hash;
            let new_hash = self.hasher.hash(new_password.clone()).await?;
            let written = self
                .store
                .connection()
                .replace_password_hash(id, verified, new_hash, HashReplacement::PasswordChange)
                .await?;
            if let Some(()) = settle(id, written)? {
                return Ok(());
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    pub async fn delete(&self, id: UserId, proof: Proof) -> Result<User, AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let verified = self.authenticate(id, proof.clone()).await?.password_hash;
            let written = self.store.connection().delete_user(id, verified).await?;
            if let Some(user) = settle(id, written)? {
                return Ok(user);
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    /// Checks the proof against the stored user and returns it; the
    /// following write requires its password hash to be unchanged.
    async fn authenticate(&self, id: UserId, proof: Proof) -> Result<UserRecord, AccountError> {
        let record = self
            .store
            .connection()
            .user_by_id(id)
            .await?
            .ok_or(AccountError::NotFound(id))?;
        let proven = match proof {
            Proof::Session => true,
            Proof::Password(password) => {
                self.hasher
                    .verify(password, record.password_hash.clone())
                    .await?
            }
        };
        if proven {
            Ok(record)
        } else {
            Err(AccountError::Unauthenticated)
        }
    }

    /// Checks email and password and opens a session. Unknown emails and
    /// wrong passwords cost the same argon2 work and fail the same way.
    pub async fn log_in(
        &self,
        email: UserEmail,
        password: Password,
        client: Client,
    ) -> Result<NewSession, AccountError> {
        let limits = self.policy.login;
        // Reads take no pooled connection: none is held while argon2 runs.
        let mut conn = self.store.connection();
        let state = conn.login_state(&email, &client.ip).await?;
        let failures = state.failures;
        if failures.of_account >= limits.max_failures || failures.of_ip >= limits.max_failures {
            return Err(AccountError::TooManyAttempts {
                retry_after: failures.retry_after,
            });
        }
        let record = match state.user {
            Some(id) => conn.user_by_id(id).await?,
            None => None,
        };
        let hash = match &record {
            Some(record) => record.password_hash.clone(),
            None => self.hasher.dummy_hash().await?,
        };
        let matches = self.hasher.verify(password.clone(), hash).await?;
        let record = match record {
            Some(record) if matches => record,
            _ => {
                conn.record_login_failure(email, client.ip, limits.window)
                    .await?;
                return Err(AccountError::Unauthenticated);
            }
        };
        if self.hasher.needs_rehash(&record.password_hash) {
            self.upgrade_hash(&record, password).await?;
        }
        self.open_session(record.user, client, email).await
    }

    /// Replaces a hash made with old parameters. Losing a race with a
    /// password change is fine: that change wins.
    async fn upgrade_hash(
        &self,
        record: &UserRecord,
        password: Password,
    ) -> Result<(), AccountError> {
        let new_hash = self.hasher.hash(password).await?;
        self.store
            .connection()
            .replace_password_hash(
                record.user.id,
                record.password_hash.clone(),
                new_hash,
                HashReplacement::Rehash,
            )
            .await?;
        Ok(())
    }

    /// Opens a session for `user`, who logged in with `email`: that email's
    /// failed logins are cleared in the same write.
    async fn open_session(
        &self,
        user: User,
        client: Client,
        email: UserEmail,
    ) -> Result<NewSession, AccountError> {
        let token = SessionToken::generate();
        let now = now();
        let max_age = chrono::Duration::from_std(self.policy.sessions.max_age)
            .unwrap_or(chrono::Duration::MAX);
        let session = SessionRecord {
            id: token.id(),
            user_id: user.id,
            created: now,
            last_seen: now,
            expires_at: now
                .checked_add_signed(max_age)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            ip: client.ip,
            user_agent: client.user_agent.chars().take(MAX_USER_AGENT_LEN).collect(),
        };
        let expires_at = session.ends_at(now, self.policy.sessions.idle);
        let stored = self
            .store
            .connection()
            .create_session(session, self.policy.sessions.idle, email)
            .await?;
        if !stored {
            // The user was deleted while logging in.
            return Err(AccountError::Unauthenticated);
        }
        self.metrics.sessions_created.inc();
        Ok(NewSession {
            token,
            expires_at,
            user,
        })
    }

    /// The live session a bearer token names, renewed for another idle period.
    pub async fn session(&self, token: &SessionToken) -> Result<SessionRecord, AccountError> {
        self.store
            .connection()
            .use_session(token.id(), self.policy.sessions.idle)
            .await?
            .ok_or(AccountError::Unauthenticated)
    }

    pub fn session_ends_at(&self, session: &SessionRecord) -> DateTime<Utc> {
        session.ends_at(session.last_seen, self.policy.sessions.idle)
    }
}

/// `Some` when the write happened, `None` when it must start over.
fn settle<T>(id: UserId, written: Written<T>) -> Result<Option<T>, AccountError> {
    match written {
        Written::Done(value) => Ok(Some(value)),
        Written::Missing => Err(AccountError::NotFound(id)),
        Written::PasswordChanged => Ok(None),
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Accounts<'r> {
    type Error = &'static str;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let rocket = request.rocket();
        match (
            rocket.state::<Store>(),
            rocket.state::<PasswordHasher>(),
            rocket.state::<AuthPolicy>(),
            rocket.state::<Arc<Metrics>>(),
        ) {
            (Some(store), Some(hasher), Some(policy), Some(metrics)) => {
                Outcome::Success(Accounts {
                    store,
                    hasher,
                    policy,
                    metrics,
                })
            }
            _ => Outcome::Error((Status::InternalServerError, "accounts are not managed")),
        }
    }
}
