//! How a one-time code is written: shared by the code requests and by the
//! changes that send a code in their own transaction (a sign-up, a new
//! email).

use std::time::Duration;

use redis::Pipeline;

use super::layout::{code_fields, Keys};
use super::mail_queue::enqueue;
use crate::domain::{CodePurpose, QueuedMail, UserId};

/// A code to store, and the mail that carries it.
#[derive(Clone, Debug)]
pub struct NewCode {
    pub purpose: CodePurpose,
    /// The code's keyed hash: never the code.
    pub digest: String,
    pub ttl: Duration,
    /// No code of this purpose is sent again within this time.
    pub resend: Duration,
    /// `None` while mail is off.
    pub mail: Option<QueuedMail>,
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl NewCode {
    /// Adds to a MULTI/EXEC the commands that replace `user`'s code of this
    /// purpose with this one, note when it went out, and queue its mail.
    pub(super) fn add(&self, writes: &mut Pipeline, keys: &Keys, user: UserId) {
        let code = keys.code(self.purpose, user);
        writes
            .cmd("SET")
            .arg(keys.code_sent(self.purpose, user))
            .arg(1)
            .arg("PX")
            .arg(millis(self.resend))
            .ignore()
            .cmd("DEL")
            .arg(&code)
            .ignore()
            .cmd("HSET")
            .arg(&code)
            .arg(code_fields::DIGEST)
            .arg(&self.digest)
            .arg(code_fields::TRIES)
            .arg(0)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&code)
            .arg(millis(self.ttl))
            .ignore();
        if let Some(mail) = &self.mail {
            enqueue(writes, keys, mail);
        }
    }
}

/// Adds to a MULTI/EXEC the removal of every code of `user`: the user is
/// gone.
pub(super) fn remove_codes(writes: &mut Pipeline, keys: &Keys, user: UserId) {
    for purpose in [CodePurpose::VerifyEmail, CodePurpose::ResetPassword] {
        writes
            .cmd("DEL")
            .arg(keys.code(purpose, user))
            .arg(keys.code_sent(purpose, user))
            .ignore();
    }
}
