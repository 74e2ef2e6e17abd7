use std::time::Duration;

use crate::codec::EncodeError;
use crate::outcome::BoxError;

/// A transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport (or this publisher) was closed.
    #[error("transport is closed")]
    Closed,
    /// The broker could not be reached, or the connection dropped.
    #[error("broker unreachable: {0}")]
    Connection(#[source] BoxError),
    /// The broker did not answer in time.
    #[error("broker did not answer within {0:?}")]
    Timeout(Duration),
    /// No queue or subscription is bound to the topic, and the publisher requires one.
    #[error("no subscription is bound to topic `{topic}`")]
    Unroutable {
        /// The topic.
        topic: String,
    },
    /// The message is larger than the broker accepts.
    #[error("message of {size} bytes exceeds the broker's limit of {limit} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The broker refused the operation (a nack, a conflicting declaration, a permission).
    #[error("broker refused: {0}")]
    Refused(String),
    /// A subscription, dead letter or other named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The envelope could not be encoded for the wire.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Anything else the adapter reports.
    #[error(transparent)]
    Other(BoxError),
}

impl TransportError {
    /// Whether trying again later may succeed (connection loss, time-outs), as opposed to an
    /// error that will recur (refusal, size, encoding). Retry code relies on this, never on
    /// error text.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Connection(_) | TransportError::Timeout(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_and_timeouts_are_transient() {
        assert!(TransportError::Connection("reset".into()).is_transient());
        assert!(TransportError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(!TransportError::Closed.is_transient());
        assert!(!TransportError::Refused("nack".into()).is_transient());
        assert!(!TransportError::TooLarge { size: 2, limit: 1 }.is_transient());
    }
}
