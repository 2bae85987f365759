//! The store's one error type.

use redis::{ErrorKind, RedisError, ServerErrorKind};
use rocket::tokio::task;

use crate::store::plumbing::layout_check::LAYOUT_MISMATCH;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no Redis connection within the timeout: {0}")]
    Unavailable(#[from] r2d2::Error),
    #[error("every pooled Redis connection stayed in use through the timeout")]
    PoolBusy,
    #[error("no Redis connection for reads: the attempt to open one just failed")]
    NotConnected,
    #[error("Redis command failed: {0}")]
    Redis(#[from] RedisError),
    #[error("a watched key kept changing through {0} attempts")]
    Contention(u32),
    #[error("{confirmed} of the {wanted} replicas REDIS_WAIT_REPLICAS asks for confirmed a write in time")]
    NotReplicated { wanted: u32, confirmed: u32 },
    #[error("stored record {key} is malformed: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("email already in use")]
    EmailInUse,
    #[error("a Redis task did not finish: {0}")]
    Task(#[from] task::JoinError),
    #[error("refused to store {0}")]
    Invalid(&'static str),
}

/// Error codes of a Redis that refuses this client: a wrong or missing
/// password, or an ACL user without the rights it needs.
const REFUSED_CODES: [&str; 3] = ["WRONGPASS", "NOAUTH", "NOPERM"];

impl StoreError {
    /// Whether the failure is Redis being out of reach, overloaded or
    /// refusing this client, which clients should retry later (and operators
    /// fix), rather than a fault of the service.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_)
            | Self::PoolBusy
            | Self::NotConnected
            | Self::Contention(_)
            | Self::NotReplicated { .. } => true,
            Self::Redis(error) => {
                error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || is_turned_down(error)
                    || matches!(
                        error.kind(),
                        ErrorKind::AuthenticationFailed
                            | ErrorKind::Server(ServerErrorKind::BusyLoading)
                            | ErrorKind::Server(ServerErrorKind::TryAgain)
                            | ErrorKind::Server(ServerErrorKind::MasterDown)
                            | ErrorKind::Server(ServerErrorKind::ReadOnly)
                            | ErrorKind::Server(ServerErrorKind::NoPerm)
                    )
            }
            Self::Corrupt { .. } | Self::EmailInUse | Self::Invalid(_) | Self::Task(_) => false,
        }
    }

    /// What went wrong, in words fit for anyone to read: no address, no
    /// raw error text.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::Unavailable(_) | Self::PoolBusy => "Redis did not answer within the timeout",
            Self::NotConnected => "Redis is not reachable",
            Self::Contention(_) => "Redis keys kept changing under concurrent writes",
            Self::NotReplicated { .. } => "too few Redis replicas confirmed a write in time",
            Self::Redis(error) if error.is_connection_refusal() => "Redis refused the connection",
            Self::Redis(error) if is_layout_mismatch(error) => {
                "Redis holds data in another layout than this release's"
            }
            Self::Redis(error) if lacks_permission(error) => {
                "Redis refused a command to the configured ACL user"
            }
            Self::Redis(error) if refuses_client(error) => "Redis refused the credentials",
            Self::Redis(error) if names_no_database(error) => {
                "Redis has no database of the configured number"
            }
            Self::Redis(error) if error.is_timeout() => "Redis did not answer within the timeout",
            Self::Redis(error) => match error.kind() {
                ErrorKind::AuthenticationFailed => "Redis refused the credentials",
                ErrorKind::Server(ServerErrorKind::BusyLoading) => "Redis is loading its data",
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown) => {
                    "Redis is not a writable primary"
                }
                _ if self.is_unavailable() => "Redis is not reachable",
                _ => "Redis failed a command",
            },
            Self::Corrupt { .. } => "Redis holds a malformed record",
            Self::EmailInUse | Self::Invalid(_) | Self::Task(_) => "the store failed",
        }
    }

    /// The settings to check when Redis turned the service down, for the
    /// operator: `None` for any other failure.
    pub fn settings_to_check(&self) -> Option<&'static str> {
        let Self::Redis(error) = self else {
            return None;
        };
        if error.is_connection_refusal() {
            Some("the address in REDIS_URL (or REDIS_ADDRESS and REDIS_PORT, or REDIS_SENTINELS)")
        } else if lacks_permission(error) {
            Some("the ACL user's rights in Redis, or the user in REDIS_URL (or REDIS_USERNAME)")
        } else if refuses_client(error) || error.kind() == ErrorKind::AuthenticationFailed {
            Some("the user and password in REDIS_URL (or REDIS_USERNAME and REDIS_PASSWORD)")
        } else if names_no_database(error) {
            Some("the database number at the end of REDIS_URL (or REDIS_DB)")
        } else {
            None
        }
    }

    /// Why Redis holds data this release does not run on, and what to do:
    /// `None` for any other failure.
    pub fn layout_mismatch(&self) -> Option<&str> {
        match self {
            Self::Redis(error) if is_layout_mismatch(error) => error.detail(),
            _ => None,
        }
    }

    /// Whether the connection the error came from must not be used again:
    /// Redis out of reach, a timeout (a reply may still be on its way), a
    /// server that no longer takes writes (a primary demoted by a failover),
    /// or one that no longer accepts the connection's credentials.
    pub(in crate::store) fn breaks_connection(&self) -> bool {
        matches!(self, Self::Redis(_)) && self.is_unavailable()
    }
}

