//! One-time codes: at most one live code per user and purpose, kept as its
//! keyed hash with a count of wrong tries, and the mail that carries it,
//! queued in the same atomic step.

pub(super) mod issuing;

use std::sync::LazyLock;
use std::time::Duration;

use redis::{ConnectionLike, Script, Value};

use crate::domain::{now, CodePurpose, EventKind, PasswordHash, QueuedMail, UserEmail, UserId};
use crate::store::codes::issuing::{millis, remove_codes, NewCode, Resend, CODE_DAY, ISSUE_SCRIPT};
use crate::store::events::outbox;
use crate::store::layout::{code_fields, user_fields, Bucket, Keys};
use crate::store::login_limits::counters::{clear_account, Admission};
use crate::store::mail::queue::{enqueue, MailTally};
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::records::{
    add_password_fields, decode_user_fields, encode_time, hgetall,
};
use crate::store::plumbing::transaction::{transact, transact_with_replies, Plan, Writes};
use crate::store::sessions::index::{revoke_all, session_ids};
use crate::store::StoreError;

/// A code dies after this many wrong tries.
pub const MAX_CODE_TRIES: u32 = 5;

/// The Lua function that refuses a confirmation while the account's wrong
/// confirmations of this purpose in the day are at `max`: the ms until the
/// day ends, else 0.
pub(in crate::store) const FAILURE_GATE: &str = r"
local function refused(failures, max)
  if tonumber(redis.call('GET', failures) or '0') >= tonumber(max) then
    return math.max(1, redis.call('PTTL', failures))
  end
  return 0
end
local function count_failure(failures, day)
  redis.call('INCR', failures)
  redis.call('PEXPIRE', failures, day, 'NX')
end
";

/// KEYS: the code, the user, the account's wrong confirmations of this
/// purpose today. ARGV: the digest field and the digest offered, the tries
/// field, the most tries, whether a match spends the code (0/1), a user
/// field to set to 1 on a spending match ('' for none), the day (ms), the
/// most wrong confirmations a day. Returns 1 for a match, 0 for a
/// mismatch (counted against the code, which dies at the most tries, and
/// against the account), or minus the ms to wait while the account's
/// wrong confirmations are at their most.
const CHECK: &str = r"
local wait = refused(KEYS[3], ARGV[8])
if wait > 0 then
  return -wait
end
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and stored == ARGV[2] then
  if ARGV[5] == '1' then
    redis.call('DEL', KEYS[1])
    if ARGV[6] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
      redis.call('HSET', KEYS[2], ARGV[6], 1)
    end
  end
  return 1
end
count_failure(KEYS[3], ARGV[7])
if stored and redis.call('HINCRBY', KEYS[1], ARGV[3], 1) >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// KEYS: the wrong confirmations of an email that has no account (or
/// none that may use a code). ARGV: the day (ms), the most a day. Counts
/// one, as a wrong code would be; returns the ms to wait, or 0.
const COUNT_FAILURE: &str = r"
local wait = refused(KEYS[1], ARGV[2])
if wait > 0 then
  return wait
end
count_failure(KEYS[1], ARGV[1])
return 0
";

/// KEYS[1]: the address's counter. ARGV: the window (ms), the limit.
/// Returns 0 when the request counts, else the ms until the window ends.
const COUNT_REQUEST: &str = r"
local count = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1], 'NX')
if count > tonumber(ARGV[2]) then
  return math.max(1, redis.call('PTTL', KEYS[1]))
end
return 0
";

static COUNT_REQUEST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COUNT_REQUEST));
static CHECK_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{FAILURE_GATE}{CHECK}")));
static COUNT_FAILURE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{FAILURE_GATE}{COUNT_FAILURE}")));

/// How a code offered for confirmation fared.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeCheck {
    Matched,
    Wrong,
    /// The account's wrong confirmations of this purpose are at their most
    /// until `retry_after` from now; the code was not compared.
    Refused {
        retry_after: Duration,
    },
}

/// The code being confirmed, and the limits it is checked under.
pub struct CodeAttempt<'a> {
    pub purpose: CodePurpose,
    pub user: UserId,
    pub digest: &'a str,
    /// Whether a match spends the code.
    pub spend: bool,
    pub max_account_failures: u32,
}

