//! Outgoing mail as the service layer sees it: on (`MAIL_URL` set) or off.
//! While it is off, nothing is queued. The flows that send mail queue it in
//! the store's transaction of the change that causes it; these are the
//! operations that stand alone: a message on its own, and the dead letters.

use std::time::Duration;

use chrono::Utc;

use super::{AccountError, Accounts};
use crate::domain::{MailContent, MailId, QueuedMail, User, UserEmail};
use crate::store::MailCounts;

/// Makes the messages about an account, while mail is on.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mailer {
    pub(super) enabled: bool,
}

impl Mailer {
    /// A message to `user`'s email, or `None` while mail is off; one with a
    /// lifetime (it carries a code) is dropped unsent once that has passed.
    /// It greets the reader by the account's name only when the address is
    /// the account's verified one: an address that has not proven itself
    /// gets no text the account's holder chose, only the templates' own.
    pub(super) fn mail_to(
        self,
        user: &User,
        content: MailContent,
        lifetime: Option<Duration>,
    ) -> Option<QueuedMail> {
        if !self.enabled {
            return None;
        }
        let proven = user.email_verified && !matches!(content, MailContent::VerifyEmail { .. });
        let name = proven.then(|| user.name.clone());
        let mail = QueuedMail::new(user.email.clone(), name, content);
        Some(
            match lifetime.and_then(|ttl| chrono::Duration::from_std(ttl).ok()) {
                Some(ttl) => mail.expiring_at(Utc::now() + ttl),
                None => mail,
            },
        )
    }
}

/// What became of a test message.
#[derive(Debug, PartialEq, Eq)]
pub enum TestMail {
    Queued(MailId),
    /// Mail is off here (`MAIL_URL` is unset): nothing was queued.
    MailOff,
}

impl Accounts {
    /// Whether mail is on: whether queued messages will be sent.
    pub fn mail_enabled(&self) -> bool {
        self.mailer.enabled
    }

    pub(super) fn mailer(&self) -> Mailer {
        self.mailer
    }

    /// Queues `mail` on its own; `false` (and nothing queued) while mail is
    /// off. The sender holds it back if its recipient had its share of mail
    /// in the last hour.
    pub async fn queue_mail(&self, mail: &QueuedMail) -> Result<bool, AccountError> {
        if !self.mailer.enabled {
            return Ok(false);
        }
        self.store.connection().enqueue_mail(mail).await?;
        Ok(true)
    }

    /// Queues a test message to `to`: `user-accounts mail send-test`.
    pub async fn queue_test_mail(&self, to: UserEmail) -> Result<TestMail, AccountError> {
        let mail = QueuedMail::new(to, None, MailContent::Test);
        Ok(match self.queue_mail(&mail).await? {
            true => TestMail::Queued(mail.id),
            false => TestMail::MailOff,
        })
    }

    /// Moves every dead letter back to the queue, with a fresh count of
    /// attempts; returns how many moved. It works while mail is off here:
    /// the instances that have it on send them.
    pub async fn retry_dead_mail(&self) -> Result<u64, AccountError> {
        Ok(self.store.connection().requeue_dead_mail().await?)
    }

    /// How many messages are queued, waiting for a retry, and dead.
    pub async fn mail_counts(&self) -> Result<MailCounts, AccountError> {
        Ok(self.store.connection().mail_counts().await?)
    }
}
