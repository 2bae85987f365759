//! Logging in, checking a bearer token, listing and ending sessions, and a
//! user's activity.

use chrono::{DateTime, Utc};

use super::{Absence, AccountError, Accounts, Caller};
use crate::config::SignupExisting;
use crate::domain::{
    now, ClientAddress, Event, Password, PasswordHash, Session, SessionId, SessionToken, User,
    UserEmail, UserId,
};
use crate::store::layout;
use crate::store::{HashReplacement, UserRecord, Written};

/// The longest user agent a session keeps.
const MAX_USER_AGENT_LEN: usize = 256;

/// Where a request comes from; a login keeps it with its session.
pub struct Client {
    pub address: ClientAddress,
    pub user_agent: String,
}

pub struct NewSession {
    pub token: SessionToken,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

impl Accounts {
    /// Checks email and password and opens a session. Unknown emails and
    /// wrong passwords cost the same argon2 work and fail the same way; a
    /// disabled account says so only to the right password.
    pub async fn log_in(
        &self,
        email: UserEmail,
        password: Password,
        client: Client,
    ) -> Result<NewSession, AccountError> {
        let conn = self.store.connection();
        let record = match conn.user_id_by_email(&email).await? {
            Some(id) => conn.user_by_id(id).await?,
            None => None,
        };
        // With SIGNUP_EXISTING=notify, anyone may have made the account of
        // an address they do not hold: until its email is verified, a login
        // treats it as unknown, so that neither the answer nor the limiter
        // tells it from an account with another password.
        let notify = self.policy.access.signup_existing == SignupExisting::Notify;
        // An account moving to another email keeps the old one's entry
        // until its last steps: a login with it is a login with a stranger.
        let record = record
            .filter(|record| record.user.email == email && (record.user.email_verified || !notify));
        let hash = record.as_ref().map(|record| record.password_hash.clone());
        let proven = self
            .check_password(&email, &client.address, password.clone(), hash)
            .await?;
        let record = match record {
            Some(record) if proven => record,
            _ => return Err(AccountError::WrongLogin),
        };
        if record.user.disabled {
            return Err(AccountError::AccountDisabled);
        }
        if self.policy.codes.require_verified_email && !record.user.email_verified {
            return Err(AccountError::EmailNotVerified);
        }
        let verified = if self.hasher.needs_rehash(&record.password_hash) {
            self.upgrade_hash(&record, password).await?
        } else {
            record.password_hash
        };
        self.open_session(record.user, verified, client).await
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
            Written::Missing | Written::PasswordChanged | Written::EmailChangesSpent { .. } => {
                record.password_hash.clone()
            }
        })
    }

    /// Opens a session for `user`, whose password matched `verified`: it
    /// happens only if `verified` is still the user's hash.
    async fn open_session(
        &self,
        user: User,
        verified: PasswordHash,
        client: Client,
    ) -> Result<NewSession, AccountError> {
        let token = layout::new_session_token(user.id);
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
            ip: client.address.to_string(),
            user_agent: client.user_agent.chars().take(MAX_USER_AGENT_LEN).collect(),
        };
        let expires_at = session.ends_at(now, self.policy.sessions.idle);
        let sessions = self.policy.sessions;
        let stored = self
            .store
            .connection()
            .create_session(session, verified, sessions.idle, sessions.max_per_user)
            .await?;
        if !stored {
            // The user was deleted, or its password changed, while logging
            // in: the password this login proved is no longer the user's.
            return Err(AccountError::WrongLogin);
        }
        self.metrics.sessions_created.inc();
        Ok(NewSession {
            token,
            expires_at,
            user,
        })
    }

    /// The live session a bearer token names, renewed for another idle
    /// period unless it was renewed within the last renewal step.
    pub(super) async fn session(
        &self,
        token: &SessionToken,
    ) -> Result<Option<Session>, AccountError> {
        let sessions = self.policy.sessions;
        Ok(self
            .store
            .connection()
            .use_session(token.id(), sessions.idle, sessions.renewal_step())
            .await?)
    }

    /// When `session` ends if it is not used again.
    pub fn session_ends_at(&self, session: &Session) -> DateTime<Utc> {
        session.ends_at(session.last_seen, self.policy.sessions.idle)
    }

    /// The caller's own session, and the user it belongs to; a user deleted
    /// meanwhile leaves the session unauthenticated.
    pub async fn current_session(&self, caller: &Caller) -> Result<(Session, User), AccountError> {
        let session = caller.require_session()?;
        let user = self
            .store
            .connection()
            .public_user_by_id(session.user_id)
            .await?
            .ok_or(AccountError::Unauthenticated(Absence::UnknownCredential))?;
        Ok((session.clone(), user))
    }

    /// Ends the caller's own session; one that ended meanwhile is as good.
    pub async fn log_out(&self, caller: &Caller) -> Result<(), AccountError> {
        let session = caller.require_session()?;
        self.store
            .connection()
            .revoke_session(session.user_id, session.id.clone())
            .await?;
        Ok(())
    }

    /// The user's live sessions, oldest first. One whose idle timeout,
    /// as set now, has passed since its last renewal is not live, whatever
    /// its TTL (set under an older, longer timeout) says.
    pub async fn sessions_of(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<Vec<Session>, AccountError> {
        caller.require_reader_of(user)?;
        let now = now();
        let mut sessions = self.store.connection().sessions_of(user).await?;
        sessions.retain(|session| self.session_ends_at(session) > now);
        Ok(sessions)
    }

    /// Ends one of the user's sessions; one that is not theirs or not live
    /// is not found, and nothing changes.
    pub async fn end_session(
        &self,
        caller: &Caller,
        user: UserId,
        id: SessionId,
    ) -> Result<(), AccountError> {
        caller.require_owner_or_admin(user)?;
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

    /// Ends every session of the user, or all but the caller's own.
    pub async fn end_sessions(
        &self,
        caller: &Caller,
        user: UserId,
        keep_current: bool,
    ) -> Result<(), AccountError> {
        caller.require_owner_or_admin(user)?;
        let keep = match caller {
            Caller::User(session) if keep_current => Some(session.id.clone()),
            _ => None,
        };
        Ok(self.store.connection().revoke_sessions(user, keep).await?)
    }

    /// The user's last events, newest first.
    pub async fn activity(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<Vec<Event>, AccountError> {
        caller.require_reader_of(user)?;
        Ok(self.store.connection().activity(user).await?)
    }
}
