//! The user commands. Reads run on the shared multiplexed connection; writes
//! run on a blocking thread with a pooled connection, and the writes that
//! belong together go in one atomic step.

pub(super) mod email_index;
pub(super) mod email_moves;

use std::time::Duration;

use redis::{ConnectionLike, FromRedisValue, Value};
use rocket::futures::future::join_all;

use crate::domain::{
    now, CodePurpose, EventKind, PasswordHash, QueuedMail, User, UserEmail, UserId, UserName,
};
use crate::store::codes::issuing::{millis, remove_codes, NewCode};
use crate::store::email_reverts::{add_revert, end_reverts, release, Ending};
use crate::store::events::outbox;
use crate::store::layout::{parse_index_member, user_fields, Bucket, Keys};
use crate::store::mail::queue::enqueue;
use crate::store::plumbing::conn::RedisConn;
use crate::store::plumbing::link::SharedLink;
use crate::store::plumbing::records::{
    add_password_fields, decode_public_values, decode_user_fields, encode_time, hgetall,
    hmget_public_fields, hset_user, UserRecord,
};
use crate::store::plumbing::transaction::{transact, transact_with_replies, Plan, Tx, Writes};
use crate::store::sessions::index::{revoke_all, session_ids};
use crate::store::users::email_index::{
    add_to_index, email_lookup, email_prefix_range, first_id, ListCursor,
};
use crate::store::users::email_moves::{holder_other_than, Claimed, EmailMove};
use crate::store::StoreError;

/// The outcome of a write that is conditional on the user's current state.
#[derive(Debug)]
pub enum Written<T> {
    Done(T),
    /// The user does not exist (any more).
    Missing,
    /// The password hash is no longer the one the caller verified against:
    /// the password changed in between.
    PasswordChanged,
    /// The account changed its email as often as a day allows; the next
    /// change may come after `retry_after`.
    EmailChangesSpent {
        retry_after: Duration,
    },
}

/// Why a password hash is replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashReplacement {
    /// A new password: sessions and codes end, an event is recorded and
    /// the notice (when mail is on) is queued.
    PasswordChange { notice: Option<QueuedMail> },
    /// The same password hashed with the current parameters.
    Rehash,
}

/// What an email change sends: a code to the new address, a notice to
/// the old one; and how many changes a day allows.
pub struct EmailChange {
    pub code: NewCode,
    /// Makes the notice for the user as the transaction reads it (so for
    /// the address it really leaves), and the keyed hash of the revert code
    /// it carries, if any: stored with that address, which stays reserved.
    pub notice: ChangeNotice,
    pub max_per_day: u32,
}

/// The notice of an email change to a user's current address, and the
/// keyed hash of the revert code it carries.
pub type ChangeNotice = Box<dyn Fn(&User) -> (Option<QueuedMail>, Option<String>) + Send>;

/// One page of the email index.
pub struct ListQuery {
    /// A normalized email prefix; empty for all users.
    pub prefix: String,
    /// Where the previous page ended.
    pub after: Option<ListCursor>,
    pub limit: usize,
}

pub struct UserPage {
    pub users: Vec<User>,
    /// How many users match the prefix.
    pub total: usize,
    /// Where to continue, when more users follow.
    pub next: Option<ListCursor>,
}

