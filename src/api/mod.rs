//! HTTP: routes parse requests into domain types, call the accounts or the
//! store, and turn errors into problem responses (see [`problem`]).

mod auth;
mod health;
mod json;
mod newline;
mod problem;
mod sessions;
mod telemetry;
mod users;

use rocket::fs::FileServer;
use std::sync::Arc;

use rocket::http::{ContentType, Status};
use rocket::request::Request;
use rocket::{catch, catchers, get, routes, Build, Rocket, State};

use crate::metrics::Metrics;
use crate::store::Store;

pub use problem::{ApiError, Problem};
pub use telemetry::Telemetry;

/// Mounts every route and catcher on `rocket`, and ends every JSON body
/// with a newline.
pub fn mount(rocket: Rocket<Build>, static_dir: &std::path::Path) -> Rocket<Build> {
    rocket
        .mount("/", routes![ping])
        .mount("/health", health::routes())
        .mount("/", routes![get_metrics, get_docs])
        .mount("/api", routes![get_openapi])
        .mount("/api", users::routes())
        .mount("/api", sessions::routes())
        .mount("/files", FileServer::from(static_dir))
        .register("/", catchers![default_catcher])
        .attach(newline::JsonNewline)
}

#[get("/ping")]
fn ping() -> &'static str {
    "PONG!"
}

/// The OpenAPI 3.1 document of the whole API.
#[get("/openapi.json")]
fn get_openapi() -> (ContentType, &'static str) {
    (ContentType::JSON, include_str!("openapi.json"))
}

/// The OpenAPI document rendered by the vendored Redoc bundle.
#[get("/docs")]
fn get_docs() -> (ContentType, &'static str) {
    (ContentType::HTML, include_str!("docs.html"))
}

/// Prometheus text format, version 0.0.4.
#[get("/metrics")]
fn get_metrics(metrics: &State<Arc<Metrics>>, store: &State<Store>) -> (ContentType, String) {
    let pool = store.pool_state();
    metrics.pool_size.set(i64::from(store.pool_size()));
    metrics.pool_connections.set(i64::from(pool.connections));
    metrics.pool_idle.set(i64::from(pool.idle_connections));
    let content_type = ContentType::new("text", "plain").with_params([("version", "0.0.4")]);
    (content_type, metrics.render())
}

/// Rocket's own errors (no route, bad body, failed guards) as problem details.
#[catch(default)]
fn default_catcher(status: Status, request: &Request<'_>) -> Problem {
    let detail = match status.code {
        404 => format!("no resource at {}", request.uri().path()),
        401 => "user not authenticated".to_owned(),
        503 => "the user store is unavailable; retry later".to_owned(),
        _ => status.reason_lossy().to_owned(),
    };
    let mut problem = Problem::new(status, detail);
    if status == Status::ServiceUnavailable {
        problem.problem_type = "/problems/unavailable";
    }
    problem
}
