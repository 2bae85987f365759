//! Liveness and readiness for orchestrators and load balancers; `/health`
//! answers as readiness does.

use rocket::http::Status;
use rocket::{get, routes, Route};
use serde::Serialize;

use super::json::Json;
use crate::accounts::{Accounts, Readiness};
use crate::store::ClusterHealth;

pub fn routes() -> Vec<Route> {
    routes![get_live, get_ready, get_health]
}

#[derive(Serialize)]
struct Live {
    status: &'static str,
}

/// 200 while the process serves requests; it never touches Redis.
#[get("/live")]
fn get_live() -> Json<Live> {
    Json(Live { status: "live" })
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
    /// PING round trip, when Redis answered.
    redis_rtt_ms: Option<f64>,
    /// The component that is not usable, when one is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<&'static str>,
    /// Why it is not, without addresses or raw error text.
    reason: Option<&'static str>,
    /// On a Redis Cluster: `ok` or `fail`, as the cluster says.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_state: Option<&'static str>,
    /// On a Redis Cluster: the slots no reachable primary serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    slots_without_primary: Option<u32>,
    pool: PoolView,
}

#[derive(Serialize)]
struct PoolView {
    size: u32,
    connections: u32,
    idle: u32,
    in_use: u32,
}

/// `/health`: the same as `/health/ready`, for whoever looks there first.
#[get("/")]
async fn get_health(accounts: &Accounts) -> (Status, Json<Ready>) {
    get_ready(accounts).await
}

/// 200 when Redis answers a PING within the timeout, 503 otherwise.
#[get("/ready")]
async fn get_ready(accounts: &Accounts) -> (Status, Json<Ready>) {
    let readiness = accounts.readiness().await;
    let figures = accounts.pool_figures();
    let pool = PoolView {
        size: figures.size,
        connections: figures.connections,
        idle: figures.idle,
        in_use: figures.connections - figures.idle,
    };
    let cluster_state = |cluster: Option<ClusterHealth>| {
        cluster.map(|cluster| if cluster.ok { "ok" } else { "fail" })
    };
    match readiness {
        Readiness::Ready {
            round_trip,
            cluster,
        } => (
            Status::Ok,
            Json(Ready {
                status: "ready",
                redis_rtt_ms: Some(round_trip.as_secs_f64() * 1000.0),
                component: None,
                reason: None,
                cluster_state: cluster_state(cluster),
                slots_without_primary: cluster.map(|cluster| cluster.slots_without_primary),
                pool,
            }),
        ),
        Readiness::Unavailable {
            component,
            reason,
            cluster,
        } => (
            Status::ServiceUnavailable,
            Json(Ready {
                status: "unavailable",
                redis_rtt_ms: None,
                component: Some(component),
                reason: Some(reason),
                cluster_state: cluster_state(cluster),
                slots_without_primary: cluster.map(|cluster| cluster.slots_without_primary),
                pool,
            }),
        ),
    }
}
