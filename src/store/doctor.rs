//! Consistency checks over everything the service keeps, with SCAN (never
//! KEYS, and on a cluster on every primary), and the repairs that are safe
//! to make on live data. Each repair is a step of one slot, as the
//! service's own are: where a finding spans two slots (an index entry and
//! its account), the step runs in the email's slot and reads the account's
//! hash without guarding it, which is safe because an account that is gone
//! stays gone, and one that takes an email does so by a recorded move,
//! whose last steps put its entry back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use redis::Cmd;

use crate::domain::{now, SessionId, UserEmail, UserId};
use crate::store::layout::{
    index_member, parse_index_member, session_fields, user_fields, Bucket, Keys,
};
use crate::store::mail::delivery::counts as mail_counts;
use crate::store::plumbing::link::{query_each, Link};
use crate::store::plumbing::records::{decode_user, encode_time};
use crate::store::plumbing::transaction::{transact, Plan, Tx, Writes};
use crate::store::sessions::index::{decode_index, index_entries, update, Listed};
use crate::store::users::email_index::{add_to_index, exact_email_range, remove_from_index};
use crate::store::users::email_moves::{
    clear_lapsed_claim, drop_unheld_entry, finish_recorded, holder_other_than, trace_entry, Claim,
};
use crate::store::StoreError;

/// How many keys or members one round trip handles.
const BATCH: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// An email change whose last steps have not run: a crash, or a change
    /// running right now. Its account's index entries are part of it.
    UnfinishedEmailMove {
        user: UserId,
        old: UserEmail,
        new: UserEmail,
    },
    /// A claim on an email past its lifetime, left by a crash between a
    /// claim and the account's own step.
    LapsedEmailClaim { email: UserEmail, user: UserId },
    /// An index member that does not parse as `{email}\0{id}`, in the
    /// bucket `index`.
    MalformedIndexEntry { index: String, member: String },
    /// An index member in another bucket than its email's, where look-ups
    /// of the email miss it.
    MisplacedIndexEntry { index: String, member: String },
    /// An index member whose user does not exist.
    OrphanIndexEntry { member: String },
    /// An index member whose user now has another email.
    StaleIndexEntry { member: String, user_email: String },
    /// A user without the index member of its email.
    MissingIndexEntry { user: UserId, email: String },
    /// More than one user holds one email.
    SharedEmail { email: String, users: Vec<UserId> },
    /// A user hash that misses fields or holds invalid values.
    MalformedUser { key: String, reason: String },
    /// A session index naming a session that has ended.
    StaleSessionReference { user: UserId, session: String },
    /// A session set in the format of versions before the session index.
    LegacySessionSet { user: UserId, sessions: usize },
    /// A user's email stored under earlier address rules, which the current
    /// ones would store in another form or refuse: look-ups of the address
    /// miss it, so a person changes it.
    OutdatedEmail {
        user: UserId,
        email: String,
        now: CurrentRules,
    },
}

/// What the current address rules make of an outdated stored email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CurrentRules {
    /// The form they store it in, which the index would hold.
    StoreAs(String),
    /// Why they refuse it.
    Refuse(String),
}

