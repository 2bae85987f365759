//! Request ids, one log line per request, and request metrics.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Data, Request, Response};
use serde_json::json;
use tracing_appender::non_blocking::NonBlocking;

use crate::config::LogFormat;
use crate::logging::{request_id, timestamp, RequestId};
use crate::metrics::Metrics;

pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

struct Started(Instant);

/// At most this long, and only these characters: an id goes into a header
/// and log lines, so nothing in it may split either.
const MAX_ID_LEN: usize = 128;

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte))
}

pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub log_format: LogFormat,
    /// Where the request lines go: a thread of their own writes them to
    /// stdout (or, in tests, to memory), so no request waits for a write or
    /// for the stdout lock.
    pub access_log: NonBlocking,
}

#[rocket::async_trait]
impl Fairing for Telemetry {
    fn info(&self) -> Info {
        Info {
            name: "request ids, logs and metrics",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        let id = request
            .headers()
            .get_one(REQUEST_ID_HEADER)
            .filter(|id| acceptable(id))
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        request.local_cache(|| RequestId(id));
        request.local_cache(|| Started(Instant::now()));
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let id = request_id(request);
        response.set_header(Header::new(REQUEST_ID_HEADER, id.clone()));
        let elapsed = request.local_cache(|| Started(Instant::now())).0.elapsed();
        // The route's template, never the path: paths may hold emails.
        let route = request
            .route()
            .map_or_else(|| "unmatched".to_owned(), |route| route.uri.to_string());
        let method = request.method().as_str();
        let status = response.status().code;
        self.metrics
            .requests
            .with_label_values(&[route.as_str(), method, &status.to_string()])
            .inc();
        self.metrics
            .request_seconds
            .with_label_values(&[route.as_str(), method])
            .observe(elapsed.as_secs_f64());
        let latency_ms = crate::logging::millis_to_the_microsecond(elapsed);
        let mut line = match self.log_format {
            LogFormat::Json => json!({
                "ts": timestamp(),
                "level": "info",
                "request_id": id,
                "method": method,
                "route": route,
                "status": status,
                "latency_ms": latency_ms,
            })
            .to_string(),
            LogFormat::Text => format!(
                "{} INFO request_id={id} method={method} route={route} status={status} latency_ms={latency_ms:.3}",
                timestamp()
            ),
        };
        line.push('\n');
        // One write per line keeps lines whole. It fails only once the
        // writer thread is gone, at shutdown, when there is no one to tell.
        let _ = self.access_log.clone().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn ids_that_could_split_a_header_or_a_log_line_are_refused() {
        assert!(acceptable("abc-123_DEF.4:5"));
        for bad in ["", "a b", "a\r\nSet-Cookie: x=1", "a\"b", &"x".repeat(129)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }
}
