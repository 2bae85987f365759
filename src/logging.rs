//! Log lines outside the per-request line, each naming its request's id,
//! and the stdout the per-request lines are written to.

use std::io::{self, BufWriter, Stdout, Write};
use std::thread;
use std::time::Duration;

use chrono::SecondsFormat;
use rocket::Request;
use serde_json::json;

use crate::config::LogFormat;

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
        LogFormat::Json => json_line(level, message),
        LogFormat::Text => format!("{} {} {message}", timestamp(), level.to_uppercase()),
    };
    eprintln!("{line}");
}

/// A line about the service's own work as one JSON object.
pub fn json_line(level: &str, message: &str) -> String {
    json!({
        "ts": timestamp(),
        "level": level,
        "message": message,
    })
    .to_string()
}

/// Milliseconds of `elapsed`, rounded to the microsecond: a log line shows
/// `0.091`, not `0.09115000000000001`.
pub fn millis_to_the_microsecond(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
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