impl Finding {
    /// Whether `--repair` can fix this without guessing.
    pub fn is_repairable(&self) -> bool {
        !matches!(
            self,
            Self::SharedEmail { .. } | Self::MalformedUser { .. } | Self::OutdatedEmail { .. }
        )
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let printable = |member: &str| member.replace('\0', "\\0");
        match self {
            Self::UnfinishedEmailMove { user, old, new } => write!(
                f,
                "user {user}'s email change from {old} to {new} has steps left to run"
            ),
            Self::LapsedEmailClaim { email, user } => write!(
                f,
                "email {email} has a claim by user {user} past its lifetime"
            ),
            Self::MalformedIndexEntry { index, member } => {
                write!(
                    f,
                    "malformed index entry {:?} in {index}",
                    printable(member)
                )
            }
            Self::MisplacedIndexEntry { index, member } => write!(
                f,
                "index entry {:?} is in {index}, not in its email's bucket",
                printable(member)
            ),
            Self::OrphanIndexEntry { member } => {
                write!(f, "index entry {:?} has no user", printable(member))
            }
            Self::StaleIndexEntry { member, user_email } => write!(
                f,
                "index entry {:?} is stale: the user's email is {user_email}",
                printable(member)
            ),
            Self::MissingIndexEntry { user, email } => {
                write!(f, "user {user} ({email}) has no index entry")
            }
            Self::SharedEmail { email, users } => {
                let users: Vec<String> = users.iter().map(UserId::to_string).collect();
                write!(
                    f,
                    "email {email} is held by {} users: {}",
                    users.len(),
                    users.join(", ")
                )
            }
            Self::MalformedUser { key, reason } => {
                write!(f, "user hash {key} is malformed: {reason}")
            }
            Self::StaleSessionReference { user, session } => {
                write!(f, "user {user} lists session {session}, which has expired")
            }
            Self::LegacySessionSet { user, sessions } => write!(
                f,
                "user {user} has a session set in the old format ({sessions} session ids), \
                 not yet moved into the session index"
            ),
            Self::OutdatedEmail { user, email, now } => match now {
                CurrentRules::StoreAs(normalized) => write!(
                    f,
                    "user {user} ({email}) has an email that the current rules store as \
                     {normalized}"
                ),
                CurrentRules::Refuse(reason) => write!(
                    f,
                    "user {user} ({email}) has an email that the current rules refuse: it {reason}"
                ),
            },
        }
    }
}

/// How many mail messages failed every attempt: a warning for operators,
/// not an inconsistency.
pub fn mail_dead_letters(conn: &mut Link, keys: &Keys) -> Result<u64, StoreError> {
    Ok(mail_counts(conn, keys)?.dead)
}

/// Told what the doctor is doing, to show progress.
pub trait Progress {
    fn phase(&mut self, name: &str, total: Option<u64>);
    fn advance(&mut self, done: u64);
}

/// Reads everything and lists what is inconsistent.
pub fn examine(
    conn: &mut Link,
    keys: &Keys,
    progress: &mut dyn Progress,
) -> Result<Vec<Finding>, StoreError> {
    let mut findings = Vec::new();
    let moving = read_moves(conn, keys, progress, &mut findings)?;
    read_claims(conn, keys, progress, &moving, &mut findings)?;
    let index = read_index(conn, keys, progress, &mut findings)?;
    let users = read_users(conn, keys, progress, &mut findings)?;

    let mut holders: BTreeMap<String, HashSet<UserId>> = BTreeMap::new();
    for (id, email) in &users {
        holders.entry(email.clone()).or_default().insert(*id);
        if moving.contains_key(id) {
            continue; // Its entries are the move's to settle.
        }
        let members = index.by_user.get(id).cloned().unwrap_or_default();
        if !members.iter().any(|indexed| indexed == email) {
            findings.push(Finding::MissingIndexEntry {
                user: *id,
                email: email.clone(),
            });
        }
        for indexed in members.iter().filter(|indexed| *indexed != email) {
            findings.push(Finding::StaleIndexEntry {
                member: index_member(indexed, *id),
                user_email: email.clone(),
            });
        }
    }
    for (id, emails) in &index.by_user {
        if !users.contains_key(id) {
            for email in emails {
                findings.push(Finding::OrphanIndexEntry {
                    member: index_member(email, *id),
                });
            }
        }
        for email in emails {
            holders.entry(email.clone()).or_default().insert(*id);
        }
    }
    for (email, ids) in holders {
        let live: Vec<UserId> = ids
            .into_iter()
            .filter(|id| users.contains_key(id))
            .collect();
        if live.len() > 1 {
            let mut users = live;
            users.sort_by_key(UserId::to_string);
            findings.push(Finding::SharedEmail { email, users });
        }
    }
    check_session_sets(conn, keys, progress, &mut findings)?;
    Ok(findings)
}

