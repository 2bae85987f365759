//! The line at start: where the service listens, and whether its Redis
//! answered, or what to check when it turned the service down (or what to
//! run, when it holds data in an earlier release's layout).

use crate::config::{LogFormat, RedisSettings};
use crate::logging::json_line;
use crate::store::{Store, StoreError};

/// Prints the line that says the service is up: where it listens, which
/// Redis it uses (never with a password) and whether that Redis answered a
/// PING just now. The service serves either way.
pub async fn announce(listening: std::net::SocketAddr, redis: RedisSettings, format: LogFormat) {
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
        Err(error) => match (error.layout_mismatch(), error.settings_to_check()) {
            (Some(why), _) => {
                format!("turned the service down ({why}); requests answer 503 meanwhile")
            }
            (None, Some(settings)) => format!(
                "turned the service down ({}); check {settings}; requests answer 503 until \
                 it lets the service in",
                why_unanswered(&error, timeout_ms)
            ),
            (None, None) => format!(
                "did not answer ({}); requests answer 503 until it does",
                why_unanswered(&error, timeout_ms)
            ),
        },
    };
    let line = format!("user-accounts listening on http://{listening}; Redis {target} {state}");
    match format {
        LogFormat::Text => println!("{line}"),
        LogFormat::Json => println!("{}", json_line("info", &line)),
    }
}

/// Why Redis did not answer, on one line: what it means, then Redis's own
/// words when they say more.
fn why_unanswered(error: &StoreError, timeout_ms: u128) -> String {
    let why = match error {
        StoreError::Redis(redis) if redis.is_timeout() => {
            format!("no reply within {timeout_ms} ms")
        }
        StoreError::Redis(redis) if redis.is_connection_refusal() => error.summary().into(),
        error => format!("{}: {error}", error.summary()),
    };
    why.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn redis_error(error: impl Into<redis::RedisError>) -> StoreError {
        StoreError::Redis(error.into())
    }

    #[test]
    fn a_refused_connection_is_named_plainly() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            why_unanswered(&redis_error(refused), 2000),
            "Redis refused the connection"
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
            "Redis is not reachable: Redis command failed: Parse error at 1 Unexpected `84`"
        );
    }
}
