//! A connection all requests share: one multiplexed async connection. The
//! store keeps two: one carries every read that needs no transaction, the
//! other every write that is one atomic command (a script), and neither
//! carries the other's kind. Redis answers a connection's commands in
//! order, so one write held up (a `CLIENT PAUSE WRITE` during a failover)
//! would hold up every read behind it on the same connection.
//!
//! Through the pool, a command costs a hand-off to a blocking thread and a
//! blocking round trip of its own. Here the commands of many requests go out
//! on one socket, one read of the socket brings back many replies, and no
//! thread waits. WATCH/MULTI/EXEC stays on pooled connections: `WATCH`
//! belongs to a connection, so each transaction needs one of its own.
//!
//! The connection is opened on first use, and replaced after an I/O error or
//! a timeout, or when the sentinels name another primary.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use prometheus::IntCounter;
use redis::{AsyncConnectionConfig, RedisError};
use rocket::tokio::sync::Mutex as AsyncMutex;
use rocket::tokio::task;

use crate::store::plumbing::connector::{Connector, Located};
use crate::store::plumbing::link::SharedLink;
use crate::store::StoreError;

pub struct SharedConnection {
    connector: Arc<Connector>,
    /// Counts the connections opened.
    opened: IntCounter,
    current: Mutex<Option<Opened>>,
    /// Held while opening a connection, so that requests finding the old one
    /// gone wait for one new connection rather than each opening its own.
    opening: AsyncMutex<()>,
    /// How many attempts to open a connection have ended, failed or not;
    /// also the serial of the connection the next attempt opens.
    attempts: AtomicU64,
    /// Why the last attempt failed: the answer of the requests that waited
    /// for it.
    last_failure: Mutex<Option<RedisError>>,
}

#[derive(Clone)]
struct Opened {
    connection: SharedLink,
    /// The connector's generation: an older one leads to a replaced primary.
    generation: u64,
    /// Tells this connection from the ones opened before and after it.
    serial: u64,
}

impl SharedConnection {
    /// Connects nowhere yet: the first command opens the connection.
    pub fn new(connector: Arc<Connector>, opened: IntCounter) -> Self {
        Self {
            connector,
            opened,
            current: Mutex::new(None),
            opening: AsyncMutex::new(()),
            attempts: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    /// Runs `read` on the shared connection. A read that finds the connection
    /// closed by Redis (a restart, an idle timeout) runs once more on a new
    /// one: reads change nothing, so repeating one is safe.
    pub async fn read<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn(SharedLink) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.once(&read).await {
            Err(StoreError::Redis(error)) if error.is_connection_dropped() => {
                self.once(&read).await
            }
            result => result,
        }
    }

    /// Runs `step` on the shared connection once, never again: for a
    /// command that changes something.
    pub async fn once<T, F, Fut>(&self, step: &F) -> Result<T, StoreError>
    where
        F: Fn(SharedLink) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let opened = self.connection().await?;
        let serial = opened.serial;
        let result = step(opened.connection).await;
        if let Err(error) = &result {
            if error.breaks_connection() {
                self.retire(serial);
            }
        }
        result
    }

    /// The current connection, opened first if there is none fit for use.
    async fn connection(&self) -> Result<Opened, StoreError> {
        if let Some(opened) = self.fit() {
            return Ok(opened);
        }
        let attempts_before = self.attempts.load(Ordering::Acquire);
        let _opening = self.opening.lock().await;
        if let Some(opened) = self.fit() {
            return Ok(opened);
        }
        // An attempt ended while this request waited for it, and failed:
        // fail alike instead of queueing one attempt after another, which
        // would keep the last of many requests waiting many timeouts.
        if self.attempts.load(Ordering::Acquire) != attempts_before {
            return Err(self
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .map_or(StoreError::NotConnected, StoreError::Redis));
        }
        let opened = self.open().await;
        if let Err(StoreError::Redis(error)) = &opened {
            *self
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
        }
        self.attempts.fetch_add(1, Ordering::Release);
        opened
    }

    async fn open(&self) -> Result<Opened, StoreError> {
        let connector = Arc::clone(&self.connector);
        // Through sentinels, finding the primary takes blocking round trips.
        let (client, generation) = task::spawn_blocking(move || connector.locate()).await??;
        let timeout = Some(self.connector.timeout());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let started = Instant::now();
        let connection = match client {
            Located::Node(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map(SharedLink::Node),
            Located::Cluster(client) => {
                client.get_async_connection().await.map(SharedLink::cluster)
            }
        };
        let opened = Opened {
            connection: self.connector.noted(started, connection)?,
            generation,
            // Attempts run one at a time, under `opening`: no two share it.
            serial: self.attempts.load(Ordering::Acquire),
        };
        *self.current() = Some(opened.clone());
        self.opened.inc();
        Ok(opened)
    }

    fn fit(&self) -> Option<Opened> {
        let generation = self.connector.generation();
        self.current()
            .as_ref()
            .filter(|opened| opened.generation == generation)
            .cloned()
    }

    /// Drops the connection `serial` once it failed, unless another request
    /// replaced it already.
    fn retire(&self, serial: u64) {
        let mut current = self.current();
        if current
            .as_ref()
            .is_some_and(|opened| opened.serial == serial)
        {
            *current = None;
        }
    }

    fn current(&self) -> MutexGuard<'_, Option<Opened>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
