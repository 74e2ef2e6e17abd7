//! What can go wrong talking to Redis.

use tidings_core::transport::TransportError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Redis operation failed. Messages never contain the server URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached, the connection broke, or the server is loading.
    #[error("Redis at {url} is unreachable: {reason}")]
    Unreachable {
        /// The server, password redacted.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The server refused the credentials.
    #[error("Redis at {url} refused the credentials: {reason}")]
    AccessRefused {
        /// The server, password redacted.
        url: String,
        /// What the server said.
        reason: String,
    },
    /// The server refused a command (a wrong type under a key, a missing permission).
    #[error("Redis refused {operation}: {reason}")]
    Refused {
        /// What was asked.
        operation: String,
        /// The server's reason.
        reason: String,
    },
    /// A TLS setting is unusable or the certificate was refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// The configuration is invalid.
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    /// The transport was closed.
    #[error("the Redis transport is closed")]
    Closed,
}

impl Error {
    /// Whether trying again later may succeed (the server is down, restarting or loading),
    /// as opposed to an error that will recur.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// Classifies a client error for `operation`, against the server at `url` (redacted).
    pub(crate) fn from_redis(error: &redis::RedisError, url: &str, operation: &str) -> Self {
        use redis::{ErrorKind, ServerErrorKind};
        let passing = |kind| {
            matches!(
                kind,
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        };
        // A transaction or pipeline fails with the errors of its commands: a Redis still
        // loading its append-only file after a restart answers each one with LOADING, which
        // is as passing as when it answers a lone command so.
        let all_passing = || {
            error.clone().into_server_errors().is_some_and(|errors| {
                !errors.is_empty() && errors.iter().all(|(_, e)| e.kind().is_some_and(passing))
            })
        };
        let transient = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || matches!(error.kind(), ErrorKind::Server(kind) if passing(kind))
            || error.code() == Some("BUSY")
            || all_passing();
        if transient {
            let text = error.to_string();
            if text.contains("certificate") {
                return Error::Tls(text);
            }
            return Error::Unreachable {
                url: url.to_owned(),
                reason: format!("{operation}: {text}"),
            };
        }
        match error.kind() {
            ErrorKind::AuthenticationFailed => Error::AccessRefused {
                url: url.to_owned(),
                reason: error.to_string(),
            },
            _ if matches!(error.code(), Some("NOAUTH" | "WRONGPASS")) => Error::AccessRefused {
                url: url.to_owned(),
                reason: error.to_string(),
            },
            ErrorKind::InvalidClientConfig => Error::Config(error.to_string()),
            _ => Error::Refused {
                operation: operation.to_owned(),
                reason: error.to_string(),
            },
        }
    }
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Closed => TransportError::Closed,
            Error::Unreachable { .. } => TransportError::Connection(Box::new(error)),
            other => TransportError::Refused(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_transient_and_a_refusal_is_not() {
        let refused = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        let error = Error::from_redis(&refused, "redis://127.0.0.1:6379/0", "connecting");
        assert!(error.is_transient(), "{error:?}");
        assert!(TransportError::from(error).is_transient());
        let config = Error::Config("bad".into());
        assert!(!config.is_transient());
        assert!(matches!(
            TransportError::from(Error::Closed),
            TransportError::Closed
        ));
    }
}
