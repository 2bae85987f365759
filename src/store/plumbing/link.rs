//! A connection to one server (or a Sentinel primary), or to a Redis
//! Cluster through the redis crate's own cluster client, behind one type,
//! so that the store's commands and steps run alike on either.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{cluster, cluster_async, Arg, Cmd, Connection, ConnectionLike, Pipeline, RedisFuture};
use redis::{FromRedisValue, RedisResult, Value};

use crate::config::ReplicaWait;
use crate::store::layout::cluster_slot;
use crate::store::StoreError;

/// A blocking connection: a pooled one for steps, or a tool's own.
pub enum Link {
    Node(Connection),
    /// Sends each command to the node that owns its key; runs no pipeline.
    Cluster(Box<ClusterLink>),
}

pub struct ClusterLink {
    /// In a mutex only so that a request's handle stays `Sync`: a link is
    /// used by one thread at a time, through `&mut`, which takes no lock.
    connection: Mutex<cluster::ClusterConnection>,
    /// The slots scripts ran in since the last [`Link::confirm_writes`].
    written: BTreeSet<u16>,
}

impl Link {
    pub fn cluster(connection: cluster::ClusterConnection) -> Self {
        Self::Cluster(Box::new(ClusterLink {
            connection: Mutex::new(connection),
            written: BTreeSet::new(),
        }))
    }

    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> RedisResult<()> {
        match self {
            Self::Node(connection) => connection.set_read_timeout(timeout),
            Self::Cluster(link) => {
                cluster_connection(&mut link.connection).set_read_timeout(timeout)
            }
        }
    }

    /// How many replicas confirmed the writes sent on this link since the
    /// last call, waiting up to `wait.timeout` for `wait.replicas` (`WAIT`).
    /// On a cluster, `WAIT` goes to the primary of each slot written (the
    /// fewest count): a primary that took nothing from this link has
    /// nothing to confirm.
    pub fn confirm_writes(&mut self, wait: ReplicaWait) -> RedisResult<u32> {
        match self {
            Self::Node(connection) => wait_command(wait).query(connection),
            Self::Cluster(link) => {
                let mut fewest = wait.replicas;
                for slot in std::mem::take(&mut link.written) {
                    let confirmed = cluster_connection(&mut link.connection)
                        .route_command(&wait_command(wait), slot_route(slot))?;
                    fewest = fewest.min(redis::from_redis_value(confirmed)?);
                }
                Ok(fewest)
            }
        }
    }

    /// Every key that matches `pattern` and is of type `kind`, by SCAN
    /// (never KEYS): on a cluster, on each primary in turn. A key moved
    /// between primaries while the scan runs may be missed or seen twice.
    pub fn scan_keys(&mut self, pattern: &str, kind: &str) -> RedisResult<Vec<String>> {
        let mut found = Vec::new();
        match self {
            Self::Node(connection) => {
                scan_node(pattern, kind, &mut found, |scan| scan.query(connection))?;
            }
            Self::Cluster(link) => {
                let connection = cluster_connection(&mut link.connection);
                for (host, port) in primaries(connection)? {
                    let node =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    scan_node(pattern, kind, &mut found, |scan| {
                        connection.route_command(scan, node.clone())
                    })?;
                }
            }
        }
        Ok(found)
    }

    fn inner(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Node(connection) => connection,
            Self::Cluster(link) => cluster_connection(&mut link.connection),
        }
    }
}

/// `WAIT` for `wait.replicas` replicas to confirm every write the
/// connection it goes out on sent before it.
fn wait_command(wait: ReplicaWait) -> Cmd {
    let mut command = redis::cmd("WAIT");
    command
        .arg(wait.replicas)
        .arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX));
    command
}

/// Keys a SCAN asks a node for at a time.
const SCAN_BATCH: usize = 1000;

