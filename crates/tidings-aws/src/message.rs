//! How an event is laid out in an SNS or SQS message, and how a received message is read.
//!
//! The body is the event in CloudEvents structured JSON. Routing travels beside it as
//! message attributes, which SNS filter policies read and SQS keeps through raw message
//! delivery:
//!
//! | attribute | type | value |
//! |---|---|---|
//! | `eventName` | String | the topic (the event's type) |
//! | `publisherName` | String | the event's `source` |
//! | `entityName` | String | the type's next-to-last word (`order` of `order.created`) |
//! | `tenantId` | String | the `tenantid` extension, when set |
//! | `depth` | Number | the topic's word count, for patterns with `*` |
//! | `bodyEncoding` | String | `base64` when the body had to be encoded (see below) |
//! | `details` | String | on dead letters only: why and how often it failed (JSON) |
//!
//! SQS takes only some characters in a body (tab, newline, carriage return, and from
//! U+0020 except the surrogates, U+FFFE and U+FFFF). An event in JSON is always fine;
//! bytes published as they are (`publish_bytes`) that are not are sent in base64 with
//! `bodyEncoding` set, and read back as the bytes they were.
//!
//! Reading accepts three layouts: tidings' own (an `eventName` attribute), an EventBridge
//! event delivered by a rule (the CloudEvent is its `detail`, the topic its `detail-type`),
//! and an SNS notification delivered without raw message delivery (the event is its
//! `Message`).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tidings_core::codec::{Codec, StructuredJson};
use tidings_core::envelope::Envelope;
use tidings_core::topic::words;
use tidings_core::transport::TransportError;

/// Names of the message attributes.
pub(crate) mod attribute {
    pub(crate) const EVENT_NAME: &str = "eventName";
    pub(crate) const PUBLISHER: &str = "publisherName";
    pub(crate) const ENTITY: &str = "entityName";
    pub(crate) const TENANT: &str = "tenantId";
    pub(crate) const DEPTH: &str = "depth";
    pub(crate) const BODY_ENCODING: &str = "bodyEncoding";
    pub(crate) const DETAILS: &str = "details";
}

/// The largest message SNS, SQS and EventBridge take: 256 KiB, attributes included.
pub(crate) const MAX_SIZE: usize = 262_144;

/// Longest message group and de-duplication ids of FIFO topics and queues.
const MAX_ID: usize = 128;

/// One message to publish.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) topic: String,
    /// The body as sent: the bytes, or their base64 when [`Outgoing::base64`].
    pub(crate) body: String,
    pub(crate) base64: bool,
    /// The event's source; `None` for bytes published as they are.
    pub(crate) publisher: Option<String>,
    pub(crate) tenant: Option<String>,
    /// The FIFO message group: `partitionkey`, else subject, else topic.
    pub(crate) group: String,
    /// The FIFO de-duplication id: the event's id.
    pub(crate) dedup: String,
}

impl Outgoing {
    /// An event, in structured JSON.
    pub(crate) fn of(envelope: &Envelope) -> Result<Self, TransportError> {
        let (body, base64) = body_text(&StructuredJson.encode(envelope)?);
        let group = envelope
            .extensions
            .partitionkey
            .as_deref()
            .or(envelope.subject.as_deref())
            .unwrap_or(envelope.topic());
        Ok(Self {
            topic: envelope.topic().to_owned(),
            body,
            base64,
            publisher: Some(envelope.source.clone()),
            tenant: envelope.extensions.tenantid.clone(),
            group: fifo_id(group),
            dedup: fifo_id(&envelope.id),
        })
    }

    /// Bytes as they are, under `topic`.
    pub(crate) fn raw(topic: &str, bytes: &[u8]) -> Self {
        let (body, base64) = body_text(bytes);
        Self {
            topic: topic.to_owned(),
            body,
            base64,
            publisher: None,
            tenant: None,
            group: fifo_id(topic),
            dedup: uuid::Uuid::now_v7().to_string(),
        }
    }

