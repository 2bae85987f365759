//! The Redis settings: one server (`REDIS_URL`, or the address settings),
//! or the primary the Sentinels name; the pool, the timeout and the key
//! prefix. A password never reaches a message: URLs are shown masked, and
//! a target is printed without its credentials.

use std::fmt;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use super::{ConfigError, Env, HostPort};

#[derive(Clone)]
pub struct RedisSettings {
    /// Where and how to connect; holds passwords, so only its `Display`,
    /// which leaves them out, is ever printed.
    pub target: RedisTarget,
    pub pool_size: u32,
    /// The longest a request waits for a pooled connection or a Redis reply.
    pub timeout: Duration,
    /// Prepended to every key, so several services and tests share one Redis.
    pub key_prefix: String,
    /// About how many events the event stream keeps (XADD MAXLEN ~).
    pub events_max_len: u64,
    /// `None` unless `REDIS_WAIT_REPLICAS` is above zero.
    pub replica_wait: Option<ReplicaWait>,
}

/// `REDIS_WAIT_REPLICAS` and `REDIS_WAIT_TIMEOUT_MS`: a write is
/// acknowledged only once this many replicas confirmed it (`WAIT`), so that
/// a primary lost right after answering cannot take it along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout: Duration,
}

/// The Redis the service writes to.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server: `REDIS_URL`, or `REDIS_ADDRESS` and `REDIS_PORT`.
    Server(ConnectionInfo),
    /// Whichever server the sentinels name as the primary of `master_name`
    /// (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`), followed through
    /// failovers.
    Sentinel {
        /// The sentinels, each with its own ACL user and password, if any.
        sentinels: Vec<ConnectionInfo>,
        master_name: String,
        /// Database, ACL user and password for the primary
        /// (`REDIS_DB`, `REDIS_USERNAME`, `REDIS_PASSWORD`).
        node: RedisConnectionInfo,
    },
    /// A Redis Cluster, found through these seed nodes
    /// (`REDIS_CLUSTER_NODES`), each with its ACL user and password.
    Cluster(Vec<ConnectionInfo>),
}