/// The recorded email moves, by account.
fn read_moves(
    conn: &mut Link,
    keys: &Keys,
    progress: &mut dyn Progress,
    findings: &mut Vec<Finding>,
) -> Result<HashMap<UserId, UserEmail>, StoreError> {
    let records: Vec<(UserId, String)> = conn
        .scan_keys(&keys.email_moves_pattern(), "hash")?
        .into_iter()
        .filter_map(|key| Some((keys.mover_of(&key)?, key)))
        .collect();
    progress.phase("email changes", Some(records.len() as u64));
    let mut moving = HashMap::new();
    for (done, batch) in records.chunks(BATCH).enumerate() {
        let commands: Vec<Cmd> = batch
            .iter()
            .map(|(_, key)| redis::cmd("HMGET").arg(key).arg("old").arg("new").take())
            .collect();
        let moves: Vec<(Option<String>, Option<String>)> = query_each(conn, &commands)?;
        for ((user, _), (old, new)) in batch.iter().zip(moves) {
            let parsed = |raw: Option<String>| UserEmail::parse(&raw?).ok();
            if let (Some(old), Some(new)) = (parsed(old), parsed(new)) {
                moving.insert(*user, new.clone());
                findings.push(Finding::UnfinishedEmailMove {
                    user: *user,
                    old,
                    new,
                });
            }
        }
        progress.advance(((done + 1) * BATCH).min(records.len()) as u64);
    }
    Ok(moving)
}

/// Reports the claims past their lifetime, by this machine's clock (the
/// repair decides by the email's node's), but for the claim of a move in
/// `moving`, which finishing the move settles.
fn read_claims(
    conn: &mut Link,
    keys: &Keys,
    progress: &mut dyn Progress,
    moving: &HashMap<UserId, UserEmail>,
    findings: &mut Vec<Finding>,
) -> Result<(), StoreError> {
    let claims: Vec<(UserEmail, String)> = conn
        .scan_keys(&keys.email_claims_pattern(), "string")?
        .into_iter()
        .filter_map(|key| Some((keys.claimed_email_of(&key)?, key)))
        .collect();
    progress.phase("email claims", Some(claims.len() as u64));
    let now_ms = encode_time(now());
    for (done, batch) in claims.chunks(BATCH).enumerate() {
        let commands: Vec<Cmd> = batch
            .iter()
            .map(|(_, key)| redis::cmd("GET").arg(key).take())
            .collect();
        let values: Vec<Option<String>> = query_each(conn, &commands)?;
        for ((email, _), value) in batch.iter().zip(values) {
            let Some(claim) = value.as_deref().and_then(Claim::parse) else {
                continue;
            };
            if claim.lapsed_at(now_ms) && moving.get(&claim.user) != Some(email) {
                findings.push(Finding::LapsedEmailClaim {
                    email: email.clone(),
                    user: claim.user,
                });
            }
        }
        progress.advance(((done + 1) * BATCH).min(claims.len()) as u64);
    }
    Ok(())
}

struct Index {
    by_user: HashMap<UserId, Vec<String>>,
}

fn read_index(
    conn: &mut Link,
    keys: &Keys,
    progress: &mut dyn Progress,
    findings: &mut Vec<Finding>,
) -> Result<Index, StoreError> {
    let count: Vec<Cmd> = Bucket::all()
        .map(|bucket| redis::cmd("ZCARD").arg(keys.email_index(bucket)).take())
        .collect();
    let sizes: Vec<u64> = query_each(conn, &count)?;
    progress.phase("email index", Some(sizes.iter().sum()));
    let mut by_user: HashMap<UserId, Vec<String>> = HashMap::new();
    let mut done = 0;
    for bucket in Bucket::all() {
        let index = keys.email_index(bucket);
        let mut min = "-".to_owned();
        loop {
            let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(&index)
                .arg(&min)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(BATCH)
                .query(conn)?;
            for member in &members {
                let (index, member) = (index.clone(), member.clone());
                match parse_index_member(&member) {
                    Some((email, id)) => {
                        by_user.entry(id).or_default().push(email.to_owned());
                        if Bucket::of_email(email) != bucket {
                            findings.push(Finding::MisplacedIndexEntry { index, member });
                        }
                    }
                    None => findings.push(Finding::MalformedIndexEntry { index, member }),
                }
            }
            done += members.len() as u64;
            progress.advance(done);
            match members.last() {
                Some(last) if members.len() == BATCH => min = format!("({last}"),
                _ => break,
            }
        }
    }
    Ok(Index { by_user })
}

