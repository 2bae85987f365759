//! How an account moves to another email while emails stay unique, with no
//! step touching two slots: a user's hash lives in the user's bucket, an
//! email's index entry in the email's, and on a cluster those are two
//! slots, perhaps on two nodes. A move runs as steps, each atomic in its
//! own slot, in this order:
//!
//! 1. **Claim** the new email in its slot, unless another account holds it
//!    (its index entry, its reservation or a live claim): the claim names
//!    the account, the move (a random id) and when it was made. A live
//!    claim of another move of the same account goes first.
//! 2. **Change** the user's hash, in its slot, only while the claim is
//!    younger than [`COMMIT_WINDOW`] by that node's clock; the same step
//!    records the move (`email_move`), so that whoever finds it can finish.
//! 3. **Settle**: the claim, while it is this move's, becomes the new
//!    email's index entry, and the email's `email_entry` names the move.
//! 4. **Leave** the old email: its index entry goes, while `email_entry`
//!    still names the move that put it there (not a later move back), and
//!    its reservation and revert code (when the notice carries one) are
//!    stored; a revert's ended codes and reservations go.
//! 5. **Forget** the move's record.
//!
//! Each of steps 3 to 5 is fenced by the move's id, so that whoever runs
//! them late (a request that stalled, the doctor) changes nothing once
//! the account moved on.
//!
//! A crash after step 1 leaves a claim that no hash will take once the
//! window is over: after [`CLAIM_LIFETIME`] the next claim or sign-up of
//! that email takes it over. A claim has no expiry: it lasts until it is
//! settled or taken over, so that a crashed move's new email stays its
//! account's however long it waits to be finished. A crash after step 2 leaves a recorded move:
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
use crate::store::email_reverts::{self, reserved_for, REVERT_TTL};
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

/// A claim: the account about to move to the email, the move, and when
/// (Unix ms, by the clock of the email's node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::store) struct Claim {
    pub user: UserId,
    pub made_ms: i64,
    pub move_id: String,
}

impl Claim {
    pub fn parse(raw: &str) -> Option<Self> {
        let mut words = raw.split(' ');
        let user = UserId::parse(words.next()?)?;
        let made_ms = words.next()?.parse().ok()?;
        let move_id = words.next().unwrap_or_default().to_owned();
        Some(Self {
            user,
            made_ms,
            move_id,
        })
    }

    fn encode(&self) -> String {
        format!("{} {} {}", self.user, self.made_ms, self.move_id)
    }

    /// Whether, at `now_ms`, its account can no longer take the email.
    pub fn lapsed_at(&self, now_ms: i64) -> bool {
        now_ms - self.made_ms >= signed_millis(CLAIM_LIFETIME)
    }

    fn is_of(&self, user: UserId, move_id: &str) -> bool {
        self.user == user && self.move_id == move_id
    }
}

/// A claim made: its move's id, and the deadline (Unix ms) before which
/// the user's hash may take the email.
pub(in crate::store) struct Claimed {
    pub move_id: String,
    pub deadline_ms: i64,
}

/// An email change whose last steps (settle, leave, forget) are to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::store) struct EmailMove {
    pub id: String,
    pub old: UserEmail,
    pub new: UserEmail,
    /// The keyed hash of the revert code the notice to `old` carries.
    pub revert_digest: Option<String>,
    /// The move that put `old`'s index entry in place (`None`: the
    /// sign-up), as the user's hash named it.
    pub old_entry: Option<String>,
    /// Revert codes and reservations a revert ended, to delete.
    pub ended: Vec<String>,
}

const ID: &str = "id";
const OLD: &str = "old";
const NEW: &str = "new";
const REVERT_DIGEST: &str = "revert_digest";
const OLD_ENTRY: &str = "old_entry";
const ENDED: &str = "ended";

