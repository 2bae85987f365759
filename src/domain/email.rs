use std::fmt;

use email_address::{EmailAddress, Options};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

/// An email address, trimmed, NFKC-normalized and lowercased: the form the
/// index stores.
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

    /// The form two spellings of one address share: trimmed, in NFKC (so
    /// fullwidth `ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ`, ligatures like `ﬁ` and composed
    /// or decomposed accents are their plain forms), and lowercase. NFKC
    /// comes again after lowercasing, which can leave a sequence NFKC would
    /// compose (`ᾼ` and an acute accent become `ᾳ` and one, which is `ᾴ`):
    /// so the result is its own normal form, as a stored email read back
    /// must be.
    pub fn normalize(raw: &str) -> String {
        let trimmed = raw.trim();
        // ASCII is its own NFKC form, and stays ASCII when lowercased.
        if trimmed.is_ascii() {
            return trimmed.to_ascii_lowercase();
        }
        let compatible: String = trimmed.nfkc().collect();
        compatible.to_lowercase().nfkc().collect()
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
    fn fullwidth_and_ascii_spellings_of_one_address_are_equal() {
        assert_eq!(
            UserEmail::parse("ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ").expect("valid"),
            UserEmail::parse("ADA@example.com").expect("valid")
        );
    }

    #[test]
    fn composed_and_decomposed_accents_are_one_address() {
        assert_eq!(
            UserEmail::parse("jos\u{E9}@example.com").expect("valid"),
            UserEmail::parse("JOSE\u{301}@example.com").expect("valid")
        );
    }

    #[test]
    fn compatibility_characters_become_their_plain_forms() {
        assert_eq!(
            UserEmail::parse("\u{FB01}n\u{2460}@example.com")
                .expect("valid")
                .as_str(),
            "fin1@example.com"
        );
    }

    #[test]
    fn normalize_gives_the_form_parse_stores() {
        for raw in [
            "ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "  Jo.Doe@Example.COM ",
            "\u{1FBC}\u{301}@m.co",
        ] {
            assert_eq!(
                UserEmail::normalize(raw),
                UserEmail::parse(raw).expect("valid").as_str(),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_normalized_address_normalizes_to_itself() {
        for raw in [
            "ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "\u{1FBC}\u{301}@m.co",
            "\u{3AA}\u{301}@m.co",
            "K\u{212A}\u{2126}@m.co",
        ] {
            let once = UserEmail::normalize(raw);
            assert_eq!(UserEmail::normalize(&once), once, "{raw}");
        }
    }

    #[test]
    fn a_fullwidth_prefix_normalizes_like_the_addresses_it_starts() {
        assert_eq!(UserEmail::normalize("ＡＤＡ"), "ada");
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
