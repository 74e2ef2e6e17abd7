//! CloudEvents binary content mode: attributes as protocol headers, `data` as the body.

use bytes::Bytes;

use super::scalar::Scalar;
use super::structured::Fields;
use super::{DecodeError, format_time};
use crate::envelope::{Data, Envelope, ExtensionRef, ExtensionValue, Json, SPEC_VERSION};

/// CloudEvents binary content mode, the part every protocol binding shares.
///
/// Each binding puts the attributes in its own headers (AMQP application properties prefixed
/// `cloudEvents:`, NATS and HTTP headers prefixed `ce-`), `datacontenttype` in the protocol's
/// content type, and `data` as the body, untouched. This type does the rest: which attributes
/// to write, and the same validation as [`StructuredJson`](super::StructuredJson) when reading
/// them back, with errors that name the attribute at fault.
///
/// A body is JSON data when its content type is JSON (`application/json`, `text/json` or
/// `…+json`), and opaque bytes otherwise; an empty body is no data. A JSON body without a
/// `datacontenttype` is sent as `application/json`, which it then reads back as.
///
/// ```
/// use tidings_core::codec::BinaryMode;
/// use tidings_core::envelope::{Envelope, ExtensionValue};
///
/// let sent = Envelope::new("oms-service", "order.created")
///     .with_tenant("tenant_abc")
///     .with_json_data(&serde_json::json!({ "order_id": "order_xyz" }))
///     .unwrap();
///
/// let mut headers = Vec::new();
/// BinaryMode::for_each_attribute(&sent, |name, value| {
///     headers.push((format!("ce-{name}"), value.to_string()));
/// });
/// assert!(headers.contains(&("ce-tenantid".to_owned(), "tenant_abc".to_owned())));
///
/// let received = BinaryMode::decode(
///     headers.iter().map(|(name, value)| {
///         (name.strip_prefix("ce-").unwrap(), ExtensionValue::String(value.clone()))
///     }),
///     BinaryMode::content_type(&sent),
///     BinaryMode::body(&sent),
/// )
/// .unwrap();
/// assert_eq!(received, sent);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BinaryMode;

