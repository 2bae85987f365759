//! The service's own state, for health checks and metrics.

use std::time::{Duration, Instant};

use super::{AccountError, Accounts, Caller};
use crate::store::ClusterHealth;

/// Whether Redis answered, and how fast.
pub enum Readiness {
    Ready {
        round_trip: Duration,
        /// On a cluster, its state.
        cluster: Option<ClusterHealth>,
    },
    /// Which component failed and how, in words fit for anyone to read:
    /// no address, no raw error text.
    Unavailable {
        component: &'static str,
        reason: &'static str,
        cluster: Option<ClusterHealth>,
    },
}

/// The write pool at one moment.
pub struct PoolFigures {
    pub size: u32,
    pub connections: u32,
    pub idle: u32,
}

impl Accounts {
    /// Whether Redis answers a PING within the timeout; on a cluster,
    /// whether every slot has a primary.
    pub async fn readiness(&self) -> Readiness {
        let started = Instant::now();
        match self.store.connection().health().await {
            Ok(Some(cluster)) if !cluster.ok => Readiness::Unavailable {
                component: "redis",
                reason: "the Redis Cluster has slots without a reachable primary",
                cluster: Some(cluster),
            },
            Ok(cluster) => Readiness::Ready {
                round_trip: started.elapsed(),
                cluster,
            },
            Err(error) => Readiness::Unavailable {
                component: "redis",
                reason: error.summary(),
                cluster: None,
            },
        }
    }

    /// The pool's figures, also set on the metrics' gauges.
    pub fn pool_figures(&self) -> PoolFigures {
        let status = self.store.pool_status();
        self.metrics.pool_size.set(i64::from(status.size));
        self.metrics
            .pool_connections
            .set(i64::from(status.connections));
        self.metrics.pool_idle.set(i64::from(status.idle));
        PoolFigures {
            size: status.size,
            connections: status.connections,
            idle: status.idle,
        }
    }

    /// Every metric in the Prometheus text format, pool figures up to
    /// date: for admin and metrics keys.
    pub fn render_metrics(&self, caller: &Caller) -> Result<String, AccountError> {
        caller.require_metrics_reader()?;
        self.pool_figures();
        Ok(self.metrics.render())
    }
}
