//! The CloudEvents NATS binding: an envelope as NATS headers and payload, and back.

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue, NATS_MESSAGE_ID};
use bytes::Bytes;
use tidings_core::codec::{
    BinaryMode, Codec, DecodeError, EncodeError, STRUCTURED_CONTENT_TYPE, StructuredJson,
    decode_json,
};
use tidings_core::envelope::{Envelope, ExtensionValue};
use tidings_core::transport::Received;

use crate::config::ContentMode;

/// Prefix of CloudEvents attributes in binary mode (NATS binding).
const CE_PREFIX: &str = "ce-";
/// The content type header.
pub(crate) const CONTENT_TYPE: &str = "Content-Type";
/// Set on a replay meant for one subscription only: the others skip it.
pub(crate) const TARGET: &str = "Tidings-Target";
/// A dead letter's details, as JSON (header values cannot hold line breaks; JSON escapes
/// them).
pub(crate) const DEAD_LETTER: &str = "Tidings-Dead-Letter";

/// An envelope encoded for publishing.
pub(crate) struct Outgoing {
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

fn value(text: &str, what: &str) -> Result<HeaderValue, EncodeError> {
    text.parse().map_err(|_| EncodeError::Unrepresentable {
        format: "NATS headers",
        what: format!("{what} with a line break"),
    })
}

/// The de-duplication id of an envelope: its identity, source and id (ids are unique only
/// within a source).
pub(crate) fn message_id(envelope: &Envelope) -> String {
    let mut id = String::with_capacity(envelope.source.len() + 1 + envelope.id.len());
    id.push_str(&envelope.source);
    id.push(':');
    id.push_str(&envelope.id);
    id
}

/// Encodes `envelope` in `mode`, with `Nats-Msg-Id` set so that the server drops a repeat
/// within its duplicate window.
pub(crate) fn encode(envelope: &Envelope, mode: ContentMode) -> Result<Outgoing, EncodeError> {
    let mut headers = HeaderMap::new();
    // A header cannot hold a line break: such an id publishes without de-duplication.
    let id = message_id(envelope);
    if !id.contains(['\r', '\n']) {
        headers.insert(NATS_MESSAGE_ID, id);
    }
    let payload = match mode {
        ContentMode::Structured => {
            headers.insert(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE);
            Bytes::from(StructuredJson.encode(envelope)?)
        }
        ContentMode::Binary => {
            let mut failed = None;
            BinaryMode::for_each_attribute(envelope, |name, attribute| {
                let text = attribute.to_string();
                match (
                    format!("{CE_PREFIX}{name}").parse::<HeaderName>(),
                    value(&text, name),
                ) {
                    (Ok(name), Ok(value)) => {
                        headers.insert(name, value);
                    }
                    (_, Err(e)) => failed = Some(e),
                    (Err(_), _) => {}
                }
            });
            if let Some(error) = failed {
                return Err(error);
            }
            if let Some(ty) = BinaryMode::content_type(envelope) {
                headers.insert(CONTENT_TYPE, value(ty, "a content type")?);
            }
            Bytes::copy_from_slice(BinaryMode::body(envelope))
        }
    };
    Ok(Outgoing { headers, payload })
}

/// Decodes a message in whichever mode it was sent: binary when it carries `ce-` headers,
/// structured when its JSON has a `specversion`, and the legacy flat envelope otherwise.
pub(crate) fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Envelope, DecodeError> {
    let attributes = Attributes::of(headers);
    match binary(&attributes, payload) {
        Some(read) => read,
        None => decode_json(payload),
    }
}

/// A received message, read as [`decode`] reads it: at once when it is in binary mode,
/// when first asked otherwise (so that a typed handler can read its envelope and data in
/// one pass). `attributes` are its headers' ([`Attributes::of`]).
pub(crate) fn receive(attributes: Attributes, payload: &Bytes) -> Received {
    match binary(&attributes, payload) {
        Some(read) => Received::read(payload.clone(), attributes.content_type, read),
        None => Received::json(payload.clone(), attributes.content_type),
    }
}

/// What a message's headers say, read in one walk over them: looking a header up by name
/// costs a conversion, an allocation and a hash each, which every message would pay for a
/// content type that only an undecodable body's report needs and a target that only
/// replays carry.
#[derive(Default)]
pub(crate) struct Attributes {
    /// Its `ce-` headers, as binary mode's attributes.
    binary: Vec<(String, ExtensionValue)>,
    /// Its `Content-Type` (named exactly so, as `HeaderMap::get` finds it).
    content_type: Option<String>,
    /// The one subscription a replay is meant for ([`TARGET`], named exactly so).
    pub(crate) target: Option<String>,
}

impl Attributes {
    /// What `headers` say; nothing when there are none.
    pub(crate) fn of(headers: Option<&HeaderMap>) -> Self {
        let mut read = Self::default();
        for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
            let name: &str = name.as_ref();
            let Some(value) = values.first() else {
                continue;
            };
            if name == CONTENT_TYPE {
                read.content_type = Some(value.as_str().to_owned());
            } else if name == TARGET {
                read.target = Some(value.as_str().to_owned());
            } else if let Some(attribute) = name
                .get(..CE_PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(CE_PREFIX))
                .map(|_| name[CE_PREFIX.len()..].to_ascii_lowercase())
            {
                let value = ExtensionValue::String(value.as_str().to_owned());
                read.binary.push((attribute, value));
            }
        }
        read
    }
}