impl RedisConn {
    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        self.read_user(id, hgetall, decode_user_fields).await
    }

    /// The user's public fields only, without its password hash.
    pub async fn public_user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read_user(id, hmget_public_fields, decode_public_values)
            .await
    }

    /// Sends `command` for the user's hash and decodes the reply.
    async fn read_user<T, Reply: FromRedisValue>(
        &self,
        id: UserId,
        command: fn(&str) -> redis::Cmd,
        decode: fn(UserId, &str, Reply) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let key = self.keys.user(id);
        let key = key.as_str();
        self.read(|mut conn| async move {
            let reply = command(key).query_async(&mut conn).await?;
            decode(id, key, reply)
        })
        .await
    }

    /// The public fields of the user holding `email`.
    pub async fn public_user_by_email(
        &self,
        email: &UserEmail,
    ) -> Result<Option<User>, StoreError> {
        match self.user_id_by_email(email).await? {
            // An account between the steps of a move away from `email`
            // does not hold it any more.
            Some(id) => Ok(self
                .public_user_by_id(id)
                .await?
                .filter(|user| &user.email == email)),
            None => Ok(None),
        }
    }

    pub async fn user_id_by_email(&self, email: &UserEmail) -> Result<Option<UserId>, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move {
            let members = email_lookup(keys, email).query_async(&mut conn).await?;
            match first_id(members) {
                Some(id) => Ok(Some(id)),
                None => email_moves::claimed_holder(&mut conn, keys, email).await,
            }
        })
        .await
    }

    /// Stores a new user, with `code` (a verification code and its mail) in
    /// the same transaction, unless another user holds the email already:
    /// then, as `taken` says, [`StoreError::EmailInUse`], or the holder's
    /// notice is queued instead and nothing else is written.
    pub async fn create_user(
        &mut self,
        record: UserRecord,
        code: NewCode,
        taken: EmailTaken,
    ) -> Result<(), StoreError> {
        self.run_mailing(move |conn, keys| create_user(conn, keys, &record, &code, &taken))
            .await
    }

    /// Replaces name and email, provided the password hash is still `verified`.
    /// A new email is unverified; when the email changes, the user's own
    /// step stores `change.code` (for the new address) and queues the
    /// notice `change.notice` makes (to the old one), between the claim on
    /// the new email and the last steps of the move ([`email_moves`]).
    /// Fails with [`StoreError::EmailInUse`] when another account holds the
    /// new email.
    pub async fn update_profile(
        &mut self,
        id: UserId,
        verified: PasswordHash,
        profile: (UserName, UserEmail),
        change: EmailChange,
    ) -> Result<Written<User>, StoreError> {
        self.run_mailing(move |conn, keys| {
            update_profile(conn, keys, id, &verified, profile, &change)
        })
        .await
    }

    /// Replaces the password hash, provided it is still `verified`. A
    /// password change also ends all of the user's sessions and live codes
    /// and queues its notice, in the same transaction.
    pub async fn replace_password_hash(
        &mut self,
        id: UserId,
        verified: PasswordHash,
        new_hash: PasswordHash,
        reason: HashReplacement,
    ) -> Result<Written<()>, StoreError> {
        self.run_mailing(move |conn, keys| {
            replace_password_hash(conn, keys, id, &verified, &new_hash, &reason)
        })
        .await
    }

    /// Removes the user, its sessions and codes, provided the hash is still
    /// `verified`; then, each in its own slot, its index entry and its
    /// revert codes and reservations.
    pub async fn delete_user(
        &mut self,
        id: UserId,
        verified: PasswordHash,
    ) -> Result<Written<User>, StoreError> {
        self.run(move |conn, keys| delete_user(conn, keys, id, &verified))
            .await
    }

    /// Disables the user and ends its sessions and live codes, or enables
    /// it; either way queues `notice` (made for the user as it is), in the
    /// same transaction. `None` when there is no such user.
    pub async fn set_disabled(
        &mut self,
        id: UserId,
        disabled: bool,
        notice: impl Fn(&User) -> Option<QueuedMail> + Send + 'static,
    ) -> Result<Option<User>, StoreError> {
        self.run_mailing(move |conn, keys| set_disabled(conn, keys, id, disabled, &notice))
            .await
    }

    pub async fn list_users(&self, query: &ListQuery) -> Result<UserPage, StoreError> {
        let keys = &*self.keys;
        self.read(|mut conn| async move { list_users(&mut conn, keys, query).await })
            .await
    }
}

pub(in crate::store) fn read_user(
    tx: &mut Tx,
    keys: &Keys,
    id: UserId,
) -> Result<Option<UserRecord>, StoreError> {
    let key = keys.user(id);
    let fields = tx.read(&hgetall(&key))?;
    decode_user_fields(id, &key, fields)
}

pub(in crate::store) fn find_id_by_email(
    tx: &mut Tx,
    keys: &Keys,
    email: &UserEmail,
) -> Result<Option<UserId>, StoreError> {
    Ok(first_id(tx.read(&email_lookup(keys, email))?))
}