impl EmailMove {
    /// A move of `user`, whose hash holds `old` now, to the email of
    /// `claimed`; reads, as a guard of the step, which move put `old`'s
    /// entry in place.
    pub fn of(
        tx: &mut Tx,
        keys: &Keys,
        user: UserId,
        (old, new): (&UserEmail, &UserEmail),
        claimed: &Claimed,
    ) -> Result<Self, StoreError> {
        let old_entry: Option<String> = tx.read(
            redis::cmd("HGET")
                .arg(keys.user(user))
                .arg(user_fields::EMAIL_MOVE),
        )?;
        Ok(Self {
            id: claimed.move_id.clone(),
            old: old.clone(),
            new: new.clone(),
            revert_digest: None,
            old_entry,
            ended: Vec::new(),
        })
    }

    /// Adds to the change's own step the record of this move, and names
    /// it in the user's hash as the move of its email's entry.
    pub fn record(&self, writes: &mut Writes, keys: &Keys, user: UserId) {
        writes
            .cmd("HSET")
            .arg(keys.user(user))
            .arg(user_fields::EMAIL_MOVE)
            .arg(&self.id)
            .ignore();
        writes
            .cmd("HSET")
            .arg(keys.email_move(user))
            .arg(ID)
            .arg(&self.id)
            .arg(OLD)
            .arg(self.old.as_str())
            .arg(NEW)
            .arg(self.new.as_str());
        if let Some(digest) = &self.revert_digest {
            writes.arg(REVERT_DIGEST).arg(digest);
        }
        if let Some(entry) = &self.old_entry {
            writes.arg(OLD_ENTRY).arg(entry);
        }
        if !self.ended.is_empty() {
            writes.arg(ENDED).arg(self.ended.join("\n"));
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
                id: field(ID).unwrap_or_default().to_owned(),
                old,
                new,
                revert_digest: field(REVERT_DIGEST).map(str::to_owned),
                old_entry: field(OLD_ENTRY).map(str::to_owned),
                ended: field(ENDED)
                    .map(|ended| ended.lines().map(str::to_owned).collect())
                    .unwrap_or_default(),
            }),
            _ => None,
        })
    }
}

/// A new move's id: random, so that no step of one move acts on another's.
fn new_move_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `duration` in ms, as the clock's readings are.
fn signed_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Reads the clock of the node that serves the key's slot: a script with
/// the key goes there, where a bare `TIME` may go to any node.
const NODE_TIME: &str = "return redis.call('TIME')";

