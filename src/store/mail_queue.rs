//! The mail queue's writing end: a message is queued by adding its XADD to
//! a MULTI/EXEC pipeline, so a change and the mail it causes are written
//! together or not at all. The sender (`mail_delivery`) reads them back.
//!
//! A queued message is a flat list of [`mail_fields`]: the same list is a
//! stream entry in the queue and the dead letters, and a JSON object while
//! the message waits for its retry.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::Pipeline;

use super::conn::RedisConn;
use super::layout::{mail_fields, Keys};
use super::StoreError;
use crate::domain::{MailContent, MailId, MailKind, OneTimeCode, QueuedMail, UserEmail, UserName};

/// Adds the command that queues `mail` to a MULTI/EXEC pipeline. The queue
/// has no length cap: no message is dropped to make room. Queue only while
/// mail is on (`Accounts::mail_enabled`), and once the EXEC has succeeded,
/// count it: `self.metrics.mail_queued.inc()` on the [`RedisConn`].
pub(super) fn enqueue(writes: &mut Pipeline, keys: &Keys, mail: &QueuedMail) {
    writes
        .cmd("XADD")
        .arg(keys.mail_queue())
        .arg("*")
        .arg(encode(mail))
        .ignore();
}

/// The fields of `mail`, in a fixed order; optional ones only when present.
pub(super) fn encode(mail: &QueuedMail) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        (mail_fields::ID, mail.id.to_string()),
        (mail_fields::KIND, mail.kind().as_str().to_owned()),
        (mail_fields::TO, mail.to.as_str().to_owned()),
        (
            mail_fields::QUEUED_AT,
            mail.queued_at.timestamp_millis().to_string(),
        ),
        (mail_fields::ATTEMPTS, mail.attempts.to_string()),
    ];
    if let Some(name) = &mail.name {
        fields.push((mail_fields::NAME, name.as_str().to_owned()));
    }
    if let Some(code) = mail.content.code() {
        fields.push((mail_fields::CODE, code.expose().to_owned()));
    }
    if let Some(at) = mail.expires_at {
        fields.push((mail_fields::EXPIRES_AT, at.timestamp_millis().to_string()));
    }
    fields
}

/// A message from its stored fields; `Err` names what is wrong, never a
/// value (a value may be a code).
pub(super) fn decode(fields: &HashMap<String, String>) -> Result<QueuedMail, String> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let required = |name: &'static str| field(name).ok_or_else(|| format!("no {name} field"));
    let id = MailId::parse(required(mail_fields::ID)?).ok_or("the id is not a UUID")?;
    let kind = required(mail_fields::KIND)?;
    let kind = MailKind::parse(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
    let to = UserEmail::parse(required(mail_fields::TO)?)
        .map_err(|reason| format!("the recipient {reason}"))?;
    let name = field(mail_fields::NAME)
        .map(UserName::parse)
        .transpose()
        .map_err(|reason| format!("the name {reason}"))?;
    let code = field(mail_fields::CODE)
        .map(|code| OneTimeCode::parse(code).map_err(|_| "the code is not six digits"))
        .transpose()?;
    let content = MailContent::of_kind(kind, code)?;
    let queued_at = millis(required(mail_fields::QUEUED_AT)?, mail_fields::QUEUED_AT)?;
    let expires_at = field(mail_fields::EXPIRES_AT)
        .map(|at| millis(at, mail_fields::EXPIRES_AT))
        .transpose()?;
    let attempts = required(mail_fields::ATTEMPTS)?
        .parse()
        .map_err(|_| "the attempt count is not a whole number")?;
    Ok(QueuedMail {
        id,
        to,
        name,
        content,
        queued_at,
        expires_at,
        attempts,
    })
}

fn millis(raw: &str, name: &str) -> Result<DateTime<Utc>, String> {
    raw.parse()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| format!("{name} is not a time in Unix milliseconds"))
}

impl RedisConn {
    /// Queues `mail` on its own, for a caller that changes nothing else.
    pub async fn enqueue_mail(&mut self, mail: &QueuedMail) -> Result<(), StoreError> {
        let mail = mail.clone();
        self.run(move |conn, keys| {
            let mut writes = redis::pipe();
            enqueue(&mut writes, keys, &mail);
            Ok(writes.exec(conn)?)
        })
        .await?;
        self.metrics.mail_queued.inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_map(fields: Vec<(&'static str, String)>) -> HashMap<String, String> {
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }

    fn email(raw: &str) -> UserEmail {
        UserEmail::parse(raw).expect("valid")
    }

    #[test]
    fn a_message_round_trips_through_its_fields() {
        let code = OneTimeCode::parse("042917").expect("valid");
        let mut mail = QueuedMail::new(
            email("jo@example.com"),
            Some(UserName::parse("Jo Doe").expect("valid")),
            MailContent::ResetPassword { code },
        )
        .expiring_at(Utc::now() + chrono::Duration::minutes(15));
        mail.attempts = 3;
        assert_eq!(decode(&as_map(encode(&mail))), Ok(mail));
        let notice = QueuedMail::new(email("jo@example.com"), None, MailContent::PasswordChanged);
        assert_eq!(decode(&as_map(encode(&notice))), Ok(notice));
    }

    #[test]
    fn a_malformed_entry_is_named_without_its_values() {
        let mail = QueuedMail::new(
            email("jo@example.com"),
            None,
            MailContent::VerifyEmail {
                code: OneTimeCode::parse("123456").expect("valid"),
            },
        );
        let mut fields = as_map(encode(&mail));
        fields.insert(mail_fields::CODE.into(), "12345x".into());
        let reason = decode(&fields).expect_err("a bad code");
        assert!(!reason.contains("12345"), "{reason}");
        fields.remove(mail_fields::CODE);
        assert!(decode(&fields).is_err(), "a code mail without its code");
        fields.insert(mail_fields::KIND.into(), "welcome".into());
        assert!(decode(&fields).is_err(), "an unknown kind");
    }
}