fn create_user(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    record: &UserRecord,
    code: &NewCode,
    taken: &EmailTaken,
) -> Result<((), Vec<Value>), StoreError> {
    let user = &record.user;
    let hset = hset_user(&keys.user(user.id), record)?;
    let (refused, replies) = transact_with_replies(conn, |tx| {
        let mut writes = Writes::new();
        if let Some(holder) = holder_other_than(tx, keys, &user.email, None, &mut writes)? {
            // What a crash left is cleared even so.
            let EmailTaken::Notify(notice) = taken else {
                return Ok(Plan::Write(writes, true));
            };
            // Only the account that has the address now hears of it: one
            // the address is reserved for has moved to another, and its
            // owner has the revert code in this mailbox already.
            // Only for its notice: the holder may live in another slot.
            let key = keys.user(holder);
            let holder = decode_user_fields(holder, &key, tx.peek(&hgetall(&key))?)?
                .map(|record| record.user)
                .filter(|holder| holder.email == user.email);
            if let Some(mail) = holder.as_ref().and_then(notice) {
                enqueue(&mut writes, keys, Bucket::of_user(user.id), &mail);
            }
            return Ok(Plan::Write(writes, false));
        }
        writes.add_command(hset.clone()).ignore();
        add_to_index(&mut writes, keys, &user.email, user.id);
        // A trace another account's move left: this entry is the sign-up's.
        writes
            .cmd("DEL")
            .arg(keys.email_entry(&user.email))
            .ignore();
        code.add(&mut writes, keys, user.id);
        outbox::record(&mut writes, keys, EventKind::Created, user.id, user.created);
        Ok(Plan::Write(writes, false))
    })?;
    if refused {
        return Err(StoreError::EmailInUse);
    }
    Ok(((), replies))
}

/// Makes the mail to a user, or `None` for none.
pub type Notice = Box<dyn Fn(&User) -> Option<QueuedMail> + Send>;

/// What a sign-up does when the email has an account already.
pub enum EmailTaken {
    /// Fails with [`StoreError::EmailInUse`].
    Refuse,
    /// Queues the notice this makes for the holder.
    Notify(Notice),
}

/// Why a write conditional on the verified password hash did not happen.
enum Refusal {
    Missing,
    PasswordChanged,
}

impl<T> From<Refusal> for Written<T> {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Missing => Written::Missing,
            Refusal::PasswordChanged => Written::PasswordChanged,
        }
    }
}

/// Reads the user and checks it is still the one whose password the
/// caller verified.
fn read_verified(
    tx: &mut Tx,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
) -> Result<Result<User, Refusal>, StoreError> {
    Ok(match read_user(tx, keys, id)? {
        None => Err(Refusal::Missing),
        Some(record) if &record.password_hash != verified => Err(Refusal::PasswordChanged),
        Some(record) => Ok(record.user),
    })
}

fn update_profile(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
    (name, email): (UserName, UserEmail),
    change: &EmailChange,
) -> Result<(Written<User>, Vec<Value>), StoreError> {
    for attempt in 0..MAX_MOVE_ATTEMPTS {
        if attempt > 0 {
            // Another change of the account is between its steps.
            std::thread::sleep(MOVE_RETRY_PAUSE * attempt);
        }
        email_moves::finish_recorded(conn, keys, id)?;
        let current: Option<String> = redis::cmd("HGET")
            .arg(keys.user(id))
            .arg(user_fields::EMAIL)
            .query(&mut *conn)?;
        if current
            .as_deref()
            .is_none_or(|current| current == email.as_str())
        {
            match change_profile(conn, keys, id, verified, (&name, &email), None) {
                Err(StoreError::Contention(_)) => continue,
                changed => return changed,
            }
        }
        let claimed = match email_moves::claim(conn, keys, id, &email) {
            Ok(Some(claimed)) => claimed,
            Ok(None) => return Err(StoreError::EmailInUse),
            Err(StoreError::Contention(_)) => continue,
            Err(error) => return Err(error),
        };
        let profile = (&name, &email);
        let changed = change_profile(conn, keys, id, verified, profile, Some((&claimed, change)));
        match &changed {
            Ok((Written::Done(user), _)) if user.email == email => {
                email_moves::finish_recorded(conn, keys, id)?;
                return changed;
            }
            // The step answered without writing: the claim goes.
            Ok(_) => {
                email_moves::release(conn, keys, id, &email, &claimed)?;
                return changed;
            }
            // Its guards changed, so it wrote nothing: start over.
            Err(StoreError::Contention(_)) => {
                email_moves::release(conn, keys, id, &email, &claimed)?;
            }
            // It may have written: the claim stays, to lapse or be settled.
            Err(_) => return changed,
        }
    }
    Err(StoreError::Contention(MAX_MOVE_ATTEMPTS))
}

