//! The one place where a handler's result, a panic or a time-out becomes a [`Disposition`],
//! and where a disposition becomes what the transport is told ([`Settlement`]).

use std::any::Any;
use std::time::Duration;

use tidings_core::dead_letter::{DeadLetter, Reason, ReasonKind};
use tidings_core::event::VersionError;
use tidings_core::outcome::{Failure, HandlerError};

/// What should happen to a delivery, as decided by the handler and the middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Handled: acknowledge.
    Ack,
    /// Failed transiently: redeliver after `after` (the retry layer fills it in from the
    /// policy when the handler did not ask for a delay).
    Retry {
        /// Delay before redelivery.
        after: Option<Duration>,
        /// The error, for the failure history.
        error: String,
    },
    /// Failed for good: dead-letter.
    Reject(Reason),
}

impl Disposition {
    /// Short label for logs and metrics: `ack`, `retry`, `dead_letter`.
    pub fn label(&self) -> &'static str {
        match self {
            Disposition::Ack => "ack",
            Disposition::Retry { .. } => "retry",
            Disposition::Reject(_) => "dead_letter",
        }
    }
}

/// What the transport is told to do with a delivery.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Settlement {
    /// Acknowledge.
    Ack,
    /// Redeliver after `after`.
    Retry {
        /// The delay.
        after: Duration,
        /// The error.
        error: String,
    },
    /// Move to the dead-letter queue with this record.
    DeadLetter(Box<DeadLetter>),
}

impl Settlement {
    /// Short label for logs and metrics: `ack`, `retry`, `dead_letter`.
    pub fn label(&self) -> &'static str {
        match self {
            Settlement::Ack => "ack",
            Settlement::Retry { .. } => "retry",
            Settlement::DeadLetter(_) => "dead_letter",
        }
    }
}

/// A handler's result.
pub(crate) fn result(result: Result<(), HandlerError>) -> Disposition {
    match result {
        Ok(()) => Disposition::Ack,
        Err(error) => match error.failure() {
            Failure::Transient { after } => Disposition::Retry {
                after,
                error: error.message(),
            },
            Failure::Permanent => {
                Disposition::Reject(Reason::new(error.reason_kind(), error.message()))
            }
        },
    }
}

/// A handler that panicked: transient, since a panic is most often a bug met by one input
/// under one condition, and the retry policy bounds how often it recurs.
pub(crate) fn panic(payload: Box<dyn Any + Send>) -> Disposition {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    Disposition::Retry {
        after: None,
        error: format!("handler panicked: {message}"),
    }
}

/// A handler that ran out of time: transient.
pub(crate) fn timeout(limit: Duration) -> Disposition {
    Disposition::Retry {
        after: None,
        error: format!("handler timed out after {limit:?}"),
    }
}

/// Data the handler's type cannot read: permanent, retrying cannot fix it. A version it does
/// not read is an unsupported version; anything else a schema violation.
/// Data that breaks its type's JSON Schema: dead-lettered at once.
#[cfg(feature = "validate")]
pub(crate) fn schema_violation(message: String) -> Disposition {
    Disposition::Reject(Reason::new(ReasonKind::SchemaViolation, message))
}

pub(crate) fn undecodable_data(error: &VersionError) -> Disposition {
    let kind = if error.is_unsupported_version() {
        ReasonKind::UnsupportedVersion
    } else {
        ReasonKind::SchemaViolation
    };
    Disposition::Reject(Reason::new(kind, error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_acks_retry_retries_reject_rejects() {
        assert_eq!(result(Ok(())), Disposition::Ack);
        assert_eq!(
            result(Err(HandlerError::retry_after(
                Duration::from_secs(3),
                "busy"
            ))),
            Disposition::Retry {
                after: Some(Duration::from_secs(3)),
                error: "busy".into()
            }
        );
        assert!(matches!(
            result(Err(HandlerError::reject("bad card"))),
            Disposition::Reject(Reason {
                kind: ReasonKind::Rejected,
                ..
            })
        ));
    }

    #[test]
    fn a_panic_is_transient_and_keeps_its_message() {
        let payload = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(
            panic(payload),
            Disposition::Retry {
                after: None,
                error: "handler panicked: boom 1".into()
            }
        );
    }
}
