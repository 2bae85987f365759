//! The mail queue's writing end: a message is queued by adding its XADD to
//! a MULTI/EXEC pipeline, so a change and the mail it causes are written
//! together or not at all. The sender (`delivery`) reads them back.
//!
//! A queued message is a flat list of [`mail_fields`]: the same list is a
//! stream entry in the queue and the dead letters, and a JSON object while
//! the message waits for its retry.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Value;

use crate::domain::{MailContent, MailId, MailKind, QueuedMail, SealedCode, UserEmail, UserName};
use crate::store::layout::{mail_fields, Keys};
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::transaction::{Embedded, Writes};
use crate::store::StoreError;

/// The Lua function that queues one message unless its recipient already
/// got its share in the last hour (`MAIL_MAX_PER_RECIPIENT`): every message
/// to an address is counted here, in the step that queues it, whatever its
/// kind and whichever route caused it. `from` is the index in ARGV of the
/// message's first field. Returns 'queued', or 'held' when the bound held it
/// back.
pub(in crate::store) const QUEUE_WITHIN_BOUND: &str = r"
local function queue_within_bound(window, queue, max, id, from)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', window, '-inf', now - 3600000)
  if redis.call('ZCARD', window) >= max then
    return 'held'
  end
  redis.call('ZADD', window, now, id)
  redis.call('PEXPIRE', window, 3600000)
  redis.call('XADD', queue, '*', unpack(ARGV, from))
  return 'queued'
end
";

/// KEYS: the recipient's last hour, the queue. ARGV: the bound, the
/// message's id, then its fields and values.
pub(in crate::store) static QUEUE_SOURCE: LazyLock<String> = LazyLock::new(|| {
    format!("{QUEUE_WITHIN_BOUND}return queue_within_bound(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2], 3)")
});

/// Adds the script that queues `mail` to a step's writes, within the
/// recipient's bound. Its reply is not ignored: once the EXEC has succeeded,
/// [`RedisConn::tally_mail`] counts what was queued and what held back.
/// The queue has no length cap: no queued message is dropped to make room.
/// Queue only while mail is on (`Accounts::mail_enabled`).
pub(in crate::store) fn enqueue(writes: &mut Writes, keys: &Keys, mail: &QueuedMail) {
    // A notice that carries a revert code is counted but never held back:
    // it is how the owner takes the account back, so a flood of other mail
    // must not crowd it out; and it goes only to an address the account
    // proved, at most EMAIL_CHANGES_MAX_PER_DAY times a day.
    let bound = match mail.content {
        MailContent::EmailChanged { revert: Some(_) } => u32::MAX,
        _ => keys.mail_max_per_recipient(),
    };
    writes
        .embedded(
            Embedded::QueueMail,
            &[keys.mail_to_recipient(&mail.to), keys.mail_queue()],
        )
        .arg(bound)
        .arg(mail.id.to_string())
        .arg(encode(mail));
}

/// What the scripts that queue mail answered, in one EXEC's replies.
#[derive(Debug, Default, PartialEq, Eq)]
pub(in crate::store) struct MailTally {
    pub queued: u64,
    pub held: u64,
}

impl MailTally {
    /// Counts the 'queued' and 'held' replies among `replies`; any other
    /// reply is some other command's.
    pub(in crate::store) fn of(replies: &[Value]) -> Self {
        let mut tally = Self::default();
        for reply in replies {
            match reply {
                Value::BulkString(bytes) if bytes == b"queued" => tally.queued += 1,
                Value::BulkString(bytes) if bytes == b"held" => tally.held += 1,
                Value::SimpleString(text) if text == "queued" => tally.queued += 1,
                Value::SimpleString(text) if text == "held" => tally.held += 1,
                _ => {}
            }
        }
        tally
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
    /// Queues `mail` on its own, for a caller that changes nothing else;
    /// `false` when the recipient's bound held it back.
    pub async fn enqueue_mail(&mut self, mail: &QueuedMail) -> Result<bool, StoreError> {
        let owned = mail.clone();
        let replies: Vec<Value> = self
            .run(move |conn, keys| {
                let mut writes = Writes::new();
                enqueue(&mut writes, keys, &owned);
                writes.apply(conn)
            })
            .await?;
        let tally = MailTally::of(&replies);
        self.tally_mail(&tally);
        Ok(tally.queued == 1)
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
