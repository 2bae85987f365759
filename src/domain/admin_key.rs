use std::fmt;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::session::{is_sha256_hex, sha256_hex};

/// An admin key: `uak_` and 256 random bits as URL-safe base64. It never
/// prints, and the store only ever sees its [`AdminKeyDigest`].
#[derive(Clone)]
pub struct AdminKey(String);

const PREFIX: &str = "uak_";
/// 256 bits in unpadded base64 take 43 characters.
const RANDOM_LEN: usize = 43;

impl AdminKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Anything that starts like a key is one to look up; `None` for
    /// anything else (a session token, say).
    pub fn parse(raw: &str) -> Option<Self> {
        let random = raw.strip_prefix(PREFIX)?;
        let well_formed = random.len() == RANDOM_LEN
            && random
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        well_formed.then(|| Self(raw.to_owned()))
    }

    /// Whether `raw` claims to be an admin key, well-formed or not.
    pub fn looks_like(raw: &str) -> bool {
        raw.starts_with(PREFIX)
    }

    /// The SHA-256 of the key: all that Redis keeps of it.
    pub fn digest(&self) -> AdminKeyDigest {
        AdminKeyDigest(sha256_hex(self.0.as_bytes()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey(***)")
    }
}

/// The hex SHA-256 of an admin key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AdminKeyDigest(String);

impl AdminKeyDigest {
    pub fn parse(raw: &str) -> Option<Self> {
        is_sha256_hex(raw).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AdminKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyScope {
    /// Everything.
    Admin,
    /// Read users, nothing else.
    Read,
    /// Read `/metrics`, nothing else.
    Metrics,
}

impl KeyScope {
    pub const ALL: [Self; 3] = [Self::Admin, Self::Read, Self::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Read => "read",
            Self::Metrics => "metrics",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == raw)
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key's name: what operators call it by. 1 to 64 characters of letters,
/// digits, `-`, `_` and `.`, so it prints safely in a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyName(String);

const MAX_NAME_LEN: usize = 64;

impl KeyName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = !raw.is_empty()
            && raw.len() <= MAX_NAME_LEN
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "a key name is 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.' (got {raw:?})"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_uak_and_43_url_safe_characters() {
        let key = AdminKey::generate();
        assert_eq!(key.expose().len(), 47);
        assert!(key.expose().starts_with("uak_"));
        assert!(AdminKey::parse(key.expose()).is_some());
    }

    #[test]
    fn a_session_token_is_no_admin_key() {
        assert!(AdminKey::parse(&"a".repeat(43)).is_none());
        assert!(AdminKey::parse("uak_short").is_none());
    }

    #[test]
    fn the_digest_is_the_sha256_of_the_whole_key() {
        let key = AdminKey::generate();
        let digest = key.digest();
        assert_eq!(AdminKeyDigest::parse(digest.as_str()), Some(digest));
        assert_ne!(key.digest(), AdminKey::generate().digest());
    }

    #[test]
    fn a_key_never_prints() {
        let key = AdminKey::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn scopes_parse_from_their_names() {
        for scope in KeyScope::ALL {
            assert_eq!(KeyScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(KeyScope::parse("root"), None);
    }

    #[test]
    fn key_names_are_short_and_printable() {
        assert!(KeyName::parse("back-office.1").is_ok());
        assert!(KeyName::parse("").is_err());
        assert!(KeyName::parse("with space").is_err());
        assert!(KeyName::parse(&"n".repeat(65)).is_err());
    }
}
