//! Revert codes. The notice to the old address of an email change carries
//! a code that, for [`REVERT_TTL`], puts that address back: a stolen
//! session that changes the email does not keep the account. Meanwhile the
//! old address stays reserved for the account, so that no other account
//! takes it, and a revert ends every revert code and reservation of the
//! account at once.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Connection, Pipeline, Script};

use super::code_writes::{millis, remove_codes, NewCode, CODE_DAY};
use super::codes::FAILURE_GATE;
use super::conn::RedisConn;
use super::email_index::{add_to_index, remove_from_index};
use super::layout::{user_fields, Keys};
use super::mail_queue::MailTally;
use super::outbox;
use super::records::{add_password_fields, encode_time};
use super::session_index::{revoke_all, watched_session_ids};
use super::transaction::{transact_with_replies, watch, Plan};
use super::users::{find_id_by_email, read_user};
use super::StoreError;
use crate::domain::{now, EventKind, PasswordHash, UserEmail, UserId};

/// How long a revert code works, and the old address stays reserved.
pub const REVERT_TTL: Duration = Duration::from_secs(7 * 86_400);

/// KEYS: the revert code, the wrong revert codes of the email today. ARGV:
/// the most wrong codes a day, the day (ms). Returns the id of the account
/// the code restores, '' for no such code (counted), or minus the ms to
/// wait while the email's wrong codes are at their most.
const CHECK_REVERT: &str = r"
local wait = refused(KEYS[2], ARGV[1])
if wait > 0 then
  return -wait
end
local id = redis.call('GET', KEYS[1])
if id then
  return id
end
count_failure(KEYS[2], ARGV[2])
return ''
";

static CHECK_REVERT_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{FAILURE_GATE}{CHECK_REVERT}")));

/// How a revert code offered for an email fared.
#[derive(Debug, PartialEq, Eq)]
pub enum RevertCheck {
    /// It restores the account `0`.
    Matched(UserId),
    Wrong,
    /// The email's wrong revert codes are at their most until `retry_after`
    /// from now; the code was not looked up.
    Refused {
        retry_after: Duration,
    },
}

/// A revert that matched: the account, the address it gets back, and what
/// the same transaction writes with it.
pub struct Revert {
    pub user: UserId,
    pub email: UserEmail,
    /// The keyed hash of the code: it must still be live when the revert
    /// commits, so that it works once.
    pub digest: String,
    /// A hash of a password nobody knows: whoever changed the email may
    /// know the password too.
    pub locked_hash: PasswordHash,
    /// The reset code for the restored address, and its mail.
    pub reset_code: NewCode,
}

/// Adds to an email change's MULTI/EXEC the revert code (by its keyed hash
/// `digest`) that brings `old` back to `user`, and the reservation of `old`
/// for `user`.
pub(super) fn add_revert(
    writes: &mut Pipeline,
    keys: &Keys,
    user: UserId,
    old: &UserEmail,
    digest: &str,
) {
    let ttl = millis(REVERT_TTL);
    let code = keys.email_revert(old, digest);
    let reserved = keys.email_reserved(old);
    let reverts = keys.email_reverts_of(user);
    for key in [&code, &reserved] {
        writes
            .cmd("SET")
            .arg(key)
            .arg(user.to_string())
            .arg("PX")
            .arg(ttl)
            .ignore();
    }
    writes
        .cmd("SADD")
        .arg(&reverts)
        .arg(&code)
        .arg(&reserved)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&reverts)
        .arg(ttl)
        .ignore();
}

/// The account that holds `email`: the one indexed under it, else the one
/// it is reserved for. Read under WATCH of the email's claim.
pub(super) fn email_holder(
    conn: &mut Connection,
    keys: &Keys,
    email: &UserEmail,
) -> Result<Option<UserId>, StoreError> {
    if let Some(id) = find_id_by_email(conn, keys, email)? {
        return Ok(Some(id));
    }
    let reserved: Option<String> = redis::cmd("GET")
        .arg(keys.email_reserved(email))
        .query(conn)?;
    Ok(reserved.as_deref().and_then(UserId::parse))
}