/// How often a profile change starts over when another change of the
/// same account came between its steps, and how long it waits more
/// before each new start.
const MAX_MOVE_ATTEMPTS: u32 = 8;
const MOVE_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The profile change's step in the user's slot. With `moving` (the
/// claim's deadline and what an email change sends), the new email, when
/// the user does not have it yet, is taken only before the deadline, and
/// the move is recorded for its last steps.
fn change_profile(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
    (name, email): (&UserName, &UserEmail),
    moving: Option<(&Claimed, &EmailChange)>,
) -> Result<(Written<User>, Vec<Value>), StoreError> {
    let key = keys.user(id);
    let changes_key = keys.email_changes(id);
    transact_with_replies(conn, |tx| {
        let current = match read_verified(tx, keys, id, verified)? {
            Ok(user) => user,
            Err(refusal) => return Ok(Plan::Answer(refusal.into())),
        };
        if &current.name == name && &current.email == email {
            return Ok(Plan::Answer(Written::Done(current)));
        }
        let email_changes = &current.email != email;
        let change = match moving {
            Some((claimed, change)) if email_changes => {
                if let Some(retry_after) = changes_spent(tx, &changes_key, change.max_per_day)? {
                    return Ok(Plan::Answer(Written::EmailChangesSpent { retry_after }));
                }
                if EmailMove::recorded(tx, keys, id)?.is_some() {
                    return Err(StoreError::Contention(1));
                }
                tx.before(claimed.deadline_ms);
                let email_move = EmailMove::of(tx, keys, id, (&current.email, email), claimed)?;
                Some((change, email_move))
            }
            // The email changed since it was read: start over.
            None if email_changes => return Err(StoreError::Contention(1)),
            _ => None,
        };
        let updated = User {
            name: name.clone(),
            email: email.clone(),
            updated: now().max(current.updated),
            email_verified: current.email_verified && !email_changes,
            ..current.clone()
        };
        let mut writes = Writes::new();
        writes
            .cmd("HSET")
            .arg(&key)
            .arg(user_fields::NAME)
            .arg(updated.name.as_str())
            .arg(user_fields::EMAIL)
            .arg(updated.email.as_str())
            .arg(user_fields::UPDATED)
            .arg(encode_time(updated.updated))
            .ignore();
        if let Some((change, mut email_move)) = change {
            writes
                .cmd("HDEL")
                .arg(&key)
                .arg(user_fields::EMAIL_VERIFIED)
                .ignore()
                .cmd("INCR")
                .arg(&changes_key)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&changes_key)
                .arg(millis(EMAIL_CHANGE_DAY))
                .arg("NX")
                .ignore();
            remove_codes(&mut writes, keys, id);
            change.code.add(&mut writes, keys, id);
            let (notice, revert_digest) = (change.notice)(&current);
            if let Some(notice) = &notice {
                enqueue(&mut writes, keys, Bucket::of_user(id), notice);
            }
            if let Some(digest) = &revert_digest {
                add_revert(&mut writes, keys, id, &current.email, digest);
            }
            email_move.revert_digest = revert_digest;
            email_move.record(&mut writes, keys, id);
        }
        outbox::record(
            &mut writes,
            keys,
            EventKind::ProfileUpdated,
            id,
            updated.updated,
        );
        Ok(Plan::Write(writes, Written::Done(updated)))
    })
}

/// The window of `EMAIL_CHANGES_MAX_PER_DAY`.
const EMAIL_CHANGE_DAY: Duration = Duration::from_secs(86_400);

