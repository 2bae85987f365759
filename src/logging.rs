//! Log lines outside the per-request line, each naming its request's id, the
//! stdout the per-request lines are written to, and the line at start.

use std::io::{self, BufWriter, Stdout, Write};
use std::thread;
use std::time::Duration;

use chrono::SecondsFormat;
use rocket::Request;
use serde_json::json;

use crate::config::{LogFormat, RedisSettings};
use crate::store::{Store, StoreError};

/// The id of the current request: the client's `X-Request-Id` when it is
/// safe to echo, else a fresh UUID.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The request's id; set by [`Telemetry`] before any route runs.
pub fn request_id(request: &Request<'_>) -> String {
    request
        .local_cache(|| RequestId(uuid::Uuid::new_v4().to_string()))
        .0
        .clone()
}

/// Logs a problem met while handling `request`, with its id.
pub fn log_problem(request: &Request<'_>, level: &str, message: &str) {
    let format = request
        .rocket()
        .state::<LogFormat>()
        .copied()
        .unwrap_or(LogFormat::Text);
    let id = request_id(request);
    let line = match format {
        LogFormat::Json => json!({
            "ts": timestamp(),
            "level": level,
            "request_id": id,
            "message": message,
        })
        .to_string(),
        LogFormat::Text => format!(
            "{} {} request_id={id} {message}",
            timestamp(),
            level.to_uppercase()
        ),
    };
    eprintln!("{line}");
}

/// Writes a line about the service's own work (no request's) to stderr,
/// as text or JSON like every other line.
pub fn log_line(format: LogFormat, level: &str, message: &str) {
    let line = match format {
        LogFormat::Json => json!({
            "ts": timestamp(),
            "level": level,
            "message": message,
        })
        .to_string(),
        LogFormat::Text => format!("{} {} {message}", timestamp(), level.to_uppercase()),
    };
    eprintln!("{line}");
}

/// How long request lines may gather before they are written out together.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Stdout for the request log's writer thread (tracing-appender's
/// non-blocking writer). That thread flushes whenever its queue runs empty,
/// which under load is after almost every line: one `write` per request, and
/// one wake-up of the thread by the next request. Waiting [`BATCH_WINDOW`]
/// before each flush lets the lines of many requests go out in one write,
/// while requests queue theirs without waking the thread.
pub struct BatchedStdout(BufWriter<Stdout>);

impl Default for BatchedStdout {
    fn default() -> Self {
        Self(BufWriter::with_capacity(64 * 1024, io::stdout()))
    }
}

impl Write for BatchedStdout {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.0.write(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        thread::sleep(BATCH_WINDOW);
        self.0.flush()
    }
}

/// Prints the line that says the service is up: where it listens, which
/// Redis it uses (never with a password) and whether that Redis answered a
/// PING just now. The service serves either way.
pub async fn announce(listening: std::net::SocketAddr, redis: RedisSettings) {
    let target = redis.target.to_string();
    let timeout_ms = redis.timeout.as_millis();
    let ping = rocket::tokio::task::spawn_blocking(move || {
        let (mut connection, _) = Store::dedicated_connection(&redis)?;
        redis::cmd("PING")
            .exec(&mut connection)
            .map_err(StoreError::from)
    })
    .await
    .map_err(StoreError::from)
    .and_then(|answered| answered);
    let state = match ping {
        Ok(()) => "answered".to_owned(),
        Err(error) => format!(
            "did not answer ({}); requests answer 503 until it does",
            why_unanswered(&error, timeout_ms)
        ),
    };
    println!("user-accounts listening on http://{listening}; Redis {target} {state}");
}

/// Why Redis did not answer, on one line.
fn why_unanswered(error: &StoreError, timeout_ms: u128) -> String {
    let why = match error {
        StoreError::Redis(error) if error.is_connection_refusal() => "connection refused".into(),
        StoreError::Redis(error) if error.is_timeout() => {
            format!("no reply within {timeout_ms} ms")
        }
        StoreError::Redis(error) => error.to_string(),
        error => error.to_string(),
    };
    why.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_error(error: impl Into<redis::RedisError>) -> StoreError {
        StoreError::Redis(error.into())
    }

    #[test]
    fn a_refused_connection_is_named_plainly() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            why_unanswered(&redis_error(refused), 2000),
            "connection refused"
        );
    }

    #[test]
    fn a_timeout_names_the_timeout() {
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            why_unanswered(&redis_error(timeout), 700),
            "no reply within 700 ms"
        );
    }

    #[test]
    fn a_reason_over_several_lines_is_put_on_one() {
        let garbled = io::Error::other("Parse error at 1\nUnexpected `84`\n");
        assert_eq!(
            why_unanswered(&redis_error(garbled), 2000),
            "Parse error at 1 Unexpected `84`"
        );
    }
}
