//! The way to Redis: the pool for transactions, the shared connections for
//! reads and for scripts,
//! and [`RedisConn`], one request's handle on both.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::RedisError;
use rocket::tokio::sync::{OwnedSemaphorePermit, Semaphore};
use rocket::tokio::{task, time};

use crate::config::{RedisSettings, ReplicaWait};
use crate::metrics::Metrics;
use crate::store::layout::Keys;
use crate::store::mail::queue::MailTally;
use crate::store::plumbing::connector::Connector;
use crate::store::plumbing::link::{Link, SharedLink};
use crate::store::plumbing::pool::RedisManager;
use crate::store::plumbing::shared::SharedConnection;
use crate::store::StoreError;

/// The pool and the shared connections, shared by every request through
/// Rocket's managed state.
pub struct Store {
    /// Connections for writes: each WATCH/MULTI/EXEC needs one of its own.
    pool: r2d2::Pool<RedisManager>,
    /// Opens the pool's connections, and knows when Redis turns them down.
    connector: Arc<Connector>,
    /// One multiplexed connection for the reads that need no transaction.
    reads: Arc<SharedConnection>,
    /// One multiplexed connection for the writes that are one atomic script.
    scripts: Arc<SharedConnection>,
    /// One permit per pooled connection: requests wait for a connection here,
    /// asynchronously, so no thread ever blocks waiting for one.
    checkouts: Arc<Semaphore>,
    timeout: Duration,
    keys: Arc<Keys>,
    metrics: Arc<Metrics>,
    replica_wait: Option<ReplicaWait>,
}

impl Store {
    /// Sets up the pool without connecting: the service starts even while
    /// Redis is down, and connects once it answers.
    pub fn new(settings: &RedisSettings, metrics: Arc<Metrics>) -> Result<Self, RedisError> {
        let keys = keys_for(settings);
        let connector =
            Arc::new(Connector::new(&settings.target, settings.timeout)?.requiring_layout(&keys));
        Connector::watch(&connector)?;
        let reads = Arc::new(SharedConnection::new(
            Arc::clone(&connector),
            metrics.read_connections_opened.clone(),
        ));
        let scripts = Arc::new(SharedConnection::new(
            Arc::clone(&connector),
            metrics.script_connections_opened.clone(),
        ));
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(0))
            .connection_timeout(settings.timeout)
            .test_on_check_out(true)
            .build_unchecked(RedisManager::new(Arc::clone(&connector)));
        Ok(Self {
            pool,
            connector,
            reads,
            scripts,
            checkouts: Arc::new(Semaphore::new(settings.pool_size as usize)),
            timeout: settings.timeout,
            keys: Arc::new(keys),
            metrics,
            replica_wait: settings.replica_wait,
        })
    }

    /// A handle that reads and runs scripts on the shared connections, and
    /// checks a connection out of the pool when its first transaction runs.
    pub fn connection(&self) -> RedisConn {
        RedisConn {
            pool: self.pool.clone(),
            connector: Arc::clone(&self.connector),
            reads: Arc::clone(&self.reads),
            scripts: Arc::clone(&self.scripts),
            connection: None,
            checkout: None,
            checkouts: Arc::clone(&self.checkouts),
            timeout: self.timeout,
            keys: Arc::clone(&self.keys),
            metrics: Arc::clone(&self.metrics),
            replica_wait: self.replica_wait,
        }
    }

    /// A connection of its own, outside the pool, for one-off tools: to the
    /// same server (or the same sentinels' primary) and with the same
    /// timeouts as the pool's. It fails, as the pool's do, unless the keys
    /// are in this release's layout.
    pub fn dedicated_connection(settings: &RedisSettings) -> Result<(Link, Keys), StoreError> {
        let keys = keys_for(settings);
        let (conn, _) = Connector::new(&settings.target, settings.timeout)?
            .requiring_layout(&keys)
            .connect()?;
        Ok((conn, keys))
    }

    /// A dedicated connection whatever layout the keys are in: for the
    /// migration alone.
    pub(in crate::store) fn migration_connection(
        settings: &RedisSettings,
    ) -> Result<(Link, Keys), StoreError> {
        let (conn, _) = Connector::new(&settings.target, settings.timeout)?.connect()?;
        Ok((conn, keys_for(settings)))
    }

    /// How many pooled connections exist, and how many of them are idle.
    pub fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus {
            size: self.pool.max_size(),
            connections: state.connections,
            idle: state.idle_connections,
        }
    }
}

