//! One-time codes: at most one live code per user and purpose, kept as its
//! keyed hash with a count of wrong tries, and the mail that carries it,
//! queued in the same atomic step.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Connection, Script};

use super::attempt_counters::{clear_account, Admission};
use super::code_writes::{millis, NewCode};
use super::conn::RedisConn;
use super::layout::{code_fields, user_fields, Keys};
use super::mail_queue::{encode, enqueue};
use super::outbox;
use super::records::{add_password_fields, decode_user_fields, encode_time, hgetall};
use super::session_index::{revoke_all, watched_session_ids};
use super::transaction::{transact, watch, Plan};
use super::StoreError;
use crate::domain::{now, CodePurpose, EventKind, PasswordHash, QueuedMail, UserEmail, UserId};

/// A code dies after this many wrong tries.
pub const MAX_CODE_TRIES: u32 = 5;

/// What to do about the resend rule when issuing a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Send unless a code of this purpose went out within the resend time.
    Wait,
    /// Send whatever the resend rule says (a sign-up, a new email).
    Now,
}

/// KEYS: the code, its "sent" marker, the mail queue. ARGV: force (0/1),
/// resend (ms), ttl (ms), the digest field and the digest, the tries field,
/// then the mail's fields and values, if any. Returns 1 when issued, 0
/// when the resend rule held it back.
const ISSUE: &str = r"
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[2], 1, 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[4], ARGV[5], ARGV[6], 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if #ARGV > 6 then
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7))
end
return 1
";

/// KEYS: the code, then the user. ARGV: the digest field and the digest
/// offered, the tries field, the most tries, whether a match spends the
/// code (0/1), and a user field to set to 1 on a spending match ('' for
/// none). Returns 1 for a match; a mismatch counts a try, and the code dies
/// at the most tries.
const CHECK: &str = r"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then
  return 0
end
if stored == ARGV[2] then
  if ARGV[5] == '1' then
    redis.call('DEL', KEYS[1])
    if ARGV[6] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
      redis.call('HSET', KEYS[2], ARGV[6], 1)
    end
  end
  return 1
end
if redis.call('HINCRBY', KEYS[1], ARGV[3], 1) >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
end
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
static ISSUE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ISSUE));
static CHECK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CHECK));

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

    /// Stores a new code of `purpose` for `user` under `digest`, replacing
    /// any earlier one, and queues `mail` with it: one atomic step. `false`
    /// when the resend rule held it back (nothing changed).
    pub async fn issue_code(
        &self,
        user: UserId,
        code: &NewCode,
        resend: Resend,
    ) -> Result<bool, StoreError> {
        let keys = [
            self.keys.code(code.purpose, user),
            self.keys.code_sent(code.purpose, user),
            self.keys.mail_queue(),
        ];
        let mail_fields = code.mail.as_ref().map(encode).unwrap_or_default();
        let (keys, mail_fields) = (&keys, &mail_fields);
        let (digest, ttl) = (&code.digest, code.ttl);
        let issued: bool = self
            .script(|mut conn| async move {
                let mut invocation = ISSUE_SCRIPT.prepare_invoke();
                invocation
                    .key(&keys[..])
                    .arg(u8::from(resend == Resend::Now))
                    .arg(millis(code.resend))
                    .arg(millis(ttl))
                    .arg(code_fields::DIGEST)
                    .arg(digest)
                    .arg(code_fields::TRIES);
                for (field, value) in mail_fields {
                    invocation.arg(*field).arg(value);
                }
                Ok(invocation.invoke_async(&mut conn).await?)
            })
            .await?;
        if issued {
            self.count_queued(usize::from(code.mail.is_some()));
        }
        Ok(issued)
    }

    /// Whether `digest` is the live code of `purpose` for `user`. A match
    /// spends the code when `spend` is set (and marks the user's email
    /// verified for a verification code); a mismatch counts a wrong try.
    pub async fn check_code(
        &self,
        purpose: CodePurpose,
        user: UserId,
        digest: &str,
        spend: bool,
    ) -> Result<bool, StoreError> {
        let keys = [self.keys.code(purpose, user), self.keys.user(user)];
        let sets = match purpose {
            CodePurpose::VerifyEmail if spend => user_fields::EMAIL_VERIFIED,
            _ => "",
        };
        let keys = &keys;
        self.script(|mut conn| async move {
            Ok(CHECK_SCRIPT
                .key(&keys[..])
                .arg(code_fields::DIGEST)
                .arg(digest)
                .arg(code_fields::TRIES)
                .arg(MAX_CODE_TRIES)
                .arg(u8::from(spend))
                .arg(sets)
                .invoke_async(&mut conn)
                .await?)
        })
        .await
    }

    /// Sets a new password with a reset code: spends the code, replaces the
    /// hash, marks the email verified, ends every session, clears every
    /// login counter of the account, records the event and queues the
    /// notice, in one MULTI/EXEC; `false` (nothing written) when the code
    /// is no longer live or the user is gone.
    pub async fn reset_password(&mut self, reset: Reset) -> Result<bool, StoreError> {
        let notice = reset.notice.is_some();
        let done = self
            .run(move |conn, keys| reset_password(conn, keys, &reset))
            .await?;
        if done {
            self.count_queued(usize::from(notice));
        }
        Ok(done)
    }
}

fn reset_password(conn: &mut Connection, keys: &Keys, reset: &Reset) -> Result<bool, StoreError> {
    let code = keys.code(CodePurpose::ResetPassword, reset.user);
    let user_key = keys.user(reset.user);
    let addresses_key = keys.login_failure_addresses(&reset.email);
    let mut hset = redis::cmd("HSET");
    hset.arg(&user_key);
    add_password_fields(&mut hset, &reset.new_hash)?;
    transact(conn, &code, |conn| {
        watch(conn, &user_key)?;
        watch(conn, &addresses_key)?;
        let stored: Option<String> = redis::cmd("HGET")
            .arg(&code)
            .arg(code_fields::DIGEST)
            .query(conn)?;
        let fields = hgetall(&user_key).query(conn)?;
        let current = decode_user_fields(reset.user, &user_key, fields)?;
        let current = match current {
            Some(record) if stored.as_deref() == Some(reset.digest.as_str()) => record.user,
            _ => return Ok(Plan::Answer(false)),
        };
        let sessions = watched_session_ids(conn, keys, reset.user)?;
        let addresses: Vec<String> = redis::cmd("SMEMBERS").arg(&addresses_key).query(conn)?;
        let updated = now().max(current.updated);
        let mut hset = hset.clone();
        hset.arg(user_fields::UPDATED)
            .arg(encode_time(updated))
            .arg(user_fields::EMAIL_VERIFIED)
            .arg(1);
        let mut writes = redis::pipe();
        writes
            .cmd("DEL")
            .arg(&code)
            .ignore()
            .add_command(hset)
            .ignore();
        revoke_all(&mut writes, keys, reset.user, &sessions);
        clear_account(&mut writes, keys, &reset.email, &addresses);
        outbox::record(
            &mut writes,
            keys,
            EventKind::PasswordChanged,
            reset.user,
            updated,
        );
        if let Some(notice) = &reset.notice {
            enqueue(&mut writes, keys, notice);
        }
        Ok(Plan::Write(writes, true))
    })
}
