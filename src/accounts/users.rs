//! Sign-up, reads, the user list, profile and password changes, deletion.

use std::sync::Arc;

use super::access::{session_token, Proof, Sensitivity};
use super::{check_strength, settle, Absence, AccountError, Accounts, Caller, MAX_ATTEMPTS};
use crate::config::{Signup, SignupExisting};
use crate::domain::{
    now, ClientAddress, CodePurpose, MailContent, Password, User, UserEmail, UserId, UserName,
};
use crate::store::layout;
use crate::store::{EmailChange, EmailTaken, HashReplacement, ListCursor, ListQuery, UserRecord};

/// A sign-up, its fields valid.
pub struct NewUser {
    pub name: UserName,
    pub email: UserEmail,
    pub password: Password,
}

/// What a sign-up answers.
#[derive(Debug)]
pub enum SignedUp {
    Created(User),
    /// `SIGNUP_EXISTING=notify`: the email's holder, new or not, hears by
    /// mail.
    Accepted,
}

/// One page of users, and where the next one starts.
pub struct UserList {
    pub users: Vec<User>,
    /// How many users match the prefix.
    pub total: usize,
    /// An opaque cursor for the next page, when one follows.
    pub next: Option<String>,
}

impl Accounts {
    /// Hashes the password first, outside any transaction, then stores the
    /// user if the email is free. With sign-up closed, only an admin may.
    /// With `SIGNUP_EXISTING=notify`, a caller without an admin key learns
    /// nothing of whether the email had an account, by the answer or by its
    /// time: the store's part (the account, or the holder's notice instead)
    /// runs after the answer, [`SignedUp::Accepted`], tracked so that
    /// shutdown waits for it.
    pub async fn sign_up(
        self: &Arc<Self>,
        caller: &Caller,
        new: NewUser,
    ) -> Result<SignedUp, AccountError> {
        self.admit_sign_up(caller)?;
        check_strength(
            &self.hasher,
            "password",
            &new.password,
            &new.email,
            &new.name,
        )
        .await?;
        let password_hash = self.hasher.hash(new.password).await?;
        let now = now();
        let user = User {
            id: layout::new_user_id(&new.email),
            name: new.name,
            email: new.email,
            created: now,
            updated: now,
            disabled: false,
            email_verified: false,
        };
        let record = UserRecord {
            user: user.clone(),
            password_hash,
        };
        let code = self.new_code(CodePurpose::VerifyEmail, &user);
        if self.policy.access.signup_existing == SignupExisting::Notify && !caller.is_admin() {
            let mailer = self.mailer();
            let taken = EmailTaken::Notify(Box::new(move |holder| {
                mailer.mail_to(holder, MailContent::SignupAttempted, None)
            }));
            let accounts = Arc::clone(self);
            self.after_answers.spawn(async move {
                let stored = accounts
                    .store
                    .connection()
                    .create_user(record, code, taken)
                    .await;
                if let Err(error) = stored {
                    accounts.log_failure("a sign-up was not stored", &error.into());
                }
            });
            return Ok(SignedUp::Accepted);
        }
        self.store
            .connection()
            .create_user(record, code, EmailTaken::Refuse)
            .await?;
        Ok(SignedUp::Created(user))
    }

    /// Whether `caller` may sign up at all: with `SIGNUP=closed`, only an
    /// admin key. Asked before the fields are judged, so a refused caller
    /// costs no strength check.
    pub fn admit_sign_up(&self, caller: &Caller) -> Result<(), AccountError> {
        match self.policy.access.signup {
            Signup::Open => Ok(()),
            Signup::Closed => caller.require_signup_admin(),
        }
    }

    pub async fn user(&self, caller: &Caller, id: UserId) -> Result<User, AccountError> {
        caller.require_reader_of(id)?;
        self.store
            .connection()
            .public_user_by_id(id)
            .await?
            .ok_or_else(|| AccountError::NotFound(id.to_string()))
    }

    /// The user `id`, for the caller whose bearer credential is `bearer`. A
    /// session token is checked in the round trip that reads the user.
    pub async fn user_for_bearer(
        &self,
        bearer: Result<&str, Absence>,
        id: UserId,
    ) -> Result<User, AccountError> {
        let Some(token) = bearer.ok().and_then(session_token) else {
            let caller = self.caller_of(bearer).await?;
            return self.user(&caller, id).await;
        };
        let sessions = self.policy.sessions;
        let (session, own) = self
            .store
            .connection()
            .use_session_reading_user(token.id(), sessions.idle, sessions.renewal_step(), id)
            .await?;
        session
            .map_or(Caller::Anonymous(Absence::UnknownCredential), Caller::User)
            .require_reader_of(id)?;
        own.ok_or_else(|| AccountError::NotFound(id.to_string()))
    }

    /// The user holding `email`. A user's own session may look up its own
    /// email; for anyone else's it is refused, found or not, so the answer
    /// tells it nothing.
    pub async fn user_by_email(
        &self,
        caller: &Caller,
        email: &UserEmail,
    ) -> Result<User, AccountError> {
        caller.require_email_lookup()?;
        let found = self.store.connection().public_user_by_email(email).await?;
        match (caller, found) {
            (Caller::User(session), Some(user)) if user.id == session.user_id => Ok(user),
            (Caller::User(_), _) => Err(caller.no_such_email(email.to_string())),
            (_, found) => found.ok_or_else(|| caller.no_such_email(email.to_string())),
        }
    }