fn keys_for(settings: &RedisSettings) -> Keys {
    Keys::new(&settings.key_prefix).capping_events_at(settings.events_max_len)
}

/// The write pool at one moment.
#[derive(Clone, Copy, Debug)]
pub struct PoolStatus {
    pub size: u32,
    pub connections: u32,
    pub idle: u32,
}

/// One operation's way to Redis. Reads that need no transaction, and writes
/// that are one script, go over the shared multiplexed connections. For a
/// transaction, a pooled connection is checked out when the operation first
/// runs one, waiting at most the configured timeout; without one, it fails as
/// unavailable (503). Once checked out, it stays with the handle until it is
/// dropped.
pub struct RedisConn {
    pool: r2d2::Pool<RedisManager>,
    connector: Arc<Connector>,
    reads: Arc<SharedConnection>,
    scripts: Arc<SharedConnection>,
    // Dropped before `checkout`: the connection is back in the pool before
    // the next request may take it.
    connection: Option<r2d2::PooledConnection<RedisManager>>,
    checkout: Option<OwnedSemaphorePermit>,
    checkouts: Arc<Semaphore>,
    timeout: Duration,
    pub(in crate::store) keys: Arc<Keys>,
    pub(in crate::store) metrics: Arc<Metrics>,
    replica_wait: Option<ReplicaWait>,
}

impl RedisConn {
    /// Runs blocking Redis work on the blocking pool, never on an async
    /// worker. The first call waits, asynchronously and at most the timeout,
    /// for a pooled connection to be free, then checks it out in the same
    /// blocking task as its first command: no thread ever sits waiting for a
    /// connection, and one call costs one hand-off.
    pub(in crate::store) async fn run<T, F>(&mut self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Link, &Keys) -> Result<T, StoreError> + Send + 'static,
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
        let connector = Arc::clone(&self.connector);
        // What the wait for a free connection left of the timeout.
        let timeout = self.timeout.saturating_sub(started.elapsed());
        let keys = Arc::clone(&self.keys);
        let metrics = Arc::clone(&self.metrics);
        let replica_wait = self.replica_wait;
        let (connection, result) = task::spawn_blocking(move || {
            let mut connection = match held {
                Some(connection) => connection,
                None => match checkout(&pool, &connector, timeout) {
                    Ok(connection) => {
                        metrics
                            .pool_wait_seconds
                            .observe(started.elapsed().as_secs_f64());
                        connection
                    }
                    Err(error) => return (None, Err(error)),
                },
            };
            let result = work(&mut connection, &keys).and_then(|value| {
                if let Some(wait) = replica_wait {
                    replicated(wait, connection.confirm_writes(wait)?)?;
                }
                Ok(value)
            });
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

/// How often a request waiting for a pooled connection looks whether Redis
/// has meanwhile turned one of the pool's attempts down.
const REFUSAL_LOOKOUT: Duration = Duration::from_millis(20);

/// A pooled connection, waiting at most `timeout`. While Redis turns new
/// connections down (nothing listening, wrong credentials, no such
/// database), this fails with Redis's answer as soon as one of the pool's
/// attempts meets it, rather than after the timeout. The pool makes those
/// attempts, at most one per connection it lacks, so a burst of requests
/// is not a burst of connections.
fn checkout(
    pool: &r2d2::Pool<RedisManager>,
    connector: &Connector,
    timeout: Duration,
) -> Result<r2d2::PooledConnection<RedisManager>, StoreError> {
    let started = Instant::now();
    let mut last_error = None;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match pool.get_timeout(left.min(REFUSAL_LOOKOUT)) {
            Ok(connection) => return Ok(connection),
            Err(error) => {
                connector.refused_since(started)?;
                // Each wait takes the pool's last error: keep one that
                // names a cause, for the log line of the 503.
                if last_error.is_none() || names_a_cause(&error) {
                    last_error = Some(error);
                }
                if left <= REFUSAL_LOOKOUT {
                    return Err(last_error.map_or(StoreError::PoolBusy, StoreError::Unavailable));
                }
            }
        }
    }
}

/// Whether r2d2's error carries the error of a connection attempt, beside
/// its own "timed out waiting for connection".
fn names_a_cause(error: &r2d2::Error) -> bool {
    error.to_string().contains(": ")
}

impl RedisConn {
    /// Runs a read on the shared connection, on the async worker itself:
    /// it waits for Redis without blocking a thread.
    pub(in crate::store) async fn read<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn(SharedLink) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let result = self.reads.read(read).await;
        self.counted(result)
    }

    /// Runs one atomic write (a script) on the shared script connection.
    /// Unlike a read, it is not repeated after a dropped connection: it may
    /// have run. With `REDIS_WAIT_REPLICAS`, it succeeds once the replicas
    /// confirmed it, asked on the same connection.
    pub(in crate::store) async fn script<T, F, Fut>(&self, step: F) -> Result<T, StoreError>
    where
        F: Fn(SharedLink) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let replica_wait = self.replica_wait;
        let confirmed_step = |conn: SharedLink| {
            let mut conn = conn.recording();
            let written = step(conn.clone());
            async move {
                let value = written.await?;
                if let Some(wait) = replica_wait {
                    replicated(wait, conn.confirm_writes(wait).await?)?;
                }
                Ok(value)
            }
        };
        let result = self.scripts.once(&confirmed_step).await;
        self.counted(result)
    }