    /// A body as received (already in its sent form), to send again under `topic`.
    pub(crate) fn resend(topic: &str, body: &str, base64: bool, group: &str, dedup: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            body: body.to_owned(),
            base64,
            publisher: None,
            tenant: None,
            group: fifo_id(group),
            dedup: fifo_id(dedup),
        }
    }

    /// The message attributes: `(name, data type, value)`.
    pub(crate) fn attributes(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut all = vec![
            (attribute::EVENT_NAME, "String", self.topic.clone()),
            (
                attribute::DEPTH,
                "Number",
                words(&self.topic).count().to_string(),
            ),
        ];
        if let Some(publisher) = self.publisher.as_ref().filter(|p| !p.is_empty()) {
            all.push((attribute::PUBLISHER, "String", publisher.clone()));
        }
        if let Some(entity) = entity(&self.topic) {
            all.push((attribute::ENTITY, "String", entity.to_owned()));
        }
        if let Some(tenant) = self.tenant.as_ref().filter(|t| !t.is_empty()) {
            all.push((attribute::TENANT, "String", tenant.clone()));
        }
        if self.base64 {
            all.push((attribute::BODY_ENCODING, "String", "base64".to_owned()));
        }
        all
    }

    /// The size AWS counts against [`MAX_SIZE`]: the body and every attribute's name, type
    /// and value.
    pub(crate) fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes()
                .iter()
                .map(|(name, ty, value)| name.len() + ty.len() + value.len())
                .sum::<usize>()
    }

    /// Fails with [`TransportError::TooLarge`] when AWS would refuse it.
    pub(crate) fn check_size(&self) -> Result<(), TransportError> {
        let size = self.size();
        if size > MAX_SIZE {
            return Err(TransportError::TooLarge {
                size,
                limit: MAX_SIZE,
            });
        }
        Ok(())
    }

    /// The attributes for SNS.
    pub(crate) fn sns_attributes(
        &self,
    ) -> std::collections::HashMap<String, aws_sdk_sns::types::MessageAttributeValue> {
        self.attributes()
            .into_iter()
            .map(|(name, ty, value)| {
                let value = aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type(ty)
                    .string_value(value)
                    .build()
                    .expect("the data type is set");
                (name.to_owned(), value)
            })
            .collect()
    }

    /// The attributes for SQS.
    pub(crate) fn sqs_attributes(
        &self,
    ) -> std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue> {
        self.attributes()
            .into_iter()
            .map(|(name, ty, value)| (name.to_owned(), sqs_attribute(ty, value)))
            .collect()
    }
}

/// An SQS message attribute.
pub(crate) fn sqs_attribute(
    ty: &str,
    value: impl Into<String>,
) -> aws_sdk_sqs::types::MessageAttributeValue {
    aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type(ty)
        .string_value(value)
        .build()
        .expect("the data type is set")
}

/// The entity an event type names: its next-to-last word.
fn entity(topic: &str) -> Option<&str> {
    let all: Vec<&str> = words(topic).collect();
    (all.len() >= 2)
        .then(|| all[all.len() - 2])
        .filter(|w| !w.is_empty())
}

/// Whether SQS takes `c` in a body.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

/// The body to send for `bytes`, and whether it is base64.
fn body_text(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().all(allowed) => (text.to_owned(), false),
        _ => (BASE64.encode(bytes), true),
    }
}

/// A FIFO id for `text`: itself when FIFO takes it (1 to 128 of the printable ASCII
/// characters), else a name-based UUID of it, as stable and far less likely to collide
/// than a cut.
fn fifo_id(text: &str) -> String {
    if !text.is_empty() && text.len() <= MAX_ID && text.bytes().all(|b| b.is_ascii_graphic()) {
        text.to_owned()
    } else {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, text.as_bytes()).to_string()
    }
}

/// What a received message carries.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    /// The topic, when the message says (tidings' layout, EventBridge's `detail-type`).
    pub(crate) topic: Option<String>,
    /// The event's bytes.
    pub(crate) body: Bytes,
    /// Whether the body was sent in base64.
    pub(crate) base64: bool,
    /// The dead letter's details (JSON), on dead-letter queues.
    pub(crate) details: Option<String>,
}

/// An EventBridge event, as a rule delivers it to a queue.
#[derive(Deserialize)]
struct BridgeEvent<'a> {
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(borrow)]
    detail: &'a RawValue,
}

/// An SNS notification, as delivered without raw message delivery.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Notification {
    #[serde(rename = "Type")]
    kind: String,
    message: String,
    #[serde(default)]
    message_attributes: std::collections::HashMap<String, NotificationAttribute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NotificationAttribute {
    value: String,
}

impl Incoming {
    /// Reads a received SQS message.
    pub(crate) fn read(message: &aws_sdk_sqs::types::Message) -> Self {
        let attributes = message.message_attributes();
        let text = |name: &str| {
            attributes
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        let body = message.body().unwrap_or_default();
        let details = text(attribute::DETAILS);
        if let Some(topic) = text(attribute::EVENT_NAME) {
            let base64 = text(attribute::BODY_ENCODING).as_deref() == Some("base64");
            return Self {
                topic: Some(topic),
                body: decode_body(body, base64),
                base64,
                details,
            };
        }
        if let Ok(event) = serde_json::from_str::<BridgeEvent<'_>>(body) {
            return Self {
                topic: Some(event.detail_type),
                body: Bytes::from(compact(event.detail.get())),
                base64: false,
                details,
            };
        }
        if let Ok(notification) = serde_json::from_str::<Notification>(body)
            && notification.kind == "Notification"
        {
            let base64 = notification
                .message_attributes
                .get(attribute::BODY_ENCODING)
                .is_some_and(|a| a.value == "base64");
            return Self {
                topic: notification
                    .message_attributes
                    .get(attribute::EVENT_NAME)
                    .map(|a| a.value.clone()),
                body: decode_body(&notification.message, base64),
                base64,
                details,
            };
        }
        Self {
            topic: None,
            body: Bytes::copy_from_slice(body.as_bytes()),
            base64: false,
            details,
        }
    }

