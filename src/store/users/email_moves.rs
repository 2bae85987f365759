//! How an account moves to another email while emails stay unique, with no
//! step touching two slots: a user's hash lives in the user's bucket, an
//! email's index entry in the email's, and on a cluster those are two
//! slots, perhaps on two nodes. A move runs as steps, each atomic in its
//! own slot, in this order:
//!
//! 1. **Claim** the new email in its slot, unless another account holds it
//!    (its index entry, its reservation or a live claim): the claim names
//!    the account and when it was made.
//! 2. **Change** the user's hash, in its slot, only while the claim is
//!    younger than [`COMMIT_WINDOW`] by that node's clock; the same step
//!    records the move (`email_move`), so that whoever finds it can finish.
//! 3. **Settle**: the claim becomes the new email's index entry.
//! 4. **Leave** the old email: its index entry goes, and its reservation
//!    and revert code (when the notice carries one) are stored.
//! 5. **Forget** the move's record.
//!
//! A crash after step 1 leaves a claim that no hash will take once the
//! window is over: after [`CLAIM_LIFETIME`] the next claim or sign-up of
//! that email takes it over. A crash after step 2 leaves a recorded move:
//! the account's next email change or deletion, or the doctor, finishes it
//! first; meanwhile look-ups by the new email find the account through its
//! claim, and the old email stays the account's, as a reservation would
//! keep it. An index entry or reservation whose account is gone (a crash
//! in the middle of a deletion) frees its email at the next claim or
//! sign-up: a deleted account never comes back.

use std::time::Duration;

use redis::ConnectionLike;

use crate::domain::{UserEmail, UserId};
use crate::store::codes::issuing::millis;
use crate::store::email_reverts::{reserved_for, REVERT_TTL};
use crate::store::layout::{index_member, user_fields, Keys};
use crate::store::plumbing::link::SharedLink;
use crate::store::plumbing::transaction::{transact, Plan, Tx, Writes};
use crate::store::users::email_index::{add_to_index, remove_from_index};
use crate::store::users::find_id_by_email;
use crate::store::StoreError;

/// How long after its claim the user's hash may still take the email.
pub(in crate::store) const COMMIT_WINDOW: Duration = Duration::from_secs(10);

/// How long a claim holds its email without its account taking it; the
/// margin over [`COMMIT_WINDOW`] covers the clocks of two nodes that
/// disagree by up to 20 s.
pub(in crate::store) const CLAIM_LIFETIME: Duration = Duration::from_secs(30);

/// How long a claim's key lives at most: long after its lifetime, so that
/// a crashed move's claim is still found by whoever finishes the move.
const CLAIM_KEY_TTL: Duration = Duration::from_secs(86_400);

/// A claim: the account about to move to the email, and when (Unix ms, by
/// the clock of the email's node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store) struct Claim {
    pub user: UserId,
    pub made_ms: i64,
}

impl Claim {
    pub fn parse(raw: &str) -> Option<Self> {
        let (user, made) = raw.split_once(' ')?;
        Some(Self {
            user: UserId::parse(user)?,
            made_ms: made.parse().ok()?,
        })
    }

    fn encode(self) -> String {
        format!("{} {}", self.user, self.made_ms)
    }

    /// Whether, at `now_ms`, its account can no longer take the email.
    pub fn lapsed_at(self, now_ms: i64) -> bool {
        now_ms - self.made_ms >= signed_millis(CLAIM_LIFETIME)
    }
}

/// An email change whose last steps (settle, leave, forget) are to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::store) struct EmailMove {
    pub old: UserEmail,
    pub new: UserEmail,
    /// The keyed hash of the revert code the notice to `old` carries.
    pub revert_digest: Option<String>,
}

const OLD: &str = "old";
const NEW: &str = "new";
const REVERT_DIGEST: &str = "revert_digest";

impl EmailMove {
    /// Adds to the change's own step the record of this move.
    pub fn record(&self, writes: &mut Writes, keys: &Keys, user: UserId) {
        writes
            .cmd("HSET")
            .arg(keys.email_move(user))
            .arg(OLD)
            .arg(self.old.as_str())
            .arg(NEW)
            .arg(self.new.as_str());
        if let Some(digest) = &self.revert_digest {
            writes.arg(REVERT_DIGEST).arg(digest);
        }
        writes.ignore();
    }

