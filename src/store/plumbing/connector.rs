//! Opens connections to the configured Redis: one server, the primary the
//! sentinels name, or a cluster (through the redis crate's cluster client,
//! which follows the cluster's slots, redirections and failovers itself). Every connection it opens, to a sentinel or to Redis,
//! has the configured timeout on connect, reads and writes, so a sentinel or
//! a server that stops answering costs a request at most the timeout.
//!
//! The sentinel lookup follows the Sentinel client protocol: ask each
//! sentinel in turn for the primary's address (`SENTINEL
//! get-master-addr-by-name`), connect there, and keep the connection only if
//! `ROLE` says it is a primary. The redis crate's own `SentinelClient` is not
//! used because its connections to sentinels carry no connect or read
//! timeout: one sentinel that hangs would hold every new connection.
//!
//! When the sentinels name another primary, every connection opened before
//! is retired (its generation is stale): a primary demoted by a failover can
//! keep answering writes as a primary for seconds, until the sentinels
//! reconfigure it, and those writes would be lost. The change is noticed on
//! every new connection and by a watcher thread that asks every 0.5 s.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::{
    Client, Connection, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, RedisResult, Role, ServerErrorKind,
};

use crate::config::RedisTarget;
use crate::store::layout::Keys;
use crate::store::plumbing::error::is_turned_down;
use crate::store::plumbing::layout_check::LayoutCheck;
use crate::store::plumbing::link::Link;

/// How often the watcher asks the sentinels which server is the primary.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

pub struct Connector {
    target: Target,
    timeout: Duration,
    /// How the attempts to connect to one server have ended.
    memory: Mutex<Attempts>,
    /// Checked on every new connection; `None` for the migration,
    /// which runs on keys of an earlier layout.
    layout: Option<LayoutCheck>,
}

#[derive(Default)]
struct Attempts {
    /// When the latest attempt that succeeded began.
    succeeded: Option<Instant>,
    /// How Redis turned down an attempt begun since (nothing listening,
    /// wrong credentials, no such database, keys of another layout): while it is fresh, a request
    /// fails with it rather than wait the timeout for the same answer.
    refusal: Option<Refusal>,
}

#[derive(Clone)]
struct Refusal {
    error: RedisError,
    /// When the attempt that met it began.
    started: Instant,
    at: Instant,
}

enum Target {
    Server(Client),
    Sentinel(Sentinels),
    Cluster(Box<ClusterClient>),
}

/// Where the shared connections are opened. Made once per connection
/// opened, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Located {
    Node(Client),
    Cluster(ClusterClient),
}

struct Sentinels {
    sentinels: Vec<Client>,
    master_name: String,
    node: RedisConnectionInfo,
    /// The sentinel that named a primary last time; asked first next time.
    preferred: AtomicUsize,
    /// The primary connections were last opened to.
    primary: Mutex<Option<(String, u16)>>,
    /// Bumped (under `primary`'s lock) whenever the primary changes.
    generation: AtomicU64,
}

impl Connector {
    /// Checks the addresses without connecting anywhere.
    pub fn new(target: &RedisTarget, timeout: Duration) -> RedisResult<Self> {
        let target = match target {
            RedisTarget::Server(info) => Target::Server(Client::open(info.clone())?),
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                node,
            } => {
                if sentinels.is_empty() {
                    return Err(no_sentinel());
                }
                Target::Sentinel(Sentinels {
                    sentinels: sentinels
                        .iter()
                        .map(|info| Client::open(info.clone()))
                        .collect::<RedisResult<_>>()?,
                    master_name: master_name.clone(),
                    node: node.clone(),
                    preferred: AtomicUsize::new(0),
                    primary: Mutex::new(None),
                    generation: AtomicU64::new(0),
                })
            }
            RedisTarget::Cluster(nodes) => Target::Cluster(Box::new(
                ClusterClient::builder(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()?,
            )),
        };
        Ok(Self {
            target,
            timeout,
            memory: Mutex::new(Attempts::default()),
            layout: None,
        })
    }

    /// The same connector, whose connections fail until the keys under
    /// `keys`' prefix are in this release's layout.
    pub fn requiring_layout(self, keys: &Keys) -> Self {
        Self {
            layout: Some(LayoutCheck::new(keys)),
            ..self
        }
    }