/// Whether Redis turned this client down in a way that another attempt
/// right away would not change: nothing listens at its address, it refuses
/// the credentials or the ACL user's rights, it has no such database, or
/// its keys are in another layout.
pub(in crate::store) fn is_turned_down(error: &RedisError) -> bool {
    error.is_connection_refusal()
        || refuses_client(error)
        || error.kind() == ErrorKind::AuthenticationFailed
        || names_no_database(error)
        || is_layout_mismatch(error)
}

fn is_layout_mismatch(error: &RedisError) -> bool {
    error.code() == Some(LAYOUT_MISMATCH)
}

/// Whether Redis refused this client, in a reply of its own or in any reply
/// of a pipeline.
fn refuses_client(error: &RedisError) -> bool {
    replies_with(error, |code| REFUSED_CODES.contains(&code))
}

/// Whether Redis refused a command to this ACL user.
fn lacks_permission(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || replies_with(error, |code| code == "NOPERM")
}

fn replies_with(error: &RedisError, code_matches: impl Fn(&str) -> bool) -> bool {
    error.code().is_some_and(&code_matches)
        || error
            .clone()
            .into_server_errors()
            .is_some_and(|replies| replies.iter().any(|(_, reply)| code_matches(reply.code())))
}

/// Whether the error is Redis's answer to `SELECT` of a database it does
/// not have (`REDIS_DB`, or the number at the end of `REDIS_URL`).
fn names_no_database(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.contains("DB index is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_error(kind: ServerErrorKind) -> StoreError {
        StoreError::Redis(RedisError::from((ErrorKind::Server(kind), "reply")))
    }

    #[test]
    fn a_failed_or_demoted_connection_is_not_reused() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(StoreError::Redis(RedisError::from(reset)).breaks_connection());
        let timeout = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        assert!(StoreError::Redis(RedisError::from(timeout)).breaks_connection());
        assert!(redis_error(ServerErrorKind::ReadOnly).breaks_connection());
        assert!(redis_error(ServerErrorKind::MasterDown).breaks_connection());
    }

    #[test]
    fn a_connection_that_merely_lost_a_race_is_reused() {
        assert!(!StoreError::Contention(32).breaks_connection());
        assert!(!StoreError::EmailInUse.breaks_connection());
        assert!(!redis_error(ServerErrorKind::ResponseError).breaks_connection());
        assert!(!redis_error(ServerErrorKind::ExecAbort).breaks_connection());
    }

    #[test]
    fn a_redis_that_refuses_the_credentials_is_unavailable() {
        let refused = RedisError::from((ErrorKind::AuthenticationFailed, "WRONGPASS"));
        assert!(StoreError::Redis(refused).is_unavailable());
        assert!(redis_error(ServerErrorKind::NoPerm).is_unavailable());
    }
}
