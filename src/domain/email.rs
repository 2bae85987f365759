use std::borrow::Cow;
use std::fmt;

use email_address::{EmailAddress, Options};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};
use unicode_security::MixedScript;

/// An email address, trimmed, NFKC-normalized and lowercased, with its
/// domain in IDNA ASCII form: the form the index stores.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserEmail(String);

/// RFC 5321 limits a forward path to 254 characters.
const MAX_LEN: usize = 254;

impl UserEmail {
    /// An email as the store holds it, taken as it was written, even when
    /// the rules of an earlier version let it in or stored it in another
    /// form: such users stay readable, and the index still finds them,
    /// until a person fixes them (the doctor reports them). Only what no
    /// version ever stored is refused.
    pub fn from_stored(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("is not an email any version stored".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let folded = fold(raw);
        check_characters(&folded)?;
        let Some((local, domain)) = folded.rsplit_once('@') else {
            return Err("is not a valid email address (it has no @)".into());
        };
        check_local_part(local)?;
        let converted = match ascii_domain(domain) {
            Ok(Cow::Borrowed(_)) => None,
            Ok(Cow::Owned(ascii)) => Some(format!("{local}@{ascii}")),
            Err(_) => return Err("has a domain that is not a valid IDNA (UTS 46) name".into()),
        };
        let email = converted.unwrap_or(folded);
        if email.chars().count() > MAX_LEN {
            return Err(format!("must be at most {MAX_LEN} characters"));
        }
        check_syntax(&email)?;
        Ok(Self(email))
    }

    /// The form two spellings of one address share: trimmed, in NFKC (so
    /// fullwidth `ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ`, ligatures like `ﬁ` and composed
    /// or decomposed accents are their plain forms), lowercase, and with the
    /// domain in IDNA ASCII form (`exämple.com` is `xn--exmple-cua.com`).
    /// NFKC comes again after lowercasing, which can leave a sequence NFKC
    /// would compose (`ᾼ` and an acute accent become `ᾳ` and one, which is
    /// `ᾴ`): so the result is its own normal form, as a stored email read
    /// back must be.
    ///
    /// List queries normalize a prefix of an email too, whose domain may end
    /// mid-label: a domain that IDNA refuses stays as NFKC left it, so
    /// `jo@xn--exmple-c` still starts `jo@xn--exmple-cua.com`. (A partial
    /// non-ASCII label matches nothing either way: its ASCII form is not a
    /// prefix of the whole label's.)
    pub fn normalize(raw: &str) -> String {
        let folded = fold(raw);
        converted_domain(&folded).unwrap_or(folded)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trimmed, NFKC-normalized and lowercased; the domain is not converted yet.
fn fold(raw: &str) -> String {
    let trimmed = raw.trim();
    // ASCII is its own NFKC form, and stays ASCII when lowercased.
    if trimmed.is_ascii() {
        return trimmed.to_ascii_lowercase();
    }
    let compatible: String = trimmed.nfkc().collect();
    compatible.to_lowercase().nfkc().collect()
}

fn check_characters(folded: &str) -> Result<(), String> {
    if folded.is_empty() {
        return Err("must not be empty".into());
    }
    // The index needs them absent, and no mailbox an account uses has them.
    if folded.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

fn check_local_part(local: &str) -> Result<(), String> {
    // lettre takes a message's envelope from its To header as it reads it
    // back, which splits `"q,1"` at its comma and unquotes `"q"`: no
    // message would reach such an address.
    if local.contains('"') {
        return Err("must not have a quoted local part".into());
    }
    // ASCII letters are all Latin: only a non-ASCII local part can mix.
    if !local.is_ascii() && !local.is_single_script() {
        return Err(format!(
            "has a local part that mixes scripts ({}), as look-alikes of other addresses do",
            scripts_of(local).join(", ")
        ));
    }
    Ok(())
}

/// The scripts of `text`'s letters, in the order they first appear; the
/// shared ones (digits, punctuation, combining marks) left out.
fn scripts_of(text: &str) -> Vec<&'static str> {
    let mut scripts: Vec<Script> = Vec::new();
    for script in text.chars().map(|c| c.script()) {
        let shared = matches!(script, Script::Common | Script::Inherited | Script::Unknown);
        if !shared && !scripts.contains(&script) {
            scripts.push(script);
        }
    }
    scripts.iter().map(|script| script.full_name()).collect()
}

/// `folded` with its domain in ASCII form, unless that is the same or IDNA
/// refuses the domain.
fn converted_domain(folded: &str) -> Option<String> {
    let (local, domain) = folded.rsplit_once('@')?;
    match ascii_domain(domain) {
        Ok(Cow::Owned(ascii)) => Some(format!("{local}@{ascii}")),
        Ok(Cow::Borrowed(_)) | Err(_) => None,
    }
}

/// `domain` (folded) in IDNA UTS 46 ASCII form, borrowed when it is that
/// already. An ASCII domain without a punycode label is its own ASCII form
/// once lowercased, so it skips IDNA; the syntax check judges its labels.
fn ascii_domain(domain: &str) -> Result<Cow<'_, str>, idna::Errors> {
    let punycode = domain.split('.').any(|label| label.starts_with("xn--"));
    if domain.is_ascii() && !punycode {
        return Ok(Cow::Borrowed(domain));
    }
    Uts46::new().to_ascii(
        domain.as_bytes(),
        AsciiDenyList::STD3,
        Hyphens::CheckFirstLast,
        DnsLength::Verify,
    )
}

fn check_syntax(email: &str) -> Result<(), String> {
    let options = Options::default()
        .with_required_tld()
        .without_display_text()
        .without_domain_literal();
    EmailAddress::parse_with_options(email, options)
        .map_err(|error| format!("is not a valid email address ({error})"))?;
    // The mail sender parses the stored address the same way (src/mail).
    email
        .parse::<lettre::Address>()
        .map_err(|error| format!("is not an address mail can be sent to ({error})"))?;
    Ok(())
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
    fn a_stored_email_that_the_rules_now_refuse_is_read_as_stored() {
        for stored in ["v@ex\u{e4}mple.com", "\"q,1\"@example.com"] {
            assert!(UserEmail::parse(stored)
                .map(|email| email.as_str() != stored)
                .unwrap_or(true));
            assert_eq!(
                UserEmail::from_stored(stored).expect("readable").as_str(),
                stored
            );
        }
        assert!(UserEmail::from_stored("").is_err());
    }

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
            "v@ex\u{E4}mple.com",
            "V@XN--EXMPLE-CUA.COM",
            "\u{418}\u{432}\u{430}\u{43D}@\u{43F}\u{440}\u{438}\u{43C}\u{435}\u{440}.\u{440}\u{444}",
            "ada@example\u{3002}com",
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
            "v@EX\u{C4}MPLE.com",
            "jo@ex\u{E4}",
            "jo@xn--exmple-c",
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
    fn a_prefix_cut_inside_a_punycode_label_stays_a_prefix_of_its_addresses() {
        let prefix = UserEmail::normalize("JO@XN--EXMPLE-C");
        let email = UserEmail::parse("jo@ex\u{E4}mple.com").expect("valid");
        assert!(email.as_str().starts_with(&prefix), "{prefix}");
    }

    #[test]
    fn a_quoted_local_part_is_refused_with_its_reason() {
        for raw in ["\"q,1\"@example.com", "\"q\"@example.com"] {
            let error = UserEmail::parse(raw).expect_err("quoted");
            assert_eq!(error, "must not have a quoted local part", "{raw}");
        }
    }

    #[test]
    fn the_unicode_and_punycode_spellings_of_one_domain_are_one_address() {
        let unicode = UserEmail::parse("v@ex\u{E4}mple.com").expect("valid");
        let punycode = UserEmail::parse("v@xn--exmple-cua.com").expect("valid");
        assert_eq!(unicode, punycode);
        assert_eq!(unicode.as_str(), "v@xn--exmple-cua.com");
    }

    #[test]
    fn an_uppercase_punycode_label_is_its_lowercase_form() {
        let email = UserEmail::parse("v@xn--EXMPLE-cua.COM").expect("valid");
        assert_eq!(email.as_str(), "v@xn--exmple-cua.com");
    }

    #[test]
    fn invalid_punycode_is_refused() {
        // A label that does not decode, an empty one, and one that decodes
        // to plain ASCII (which has no punycode form).
        for raw in ["v@xn--zz-.com", "v@xn--.com", "v@xn--abc.com"] {
            let error = UserEmail::parse(raw).expect_err("invalid punycode");
            assert!(error.contains("IDNA"), "{raw}: {error}");
        }
    }

    #[test]
    fn a_unicode_domain_that_idna_refuses_is_refused() {
        let error = UserEmail::parse("v@ex\u{E4}_mple.com").expect_err("not a domain");
        assert!(error.contains("IDNA"), "{error}");
    }

    #[test]
    fn a_mixed_script_local_part_is_refused() {
        // Cyrillic і and с among Latin letters: a look-alike of victim.
        let error = UserEmail::parse("v\u{456}\u{441}t\u{456}m@example.com").expect_err("mixed");
        assert!(error.contains("mixes scripts (Latin, Cyrillic)"), "{error}");
    }

    #[test]
    fn single_script_non_latin_local_parts_are_accepted() {
        for raw in [
            "\u{438}\u{432}\u{430}\u{43D}@example.com",
            "\u{43F}\u{451}\u{442}\u{440}.1990+2@example.com",
            "\u{3C0}\u{3B1}\u{3CD}\u{3BB}\u{3BF}\u{3C2}@example.gr",
            "\u{5C71}\u{7530}\u{305F}\u{308D}\u{3046}@example.jp",
        ] {
            assert!(UserEmail::parse(raw).is_ok(), "{raw:?} should be accepted");
        }
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
