//! Redis: the pool and the shared read connection, the request guard that
//! hands them out, and (in [`users`], [`sessions`], [`events`] and [`keys`])
//! every command and key name the service uses.

mod connector;
pub mod doctor;
mod events;
mod keys;
mod pool;
mod reads;
mod sessions;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{Connection, ErrorKind, RedisError};
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::tokio::sync::{OwnedSemaphorePermit, Semaphore};
use rocket::tokio::{task, time};

pub use events::{Event, EventKind};
pub use keys::{index_member, parse_index_member, Keys};
pub use sessions::{LoginFailures, LoginState, SessionRecord};
pub use users::{HashReplacement, ListQuery, UserPage, UserRecord, Written};

use crate::config::RedisSettings;
use crate::metrics::Metrics;
use connector::Connector;
use pool::RedisManager;
use reads::SharedReads;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no Redis connection within the timeout: {0}")]
    Unavailable(#[from] r2d2::Error),
    #[error("every pooled Redis connection stayed in use through the timeout")]
    PoolBusy,
    #[error("no Redis connection for reads: the attempt to open one just failed")]
    NotConnected,
    #[error("Redis command failed: {0}")]
    Redis(#[from] RedisError),
    #[error("a watched key kept changing through {0} attempts")]
    Contention(u32),
    #[error("stored record {key} is malformed: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("email already in use")]
    EmailInUse,
    #[error("a Redis task did not finish: {0}")]
    Task(#[from] task::JoinError),
    #[error("refused to store {0}")]
    Invalid(&'static str),
}

impl StoreError {
    /// Whether the failure is Redis being out of reach or overloaded, which
    /// clients should retry later, rather than a fault of the service.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::PoolBusy | Self::NotConnected | Self::Contention(_) => {
                true
            }
            Self::Redis(error) => {
                error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || matches!(
                        error.kind(),
                        ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                            | ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                            | ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                            | ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                    )
            }
            Self::Corrupt { .. } | Self::EmailInUse | Self::Invalid(_) | Self::Task(_) => false,
        }
    }

    /// Whether the connection the error came from must not be used again:
    /// Redis out of reach, a timeout (a reply may still be on its way), or a
    /// server that no longer takes writes (a primary demoted by a failover).
    fn breaks_connection(&self) -> bool {
        matches!(self, Self::Redis(_)) && self.is_unavailable()
    }
}

/// The pool and the read connection, shared by every request through
/// Rocket's managed state.
pub struct Store {
    /// Connections for writes: each WATCH/MULTI/EXEC needs one of its own.
    pool: r2d2::Pool<RedisManager>,
    /// One multiplexed connection for the reads that need no transaction.
    reads: Arc<SharedReads>,
    /// One permit per pooled connection: requests wait for a connection here,
    /// asynchronously, so no thread ever blocks waiting for one.
    checkouts: Arc<Semaphore>,
    timeout: Duration,
    keys: Arc<Keys>,
    metrics: Arc<Metrics>,
}

