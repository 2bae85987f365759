//! How a one-time code is written: shared by the code requests and by the
//! changes that send a code in their own transaction (a sign-up, a new
//! email). Both run one script, so a code is always issued under the same
//! rules: the resend time and the day's cap per account and purpose.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::domain::{CodePurpose, QueuedMail, UserId};
use crate::store::layout::{code_fields, Bucket, Keys};
use crate::store::mail::queue::encode;
use crate::store::plumbing::transaction::{Embedded, Writes};

/// The window of `CODE_MAX_PER_DAY` and `CODE_MAX_ACCOUNT_FAILURES`.
pub const CODE_DAY: Duration = Duration::from_secs(86_400);

/// A code to store, and the mail that carries it.
#[derive(Clone, Debug)]
pub struct NewCode {
    pub purpose: CodePurpose,
    /// The code's keyed hash: never the code.
    pub digest: String,
    pub ttl: Duration,
    /// No code of this purpose is sent again within this time.
    pub resend: Duration,
    /// No more codes of this purpose are issued to the account in a day.
    pub max_per_day: u32,
    /// `None` while mail is off.
    pub mail: Option<QueuedMail>,
}

/// What to do about the resend rule when issuing a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Send unless a code of this purpose went out within the resend time.
    Wait,
    /// Send whatever the resend rule says (a sign-up, a new email).
    Now,
}

/// KEYS: the code, its "sent" marker, the day's count of codes issued, the
/// mail queue of the user's bucket. ARGV: force (0/1), resend (ms), ttl
/// (ms), the digest field and the digest, the tries field, the day (ms),
/// the most codes a day, then the mail's fields and values (none for no
/// mail). Returns 'waiting' (the resend rule held it back) or 'spent' (the
/// day's cap did), changing nothing; else the code is issued and the reply
/// is 'issued' (no mail) or 'queued'.
pub(in crate::store) const ISSUE_SOURCE: &str = r"
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then
  return 'waiting'
end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[8]) then
  return 'spent'
end
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[7], 'NX')
redis.call('SET', KEYS[2], 1, 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[4], ARGV[5], ARGV[6], 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if #ARGV == 8 then
  return 'issued'
end
redis.call('XADD', KEYS[4], '*', unpack(ARGV, 9))
return 'queued'
";

pub(in crate::store) static ISSUE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(ISSUE_SOURCE));

pub(in crate::store) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl NewCode {
    /// The keys and arguments of [`ISSUE_SCRIPT`] for this code of `user`.
    pub(in crate::store) fn script_input(
        &self,
        keys: &Keys,
        user: UserId,
        resend: Resend,
    ) -> (Vec<String>, Vec<String>) {
        let script_keys = vec![
            keys.code(self.purpose, user),
            keys.code_sent(self.purpose, user),
            keys.codes_issued(self.purpose, user),
            keys.mail_queue(Bucket::of_user(user)),
        ];
        let mut args = vec![
            u8::from(resend == Resend::Now).to_string(),
            millis(self.resend).to_string(),
            millis(self.ttl).to_string(),
            code_fields::DIGEST.to_owned(),
            self.digest.clone(),
            code_fields::TRIES.to_owned(),
            millis(CODE_DAY).to_string(),
            self.max_per_day.to_string(),
        ];
        for (field, value) in self.mail.iter().flat_map(encode) {
            args.push(field.to_owned());
            args.push(value);
        }
        (script_keys, args)
    }

    /// Adds to a step's writes the script that replaces `user`'s code of this
    /// purpose with this one and queues its mail, whatever the resend rule
    /// says. Its reply is not ignored: it tallies the mail.
    pub(in crate::store) fn add(&self, writes: &mut Writes, keys: &Keys, user: UserId) {
        let (script_keys, args) = self.script_input(keys, user, Resend::Now);
        writes.embedded(Embedded::IssueCode, &script_keys).arg(args);
    }
}

/// Adds to a step's writes the removal of every live code of `user`: the
/// state it was made for (the account enabled, its email, its password)
/// changed, or the user is gone. The day's counts stay.
pub(in crate::store) fn remove_codes(writes: &mut Writes, keys: &Keys, user: UserId) {
    for purpose in CodePurpose::ALL {
        writes
            .cmd("DEL")
            .arg(keys.code(purpose, user))
            .arg(keys.code_sent(purpose, user))
            .ignore();
    }
}
