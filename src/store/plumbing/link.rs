//! A connection to one server (or a Sentinel primary), or to a Redis
//! Cluster through the redis crate's own cluster client, behind one type,
//! so that the store's commands and steps run alike on either.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{cluster, cluster_async, Cmd, Connection, ConnectionLike, Pipeline, RedisFuture};
use redis::{RedisResult, Value};

/// A blocking connection: a pooled one for steps, or a tool's own.
pub enum Link {
    Node(Connection),
    /// Sends each command to the node that owns its key; runs no pipeline.
    /// In a mutex only so that a request's handle stays `Sync`: a link is
    /// used by one thread at a time, through `&mut`, which takes no lock.
    Cluster(Box<Mutex<cluster::ClusterConnection>>),
}

impl Link {
    pub fn cluster(connection: cluster::ClusterConnection) -> Self {
        Self::Cluster(Box::new(Mutex::new(connection)))
    }

    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> RedisResult<()> {
        match self {
            Self::Node(connection) => connection.set_read_timeout(timeout),
            Self::Cluster(connection) => cluster_connection(connection).set_read_timeout(timeout),
        }
    }

    fn inner(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Node(connection) => connection,
            Self::Cluster(connection) => cluster_connection(connection),
        }
    }
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
            Self::Cluster(connection) => connection
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
    Cluster(cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for SharedLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
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
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
