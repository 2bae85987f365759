//! The mail queue's writing end: a message is queued by adding its XADD to
//! a step's writes, in the step's own bucket, so a change and the mail it
//! causes are written together or not at all. The sender (`delivery`)
//! reads them back, and holds back what would take a recipient past its
//! hourly bound.
//!
//! A queued message is a flat list of [`mail_fields`]: the same list is a
//! stream entry in a queue and the dead letters, and a JSON object while
//! the message waits for its retry.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::Value;

use crate::domain::{MailContent, MailId, MailKind, QueuedMail, SealedCode, UserEmail, UserName};
use crate::store::layout::{mail_fields, Bucket, Keys};
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::transaction::{Embedded, Writes};
use crate::store::StoreError;

/// KEYS: a bucket's queue. ARGV: the message's fields and values. Queues
/// it and answers 'queued', which the step's replies are tallied by.
pub(in crate::store) const QUEUE_SOURCE: &str = r"
redis.call('XADD', KEYS[1], '*', unpack(ARGV))
return 'queued'
";

/// Adds the queueing of `mail` to the writes of a step in `bucket`. Its
/// reply is not ignored: once the step has run, [`RedisConn::tally_mail`]
/// counts what was queued. The queue has no length cap: no queued message
/// is dropped to make room. Queue only while mail is on
/// (`Accounts::mail_enabled`).
pub(in crate::store) fn enqueue(
    writes: &mut Writes,
    keys: &Keys,
    bucket: Bucket,
    mail: &QueuedMail,
) {
    writes
        .embedded(Embedded::QueueMail, &[keys.mail_queue(bucket)])
        .arg(encode(mail));
}

/// Whether the recipient's hourly bound (`MAIL_MAX_PER_RECIPIENT`) holds
/// `mail` back: a notice that carries a revert code is counted but never
/// held back. It is how the owner takes the account back, so a flood of
/// other mail must not crowd it out; and it goes only to an address the
/// account proved, at most EMAIL_CHANGES_MAX_PER_DAY times a day.
pub(in crate::store) fn bound_of(mail: &QueuedMail, keys: &Keys) -> u32 {
    match mail.content {
        MailContent::EmailChanged { revert: Some(_) } => u32::MAX,
        _ => keys.mail_max_per_recipient(),
    }
}

/// What the scripts that queue mail answered, in one step's replies.
#[derive(Debug, Default, PartialEq, Eq)]
pub(in crate::store) struct MailTally {
    pub queued: u64,
}

impl MailTally {
    /// Counts the 'queued' replies among `replies`; any other reply is some
    /// other command's.
    pub(in crate::store) fn of(replies: &[Value]) -> Self {
        let queued = replies
            .iter()
            .filter(|reply| match reply {
                Value::BulkString(bytes) => bytes == b"queued",
                Value::SimpleString(text) => text == "queued",
                _ => false,
            })
            .count();
        Self {
            queued: queued as u64,
        }
    }
}

/// The fields of `mail`, in a fixed order; optional ones only when present.
pub(in crate::store) fn encode(mail: &QueuedMail) -> Vec<(&'static str, String)> {
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
        fields.push((mail_fields::CODE, code.as_str().to_owned()));
    }
    if let Some(at) = mail.expires_at {
        fields.push((mail_fields::EXPIRES_AT, at.timestamp_millis().to_string()));
    }
    fields
}

/// A message from its stored fields; `Err` names what is wrong, never a
/// value (a value may be a code).
pub(in crate::store) fn decode(fields: &HashMap<String, String>) -> Result<QueuedMail, String> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let required = |name: &'static str| field(name).ok_or_else(|| format!("no {name} field"));
    let id = MailId::parse(required(mail_fields::ID)?).ok_or("the id is not a UUID")?;
    let kind = required(mail_fields::KIND)?;
    let kind = MailKind::parse(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
    let to = UserEmail::from_stored(required(mail_fields::TO)?)
        .map_err(|reason| format!("the recipient {reason}"))?;
    let name = field(mail_fields::NAME)
        .map(UserName::parse)
        .transpose()
        .map_err(|reason| format!("the name {reason}"))?;
    let code = field(mail_fields::CODE)
        .map(SealedCode::parse)
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
    /// Queues `mail` on its own, for a caller that changes nothing else, in
    /// its recipient's bucket.
    pub async fn enqueue_mail(&mut self, mail: &QueuedMail) -> Result<(), StoreError> {
        let owned = mail.clone();
        let replies: Vec<Value> = self
            .run(move |conn, keys| {
                let mut writes = Writes::new();
                let bucket = Bucket::of_email(owned.to.as_str());
                enqueue(&mut writes, keys, bucket, &owned);
                writes.apply(conn)
            })
            .await?;
        self.tally_mail(&MailTally::of(&replies));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CodeSecret, OneTimeCode};

    fn as_map(fields: Vec<(&'static str, String)>) -> HashMap<String, String> {
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }

    fn email(raw: &str) -> UserEmail {
        UserEmail::parse(raw).expect("valid")
    }

    fn sealed(code: &str) -> SealedCode {
        CodeSecret::generate()
            .sealer()
            .seal(&OneTimeCode::parse(code).expect("valid"))
    }

    #[test]
    fn a_message_round_trips_through_its_fields() {
        let code = sealed("042917");
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
                code: sealed("123456"),
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
