//! Liveness and readiness for orchestrators and load balancers.

use std::time::Instant;

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{get, routes, Route, State};
use serde::Serialize;

use crate::store::Store;

pub fn routes() -> Vec<Route> {
    routes![get_live, get_ready]
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
    /// Why Redis is not usable, when it is not.
    reason: Option<String>,
    pool: PoolState,
}

#[derive(Serialize)]
struct PoolState {
    size: u32,
    connections: u32,
    idle: u32,
    in_use: u32,
}

/// 200 when Redis answers a PING within the timeout, 503 otherwise.
#[get("/ready")]
async fn get_ready(store: &State<Store>) -> (Status, Json<Ready>) {
    let started = Instant::now();
    let ping = store.connection().ping().await;
    let state = store.pool_state();
    let pool = PoolState {
        size: store.pool_size(),
        connections: state.connections,
        idle: state.idle_connections,
        in_use: state.connections - state.idle_connections,
    };
    match ping {
        Ok(()) => (
            Status::Ok,
            Json(Ready {
                status: "ready",
                redis_rtt_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                reason: None,
                pool,
            }),
        ),
        Err(error) => (
            Status::ServiceUnavailable,
            Json(Ready {
                status: "unavailable",
                redis_rtt_ms: None,
                reason: Some(error.to_string()),
                pool,
            }),
        ),
    }
}
