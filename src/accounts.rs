//! The account operations that need more than one step: hash or verify a
//! password, then write. Each step takes its own pooled connection, so no
//! connection sits idle while argon2 runs.

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};

use crate::domain::{Password, PasswordHash, User, UserEmail, UserId, UserName};
use crate::hashing::{HashingError, PasswordHasher};
use crate::store::{Store, StoreError, UserRecord, Written};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("id {0} not found")]
    NotFound(UserId),
    #[error("user not authenticated")]
    Unauthenticated,
    #[error("the password kept changing during the request")]
    PasswordKeptChanging,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashingError),
}

/// A password change between our check and our write makes the write start
/// over (and the check then fails if the old password no longer holds).
const MAX_ATTEMPTS: usize = 3;

pub struct NewUser {
    pub name: UserName,
    pub email: UserEmail,
    pub password: Password,
}

pub struct Accounts<'r> {
    store: &'r Store,
    hasher: &'r PasswordHasher,
}

impl<'r> Accounts<'r> {
    pub fn new(store: &'r Store, hasher: &'r PasswordHasher) -> Self {
        Self { store, hasher }
    }

    /// Hashes the password first, outside any transaction, then stores the
    /// user if the email is free.
    pub async fn sign_up(&self, new: NewUser) -> Result<User, AccountError> {
        let password_hash = self.hasher.hash(new.password).await?;
        let now = crate::domain::now();
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
        self.store.connection().await?.create_user(record).await?;
        Ok(user)
    }

    pub async fn update_profile(
        &self,
        id: UserId,
        password: Password,
        name: UserName,
        email: UserEmail,
    ) -> Result<User, AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let verified = self.authenticate(id, password.clone()).await?;
            let written = self
                .store
                .connection()
                .await?
                .update_profile(id, verified, name.clone(), email.clone())
                .await?;
            if let Some(user) = settle(id, written)? {
                return Ok(user);
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    pub async fn change_password(
        &self,
        id: UserId,
        password: Password,
        new_password: Password,
    ) -> Result<(), AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let verified = self.authenticate(id, password.clone()).await?;
            let new_hash = self.hasher.hash(new_password.clone()).await?;
            let written = self
                .store
                .connection()
                .await?
                .replace_password_hash(id, verified, new_hash)
                .await?;
            if let Some(()) = settle(id, written)? {
                return Ok(());
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    pub async fn delete(&self, id: UserId, password: Password) -> Result<User, AccountError> {
        for _ in 0..MAX_ATTEMPTS {
            let verified = self.authenticate(id, password.clone()).await?;
            let written = self
                .store
                .connection()
                .await?
                .delete_user(id, verified)
                .await?;
            if let Some(user) = settle(id, written)? {
                return Ok(user);
            }
        }
        Err(AccountError::PasswordKeptChanging)
    }

    /// Checks `password` against the stored hash and returns that hash, which
    /// the following write requires to be unchanged.
    async fn authenticate(
        &self,
        id: UserId,
        password: Password,
    ) -> Result<PasswordHash, AccountError> {
        let record = self
            .store
            .connection()
            .await?
            .user_by_id(id)
            .await?
            .ok_or(AccountError::NotFound(id))?;
        if self
            .hasher
            .verify(password, record.password_hash.clone())
            .await?
        {
            Ok(record.password_hash)
        } else {
            Err(AccountError::Unauthenticated)
        }
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
        match (rocket.state::<Store>(), rocket.state::<PasswordHasher>()) {
            (Some(store), Some(hasher)) => Outcome::Success(Accounts::new(store, hasher)),
            _ => Outcome::Error((Status::InternalServerError, "store or hasher not managed")),
        }
    }
}