    /// The recorded move of `user`, as a guard of the step.
    pub fn recorded(tx: &mut Tx, keys: &Keys, user: UserId) -> Result<Option<Self>, StoreError> {
        let fields: Vec<(String, String)> =
            tx.read(redis::cmd("HGETALL").arg(keys.email_move(user)))?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.as_str())
        };
        let email = |name: &str| field(name).and_then(|raw| UserEmail::parse(raw).ok());
        Ok(match (email(OLD), email(NEW)) {
            (Some(old), Some(new)) => Some(Self {
                old,
                new,
                revert_digest: field(REVERT_DIGEST).map(str::to_owned),
            }),
            _ => None,
        })
    }
}

/// `duration` in ms, as the clock's readings are.
fn signed_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The Unix ms of the node that serves the step's slot.
fn node_time_ms(tx: &mut Tx) -> Result<i64, StoreError> {
    let (secs, micros): (i64, i64) = tx.peek(&redis::cmd("TIME"))?;
    Ok(secs * 1000 + micros / 1000)
}

/// The email a user's hash holds, if the user exists: a read of another
/// slot, not a guard, so only for facts that do not change back (a user
/// gone stays gone) or that a claim's deadline fences.
fn email_of(tx: &mut Tx, keys: &Keys, user: UserId) -> Result<Option<String>, StoreError> {
    tx.peek(
        redis::cmd("HGET")
            .arg(keys.user(user))
            .arg(user_fields::EMAIL),
    )
}

/// Decides, in a step of `email`'s slot, which account other than `me`
/// holds `email`: the one indexed under it, the one it is reserved for, or
/// the one with a live claim on it. Adds to `writes` the clean-up of what
/// a crash left: an entry or reservation of an account that is gone, a
/// claim past its lifetime, settled when its account took the email.
pub(in crate::store) fn holder_other_than(
    tx: &mut Tx,
    keys: &Keys,
    email: &UserEmail,
    me: Option<UserId>,
    writes: &mut Writes,
) -> Result<Option<UserId>, StoreError> {
    let other = |id: UserId| Some(id) != me;
    if let Some(id) = find_id_by_email(tx, keys, email)?.filter(|id| other(*id)) {
        if email_of(tx, keys, id)?.is_some() {
            return Ok(Some(id));
        }
        remove_from_index(writes, keys, email.as_str(), id);
    }
    if let Some(id) = reserved_for(tx, keys, email)?.filter(|id| other(*id)) {
        if email_of(tx, keys, id)?.is_some() {
            return Ok(Some(id));
        }
        writes.cmd("DEL").arg(keys.email_reserved(email)).ignore();
    }
    let claim: Option<String> = tx.read(redis::cmd("GET").arg(keys.email_claim(email)))?;
    if let Some(claim) = claim.as_deref().and_then(Claim::parse) {
        if !other(claim.user) {
            return Ok(None);
        }
        if !claim.lapsed_at(node_time_ms(tx)?) {
            return Ok(Some(claim.user));
        }
        writes.cmd("DEL").arg(keys.email_claim(email)).ignore();
        // Past its lifetime, its account can no longer take the email: it
        // has it now, or never will.
        if email_of(tx, keys, claim.user)?.as_deref() == Some(email.as_str()) {
            add_to_index(writes, keys, email, claim.user);
            return Ok(Some(claim.user));
        }
    }
    Ok(None)
}

/// Step 1: claims `email` for `user`. The deadline (Unix ms) before which
/// the user's hash may take it, or `None` when another account holds it.
pub(in crate::store) fn claim(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    email: &UserEmail,
) -> Result<Option<i64>, StoreError> {
    transact(conn, |tx| {
        let mut writes = Writes::new();
        if holder_other_than(tx, keys, email, Some(user), &mut writes)?.is_some() {
            return Ok(Plan::Write(writes, None));
        }
        let made_ms = node_time_ms(tx)?;
        writes
            .cmd("SET")
            .arg(keys.email_claim(email))
            .arg(Claim { user, made_ms }.encode())
            .arg("PX")
            .arg(millis(CLAIM_KEY_TTL))
            .ignore();
        Ok(Plan::Write(
            writes,
            Some(made_ms + signed_millis(COMMIT_WINDOW)),
        ))
    })
}

/// Drops `user`'s claim on `email`, if it is still there: the change it
/// was for did not happen.
pub(in crate::store) fn release(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    email: &UserEmail,
) -> Result<(), StoreError> {
    let key = keys.email_claim(email);
    transact(conn, |tx| {
        let claim: Option<String> = tx.read(redis::cmd("GET").arg(&key))?;
        if claim
            .as_deref()
            .and_then(Claim::parse)
            .map(|claim| claim.user)
            != Some(user)
        {
            return Ok(Plan::Answer(()));
        }
        let mut writes = Writes::new();
        writes.cmd("DEL").arg(&key).ignore();
        Ok(Plan::Write(writes, ()))
    })
}