    /// Up to `limit` users whose email starts with `prefix` (normalized),
    /// after the cursor a previous page returned.
    pub async fn list_users(
        &self,
        caller: &Caller,
        prefix: String,
        after: Option<&str>,
        limit: usize,
    ) -> Result<UserList, AccountError> {
        caller.require_reader()?;
        let after = after
            .map(ListCursor::decode)
            .transpose()
            .map_err(|reason| AccountError::InvalidField {
                field: "after",
                reason,
            })?;
        let query = ListQuery {
            prefix,
            after,
            limit,
        };
        let page = self.store.connection().list_users(&query).await?;
        Ok(UserList {
            users: page.users,
            total: page.total,
            next: page.next.as_ref().map(ListCursor::encode),
        })
    }

    /// Sets name and email. A new email is a sensitive change.
    pub async fn update_profile(
        &self,
        caller: &Caller,
        client: &ClientAddress,
        id: UserId,
        password: Option<Password>,
        name: UserName,
        email: UserEmail,
    ) -> Result<User, AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.current(id).await?;
            let sensitivity = if current.user.email == email {
                Sensitivity::Ordinary
            } else {
                Sensitivity::Sensitive
            };
            let proof = caller.proof_for(id, password.clone(), sensitivity, self.reauth())?;
            let current = self.prove(client, current, proof).await?;
            let renamed = User {
                name: name.clone(),
                email: email.clone(),
                ..current.user.clone()
            };
            let change = EmailChange {
                code: self.new_code(CodePurpose::VerifyEmail, &renamed),
                notice: self.email_change_notice(caller.is_admin()),
                max_per_day: self.policy.codes.email_changes_per_day,
            };
            let written = self
                .store
                .connection()
                .update_profile(
                    id,
                    current.password_hash,
                    (name.clone(), email.clone()),
                    change,
                )
                .await?;
            if let Some(user) = settle(id, written)? {
                return Ok(user);
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    /// Sets a new password, ends every session and live code of the user
    /// and tells its owner. The new password is judged before the old one
    /// is checked, so the answer never tells whether the old one was right.
    pub async fn change_password(
        &self,
        caller: &Caller,
        client: &ClientAddress,
        id: UserId,
        password: Option<Password>,
        new_password: Password,
    ) -> Result<(), AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.current(id).await?;
            self.judge_new_password(&new_password, &current.user)
                .await?;
            let notice = self.mail_to(&current.user, MailContent::PasswordChanged, None);
            let proof =
                caller.proof_for(id, password.clone(), Sensitivity::Sensitive, self.reauth())?;
            let verified = self.prove(client, current, proof).await?.password_hash;
            let new_hash = self.hasher.hash(new_password.clone()).await?;
            let change = HashReplacement::PasswordChange { notice };
            let written = self
                .store
                .connection()
                .replace_password_hash(id, verified, new_hash, change)
                .await?;
            if let Some(()) = settle(id, written)? {
                return Ok(());
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    pub async fn delete(
        &self,
        caller: &Caller,
        client: &ClientAddress,
        id: UserId,
        password: Option<Password>,
    ) -> Result<User, AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.current(id).await?;
            let proof =
                caller.proof_for(id, password.clone(), Sensitivity::Sensitive, self.reauth())?;
            let verified = self.prove(client, current, proof).await?.password_hash;
            let written = self.store.connection().delete_user(id, verified).await?;
            if let Some(user) = settle(id, written)? {
                return Ok(user);
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    /// Disables the user (`true`) and ends its sessions and codes at once,
    /// or enables it again; its owner is told either way. Admin keys only.
    pub async fn set_disabled(
        &self,
        caller: &Caller,
        id: UserId,
        disabled: bool,
    ) -> Result<User, AccountError> {
        caller.require_admin()?;
        let content = if disabled {
            MailContent::AccountDisabled
        } else {
            MailContent::AccountEnabled
        };
        let mailer = self.mailer();
        self.store
            .connection()
            .set_disabled(id, disabled, move |user| {
                mailer.mail_to(user, content.clone(), None)
            })
            .await?
            .ok_or_else(|| AccountError::NotFound(id.to_string()))
    }

    fn reauth(&self) -> std::time::Duration {
        self.policy.sessions.reauth
    }

    /// The stored user, for a change to start from.
    async fn current(&self, id: UserId) -> Result<UserRecord, AccountError> {
        self.store
            .connection()
            .user_by_id(id)
            .await?
            .ok_or_else(|| AccountError::NotFound(id.to_string()))
    }

    /// Checks `proof` against the stored user and returns it; the following
    /// write requires its password hash to be unchanged. A password is
    /// checked through the attempt limiter; a disabled user may change
    /// nothing but by an admin.
    async fn prove(
        &self,
        client: &ClientAddress,
        record: UserRecord,
        proof: Proof,
    ) -> Result<UserRecord, AccountError> {
        let proven = match proof {
            Proof::Admin => return Ok(record),
            // Checked again after the record was read: a revert or a
            // password change that ended the session committed with the hash
            // the change is checked against, so the session is seen ended
            // whenever that hash is the one read.
            Proof::Session(id) => {
                if !self.store.connection().session_is_live(&id).await? {
                    return Err(AccountError::Unauthenticated(Absence::UnknownCredential));
                }
                true
            }
            Proof::Password(password) => {
                let hash = Some(record.password_hash.clone());
                self.check_password(&record.user.email, client, password, hash)
                    .await?
            }
        };
        match proven {
            false => Err(AccountError::WrongPassword),
            true if record.user.disabled => Err(AccountError::AccountDisabled),
            true => Ok(record),
        }
    }
}