/// The message read in binary mode, when it carries `ce-` headers.
fn binary(attributes: &Attributes, payload: &[u8]) -> Option<Result<Envelope, DecodeError>> {
    if attributes.binary.is_empty() {
        return None;
    }
    Some(BinaryMode::decode(
        attributes
            .binary
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone())),
        attributes.content_type.as_deref(),
        payload,
    ))
}

/// The content type a message declared.
pub(crate) fn content_type(headers: Option<&HeaderMap>) -> Option<String> {
    headers?.get(CONTENT_TYPE).map(|v| v.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Envelope {
        Envelope::new("oms-service", "order.created")
            .with_subject("order_xyz")
            .with_tenant("tenant_abc")
            .with_correlation_id("req_xyz")
            .with_json_data(&serde_json::json!({ "order_id": "order_xyz", "total": 1000.0 }))
            .unwrap()
    }

    #[test]
    fn both_modes_round_trip_and_set_the_message_id() {
        for mode in [ContentMode::Structured, ContentMode::Binary] {
            let sent = order();
            let out = encode(&sent, mode).unwrap();
            assert_eq!(
                decode(Some(&out.headers), &out.payload).unwrap(),
                sent,
                "{mode:?}"
            );
            assert_eq!(
                out.headers.get(NATS_MESSAGE_ID).map(HeaderValue::as_str),
                Some(format!("oms-service:{}", sent.id).as_str())
            );
        }
    }

    #[test]
    fn binary_mode_uses_ce_headers_and_the_data_as_payload() {
        let out = encode(&order(), ContentMode::Binary).unwrap();
        assert_eq!(
            out.headers.get("ce-tenantid").map(HeaderValue::as_str),
            Some("tenant_abc")
        );
        assert_eq!(
            out.headers.get(CONTENT_TYPE).map(HeaderValue::as_str),
            Some("application/json")
        );
        assert_eq!(
            &out.payload[..],
            br#"{"order_id":"order_xyz","total":1000.0}"#
        );
    }

    #[test]
    fn a_line_break_in_binary_mode_is_an_error_not_a_broken_header() {
        let sent = order().with_subject("line one\nline two");
        assert!(encode(&sent, ContentMode::Binary).is_err());
        let structured = encode(&sent, ContentMode::Structured).unwrap();
        assert_eq!(
            decode(Some(&structured.headers), &structured.payload).unwrap(),
            sent
        );
    }

    #[test]
    fn an_id_with_a_line_break_publishes_without_a_message_id_instead_of_panicking() {
        let sent = Envelope::new("oms\r\nservice", "order.created");
        let out = encode(&sent, ContentMode::Structured).unwrap();
        assert_eq!(out.headers.get(NATS_MESSAGE_ID), None);
        assert_eq!(decode(Some(&out.headers), &out.payload).unwrap(), sent);
    }

    #[test]
    fn legacy_payloads_and_garbage_decode_as_they_should() {
        let legacy = br#"{"id":"evt_1","type":"order.created","source":"oms","data":{}}"#;
        assert_eq!(decode(None, legacy).unwrap().id, "evt_1");
        assert!(decode(None, b"\x00nope").is_err());
    }
}
