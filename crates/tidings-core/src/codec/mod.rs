//! Codecs: how an [`Envelope`] becomes bytes and back.
//!
//! - [`StructuredJson`]: CloudEvents 1.0 structured JSON (`application/cloudevents+json`), the
//!   default on every transport.
//! - [`BinaryMode`]: CloudEvents binary content mode, where attributes travel as protocol
//!   headers (AMQP `cloudEvents:`, NATS and HTTP `ce-`) and `data` is the message body.
//! - [`Legacy`]: the flat envelope existing producers already send
//!   (`id, type, source, timestamp, tenant_id, correlation_id, data, metadata{version,user_id}`),
//!   so that old services are consumed, and fed, unchanged.
//!
//! Decoding never panics and never guesses: every error is a [`DecodeError`] that names the
//! attribute at fault.
//!
//! ```
//! use tidings_core::codec::{Codec, Legacy, StructuredJson};
//!
//! let legacy = br#"{"id":"evt_1","type":"order.created","source":"oms-service",
//!     "timestamp":"2024-01-15T10:30:00Z","tenant_id":"tenant_abc",
//!     "data":{"order_id":"order_xyz"},"metadata":{"version":"1.0","user_id":"user_123"}}"#;
//! let envelope = Legacy.decode(legacy).unwrap();
//! assert_eq!(envelope.extensions.tenantid.as_deref(), Some("tenant_abc"));
//!
//! let structured = StructuredJson.encode(&envelope).unwrap();
//! assert_eq!(StructuredJson.decode(&structured).unwrap(), envelope);
//! ```

mod binary;
mod error;
mod legacy;
mod scalar;
mod structured;

pub use binary::{BinaryMode, is_json};
pub use error::{DecodeError, EncodeError};
pub use legacy::{LEGACY_METADATA, Legacy};
pub use structured::{CONTENT_TYPE as STRUCTURED_CONTENT_TYPE, StructuredJson};

use crate::envelope::Envelope;

/// Turns envelopes into bytes and back.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// The media type of the encoded form.
    fn content_type(&self) -> &'static str;

    /// Encodes an envelope.
    fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>, EncodeError>;

    /// Decodes an envelope.
    fn decode(&self, bytes: &[u8]) -> Result<Envelope, DecodeError>;
}

/// Decodes a JSON body whose form is not declared: CloudEvents structured JSON, or the
/// [`Legacy`] flat envelope when it has no `specversion`. Brokers whose messages carry no
/// content type (or a generic one) read bodies with this.
///
/// ```
/// use tidings_core::codec::decode_json;
///
/// let structured = br#"{"specversion":"1.0","id":"1","source":"oms","type":"order.created"}"#;
/// let legacy = br#"{"id":"evt_1","type":"order.created","source":"oms-service",
///     "timestamp":"2024-01-15T10:30:00Z","data":{}}"#;
/// assert_eq!(decode_json(structured).unwrap().ty, "order.created");
/// assert_eq!(decode_json(legacy).unwrap().id, "evt_1");
/// assert!(decode_json(b"not json").is_err());
/// ```
pub fn decode_json(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    match StructuredJson.decode(bytes) {
        Err(DecodeError::MissingAttribute("specversion")) => Legacy.decode(bytes),
        other => other,
    }
}

/// Formats a time the way every tidings codec writes it: RFC 3339, UTC, `Z`.
pub(crate) fn format_time(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 time into UTC.
pub(crate) fn parse_time(
    name: &'static str,
    text: &str,
) -> Result<chrono::DateTime<chrono::Utc>, DecodeError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| DecodeError::invalid(name, format!("`{text}` is not an RFC 3339 time: {e}")))
}
