//! The CloudEvents AMQP binding: an envelope as an AMQP message and back, plus the headers
//! tidings adds to carry attempts and failures across redeliveries.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use tidings_core::codec::{
    BinaryMode, Codec, DecodeError, EncodeError, Legacy, STRUCTURED_CONTENT_TYPE, StructuredJson,
    decode_json,
};
use tidings_core::envelope::{Envelope, ExtensionRef, ExtensionValue};
use tidings_core::transport::Received;

use crate::config::ContentMode;

/// Prefix of CloudEvents attributes in binary mode (AMQP binding, application properties).
pub(crate) const CE_PREFIX: &str = "cloudEvents:";
/// The prefix the binding also allows, for JMS compatibility; read, never written.
const CE_PREFIX_JMS: &str = "cloudEvents_";

/// Headers tidings adds; none of them is part of the event.
pub(crate) mod header {
    /// The topic the event was published under, when it travels through the default
    /// exchange (a delayed retry, a replay to one subscription), where the routing key is the
    /// queue's name.
    pub(crate) const TOPIC: &str = "x-tidings-topic";
    /// Which delivery of the message the next one is, from 1.
    pub(crate) const ATTEMPT: &str = "x-tidings-attempt";
    /// When its first delivery failed, Unix milliseconds.
    pub(crate) const FIRST_FAILURE: &str = "x-tidings-first-failure";
    /// The error of its last failed delivery.
    pub(crate) const LAST_ERROR: &str = "x-tidings-last-error";
    /// A dead letter's own id.
    pub(crate) const DEAD_LETTER_ID: &str = "x-tidings-dead-letter-id";
    /// The subscription that dead-lettered it.
    pub(crate) const SUBSCRIPTION: &str = "x-tidings-subscription";
    /// The handler that failed.
    pub(crate) const HANDLER: &str = "x-tidings-handler";
    /// The class of failure (`retries_exhausted`, `rejected`, ...).
    pub(crate) const REASON_KIND: &str = "x-tidings-reason-kind";
    /// The failure's detail.
    pub(crate) const REASON: &str = "x-tidings-reason";
    /// Deliveries made before it was dead-lettered.
    pub(crate) const ATTEMPTS: &str = "x-tidings-attempts";
    /// When its last delivery failed, Unix milliseconds.
    pub(crate) const LAST_FAILURE: &str = "x-tidings-last-failure";
    /// Set by quorum queues on redelivered messages.
    pub(crate) const DELIVERY_COUNT: &str = "x-delivery-count";
}

