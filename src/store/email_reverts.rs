//! Revert codes. The notice to the old address of an email change carries
//! a code that, for [`REVERT_TTL`], puts that address back: a stolen
//! session that changes the email does not keep the account. Meanwhile the
//! old address stays reserved for the account, so that no other account
//! takes it, and a revert ends every revert code and reservation of the
//! account at once.

use std::time::Duration;

use redis::ConnectionLike;

use crate::domain::{now, EventKind, PasswordHash, UserEmail, UserId};
use crate::store::codes::issuing::{millis, remove_codes, NewCode};
use crate::store::events::outbox;
use crate::store::layout::{user_fields, Keys};
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::link::Link;
use crate::store::plumbing::records::{add_password_fields, encode_time};
use crate::store::plumbing::transaction::{
    transact, transact_with_replies, Embedded, Plan, Tx, Writes,
};
use crate::store::sessions::index::{revoke_all, session_ids};
use crate::store::users::email_index::{email_lookup, first_id};
use crate::store::users::email_moves::{self, Claimed, EmailMove};
use crate::store::users::read_user;
use crate::store::StoreError;

/// How long a revert code works, and the old address stays reserved.
pub const REVERT_TTL: Duration = Duration::from_secs(7 * 86_400);

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

/// KEYS: the account's revert set. ARGV: the keys of the revert code and
/// of the old email's reservation (in the old email's slot, stored by the
/// move's last steps), the lifetime (ms). Adds both to the set scored
/// later than every member before them (Redis's clock, in ms), so that a
/// revert can end what came after it and keep what came before. A
/// reservation still live keeps its first score: it serves the earliest
/// revert code of that address, and a revert to a later address must not
/// end it.
pub(in crate::store) const ADD_REVERT: &str = r"
local time = redis.call('TIME')
local score = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local last = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
if last and tonumber(last) >= score then
  score = tonumber(last) + 1
