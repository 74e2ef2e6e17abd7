//! Dead letters: events that could not be handled, kept with why and how often they failed.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::Envelope;

/// An event in a subscription's dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Id of the dead letter itself (a UUIDv7), not of the event.
    pub id: String,
    /// The subscription that failed to handle it.
    pub subscription: String,
    /// The handler (route) that failed, when one was chosen.
    pub handler: Option<String>,
    /// What arrived, untouched.
    pub original: Original,
    /// Why it was dead-lettered.
    pub reason: Reason,
    /// Deliveries made, the last one included.
    pub attempts: u32,
    /// When the first delivery failed.
    pub first_failure_at: DateTime<Utc>,
    /// When the last delivery failed.
    pub last_failure_at: DateTime<Utc>,
}

impl DeadLetter {
    /// A dead letter for `original`, failed once now unless told otherwise.
    pub fn new(subscription: impl Into<String>, original: Original, reason: Reason) -> Self {
        let now = Utc::now();
        Self {
            id: Uuid::now_v7().to_string(),
            subscription: subscription.into(),
            handler: None,
            original,
            reason,
            attempts: 1,
            first_failure_at: now,
            last_failure_at: now,
        }
    }

    /// Sets the handler name.
    pub fn with_handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = Some(handler.into());
        self
    }

    /// Sets the attempt count and the time of the first failure.
    pub fn with_attempts(mut self, attempts: u32, first_failure_at: Option<DateTime<Utc>>) -> Self {
        self.attempts = attempts;
        if let Some(first) = first_failure_at {
            self.first_failure_at = first;
        }
        self
    }

    /// The event, when it could be decoded.
    pub fn envelope(&self) -> Option<&Envelope> {
        match &self.original {
            Original::Envelope(envelope) => Some(envelope),
            Original::Undecodable { .. } => None,
        }
    }
}

/// What arrived: an event, or bytes that are not one.
#[derive(Debug, Clone, PartialEq)]
pub enum Original {
    /// A decoded event, exactly as received.
    Envelope(Box<Envelope>),
    /// Bytes that could not be decoded.
    Undecodable {
        /// The raw body.
        body: Bytes,
        /// Its declared media type.
        content_type: Option<String>,
    },
}

impl Original {
    /// The original as a database-backed queue stores it: the body, its content type, and
    /// whether it decoded. An event is stored as CloudEvents structured JSON.
    pub fn to_stored(&self) -> (Vec<u8>, Option<String>, bool) {
        use crate::codec::{Codec, StructuredJson};
        match self {
            Original::Envelope(envelope) => (
                StructuredJson.encode(envelope).unwrap_or_default(),
                Some(StructuredJson.content_type().to_owned()),
                true,
            ),
            Original::Undecodable { body, content_type } => {
                (body.to_vec(), content_type.clone(), false)
            }
        }
    }

    /// Reads back what [`to_stored`](Self::to_stored) wrote.
    ///
    /// ```
    /// use tidings_core::dead_letter::Original;
    /// use tidings_core::envelope::Envelope;
    ///
    /// let event = Original::Envelope(Box::new(Envelope::new("oms", "order.created")));
    /// let (body, content_type, decodable) = event.to_stored();
    /// assert_eq!(Original::from_stored(body, content_type, decodable), event);
    ///
    /// let junk = Original::Undecodable { body: "{".into(), content_type: None };
    /// let (body, content_type, decodable) = junk.to_stored();
    /// assert_eq!(Original::from_stored(body, content_type, decodable), junk);
    /// ```
    pub fn from_stored(body: Vec<u8>, content_type: Option<String>, decodable: bool) -> Self {
        let undecodable = |body: Bytes, content_type| Original::Undecodable { body, content_type };
        if !decodable {
            return undecodable(Bytes::from(body), content_type);
        }
        match crate::transport::decode_stored(body, content_type) {
            Ok(envelope) => Original::Envelope(Box::new(envelope)),
            Err(failed) => undecodable(failed.body, failed.content_type),
        }
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The class of failure.
    pub kind: ReasonKind,
    /// Human-readable detail: the last error, the decoding error, the offending field.
    pub message: String,
}

impl Reason {
    /// A reason of `kind` with `message`.
    pub fn new(kind: ReasonKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The class of a dead-lettering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonKind {
    /// Transient failures until the retry policy gave up.
    RetriesExhausted,
    /// The handler rejected it as permanently failed.
    Rejected,
    /// The bytes are not an event.
    Undecodable,
    /// The event's data does not fit its type's schema.
    SchemaViolation,
    /// No handler of the subscription takes this type.
    UnknownType,
    /// The event's version is newer than the consumer understands.
    UnsupportedVersion,
    /// The message is larger than allowed.
    TooLarge,
    /// It was not consumed within its queue's time to live.
    Expired,
}

impl ReasonKind {
    /// A stable, snake-case name, used in headers and columns.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::RetriesExhausted => "retries_exhausted",
            ReasonKind::Rejected => "rejected",
            ReasonKind::Undecodable => "undecodable",
            ReasonKind::SchemaViolation => "schema_violation",
            ReasonKind::UnknownType => "unknown_type",
            ReasonKind::UnsupportedVersion => "unsupported_version",
            ReasonKind::TooLarge => "too_large",
            ReasonKind::Expired => "expired",
        }
    }