/// Where the service connects, for log lines: addresses, database and
/// master name, never a user name or a password.
impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(info) => {
                let db = info.redis_settings().db();
                match info.addr() {
                    ConnectionAddr::Tcp(host, port) => {
                        write!(f, "redis://{}/{db}", HostPort(host, *port))
                    }
                    ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure,
                        ..
                    } => {
                        write!(f, "rediss://{}/{db}", HostPort(host, *port))?;
                        if *insecure {
                            f.write_str("#insecure")?;
                        }
                        Ok(())
                    }
                    ConnectionAddr::Unix(path) => {
                        write!(f, "redis+unix://{}?db={db}", path.display())
                    }
                    other => write!(f, "{other} (db {db})"),
                }
            }
            Self::Sentinel {
                sentinels,
                master_name,
                node,
            } => {
                write!(f, "master {master_name} (db {}) via sentinels ", node.db())?;
                for (index, sentinel) in sentinels.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    match sentinel.addr() {
                        ConnectionAddr::Tcp(host, port) => write!(f, "{}", HostPort(host, *port))?,
                        other => write!(f, "{other}")?,
                    }
                }
                Ok(())
            }
            Self::Cluster(nodes) => {
                f.write_str("cluster via ")?;
                for (index, node) in nodes.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    match node.addr() {
                        ConnectionAddr::Tcp(host, port) => write!(f, "{}", HostPort(host, *port))?,
                        ConnectionAddr::TcpTls { host, port, .. } => {
                            write!(f, "rediss://{}", HostPort(host, *port))?;
                        }
                        other => write!(f, "{other}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

pub(super) fn settings(env: &Env) -> Result<RedisSettings, ConfigError> {
    let timeout = Duration::from_millis(env.parse_in("REDIS_TIMEOUT_MS", 2000, 1..=60_000)?);
    Ok(RedisSettings {
        target: redis_target(env)?,
        pool_size: env.parse_in("REDIS_POOL_SIZE", 15, 1..=1024)?,
        timeout,
        key_prefix: key_prefix(env)?,
        events_max_len: env.parse_in("EVENTS_MAX_LEN", 100_000, 1..=u64::MAX)?,
        replica_wait: replica_wait(env, timeout)?,
    })
}

fn replica_wait(env: &Env, timeout: Duration) -> Result<Option<ReplicaWait>, ConfigError> {
    let replicas = env.parse_in("REDIS_WAIT_REPLICAS", 0, 0..=64)?;
    let wait = Duration::from_millis(env.parse_in("REDIS_WAIT_TIMEOUT_MS", 1000, 1..=60_000)?);
    if replicas == 0 {
        return Ok(None);
    }
    // WAIT's answer comes within the wait: the reply timeout must allow it.
    if wait >= timeout {
        return Err(ConfigError {
            setting: "REDIS_WAIT_TIMEOUT_MS",
            reason: format!(
                "must be below REDIS_TIMEOUT_MS ({} ms), the longest wait for any reply",
                timeout.as_millis()
            ),
        });
    }
    Ok(Some(ReplicaWait {
        replicas,
        timeout: wait,
    }))
}

/// The master name the sentinels use when `REDIS_SENTINEL_MASTER` is unset.
const DEFAULT_SENTINEL_MASTER: &str = "mymaster";

/// The settings a cluster's node URLs take the place of.
const NOT_WITH_A_CLUSTER: [&str; 7] = [
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_ADDRESS",
    "REDIS_PORT",
    "REDIS_DB",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
];

fn redis_target(env: &Env) -> Result<RedisTarget, ConfigError> {
    if let Some(list) = env.get("REDIS_CLUSTER_NODES") {
        if let Some(other) = NOT_WITH_A_CLUSTER
            .into_iter()
            .find(|other| env.get(other).is_some())
        {
            return Err(ConfigError {
                setting: "REDIS_CLUSTER_NODES",
                reason: format!(
                    "cannot be combined with {other}: set REDIS_CLUSTER_NODES (with any user \
                     and password in each node's URL) to run on a cluster, or {other} without it"
                ),
            });
        }
        return cluster_nodes(&list).map(RedisTarget::Cluster);
    }
    let Some(list) = env.get("REDIS_SENTINELS") else {
        if env.get("REDIS_SENTINEL_MASTER").is_some() {
            return Err(ConfigError {
                setting: "REDIS_SENTINEL_MASTER",
                reason: "is set, but REDIS_SENTINELS is not".into(),
            });
        }
        return redis_server(env).map(RedisTarget::Server);
    };
    for other in ["REDIS_URL", "REDIS_ADDRESS", "REDIS_PORT"] {
        if env.get(other).is_some() {
            return Err(ConfigError {
                setting: "REDIS_SENTINELS",
                reason: format!(
                    "cannot be combined with {other}: set REDIS_SENTINELS to follow the \
                     primary the sentinels name, or {other} for one server"
                ),
            });
        }
    }
    let sentinels = sentinel_list(&list)?;
    let master_name = env
        .get("REDIS_SENTINEL_MASTER")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|| DEFAULT_SENTINEL_MASTER.into());
    if master_name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError {
            setting: "REDIS_SENTINEL_MASTER",
            reason: "must not contain whitespace or control characters".into(),
        });
    }
    Ok(RedisTarget::Sentinel {
        sentinels,
        master_name,
        node: redis_node(env)?,
    })
}

/// `REDIS_SENTINELS`: comma-separated `host:port` entries or
/// `redis://[[user]:password@]host:port` URLs. Entries are named by their
/// position in errors, never echoed: a URL may hold a password.
fn sentinel_list(list: &str) -> Result<Vec<ConnectionInfo>, ConfigError> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(ConfigError {
            setting: "REDIS_SENTINELS",
            reason: "names no sentinel".into(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            sentinel_address(entry).map_err(|problem| ConfigError {
                setting: "REDIS_SENTINELS",
                reason: format!("entry {} of {}: {problem}", index + 1, entries.len()),
            })
        })
        .collect()
}

