use std::fmt;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng as AeadOsRng};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{UserEmail, UserId};

/// A one-time code: six random digits, mailed to the user. It never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

const DIGITS: usize = 6;
const CODES: u32 = 1_000_000;

impl OneTimeCode {
    pub fn generate() -> Self {
        // Rejection sampling keeps every code equally likely.
        let limit = u32::MAX - u32::MAX % CODES;
        loop {
            let candidate = OsRng.next_u32();
            if candidate < limit {
                return Self(format!("{:06}", candidate % CODES));
            }
        }
    }

    /// Six digits, spaces around them allowed; anything else is no code.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() == DIGITS && raw.bytes().all(|byte| byte.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("must be the {DIGITS} digits from the email"))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeCode(***)")
    }
}

/// The code that puts an old email back after a change: 128 random bits in
/// URL-safe base64 (22 characters). It travels in a link mostly, so it can
/// afford to be too long to guess, and no per-email cap on wrong offers
/// (which anyone knowing the address could exhaust) is needed. It never
/// prints.
#[derive(Clone, PartialEq, Eq)]
pub struct RevertCode(String);

const REVERT_BYTES: usize = 16;
const REVERT_LEN: usize = 22;

impl RevertCode {
    pub fn generate() -> Self {
        let mut bytes = [0u8; REVERT_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The 22 characters from the email, spaces around them allowed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let decoded = URL_SAFE_NO_PAD.decode(raw).ok();
        if raw.len() == REVERT_LEN && decoded.is_some_and(|bytes| bytes.len() == REVERT_BYTES) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "must be the {REVERT_LEN} characters of the code from the email"
            ))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RevertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RevertCode(***)")
    }
}

/// A code a mail carries, as [`CodeSealer`] seals and opens it.
pub trait MailedCode {
    fn expose(&self) -> &str;
}

impl MailedCode for OneTimeCode {
    fn expose(&self) -> &str {
        OneTimeCode::expose(self)
    }
}

impl MailedCode for RevertCode {
    fn expose(&self) -> &str {
        RevertCode::expose(self)
    }
}

/// What a code is for: a code of one purpose never serves the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    VerifyEmail,
    ResetPassword,
}

impl CodePurpose {
    pub const ALL: [Self; 2] = [Self::VerifyEmail, Self::ResetPassword];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// The key of the keyed hash codes are stored under (`TOKEN_SECRET`): a
/// database dump without it does not give the codes away, six digits
/// being quick to try otherwise. It never prints.
#[derive(Clone)]
pub struct CodeSecret(Vec<u8>);

/// Fewer bytes than this make the key guessable.
pub const MIN_SECRET_LEN: usize = 32;

impl CodeSecret {
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        if raw.len() < MIN_SECRET_LEN {
            return Err(format!(
                "must be at least {MIN_SECRET_LEN} bytes, got {}",
                raw.len()
            ));
        }
        Ok(Self(raw.to_vec()))
    }

    /// A random secret, for a service started without one.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; MIN_SECRET_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// HMAC-SHA256 of the code, bound to its purpose, its user and the
    /// email it was sent to, in hex.
    pub fn digest(
        &self,
        purpose: CodePurpose,
        user: UserId,
        email: &UserEmail,
        code: &OneTimeCode,
    ) -> String {
        self.mac(&[
            purpose.as_str(),
            &user.to_string(),
            email.as_str(),
            code.expose(),
        ])
    }

    /// HMAC-SHA256 of a revert code, bound to the old email it was sent to,
    /// in hex. It names no user: the request that offers it names only the
    /// email.
    pub fn revert_digest(&self, email: &UserEmail, code: &RevertCode) -> String {
        self.mac(&["revert_email", email.as_str(), code.expose()])
    }

    fn mac(&self, parts: &[&str]) -> String {
        // Any key length is accepted by HMAC: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

impl CodeSecret {
    /// The key that seals the code a queued mail carries: derived from this
    /// secret, and not the one codes are hashed under.
    pub fn sealer(&self) -> CodeSealer {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"user-accounts mail code seal\0");
        let key = mac.finalize().into_bytes();
        CodeSealer(ChaCha20Poly1305::new(&key))
    }
}

/// Seals and opens the code a queued mail carries (ChaCha20-Poly1305, a
/// fresh random nonce each time). It never prints.
#[derive(Clone)]
pub struct CodeSealer(ChaCha20Poly1305);

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

impl CodeSealer {
    pub fn seal(&self, code: &impl MailedCode) -> SealedCode {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut AeadOsRng);
        // Encrypting a few bytes in memory fails only past the cipher's
        // length limit, which a code is far from.
        let sealed = self
            .0
            .encrypt(&nonce, code.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("a code is within the cipher's limit"));
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        SealedCode(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The code inside `sealed`, as the mail shows it: a [`OneTimeCode`] or
    /// a [`RevertCode`]; `Err` when it was sealed under another key
    /// (`TOKEN_SECRET` changed, or was unset on the instance that sealed
    /// it) or was altered.
    pub fn open(&self, sealed: &SealedCode) -> Result<String, &'static str> {
        const NOT_OURS: &str =
            "the code was sealed under another key (is TOKEN_SECRET the same on every instance?)";
        let bytes = URL_SAFE_NO_PAD.decode(&sealed.0).map_err(|_| NOT_OURS)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| NOT_OURS)?;
        let code = String::from_utf8(plain).map_err(|_| NOT_OURS)?;
        if OneTimeCode::parse(&code).is_ok() || RevertCode::parse(&code).is_ok() {
            Ok(code)
        } else {
            Err(NOT_OURS)
        }
    }
}

