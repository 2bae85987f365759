//! Browsers on other origins. With `CORS_ALLOWED_ORIGINS` set, a page on a
//! listed origin may call the API: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) answers `204` with the methods the path
//! takes and the request headers the API reads, and every answer to a listed
//! origin names that origin, never `*`. No cookie or other ambient
//! credential is allowed (`Access-Control-Allow-Credentials` is never sent):
//! the API takes its credentials in `Authorization`, which a page must send
//! itself. A preflight from any other origin answers `403`; other requests
//! are served as always, without CORS headers, so the browser keeps their
//! answers from the page.
//!
//! Hand-written, as Vaultwarden does: `rocket_cors`, the crate for this,
//! refuses every request from an unlisted origin by routing it to a `GET`
//! route of its own, which logs a preflight as a `GET` of another path and
//! answers a bare `403`.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Method, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, Responder, Response};
use rocket::{options, routes, Build, Rocket};

use super::problem::ApiError;
use super::{methods_for, not_routed};

/// The request headers a page may send: the API reads no others.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, X-Request-Id";

/// The answer headers a page may read, besides those every browser shows.
const EXPOSED_HEADERS: &str = "Location, Retry-After, WWW-Authenticate, X-Request-Id";

/// How long a browser may keep a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The origins whose pages may call the API, as browsers send them in
/// `Origin`.
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|allowed| allowed == origin)
    }
}

/// `rocket` answering the preflights of pages on `origins`, and naming
/// them in its answers; unchanged when there is none.
pub fn allow_origins(rocket: Rocket<Build>, origins: Vec<String>) -> Rocket<Build> {
    if origins.is_empty() {
        return rocket;
    }
    rocket
        .manage(AllowedOrigins(origins))
        .mount("/", routes![preflight])
        .attach(CorsHeaders)
}

/// What a preflight asks.
struct PreflightAsk {
    origin: Option<String>,
    asks_method: bool,
    path: String,
    /// The methods the path takes, `OPTIONS` aside.
    methods: Vec<Method>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PreflightAsk {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let headers = request.headers();
        request::Outcome::Success(Self {
            origin: headers.get_one("Origin").map(str::to_owned),
            asks_method: headers.contains("Access-Control-Request-Method"),
            path: request.uri().path().to_string(),
            methods: methods_for(request),
        })
    }
}

/// A preflight's answer: `204` naming the origin, the methods and headers.
struct Preflight {
    origin: String,
    methods: String,
}

impl<'r> Responder<'r, 'static> for Preflight {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .status(Status::NoContent)
            .header(Header::new("Access-Control-Allow-Origin", self.origin))
            .header(Header::new("Access-Control-Allow-Methods", self.methods))
            .header(Header::new("Access-Control-Allow-Headers", ALLOWED_HEADERS))
            .header(Header::new("Access-Control-Max-Age", PREFLIGHT_MAX_AGE))
            .ok()
    }
}

/// Every `OPTIONS`: a preflight from a listed origin to a path of the API
/// is answered; from another origin, refused; anything else answers as
/// without CORS (`405` naming the methods, or `404`).
#[options("/<_..>", rank = 100)]
fn preflight(
    ask: PreflightAsk,
    allowed: &rocket::State<AllowedOrigins>,
) -> Result<Preflight, ApiError> {
    let (Some(origin), true, false) = (ask.origin, ask.asks_method, ask.methods.is_empty()) else {
        return Err(not_routed(&ask.path, Method::Options, &ask.methods));
    };
    if !allowed.allows(&origin) {
        return Err(ApiError::Forbidden {
            detail: format!(
                "pages on {origin} may not call this API: the origin is not in \
                 CORS_ALLOWED_ORIGINS"
            ),
            problem_type: "/problems/origin-not-allowed",
        });
    }
    let methods: Vec<&str> = ask.methods.iter().map(|method| method.as_str()).collect();
    Ok(Preflight {
        origin,
        methods: methods.join(", "),
    })
}

/// Names a listed origin in every answer to it, with the headers its page
/// may read; and tells caches that answers differ by origin.
struct CorsHeaders;

#[rocket::async_trait]
impl Fairing for CorsHeaders {
    fn info(&self) -> Info {
        Info {
            name: "CORS",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        response.adjoin_header(Header::new("Vary", "Origin"));
        let Some(origin) = request.headers().get_one("Origin") else {
            return;
        };
        let listed = request
            .rocket()
            .state::<AllowedOrigins>()
            .is_some_and(|allowed| allowed.allows(origin));
        if listed && request.method() != Method::Options {
            response.set_header(Header::new(
                "Access-Control-Allow-Origin",
                origin.to_owned(),
            ));
            response.set_header(Header::new(
                "Access-Control-Expose-Headers",
                EXPOSED_HEADERS,
            ));
        }
    }
}