/// `REDIS_CLUSTER_NODES`: comma-separated `redis://` or `rediss://` URLs
/// with a port and no database. Entries are named by their position in
/// errors, never echoed: a URL may hold a password.
fn cluster_nodes(list: &str) -> Result<Vec<ConnectionInfo>, ConfigError> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(ConfigError {
            setting: "REDIS_CLUSTER_NODES",
            reason: "names no node".into(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            cluster_node(entry).map_err(|problem| ConfigError {
                setting: "REDIS_CLUSTER_NODES",
                reason: format!("entry {} of {}: {problem}", index + 1, entries.len()),
            })
        })
        .collect()
}

fn cluster_node(entry: &str) -> Result<ConnectionInfo, String> {
    const EXPECTED: &str = "expected redis://[[user]:password@]host:port or rediss://…";
    let url = redis::parse_redis_url(entry).ok_or(EXPECTED)?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!("{EXPECTED} (a cluster has no Unix sockets)"));
    }
    if url.port().is_none() {
        return Err("the node URL needs a port, as in redis://10.0.0.1:7000".into());
    }
    if !matches!(url.path(), "" | "/" | "/0") {
        return Err("a cluster has database 0 only: leave the database out of the URL".into());
    }
    redis_url(entry)
}

fn sentinel_address(entry: &str) -> Result<ConnectionInfo, &'static str> {
    const EXPECTED: &str = "expected host:port or redis://[[user]:password@]host:port";
    if entry.contains("://") {
        let url = redis::parse_redis_url(entry).ok_or(EXPECTED)?;
        if url.scheme() != "redis" {
            return Err("only redis:// sentinel URLs are supported (no TLS or Unix sockets)");
        }
        if url.port().is_none() {
            return Err("the sentinel URL needs a port");
        }
        if !matches!(url.path(), "" | "/") {
            return Err("a sentinel has no databases: put REDIS_DB in its own setting");
        }
        return url.into_connection_info().map_err(|_| EXPECTED);
    }
    let (host, port) = entry.rsplit_once(':').ok_or(EXPECTED)?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    if host.is_empty() || port == 0 || host.contains(['/', '@', ' ']) {
        return Err(EXPECTED);
    }
    if host.contains(':') && !entry.starts_with('[') {
        return Err("write an IPv6 address in brackets: [::1]:26379");
    }
    ConnectionAddr::Tcp(host.to_owned(), port)
        .into_connection_info()
        .map_err(|_| EXPECTED)
}

/// Database, ACL user and password: of the one server, or of the primary
/// the sentinels name.
fn redis_node(env: &Env) -> Result<RedisConnectionInfo, ConfigError> {
    let db = env.parse_in("REDIS_DB", 0i64, 0..=i64::from(u16::MAX))?;
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(username) = env.get("REDIS_USERNAME") {
        redis = redis.set_username(username);
    }
    if let Some(password) = env.get("REDIS_PASSWORD") {
        redis = redis.set_password(password);
    }
    Ok(redis)
}

fn redis_server(env: &Env) -> Result<ConnectionInfo, ConfigError> {
    if let Some(url) = env.get("REDIS_URL") {
        return redis_url(url.trim()).map_err(|reason| ConfigError {
            setting: "REDIS_URL",
            reason,
        });
    }
    let host = env
        .get("REDIS_ADDRESS")
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = env.parse_in("REDIS_PORT", 6379u16, 1..=u16::MAX)?;
    let redis = redis_node(env)?;
    let info = ConnectionAddr::Tcp(host.trim().to_owned(), port)
        .into_connection_info()
        .map_err(|error| ConfigError {
            setting: "REDIS_ADDRESS",
            reason: error.to_string(),
        })?;
    Ok(info.set_redis_settings(redis))
}

/// The schemes `REDIS_URL` accepts.
const REDIS_URL_SCHEMES: &str = "redis://, rediss:// or redis+unix://";

/// The forms of `REDIS_URL`, for messages.
const REDIS_URL_FORMS: &str = "redis://[[user]:password@]host[:port][/db], \
    rediss://... (TLS) or redis+unix:///path/to/socket[?db=N]";