impl Store {
    /// Sets up the pool without connecting: the service starts even while
    /// Redis is down, and connects once it answers.
    pub fn new(settings: &RedisSettings, metrics: Arc<Metrics>) -> Result<Self, RedisError> {
        let connector = Arc::new(Connector::new(&settings.target, settings.timeout)?);
        Connector::watch(&connector)?;
        let reads = Arc::new(SharedReads::new(
            Arc::clone(&connector),
            Arc::clone(&metrics),
        ));
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(0))
            .connection_timeout(settings.timeout)
            .test_on_check_out(true)
            .build_unchecked(RedisManager::new(connector));
        Ok(Self {
            pool,
            reads,
            checkouts: Arc::new(Semaphore::new(settings.pool_size as usize)),
            timeout: settings.timeout,
            keys: Arc::new(Keys::new(&settings.key_prefix, settings.events_max_len)),
            metrics,
        })
    }

    /// A handle that reads on the shared connection, and checks a connection
    /// out of the pool when its first write runs.
    pub fn connection(&self) -> RedisConn {
        RedisConn {
            pool: self.pool.clone(),
            reads: Arc::clone(&self.reads),
            connection: None,
            checkout: None,
            checkouts: Arc::clone(&self.checkouts),
            timeout: self.timeout,
            keys: Arc::clone(&self.keys),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// A connection of its own, outside the pool, for one-off tools: to the
    /// same server (or the same sentinels' primary) and with the same
    /// timeouts as the pool's.
    pub fn dedicated_connection(
        settings: &RedisSettings,
    ) -> Result<(Connection, Keys), StoreError> {
        let (conn, _) = Connector::new(&settings.target, settings.timeout)?.connect()?;
        Ok((
            conn,
            Keys::new(&settings.key_prefix, settings.events_max_len),
        ))
    }

    pub fn pool_state(&self) -> r2d2::State {
        self.pool.state()
    }

    pub fn pool_size(&self) -> u32 {
        self.pool.max_size()
    }
}

/// The request's way to Redis, handed to a route by Rocket as a request
/// guard. Reads that need no transaction go over the shared multiplexed
/// connection. For writes, a pooled connection is checked out when the route
/// first runs one, waiting at most the configured timeout; without one, that
/// write fails as unavailable (503). Once checked out, it stays with the
/// request until it ends.
pub struct RedisConn {
    pool: r2d2::Pool<RedisManager>,
    reads: Arc<SharedReads>,
    // Dropped before `checkout`: the connection is back in the pool before
    // the next request may take it.
    connection: Option<r2d2::PooledConnection<RedisManager>>,
    checkout: Option<OwnedSemaphorePermit>,
    checkouts: Arc<Semaphore>,
    timeout: Duration,
    keys: Arc<Keys>,
    metrics: Arc<Metrics>,
}

impl RedisConn {
    /// Runs blocking Redis work on the blocking pool, never on an async
    /// worker. The first call waits, asynchronously and at most the timeout,
    /// for a pooled connection to be free, then checks it out in the same
    /// blocking task as its first command: no thread ever sits waiting for a
    /// connection, and one call costs one hand-off.
    async fn run<T, F>(&mut self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Keys) -> Result<T, StoreError> + Send + 'static,
    {
        let started = Instant::now();
        if self.checkout.is_none() {
            let free = time::timeout(self.timeout, Arc::clone(&self.checkouts).acquire_owned());
            match free.await {
                Ok(Ok(permit)) => self.checkout = Some(permit),
                _ => {
                    self.metrics.redis_errors.inc();
                    return Err(StoreError::PoolBusy);
                }
            }
        }
        let held = self.connection.take();
        let pool = self.pool.clone();
        let keys = Arc::clone(&self.keys);
        let metrics = Arc::clone(&self.metrics);
        let (connection, result) = task::spawn_blocking(move || {
            let mut connection = match held {
                Some(connection) => connection,
                None => {
                    let checkout = pool.get();
                    metrics
                        .pool_wait_seconds
                        .observe(started.elapsed().as_secs_f64());
                    match checkout {
                        Ok(connection) => connection,
                        Err(error) => return (None, Err(StoreError::Unavailable(error))),
                    }
                }
            };
            let result = work(&mut connection, &keys);
            connection.touch();
            match &result {
                // Dropped now, r2d2 discards it rather than pooling it.
                Err(error) if error.breaks_connection() => {
                    connection.mark_broken();
                    (None, result)
                }
                _ => (Some(connection), result),
            }
        })
        .await?;
        self.connection = connection;
        if let Err(StoreError::Redis(_) | StoreError::Unavailable(_)) = &result {
            self.metrics.redis_errors.inc();
        }
        result
    }
}

impl RedisConn {
    /// Runs a read on the shared connection, on the async worker itself:
    /// it waits for Redis without blocking a thread.
    async fn read<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let result = self.reads.read(read).await;
        if let Err(StoreError::Redis(_) | StoreError::NotConnected | StoreError::Task(_)) = &result
        {
            self.metrics.redis_errors.inc();
        }
        result
    }

    pub async fn ping(&mut self) -> Result<(), StoreError> {
        self.run(|conn, _| Ok(redis::cmd("PING").exec(conn)?)).await
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RedisConn {
    type Error = &'static str;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match request.rocket().state::<Store>() {
            Some(store) => Outcome::Success(store.connection()),
            None => Outcome::Error((Status::InternalServerError, "no store is managed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_error(kind: redis::ServerErrorKind) -> StoreError {
        StoreError::Redis(RedisError::from((ErrorKind::Server(kind), "reply")))
    }

    #[test]
    fn a_failed_or_demoted_connection_is_not_reused() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(StoreError::Redis(RedisError::from(reset)).breaks_connection());
        let timeout = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        assert!(StoreError::Redis(RedisError::from(timeout)).breaks_connection());
        assert!(redis_error(redis::ServerErrorKind::ReadOnly).breaks_connection());
        assert!(redis_error(redis::ServerErrorKind::MasterDown).breaks_connection());
    }

    #[test]
    fn a_connection_that_merely_lost_a_race_is_reused() {
        assert!(!StoreError::Contention(32).breaks_connection());
        assert!(!StoreError::EmailInUse.breaks_connection());
        assert!(!redis_error(redis::ServerErrorKind::ResponseError).breaks_connection());
        assert!(!redis_error(redis::ServerErrorKind::ExecAbort).breaks_connection());
    }
}
