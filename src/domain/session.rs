use std::fmt;
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::UserId;

/// A bearer token: 256 random bits as URL-safe base64. It never prints, and
/// the store only ever sees its [`SessionId`].
#[derive(Clone)]
pub struct SessionToken(String);

/// 256 bits in unpadded base64 take 43 characters.
const TOKEN_LEN: usize = 43;

impl SessionToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts anything shaped like a token; whether it names a session is
    /// for the store to say.
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = raw.len() == TOKEN_LEN
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        well_formed.then(|| Self(raw.to_owned()))
    }

    /// The SHA-256 of the token: what Redis keeps, so a dump of Redis holds
    /// no usable token.
    pub fn id(&self) -> SessionId {
        SessionId(sha256_hex(self.0.as_bytes()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

/// A session's public name: the hex SHA-256 of its token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(raw: &str) -> Option<Self> {
        is_sha256_hex(raw).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A login session: whose it is, when it started and ends, and where from.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The absolute end: no renewal goes past it.
    pub expires_at: DateTime<Utc>,
    pub ip: String,
    pub user_agent: String,
}

impl Session {
    /// When the session ends if it is not used again: the idle timeout from
    /// `now`, capped by the absolute end.
    pub fn ends_at(&self, now: DateTime<Utc>, idle: Duration) -> DateTime<Utc> {
        let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
        now.checked_add_signed(idle)
            .unwrap_or(self.expires_at)
            .min(self.expires_at)
    }
}

/// Whether `raw` has the shape of [`sha256_hex`]'s output.
pub(super) fn is_sha256_hex(raw: &str) -> bool {
    raw.len() == 64
        && raw
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The SHA-256 of `bytes`, in lowercase hex. (The digest's own `LowerHex`
/// writes it in one pass; a `format!` per byte cost more than the hash,
/// on every request that carries a credential.)
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters() {
        let token = SessionToken::generate();
        assert_eq!(token.expose().len(), 43);
        assert!(SessionToken::parse(token.expose()).is_some());
    }

    #[test]
    fn tokens_differ_each_time() {
        assert_ne!(
            SessionToken::generate().expose(),
            SessionToken::generate().expose()
        );
    }

    #[test]
    fn the_id_is_the_sha256_of_the_token() {
        let token = SessionToken::parse(&"a".repeat(43)).expect("well formed");
        assert_eq!(
            token.id().as_str(),
            "66d34fba71f8f450f7e45598853e53bfc23bbd129027cbb131a2f4ffd7878cd0"
        );
        assert_eq!(SessionId::parse(token.id().as_str()), Some(token.id()));
    }

    #[test]
    fn malformed_tokens_and_ids_are_rejected() {
        assert!(SessionToken::parse("short").is_none());
        assert!(SessionToken::parse(&"!".repeat(43)).is_none());
        assert!(SessionId::parse("xyz").is_none());
        assert!(SessionId::parse(&"A".repeat(64)).is_none());
    }

    #[test]
    fn a_token_never_prints() {
        let token = SessionToken::generate();
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
