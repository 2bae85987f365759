//! The way to Redis, shared by every feature: connections (one server, the
//! primary the Sentinels name, or a cluster), the pool, the shared connections,
//! optimistic transactions, the store's error, the check that the keys are
//! in this release's layout, and the codec of the user and session hashes.

pub(super) mod conn;
pub(super) mod connector;
pub(super) mod error;
pub(super) mod layout_check;
pub(super) mod link;
pub(super) mod pool;
pub(super) mod records;
pub(super) mod shared;
pub(super) mod transaction;
