//! What can go wrong talking to NATS.

use std::time::Duration;

use tidings_core::transport::TransportError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A NATS operation failed. Messages never contain the server URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached, or the connection broke.
    #[error("NATS at {url} is unreachable: {reason}")]
    Unreachable {
        /// The server, password redacted.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The server did not answer in time.
    #[error("NATS did not answer within {0:?}")]
    Timeout(Duration),
    /// The server refused the credentials.
    #[error("NATS at {url} refused the credentials: {reason}")]
    AccessRefused {
        /// The server, password redacted.
        url: String,
        /// What the server said.
        reason: String,
    },
    /// The server has no JetStream.
    #[error("NATS at {0} has no JetStream: start it with `-js`")]
    NoJetStream(String),
    /// A stream or consumer exists with settings that cannot be changed to the ones asked
    /// for, or its subjects overlap another stream's.
    #[error("{what}: {reason}")]
    Conflict {
        /// The stream or consumer.
        what: String,
        /// The server's reason.
        reason: String,
    },
    /// The server refused an operation for another reason.
    #[error("NATS refused {operation}: {reason}")]
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
    #[error("invalid NATS configuration: {0}")]
    Config(String),
    /// The transport was closed.
    #[error("the NATS transport is closed")]
    Closed,
}

impl Error {
    /// Whether trying again later may succeed (the server is down or restarting, a
    /// time-out), as opposed to an error that will recur.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Timeout(_))
    }

    pub(crate) fn refused(operation: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Refused {
            operation: operation.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Closed => TransportError::Closed,
            Error::Timeout(after) => TransportError::Timeout(after),
            Error::Unreachable { .. } => TransportError::Connection(Box::new(error)),
            other => TransportError::Refused(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_server_and_time_outs_are_transient() {
        let down = Error::Unreachable {
            url: "nats://127.0.0.1:4222".into(),
            reason: "connection refused".into(),
        };
        assert!(down.is_transient());
        assert!(TransportError::from(down).is_transient());
        assert!(TransportError::from(Error::Timeout(Duration::from_secs(1))).is_transient());
        let conflict = Error::Conflict {
            what: "stream `TIDINGS`".into(),
            reason: "subjects overlap with an existing stream".into(),
        };
        assert!(!conflict.is_transient());
        assert!(matches!(
            TransportError::from(Error::Closed),
            TransportError::Closed
        ));
    }
}
