//! A throwaway Redis Cluster on loopback: three primaries with one replica
//! each, on free ports, made with `redis-cli --cluster create` and gone when
//! its handle drops.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::RedisServer;

/// How long a new cluster may take to agree that every slot is served.
const FORMING: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Six nodes joined into three primaries with a replica each, once every
    /// node says the cluster is `ok`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_cluster_node()).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until_formed();
        cluster
    }

    /// One cluster for every test of the binary that asks, started on first
    /// use; its servers stop when the test process exits.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<&'static RedisCluster> = OnceLock::new();
        SHARED.get_or_init(|| Box::leak(Box::new(Self::start())))
    }

    /// Kills (SIGKILL) the first node that is a primary now; its URL.
    pub fn kill_a_primary(&mut self) -> String {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| Self::ask_role(&node.url()) == "master")
            .expect("a primary");
        node.kill();
        node.url()
    }

    /// Starts the node at `url` again, after [`RedisCluster::kill_a_primary`],
    /// and waits until it is back as a replica, in sync.
    pub fn restart(&mut self, url: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.url() == url)
            .expect("a node of this cluster");
        node.restart();
        self.wait_until_formed();
    }

    /// Waits until every node but `gone` says every slot is served again,
    /// within `within`.
    pub fn wait_until_served_without(&self, gone: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let serving = |url: &String| Self::ask(url, "INFO").contains("cluster_state:ok");
        while Instant::now() < deadline {
            let others: Vec<String> = self
                .node_urls()
                .into_iter()
                .filter(|url| url != gone)
                .collect();
            if others.iter().all(serving) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not serve every slot again within {within:?}");
    }

    /// Moves `slots` hash slots, with their keys, from the primary at
    /// `from` to the one at `to`, as an operator's `redis-cli --cluster
    /// reshard` does, key by key with MIGRATE; blocks until done.
    pub fn move_slots(from: &str, to: &str, slots: usize) {
        let address = |url: &str| {
            url.trim_start_matches("redis://")
                .trim_end_matches('/')
                .to_owned()
        };
        let moved = Command::new("redis-cli")
            .args(["--cluster", "reshard", &address(from)])
            .args(["--cluster-from", &Self::node_id(from)])
            .args(["--cluster-to", &Self::node_id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(
            moved.status.success(),
            "redis-cli --cluster reshard failed:\n{}{}",
            String::from_utf8_lossy(&moved.stdout),
            String::from_utf8_lossy(&moved.stderr)
        );
    }

    /// The cluster's id of the node at `url`.
    fn node_id(url: &str) -> String {
        Self::ask(url, "MYID")
    }

    /// How many slots the node at `url` serves, by its own count.
    pub fn slots_of(url: &str) -> usize {
        let id = Self::node_id(url);
        Self::ask(url, "NODES")
            .lines()
            .find(|line| line.starts_with(&id))
            .map(|line| {
                line.split_whitespace()
                    .skip(8)
                    .filter(|range| !range.starts_with('['))
                    .map(|range| match range.split_once('-') {
                        Some((first, last)) => {
                            last.parse::<usize>().unwrap_or(0) + 1
                                - first.parse::<usize>().unwrap_or(0)
                        }
                        None => 1,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// A `redis://` URL of each node: the seeds a client starts from.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `CLUSTER` `subcommand`'s answer, as text, from the node at `url`.
    pub fn ask(url: &str, subcommand: &str) -> String {
        let mut connection = connect(url);
        redis::cmd("CLUSTER")
            .arg(subcommand)
            .query(&mut connection)
            .unwrap_or_else(|error| panic!("CLUSTER {subcommand} failed on {url}: {error}"))
    }

    /// The URL of each primary.
    pub fn primary_urls(&self) -> Vec<String> {
        self.node_urls()
            .into_iter()
            .filter(|url| Self::ask_role(url) == "master")
            .collect()
    }

    /// The node's `INFO replication`.
    fn replication(url: &str) -> String {
        let mut connection = connect(url);
        redis::cmd("INFO")
            .arg("replication")
            .query(&mut connection)
            .unwrap_or_else(|error| panic!("INFO failed on {url}: {error}"))
    }

    fn ask_role(url: &str) -> String {
        let mut connection = connect(url);
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query(&mut connection)
            .unwrap_or_else(|error| panic!("ROLE failed on {url}: {error}"));
        match role.first() {
            Some(redis::Value::BulkString(name)) => String::from_utf8_lossy(name).into_owned(),
            other => panic!("ROLE answered {other:?} on {url}"),
        }
    }

    /// How many keys under `prefix` the node at `url` holds.
    pub fn keys_on(url: &str, prefix: &str) -> usize {
        let mut connection = connect(url);
        redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter::<String>(&mut connection)
            .unwrap_or_else(|error| panic!("SCAN failed on {url}: {error}"))
            .count()
    }

    fn wait_until_formed(&self) {
        let deadline = Instant::now() + FORMING;
        while Instant::now() < deadline {
            // Each node's own view: every slot served, every replica known
            // as one (redis-cli names them after the slots), and every
            // replica through its first sync: one that never synced does
            // not take over from its primary.
            let formed = self.node_urls().iter().all(|url| {
                Self::ask(url, "INFO").contains("cluster_state:ok")
                    && nodes_flagged(&Self::ask(url, "NODES"), "slave") == 3
                    && (Self::ask_role(url) == "master"
                        || Self::replication(url).contains("master_link_status:up"))
            });
            if formed {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not reach cluster_state:ok within {FORMING:?}");
    }
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|error| panic!("cannot reach the node {url}: {error}"))
}

/// How many nodes of a `CLUSTER NODES` answer carry `flag` (`master`,
/// `slave`, `fail`, …).
pub fn nodes_flagged(nodes: &str, flag: &str) -> usize {
    nodes
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|flags| flags.split(',').any(|each| each == flag))
        })
        .count()
}
