//! What can go wrong talking to RabbitMQ.

use std::time::Duration;

use tidings_core::transport::TransportError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// AMQP reply codes that need a typed error.
const CONNECTION_FORCED: u16 = 320;
const ACCESS_REFUSED: u16 = 403;
const NOT_FOUND: u16 = 404;
const PRECONDITION_FAILED: u16 = 406;

/// A RabbitMQ operation failed. Messages never contain the broker URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached, or the connection or channel broke.
    #[error("RabbitMQ at {url} is unreachable: {reason}")]
    Unreachable {
        /// The broker, password redacted.
        url: String,
        /// What the client library said.
        reason: String,
    },
    /// The broker did not answer in time.
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
    /// The broker refused the credentials or the virtual host.
    #[error("RabbitMQ at {url} refused access: {reason}")]
    AccessRefused {
        /// The broker, password redacted.
        url: String,
        /// The broker's reply text.
        reason: String,
    },
    /// Something exists on the broker with other settings than the ones asked for.
    #[error(
        "{what} already exists on the broker with other settings ({reason}); change the \
         configuration to match it, or delete it first"
    )]
    Conflict {
        /// The exchange or queue.
        what: String,
        /// The broker's reply text, naming the argument that differs.
        reason: String,
    },
    /// A queue or exchange that must exist does not.
    #[error("{0} does not exist on the broker")]
    NotFound(String),
    /// The broker refused an operation for another reason.
    #[error("RabbitMQ refused {operation}: {code} {reason}")]
    Refused {
        /// What was asked.
        operation: String,
        /// The AMQP reply code.
        code: u16,
        /// The broker's reply text.
        reason: String,
    },
    /// A TLS setting is unusable.
    #[error("TLS configuration: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("invalid RabbitMQ configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The topology file could not be read.
    #[error("topology file: {0}")]
    Topology(String),
    /// The transport was closed.
    #[error("the RabbitMQ transport is closed")]
    Closed,
}

impl Error {
    /// Whether trying again later may succeed (the broker is down or restarting, a time-out),
    /// as opposed to an error that will recur.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Timeout(_))
    }

    /// Classifies an error of the client library for `operation`, against the broker at `url`
    /// (already redacted).
    pub(crate) fn from_lapin(error: &lapin::Error, url: &str, operation: &str) -> Self {
        use lapin::ErrorKind;
        match error.kind() {
            ErrorKind::ProtocolError(amqp) => {
                let (code, reason) = (amqp.get_id(), amqp.get_message().to_string());
                match code {
                    CONNECTION_FORCED => Error::Unreachable {
                        url: url.to_owned(),
                        reason: format!("the broker closed the connection: {reason}"),
                    },
                    ACCESS_REFUSED => Error::AccessRefused {
                        url: url.to_owned(),
                        reason,
                    },
                    PRECONDITION_FAILED if operation.starts_with("declaring") => Error::Conflict {
                        what: operation.trim_start_matches("declaring ").to_owned(),
                        reason,
                    },
                    NOT_FOUND => Error::NotFound(format!("{operation}: {reason}")),
                    _ if amqp_hard(amqp) => Error::Unreachable {
                        url: url.to_owned(),
                        reason: format!("{code} {reason}"),
                    },
                    _ => Error::Refused {
                        operation: operation.to_owned(),
                        code,
                        reason,
                    },
                }
            }
            ErrorKind::IOError(io) if is_certificate_problem(io) => Error::Tls {
                reason: io.to_string(),
            },
            // IO errors, missing heartbeats and a channel or connection that is no longer
            // open all mean the same to a caller: the broker is out of reach for now.
            _ => Error::Unreachable {
                url: url.to_owned(),
                reason: format!("{operation}: {error}"),
            },
        }
    }
}

fn amqp_hard(error: &lapin::protocol::AMQPError) -> bool {
    matches!(error.kind(), lapin::protocol::AMQPErrorKind::Hard(_))
}

/// TLS failures that retrying will not fix: an untrusted or mismatched certificate.
fn is_certificate_problem(io: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    if !matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::Other) {
        return false;
    }
    let text = io.to_string().to_ascii_lowercase();
    text.contains("certificate") || text.contains("tls") || text.contains("pem")
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Closed => TransportError::Closed,
            Error::Timeout(after) => TransportError::Timeout(after),
            Error::Unreachable { .. } => TransportError::Connection(Box::new(error)),
            Error::NotFound(what) => TransportError::NotFound(what),
            other => TransportError::Refused(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_broker_and_time_outs_are_transient() {
        let unreachable = Error::Unreachable {
            url: "amqp://guest:***@127.0.0.1:5672/%2f".into(),
            reason: "connection refused".into(),
        };
        assert!(unreachable.is_transient());
        assert!(TransportError::from(unreachable).is_transient());
        assert!(Error::Timeout(Duration::from_secs(1)).is_transient());
        let conflict = Error::Conflict {
            what: "queue `billing`".into(),
            reason: "inequivalent arg 'x-queue-type'".into(),
        };
        assert!(!conflict.is_transient());
        assert!(matches!(
            TransportError::from(conflict),
            TransportError::Refused(text) if text.contains("x-queue-type")
        ));
    }
}