end
local reserved = redis.call('ZSCORE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[1], score, ARGV[1])
if not reserved or tonumber(reserved) + tonumber(ARGV[3]) <= score then
  redis.call('ZADD', KEYS[1], score, ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
";

/// Adds to an email change's writes, in the user's slot, the revert code
/// (by its keyed hash `digest`) that brings `old` back to `user`, and the
/// reservation of `old`, to the account's revert set.
pub(super) fn add_revert(
    writes: &mut Writes,
    keys: &Keys,
    user: UserId,
    old: &UserEmail,
    digest: &str,
) {
    writes
        .embedded(Embedded::AddRevert, &[keys.email_reverts_of(user)])
        .arg(keys.email_revert(old, digest))
        .arg(keys.email_reserved(old))
        .arg(millis(REVERT_TTL))
        .ignore();
}

/// The account `email` is reserved for, if any.
pub(in crate::store) fn reserved_for(
    tx: &mut Tx,
    keys: &Keys,
    email: &UserEmail,
) -> Result<Option<UserId>, StoreError> {
    let reserved: Option<String> = tx.read(redis::cmd("GET").arg(keys.email_reserved(email)))?;
    Ok(reserved.as_deref().and_then(UserId::parse))
}

/// Which of an account's revert codes and reservations to end.
pub(super) enum Ending<'a> {
    /// Every one: the account is gone.
    All,
    /// The one `code` (a key) and those that came after it: a revert to an
    /// address ends the codes the later addresses got, and keeps the codes
    /// of the addresses before it.
    From(&'a str),
}

/// Adds to a step's writes, in the user's slot, the end of `user`'s
/// revert codes and reservations that `ending` names; the keys of those
/// codes and reservations, which live in their emails' slots, for
/// [`release`] to delete once the step is done.
pub(super) fn end_reverts(
    tx: &mut Tx,
    keys: &Keys,
    user: UserId,
    ending: &Ending,
    writes: &mut Writes,
) -> Result<Vec<String>, StoreError> {
    let reverts = keys.email_reverts_of(user);
    let from = match ending {
        Ending::All => None,
        Ending::From(code) => {
            let score: Option<f64> = tx.read(redis::cmd("ZSCORE").arg(&reverts).arg(code))?;
            Some(score.unwrap_or(f64::INFINITY))
        }
    };
    let from_arg = from.map_or_else(|| "-inf".to_owned(), |score| score.to_string());
    let mut ended: Vec<String> = tx.read(
        redis::cmd("ZRANGEBYSCORE")
            .arg(&reverts)
            .arg(&from_arg)
            .arg("+inf"),
    )?;
    if let Ending::From(code) = ending {
        if !ended.iter().any(|key| key == code) {
            ended.push((*code).to_owned());
        }
    }
    match from {
        None => writes.cmd("DEL").arg(&reverts).ignore(),
        Some(_) => writes
            .cmd("ZREMRANGEBYSCORE")
            .arg(&reverts)
            .arg(&from_arg)
            .arg("+inf")
            .ignore(),
    };
    Ok(ended)
}

/// Deletes each of `ended` (revert codes and reservations, see
/// [`end_reverts`]) while it still names `user`, each in a step of its own
/// slot: a reservation another account made since is left.
pub(super) fn release(
    conn: &mut dyn ConnectionLike,
    user: UserId,
    ended: &[String],
) -> Result<(), StoreError> {
    let mine = user.to_string();
    for key in ended {
        transact(&mut *conn, |tx| {
            let owner: Option<String> = tx.read(redis::cmd("GET").arg(key))?;
            if owner.as_deref() != Some(mine.as_str()) {
                return Ok(Plan::Answer(()));
            }
            let mut writes = Writes::new();
            writes.cmd("DEL").arg(key).ignore();
            Ok(Plan::Write(writes, ()))
        })?;
    }
    Ok(())
}

impl RedisConn {
    /// The account the revert code with keyed hash `digest`, sent to
    /// `email`, would restore.
    pub async fn revert_code_owner(
        &self,
        email: &UserEmail,
        digest: &str,
    ) -> Result<Option<UserId>, StoreError> {
        let key = self.keys.email_revert(email, digest);
        let (key, keys) = (&key, &*self.keys);
        self.read(|mut conn| async move {
            let owner: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
            if let Some(owner) = owner.as_deref().and_then(UserId::parse) {
                return Ok(Some(owner));
            }
            // Until the move's last steps store the code in the email's
            // slot, the account's own revert set has it, and the old email
            // still indexes the account.
            let members = email_lookup(keys, email).query_async(&mut conn).await?;
            let Some(holder) = first_id(members) else {
                return Ok(None);
            };
            let live: Option<f64> = redis::cmd("ZSCORE")
                .arg(keys.email_reverts_of(holder))
                .arg(key)
                .query_async(&mut conn)
                .await?;
            Ok(live.map(|_| holder))
        })
        .await
    }

    /// Puts `revert.email` back on its account, marked verified (the code
    /// went there), with a password nobody knows; ends every session, code,
    /// revert code and reservation of the account; issues a reset code to
    /// the restored address; records the event. The account's own step
    /// runs between a claim on the address and the last steps of the move,
    /// as an email change's does; `false` (nothing written) when the code
    /// is no longer live or the account is gone. Fails with
    /// [`StoreError::EmailInUse`] when another account holds the address.
    pub async fn revert_email(&mut self, revert: Revert) -> Result<bool, StoreError> {
        self.run_mailing(move |conn, keys| revert_email(conn, keys, &revert))
            .await
    }
}

fn revert_email(
    conn: &mut Link,
    keys: &Keys,
    revert: &Revert,
) -> Result<(bool, Vec<redis::Value>), StoreError> {
    let id = revert.user;
    email_moves::finish_recorded(conn, keys, id)?;
    let Some(claimed) = email_moves::claim(conn, keys, id, &revert.email)? else {
        return Err(StoreError::EmailInUse);
    };
    let ((change, ended), replies) = match restore(conn, keys, revert, &claimed) {
        Ok((Some(done), replies)) => (done, replies),
        // Nothing written: the claim goes.
        Ok((None, replies)) => {
            email_moves::release(conn, keys, id, &revert.email, &claimed)?;
            return Ok((false, replies));
        }
        Err(StoreError::Contention(attempts)) => {
            email_moves::release(conn, keys, id, &revert.email, &claimed)?;
            return Err(StoreError::Contention(attempts));
        }
        // The step may have written: the claim stays, to lapse or be
        // settled.
        Err(error) => return Err(error),
    };
    match &change {
        // The move's last steps release the ended keys too.
        Some(change) => email_moves::finish(conn, keys, id, change)?,
        None => {
            email_moves::release(conn, keys, id, &revert.email, &claimed)?;
            release(conn, id, &ended)?;
        }
    }
    Ok((true, replies))
}

/// What a revert's own step did: the move it recorded (none when the
/// account has the address already), and the revert keys it ended.
type Restored = (Option<EmailMove>, Vec<String>);

/// The revert's step in the user's slot, while the code is still among the
/// account's revert codes and the claim on the address is young enough.
fn restore(
    conn: &mut Link,
    keys: &Keys,
    revert: &Revert,
    claimed: &Claimed,
) -> Result<(Option<Restored>, Vec<redis::Value>), StoreError> {
    let id = revert.user;
    let key = keys.user(id);
    let code = keys.email_revert(&revert.email, &revert.digest);
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    add_password_fields(&mut hset, &revert.locked_hash)?;
    transact_with_replies(conn, |tx| {
        let live: Option<f64> = tx.read(
            redis::cmd("ZSCORE")
                .arg(keys.email_reverts_of(id))
                .arg(&code),
        )?;
        let Some(current) = read_user(tx, keys, id)?.map(|record| record.user) else {
            return Ok(Plan::Answer(None));
        };
        if live.is_none() {
            return Ok(Plan::Answer(None));
        }
        if EmailMove::recorded(tx, keys, id)?.is_some() {
            return Err(StoreError::Contention(1));
        }
        tx.before(claimed.deadline_ms);
        let updated = now().max(current.updated);
        let mut writes = Writes::new();
        let mut hset = hset.clone();
        hset.arg(user_fields::EMAIL)
            .arg(revert.email.as_str())
            .arg(user_fields::EMAIL_VERIFIED)
            .arg(1)
            .arg(user_fields::UPDATED)
            .arg(encode_time(updated));
        writes.add_command(hset).ignore();
        let ended = end_reverts(tx, keys, id, &Ending::From(&code), &mut writes)?;
        let change = if current.email == revert.email {
            None
        } else {
            let emails = (&current.email, &revert.email);
            let mut change = EmailMove::of(tx, keys, id, emails, claimed)?;
            change.ended = ended.clone();
            change.record(&mut writes, keys, id);
            Some(change)
        };
        let sessions = session_ids(tx, keys, id)?;
        revoke_all(&mut writes, keys, id, &sessions);
        remove_codes(&mut writes, keys, id);
        revert.reset_code.add(&mut writes, keys, id);
        outbox::record(&mut writes, keys, EventKind::ProfileUpdated, id, updated);
        outbox::record(&mut writes, keys, EventKind::PasswordChanged, id, updated);
        Ok(Plan::Write(writes, Some((change, ended))))
    })
}
