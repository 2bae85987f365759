//! The headers every answer carries for its safety: no cache keeps an API
//! answer (it may hold a user, a token, a key or a code), no page sends its
//! address on as a referrer, and browsers are told to use HTTPS only when
//! the service is published on it.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Request, Response};

/// One year: browsers keep to HTTPS that long after an answer.
const HSTS: &str = "max-age=31536000";

pub struct SecurityHeaders {
    /// Whether `PUBLIC_URL` is `https://`.
    pub https: bool,
}

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info {
            name: "security headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        if request.uri().path().starts_with("/api/") {
            response.set_header(Header::new("Cache-Control", "no-store"));
        }
        response.set_header(Header::new("Referrer-Policy", "no-referrer"));
        if self.https {
            response.set_header(Header::new("Strict-Transport-Security", HSTS));
        }
    }
}
