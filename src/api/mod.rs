//! HTTP: routes parse requests into domain types, call the accounts or the
//! store, and turn errors into problem responses (see [`problem`]).

mod auth;
mod health;
mod json;
mod problem;
mod sessions;
mod users;

use rocket::fs::FileServer;
use rocket::http::Status;
use rocket::request::Request;
use rocket::{catch, catchers, get, routes, Build, Rocket};

pub use problem::{ApiError, Problem};

/// Mounts every route and catcher on `rocket`.
pub fn mount(rocket: Rocket<Build>, static_dir: &std::path::Path) -> Rocket<Build> {
    rocket
        .mount("/", routes![ping])
        .mount("/health", health::routes())
        .mount("/api", users::routes())
        .mount("/api", sessions::routes())
        .mount("/files", FileServer::from(static_dir))
        .register("/", catchers![default_catcher])
}

#[get("/ping")]
fn ping() -> &'static str {
    "PONG!"
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