    /// The body in the form it is sent in: base64 again when it was.
    pub(crate) fn sent_form(&self) -> Cow<'_, str> {
        if self.base64 {
            Cow::Owned(BASE64.encode(&self.body))
        } else {
            String::from_utf8_lossy(&self.body)
        }
    }
}

/// `json` without the whitespace between its tokens, keys kept in their order.
///
/// EventBridge hands a rule's targets the detail written again (moto with a space after
/// each `,` and `:`); tidings publishes compact JSON, so taking that whitespace out gives back
/// the event's bytes. Written here because a parse and re-serialization through
/// `serde_json::Value` would sort the keys.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

fn decode_body(body: &str, base64: bool) -> Bytes {
    if base64 && let Ok(bytes) = BASE64.decode(body) {
        return Bytes::from(bytes);
    }
    Bytes::copy_from_slice(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(body: &str, attributes: &[(&str, &str)]) -> aws_sdk_sqs::types::Message {
        let mut message = aws_sdk_sqs::types::Message::builder().body(body);
        for (name, value) in attributes {
            message = message.message_attributes(*name, sqs_attribute("String", *value));
        }
        message.build()
    }

    #[test]
    fn an_event_carries_its_routing_as_attributes() {
        let envelope = Envelope::new("oms", "shop.order.created").with_tenant("acme");
        let out = Outgoing::of(&envelope).unwrap();
        let attributes = out.attributes();
        let get = |name: &str| {
            attributes
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, ty, v)| (*ty, v.as_str()))
        };
        assert_eq!(get("eventName"), Some(("String", "shop.order.created")));
        assert_eq!(get("publisherName"), Some(("String", "oms")));
        assert_eq!(get("entityName"), Some(("String", "order")));
        assert_eq!(get("tenantId"), Some(("String", "acme")));
        assert_eq!(get("depth"), Some(("Number", "3")));
        assert_eq!(get("bodyEncoding"), None);
        assert_eq!(out.dedup, envelope.id);
    }

    #[test]
    fn the_message_group_is_the_partition_key_else_the_subject_else_the_topic() {
        let mut envelope = Envelope::new("oms", "order.created");
        assert_eq!(Outgoing::of(&envelope).unwrap().group, "order.created");
        envelope = envelope.with_subject("order_1");
        assert_eq!(Outgoing::of(&envelope).unwrap().group, "order_1");
        envelope.extensions.partitionkey = Some("customer_9".to_owned());
        assert_eq!(Outgoing::of(&envelope).unwrap().group, "customer_9");
        envelope.extensions.partitionkey = Some("naïve key".to_owned());
        let group = Outgoing::of(&envelope).unwrap().group;
        assert_eq!(group.len(), 36, "a UUID stands in for what FIFO refuses");
        assert_eq!(group, Outgoing::of(&envelope).unwrap().group, "stable");
    }

    #[test]
    fn bytes_sqs_refuses_travel_in_base64_and_come_back_as_they_were() {
        let raw = Outgoing::raw("order.created", b"\x00not json{");
        assert!(raw.base64);
        let message = received(
            &raw.body,
            &[("eventName", "order.created"), ("bodyEncoding", "base64")],
        );
        let incoming = Incoming::read(&message);
        assert_eq!(&incoming.body[..], b"\x00not json{");
        assert_eq!(incoming.sent_form(), raw.body);
        assert!(!Outgoing::raw("t", "ünïcode\ttext".as_bytes()).base64);
    }

    #[test]
    fn an_eventbridge_event_is_read_as_its_detail_compacted() {
        let body = r#"{"version":"0","id":"x","detail-type":"order.created","source":"oms",
            "detail":{"specversion": "1.0", "id": "1", "source":"oms","type":"order created"}}"#;
        let incoming = Incoming::read(&received(body, &[]));
        assert_eq!(incoming.topic.as_deref(), Some("order.created"));
        assert_eq!(
            &incoming.body[..],
            br#"{"specversion":"1.0","id":"1","source":"oms","type":"order created"}"#
        );
    }

    #[test]
    fn compacting_removes_whitespace_between_tokens_only() {
        assert_eq!(
            compact(r#"{"b": 1, "a": ["x y", "q\" ,z"] ,"c" : {}}"#),
            r#"{"b":1,"a":["x y","q\" ,z"],"c":{}}"#
        );
    }

    #[test]
    fn an_sns_notification_without_raw_delivery_is_read_as_its_message() {
        let body = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m",
            "Message": "{\"specversion\":\"1.0\"}",
            "MessageAttributes": { "eventName": { "Type": "String", "Value": "order.paid" } },
        })
        .to_string();
        let incoming = Incoming::read(&received(&body, &[]));
        assert_eq!(incoming.topic.as_deref(), Some("order.paid"));
        assert_eq!(&incoming.body[..], br#"{"specversion":"1.0"}"#);
    }
}
