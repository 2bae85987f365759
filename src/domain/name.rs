use serde::Serialize;
use std::fmt;

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

const MAX_LEN: usize = 100;

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        if trimmed.chars().count() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::UserName;

    #[test]
    fn is_trimmed() {
        assert_eq!(
            UserName::parse("  Ada Lovelace ").expect("valid").as_str(),
            "Ada Lovelace"
        );
    }

    #[test]
    fn rejects_empty_and_blank_names() {
        assert!(UserName::parse("").is_err());
        assert!(UserName::parse(" \t ").is_err());
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(UserName::parse(&"é".repeat(100)).is_ok());
        assert!(UserName::parse(&"é".repeat(101)).is_err());
    }

    #[test]
    fn rejects_control_characters() {
        assert!(UserName::parse("Ada\u{0}Lovelace").is_err());
        assert!(UserName::parse("Ada\nLovelace").is_err());
    }

    #[test]
    fn accepts_unicode_names() {
        assert!(UserName::parse("José Ñúñez 李小龍 👩‍💻").is_ok());
    }
}
