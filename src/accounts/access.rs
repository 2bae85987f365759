//! Who is calling, and what each kind of caller may do. Every operation
//! that needs a credential asks here first; the rules are the table in
//! README.md ("Who may do what").

use chrono::Utc;

use super::{AccountError, Accounts};
use crate::domain::{AdminKey, KeyScope, Password, Session, SessionId, SessionToken, UserId};

/// The credential a request carries, once checked. An unknown, revoked,
/// expired or malformed one is no credential at all, and the caller is
/// anonymous; why, a `401` says.
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous(Absence),
    /// A live session, renewed by this request if it was due.
    User(Session),
    Key(KeyScope),
}

/// Why a caller has no usable credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Absence {
    #[error("this needs a credential: send Authorization: Bearer <session token or admin key>")]
    NoCredential,
    #[error("the Authorization header must read Bearer <session token or admin key>")]
    NotBearer,
    /// A credential that names no live session and no admin key.
    #[error("the credential is unknown, revoked or expired")]
    UnknownCredential,
    #[error("this needs a session token; an admin key has no session")]
    NotASession,
}

/// How a caller proves they may change a user.
pub(super) enum Proof {
    /// The user's current password, from the body: it wins over any header.
    Password(Password),
    /// A session of that user, by its id.
    Session(SessionId),
    /// An admin key: no password needed.
    Admin,
}

/// How much a change needs: a name needs any proof of the user; an email,
/// a password or a deletion needs a recent login when it rests on a session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sensitivity {
    Ordinary,
    Sensitive,
}

const OTHER_USER: &str = "this session belongs to another user";
const NEEDS_ADMIN: &str = "only an admin key may do this";
const NEEDS_KEY: &str = "only an admin or read key may do this";
const NEEDS_OWNER_OR_KEY: &str = "only the user's own session or an admin or read key may do this";
const NEEDS_METRICS_KEY: &str = "only an admin or metrics key may do this";
const NEEDS_OWNER_OR_ADMIN: &str =
    "only the user's own session or password, or an admin key, may do this";
const NOT_OWN_EMAIL: &str = "a session may look up its own email only";

impl Accounts {
    /// The caller a bearer credential names: an admin key (`uak_…`) or a
    /// session token. Anything else, or one that names nothing, is
    /// anonymous; only Redis being out of reach is an error.
    pub async fn caller(&self, bearer: &str) -> Result<Caller, AccountError> {
        let unknown = Caller::Anonymous(Absence::UnknownCredential);
        if AdminKey::looks_like(bearer) {
            return Ok(match AdminKey::parse(bearer) {
                Some(key) => self.key_scope(&key).await?.map_or(unknown, Caller::Key),
                None => unknown,
            });
        }
        Ok(match session_token(bearer) {
            Some(token) => self.session(&token).await?.map_or(unknown, Caller::User),
            None => unknown,
        })
    }

    /// The caller a bearer credential names, or the anonymous caller
    /// `absence` describes.
    pub async fn caller_of(&self, bearer: Result<&str, Absence>) -> Result<Caller, AccountError> {
        match bearer {
            Ok(bearer) => self.caller(bearer).await,
            Err(absence) => Ok(Caller::Anonymous(absence)),
        }
    }
}

/// The session token a bearer credential is, when it is one.
pub(super) fn session_token(bearer: &str) -> Option<SessionToken> {
    if AdminKey::looks_like(bearer) {
        None
    } else {
        SessionToken::parse(bearer)
    }
}

impl Caller {
    /// A caller without a credential must get one (401); a caller with one
    /// that may not do this is refused (403).
    fn refuse(&self, reason: &'static str) -> AccountError {
        match self {
            Self::Anonymous(absence) => AccountError::Unauthenticated(*absence),
            _ => AccountError::Forbidden(reason),
        }
    }

    /// The caller's own session: a key has none.
    pub(super) fn require_session(&self) -> Result<&Session, AccountError> {
        match self {
            Self::User(session) => Ok(session),
            Self::Anonymous(absence) => Err(AccountError::Unauthenticated(*absence)),
            Self::Key(_) => Err(AccountError::Unauthenticated(Absence::NotASession)),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Key(KeyScope::Admin))
    }