/// Every well-formed user and its email.
fn read_users(
    conn: &mut Link,
    keys: &Keys,
    progress: &mut dyn Progress,
    findings: &mut Vec<Finding>,
) -> Result<HashMap<UserId, String>, StoreError> {
    progress.phase("users", None);
    let user_keys = conn.scan_keys(&keys.users_pattern(), "hash")?;
    progress.phase("users", Some(user_keys.len() as u64));
    let mut users = HashMap::new();
    let mut done = 0;
    for batch in user_keys.chunks(BATCH) {
        let fetch: Vec<Cmd> = batch
            .iter()
            .map(|key| redis::cmd("HGETALL").arg(key).take())
            .collect();
        let hashes: Vec<HashMap<String, String>> = query_each(conn, &fetch)?;
        for (key, fields) in batch.iter().zip(hashes) {
            let Some(id) = keys.user_id_of(key) else {
                findings.push(Finding::MalformedUser {
                    key: key.clone(),
                    reason: "the key holds no user id".into(),
                });
                continue;
            };
            if fields.is_empty() {
                continue; // Deleted since the SCAN.
            }
            if let Some(email) = examine_user(id, key, fields, findings)? {
                users.insert(id, email);
            }
        }
        done += batch.len() as u64;
        progress.advance(done);
    }
    Ok(users)
}