/// An envelope encoded for publishing.
pub(crate) struct Outgoing {
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

/// Persistent, with the event's id as `message-id`, its type as `type` and its time as
/// `timestamp`, so that plain AMQP tools show something useful.
fn base_properties(
    envelope: &Envelope,
    content_type: Option<&str>,
) -> Result<BasicProperties, EncodeError> {
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if let Some(ty) = content_type {
        let ty = ShortString::try_new(ty).map_err(|_| EncodeError::Unrepresentable {
            format: "AMQP",
            what: "a content type longer than 255 bytes".to_owned(),
        })?;
        properties = properties.with_content_type(ty);
    }
    if let Ok(id) = ShortString::try_new(envelope.id.as_str()) {
        properties = properties.with_message_id(id);
    }
    if let Ok(ty) = ShortString::try_new(envelope.ty.as_str()) {
        properties = properties.with_type(ty);
    }
    if let Some(time) = envelope
        .time
        .and_then(|t| u64::try_from(t.timestamp()).ok())
    {
        properties = properties.with_timestamp(time);
    }
    Ok(properties)
}

/// Encodes `envelope` in `mode`.
pub(crate) fn encode(envelope: &Envelope, mode: ContentMode) -> Result<Outgoing, EncodeError> {
    Ok(match mode {
        ContentMode::Structured => Outgoing {
            body: StructuredJson.encode(envelope)?,
            properties: base_properties(envelope, Some(STRUCTURED_CONTENT_TYPE))?,
        },
        ContentMode::Legacy => Outgoing {
            body: Legacy.encode(envelope)?,
            properties: base_properties(envelope, Some(Legacy.content_type()))?,
        },
        ContentMode::Binary => {
            let mut headers = FieldTable::default();
            BinaryMode::for_each_attribute(envelope, |name, value| {
                let value = match value {
                    ExtensionRef::String(s) => AMQPValue::LongString(s.into()),
                    ExtensionRef::Bool(b) => AMQPValue::Boolean(b),
                    ExtensionRef::Integer(i) => AMQPValue::LongLongInt(i),
                };
                headers.insert(format!("{CE_PREFIX}{name}").into(), value);
            });
            Outgoing {
                body: BinaryMode::body(envelope).to_vec(),
                properties: base_properties(envelope, BinaryMode::content_type(envelope))?
                    .with_headers(headers),
            }
        }
    })
}

/// Decodes a received message in whichever mode it was sent: binary when it carries
/// `cloudEvents:` attributes, structured when its content type says so or its JSON has a
/// `specversion`, and the legacy flat envelope otherwise.
pub(crate) fn decode(properties: &BasicProperties, body: &[u8]) -> Result<Envelope, DecodeError> {
    let content_type = properties.content_type().as_ref().map(ShortString::as_str);
    if let Some(read) = binary(properties, body) {
        return read;
    }
    if content_type.is_some_and(|ty| ty.starts_with(STRUCTURED_CONTENT_TYPE)) {
        return StructuredJson.decode(body);
    }
    decode_json(body)
}

/// A received message, read as [`decode`] reads it: at once when it is in binary mode
/// (or its `cloudEvents:` headers do not read), when first asked otherwise (so that a typed
/// handler can read its envelope and data in one pass).
pub(crate) fn receive(properties: &BasicProperties, body: &Bytes) -> Received {
    let content_type = properties.content_type().as_ref().map(ShortString::as_str);
    let owned = content_type.map(str::to_owned);
    match binary(properties, body) {
        Some(read) => Received::read(body.clone(), owned, read),
        None if content_type.is_some_and(|ty| ty.starts_with(STRUCTURED_CONTENT_TYPE)) => {
            Received::structured(body.clone(), owned)
        }
        None => Received::json(body.clone(), owned),
    }
}

/// The message read in binary mode, when it carries `cloudEvents:` attributes.
fn binary(properties: &BasicProperties, body: &[u8]) -> Option<Result<Envelope, DecodeError>> {
    let content_type = properties.content_type().as_ref().map(ShortString::as_str);
    if let Some(headers) = properties.headers() {
        let mut attributes = Vec::new();
        for (name, value) in headers.inner() {
            let Some(attribute) = name
                .as_str()
                .strip_prefix(CE_PREFIX)
                .or_else(|| name.as_str().strip_prefix(CE_PREFIX_JMS))
            else {
                continue;
            };
            match attribute_value(attribute, value) {
                Ok(value) => attributes.push((attribute, value)),
                Err(error) => return Some(Err(error)),
            }
        }
        if !attributes.is_empty() {
            return Some(BinaryMode::decode(attributes, content_type, body));
        }
    }
    None
}

fn attribute_value(name: &str, value: &AMQPValue) -> Result<ExtensionValue, DecodeError> {
    let invalid = |what: &str| DecodeError::InvalidAttribute {
        name: name.to_owned(),
        reason: format!("an AMQP {what} cannot carry a CloudEvents attribute"),
    };
    Ok(match value {
        AMQPValue::LongString(s) => {
            ExtensionValue::String(String::from_utf8(s.as_bytes().to_vec()).map_err(|_| {
                DecodeError::InvalidAttribute {
                    name: name.to_owned(),
                    reason: "not valid UTF-8".to_owned(),
                }
            })?)
        }
        AMQPValue::ShortString(s) => ExtensionValue::String(s.as_str().to_owned()),
        AMQPValue::Boolean(b) => ExtensionValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => ExtensionValue::Integer(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => ExtensionValue::Integer(i64::from(*i)),
        AMQPValue::ShortInt(i) => ExtensionValue::Integer(i64::from(*i)),
        AMQPValue::ShortUInt(i) => ExtensionValue::Integer(i64::from(*i)),
        AMQPValue::LongInt(i) => ExtensionValue::Integer(i64::from(*i)),
        AMQPValue::LongUInt(i) => ExtensionValue::Integer(i64::from(*i)),
        AMQPValue::LongLongInt(i) => ExtensionValue::Integer(*i),
        // The binding allows `time` as an AMQP timestamp (seconds).
        AMQPValue::Timestamp(secs) => {
            let time = i64::try_from(*secs)
                .ok()
                .and_then(|s| Utc.timestamp_opt(s, 0).single())
                .ok_or_else(|| invalid("timestamp out of range"))?;
            ExtensionValue::String(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        AMQPValue::Float(_) | AMQPValue::Double(_) | AMQPValue::DecimalValue(_) => {
            return Err(invalid("number with a fraction"));
        }
        AMQPValue::FieldArray(_) | AMQPValue::FieldTable(_) => {
            return Err(invalid("array or table"));
        }
        AMQPValue::ByteArray(_) | AMQPValue::Void => return Err(invalid("byte array or void")),
    })
}

/// Reads a string header.
pub(crate) fn string(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Reads an integer header of any width.
pub(crate) fn integer(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    match headers?.inner().get(name)? {
        AMQPValue::ShortShortInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortUInt(i) => Some(i64::from(*i)),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::Timestamp(i) => i64::try_from(*i).ok(),
        _ => None,
    }
}

/// Reads a Unix-milliseconds header as a time.
pub(crate) fn time(headers: Option<&FieldTable>, name: &str) -> Option<DateTime<Utc>> {
    integer(headers, name).and_then(DateTime::from_timestamp_millis)
}

/// `properties` with `changes` applied to a copy of its headers.
pub(crate) fn with_headers(
    properties: &BasicProperties,
    changes: impl FnOnce(&mut FieldTable),
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    changes(&mut headers);
    properties.clone().with_headers(headers)
}

/// A string header value.
pub(crate) fn text(value: impl Into<Vec<u8>>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_core::envelope::Category;

    fn order() -> Envelope {
        let mut e = Envelope::new("oms-service", "order.created")
            .with_subject("order_xyz")
            .with_tenant("tenant_abc")
            .with_correlation_id("req_xyz")
            .with_json_data(&serde_json::json!({ "order_id": "order_xyz", "total": 1000.0 }))
            .unwrap();
        e.extensions.category = Some(Category::Domain);
        e.extensions
            .other
            .insert("priority".into(), ExtensionValue::Integer(3));
        e
    }

    #[test]
    fn every_content_mode_round_trips() {
        for mode in [ContentMode::Structured, ContentMode::Binary] {
            let sent = order();
            let out = encode(&sent, mode).unwrap();
            assert_eq!(
                decode(&out.properties, &out.body).unwrap(),
                sent,
                "{mode:?}"
            );
            assert_eq!(out.properties.delivery_mode(), &Some(2), "persistent");
            assert_eq!(
                out.properties
                    .message_id()
                    .as_ref()
                    .map(ShortString::as_str),
                Some(sent.id.as_str())
            );
        }
        let legacy = encode(&order(), ContentMode::Legacy).unwrap();
        let back = decode(&legacy.properties, &legacy.body).unwrap();
        assert_eq!(back.extensions.tenantid.as_deref(), Some("tenant_abc"));
        assert_eq!(back.ty, "order.created");
    }

    #[test]
    fn binary_mode_puts_attributes_in_cloud_events_properties_and_data_in_the_body() {
        let sent = order();
        let out = encode(&sent, ContentMode::Binary).unwrap();
        let headers = out.properties.headers().as_ref().unwrap();
        assert_eq!(
            string(Some(headers), "cloudEvents:type").as_deref(),
            Some("order.created")
        );
        assert_eq!(
            string(Some(headers), "cloudEvents:specversion").as_deref(),
            Some("1.0")
        );
        assert_eq!(integer(Some(headers), "cloudEvents:priority"), Some(3));
        assert_eq!(
            out.properties
                .content_type()
                .as_ref()
                .map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(out.body, br#"{"order_id":"order_xyz","total":1000.0}"#);
    }

    #[test]
    fn a_legacy_producer_without_content_type_is_understood() {
        let body = br#"{"id":"evt_1","type":"order.created","source":"oms-service",
            "timestamp":"2024-01-15T10:30:00Z","tenant_id":"tenant_abc","data":{"order_id":"o"}}"#;
        let envelope = decode(&BasicProperties::default(), body).unwrap();
        assert_eq!(envelope.id, "evt_1");
        assert_eq!(envelope.extensions.tenantid.as_deref(), Some("tenant_abc"));
    }

    #[test]
    fn garbage_is_a_decode_error_naming_what_is_wrong() {
        assert!(decode(&BasicProperties::default(), b"\x00not json{").is_err());
        let mut headers = FieldTable::default();
        headers.insert("cloudEvents:id".into(), AMQPValue::Double(1.5));
        let err = decode(&BasicProperties::default().with_headers(headers), b"").unwrap_err();
        assert_eq!(err.attribute(), Some("id"));
    }
}
