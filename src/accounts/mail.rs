//! Outgoing mail as the service layer sees it: on (`MAIL_URL` set) or off.
//! While it is off, nothing is queued. The flows that send mail queue it in
//! the store's transaction of the change that causes it; these are the
//! operations that stand alone: a message on its own, and the dead letters.

use super::{AccountError, Accounts};
use crate::domain::{MailContent, MailId, QueuedMail, UserEmail};
use crate::store::MailCounts;

impl Accounts {
    /// Whether mail is on: whether queued messages will be sent.
    pub fn mail_enabled(&self) -> bool {
        self.mail_enabled
    }

    /// Queues `mail` on its own; `false` (and nothing queued) while mail is
    /// off.
    pub async fn queue_mail(&self, mail: &QueuedMail) -> Result<bool, AccountError> {
        if !self.mail_enabled {
            return Ok(false);
        }
        self.store.connection().enqueue_mail(mail).await?;
        Ok(true)
    }

    /// Queues a test message to `to`: `user-accounts mail send-test`.
    /// `None` while mail is off.
    pub async fn queue_test_mail(&self, to: UserEmail) -> Result<Option<MailId>, AccountError> {
        let mail = QueuedMail::new(to, None, MailContent::Test);
        Ok(self.queue_mail(&mail).await?.then_some(mail.id))
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