impl fmt::Debug for CodeSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSealer(***)")
    }
}

/// A code as a queued mail keeps it: sealed by a [`CodeSealer`], in
/// URL-safe base64 of the nonce, the ciphertext and the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedCode(String);

impl SealedCode {
    /// A stored sealed code; `Err` when it cannot be one.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| "the sealed code is not base64")?;
        let code_len = bytes.len().checked_sub(NONCE_LEN + TAG_LEN);
        if !code_len.is_some_and(|len| len == DIGITS || len == REVERT_LEN) {
            return Err("the sealed code has the wrong length");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CodeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(secret: &str) -> CodeSealer {
        CodeSecret::parse(secret.as_bytes())
            .expect("long enough")
            .sealer()
    }

    #[test]
    fn a_sealed_code_opens_to_itself_and_does_not_show_it() {
        let sealer = sealer("a secret of at least thirty-two bytes!");
        let code = OneTimeCode::parse("042917").expect("valid");
        let sealed = sealer.seal(&code);
        assert!(!sealed.as_str().contains("042917"));
        assert_eq!(SealedCode::parse(sealed.as_str()), Ok(sealed.clone()));
        assert_eq!(sealer.open(&sealed).expect("opens"), "042917");
        assert_ne!(sealer.seal(&code), sealed, "a fresh nonce each time");
    }

    #[test]
    fn a_sealed_revert_code_opens_to_itself() {
        let sealer = sealer("a secret of at least thirty-two bytes!");
        let code = RevertCode::generate();
        let sealed = sealer.seal(&code);
        assert_eq!(SealedCode::parse(sealed.as_str()), Ok(sealed.clone()));
        assert_eq!(sealer.open(&sealed).expect("opens"), code.expose());
    }

    #[test]
    fn a_revert_code_is_22_characters_of_url_safe_base64() {
        let code = RevertCode::generate();
        assert_eq!(code.expose().len(), 22);
        assert_eq!(RevertCode::parse(&format!(" {} ", code.expose())), Ok(code));
        for raw in [
            "",
            "123456",
            &"A".repeat(21),
            &"A".repeat(23),
            "AAAAAAAAAAAAAAAAAAAA+/",
        ] {
            assert!(RevertCode::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_code_sealed_under_another_secret_does_not_open() {
        let code = OneTimeCode::parse("042917").expect("valid");
        let sealed = sealer("a secret of at least thirty-two bytes!").seal(&code);
        let other = sealer("another secret of at least thirty-two bytes");
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn a_malformed_sealed_code_does_not_parse_and_a_forged_one_does_not_open() {
        for raw in ["", "123456", "not base64 at all!"] {
            assert!(SealedCode::parse(raw).is_err(), "{raw:?}");
        }
        let forged = SealedCode::parse(&"A".repeat(46)).expect("the right shape");
        assert!(sealer("a secret of at least thirty-two bytes!")
            .open(&forged)
            .is_err());
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = OneTimeCode::generate();
            assert!(
                OneTimeCode::parse(code.expose()).is_ok(),
                "{}",
                code.expose()
            );
        }
    }

    #[test]
    fn anything_but_six_digits_is_no_code() {
        assert!(OneTimeCode::parse(" 012345 ").is_ok());
        for raw in ["12345", "1234567", "12345a", "", "١٢٣٤٥٦"] {
            assert!(OneTimeCode::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_digest_binds_the_code_to_its_purpose_user_and_email() {
        let secret = CodeSecret::generate();
        let code = OneTimeCode::parse("123456").expect("a code");
        let (ada, bob) = (UserId::generate(), UserId::generate());
        let email = UserEmail::parse("ada@example.com").expect("valid");
        let other = UserEmail::parse("ada@example.org").expect("valid");
        let digest =
            |secret: &CodeSecret, purpose, user, email| secret.digest(purpose, user, email, &code);
        let verify = digest(&secret, CodePurpose::VerifyEmail, ada, &email);
        assert_eq!(
            verify,
            digest(&secret, CodePurpose::VerifyEmail, ada, &email)
        );
        assert_ne!(
            verify,
            digest(&secret, CodePurpose::ResetPassword, ada, &email)
        );
        assert_ne!(
            verify,
            digest(&secret, CodePurpose::VerifyEmail, bob, &email)
        );
        assert_ne!(
            verify,
            digest(&secret, CodePurpose::VerifyEmail, ada, &other)
        );
        let another_secret = CodeSecret::generate();
        assert_ne!(
            verify,
            digest(&another_secret, CodePurpose::VerifyEmail, ada, &email)
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(CodeSecret::parse(&[7; 31]).is_err());
        assert!(CodeSecret::parse(&[7; 32]).is_ok());
    }

    #[test]
    fn neither_a_code_nor_a_secret_prints() {
        let code = OneTimeCode::parse("123456").expect("a code");
        assert!(!format!("{code:?}").contains("123456"));
        let secret = CodeSecret::parse(b"0123456789abcdef0123456789abcdef").expect("valid");
        assert!(!format!("{secret:?}").contains("0123"));
    }
}