/// What a password reset writes, and what it must still hold.
pub struct Reset {
    pub user: UserId,
    pub email: UserEmail,
    /// The digest of the code the caller offered, checked once already.
    pub digest: String,
    pub new_hash: PasswordHash,
    /// The "your password was changed" notice, when mail is on.
    pub notice: Option<QueuedMail>,
}

impl RedisConn {
    /// Counts a request for a code from `address` (a
    /// [`ClientAddress::counted_as`]) in its window of `window`; refused past
    /// `limit`.
    pub async fn count_code_request(
        &self,
        address: &str,
        window: Duration,
        limit: u32,
    ) -> Result<Admission, StoreError> {
        let key = self.keys.code_requests_of_address(address);
        let key = &key;
        let wait_ms: u64 = self
            .script(|mut conn| async move {
                Ok(COUNT_REQUEST_SCRIPT
                    .key(key)
                    .arg(millis(window))
                    .arg(limit)
                    .invoke_async(&mut conn)
                    .await?)
            })
            .await?;
        Ok(match wait_ms {
            0 => Admission::Admitted,
            ms => Admission::Refused {
                retry_after: Duration::from_millis(ms),
            },
        })
    }

    /// Stores a new code for `user`, replacing any earlier one of its
    /// purpose, and queues its mail with it: one atomic step. `false` when
    /// the resend rule or the day's cap held it back (nothing changed).
    pub async fn issue_code(
        &self,
        user: UserId,
        code: &NewCode,
        resend: Resend,
    ) -> Result<bool, StoreError> {
        let (script_keys, args) = code.script_input(&self.keys, user, resend);
        let (script_keys, args) = (&script_keys, &args);
        let reply: Value = self
            .script(|mut conn| async move {
                Ok(ISSUE_SCRIPT
                    .key(&script_keys[..])
                    .arg(&args[..])
                    .invoke_async(&mut conn)
                    .await?)
            })
            .await?;
        let issued =
            matches!(&reply, Value::BulkString(word) if word != b"waiting" && word != b"spent");
        self.tally_mail(&MailTally::of(&[reply]));
        Ok(issued)
    }

    /// Whether `attempt.digest` is the live code of its purpose for its
    /// user. A match spends the code when `attempt.spend` is set (and marks
    /// the user's email verified for a verification code); a mismatch
    /// counts a wrong try against the code and against the account.
    pub async fn check_code(&self, attempt: &CodeAttempt<'_>) -> Result<CodeCheck, StoreError> {
        let keys = [
            self.keys.code(attempt.purpose, attempt.user),
            self.keys.user(attempt.user),
            self.keys
                .code_failures_of_user(attempt.purpose, attempt.user),
        ];
        let sets = match attempt.purpose {
            CodePurpose::VerifyEmail if attempt.spend => user_fields::EMAIL_VERIFIED,
            _ => "",
        };
        let keys = &keys;
        let reply: i64 = self
            .script(|mut conn| async move {
                Ok(CHECK_SCRIPT
                    .key(&keys[..])
                    .arg(code_fields::DIGEST)
                    .arg(attempt.digest)
                    .arg(code_fields::TRIES)
                    .arg(MAX_CODE_TRIES)
                    .arg(u8::from(attempt.spend))
                    .arg(sets)
                    .arg(millis(CODE_DAY))
                    .arg(attempt.max_account_failures)
                    .invoke_async(&mut conn)
                    .await?)
            })
            .await?;
        Ok(match reply {
            1 => CodeCheck::Matched,
            wait if wait < 0 => CodeCheck::Refused {
                retry_after: Duration::from_millis(wait.unsigned_abs()),
            },
            _ => CodeCheck::Wrong,
        })
    }

    /// Counts a confirmation for `email` that no account could match, as a
    /// wrong code would be; refused past `max_failures` in the day, as for
    /// an account.
    pub async fn count_code_failure(
        &self,
        purpose: CodePurpose,
        email: &UserEmail,
        max_failures: u32,
    ) -> Result<CodeCheck, StoreError> {
        let key = self.keys.code_failures(purpose, email);
        let key = &key;
        let wait_ms: u64 = self
            .script(|mut conn| async move {
                Ok(COUNT_FAILURE_SCRIPT
                    .key(key)
                    .arg(millis(CODE_DAY))
                    .arg(max_failures)
                    .invoke_async(&mut conn)
                    .await?)
            })
            .await?;
        Ok(match wait_ms {
            0 => CodeCheck::Wrong,
            ms => CodeCheck::Refused {
                retry_after: Duration::from_millis(ms),
            },
        })
    }

