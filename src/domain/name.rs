use serde::Serialize;
use std::fmt;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A display name: trimmed, 1 to 100 characters, no control characters and
/// no invisible format characters.
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
        if trimmed.chars().any(is_control_or_format) {
            return Err("must not contain control or invisible formatting characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Control characters (Cc) and format characters (Cf): the latter print as
/// nothing yet change what is shown around them. A bidi override (U+202E)
/// makes "Ada\u{202E}ecilA" read "AdaAlice"; zero-width ones (U+200B,
/// U+200D, U+FEFF) make two names that look alike differ. This also refuses
/// emoji joined with U+200D (👩‍💻) and the U+200C some scripts use.
fn is_control_or_format(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
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
    fn rejects_invisible_format_characters_and_says_so() {
        for (raw, what) in [
            ("Ada\u{202E}ecalevoL", "right-to-left override"),
            ("Ada\u{2066}Lovelace\u{2069}", "left-to-right isolate"),
            ("Ada\u{200B}Lovelace", "zero-width space"),
            ("Ada\u{200D}Lovelace", "zero-width joiner"),
            ("Ada\u{FEFF}Lovelace", "byte order mark"),
            ("Ada\u{AD}Lovelace", "soft hyphen"),
            ("Ada\u{E0041}", "tag character"),
        ] {
            let error = UserName::parse(raw).expect_err(what);
            assert_eq!(
                error, "must not contain control or invisible formatting characters",
                "{what}"
            );
        }
    }

    #[test]
    fn rejects_a_name_that_is_only_a_format_character() {
        assert!(UserName::parse("\u{200B}").is_err());
    }

    #[test]
    fn accepts_unicode_names() {
        assert!(UserName::parse("José Ñúñez 李小龍 Ἀριστοτέλης 👩🏽 ❤️").is_ok());
    }
}
