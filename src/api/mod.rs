//! HTTP: routes parse requests into domain types, call the service layer
//! ([`crate::accounts`]), and turn errors into problem responses (see
//! [`problem`]).

mod codes;
mod fields;
mod guards;
mod headers;
mod health;
mod json;
mod pages;
mod problem;
mod sessions;
mod telemetry;
mod users;

use rocket::fs::FileServer;
use rocket::http::{ContentType, Status};
use rocket::request::Request;
use rocket::response::Redirect;
use rocket::{catch, catchers, get, routes, Build, Rocket};

use crate::accounts::{Accounts, Caller};

pub use guards::TrustedProxies;
pub use headers::SecurityHeaders;
pub use problem::{ApiError, Problem};
pub use telemetry::Telemetry;

/// Mounts every route and catcher on `rocket`.
pub fn mount(rocket: Rocket<Build>, static_dir: &std::path::Path) -> Rocket<Build> {
    rocket
        .mount("/", routes![front_door, ping])
        .mount("/health", health::routes())
        .mount("/", routes![get_metrics, get_docs])
        .mount("/", pages::routes())
        .mount("/api", routes![get_openapi])
        .mount("/api", users::routes())
        .mount("/api", sessions::routes())
        .mount("/api", codes::routes())
        .mount("/files", FileServer::from(static_dir))
        .register("/", catchers![default_catcher])
}

/// A browser opened on the service finds its documentation.
#[get("/")]
fn front_door() -> Redirect {
    Redirect::to("/docs")
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
fn get_metrics(
    caller: Result<Caller, ApiError>,
    accounts: &Accounts,
) -> Result<(ContentType, String), ApiError> {
    let metrics = accounts.render_metrics(&caller?)?;
    let content_type = ContentType::new("text", "plain").with_params([("version", "0.0.4")]);
    Ok((content_type, metrics))
}

/// Rocket's own errors (no route, an unreadable request) as problem details.
#[catch(default)]
fn default_catcher(status: Status, request: &Request<'_>) -> ApiError {
    match status {
        Status::NotFound => ApiError::NotFound(format!("no resource at {}", request.uri().path())),
        status => ApiError::Unrouted(status),
    }
}