/// How long until the next email change, when the day's `max` are spent;
/// `None` while changes are left. The count is a guard; the time left,
/// which changes by itself, is not.
fn changes_spent(tx: &mut Tx, changes_key: &str, max: u32) -> Result<Option<Duration>, StoreError> {
    let count: Option<u32> = tx.read(redis::cmd("GET").arg(changes_key))?;
    if count.unwrap_or(0) < max {
        return Ok(None);
    }
    let ttl_ms: i64 = tx.peek(redis::cmd("PTTL").arg(changes_key))?;
    Ok(Some(Duration::from_millis(
        u64::try_from(ttl_ms).unwrap_or(0).max(1),
    )))
}

fn replace_password_hash(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
    new_hash: &PasswordHash,
    reason: &HashReplacement,
) -> Result<(Written<()>, Vec<Value>), StoreError> {
    let key = keys.user(id);
    let mut hset = redis::cmd("HSET");
    hset.arg(&key);
    add_password_fields(&mut hset, new_hash)?;
    transact_with_replies(conn, |tx| {
        let current = match read_verified(tx, keys, id, verified)? {
            Ok(user) => user,
            Err(refusal) => return Ok(Plan::Answer(refusal.into())),
        };
        let mut writes = Writes::new();
        match reason {
            HashReplacement::PasswordChange { notice } => {
                let updated = now().max(current.updated);
                let mut hset = hset.clone();
                hset.arg(user_fields::UPDATED).arg(encode_time(updated));
                writes.add_command(hset).ignore();
                let sessions = session_ids(tx, keys, id)?;
                revoke_all(&mut writes, keys, id, &sessions);
                remove_codes(&mut writes, keys, id);
                outbox::record(&mut writes, keys, EventKind::PasswordChanged, id, updated);
                if let Some(notice) = notice {
                    enqueue(&mut writes, keys, Bucket::of_user(id), notice);
                }
            }
            HashReplacement::Rehash => {
                writes.add_command(hset.clone()).ignore();
            }
        }
        Ok(Plan::Write(writes, Written::Done(())))
    })
}

fn delete_user(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    id: UserId,
    verified: &PasswordHash,
) -> Result<Written<User>, StoreError> {
    email_moves::finish_recorded(conn, keys, id)?;
    let key = keys.user(id);
    let (deleted, ended) = transact(&mut *conn, |tx| {
        let current = match read_verified(tx, keys, id, verified)? {
            Ok(user) => user,
            Err(refusal) => return Ok(Plan::Answer((refusal.into(), Vec::new()))),
        };
        if EmailMove::recorded(tx, keys, id)?.is_some() {
            return Err(StoreError::Contention(1));
        }
        let sessions = session_ids(tx, keys, id)?;
        let mut writes = Writes::new();
        // The day's counts are the user's too: a new account has a new id.
        writes
            .cmd("DEL")
            .arg(&key)
            .arg(keys.email_changes(id))
            .arg(keys.codes_issued(CodePurpose::VerifyEmail, id))
            .arg(keys.codes_issued(CodePurpose::ResetPassword, id))
            .arg(keys.code_failures_of_user(CodePurpose::VerifyEmail, id))
            .arg(keys.code_failures_of_user(CodePurpose::ResetPassword, id))
            .ignore();
        revoke_all(&mut writes, keys, id, &sessions);
        remove_codes(&mut writes, keys, id);
        let ended = end_reverts(tx, keys, id, &Ending::All, &mut writes)?;
        outbox::record(&mut writes, keys, EventKind::Deleted, id, now());
        Ok(Plan::Write(writes, (Written::Done(current), ended)))
    })?;
    if let Written::Done(user) = &deleted {
        // The email's slot: its entry names an account that is gone, which
        // a later sign-up would clear too.
        email_moves::forget_entry(conn, keys, &user.email, id)?;
        release(conn, id, &ended)?;
    }
    Ok(deleted)
}