    /// Runs `work`, a transaction that may queue mail, and tallies the
    /// mail its EXEC's replies say it queued or held back.
    pub(in crate::store) async fn run_mailing<T, F>(&mut self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Link, &Keys) -> Result<(T, Vec<redis::Value>), StoreError> + Send + 'static,
    {
        let (value, replies) = self.run(work).await?;
        self.tally_mail(&MailTally::of(&replies));
        Ok(value)
    }

    /// Counts the messages a write that just succeeded queued.
    pub(in crate::store) fn tally_mail(&self, tally: &MailTally) {
        self.metrics.mail_queued.inc_by(tally.queued);
    }

    /// Counts a failure of the shared connection in the metrics.
    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Redis(_) | StoreError::NotConnected | StoreError::Task(_)) = &result
        {
            self.metrics.redis_errors.inc();
        }
        result
    }

    /// One server's answer to a PING; a cluster's own view of its slots
    /// (`CLUSTER INFO` of one of its nodes), as PING would go to every
    /// primary and fail while one is down and others serve.
    pub async fn health(&mut self) -> Result<Option<ClusterHealth>, StoreError> {
        self.run(|conn, _| {
            if !matches!(conn, Link::Cluster(_)) {
                redis::cmd("PING").exec(conn)?;
                return Ok(None);
            }
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(conn)?;
            Ok(Some(ClusterHealth::parse(&info)))
        })
        .await
    }
}

/// `Ok` when `confirmed` replicas are enough.
fn replicated(wait: ReplicaWait, confirmed: u32) -> Result<(), StoreError> {
    if confirmed < wait.replicas {
        return Err(StoreError::NotReplicated {
            wanted: wait.replicas,
            confirmed,
        });
    }
    Ok(())
}

/// What a cluster says of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterHealth {
    /// `cluster_state:ok`: every slot is served.
    pub ok: bool,
    /// Slots no reachable primary serves.
    pub slots_without_primary: u32,
}

impl ClusterHealth {
    /// From `CLUSTER INFO`; a field it lacks counts against it.
    fn parse(info: &str) -> Self {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let slots_ok = field("cluster_slots_ok")
            .and_then(|slots| slots.parse::<u32>().ok())
            .unwrap_or(0);
        Self {
            ok: field("cluster_state") == Some("ok"),
            slots_without_primary: 16_384u32.saturating_sub(slots_ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_with_a_failed_primary_says_which_slots_it_lacks() {
        let info =
            "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10923\r\n";
        assert_eq!(
            ClusterHealth::parse(info),
            ClusterHealth {
                ok: false,
                slots_without_primary: 5461,
            }
        );
        let info = "cluster_state:ok\r\ncluster_slots_ok:16384\r\n";
        assert!(ClusterHealth::parse(info).ok);
    }
}
