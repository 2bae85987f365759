//! Revert codes. The notice to the old address of an email change carries
//! a code that, for [`REVERT_TTL`], puts that address back: a stolen
//! session that changes the email does not keep the account. Meanwhile the
//! old address stays reserved for the account, so that no other account
//! takes it, and a revert ends every revert code and reservation of the
//! account at once.

use std::time::Duration;

use crate::domain::{now, EventKind, PasswordHash, UserEmail, UserId};
use crate::store::codes::issuing::{millis, remove_codes, NewCode};
use crate::store::events::outbox;
use crate::store::layout::{user_fields, Keys};
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::link::Link;
use crate::store::plumbing::records::{add_password_fields, encode_time};
use crate::store::plumbing::transaction::{transact_with_replies, Embedded, Plan, Tx, Writes};
use crate::store::sessions::index::{revoke_all, session_ids};
use crate::store::users::email_index::{add_to_index, remove_from_index};
use crate::store::users::{find_id_by_email, read_user};
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

/// KEYS: the revert code, the reservation of the old email, the account's
/// revert set. ARGV: the user id, the lifetime (ms). Stores both keys with
/// the id, and adds them to the set scored later than every member before
/// them (Redis's clock, in ms), so that a revert can end what came after
/// it and keep what came before. A reservation still live keeps its first
/// score: it serves the earliest revert code of that address, and a revert
/// to a later address must not end it.
pub(in crate::store) const ADD_REVERT: &str = r"
local time = redis.call('TIME')
local score = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local last = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]
if last and tonumber(last) >= score then
  score = tonumber(last) + 1
end
local reserved = redis.call('EXISTS', KEYS[2]) == 1
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], score, KEYS[1])
if reserved then
  redis.call('ZADD', KEYS[3], 'NX', score, KEYS[2])
else
  redis.call('ZADD', KEYS[3], score, KEYS[2])
end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 0
";

/// Adds to an email change's writes the revert code (by its keyed hash
/// `digest`) that brings `old` back to `user`, and the reservation of `old`
/// for `user`.
pub(super) fn add_revert(
    writes: &mut Writes,
    keys: &Keys,
    user: UserId,
    old: &UserEmail,
    digest: &str,
) {
    writes
        .embedded(
            Embedded::AddRevert,
            &[
                keys.email_revert(old, digest),
                keys.email_reserved(old),
                keys.email_reverts_of(user),
            ],
        )
        .arg(user.to_string())
        .arg(millis(REVERT_TTL))
        .ignore();
}

/// The account that holds `email`: the one indexed under it, else the one
/// it is reserved for. An email leaves the index in the very step that
/// reserves it, and goes back into it in the one that ends the
/// reservation, so the two reads never both miss.
pub(super) fn email_holder(
    tx: &mut Tx,
    keys: &Keys,
    email: &UserEmail,
) -> Result<Option<UserId>, StoreError> {
    if let Some(id) = find_id_by_email(tx, keys, email)? {
        return Ok(Some(id));
    }
    reserved_for(tx, keys, email)
}

/// The account `email` is reserved for, if any.
pub(super) fn reserved_for(
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

/// Adds to a step's writes the end of `user`'s revert codes and
/// reservations that `ending` names. A key is deleted only while it still
/// names `user`: a reservation another account made since is left.
pub(super) fn end_reverts(
    tx: &mut Tx,
    keys: &Keys,
    user: UserId,
    ending: &Ending,
    writes: &mut Writes,
) -> Result<(), StoreError> {
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
    if ended.is_empty() {
        return Ok(());
    }
    let reads: Vec<redis::Cmd> = ended
        .iter()
        .map(|key| redis::cmd("GET").arg(key).take())
        .collect();
    let owners: Vec<Option<String>> = tx.read_all(&reads)?;
    let mine = user.to_string();
    let owned: Vec<&String> = ended
        .iter()
        .zip(&owners)
        .filter(|(_, owner)| owner.as_deref() == Some(mine.as_str()))
        .map(|(key, _)| key)
        .collect();
    if !owned.is_empty() {
        writes.cmd("DEL").arg(owned).ignore();
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
        let key = &key;
        let owner: Option<String> =
            self.read(|mut conn| async move {
                Ok(redis::cmd("GET").arg(key).query_async(&mut conn).await?)
            })
            .await?;
        Ok(owner.as_deref().and_then(UserId::parse))
    }

    /// Puts `revert.email` back on its account, marked verified (the code
    /// went there), with a password nobody knows; ends every session, code,
    /// revert code and reservation of the account; issues a reset code to
    /// the restored address; records the event. One atomic step; `false`
    /// (nothing written) when the code is no longer live or the account is
    /// gone. Fails with [`StoreError::EmailInUse`] when another account
    /// holds the address.
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
    let key = keys.user(id);
    let code = keys.email_revert(&revert.email, &revert.digest);
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    add_password_fields(&mut hset, &revert.locked_hash)?;
    transact_with_replies(conn, |tx| {
        let live: Option<String> = tx.read(redis::cmd("GET").arg(&code))?;
        let Some(current) = read_user(tx, keys, id)?.map(|record| record.user) else {
            return Ok(Plan::Answer(false));
        };
        if live != Some(id.to_string()) {
            return Ok(Plan::Answer(false));
        }
        if email_holder(tx, keys, &revert.email)?.is_some_and(|holder| holder != id) {
            return Err(StoreError::EmailInUse);
        }
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
        if current.email != revert.email {
            remove_from_index(&mut writes, keys, current.email.as_str(), id);
            add_to_index(&mut writes, keys, &revert.email, id);
        }
        end_reverts(tx, keys, id, &Ending::From(&code), &mut writes)?;
        let sessions = session_ids(tx, keys, id)?;
        revoke_all(&mut writes, keys, id, &sessions);
        remove_codes(&mut writes, keys, id);
        revert.reset_code.add(&mut writes, keys, id);
        outbox::record(&mut writes, keys, EventKind::ProfileUpdated, id, updated);
        outbox::record(&mut writes, keys, EventKind::PasswordChanged, id, updated);
        Ok(Plan::Write(writes, true))
    })
}