fn set_disabled(
    conn: &mut dyn ConnectionLike,
    keys: &Keys,
    id: UserId,
    disabled: bool,
    notice: &dyn Fn(&User) -> Option<QueuedMail>,
) -> Result<(Option<User>, Vec<Value>), StoreError> {
    let key = keys.user(id);
    transact_with_replies(conn, |tx| {
        let Some(current) = read_user(tx, keys, id)?.map(|record| record.user) else {
            return Ok(Plan::Answer(None));
        };
        if current.disabled == disabled {
            return Ok(Plan::Answer(Some(current)));
        }
        let updated = User {
            disabled,
            updated: now().max(current.updated),
            ..current
        };
        let mut writes = Writes::new();
        writes
            .cmd("HSET")
            .arg(&key)
            .arg(user_fields::UPDATED)
            .arg(encode_time(updated.updated))
            .ignore();
        let kind = if disabled {
            writes
                .cmd("HSET")
                .arg(&key)
                .arg(user_fields::DISABLED)
                .arg(1)
                .ignore();
            let sessions = session_ids(tx, keys, id)?;
            revoke_all(&mut writes, keys, id, &sessions);
            remove_codes(&mut writes, keys, id);
            EventKind::Disabled
        } else {
            writes
                .cmd("HDEL")
                .arg(&key)
                .arg(user_fields::DISABLED)
                .ignore();
            EventKind::Enabled
        };
        outbox::record(&mut writes, keys, kind, id, updated.updated);
        if let Some(notice) = notice(&updated) {
            enqueue(&mut writes, keys, Bucket::of_user(id), &notice);
        }
        Ok(Plan::Write(writes, Some(updated)))
    })
}

async fn list_users(
    conn: &mut SharedLink,
    keys: &Keys,
    query: &ListQuery,
) -> Result<UserPage, StoreError> {
    let after = query.after.as_ref().map(ListCursor::member);
    let (min, max) = email_prefix_range(&query.prefix, after);
    let (count_min, count_max) = email_prefix_range(&query.prefix, None);
    // Each bucket's next members and its count, all sent at once (one
    // pipeline per bucket, as each bucket is a slot of its own on a
    // cluster): the page is the first of all buckets' members together,
    // and one extra member tells whether another page follows.
    let lookups = Bucket::all().map(|bucket| {
        let index = keys.email_index(bucket);
        let mut lookup = redis::pipe();
        lookup
            .cmd("ZRANGEBYLEX")
            .arg(&index)
            .arg(&min)
            .arg(&max)
            .arg("LIMIT")
            .arg(0)
            .arg(query.limit + 1);
        if query.prefix.is_empty() {
            lookup.cmd("ZCARD").arg(&index);
        } else {
            lookup
                .cmd("ZLEXCOUNT")
                .arg(&index)
                .arg(&count_min)
                .arg(&count_max);
        }
        let mut conn = conn.clone();
        async move { lookup.query_async::<(Vec<String>, usize)>(&mut conn).await }
    });
    let replies: Vec<(Vec<String>, usize)> = join_all(lookups)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let total = replies.iter().map(|(_, count)| count).sum();
    let mut members: Vec<String> = replies
        .into_iter()
        .flat_map(|(members, _)| members)
        .collect();
    members.sort_unstable();
    members.truncate(query.limit + 1);
    let next = if members.len() > query.limit {
        members.truncate(query.limit);
        members.last().cloned().map(ListCursor::after)
    } else {
        None
    };

    let (emails, ids): (Vec<&str>, Vec<UserId>) = members
        .iter()
        .filter_map(|member| parse_index_member(member))
        .unzip();
    // Sent all at once: the users live in many slots.
    let fetches = ids.iter().map(|id| {
        let fetch = hmget_public_fields(&keys.user(*id));
        let mut conn = conn.clone();
        async move { fetch.query_async::<Vec<Option<String>>>(&mut conn).await }
    });
    let replies: Vec<Vec<Option<String>>> = join_all(fetches)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let users = ids
        .into_iter()
        .zip(replies)
        .map(|(id, values)| decode_public_values(id, &keys.user(id), values))
        .zip(emails)
        // A user deleted between the two round trips is left out, and so
        // is the entry of the email a user is leaving (a move's last steps
        // remove it).
        .filter_map(|(user, email)| match user {
            Ok(Some(user)) if user.email.as_str() != email => None,
            user => user.transpose(),
        })
        .collect::<Result<_, _>>()?;
    Ok(UserPage { users, total, next })
}
