//! Logging in, checking a bearer token, listing and ending sessions, and a
//! user's activity.

use chrono::{DateTime, Utc};

use super::{AccountError, Accounts};
use crate::domain::{
    now, Event, Password, PasswordHash, Session, SessionId, SessionToken, User, UserEmail, UserId,
};
use crate::store::{HashReplacement, UserRecord, Written};

/// The longest user agent a session keeps.
const MAX_USER_AGENT_LEN: usize = 256;

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

impl Accounts {
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
        let verified = if self.hasher.needs_rehash(&record.password_hash) {
            self.upgrade_hash(&record, password).await?
        } else {
            record.password_hash
        };
        self.open_session(record.user, verified, client, email)
            .await
    }

    /// Replaces a hash made with old parameters, and answers the hash the
    /// user holds now as far as this login knows: the new one, or the old
    /// one when the rehash lost a race with a password change (that change
    /// wins, and the session the login then asks for is refused).
    async fn upgrade_hash(
        &self,
        record: &UserRecord,
        password: Password,
    ) -> Result<PasswordHash, AccountError> {
        let new_hash = self.hasher.hash(password).await?;
        let written = self
            .store
            .connection()
            .replace_password_hash(
                record.user.id,
                record.password_hash.clone(),
                new_hash.clone(),
                HashReplacement::Rehash,
            )
            .await?;
        Ok(match written {
            Written::Done(()) => new_hash,
            Written::Missing | Written::PasswordChanged => record.password_hash.clone(),
        })
    }

    /// Opens a session for `user`, who logged in with `email` and a password
    /// that matched `verified`: that email's failed logins are cleared in
    /// the same write, which happens only if `verified` is still the user's
    /// hash.
    async fn open_session(
        &self,
        user: User,
        verified: PasswordHash,
        client: Client,
        email: UserEmail,
    ) -> Result<NewSession, AccountError> {
        let token = SessionToken::generate();
        let now = now();
        let max_age = chrono::Duration::from_std(self.policy.sessions.max_age)
            .unwrap_or(chrono::Duration::MAX);
        let session = Session {
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
        let sessions = self.policy.sessions;
        let stored = self
            .store
            .connection()
            .create_session(
                session,
                verified,
                sessions.idle,
                sessions.max_per_user,
                email,
            )
            .await?;
        if !stored {
            // The user was deleted, or its password changed, while logging
            // in: the password this login proved is no longer the user's.
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
    pub async fn session(&self, token: &SessionToken) -> Result<Session, AccountError> {
        self.store
            .connection()
            .use_session(token.id(), self.policy.sessions.idle)
            .await?
            .ok_or(AccountError::Unauthenticated)
    }

    /// When `session` ends if it is not used again.
    pub fn session_ends_at(&self, session: &Session) -> DateTime<Utc> {
        session.ends_at(session.last_seen, self.policy.sessions.idle)
    }

    /// The user a live session belongs to; a user deleted meanwhile leaves
    /// the session unauthenticated.
    pub async fn session_user(&self, session: &Session) -> Result<User, AccountError> {
        self.store
            .connection()
            .public_user_by_id(session.user_id)
            .await?
            .ok_or(AccountError::Unauthenticated)
    }

    /// The user's live sessions, oldest login first.
    pub async fn sessions_of(&self, user: UserId) -> Result<Vec<Session>, AccountError> {
        Ok(self.store.connection().sessions_of(user).await?)
    }

    /// Ends one of the user's sessions; one that is not theirs or not live
    /// is not found, and stays as it was.
    pub async fn end_session(&self, user: UserId, id: SessionId) -> Result<(), AccountError> {
        if self
            .store
            .connection()
            .revoke_session(user, id.clone())
            .await?
        {
            Ok(())
        } else {
            Err(AccountError::SessionNotFound(id.to_string()))
        }
    }

    /// Ends the caller's own session; one that ended meanwhile is as good.
    pub async fn log_out(&self, session: Session) -> Result<(), AccountError> {
        self.store
            .connection()
            .revoke_session(session.user_id, session.id)
            .await?;
        Ok(())
    }

    /// Ends every session of the user but `keep`.
    pub async fn end_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
    ) -> Result<(), AccountError> {
        Ok(self.store.connection().revoke_sessions(user, keep).await?)
    }

    /// The user's last events, newest first.
    pub async fn activity(&self, user: UserId) -> Result<Vec<Event>, AccountError> {
        Ok(self.store.connection().activity(user).await?)
    }
}