    /// Admin and read keys read any user.
    pub(super) fn may_read_anyone(&self) -> bool {
        matches!(self, Self::Key(KeyScope::Admin | KeyScope::Read))
    }

    /// The list and look-ups by email: admin and read keys.
    pub fn require_reader(&self) -> Result<(), AccountError> {
        if self.may_read_anyone() {
            Ok(())
        } else {
            Err(self.refuse(NEEDS_KEY))
        }
    }

    /// A look-up by email: a session (for its own email only, which the
    /// look-up checks once it found the user), or an admin or read key.
    pub fn require_email_lookup(&self) -> Result<(), AccountError> {
        match self {
            Self::User(_) => Ok(()),
            _ => self.require_reader(),
        }
    }

    /// What this caller learns of an email no account holds: a key, that
    /// it is not found; a session, only that it is not its own (403), as for
    /// any other email, so the answer tells it nothing.
    pub fn no_such_email(&self, email: String) -> AccountError {
        match self {
            Self::User(_) => AccountError::Forbidden(NOT_OWN_EMAIL),
            _ => AccountError::EmailNotFound(email),
        }
    }

    /// A user's own data: their session, or an admin or read key.
    pub(super) fn require_reader_of(&self, user: UserId) -> Result<(), AccountError> {
        match self {
            Self::User(session) if session.user_id == user => Ok(()),
            Self::User(_) => Err(AccountError::Forbidden(OTHER_USER)),
            _ if self.may_read_anyone() => Ok(()),
            _ => Err(self.refuse(NEEDS_OWNER_OR_KEY)),
        }
    }

    /// A sign-up while `SIGNUP=closed`: an admin key only. A credential
    /// that names nothing is told so first.
    pub(super) fn require_signup_admin(&self) -> Result<(), AccountError> {
        match self {
            _ if self.is_admin() => Ok(()),
            Self::Anonymous(Absence::UnknownCredential) => {
                Err(AccountError::Unauthenticated(Absence::UnknownCredential))
            }
            _ => Err(AccountError::SignupClosed),
        }
    }

    /// Only an admin key.
    pub(super) fn require_admin(&self) -> Result<(), AccountError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(self.refuse(NEEDS_ADMIN))
        }
    }

    /// The user's own session, or an admin key.
    pub(super) fn require_owner_or_admin(&self, user: UserId) -> Result<(), AccountError> {
        match self {
            Self::User(session) if session.user_id == user => Ok(()),
            Self::User(_) => Err(AccountError::Forbidden(OTHER_USER)),
            _ if self.is_admin() => Ok(()),
            _ => Err(self.refuse(NEEDS_OWNER_OR_ADMIN)),
        }
    }

    /// `/metrics`: admin and metrics keys.
    pub(super) fn require_metrics_reader(&self) -> Result<(), AccountError> {
        match self {
            Self::Key(KeyScope::Admin | KeyScope::Metrics) => Ok(()),
            _ => Err(self.refuse(NEEDS_METRICS_KEY)),
        }
    }

    /// The proof this caller gives for changing `user`: the body's password
    /// first, whatever the header carries; else the user's own session
    /// (recent enough for a sensitive change), else an admin key.
    pub(super) fn proof_for(
        &self,
        user: UserId,
        password: Option<Password>,
        sensitivity: Sensitivity,
        reauth: std::time::Duration,
    ) -> Result<Proof, AccountError> {
        if let Some(password) = password {
            return Ok(Proof::Password(password));
        }
        match self {
            Self::User(session) if session.user_id != user => {
                Err(AccountError::Forbidden(OTHER_USER))
            }
            Self::User(session) => {
                let age = (Utc::now() - session.created).to_std().unwrap_or_default();
                if sensitivity == Sensitivity::Sensitive && age >= reauth {
                    Err(AccountError::ReauthenticationRequired)
                } else {
                    Ok(Proof::Session(session.id.clone()))
                }
            }
            Self::Key(KeyScope::Admin) => Ok(Proof::Admin),
            Self::Key(_) => Err(AccountError::Forbidden(NEEDS_OWNER_OR_ADMIN)),
            Self::Anonymous(absence) => Err(AccountError::Unauthenticated(*absence)),
        }
    }
}
