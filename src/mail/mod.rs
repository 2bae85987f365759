//! Outgoing mail: messages are queued in Redis (by the store, in the same
//! MULTI/EXEC as the change that causes them) and sent by a task of each
//! instance. This module is that task and what it needs:
//!
//! - `templates`: the subject, text and HTML templates of every kind of
//!   mail, compiled in, each overridable by a file in `MAIL_TEMPLATES_DIR`.
//! - [`Composer`] (here): a queued message, rendered into an RFC 5322
//!   message with a `Message-ID` made of its stable id.
//! - `transport`: SMTP or a directory of `.eml` files; `smtp`: the SMTP
//!   client (lettre's protocol, connections with TCP_NODELAY, STARTTLS or
//!   TLS over rustls, a timeout on the whole hand-over, a small pool).
//! - `sender`: the task. It reads the queue through a consumer group shared
//!   with the other instances, retries with exponential backoff, moves a
//!   message that failed every attempt to the dead letters, and takes over
//!   the messages of an instance that died. Delivery is at least once: a
//!   message whose sending ended without a clear answer is sent again, with
//!   the same `Message-ID`.
//!
//! It calls the store ([`crate::store::MailConsumer`]) directly, as the
//! doctor does: the sender is no request, and the service layer has no part
//! in it. Log lines name a message's kind, id and recipient domain, never
//! its address, code or link.

mod sender;
mod smtp;
mod templates;
mod transport;

use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use sender::MailSender;
pub use templates::{MailValues, Rendered, Templates};
pub use transport::Transport;

use crate::config::MailSettings;
use crate::domain::{CodeSealer, MailKind, QueuedMail};

/// Why a message was not handed over, in fixed words: never the server's
/// own text, which may quote the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// It will never be taken (an SMTP 5xx answer): retrying is no use.
    Permanent(String),
    /// Another attempt may succeed (4xx, no connection, a timeout).
    Transient(String),
}

impl SendFailure {
    pub fn reason(&self) -> &str {
        match self {
            Self::Permanent(reason) | Self::Transient(reason) => reason,
        }
    }
}

/// The mail module's one error type: everything that stops the service at
/// start, or one message from being composed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail template {name}: {reason}")]
    Template { name: String, reason: String },
    #[error("invalid setting MAIL_URL: {0}")]
    Transport(String),
    #[error("the message cannot be composed: {0}")]
    Compose(&'static str),
}

/// Turns queued messages into mail: the templates, the sender's address and
/// the base of the links.
pub struct Composer {
    from: Mailbox,
    /// The part of `MAIL_FROM` after the `@`, for `Message-ID`s.
    id_domain: String,
    service: String,
    public_url: String,
    templates: Templates,
    /// Opens the code a code mail carries, only to render it.
    sealer: CodeSealer,
}

impl Composer {
    /// Loads and tries every template.
    pub fn new(settings: &MailSettings, sealer: CodeSealer) -> Result<Self, MailError> {
        Ok(Self {
            from: settings.from.clone(),
            id_domain: settings.from.email.domain().to_owned(),
            service: settings
                .from
                .name
                .clone()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| "user-accounts".into()),
            public_url: settings.public_url.clone(),
            templates: Templates::load(settings.templates_dir.as_deref())?,
            sealer,
        })
    }

    /// What the templates of `mail` are given; its code, opened.
    pub fn values(&self, mail: &QueuedMail) -> Result<MailValues, MailError> {
        let code = match mail.content.code() {
            Some(sealed) => Some(self.sealer.open(sealed).map_err(MailError::Compose)?),
            None => None,
        };
        let page = match mail.kind() {
            MailKind::VerifyEmail => Some("verify"),
            MailKind::ResetPassword => Some("reset"),
            MailKind::EmailChanged => Some("revert"),
            MailKind::PasswordChanged
            | MailKind::AccountDisabled
            | MailKind::AccountEnabled
            | MailKind::SignupAttempted
            | MailKind::Test => None,
        };
        let link = match (page, &code) {
            (Some(page), Some(code)) => Some(link(&self.public_url, page, mail.to.as_str(), code)),
            _ => None,
        };
        Ok(MailValues {
            kind: mail.kind().as_str().to_owned(),
            service: self.service.clone(),
            to: mail.to.as_str().to_owned(),
            name: mail.name.as_ref().map(|name| name.as_str().to_owned()),
            code,
            link,
            public_url: self.public_url.clone(),
            queued_at: mail.queued_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            // Rounded up: a code queued a moment after its expiry was set
            // still says "15 minutes", not 14.
            expires_in_minutes: mail.expires_at.map(|at| {
                ((at - mail.queued_at).num_seconds() + 59)
                    .div_euclid(60)
                    .max(1)
            }),
        })
    }

    /// The message for `mail`: From, To, Subject, Date, a `Message-ID` made
    /// of the message's id, and a text and an HTML part.
    pub fn compose(&self, mail: &QueuedMail) -> Result<Message, MailError> {
        let rendered = self.templates.render(&self.values(mail)?)?;
        let to = mail
            .to
            .as_str()
            .parse()
            .map_err(|_| MailError::Compose("the mail library does not take the recipient"))?;
        let to = Mailbox::new(mail.name.as_ref().map(|name| name.as_str().to_owned()), to);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(self.message_id(mail)))
            .date(std::time::SystemTime::from(Utc::now()));
        // RFC 3834: no out-of-office replies to an automatic message.
        if let Ok(name) = HeaderName::new_from_ascii("Auto-Submitted".into()) {
            builder = builder.raw_header(HeaderValue::new(name, "auto-generated".into()));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|_| MailError::Compose("the mail library refused the message"))
    }

    /// `<{message id}@{sender's domain}>`: the same through every attempt,
    /// so a message sent twice is recognisable as one.
    pub fn message_id(&self, mail: &QueuedMail) -> String {
        format!("<{}@{}>", mail.id, self.id_domain)
    }
}