/// Adds to a MULTI/EXEC the end of every revert code and reservation of
/// `user`, read under WATCH.
pub(super) fn end_reverts(
    conn: &mut Connection,
    keys: &Keys,
    user: UserId,
    writes: &mut Pipeline,
) -> Result<(), StoreError> {
    let reverts = keys.email_reverts_of(user);
    watch(conn, &reverts)?;
    let members: Vec<String> = redis::cmd("SMEMBERS").arg(&reverts).query(conn)?;
    writes.cmd("DEL").arg(&reverts).arg(members).ignore();
    Ok(())
}

impl RedisConn {
    /// Looks up the revert code with keyed hash `digest` sent to `email`;
    /// a miss counts against the email's day, refused past `max_failures`.
    pub async fn check_revert_code(
        &self,
        email: &UserEmail,
        digest: &str,
        max_failures: u32,
    ) -> Result<RevertCheck, StoreError> {
        let keys = [
            self.keys.email_revert(email, digest),
            self.keys.revert_failures(email),
        ];
        let keys = &keys;
        let reply: redis::Value = self
            .script(|mut conn| async move {
                Ok(CHECK_REVERT_SCRIPT
                    .key(&keys[..])
                    .arg(max_failures)
                    .arg(millis(CODE_DAY))
                    .invoke_async(&mut conn)
                    .await?)
            })
            .await?;
        Ok(match reply {
            redis::Value::Int(wait) => RevertCheck::Refused {
                retry_after: Duration::from_millis(wait.unsigned_abs()),
            },
            redis::Value::BulkString(id) => std::str::from_utf8(&id)
                .ok()
                .and_then(UserId::parse)
                .map_or(RevertCheck::Wrong, RevertCheck::Matched),
            _ => RevertCheck::Wrong,
        })
    }

    /// Puts `revert.email` back on its account, marked verified (the code
    /// went there), with a password nobody knows; ends every session, code,
    /// revert code and reservation of the account; issues a reset code to
    /// the restored address; records the event. One MULTI/EXEC; `false`
    /// (nothing written) when the code is no longer live or the account is
    /// gone. Fails with [`StoreError::EmailInUse`] when another account
    /// holds the address.
    pub async fn revert_email(&mut self, revert: Revert) -> Result<bool, StoreError> {
        let (done, replies) = self
            .run(move |conn, keys| revert_email(conn, keys, &revert))
            .await?;
        self.tally_mail(&MailTally::of(&replies));
        Ok(done)
    }
}

fn revert_email(
    conn: &mut Connection,
    keys: &Keys,
    revert: &Revert,
) -> Result<(bool, Vec<redis::Value>), StoreError> {
    let id = revert.user;
    let key = keys.user(id);
    let code = keys.email_revert(&revert.email, &revert.digest);
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    add_password_fields(&mut hset, &revert.locked_hash)?;
    transact_with_replies(conn, &key, |conn| {
        watch(conn, &code)?;
        watch(conn, &keys.email_claim(&revert.email))?;
        let live: Option<String> = redis::cmd("GET").arg(&code).query(conn)?;
        let Some(current) = read_user(conn, keys, id)?.map(|record| record.user) else {
            return Ok(Plan::Answer(false));
        };
        if live != Some(id.to_string()) {
            return Ok(Plan::Answer(false));
        }
        if email_holder(conn, keys, &revert.email)?.is_some_and(|holder| holder != id) {
            return Err(StoreError::EmailInUse);
        }
        let updated = now().max(current.updated);
        let mut writes = redis::pipe();
        let mut hset = hset.clone();
        hset.arg(user_fields::EMAIL)
            .arg(revert.email.as_str())
            .arg(user_fields::EMAIL_VERIFIED)
            .arg(1)
            .arg(user_fields::UPDATED)
            .arg(encode_time(updated));
        writes.add_command(hset).ignore();
        if current.email != revert.email {
            remove_from_index(&mut writes, keys, current.email.as_str(), id);
            add_to_index(&mut writes, keys, &revert.email, id);
        }
        end_reverts(conn, keys, id, &mut writes)?;
        let sessions = watched_session_ids(conn, keys, id)?;
        revoke_all(&mut writes, keys, id, &sessions);
        remove_codes(&mut writes, keys, id);
        revert.reset_code.add(&mut writes, keys, id);
        outbox::record(&mut writes, keys, EventKind::ProfileUpdated, id, updated);
        outbox::record(&mut writes, keys, EventKind::PasswordChanged, id, updated);
        Ok(Plan::Write(writes, true))
    })
}