/// Runs SCAN on one node through `send` until its cursor comes back to 0.
fn scan_node(
    pattern: &str,
    kind: &str,
    found: &mut Vec<String>,
    mut send: impl FnMut(&Cmd) -> RedisResult<Value>,
) -> RedisResult<()> {
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .arg("TYPE")
            .arg(kind);
        let (next, keys): (u64, Vec<String>) = redis::from_redis_value(send(&scan)?)?;
        found.extend(keys);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The address of each primary that serves slots, as `CLUSTER SLOTS`
/// names it: the first node of each range.
fn primaries(connection: &mut cluster::ClusterConnection) -> RedisResult<BTreeSet<(String, u16)>> {
    let mut slots = redis::cmd("CLUSTER");
    slots.arg("SLOTS");
    let ranges: Vec<Vec<Value>> = redis::from_redis_value(connection.route_command(
        &slots,
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
    )?)?;
    ranges
        .into_iter()
        .filter_map(|range| range.into_iter().nth(2))
        .map(|primary| {
            let fields: Vec<Value> = redis::from_redis_value(primary)?;
            let mut fields = fields.into_iter();
            let host: String = redis::from_redis_value(fields.next().unwrap_or(Value::Nil))?;
            let port: u16 = redis::from_redis_value(fields.next().unwrap_or(Value::Nil))?;
            Ok((host, port))
        })
        .collect()
}

fn slot_route(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

/// The slot a script runs in (`EVAL`/`EVALSHA` with a key): every write of
/// the store is one. `None` for any other command.
fn script_slot(command: &Cmd) -> Option<u16> {
    let mut words = command.args_iter().filter_map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = words.next()?;
    if !(name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL")) {
        return None;
    }
    let _script = words.next()?;
    if words.next()? == b"0" {
        return None;
    }
    words.next().map(cluster_slot)
}

/// Sends `commands` in one round trip where the connection runs
/// pipelines, else one by one (a cluster's blocking connection runs none,
/// and its commands may go to different nodes); the replies in order.
pub(in crate::store) fn query_all(
    conn: &mut dyn ConnectionLike,
    commands: &[Cmd],
) -> RedisResult<Vec<Value>> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    if !conn.supports_pipelining() {
        return commands.iter().map(|command| command.query(conn)).collect();
    }
    let mut pipe = redis::pipe();
    for command in commands {
        pipe.add_command(command.clone());
    }
    pipe.query(conn)
}

/// [`query_all`], the replies decoded together as a pipeline's.
pub(in crate::store) fn query_each<T: FromRedisValue>(
    conn: &mut dyn ConnectionLike,
    commands: &[Cmd],
) -> Result<T, StoreError> {
    let replies = query_all(conn, commands)?;
    T::from_redis_value(Value::Array(replies))
        .map_err(redis::RedisError::from)
        .map_err(StoreError::from)
}

fn cluster_connection(
    connection: &mut Mutex<cluster::ClusterConnection>,
) -> &mut cluster::ClusterConnection {
    connection.get_mut().unwrap_or_else(PoisonError::into_inner)
}

impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.inner().req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.inner().req_packed_commands(cmd, offset, count)
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        if let (Self::Cluster(link), Some(slot)) = (&mut *self, script_slot(cmd)) {
            link.written.insert(slot);
        }
        self.inner().req_command(cmd)
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(connection) => connection.get_db(),
            Self::Cluster(_) => 0,
        }
    }

    fn supports_pipelining(&self) -> bool {
        matches!(self, Self::Node(_))
    }

    fn check_connection(&mut self) -> bool {
        self.inner().check_connection()
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Node(connection) => connection.is_open(),
            Self::Cluster(link) => link
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_open(),
        }
    }
}

/// A multiplexed connection that requests share: to one server, or to a
/// cluster, whose client runs a pipeline when all of its keys share a slot.
#[derive(Clone)]
pub enum SharedLink {
    Node(MultiplexedConnection),
    Cluster(SharedCluster),
}

#[derive(Clone)]
pub struct SharedCluster {
    connection: cluster_async::ClusterConnection,
    /// The slots scripts ran in through this handle and its clones, since
    /// [`SharedLink::recording`] made it.
    written: Arc<Mutex<BTreeSet<u16>>>,
}

impl SharedLink {
    pub fn cluster(connection: cluster_async::ClusterConnection) -> Self {
        Self::Cluster(SharedCluster {
            connection,
            written: Arc::default(),
        })
    }

    /// A handle on the same connection that notes the slots of its own
    /// writes only, for one step's [`SharedLink::confirm_writes`].
    pub fn recording(&self) -> Self {
        match self {
            Self::Node(connection) => Self::Node(connection.clone()),
            Self::Cluster(shared) => Self::cluster(shared.connection.clone()),
        }
    }

    /// As [`Link::confirm_writes`], for the writes through this handle. On
    /// one server the connection is shared: `WAIT` covers every request's
    /// writes sent before it, this one's among them.
    pub async fn confirm_writes(&mut self, wait: ReplicaWait) -> RedisResult<u32> {
        match self {
            Self::Node(connection) => wait_command(wait).query_async(connection).await,
            Self::Cluster(shared) => {
                let written = std::mem::take(
                    &mut *shared
                        .written
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner),
                );
                let mut fewest = wait.replicas;
                for slot in written {
                    let confirmed = shared
                        .connection
                        .route_command(wait_command(wait), slot_route(slot))
                        .await?;
                    fewest = fewest.min(redis::from_redis_value(confirmed)?);
                }
                Ok(fewest)
            }
        }
    }
}

impl redis::aio::ConnectionLike for SharedLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(connection) => connection.req_packed_command(cmd),
            Self::Cluster(shared) => {
                if let Some(slot) = script_slot(cmd) {
                    shared
                        .written
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(slot);
                }
                shared.connection.req_packed_command(cmd)
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(shared) => shared
                .connection
                .req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(connection) => connection.get_db(),
            Self::Cluster(shared) => shared.connection.get_db(),
        }
    }
}
