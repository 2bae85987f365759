//! Mail the service sends: its kinds, what each says (some carry a
//! sealed [`super::OneTimeCode`]), and a queued message as the sender reads it back.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{SealedCode, UserEmail, UserName};

/// What a message is for; each kind has its own templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailKind {
    /// A code and a link that prove the reader holds the address.
    VerifyEmail,
    /// A code and a link that let the reader set a new password.
    ResetPassword,
    /// A notice: the account's password was changed.
    PasswordChanged,
    /// A notice to the old address: the account's email was changed; with a
    /// code that restores it.
    EmailChanged,
    /// A notice: an admin disabled the account.
    AccountDisabled,
    /// A notice: an admin enabled the account again.
    AccountEnabled,
    /// A notice: someone tried to sign up with the address, which has an
    /// account (`SIGNUP_EXISTING=notify`).
    SignupAttempted,
    /// `user-accounts mail send-test`: proves mail reaches an address.
    Test,
}

impl MailKind {
    pub const ALL: [Self; 8] = [
        Self::VerifyEmail,
        Self::ResetPassword,
        Self::PasswordChanged,
        Self::EmailChanged,
        Self::AccountDisabled,
        Self::AccountEnabled,
        Self::SignupAttempted,
        Self::Test,
    ];

    /// The name stored with a queued message and the stem of its templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::PasswordChanged => "password_changed",
            Self::EmailChanged => "email_changed",
            Self::AccountDisabled => "account_disabled",
            Self::AccountEnabled => "account_enabled",
            Self::SignupAttempted => "signup_attempted",
            Self::Test => "test",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }

    /// Whether messages of this kind carry a code.
    pub fn carries_code(self) -> bool {
        matches!(
            self,
            Self::VerifyEmail | Self::ResetPassword | Self::EmailChanged
        )
    }
}

impl fmt::Display for MailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's stable id: it names the message through every attempt, in the
/// `Message-ID` header, the log lines and the file transport's file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MailId(uuid::Uuid);

impl MailId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let id = uuid::Uuid::try_parse(raw).ok()?;
        // One spelling only, so that an id names one file and one header.
        (id.hyphenated().to_string() == raw).then_some(Self(id))
    }
}

impl fmt::Display for MailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// What a message says, by kind, with the values its templates need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailContent {
    VerifyEmail {
        code: SealedCode,
    },
    ResetPassword {
        code: SealedCode,
    },
    PasswordChanged,
    /// `revert`: the code that restores the old address (none in a message
    /// queued before revert codes existed).
    EmailChanged {
        revert: Option<SealedCode>,
    },
    AccountDisabled,
    AccountEnabled,
    SignupAttempted,
    Test,
}

impl MailContent {
    pub fn kind(&self) -> MailKind {
        match self {
            Self::VerifyEmail { .. } => MailKind::VerifyEmail,
            Self::ResetPassword { .. } => MailKind::ResetPassword,
            Self::PasswordChanged => MailKind::PasswordChanged,
            Self::EmailChanged { .. } => MailKind::EmailChanged,
            Self::AccountDisabled => MailKind::AccountDisabled,
            Self::AccountEnabled => MailKind::AccountEnabled,
            Self::SignupAttempted => MailKind::SignupAttempted,
            Self::Test => MailKind::Test,
        }
    }

    /// The code a message carries, sealed: only the sender opens it, to
    /// render the message.
    pub fn code(&self) -> Option<&SealedCode> {
        match self {
            Self::VerifyEmail { code } | Self::ResetPassword { code } => Some(code),
            Self::EmailChanged { revert } => revert.as_ref(),
            Self::PasswordChanged
            | Self::AccountDisabled
            | Self::AccountEnabled
            | Self::SignupAttempted
            | Self::Test => None,
        }
    }