/// Checks one user hash; the email as stored, for the index checks, unless
/// the hash is malformed. An email that the current rules refuse keeps the
/// rest of the hash from decoding: that is checked once the email is fixed.
fn examine_user(
    id: UserId,
    key: &str,
    fields: HashMap<String, String>,
    findings: &mut Vec<Finding>,
) -> Result<Option<String>, StoreError> {
    let stored = fields.get(user_fields::EMAIL).cloned();
    let now = stored.as_deref().and_then(outdated_email);
    if let (Some(email), Some(now)) = (&stored, now) {
        let refused = matches!(now, CurrentRules::Refuse(_));
        findings.push(Finding::OutdatedEmail {
            user: id,
            email: email.clone(),
            now,
        });
        if refused {
            return Ok(stored);
        }
    }
    match decode_user(id, key, fields) {
        Ok(_) => Ok(stored),
        Err(StoreError::Corrupt { key, reason }) => {
            findings.push(Finding::MalformedUser { key, reason });
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// What the current address rules make of a stored email, when that is
/// not the email itself.
fn outdated_email(stored: &str) -> Option<CurrentRules> {
    match UserEmail::parse(stored) {
        Ok(email) if email.as_str() == stored => None,
        Ok(email) => Some(CurrentRules::StoreAs(email.as_str().to_owned())),
        Err(reason) => Some(CurrentRules::Refuse(reason)),
    }
}

fn check_session_sets(
    conn: &mut Link,
    keys: &Keys,
    progress: &mut dyn Progress,
    findings: &mut Vec<Finding>,
) -> Result<(), StoreError> {
    let indexes = conn.scan_keys(&keys.session_indexes_pattern(), "zset")?;
    progress.phase("session indexes", Some(indexes.len() as u64));
    for (done, index) in indexes.iter().enumerate() {
        let Some(user) = keys.owner_of_session_index(index) else {
            continue;
        };
        let ids: Vec<String> = redis::cmd("ZRANGE").arg(index).arg(0).arg(-1).query(conn)?;
        let live = sessions_exist(conn, keys, &ids)?;
        for (id, live) in ids.into_iter().zip(live) {
            if !live {
                findings.push(Finding::StaleSessionReference { user, session: id });
            }
        }
        progress.advance(done as u64 + 1);
    }
    let legacy = conn.scan_keys(&keys.legacy_session_sets_pattern(), "set")?;
    progress.phase("old session sets", Some(legacy.len() as u64));
    for (done, set) in legacy.iter().enumerate() {
        if let Some(user) = keys.owner_of_legacy_session_set(set) {
            let sessions: usize = redis::cmd("SCARD").arg(set).query(conn)?;
            findings.push(Finding::LegacySessionSet { user, sessions });
        }
        progress.advance(done as u64 + 1);
    }
    Ok(())
}

/// Whether each of `ids` names a session that exists; one round trip.
fn sessions_exist(conn: &mut Link, keys: &Keys, ids: &[String]) -> Result<Vec<bool>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let exists: Vec<Cmd> = ids
        .iter()
        .map(|id| match SessionId::parse(id) {
            Some(session) => redis::cmd("EXISTS").arg(keys.session(&session)).take(),
            None => redis::cmd("ECHO").arg(0).take(),
        })
        .collect();
    query_each(conn, &exists)
}

/// Moves the live sessions of a user's legacy set into its index, each
/// scored by its end as its TTL tells it, and deletes the set, in one
/// MULTI/EXEC under WATCH of both. Ids of sessions that ended, or that
/// belong to another user, are dropped.
fn fold_legacy_set(conn: &mut Link, keys: &Keys, user: UserId) -> Result<bool, StoreError> {
    let set = keys.legacy_session_set(user);
    let index = keys.session_index(user);
    transact(conn, |tx| {
        let (ids, indexed): (Vec<String>, Vec<(String, f64)>) = tx.read_all(&[
            redis::cmd("SMEMBERS").arg(&set).take(),
            index_entries(&index),
        ])?;
        if ids.is_empty() {
            return Ok(Plan::Answer(false)); // Gone meanwhile.
        }
        let ids: Vec<SessionId> = ids.iter().filter_map(|id| SessionId::parse(id)).collect();
        let now = encode_time(now());
        let owner = user.to_string();
        let mut moved = Vec::new();
        for id in ids {
            let session = keys.session(&id);
            let (of, expires_at): (Option<String>, Option<i64>) = tx.read(
                redis::cmd("HMGET")
                    .arg(&session)
                    .arg(session_fields::USER_ID)
                    .arg(session_fields::EXPIRES_AT),
            )?;
            // The time left changes by itself: read, not a guard.
            let ttl: i64 = tx.peek(redis::cmd("PTTL").arg(&session))?;
            let ends_at = match (ttl, expires_at) {
                (ttl, _) if ttl > 0 => now + ttl,
                // A session without a TTL ends at its absolute end at the latest.
                (-1, Some(expires_at)) => expires_at,
                _ => continue,
            };
            if of.as_deref() == Some(owner.as_str()) && ends_at > now {
                moved.push(Listed { id, ends_at });
            }
        }
        let ends_last = decode_index(indexed)
            .iter()
            .chain(&moved)
            .map(|listed| listed.ends_at)
            .max();
        let mut writes = Writes::new();
        update(&mut writes, &index, now, &[], &moved, ends_last);
        writes.cmd("DEL").arg(&set).ignore();
        Ok(Plan::Write(writes, true))
    })
}

/// Fixes `finding` if that is still right once re-checked in its step;
/// `Ok(false)` when it is not repairable or no longer applies.
pub fn repair(conn: &mut Link, keys: &Keys, finding: &Finding) -> Result<bool, StoreError> {
    match finding {
        Finding::MalformedIndexEntry { index, member } => {
            let removed: u32 = redis::cmd("ZREM").arg(index).arg(member).query(conn)?;
            Ok(removed == 1)
        }
        Finding::MisplacedIndexEntry { index, member } => {
            move_misplaced_entry(conn, keys, index, member)
        }
        Finding::OrphanIndexEntry { member } | Finding::StaleIndexEntry { member, .. } => {
            remove_unheld_entry(conn, keys, member)
        }
        Finding::MissingIndexEntry { user, email } => reindex(conn, keys, *user, email),
        Finding::UnfinishedEmailMove { user, .. } => finish_recorded(conn, keys, *user),
        Finding::LapsedEmailClaim { email, .. } => clear_lapsed_claim(conn, keys, email),
        Finding::StaleSessionReference { user, session } => {
            let index = keys.session_index(*user);
            let live = match SessionId::parse(session) {
                Some(id) => redis::cmd("EXISTS").arg(keys.session(&id)).query(conn)?,
                None => false,
            };
            if live {
                return Ok(false);
            }
            let removed: u32 = redis::cmd("ZREM").arg(index).arg(session).query(conn)?;
            Ok(removed == 1)
        }
        Finding::LegacySessionSet { user, .. } => fold_legacy_set(conn, keys, *user),
        Finding::SharedEmail { .. }
        | Finding::MalformedUser { .. }
        | Finding::OutdatedEmail { .. } => Ok(false),
    }
}

/// What the account `user` holds, read from another slot than the step's
/// (see the module's comment): its email, if it exists, and whether it has
/// a move to finish.
fn holding(tx: &mut Tx, keys: &Keys, user: UserId) -> Result<(Option<String>, bool), StoreError> {
    let email = tx.peek(
        redis::cmd("HGET")
            .arg(keys.user(user))
            .arg(user_fields::EMAIL),
    )?;
    let moving = tx.peek(redis::cmd("EXISTS").arg(keys.email_move(user)))?;
    Ok((email, moving))
}

/// Removes the index entry `member` when its account does not hold its
/// email: the account is gone, or holds another email and has no move to
/// finish. A step of the email's slot.
fn remove_unheld_entry(conn: &mut Link, keys: &Keys, member: &str) -> Result<bool, StoreError> {
    let Some((email, id)) = parse_index_member(member) else {
        return Ok(false);
    };
    if let Ok(parsed) = UserEmail::parse(email) {
        if parsed.as_str() == email {
            return drop_unheld_entry(conn, keys, &parsed, id);
        }
    }
    // An email stored as the rules no longer store it: no move leads to
    // this member.
    let index = keys.email_index_of(email);
    transact(conn, |tx| {
        let present: Option<f64> = tx.read(redis::cmd("ZSCORE").arg(&index).arg(member))?;
        let (held, moving) = holding(tx, keys, id)?;
        if present.is_none() || moving || held.as_deref() == Some(email) {
            return Ok(Plan::Answer(false));
        }
        let mut writes = Writes::new();
        remove_from_index(&mut writes, keys, email, id);
        Ok(Plan::Write(writes, true))
    })
}

/// Puts back the index entry of `user`'s email, unless another account
/// holds the email (then the doctor reports a shared email on its next
/// run). A step of the email's slot.
fn reindex(conn: &mut Link, keys: &Keys, user: UserId, email: &str) -> Result<bool, StoreError> {
    let Ok(email) = UserEmail::parse(email) else {
        return Ok(false);
    };
    let member = index_member(email.as_str(), user);
    let index = keys.email_index_of(email.as_str());
    transact(conn, |tx| {
        let present: Option<f64> = tx.read(redis::cmd("ZSCORE").arg(&index).arg(&member))?;
        let (held, moving) = holding(tx, keys, user)?;
        if present.is_some() || moving || held.as_deref() != Some(email.as_str()) {
            return Ok(Plan::Answer(false));
        }
        let mut writes = Writes::new();
        if holder_other_than(tx, keys, &email, Some(user), &mut writes)?.is_some() {
            return Ok(Plan::Write(writes, false));
        }
        add_to_index(&mut writes, keys, &email, user);
        // The move that gave the account its email, for the move that
        // leaves it.
        let entry_move: Option<String> = tx.peek(
            redis::cmd("HGET")
                .arg(keys.user(user))
                .arg(user_fields::EMAIL_MOVE),
        )?;
        if let Some(entry_move) = entry_move {
            trace_entry(&mut writes, keys, &email, user, &entry_move);
        }
        Ok(Plan::Write(writes, true))
    })
}

/// Moves an index member into its email's bucket, unless another member
/// holds the email there already (then the doctor reports a shared email
/// on its next run): first a step of the email's slot adds it there, then
/// one of the wrong bucket's removes it, so that a crash between the two
/// leaves the entry where look-ups find it.
fn move_misplaced_entry(
    conn: &mut Link,
    keys: &Keys,
    index: &str,
    member: &str,
) -> Result<bool, StoreError> {
    let Some((email, _)) = parse_index_member(member) else {
        return Ok(false);
    };
    let Ok(email) = UserEmail::parse(email) else {
        return Ok(false);
    };
    let home = keys.email_index_of(email.as_str());
    let placed = transact(&mut *conn, |tx| {
        let (min, max) = exact_email_range(&email);
        let holders: Vec<String> =
            tx.read(redis::cmd("ZRANGEBYLEX").arg(&home).arg(min).arg(max))?;
        let present: Option<f64> = tx.peek(redis::cmd("ZSCORE").arg(index).arg(member))?;
        if present.is_none() || holders.iter().any(|holder| holder != member) {
            return Ok(Plan::Answer(false));
        }
        let mut writes = Writes::new();
        writes.cmd("ZADD").arg(&home).arg(0).arg(member).ignore();
        Ok(Plan::Write(writes, true))
    })?;
    if !placed {
        return Ok(false);
    }
    let removed: u32 = redis::cmd("ZREM").arg(index).arg(member).query(conn)?;
    Ok(removed == 1)
}
