//! What a handler says about a delivery.
//!
//! A handler returns `Ok(())` to acknowledge, or a [`HandlerError`] that says whether the
//! failure is transient (retry, optionally after a given delay) or permanent (reject: straight
//! to the dead-letter queue). Any `std::error::Error` converts into a transient failure, so `?`
//! works in handlers.
//!
//! ```
//! use std::time::Duration;
//! use tidings_core::outcome::{Failure, HandlerError};
//!
//! fn charge(amount: f64) -> Result<(), HandlerError> {
//!     if amount < 0.0 {
//!         return Err(HandlerError::reject("negative amount"));
//!     }
//!     let _parsed: u32 = "42".parse()?; // a ParseIntError would be retried
//!     Err(HandlerError::retry_after(Duration::from_secs(30), "payment gateway busy"))
//! }
//! assert!(matches!(charge(-1.0).unwrap_err().failure(), Failure::Permanent));
//! assert!(matches!(charge(1.0).unwrap_err().failure(), Failure::Transient { after: Some(_) }));
//! ```

use std::fmt;
use std::time::Duration;

use crate::dead_letter::ReasonKind;

/// Boxed error, as carried inside [`HandlerError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again: after `after` if given, otherwise after the retry policy's backoff.
    Transient {
        /// A delay the handler asks for (e.g. from a `Retry-After`).
        after: Option<Duration>,
    },
    /// Never retry: dead-letter now.
    Permanent,
}

/// A handler failure, classified.
pub struct HandlerError {
    failure: Failure,
    /// What a permanent failure is recorded as in the dead letter.
    kind: ReasonKind,
    error: BoxError,
}

impl HandlerError {
    /// A transient failure, retried after the policy's backoff.
    pub fn retry(error: impl Into<BoxError>) -> Self {
        Self {
            failure: Failure::Transient { after: None },
            kind: ReasonKind::RetriesExhausted,
            error: error.into(),
        }
    }

    /// A transient failure, retried after `delay`.
    pub fn retry_after(delay: Duration, error: impl Into<BoxError>) -> Self {
        Self {
            failure: Failure::Transient { after: Some(delay) },
            kind: ReasonKind::RetriesExhausted,
            error: error.into(),
        }
    }

    /// A permanent failure: the event goes to the dead-letter queue without retry.
    pub fn reject(error: impl Into<BoxError>) -> Self {
        Self {
            failure: Failure::Permanent,
            kind: ReasonKind::Rejected,
            error: error.into(),
        }
    }

    /// The event breaks its contract (a field missing or of the wrong type, a value out of
    /// range): a permanent failure, dead-lettered as a
    /// [schema violation](ReasonKind::SchemaViolation). Say which field in `error`.
    ///
    /// ```
    /// use tidings_core::dead_letter::ReasonKind;
    /// use tidings_core::outcome::{Failure, HandlerError};
    ///
    /// let error = HandlerError::invalid("`/items/0/quantity`: -1 is less than the minimum of 1");
    /// assert_eq!(error.failure(), Failure::Permanent);
    /// assert_eq!(error.reason_kind(), ReasonKind::SchemaViolation);
    /// ```
    pub fn invalid(error: impl Into<BoxError>) -> Self {
        Self::reject_with(ReasonKind::SchemaViolation, error)
    }

    /// A permanent failure recorded in the dead letter as `kind`
    /// ([`UnsupportedVersion`](ReasonKind::UnsupportedVersion), say) rather than as a plain
    /// rejection.
    pub fn reject_with(kind: ReasonKind, error: impl Into<BoxError>) -> Self {
        Self {
            failure: Failure::Permanent,
            kind,
            error: error.into(),
        }
    }

    /// How the failure is to be treated.
    pub fn failure(&self) -> Failure {
        self.failure
    }

    /// What the dead letter records as its reason when the failure ends there: `Rejected`,
    /// `SchemaViolation` ([`HandlerError::invalid`]), or `RetriesExhausted` for a transient
    /// failure that ran out of attempts.
    pub fn reason_kind(&self) -> ReasonKind {
        self.kind
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// The error and its sources, joined with `: `.
    pub fn message(&self) -> String {
        let mut text = self.error.to_string();
        let mut source = self.error.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retry(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("failure", &self.failure)
            .field("error", &self.message())
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}
