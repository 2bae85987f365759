use std::fmt;

use zxcvbn::Score;

use super::{UserEmail, UserName};

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

    /// Rejects passwords that are easy to guess: common ones, keyboard walks,
    /// repeats, and ones built from the user's own email or name, as judged
    /// by zxcvbn and its built-in dictionaries.
    pub fn check_strength(&self, email: &UserEmail, name: &UserName) -> Result<(), String> {
        let local_part = email.as_str().split('@').next().unwrap_or_default();
        let is_separator = |c: char| c.is_whitespace() || ".-_+".contains(c);
        // Whole, in parts, and run together: "Ada Lovelace" gives "ada",
        // "lovelace" and "adalovelace".
        let mut context: Vec<String> = vec![email.as_str().to_owned()];
        for text in [local_part, name.as_str()] {
            context.push(text.to_lowercase());
            context.push(text.to_lowercase().replace(is_separator, ""));
            context.extend(text.to_lowercase().split(is_separator).map(str::to_owned));
        }
        let context: Vec<&str> = context
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        let estimate = zxcvbn::zxcvbn(&self.0, &context);
        if estimate.score() >= MIN_STRENGTH {
            return Ok(());
        }
        let mut reason = format!(
            "is too easy to guess (strength {} of 4, at least {} needed)",
            u8::from(estimate.score()),
            u8::from(MIN_STRENGTH)
        );
        if let Some(warning) = estimate.feedback().and_then(|feedback| feedback.warning()) {
            reason = format!("{reason}: {warning}");
        }
        Err(reason)
    }
}

/// zxcvbn's "safely unguessable": about 10^10 guesses or more.
const MIN_STRENGTH: Score = Score::Three;

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

    fn ada() -> (UserEmail, UserName) {
        (
            UserEmail::parse("ada.lovelace@example.com").expect("valid"),
            UserName::parse("Ada Lovelace").expect("valid"),
        )
    }

    #[test]
    fn a_long_unusual_passphrase_is_strong_enough() {
        let (email, name) = ada();
        let password = Password::parse("correct horse battery").expect("valid length");
        assert_eq!(password.check_strength(&email, &name), Ok(()));
    }

    #[test]
    fn common_passwords_are_rejected() {
        let (email, name) = ada();
        for common in ["password123", "qwertyuiop", "iloveyou1", "12345678"] {
            let password = Password::parse(common).expect("valid length");
            let reason = password.check_strength(&email, &name).expect_err(common);
            assert!(reason.starts_with("is too easy to guess"), "{reason}");
        }
    }

    #[test]
    fn passwords_built_from_the_users_email_or_name_are_rejected() {
        let (email, name) = ada();
        for own in ["ada.lovelace@example.com", "adalovelace1", "AdaLovelace!"] {
            let password = Password::parse(own).expect("valid length");
            assert!(password.check_strength(&email, &name).is_err(), "{own}");
        }
    }

    #[test]
    fn never_prints_its_secret() {
        let password = Password::parse("correct horse").expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
        let hash = PasswordHash::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into());
        assert!(!format!("{hash:?}").contains("argon2"));
    }
}