    /// Parses [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "retries_exhausted" => ReasonKind::RetriesExhausted,
            "rejected" => ReasonKind::Rejected,
            "undecodable" => ReasonKind::Undecodable,
            "schema_violation" => ReasonKind::SchemaViolation,
            "unknown_type" => ReasonKind::UnknownType,
            "unsupported_version" => ReasonKind::UnsupportedVersion,
            "too_large" => ReasonKind::TooLarge,
            "expired" => ReasonKind::Expired,
            _ => return None,
        })
    }
}

impl fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dead letter's details as brokers without a dead-letter queue of their own store them
/// beside the original message (a header or a field, as JSON): everything of a
/// [`DeadLetter`] but the original (times to the millisecond), plus the topic the event
/// arrived under.
///
/// ```
/// use tidings_core::dead_letter::{DeadLetter, Details, Original, Reason, ReasonKind};
/// use tidings_core::envelope::Envelope;
///
/// let letter = DeadLetter::new(
///     "billing",
///     Original::Envelope(Box::new(Envelope::new("oms", "order.paid"))),
///     Reason::new(ReasonKind::Rejected, "card declined\nby the bank"),
/// );
/// let stored = Details::of(&letter, "order.paid").to_json();
/// assert!(!stored.contains('\n'), "line breaks are escaped");
/// let back = Details::from_json(&stored).unwrap().into_letter(letter.original.clone());
/// assert_eq!((&back.id, &back.reason, back.attempts), (&letter.id, &letter.reason, 1));
/// // Times are kept to the millisecond.
/// assert_eq!(
///     back.first_failure_at.timestamp_millis(),
///     letter.first_failure_at.timestamp_millis()
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Details {
    /// The dead letter's id.
    pub id: String,
    /// The subscription that failed.
    pub subscription: String,
    /// The handler that failed.
    pub handler: Option<String>,
    /// [`ReasonKind::as_str`].
    pub reason_kind: String,
    /// The reason's message.
    pub reason: String,
    /// Deliveries made.
    pub attempts: u32,
    /// First failure, Unix milliseconds.
    pub first_failure_ms: i64,
    /// Last failure, Unix milliseconds.
    pub last_failure_ms: i64,
    /// The topic the event arrived under.
    pub topic: String,
}

impl Details {
    /// The details of `letter`, whose event arrived under `topic`.
    pub fn of(letter: &DeadLetter, topic: &str) -> Self {
        Self {
            id: letter.id.clone(),
            subscription: letter.subscription.clone(),
            handler: letter.handler.clone(),
            reason_kind: letter.reason.kind.as_str().to_owned(),
            reason: letter.reason.message.clone(),
            attempts: letter.attempts,
            first_failure_ms: letter.first_failure_at.timestamp_millis(),
            last_failure_ms: letter.last_failure_at.timestamp_millis(),
            topic: topic.to_owned(),
        }
    }

    /// As JSON, on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("details serialize")
    }

    /// Reads [`to_json`](Self::to_json) back.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The dead letter of `original` with these details. An unknown reason kind reads as
    /// [`ReasonKind::Rejected`].
    pub fn into_letter(self, original: Original) -> DeadLetter {
        let time = |ms| DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now);
        DeadLetter {
            id: self.id,
            subscription: self.subscription,
            handler: self.handler,
            original,
            reason: Reason::new(
                ReasonKind::parse(&self.reason_kind).unwrap_or(ReasonKind::Rejected),
                self.reason,
            ),
            attempts: self.attempts,
            first_failure_at: time(self.first_failure_ms),
            last_failure_at: time(self.last_failure_ms),
        }
    }
}

/// Where a replayed dead letter goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayTarget {
    /// Back to the subscription it failed in, and only to it.
    Subscription,
    /// Published afresh under another topic, to whoever subscribes to it.
    Topic(String),
}

/// A page of a dead-letter listing, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries to skip.
    pub offset: usize,
    /// Entries to return at most.
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: 100,
        }
    }
}

impl Page {
    /// The first `limit` entries.
    pub fn first(limit: usize) -> Self {
        Self { offset: 0, limit }
    }
}