/// The Unix ms of the node that serves `email`'s slot.
fn node_time_ms(tx: &mut Tx, keys: &Keys, email: &UserEmail) -> Result<i64, StoreError> {
    let (secs, micros): (i64, i64) = tx.peek(
        redis::cmd("EVAL")
            .arg(NODE_TIME)
            .arg(1)
            .arg(keys.email_claim(email)),
    )?;
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

/// The claim on `email`, as a guard of the step.
fn read_claim(tx: &mut Tx, keys: &Keys, email: &UserEmail) -> Result<Option<Claim>, StoreError> {
    let raw: Option<String> = tx.read(redis::cmd("GET").arg(keys.email_claim(email)))?;
    Ok(raw.as_deref().and_then(Claim::parse))
}

/// Adds to `writes` the index entry of `email` for `user`, put there by
/// the move `move_id`.
fn settle_entry(writes: &mut Writes, keys: &Keys, email: &UserEmail, user: UserId, move_id: &str) {
    add_to_index(writes, keys, email, user);
    writes.cmd("DEL").arg(keys.email_claim(email)).ignore();
    // A move of an earlier release has no id, and leaves no trace.
    if !move_id.is_empty() {
        trace_entry(writes, keys, email, user, move_id);
    }
}

/// Adds to `writes` that the move `move_id` put `email`'s entry for
/// `user` in place (`email_entry`).
pub(in crate::store) fn trace_entry(
    writes: &mut Writes,
    keys: &Keys,
    email: &UserEmail,
    user: UserId,
    move_id: &str,
) {
    writes
        .cmd("SET")
        .arg(keys.email_entry(email))
        .arg(format!("{user} {move_id}"))
        .ignore();
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
    if let Some(claim) = read_claim(tx, keys, email)? {
        if !other(claim.user) {
            return Ok(None);
        }
        if !claim.lapsed_at(node_time_ms(tx, keys, email)?) {
            return Ok(Some(claim.user));
        }
        // Past its lifetime, its account can no longer take the email: it
        // has it now, or never will.
        if email_of(tx, keys, claim.user)?.as_deref() == Some(email.as_str()) {
            settle_entry(writes, keys, email, claim.user, &claim.move_id);
            return Ok(Some(claim.user));
        }
        writes.cmd("DEL").arg(keys.email_claim(email)).ignore();
    }
    Ok(None)
}

/// Step 1: claims `email` for a new move of `user`; `None` when another
/// account holds it. Fails with [`StoreError::Contention`] while another
/// move of the same account has a live claim on it: that one goes first.
pub(in crate::store) fn claim(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    email: &UserEmail,
) -> Result<Option<Claimed>, StoreError> {
    let move_id = new_move_id();
    let claiming = transact(conn, |tx| {
        let mut writes = Writes::new();
        if holder_other_than(tx, keys, email, Some(user), &mut writes)?.is_some() {
            return Ok(Plan::Write(writes, Claiming::Held));
        }
        let made_ms = node_time_ms(tx, keys, email)?;
        if let Some(own) = read_claim(tx, keys, email)? {
            if !own.lapsed_at(made_ms) {
                return Err(StoreError::Contention(1));
            }
            // An earlier move of the account that took the email and
            // stopped: it settles, and the caller reads the account again.
            if email_of(tx, keys, user)?.as_deref() == Some(email.as_str()) {
                settle_entry(&mut writes, keys, email, user, &own.move_id);
                return Ok(Plan::Write(writes, Claiming::Settled));
            }
        }
        let claim = Claim {
            user,
            made_ms,
            move_id: move_id.clone(),
        };
        writes
            .cmd("SET")
            .arg(keys.email_claim(email))
            .arg(claim.encode())
            .ignore();
        Ok(Plan::Write(
            writes,
            Claiming::Claimed(Claimed {
                move_id: move_id.clone(),
                deadline_ms: made_ms + signed_millis(COMMIT_WINDOW),
            }),
        ))
    })?;
    match claiming {
        Claiming::Claimed(claimed) => Ok(Some(claimed)),
        Claiming::Held => Ok(None),
        Claiming::Settled => Err(StoreError::Contention(1)),
    }
}

/// What a claim's step found.
enum Claiming {
    Claimed(Claimed),
    /// Another account holds the email.
    Held,
    /// The account holds it already, by a move the step just settled.
    Settled,
}

/// Drops the claim of `claimed` on `email`, if it is still there: its
/// move's own step answered without writing.
pub(in crate::store) fn release(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    email: &UserEmail,
    claimed: &Claimed,
) -> Result<(), StoreError> {
    transact(conn, |tx| {
        if !read_claim(tx, keys, email)?.is_some_and(|claim| claim.is_of(user, &claimed.move_id)) {
            return Ok(Plan::Answer(()));
        }
        let mut writes = Writes::new();
        writes.cmd("DEL").arg(keys.email_claim(email)).ignore();
        Ok(Plan::Write(writes, ()))
    })
}

/// Steps 3 to 5 of `user`'s recorded `change`; each may run again, and
/// none changes anything once the account moved on.
pub(in crate::store) fn finish(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    change: &EmailMove,
) -> Result<(), StoreError> {
    settle(conn, keys, user, change)?;
    leave(conn, keys, user, change)?;
    email_reverts::release(conn, user, &change.ended)?;
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
        let Some(claim) = read_claim(tx, keys, email)? else {
            return Ok(Plan::Answer(false));
        };
        if !claim.lapsed_at(node_time_ms(tx, keys, email)?) {
            return Ok(Plan::Answer(false));
        }
        let mut writes = Writes::new();
        holder_other_than(tx, keys, email, None, &mut writes)?;
        Ok(Plan::Write(writes, true))
    })
}

