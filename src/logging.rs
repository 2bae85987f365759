//! Log lines outside the per-request line: each names its request's id.

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