    /// A new connection to the server, or to the current primary, with the
    /// generation it belongs to.
    pub fn connect(&self) -> RedisResult<(Link, u64)> {
        let started = Instant::now();
        let connected = match &self.target {
            Target::Server(client) => {
                open(client, self.timeout).map(|connection| (Link::Node(connection), 0))
            }
            Target::Sentinel(sentinels) => sentinels
                .connect_primary(self.timeout)
                .map(|(connection, _, generation)| (Link::Node(connection), generation)),
            Target::Cluster(client) => client
                .get_connection()
                .map(|connection| (Link::cluster(connection), 0)),
        };
        let checked = connected.and_then(|(mut connection, generation)| {
            if let Some(layout) = &self.layout {
                layout.ensure(&mut connection)?;
            }
            Ok((connection, generation))
        });
        self.noted(started, checked)
    }

    /// Remembers how an attempt to connect that began at `started` ended:
    /// a refusal, until an attempt that began later succeeds. Only one
    /// server's own answer counts: through sentinels, the last error of a
    /// round may be one sentinel's while another hangs, and naming it would
    /// give the wrong cause.
    pub fn noted<T>(&self, started: Instant, attempt: RedisResult<T>) -> RedisResult<T> {
        if matches!(self.target, Target::Sentinel(_)) {
            return attempt;
        }
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        let after_success = memory
            .succeeded
            .is_none_or(|succeeded| started >= succeeded);
        let after_refusal = memory
            .refusal
            .as_ref()
            .is_none_or(|refusal| started >= refusal.started);
        match &attempt {
            Ok(_) if after_success && after_refusal => {
                memory.succeeded = Some(started);
                memory.refusal = None;
            }
            Err(error) if after_success && is_turned_down(error) => {
                memory.refusal = Some(Refusal {
                    error: error.clone(),
                    started,
                    at: Instant::now(),
                });
            }
            _ => {}
        }
        attempt
    }

    /// Fails with the last refusal when an attempt met it after `moment`.
    pub fn refused_since(&self, moment: Instant) -> RedisResult<()> {
        match self.last_refusal() {
            Some(refusal) if refusal.at >= moment => Err(refusal.error),
            _ => Ok(()),
        }
    }

    fn last_refusal(&self) -> Option<Refusal> {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refusal
            .clone()
    }

    /// A client for the server, or for the primary the sentinels name right
    /// now (checked with `ROLE`), with the generation it belongs to: for
    /// connections opened some other way, such as the async one for reads.
    pub fn locate(&self) -> RedisResult<(Located, u64)> {
        // The shared connections are opened elsewhere: a connection of the
        // connector's own checks the layout first.
        if self.layout.is_some() {
            self.connect()?;
        }
        match &self.target {
            Target::Server(client) => Ok((Located::Node(client.clone()), 0)),
            Target::Sentinel(sentinels) => sentinels
                .connect_primary(self.timeout)
                .map(|(_, client, generation)| (Located::Node(client), generation)),
            Target::Cluster(client) => Ok((Located::Cluster((**client).clone()), 0)),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The generation of the current primary: a connection of an older one
    /// leads to a server that is not the primary any more.
    pub fn generation(&self) -> u64 {
        match &self.target {
            Target::Server(_) | Target::Cluster(_) => 0,
            Target::Sentinel(sentinels) => sentinels.generation.load(Ordering::Acquire),
        }
    }

    /// Whether a connection that has been idle still reaches a server that
    /// takes writes: a `PING` for one server or a cluster; through
    /// sentinels, a `ROLE`.
    pub fn check(&self, link: &mut Link) -> RedisResult<()> {
        match link {
            Link::Node(connection) if matches!(self.target, Target::Sentinel(_)) => {
                check_primary(connection)
            }
            link => redis::cmd("PING").exec(link),
        }
    }

    /// Through sentinels, starts the thread that asks them every
    /// [`WATCH_INTERVAL`] which server is the primary, and retires the
    /// connections to the old one when it changes. The thread ends once the
    /// connector is dropped.
    pub fn watch(connector: &Arc<Self>) -> std::io::Result<()> {
        if !matches!(connector.target, Target::Sentinel(_)) {
            return Ok(());
        }
        let connector = Arc::downgrade(connector);
        std::thread::Builder::new()
            .name("sentinel-watch".into())
            .spawn(move || loop {
                std::thread::sleep(WATCH_INTERVAL);
                match connector.upgrade() {
                    Some(connector) => connector.follow_primary(),
                    None => return,
                }
            })
            .map(drop)
    }

    fn follow_primary(&self) {
        let Target::Sentinel(sentinels) = &self.target else {
            return;
        };
        let Ok(named) = sentinels.named_primary(self.timeout) else {
            return;
        };
        let current = sentinels.current_primary();
        if current.is_some() && current.as_ref() != Some(&named) {
            // Connecting once records the new primary, if it answers as one,
            // and so retires every connection to the old one.
            let _ = sentinels.connect_primary(self.timeout);
        }
    }
}

/// A connection with the timeout on connect, reads and writes.
fn open(client: &Client, timeout: Duration) -> RedisResult<Connection> {
    let connection = client.get_connection_with_timeout(timeout)?;
    connection.set_read_timeout(Some(timeout))?;
    connection.set_write_timeout(Some(timeout))?;
    Ok(connection)
}

fn no_sentinel() -> RedisError {
    RedisError::from((
        ErrorKind::InvalidClientConfig,
        "no sentinel to ask for the primary",
    ))
}

/// Fails unless the server answers `ROLE` as a primary. A server whose ACL
/// user may not run `ROLE` (`NOPERM`) is taken at the sentinels' word: a
/// write there would answer `READONLY` if it were not the primary, and that
/// connection is then dropped.
fn check_primary(connection: &mut Connection) -> RedisResult<()> {
    match redis::cmd("ROLE").query::<Role>(connection) {
        Ok(Role::Primary { .. }) => Ok(()),
        Ok(_) => Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "the server is not a primary (any more)",
        ))),
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) => Ok(()),
        Err(error) => Err(error),
    }
}

