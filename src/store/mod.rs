//! Redis: every key, every command, and the connections they run on. The
//! service layer ([`crate::accounts`]), the mail sender, the doctor, the
//! migration and the start-up line call in here; routes never do.
//!
//! - `plumbing`: the way to Redis, which every feature uses: [`Store`] and
//!   [`RedisConn`] (the pool and the shared connections), the connector to
//!   one server or the Sentinels' primary, transactions, [`StoreError`], and
//!   the codec of the user and session hashes.
//! - [`layout`]: every key name, field name and index member format.
//! - One module per feature, named as the feature is elsewhere: `users` (with the
//!   email index), `sessions` (with the per-user session index), `codes`
//!   (with how a code is issued), `login_limits` (the attempt limiter and
//!   its counters), `admin_keys`, `email_reverts`, `events` (the outbox and
//!   a user's activity), `mail` (the queue's writing end and the sender's
//!   reading end), [`doctor`], and [`migrate`], which rewrites an earlier
//!   release's keys into this release's layout.
//!
//! The rule between features: a feature may add another feature's write
//! helpers to its own atomic step (a sign-up queues mail and appends an
//! event in its own MULTI/EXEC) and use its read helpers, never call
//! another feature's operations.

mod admin_keys;
mod codes;
pub mod doctor;
mod email_reverts;
mod events;
pub mod layout;
mod login_limits;
mod mail;
pub mod migrate;
mod plumbing;
mod sessions;
mod users;

pub use admin_keys::AdminKeyRecord;
pub use codes::issuing::{NewCode, Resend};
pub use codes::{CodeAttempt, CodeCheck, Reset, MAX_CODE_TRIES};
pub use email_reverts::{Revert, REVERT_TTL};
pub use login_limits::counters::Admission;
pub use login_limits::Proof as AttemptProof;
pub use mail::delivery::{Delivery, MailConsumer, MailCounts, QueueEntry};
pub use plumbing::conn::{ClusterHealth, PoolStatus, RedisConn, Store};
pub use plumbing::error::StoreError;
pub use plumbing::records::UserRecord;
pub use users::email_index::ListCursor;
pub use users::{
    ChangeNotice, EmailChange, EmailTaken, HashReplacement, ListQuery, UserPage, Written,
};