    /// Clears the day's counts of codes issued to `user` and of wrong
    /// confirmations for `email`, of every purpose: an admin lifts the
    /// limits that stopped the account's codes.
    pub async fn clear_code_limits(
        &mut self,
        user: UserId,
        email: &UserEmail,
    ) -> Result<(), StoreError> {
        let email = email.clone();
        self.run(move |conn, keys| {
            let mut del = redis::cmd("DEL");
            for purpose in CodePurpose::ALL {
                del.arg(keys.codes_issued(purpose, user))
                    .arg(keys.code_failures_of_user(purpose, user));
            }
            del.exec(&mut *conn)?;
            // The address's own count lives in the address's slot.
            let mut del = redis::cmd("DEL");
            for purpose in CodePurpose::ALL {
                del.arg(keys.code_failures(purpose, &email));
            }
            Ok(del.exec(conn)?)
        })
        .await
    }

    /// Sets a new password with a reset code: spends it and every other
    /// live code of the account, replaces the hash, marks the email
    /// verified, ends every session, records the event and queues the
    /// notice, in one atomic step; then clears every login counter of the
    /// account, in its email's slot. `false` (nothing written) when the
    /// code is no longer live or the user is gone.
    pub async fn reset_password(&mut self, reset: Reset) -> Result<bool, StoreError> {
        self.run_mailing(move |conn, keys| reset_password(conn, keys, &reset))
            .await
    }
}

fn reset_password(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    reset: &Reset,
) -> Result<(bool, Vec<Value>), StoreError> {
    let code = keys.code(CodePurpose::ResetPassword, reset.user);
    let user_key = keys.user(reset.user);
    let mut hset = redis::cmd("HSET");
    hset.arg(&user_key);
    add_password_fields(&mut hset, &reset.new_hash)?;
    let (done, replies) = transact_with_replies(&mut *conn, |tx| {
        let stored: Option<String> =
            tx.read(redis::cmd("HGET").arg(&code).arg(code_fields::DIGEST))?;
        let fields = tx.read(&hgetall(&user_key))?;
        let current = decode_user_fields(reset.user, &user_key, fields)?;
        let current = match current {
            Some(record) if stored.as_deref() == Some(reset.digest.as_str()) => record.user,
            _ => return Ok(Plan::Answer(false)),
        };
        let sessions = session_ids(tx, keys, reset.user)?;
        let updated = now().max(current.updated);
        let mut hset = hset.clone();
        hset.arg(user_fields::UPDATED)
            .arg(encode_time(updated))
            .arg(user_fields::EMAIL_VERIFIED)
            .arg(1);
        let mut writes = Writes::new();
        writes.add_command(hset).ignore();
        remove_codes(&mut writes, keys, reset.user);
        revoke_all(&mut writes, keys, reset.user, &sessions);
        outbox::record(
            &mut writes,
            keys,
            EventKind::PasswordChanged,
            reset.user,
            updated,
        );
        if let Some(notice) = &reset.notice {
            enqueue(&mut writes, keys, Bucket::of_user(reset.user), notice);
        }
        Ok(Plan::Write(writes, true))
    })?;
    if done {
        clear_login_counters(conn, keys, &reset.email)?;
    }
    Ok((done, replies))
}

/// Clears every login counter of the account at `email`: a step of the
/// email's slot, after the reset's own step in the user's slot (the two
/// differ once the email changed since sign-up).
fn clear_login_counters(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    email: &UserEmail,
) -> Result<(), StoreError> {
    let addresses_key = keys.login_failure_addresses(email);
    transact(conn, |tx| {
        let addresses: Vec<String> = tx.read(redis::cmd("SMEMBERS").arg(&addresses_key))?;
        let mut writes = Writes::new();
        clear_account(&mut writes, keys, email, &addresses);
        Ok(Plan::Write(writes, ()))
    })
}
