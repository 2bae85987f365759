//! The Redis Cluster the tests run against: what the harness starts.

mod common;

use common::cluster::{nodes_flagged, RedisCluster};

#[test]
fn the_test_cluster_serves_every_slot_from_three_primaries_each_with_a_replica() {
    let cluster = RedisCluster::start();
    let seed = &cluster.node_urls()[0];
    let info = RedisCluster::ask(seed, "INFO");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_slots_ok:16384"), "{info}");
    let nodes = RedisCluster::ask(seed, "NODES");
    assert_eq!(
        (
            nodes_flagged(&nodes, "master"),
            nodes_flagged(&nodes, "slave")
        ),
        (3, 3),
        "{nodes}"
    );
}