/// Characters left as they are in a link's fragment values: RFC 3986's
/// unreserved ones.
const FRAGMENT_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `{public_url}/{page}#email=…&code=…`: the address and the code travel in
/// the fragment, which browsers never send to a server, so no access log or
/// proxy on the way sees them.
pub fn link(public_url: &str, page: &str, email: &str, code: &str) -> String {
    format!(
        "{public_url}/{page}#email={}&code={}",
        utf8_percent_encode(email, FRAGMENT_VALUE),
        utf8_percent_encode(code, FRAGMENT_VALUE)
    )
}

/// The delay before attempt `failed + 1`, after `failed` failed attempts:
/// `base` doubled for each failure after the first, capped at
/// [`crate::config::MAX_RETRY_DELAY`].
pub fn backoff(base: std::time::Duration, failed: u32) -> std::time::Duration {
    let doublings = failed.saturating_sub(1).min(30);
    base.saturating_mul(1 << doublings)
        .min(crate::config::MAX_RETRY_DELAY)
}

/// When `at` plus `delay` is, in the store's time.
fn after(at: DateTime<Utc>, delay: std::time::Duration) -> DateTime<Utc> {
    at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{CodeSecret, MailContent, OneTimeCode, UserEmail, UserName};

    fn sealer() -> CodeSealer {
        CodeSecret::parse(b"the test secret of at least thirty-two bytes")
            .expect("long enough")
            .sealer()
    }

    fn composer() -> Composer {
        let settings = crate::config::Settings::from_lookup(|name| match name {
            "MAIL_FROM" => Some("Example Accounts <accounts@mail.example.com>".into()),
            "PUBLIC_URL" => Some("https://example.com/app".into()),
            _ => None,
        })
        .expect("valid settings");
        Composer::new(&settings.mail, sealer()).expect("templates load")
    }

    fn code_mail(kind: MailKind, to: &str, name: &str, code: &str) -> QueuedMail {
        let code = sealer().seal(&OneTimeCode::parse(code).expect("six digits"));
        let content = MailContent::of_kind(kind, Some(code)).expect("a code kind");
        QueuedMail::new(
            UserEmail::parse(to).expect("valid"),
            Some(UserName::parse(name).expect("valid")),
            content,
        )
    }

    /// The first line of `text` made of six digits and nothing else, and
    /// whether any six digits in a row come before it.
    fn code_line(text: &str) -> (Option<String>, bool) {
        let mut run = 0;
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.len() == 6 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
                return (Some(trimmed.to_owned()), false);
            }
            for byte in line.bytes() {
                run = if byte.is_ascii_digit() { run + 1 } else { 0 };
                if run >= 6 {
                    return (None, true);
                }
            }
            run = 0;
        }
        (None, false)
    }

    #[test]
    fn the_code_stands_alone_on_its_line_before_any_other_six_digits() {
        let composer = composer();
        for kind in [MailKind::VerifyEmail, MailKind::ResetPassword] {
            // A recipient and a name full of digits must not come first.
            let mail = code_mail(kind, "user1234567@example.com", "Jo 987654", "042917");
            let values = composer.values(&mail).expect("opens");
            let rendered = composer.templates.render(&values).expect("renders");
            assert_eq!(
                code_line(&rendered.text),
                (Some("042917".into()), false),
                "{kind}: {}",
                rendered.text
            );
        }
    }

    #[test]
    fn the_link_puts_the_address_and_the_code_in_the_fragment() {
        let composer = composer();
        let mail = code_mail(MailKind::VerifyEmail, "jo+x@example.com", "Jo", "123456");
        assert_eq!(
            composer.values(&mail).expect("opens").link,
            Some("https://example.com/app/verify#email=jo%2Bx%40example.com&code=123456".into())
        );
        let reset = code_mail(MailKind::ResetPassword, "jo@example.com", "Jo", "654321");
        assert_eq!(
            composer.values(&reset).expect("opens").link,
            Some("https://example.com/app/reset#email=jo%40example.com&code=654321".into())
        );
    }

    #[test]
    fn a_message_has_its_headers_and_both_parts() {
        let composer = composer();
        let mail = code_mail(MailKind::VerifyEmail, "jo@example.com", "Jo", "123456");
        let message = composer.compose(&mail).expect("composes");
        let formatted = String::from_utf8_lossy(&message.formatted()).into_owned();
        for header in [
            "From: \"Example Accounts\" <accounts@mail.example.com>",
            "To: Jo <jo@example.com>",
            "Subject: Verify your email address for Example Accounts",
            "Auto-Submitted: auto-generated",
            "Content-Type: multipart/alternative",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
        ] {
            assert!(formatted.contains(header), "{header} in:\n{formatted}");
        }
        let id = format!("Message-ID: <{}@mail.example.com>", mail.id);
        assert!(formatted.contains(&id), "{id} in:\n{formatted}");
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 1), Duration::from_secs(30));
        assert_eq!(backoff(base, 2), Duration::from_secs(60));
        assert_eq!(backoff(base, 4), Duration::from_secs(240));
        assert_eq!(backoff(base, 40), Duration::from_secs(3600));
    }
}
