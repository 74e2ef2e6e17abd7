//! What can go wrong talking to AWS.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use tidings_core::transport::TransportError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An AWS call failed. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// AWS (or the endpoint) could not be reached, timed out, throttled or failed on its
    /// side: trying again later may succeed.
    #[error("AWS is unreachable: {operation}: {reason}")]
    Unreachable {
        /// What was asked.
        operation: String,
        /// What the SDK said.
        reason: String,
    },
    /// AWS refused the call (a missing permission, an invalid parameter, a missing
    /// resource).
    #[error("AWS refused {operation}: {reason}")]
    Refused {
        /// What was asked.
        operation: String,
        /// The service's error code and message.
        reason: String,
    },
    /// What the call names does not exist (a queue deleted under a consumer, say).
    #[error("AWS found nothing for {operation}: {reason}")]
    Missing {
        /// What was asked.
        operation: String,
        /// The service's error code and message.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("invalid AWS configuration: {0}")]
    Config(String),
    /// A message's lease (its visibility timeout) may have run out while it was being
    /// handled, so another consumer may have received it: this consumer leaves it to that one.
    #[error(
        "the lease of SQS message {message_id} may have run out while it was handled; \
         it is left to its next delivery"
    )]
    LeaseLost {
        /// The SQS message id.
        message_id: String,
    },
    /// The transport was closed.
    #[error("the AWS transport is closed")]
    Closed,
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// Whether what the call named does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, Error::Missing { .. })
    }

    /// Classifies an SDK error for `operation`.
    pub(crate) fn from_sdk<E, R>(error: &SdkError<E, R>, operation: &str) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let reason = aws_sdk_sqs::error::DisplayErrorContext(error).to_string();
        let missing = matches!(
            error,
            SdkError::ServiceError(service) if matches!(
                service.err().code(),
                Some(
                    "QueueDoesNotExist"
                        | "AWS.SimpleQueueService.NonExistentQueue"
                        | "NotFound"
                        | "ResourceNotFoundException"
                )
            )
        );
        if missing {
            return Error::Missing {
                operation: operation.to_owned(),
                reason,
            };
        }
        let transient = match error {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(service) => matches!(
                service.err().code(),
                Some(
                    "RequestThrottled"
                        | "Throttling"
                        | "ThrottlingException"
                        | "ServiceUnavailable"
                        | "InternalError"
                        | "InternalFailure"
                        | "InternalException"
                )
            ),
            _ => false,
        };
        if transient {
            Error::Unreachable {
                operation: operation.to_owned(),
                reason,
            }
        } else {
            Error::Refused {
                operation: operation.to_owned(),
                reason,
            }
        }
    }
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Closed => TransportError::Closed,
            Error::Unreachable { .. } => TransportError::Connection(Box::new(error)),
            Error::Missing { .. } => TransportError::NotFound(error.to_string()),
            Error::LeaseLost { .. } => TransportError::Other(Box::new(error)),
            other => TransportError::Refused(other.to_string()),
        }
    }
}
