//! Sign-up, reads, the user list, profile and password changes, deletion.

use super::{check_strength, settle, AccountError, Accounts, MAX_ATTEMPTS};
use crate::domain::{now, Password, User, UserEmail, UserId, UserName};
use crate::store::{HashReplacement, ListCursor, ListQuery, UserRecord};

/// A sign-up, its fields valid.
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
    /// user if the email is free.
    pub async fn sign_up(&self, new: NewUser) -> Result<User, AccountError> {
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

    pub async fn user(&self, id: UserId) -> Result<User, AccountError> {
        self.store
            .connection()
            .public_user_by_id(id)
            .await?
            .ok_or_else(|| AccountError::NotFound(id.to_string()))
    }

    pub async fn user_by_email(&self, email: &UserEmail) -> Result<User, AccountError> {
        self.store
            .connection()
            .public_user_by_email(email)
            .await?
            .ok_or_else(|| AccountError::EmailNotFound(email.to_string()))
    }

    /// Up to `limit` users whose email starts with `prefix` (normalized),
    /// after the cursor a previous page returned.
    pub async fn list_users(
        &self,
        prefix: String,
        after: Option<&str>,
        limit: usize,
    ) -> Result<UserList, AccountError> {
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
            check_strength(
                &self.hasher,
                "new_password",
                &new_password,
                &user.email,
                &user.name,
            )
            .await?;
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
            .ok_or_else(|| AccountError::NotFound(id.to_string()))?;
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
}
