//! HTTP: routes parse requests into domain types, call the service layer
//! ([`crate::accounts`]), and turn errors into problem responses (see
//! [`problem`]).

mod codes;
mod cors;
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
use rocket::http::{ContentType, Method, Status};
use rocket::request::Request;
use rocket::response::Redirect;
use rocket::{catch, catchers, get, routes, Build, Rocket};

use crate::accounts::{Accounts, Caller};

pub use cors::allow_origins;
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
/// A path that routes take with other methods than the request's is a
/// `405` naming them, not a `404`.
#[catch(default)]
fn default_catcher(status: Status, request: &Request<'_>) -> ApiError {
    match status {
        Status::NotFound => not_routed(
            request.uri().path().as_str(),
            request.method(),
            &methods_for(request),
        ),
        status => ApiError::Unrouted(status),
    }
}

/// The answer to `method` on `path` when no route takes it: `405` naming
/// the methods routes take there (`allowed`), or `404` when none does.
fn not_routed(path: &str, method: Method, allowed: &[Method]) -> ApiError {
    if allowed.is_empty() || allowed.contains(&method) {
        ApiError::NotFound(format!("no resource at {path}"))
    } else {
        let allow: Vec<&str> = allowed.iter().map(|method| method.as_str()).collect();
        ApiError::MethodNotAllowed {
            detail: format!("{path} takes {}", allow.join(", ")),
            allow: allow.join(", "),
        }
    }
}

/// The methods of the routes whose path matches the request's (a `<param>`
/// takes any one segment, a `<path..>` the rest), with `HEAD` beside `GET`,
/// which Rocket answers too, and `OPTIONS` aside (with CORS on, the
/// preflight route takes it on every path); sorted.
fn methods_for(request: &Request<'_>) -> Vec<Method> {
    let wanted: Vec<&str> = request.uri().path().segments().collect();
    let mut methods: Vec<Method> = request
        .rocket()
        .routes()
        .filter(|route| route.method != Method::Options)
        .filter(|route| path_matches(route.uri.path(), &wanted))
        .flat_map(|route| match route.method {
            Method::Get => vec![Method::Get, Method::Head],
            method => vec![method],
        })
        .collect();
    methods.sort_by_key(|method| method.as_str());
    methods.dedup();
    methods
}

fn path_matches(pattern: &str, wanted: &[&str]) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|part| !part.is_empty()).collect();
    for (at, part) in pattern.iter().enumerate() {
        if part.starts_with('<') && part.ends_with("..>") {
            return true;
        }
        match wanted.get(at) {
            Some(segment) if part.starts_with('<') || part == segment => {}
            _ => return false,
        }
    }
    pattern.len() == wanted.len()
}