/// Steps 3 to 5 of `user`'s recorded `change`; each may run again.
pub(in crate::store) fn finish(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    change: &EmailMove,
) -> Result<(), StoreError> {
    settle(conn, keys, user, &change.new)?;
    leave(conn, keys, user, change)?;
    let record = keys.email_move(user);
    transact(conn, |tx| {
        if EmailMove::recorded(tx, keys, user)?.as_ref() != Some(change) {
            return Ok(Plan::Answer(()));
        }
        let mut writes = Writes::new();
        writes.cmd("DEL").arg(&record).ignore();
        Ok(Plan::Write(writes, ()))
    })
}

/// Finishes `user`'s recorded move, if one is left; whether one was.
pub(in crate::store) fn finish_recorded(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
) -> Result<bool, StoreError> {
    let recorded = transact(&mut *conn, |tx| {
        Ok(Plan::Answer(EmailMove::recorded(tx, keys, user)?))
    })?;
    match recorded {
        Some(change) => finish(conn, keys, user, &change).map(|()| true),
        None => Ok(false),
    }
}

/// Clears the claim on `email` if it has lapsed, as the next claim or
/// sign-up would: settled into the index when its account took the email,
/// else dropped. Whether it had lapsed.
pub(in crate::store) fn clear_lapsed_claim(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    email: &UserEmail,
) -> Result<bool, StoreError> {
    transact(conn, |tx| {
        let claim: Option<String> = tx.read(redis::cmd("GET").arg(keys.email_claim(email)))?;
        let Some(claim) = claim.as_deref().and_then(Claim::parse) else {
            return Ok(Plan::Answer(false));
        };
        if !claim.lapsed_at(node_time_ms(tx)?) {
            return Ok(Plan::Answer(false));
        }
        let mut writes = Writes::new();
        holder_other_than(tx, keys, email, None, &mut writes)?;
        Ok(Plan::Write(writes, true))
    })
}

/// Step 3: `email` goes into the index for `user`, and the claim goes.
fn settle(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    email: &UserEmail,
) -> Result<(), StoreError> {
    let key = keys.email_claim(email);
    transact(conn, |tx| {
        let claim: Option<String> = tx.read(redis::cmd("GET").arg(&key))?;
        let mut writes = Writes::new();
        add_to_index(&mut writes, keys, email, user);
        if claim
            .as_deref()
            .and_then(Claim::parse)
            .map(|claim| claim.user)
            == Some(user)
        {
            writes.cmd("DEL").arg(&key).ignore();
        }
        Ok(Plan::Write(writes, ()))
    })
}

/// Step 4: the old email's entry goes, and, when the notice carries a
/// revert code, the code and the old email's reservation are stored with
/// it, in the old email's slot. Only while the entry is still the user's:
/// once it went, another account may have taken the email.
fn leave(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    change: &EmailMove,
) -> Result<(), StoreError> {
    let old = &change.old;
    let member = index_member(old.as_str(), user);
    transact(conn, |tx| {
        let indexed: Option<f64> = tx.read(
            redis::cmd("ZSCORE")
                .arg(keys.email_index_of(old.as_str()))
                .arg(&member),
        )?;
        if indexed.is_none() {
            return Ok(Plan::Answer(()));
        }
        let mut writes = Writes::new();
        remove_from_index(&mut writes, keys, old.as_str(), user);
        if let Some(digest) = &change.revert_digest {
            for key in [keys.email_revert(old, digest), keys.email_reserved(old)] {
                writes
                    .cmd("SET")
                    .arg(key)
                    .arg(user.to_string())
                    .arg("PX")
                    .arg(millis(REVERT_TTL))
                    .ignore();
            }
        }
        Ok(Plan::Write(writes, ()))
    })
}

/// The account a claim on `email` names, when its hash took the email: a
/// look-up by email between steps 2 and 3 of a move finds it so.
pub(in crate::store) async fn claimed_holder(
    conn: &mut SharedLink,
    keys: &Keys,
    email: &UserEmail,
) -> Result<Option<UserId>, StoreError> {
    let claim: Option<String> = redis::cmd("GET")
        .arg(keys.email_claim(email))
        .query_async(conn)
        .await?;
    let Some(claim) = claim.as_deref().and_then(Claim::parse) else {
        return Ok(None);
    };
    let holds: Option<String> = redis::cmd("HGET")
        .arg(keys.user(claim.user))
        .arg(user_fields::EMAIL)
        .query_async(conn)
        .await?;
    Ok((holds.as_deref() == Some(email.as_str())).then_some(claim.user))
}
