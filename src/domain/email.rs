use std::fmt;

use email_address::{EmailAddress, Options};
use serde::Serialize;

/// An email address, trimmed and lowercased: the form the index stores.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserEmail(String);

/// RFC 5321 limits a forward path to 254 characters.
const MAX_LEN: usize = 254;

impl UserEmail {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let normalized = Self::normalize(raw);
        if normalized.is_empty() {
            return Err("must not be empty".into());
        }
        if normalized.chars().count() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        // Quoted local parts may carry spaces or control characters; an
        // account email has no use for them and the index needs them absent.
        if normalized
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("must not contain spaces or control characters".into());
        }
        let options = Options::default()
            .with_required_tld()
            .without_display_text()
            .without_domain_literal();
        EmailAddress::parse_with_options(&normalized, options)
            .map_err(|error| format!("is not a valid email address ({error})"))?;
        Ok(Self(normalized))
    }

    /// The form two spellings of one address share: trimmed, lowercase.
    pub fn normalize(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::UserEmail;

    #[test]
    fn is_trimmed_and_lowercased() {
        let email = UserEmail::parse("  Jo.Doe@Example.COM \n").expect("valid");
        assert_eq!(email.as_str(), "jo.doe@example.com");
    }

    #[test]
    fn two_spellings_of_one_address_are_equal() {
        assert_eq!(
            UserEmail::parse("JO@M.CO").expect("valid"),
            UserEmail::parse("jo@m.co").expect("valid")
        );
    }

    #[test]
    fn rejects_invalid_addresses() {
        for raw in [
            "",
            "   ",
            "plainaddress",
            "@no-local.com",
            "no-domain@",
            "two@@signs.com",
            "jo@localhost",
            "Jo <jo@m.co>",
            "jo@[127.0.0.1]",
            "a b@m.co",
            "\"a\0b\"@m.co",
        ] {
            assert!(UserEmail::parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn rejects_addresses_over_254_characters() {
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        let error = UserEmail::parse(&long).expect_err("too long");
        assert!(error.contains("254"), "{error}");
    }

    #[test]
    fn accepts_plus_addressing_and_subdomains() {
        for raw in ["jo+tag@mail.example.co.uk", "first.last@sub.domain.org"] {
            assert!(UserEmail::parse(raw).is_ok(), "{raw:?} should be accepted");
        }
    }
}