/// `REDIS_URL`, checked before the redis crate reads it: its own errors do
/// not say which part is wrong. Messages show the URL only with its
/// password masked.
fn redis_url(url: &str) -> Result<ConnectionInfo, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        let shown = masked(url);
        return Err(format!(
            "must start with {REDIS_URL_SCHEMES} (got {shown}); did you mean redis://{shown}?"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    let suggested = match scheme.as_str() {
        "redis" | "rediss" | "redis+unix" => None,
        "https" | "tls" | "ssl" | "valkeys" => Some("rediss"),
        "unix" | "valkey+unix" | "file" => Some("redis+unix"),
        _ => Some("redis"),
    };
    if let Some(suggested) = suggested {
        return Err(format!(
            "must start with {REDIS_URL_SCHEMES} (got {}); did you mean {suggested}://{}?",
            masked(url),
            masked(rest)
        ));
    }
    let Some(parsed) = redis::parse_redis_url(url) else {
        return Err(format!(
            "is not a valid URL; expected {REDIS_URL_FORMS} \
             (with / # ? @ in a password percent-encoded)"
        ));
    };
    if scheme == "redis+unix" {
        if let Some((_, db)) = parsed.query_pairs().find(|(name, _)| name == "db") {
            if db.parse::<u16>().is_err() {
                return Err(format!(
                    "the database (the db= parameter) must be a whole number from 0 to \
                     65535, as in redis+unix:///run/redis.sock?db=0 (got db={})",
                    masked(&db)
                ));
            }
        }
    } else {
        let db = parsed.path().trim_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(format!(
                "the database (the part after host:port) must be a whole number from 0 \
                 to 65535, as in redis://127.0.0.1:6379/0 (got {})",
                masked(parsed.path())
            ));
        }
    }
    parsed.into_connection_info().map_err(|error| {
        // The redis crate's messages name the problem, never the value:
        // "<problem> - <kind>[: detail]".
        let error = error.to_string();
        let problem = error.split(" - ").next().unwrap_or("not a URL");
        format!("is not usable ({problem}); expected {REDIS_URL_FORMS}")
    })
}