    /// The content of `kind`, from its code when it carries one.
    pub fn of_kind(kind: MailKind, code: Option<SealedCode>) -> Result<Self, &'static str> {
        match (kind, code) {
            (MailKind::VerifyEmail, Some(code)) => Ok(Self::VerifyEmail { code }),
            (MailKind::ResetPassword, Some(code)) => Ok(Self::ResetPassword { code }),
            (MailKind::VerifyEmail | MailKind::ResetPassword, None) => {
                Err("this kind of mail needs a code")
            }
            (MailKind::PasswordChanged, None) => Ok(Self::PasswordChanged),
            (MailKind::EmailChanged, revert) => Ok(Self::EmailChanged { revert }),
            (MailKind::AccountDisabled, None) => Ok(Self::AccountDisabled),
            (MailKind::AccountEnabled, None) => Ok(Self::AccountEnabled),
            (MailKind::SignupAttempted, None) => Ok(Self::SignupAttempted),
            (MailKind::Test, None) => Ok(Self::Test),
            (_, Some(_)) => Err("this kind of mail carries no code"),
        }
    }
}

/// A message waiting to be sent. The code it may carry stays sealed while
/// the message waits (queued, retrying or dead); a sent message leaves
/// Redis at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMail {
    pub id: MailId,
    pub to: UserEmail,
    /// How the message greets its reader, when known.
    pub name: Option<UserName>,
    pub content: MailContent,
    /// When it was first queued; whole milliseconds, as stored.
    pub queued_at: DateTime<Utc>,
    /// Past this, the message is dropped unsent: the code it carries no
    /// longer works. `None`: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Delivery attempts that failed so far.
    pub attempts: u32,
}

impl QueuedMail {
    /// A new message to `to`, queued now, with a fresh id.
    pub fn new(to: UserEmail, name: Option<UserName>, content: MailContent) -> Self {
        Self {
            id: MailId::generate(),
            to,
            name,
            content,
            queued_at: whole_millis(Utc::now()),
            expires_at: None,
            attempts: 0,
        }
    }

    /// The same message, dropped unsent after `at`.
    pub fn expiring_at(self, at: DateTime<Utc>) -> Self {
        Self {
            expires_at: Some(whole_millis(at)),
            ..self
        }
    }

    pub fn kind(&self) -> MailKind {
        self.content.kind()
    }

    pub fn has_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The part of the address after the `@`: as much of the recipient as a
    /// log line may name.
    pub fn recipient_domain(&self) -> &str {
        let address = self.to.as_str();
        address
            .rsplit_once('@')
            .map_or(address, |(_, domain)| domain)
    }
}

/// `at`, without the sub-millisecond part the store does not keep.
fn whole_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::super::{CodeSecret, OneTimeCode};
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in MailKind::ALL {
            assert_eq!(MailKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MailKind::parse("welcome"), None);
    }

    fn sealed() -> SealedCode {
        CodeSecret::generate()
            .sealer()
            .seal(&OneTimeCode::generate())
    }

    #[test]
    fn a_mail_id_round_trips_in_one_spelling() {
        let id = MailId::generate();
        assert_eq!(MailId::parse(&id.to_string()), Some(id));
        assert_eq!(MailId::parse(&id.to_string().to_uppercase()), None);
        assert_eq!(MailId::parse(&id.0.simple().to_string()), None);
        assert_eq!(MailId::parse("../../etc/passwd"), None);
    }

    #[test]
    fn content_matches_its_kind_and_code() {
        let code = || Some(sealed());
        assert!(MailContent::of_kind(MailKind::VerifyEmail, code()).is_ok());
        assert!(MailContent::of_kind(MailKind::VerifyEmail, None).is_err());
        assert!(MailContent::of_kind(MailKind::PasswordChanged, code()).is_err());
        for kind in MailKind::ALL {
            let code = kind.carries_code().then(sealed);
            let content = MailContent::of_kind(kind, code).expect("matching");
            assert_eq!(content.kind(), kind);
        }
    }

    #[test]
    fn the_recipient_domain_is_all_a_log_line_gets() {
        let to = UserEmail::parse("jo.doe@example.com").expect("valid");
        let mail = QueuedMail::new(to, None, MailContent::Test);
        assert_eq!(mail.recipient_domain(), "example.com");
    }
}
