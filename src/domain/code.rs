use std::fmt;

use argon2::password_hash::rand_core::{OsRng, RngCore};
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
        // Any key length is accepted by HMAC: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in [
            purpose.as_str(),
            &user.to_string(),
            email.as_str(),
            code.expose(),
        ] {
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

impl fmt::Debug for CodeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
