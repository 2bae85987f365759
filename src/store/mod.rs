//! Redis: every key, every command, and the connections they run on. Only
//! the service layer ([`crate::accounts`]) and the doctor call in here.
//!
//! The way to Redis:
//! - [`conn`]: [`Store`] (the pool and the shared read connection) and
//!   [`RedisConn`], one operation's handle on both.
//! - `connector`: opens connections to one server or to the primary the
//!   sentinels name; `pool`: the r2d2 manager; `shared`: the multiplexed
//!   connections all requests share, one for reads, one for scripts.
//! - `error`: [`StoreError`].
//!
//! What is stored and how:
//! - [`layout`]: every key name, field name and index member format.
//! - `records`: user and session hashes, encoded and decoded.
//! - `email_index`: look-ups, ranges and claims on the email index, and
//!   the list cursor.
//! - `transaction`: WATCH/MULTI/EXEC with bounded retries.
//! - `session_index`: the per-user session set, shared by the writes of
//!   users and sessions.
//! - `outbox`: events appended in the same MULTI/EXEC as their change.
//! - `attempt_counters`: the limiter's counters, which a password reset clears.
//! - `code_writes`: how a one-time code and its mail are written.
//! - `mail_queue`: mail queued in the same MULTI/EXEC as the change that
//!   causes it (or on its own), and a queued message's fields.
//!
//! The resources, which use the pieces above and never each other:
//! `users`, `sessions`, `events` (a user's activity), `admin_keys`,
//! `password_attempts`, `mail_delivery` (the sender's end of the mail
//! queue: the consumer group, retries, dead letters) and [`doctor`].

mod admin_keys;
mod attempt_counters;
mod code_writes;
mod codes;
mod conn;
mod connector;
pub mod doctor;
mod email_index;
mod email_reverts;
mod error;
mod events;
pub mod layout;
mod mail_delivery;
mod mail_queue;
mod outbox;
mod password_attempts;
mod pool;
mod records;
mod session_index;
mod sessions;
mod shared;
mod transaction;
mod users;

pub use admin_keys::AdminKeyRecord;
pub use attempt_counters::Admission;
pub use code_writes::{NewCode, Resend};
pub use codes::{CodeAttempt, CodeCheck, Reset, MAX_CODE_TRIES};
pub use conn::{PoolStatus, RedisConn, Store};
pub use email_index::ListCursor;
pub use email_reverts::{Revert, REVERT_TTL};
pub use error::StoreError;
pub use mail_delivery::{Delivery, MailConsumer, MailCounts};
pub use password_attempts::Proof as AttemptProof;
pub use records::UserRecord;
pub use users::{
    ChangeNotice, EmailChange, EmailTaken, HashReplacement, ListQuery, UserPage, Written,
};
