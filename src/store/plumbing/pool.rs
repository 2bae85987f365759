//! The r2d2 connection manager: timeouts on every socket, no PING on the
//! hot path, and no connection back into the pool after it failed.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ConnectionLike, ErrorKind, RedisError};

use crate::store::plumbing::connector::Connector;
use crate::store::plumbing::link::Link;

/// A connection idle for longer than this is checked (`PING`, or `ROLE`
/// through sentinels) before it is handed out, so one that Redis dropped (a
/// restart, an idle timeout) is replaced rather than failing a request. Busy
/// connections skip the round trip.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

pub struct RedisManager {
    connector: Arc<Connector>,
}

impl RedisManager {
    pub fn new(connector: Arc<Connector>) -> Self {
        Self { connector }
    }
}

pub struct ManagedConnection {
    connection: Link,
    last_used: Instant,
    /// The connector's generation when it was opened: an older one than the
    /// connector's current leads to a primary the sentinels have replaced.
    generation: u64,
    /// Set when a command failed in a way that leaves the connection unfit:
    /// an I/O error or timeout, or a reply saying the server is no longer
    /// the primary (`READONLY`, `MASTERDOWN`). r2d2 then drops it.
    broken: bool,
}

impl ManagedConnection {
    pub fn touch(&mut self) {
        self.last_used = Instant::now();
    }

    pub fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl Deref for ManagedConnection {
    type Target = Link;

    fn deref(&self) -> &Link {
        &self.connection
    }
}

impl DerefMut for ManagedConnection {
    fn deref_mut(&mut self) -> &mut Link {
        &mut self.connection
    }
}

impl r2d2::ManageConnection for RedisManager {
    type Connection = ManagedConnection;
    type Error = RedisError;

    fn connect(&self) -> Result<ManagedConnection, RedisError> {
        let (connection, generation) = self.connector.connect()?;
        Ok(ManagedConnection {
            connection,
            last_used: Instant::now(),
            generation,
            broken: false,
        })
    }

    fn is_valid(&self, managed: &mut ManagedConnection) -> Result<(), RedisError> {
        if managed.generation != self.connector.generation() {
            return Err(RedisError::from((
                ErrorKind::Client,
                "the connection leads to a replaced primary",
            )));
        }
        if managed.last_used.elapsed() >= IDLE_BEFORE_CHECK {
            self.connector.check(&mut managed.connection)?;
            managed.touch();
        }
        Ok(())
    }

    fn has_broken(&self, managed: &mut ManagedConnection) -> bool {
        managed.broken
            || !managed.connection.is_open()
            || managed.generation != self.connector.generation()
    }
}