impl Sentinels {
    /// The sentinels in the order to ask them: the one that answered last
    /// time first.
    fn in_order(&self) -> impl Iterator<Item = (usize, &Client)> {
        let count = self.sentinels.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        (first..count)
            .chain(0..first)
            .map(|index| (index, &self.sentinels[index]))
    }

    /// A checked connection to the primary, the client that opened it, and
    /// the primary's generation.
    fn connect_primary(&self, timeout: Duration) -> RedisResult<(Connection, Client, u64)> {
        let mut last_error = None;
        for (index, sentinel) in self.in_order() {
            let attempt = ask_primary(sentinel, &self.master_name, timeout).and_then(|address| {
                let (connection, client) = self.open_primary(&address, timeout)?;
                Ok((connection, client, address))
            });
            match attempt {
                Ok((connection, client, address)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok((connection, client, self.record(address)));
                }
                // During a failover, a sentinel may still name the old
                // primary while another already names the new one.
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(no_sentinel))
    }

    /// The primary the first sentinel that answers names, unchecked.
    fn named_primary(&self, timeout: Duration) -> RedisResult<(String, u16)> {
        let mut last_error = None;
        for (_, sentinel) in self.in_order() {
            match ask_primary(sentinel, &self.master_name, timeout) {
                Ok(address) => return Ok(address),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(no_sentinel))
    }

    fn open_primary(
        &self,
        address: &(String, u16),
        timeout: Duration,
    ) -> RedisResult<(Connection, Client)> {
        let info = ConnectionAddr::Tcp(address.0.clone(), address.1)
            .into_connection_info()?
            .set_redis_settings(self.node.clone());
        let client = Client::open(info)?;
        let mut connection = open(&client, timeout)?;
        check_primary(&mut connection)?;
        Ok((connection, client))
    }

    fn current_primary(&self) -> Option<(String, u16)> {
        self.primary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes that `address` answered as the primary; a change of primary
    /// starts a new generation. Returns the current generation.
    fn record(&self, address: (String, u16)) -> u64 {
        let mut primary = self.primary.lock().unwrap_or_else(PoisonError::into_inner);
        if primary.as_ref() != Some(&address) {
            *primary = Some(address);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.generation.load(Ordering::Acquire)
    }
}

/// The address a sentinel names as the primary of `master_name`.
fn ask_primary(
    sentinel: &Client,
    master_name: &str,
    timeout: Duration,
) -> RedisResult<(String, u16)> {
    let mut connection = open(sentinel, timeout)?;
    let address: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master_name)
        .query(&mut connection)?;
    address.ok_or_else(|| {
        RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "the sentinel does not monitor a master of the configured name",
        ))
    })
}