/// Step 3: while the claim on the new email is the move's, it becomes the
/// email's index entry. Gone or another's, the move settled already.
fn settle(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    user: UserId,
    change: &EmailMove,
) -> Result<(), StoreError> {
    transact(conn, |tx| {
        if !read_claim(tx, keys, &change.new)?.is_some_and(|claim| claim.is_of(user, &change.id)) {
            return Ok(Plan::Answer(()));
        }
        let mut writes = Writes::new();
        settle_entry(&mut writes, keys, &change.new, user, &change.id);
        Ok(Plan::Write(writes, ()))
    })
}

/// Which move put `email`'s entry for `user` in place, as `email_entry`
/// says (`None`: the sign-up, or a trace of another account), as a guard.
fn entry_move(
    tx: &mut Tx,
    keys: &Keys,
    email: &UserEmail,
    user: UserId,
) -> Result<Option<String>, StoreError> {
    let trace: Option<String> = tx.read(redis::cmd("GET").arg(keys.email_entry(email)))?;
    Ok(trace.and_then(|trace| {
        let (of, move_id) = trace.split_once(' ')?;
        (UserId::parse(of) == Some(user) && !move_id.is_empty()).then(|| move_id.to_owned())
    }))
}

/// Step 4: the old email's entry goes, and, when the notice carries a
/// revert code, the code and the old email's reservation are stored with
/// it, in the old email's slot. Only while the entry is still the one the
/// move left: once it went, another account may have taken the email, and
/// a later move back to it put a new one there.
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
        let entry = entry_move(tx, keys, old, user)?;
        if indexed.is_none() || entry != change.old_entry {
            return Ok(Plan::Answer(()));
        }
        let mut writes = Writes::new();
        remove_from_index(&mut writes, keys, old.as_str(), user);
        if entry.is_some() {
            writes.cmd("DEL").arg(keys.email_entry(old)).ignore();
        }
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

/// Removes `email`'s index entry for `user`, whose account is gone, and
/// the trace of the move that put it there, in the email's slot.
pub(in crate::store) fn forget_entry(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    email: &UserEmail,
    user: UserId,
) -> Result<(), StoreError> {
    transact(conn, |tx| {
        let entry = entry_move(tx, keys, email, user)?;
        let mut writes = Writes::new();
        remove_from_index(&mut writes, keys, email.as_str(), user);
        if entry.is_some() {
            writes.cmd("DEL").arg(keys.email_entry(email)).ignore();
        }
        Ok(Plan::Write(writes, ()))
    })
}

/// Removes `email`'s index entry for `user` when the account does not
/// hold the email: it is gone, or holds another with no move recorded or
/// under way to this one. A step of the email's slot that reads the claim
/// and the trace before the account's hash: a move back to the email
/// claims it first and rewrites the trace when it settles, so it either
/// changes the step's guards or shows in the hash.
pub(in crate::store) fn drop_unheld_entry(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    email: &UserEmail,
    user: UserId,
) -> Result<bool, StoreError> {
    let member = index_member(email.as_str(), user);
    transact(conn, |tx| {
        let indexed: Option<f64> = tx.read(
            redis::cmd("ZSCORE")
                .arg(keys.email_index_of(email.as_str()))
                .arg(&member),
        )?;
        let claimed = read_claim(tx, keys, email)?.is_some_and(|claim| claim.user == user);
        let entry = entry_move(tx, keys, email, user)?;
        let held = email_of(tx, keys, user)?;
        let moving: bool = tx.peek(redis::cmd("EXISTS").arg(keys.email_move(user)))?;
        if indexed.is_none() || claimed || moving || held.as_deref() == Some(email.as_str()) {
            return Ok(Plan::Answer(false));
        }
        let mut writes = Writes::new();
        remove_from_index(&mut writes, keys, email.as_str(), user);
        if entry.is_some() {
            writes.cmd("DEL").arg(keys.email_entry(email)).ignore();
        }
        Ok(Plan::Write(writes, true))
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