/// `value` with the password of a URL (or URL-like text) replaced by `***`:
/// the part of the user info after its first `:`, or all of it when it has
/// none (a password written where the user name goes), and the `pass=` of a
/// Unix socket URL. Control characters are escaped, so a message stays on
/// one line.
pub fn masked(value: &str) -> String {
    let (scheme, rest) = match value.find("://") {
        Some(index) => value.split_at(index + 3),
        None => ("", value),
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            let user = match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{user}{}", &rest[at..])
        }
        None => rest.to_owned(),
    };
    let masked = match rest.split_once('?') {
        Some((before, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("pass") => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}{masked}")
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn key_prefix(env: &Env) -> Result<String, ConfigError> {
    let prefix = env.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "ua:".into());
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError {
            setting: "REDIS_KEY_PREFIX",
            reason: "must not contain whitespace or control characters".into(),
        });
    }
    // Each key's hash tag follows the prefix; a brace before it would make
    // Redis Cluster hash the prefix instead, and put every key in one slot.
    if prefix.contains(['{', '}']) {
        return Err(ConfigError {
            setting: "REDIS_KEY_PREFIX",
            reason: "must not contain { or }: the hash tag that places each key follows the \
                     prefix"
                .into(),
        });
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{settings_from, Settings};

    fn server(settings: &Settings) -> &ConnectionInfo {
        match &settings.redis.target {
            RedisTarget::Server(info) => info,
            other => panic!("expected one server, got {other}"),
        }
    }

    #[test]
    fn writes_wait_for_no_replica_unless_asked() {
        let settings = settings_from(&[]).expect("the defaults are valid");
        assert_eq!(settings.redis.replica_wait, None);
        let settings =
            settings_from(&[("REDIS_WAIT_REPLICAS", "2")]).expect("a wait within the timeout");
        assert_eq!(
            settings.redis.replica_wait,
            Some(ReplicaWait {
                replicas: 2,
                timeout: Duration::from_millis(1000),
            })
        );
    }

    #[test]
    fn a_replica_wait_as_long_as_the_reply_timeout_is_refused_naming_both() {
        let error = settings_from(&[
            ("REDIS_WAIT_REPLICAS", "1"),
            ("REDIS_WAIT_TIMEOUT_MS", "2000"),
            ("REDIS_TIMEOUT_MS", "2000"),
        ])
        .err()
        .expect("refused");
        assert_eq!(error.setting, "REDIS_WAIT_TIMEOUT_MS");
        assert!(
            error.reason.contains("REDIS_TIMEOUT_MS"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn redis_url_carries_acl_user_password_and_database() {
        let settings = settings_from(&[("REDIS_URL", "redis://app:s3cret@10.0.0.5:6390/3")])
            .expect("a valid URL");
        let info = server(&settings);
        assert_eq!(info.addr().to_string(), "10.0.0.5:6390");
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 3);
    }

    #[test]
    fn a_key_prefix_with_a_brace_is_refused() {
        let error = settings_from(&[("REDIS_KEY_PREFIX", "{app}:")])
            .err()
            .expect("refused");
        assert_eq!(error.setting, "REDIS_KEY_PREFIX");
        assert!(
            error.to_string().contains("must not contain { or }"),
            "{error}"
        );
    }

    #[test]
    fn rediss_url_selects_tls() {
        let settings =
            settings_from(&[("REDIS_URL", "rediss://cache.example:6380")]).expect("valid");
        assert!(matches!(
            server(&settings).addr(),
            ConnectionAddr::TcpTls { .. }
        ));
    }

    #[test]
    fn unix_socket_url_is_accepted() {
        let settings =
            settings_from(&[("REDIS_URL", "redis+unix:///run/redis.sock")]).expect("valid");
        assert!(matches!(server(&settings).addr(), ConnectionAddr::Unix(_)));
    }

    #[test]
    fn separate_address_settings_build_the_connection() {
        let settings = settings_from(&[
            ("REDIS_ADDRESS", "redis.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "2"),
            ("REDIS_USERNAME", "svc"),
            ("REDIS_PASSWORD", "pw"),
        ])
        .expect("valid");
        let info = server(&settings);
        assert_eq!(info.addr().to_string(), "redis.internal:6380");
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(info.redis_settings().username(), Some("svc"));
        assert_eq!(info.redis_settings().password(), Some("pw"));
    }

    #[test]
    fn a_bad_url_is_rejected_without_echoing_it() {
        let error = settings_from(&[("REDIS_URL", "http://user:hunter2@host")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_URL");
        assert!(!error.to_string().contains("hunter2"));
    }

    fn sentinel_target(settings: &Settings) -> (&[ConnectionInfo], &str, &RedisConnectionInfo) {
        match &settings.redis.target {
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                node,
            } => (sentinels, master_name, node),
            other => panic!("expected sentinels, got {other}"),
        }
    }

    fn cluster_target(settings: &Settings) -> &[ConnectionInfo] {
        match &settings.redis.target {
            RedisTarget::Cluster(nodes) => nodes,
            other => panic!("expected a cluster, got {other}"),
        }
    }

    #[test]
    fn cluster_nodes_are_the_seeds_with_their_credentials() {
        let settings = settings_from(&[(
            "REDIS_CLUSTER_NODES",
            "redis://10.0.0.1:7000, rediss://app:s3cret@10.0.0.2:7001",
        )])
        .expect("valid nodes");
        let nodes = cluster_target(&settings);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].addr().to_string(), "10.0.0.1:7000");
        assert!(matches!(nodes[1].addr(), ConnectionAddr::TcpTls { .. }));
        assert_eq!(nodes[1].redis_settings().username(), Some("app"));
        assert_eq!(nodes[1].redis_settings().password(), Some("s3cret"));
        assert_eq!(
            settings.redis.target.to_string(),
            "cluster via 10.0.0.1:7000, rediss://10.0.0.2:7001"
        );
    }

    #[test]
    fn cluster_nodes_conflict_with_every_other_redis_target_setting() {
        for other in NOT_WITH_A_CLUSTER {
            let error = settings_from(&[
                ("REDIS_CLUSTER_NODES", "redis://10.0.0.1:7000"),
                (other, "1"),
            ])
            .err()
            .unwrap_or_else(|| panic!("{other} with REDIS_CLUSTER_NODES is rejected"));
            assert_eq!(error.setting, "REDIS_CLUSTER_NODES");
            assert!(error.reason.contains(other), "{other}: {}", error.reason);
        }
    }

    #[test]
    fn a_bad_cluster_node_is_named_by_position_without_echoing_it() {
        for (bad, problem) in [
            ("redis://:hunter2@10.0.0.2", "needs a port"),
            ("redis://:hunter2@10.0.0.2:7000/3", "database 0 only"),
            ("redis+unix:///run/hunter2.sock", "no Unix sockets"),
            ("hunter2:7000", "expected redis://"),
        ] {
            let error = settings_from(&[(
                "REDIS_CLUSTER_NODES",
                &format!("redis://10.0.0.1:7000,{bad}"),
            )])
            .err()
            .unwrap_or_else(|| panic!("{bad} is rejected"));
            assert_eq!(error.setting, "REDIS_CLUSTER_NODES");
            assert!(
                error.reason.starts_with("entry 2 of 2: "),
                "{}",
                error.reason
            );
            assert!(error.reason.contains(problem), "{bad}: {}", error.reason);
            assert!(!error.reason.contains("hunter2"), "{}", error.reason);
        }
    }

    #[test]
    fn a_sentinel_list_names_the_primary_through_them() {
        let settings = settings_from(&[
            (
                "REDIS_SENTINELS",
                " 10.0.0.1:26379, sentinel-b.internal:26380 ,redis://:s3ntinel@10.0.0.3:26381,[::1]:26382,",
            ),
            ("REDIS_DB", "2"),
            ("REDIS_USERNAME", "svc"),
            ("REDIS_PASSWORD", "pw"),
        ])
        .expect("a valid sentinel list");
        let (sentinels, master_name, node) = sentinel_target(&settings);
        let addresses: Vec<String> = sentinels.iter().map(|s| s.addr().to_string()).collect();
        assert_eq!(
            addresses,
            [
                "10.0.0.1:26379",
                "sentinel-b.internal:26380",
                "10.0.0.3:26381",
                "::1:26382"
            ]
        );
        assert_eq!(sentinels[0].redis_settings().password(), None);
        assert_eq!(sentinels[2].redis_settings().password(), Some("s3ntinel"));
        assert_eq!(sentinels[2].redis_settings().db(), 0);
        assert_eq!(master_name, "mymaster");
        assert_eq!(node.db(), 2);
        assert_eq!(node.username(), Some("svc"));
        assert_eq!(node.password(), Some("pw"));
    }

    #[test]
    fn the_sentinel_master_name_can_be_set() {
        let settings = settings_from(&[
            ("REDIS_SENTINELS", "127.0.0.1:26379"),
            ("REDIS_SENTINEL_MASTER", "accounts"),
        ])
        .expect("valid");
        assert_eq!(sentinel_target(&settings).1, "accounts");
    }

    #[test]
    fn a_bad_sentinel_entry_is_named_by_position_without_echoing_it() {
        for bad in [
            "10.0.0.1:26379,10.0.0.2",
            "10.0.0.1:26379,10.0.0.2:port",
            "10.0.0.1:26379,10.0.0.2:0",
            "10.0.0.1:26379,:26379",
            "10.0.0.1:26379,redis://:hunter2@10.0.0.2",
            "10.0.0.1:26379,rediss://:hunter2@10.0.0.2:26379",
            "10.0.0.1:26379,redis://:hunter2@10.0.0.2:26379/1",
            "10.0.0.1:26379,http://:hunter2@10.0.0.2:26379",
            "10.0.0.1:26379,::1:26379",
        ] {
            let error = settings_from(&[("REDIS_SENTINELS", bad)])
                .err()
                .unwrap_or_else(|| panic!("{bad} is rejected"));
            assert_eq!(error.setting, "REDIS_SENTINELS", "{bad}");
            let message = error.to_string();
            assert!(message.contains("entry 2 of 2"), "{bad}: {message}");
            assert!(!message.contains("hunter2"), "{bad}: {message}");
            assert!(!message.contains("10.0.0.2"), "{bad}: {message}");
        }
    }

    #[test]
    fn an_empty_sentinel_list_is_rejected() {
        let error = settings_from(&[("REDIS_SENTINELS", " , ,")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_SENTINELS");
    }

    #[test]
    fn sentinels_conflict_with_a_redis_url_or_address() {
        for (other, value) in [
            ("REDIS_URL", "redis://:hunter2@10.0.0.5:6379/0"),
            ("REDIS_ADDRESS", "10.0.0.5"),
            ("REDIS_PORT", "6380"),
        ] {
            let error = settings_from(&[("REDIS_SENTINELS", "10.0.0.1:26379"), (other, value)])
                .err()
                .unwrap_or_else(|| panic!("{other} with REDIS_SENTINELS is rejected"));
            assert_eq!(error.setting, "REDIS_SENTINELS");
            let message = error.to_string();
            assert!(message.contains(other), "{message}");
            assert!(!message.contains("hunter2") && !message.contains("10.0.0.5"));
        }
    }

    #[test]
    fn a_master_name_without_sentinels_is_rejected() {
        let error = settings_from(&[("REDIS_SENTINEL_MASTER", "accounts")])
            .err()
            .expect("rejected");
        assert_eq!(error.setting, "REDIS_SENTINEL_MASTER");
    }

    #[test]
    fn a_master_name_with_spaces_is_rejected() {
        let error = settings_from(&[
            ("REDIS_SENTINELS", "127.0.0.1:26379"),
            ("REDIS_SENTINEL_MASTER", "my master"),
        ])
        .err()
        .expect("rejected");
        assert_eq!(error.setting, "REDIS_SENTINEL_MASTER");
    }

    fn redis_url_error(url: &str) -> ConfigError {
        settings_from(&[("REDIS_URL", url)])
            .err()
            .unwrap_or_else(|| panic!("{url} is rejected"))
    }

    #[test]
    fn a_redis_url_without_a_scheme_is_rejected_with_the_url_it_probably_meant() {
        let error = redis_url_error("127.0.0.1:6379");
        assert_eq!(error.setting, "REDIS_URL");
        assert_eq!(
            error.reason,
            "must start with redis://, rediss:// or redis+unix:// (got 127.0.0.1:6379); \
             did you mean redis://127.0.0.1:6379?"
        );
    }

    #[test]
    fn a_redis_url_with_an_http_scheme_is_rejected_with_the_url_it_probably_meant() {
        let error = redis_url_error("http://127.0.0.1:6379/0");
        assert_eq!(error.setting, "REDIS_URL");
        assert_eq!(
            error.reason,
            "must start with redis://, rediss:// or redis+unix:// (got http://127.0.0.1:6379/0); \
             did you mean redis://127.0.0.1:6379/0?"
        );
    }

    #[test]
    fn a_redis_url_with_an_https_scheme_is_pointed_at_rediss() {
        let error = redis_url_error("https://cache.example:6380");
        assert!(
            error
                .reason
                .ends_with("did you mean rediss://cache.example:6380?"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_with_a_unix_scheme_is_pointed_at_redis_unix() {
        let error = redis_url_error("unix:///run/redis.sock");
        assert!(
            error
                .reason
                .ends_with("did you mean redis+unix:///run/redis.sock?"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_whose_database_is_not_a_whole_number_says_what_it_must_be() {
        for (url, got) in [
            ("redis://127.0.0.1:6379/abc", "/abc"),
            ("redis://127.0.0.1:6379/-1", "/-1"),
            ("redis://127.0.0.1:6379/1.5", "/1.5"),
            ("rediss://127.0.0.1:6379/0/1", "/0/1"),
            ("redis://127.0.0.1:6379/65536", "/65536"),
        ] {
            let error = redis_url_error(url);
            assert_eq!(error.setting, "REDIS_URL", "{url}");
            let message = error.to_string();
            assert!(
                message.contains("the database (the part after host:port) must be a whole number"),
                "{url}: {message}"
            );
            assert!(
                message.contains("redis://127.0.0.1:6379/0"),
                "{url}: {message}"
            );
            assert!(
                message.ends_with(&format!("(got {got})")),
                "{url}: {message}"
            );
        }
    }

    #[test]
    fn a_unix_socket_url_whose_db_is_not_a_whole_number_says_what_it_must_be() {
        let error = redis_url_error("redis+unix:///run/redis.sock?db=first");
        assert_eq!(error.setting, "REDIS_URL");
        assert!(
            error.reason.contains("must be a whole number")
                && error.reason.ends_with("(got db=first)"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_without_a_scheme_is_shown_with_its_password_masked() {
        let error = redis_url_error(":hunter2@10.0.0.5:6379");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error
                .reason
                .contains("did you mean redis://:***@10.0.0.5:6379?"),
            "{error}"
        );
    }

    #[test]
    fn a_password_in_the_user_name_place_is_masked_too() {
        let error = redis_url_error("http://hunter2@10.0.0.5:6379");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error.reason.contains("(got http://***@10.0.0.5:6379)"),
            "{error}"
        );
    }

    #[test]
    fn a_unix_socket_password_is_masked() {
        let error = redis_url_error("unix:///run/redis.sock?db=1&pass=hunter2");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error
                .reason
                .contains("did you mean redis+unix:///run/redis.sock?db=1&pass=***?"),
            "{error}"
        );
    }

    #[test]
    fn a_redis_url_that_does_not_parse_names_the_expected_form_without_echoing_it() {
        let error = redis_url_error("redis://:hunter2@10.0.0.5:port/0");
        assert_eq!(error.setting, "REDIS_URL");
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.contains("expected redis://[[user]:password@]host[:port][/db]"),
            "{message}"
        );
    }

    #[test]
    fn a_rejected_redis_url_stays_on_one_line() {
        let error = redis_url_error("127.0.0.1:6379\nX-Injected: 1");
        assert_eq!(error.to_string().lines().count(), 1, "{error}");
    }

    #[test]
    fn a_redis_url_scheme_in_capitals_is_accepted() {
        let settings = settings_from(&[("REDIS_URL", "REDIS://10.0.0.5:6390/3")]).expect("valid");
        assert_eq!(server(&settings).addr().to_string(), "10.0.0.5:6390");
    }

    fn target_shown(pairs: &[(&str, &str)]) -> String {
        settings_from(pairs)
            .expect("valid")
            .redis
            .target
            .to_string()
    }

    #[test]
    fn a_redis_server_is_shown_with_address_and_database_but_no_credentials() {
        let shown = target_shown(&[("REDIS_URL", "redis://app:s3cret@10.0.0.5:6390/3")]);
        assert_eq!(shown, "redis://10.0.0.5:6390/3");
    }

    #[test]
    fn a_redis_server_over_tls_is_shown_as_rediss() {
        let shown = target_shown(&[("REDIS_URL", "rediss://:s3cret@cache.example:6380")]);
        assert_eq!(shown, "rediss://cache.example:6380/0");
    }

    #[test]
    fn a_redis_server_on_ipv6_is_shown_in_brackets() {
        let shown = target_shown(&[("REDIS_URL", "redis://[::1]:6379/2")]);
        assert_eq!(shown, "redis://[::1]:6379/2");
    }

    #[test]
    fn a_redis_unix_socket_is_shown_with_its_database_but_no_password() {
        let shown = target_shown(&[("REDIS_URL", "redis+unix:///run/redis.sock?db=4&pass=s3cret")]);
        assert_eq!(shown, "redis+unix:///run/redis.sock?db=4");
    }

    #[test]
    fn a_redis_server_from_separate_settings_is_shown_without_its_password() {
        let shown = target_shown(&[
            ("REDIS_ADDRESS", "redis.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "2"),
            ("REDIS_PASSWORD", "s3cret"),
        ]);
        assert_eq!(shown, "redis://redis.internal:6380/2");
    }

    #[test]
    fn sentinels_are_shown_with_master_and_database_but_no_passwords() {
        let shown = target_shown(&[
            (
                "REDIS_SENTINELS",
                "10.0.0.1:26379,redis://:s3ntinel@10.0.0.3:26381,[::1]:26382",
            ),
            ("REDIS_SENTINEL_MASTER", "accounts"),
            ("REDIS_DB", "2"),
            ("REDIS_PASSWORD", "s3cret"),
        ]);
        assert_eq!(
            shown,
            "master accounts (db 2) via sentinels 10.0.0.1:26379, 10.0.0.3:26381, [::1]:26382"
        );
    }
}
