use std::fmt;

/// A plain-text password that satisfies the policy. It never prints.
#[derive(Clone)]
pub struct Password(String);

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

impl Password {
    /// Checks a new password against the policy: 8 to 128 characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let length = raw.chars().count();
        if length < MIN_LEN {
            return Err(format!("must be at least {MIN_LEN} characters"));
        }
        if length > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Wraps a password offered to prove who the caller is. The policy is not
    /// applied: it only has to match, and checking it would tell the caller
    /// something about the stored one.
    pub fn candidate(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An argon2 hash in PHC string form; the salt and parameters live inside.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn from_phc(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lengths_from_8_to_128_characters() {
        assert!(Password::parse(&"p".repeat(8)).is_ok());
        assert!(Password::parse(&"p".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_passwords_shorter_than_8_characters() {
        let error = Password::parse("short").expect_err("too short");
        assert_eq!(error, "must be at least 8 characters");
    }

    #[test]
    fn rejects_passwords_longer_than_128_characters() {
        let error = Password::parse(&"p".repeat(129)).expect_err("too long");
        assert_eq!(error, "must be at most 128 characters");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(
            Password::parse("ééééééé").is_err(),
            "7 characters, 14 bytes"
        );
        assert!(
            Password::parse(&"é".repeat(128)).is_ok(),
            "128 characters, 256 bytes"
        );
    }

    #[test]
    fn never_prints_its_secret() {
        let password = Password::parse("correct horse").expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
        let hash = PasswordHash::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into());
        assert!(!format!("{hash:?}").contains("argon2"));
    }
}