impl BinaryMode {
    /// Calls `f` with every attribute that travels as a header: all of them but
    /// `datacontenttype` (the protocol's content type) and `data` (the body). `time` is an
    /// RFC 3339 string in UTC.
    pub fn for_each_attribute(envelope: &Envelope, mut f: impl FnMut(&str, ExtensionRef<'_>)) {
        f("specversion", ExtensionRef::String(SPEC_VERSION));
        f("id", ExtensionRef::String(&envelope.id));
        f("source", ExtensionRef::String(&envelope.source));
        f("type", ExtensionRef::String(&envelope.ty));
        if let Some(time) = &envelope.time {
            f("time", ExtensionRef::String(&format_time(time)));
        }
        if let Some(schema) = &envelope.dataschema {
            f("dataschema", ExtensionRef::String(schema));
        }
        if let Some(subject) = &envelope.subject {
            f("subject", ExtensionRef::String(subject));
        }
        for (name, value) in envelope.extensions.iter() {
            f(name, value);
        }
    }

    /// The body's content type: `datacontenttype`, or `application/json` for JSON data
    /// without one.
    pub fn content_type(envelope: &Envelope) -> Option<&str> {
        match (&envelope.datacontenttype, &envelope.data) {
            (Some(ty), _) => Some(ty),
            (None, Some(Data::Json(_))) => Some("application/json"),
            (None, _) => None,
        }
    }

    /// The body: the data's bytes, JSON text verbatim; empty without data.
    pub fn body(envelope: &Envelope) -> &[u8] {
        envelope.data.as_ref().map_or(&[], Data::as_bytes)
    }

    /// Rebuilds an envelope from its header attributes (names without the binding's prefix),
    /// the protocol's content type and the body.
    pub fn decode<'a>(
        attributes: impl IntoIterator<Item = (&'a str, ExtensionValue)>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Envelope, DecodeError> {
        let mut fields = Fields::default();
        for (name, value) in attributes {
            fields.insert(name, Scalar::from(value))?;
        }
        if let Some(ty) = content_type {
            fields.insert("datacontenttype", Scalar::String(ty.into()))?;
        }
        let mut envelope = fields.into_envelope()?;
        envelope.data = data(content_type, body)?;
        Ok(envelope)
    }
}

/// Whether a media type (parameters aside) is JSON: binary mode reads a body under such a
/// type as JSON data, and any other as bytes.
///
/// ```
/// use tidings_core::codec::is_json;
///
/// assert!(is_json("application/json; charset=utf-8"));
/// assert!(is_json("application/cloudevents+json"));
/// assert!(!is_json("text/plain"));
/// ```
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn data(content_type: Option<&str>, body: &[u8]) -> Result<Option<Data>, DecodeError> {
    if body.is_empty() {
        return Ok(None);
    }
    if !content_type.is_some_and(is_json) {
        return Ok(Some(Data::Binary(Bytes::copy_from_slice(body))));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| DecodeError::invalid("data", format!("JSON body is not UTF-8: {e}")))?;
    Json::from_text(text)
        .map(|json| Some(Data::Json(json)))
        .map_err(DecodeError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Category;

    fn headers(envelope: &Envelope) -> Vec<(String, ExtensionValue)> {
        let mut out = Vec::new();
        BinaryMode::for_each_attribute(envelope, |name, value| {
            let value = match value {
                ExtensionRef::String(s) => ExtensionValue::String(s.to_owned()),
                ExtensionRef::Bool(b) => ExtensionValue::Bool(b),
                ExtensionRef::Integer(i) => ExtensionValue::Integer(i),
            };
            out.push((name.to_owned(), value));
        });
        out
    }

    fn decode(
        headers: &[(String, ExtensionValue)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Envelope, DecodeError> {
        BinaryMode::decode(
            headers.iter().map(|(n, v)| (n.as_str(), v.clone())),
            content_type,
            body,
        )
    }

    #[test]
    fn binary_mode_round_trip_is_lossless() {
        let mut sent = Envelope::new("oms-service", "order.created")
            .with_subject("order_xyz")
            .with_tenant("tenant_abc")
            .with_correlation_id("req_xyz")
            .with_json_data(&serde_json::json!({ "order_id": "order_xyz", "total": 1000.0 }))
            .unwrap();
        sent.extensions.category = Some(Category::Domain);
        sent.extensions
            .other
            .insert("priority".into(), ExtensionValue::Integer(3));
        sent.dataschema = Some("https://schemas.example/order.created/1".into());
        let got = decode(
            &headers(&sent),
            BinaryMode::content_type(&sent),
            BinaryMode::body(&sent),
        )
        .unwrap();
        assert_eq!(got, sent);
    }

    #[test]
    fn non_json_bodies_stay_opaque_bytes() {
        let sent = Envelope::new("s", "blob.stored")
            .with_data(Data::Binary(Bytes::from_static(b"\x00\xff")));
        let got = decode(
            &headers(&sent),
            BinaryMode::content_type(&sent),
            BinaryMode::body(&sent),
        )
        .unwrap();
        assert_eq!(got, sent);
        let text = decode(&headers(&sent), Some("text/plain"), b"hello").unwrap();
        assert_eq!(text.data, Some(Data::Binary(Bytes::from_static(b"hello"))));
    }

    #[test]
    fn binary_mode_errors_name_the_attribute() {
        let base = |extra: (&str, ExtensionValue)| {
            let mut h: Vec<(String, ExtensionValue)> = [
                ("specversion", "1.0"),
                ("id", "1"),
                ("source", "s"),
                ("type", "t"),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), ExtensionValue::String(v.to_owned())))
            .collect();
            h.push((extra.0.to_owned(), extra.1));
            h
        };
        let cases = [
            (base(("time", "soon".into())), "time"),
            (base(("id", "2".into())), "id"),
            (base(("Bad_Name", "x".into())), "Bad_Name"),
            (base(("tenantid", ExtensionValue::Bool(true))), "tenantid"),
            (base(("data", "x".into())), "data"),
        ];
        for (headers, attribute) in cases {
            let err = decode(&headers, None, b"").unwrap_err();
            assert_eq!(err.attribute(), Some(attribute), "{err}");
        }
        let missing: Vec<_> = base(("subject", "x".into()))
            .into_iter()
            .filter(|(n, _)| n != "source")
            .collect();
        assert_eq!(
            decode(&missing, None, b"").unwrap_err().attribute(),
            Some("source")
        );
        assert!(matches!(
            decode(
                &base(("subject", "x".into())),
                Some("application/json"),
                b"{nope"
            ),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters() {
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/vnd.order+json"));
        assert!(is_json("Text/JSON"));
        assert!(!is_json("application/octet-stream"));
        assert!(!is_json("application/jsonl"));
    }
}
