use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::scalar::Scalar;
use super::{Codec, DecodeError, EncodeError, format_time, parse_time};
use crate::envelope::{
    Data, Envelope, ExtensionRef, Extensions, Json, SPEC_VERSION, is_valid_extension_name,
};

/// CloudEvents 1.0 structured JSON: `application/cloudevents+json`.
///
/// JSON bodies are written verbatim under `data`, binary ones base64-encoded under
/// `data_base64`. Decoding checks every attribute and reports the first one at fault.
///
/// ```
/// use tidings_core::codec::{Codec, DecodeError, StructuredJson};
///
/// let err = StructuredJson
///     .decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}"#)
///     .unwrap_err();
/// assert_eq!(err.attribute(), Some("time"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StructuredJson;

/// The media type of structured CloudEvents JSON.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

impl Codec for StructuredJson {
    fn content_type(&self) -> &'static str {
        CONTENT_TYPE
    }

    fn encode(&self, envelope: &Envelope) -> Result<Vec<u8>, EncodeError> {
        let data = envelope.data.as_ref().map_or(0, |data| match data {
            Data::Json(raw) => raw.get().len(),
            Data::Binary(bytes) => bytes.len().div_ceil(3) * 4,
        });
        let mut out = Vec::with_capacity(ATTRIBUTES_ROOM + data);
        write_envelope(envelope, &mut out);
        Ok(out)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Envelope, DecodeError> {
        // The body is checked to be UTF-8 once, as a whole, so that the parser takes each
        // attribute and the data as they are instead of checking them one by one. A body
        // that is not UTF-8 is read as bytes, for the parser to say where it goes wrong.
        match std::str::from_utf8(bytes) {
            Ok(text) => read(serde_json::Deserializer::from_str(text))?.into_envelope(),
            Err(_) => read(serde_json::Deserializer::from_slice(bytes))?.into_envelope(),
        }
    }
}

impl StructuredJson {
    /// Decodes `bytes` as [`decode`](Codec::decode) does and reads their `data` into a `T`
    /// in the same pass.
    ///
    /// [`decode`](Codec::decode) keeps the data as text, which means reading it to its end
    /// to find where it ends; a handler then reads that text again into its type. Here the
    /// data is read once, straight into the type, and its text is found from where the
    /// members around it start: the envelope is the same as `decode`'s, data text included.
    ///
    /// `None` when that does not apply: the body is not UTF-8, not a valid event, has no
    /// JSON `data`, or data a `T` does not read; or `data`, or the member after it, is
    /// named with escapes (then where the data ends is not known without reading it
    /// again). Decode such a body with [`decode`](Codec::decode), which says what is wrong
    /// with it, and read the data from the envelope.
    ///
    /// ```
    /// use tidings_core::codec::{Codec, StructuredJson};
    ///
    /// let body = br#"{"specversion":"1.0","id":"1","source":"oms","type":"order.created",
    ///     "data": {"order_id": "o-1", "total": 12.5} }"#;
    /// let (envelope, data) = StructuredJson.decode_with_data::<serde_json::Value>(body).unwrap();
    /// assert_eq!(envelope, StructuredJson.decode(body).unwrap());
    /// assert_eq!(data["total"], 12.5);
    ///
    /// let no_data = br#"{"specversion":"1.0","id":"1","source":"oms","type":"order.created"}"#;
    /// assert!(StructuredJson.decode_with_data::<serde_json::Value>(no_data).is_none());
    /// ```
    pub fn decode_with_data<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<(Envelope, T)> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields: Fields<'_, T> = read(serde_json::Deserializer::from_str(text)).ok()?;
        let data = fields.data.take()?;
        let span = fields.data_span.take()?.text(text)?;
        let envelope = fields.build(Some(span)).ok()?;
        Some((envelope, data))
    }
}

/// The attributes and data of one JSON object, borrowed from the input where they can be;
/// the data read as a `D`.
fn read<'de, R: serde_json::de::Read<'de>, D: Deserialize<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<Fields<'de, D>, DecodeError> {
    let fields = de
        .deserialize_map(FieldsVisitor(PhantomData))
        .map_err(DecodeError::Json)?;
    de.end().map_err(DecodeError::Json)?;
    Ok(fields)
}

/// Where the data is in the text of the object it was read from: after its member name,
/// and before the name of the member that follows it or the object's end. Both names are
/// borrowed from that text, so their addresses say where they are in it.
#[derive(Clone, Copy)]
struct DataSpan<'de> {
    /// The name `data`.
    name: &'de str,
    /// What follows the data.
    next: Next<'de>,
}

/// What follows the data in its object.
#[derive(Clone, Copy)]
enum Next<'de> {
    /// A member whose name was written without escapes, borrowed from the input.
    Member(&'de str),
    /// A member whose name was written with escapes: not borrowed, so not located.
    Escaped,
    /// The end of the object.
    End,
}

/// JSON's whitespace: what may stand between a name, its colon, its value and a comma.
const WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

impl<'de> DataSpan<'de> {
    /// The text of the data in `text`, the whole input the object was parsed from without
    /// error: its value is what stands between `"data"`, whitespace, `:` and whitespace on
    /// one side, and whitespace, `,` and whitespace before the next name's opening quote
    /// (or whitespace, the object's closing brace and whitespace, the input's end) on the
    /// other. `None` where the names are not where they should be in `text`.
    fn text(self, text: &'de str) -> Option<&'de str> {
        let offset = |part: &str| (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize);
        let after_name = text.get(offset(self.name)? + self.name.len()..)?;
        let value = after_name
            .strip_prefix('"')?
            .trim_start_matches(WHITESPACE)
            .strip_prefix(':')?
            .trim_start_matches(WHITESPACE);
        let start = text.len() - value.len();
        let before_next = match self.next {
            Next::Member(name) => text
                .get(..offset(name)?)?
                .strip_suffix('"')?
                .trim_end_matches(WHITESPACE)
                .strip_suffix(',')?,
            Next::End => text.trim_end_matches(WHITESPACE).strip_suffix('}')?,
            Next::Escaped => return None,
        };
        text.get(start..before_next.trim_end_matches(WHITESPACE).len())
    }
}

/// Room for the attributes of a typical event (names, ids, source, type, time, trace
/// context) before the data: one allocation for the whole body.
const ATTRIBUTES_ROOM: usize = 512;

/// Writes `envelope` as one JSON object, member by member, in the order the attributes are
/// declared, `data` last.
///
/// Written straight into the buffer rather than through serde_json's map serializer: an
/// envelope is a flat object of strings with a few known names, and the serializer's state
/// machine, the time formatted into a `String` of its own and the data passed through
/// `RawValue`'s serializer cost more than the rest of publishing. Strings still go through
/// serde_json's own escaping ([`string`]); the test
/// `the_direct_writer_writes_what_serde_json_writes` holds the output to what the
/// serializer writes for every envelope it generates.
fn write_envelope(envelope: &Envelope, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"specversion\":\"");
    out.extend_from_slice(SPEC_VERSION.as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    string(out, &envelope.id);
    out.extend_from_slice(b",\"source\":");
    string(out, &envelope.source);
    out.extend_from_slice(b",\"type\":");
    string(out, &envelope.ty);
    if let Some(time) = &envelope.time {
        out.extend_from_slice(b",\"time\":");
        time_string(out, time);
    }
    for (name, value) in [
        ("datacontenttype", &envelope.datacontenttype),
        ("dataschema", &envelope.dataschema),
        ("subject", &envelope.subject),
    ] {
        if let Some(value) = value {
            member(out, name);
            string(out, value);
        }
    }
    for (name, value) in envelope.extensions.iter() {
        member(out, name);
        match value {
            ExtensionRef::String(s) => string(out, s),
            ExtensionRef::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            ExtensionRef::Integer(i) => {
                write!(out, "{i}").expect("writing to a Vec<u8> does not fail");
            }
        }
    }
    match &envelope.data {
        Some(Data::Json(raw)) => {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(raw.get().as_bytes());
        }
        Some(Data::Binary(bytes)) => {
            out.extend_from_slice(b",\"data_base64\":\"");
            let start = out.len();
            out.resize(start + bytes.len().div_ceil(3) * 4, 0);
            let written = BASE64
                .encode_slice(bytes, &mut out[start..])
                .expect("room for the padded base64 of the data was made");
            out.truncate(start + written);
            out.push(b'"');
        }
        None => {}
    }
    out.push(b'}');
}

/// Writes `,"name":`.
fn member(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    string(out, name);
    out.push(b':');
}

/// Writes `text` as a JSON string. Most attributes (ids, names, times, trace context) hold
/// nothing that needs escaping and are copied as they are; the others go through
/// serde_json's escaping, so both write exactly what `serde_json` would.
fn string(out: &mut Vec<u8>, text: &str) {
    // Without a short circuit, the check is a reduction the compiler does 16 bytes at a time.
    let needs_escaping = text.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escaping {
        serde::Serializer::serialize_str(&mut serde_json::Serializer::new(out), text)
            .expect("writing to a Vec<u8> does not fail");
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Writes `time` as a JSON string, as [`format_time`] formats it: RFC 3339 in UTC with `Z`,
/// and as many fractional digits (none, 3, 6 or 9) as the time needs.
///
/// Digit by digit for the times an envelope carries (years 0 to 9999, no leap second):
/// chrono's formatter goes through `fmt` and a `String` of its own for each, which cost as
/// much as the rest of the attributes together. Other times go through chrono.
fn time_string(out: &mut Vec<u8>, time: &chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike as _, Timelike as _};

    let nanos = time.nanosecond();
    let year = time.year();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return string(out, &format_time(time));
    }
    fn digits(out: &mut Vec<u8>, value: u32, width: u32) {
        for place in (0..width).rev() {
            out.push(b'0' + (value / 10u32.pow(place) % 10) as u8);
        }
    }
    out.push(b'"');
    digits(out, year.unsigned_abs(), 4);
    for (separator, value) in [
        (b'-', time.month()),
        (b'-', time.day()),
        (b'T', time.hour()),
        (b':', time.minute()),
        (b':', time.second()),
    ] {
        out.push(separator);
        digits(out, value, 2);
    }
    if nanos != 0 {
        out.push(b'.');
        match (nanos % 1_000_000, nanos % 1_000) {
            (0, _) => digits(out, nanos / 1_000_000, 3),
            (_, 0) => digits(out, nanos / 1_000, 6),
            _ => digits(out, nanos, 9),
        }
    }
    out.extend_from_slice(b"Z\"");
}

/// Attributes as read, before validation, borrowed from the input where they are written
/// without escapes: only what the envelope keeps is copied, once. The binary mode fills it
/// from protocol headers.
pub(crate) struct Fields<'de, D = &'de RawValue> {
    specversion: Option<Scalar<'de>>,
    id: Option<Scalar<'de>>,
    source: Option<Scalar<'de>>,
    ty: Option<Scalar<'de>>,
    time: Option<Scalar<'de>>,
    datacontenttype: Option<Scalar<'de>>,
    dataschema: Option<Scalar<'de>>,
    subject: Option<Scalar<'de>>,
    /// As [`decode`](Codec::decode) reads it, its text borrowed from the input: copied
    /// once, into the envelope, after every attribute has been found valid. As
    /// [`decode_with_data`](StructuredJson::decode_with_data) reads it, the handler's type.
    data: Option<D>,
    /// Where the data was, when it was named without escapes.
    data_span: Option<DataSpan<'de>>,
    data_base64: Option<Scalar<'de>>,
    extensions: Vec<(Cow<'de, str>, Scalar<'de>)>,
    duplicate: Option<String>,
}

impl<D> Default for Fields<'_, D> {
    fn default() -> Self {
        Self {
            specversion: None,
            id: None,
            source: None,
            ty: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            subject: None,
            data: None,
            data_span: None,
            data_base64: None,
            extensions: Vec::new(),
            duplicate: None,
        }
    }
}

/// Reads an object's members into [`Fields`], its data as a `D`.
struct FieldsVisitor<D>(PhantomData<fn() -> D>);

impl<'de, D: Deserialize<'de>> Visitor<'de> for FieldsVisitor<D> {
    type Value = Fields<'de, D>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvent JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de, D>, A::Error> {
        let mut fields = Fields::default();
        // The data's name, until the name after it (or the object's end) is known.
        let mut data_name: Option<&'de str> = None;
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            if let Some(name) = data_name.take() {
                let next = match key {
                    Cow::Borrowed(next) => Next::Member(next),
                    Cow::Owned(_) => Next::Escaped,
                };
                fields.data_span = Some(DataSpan { name, next });
            }
            let slot = match &*key {
                "specversion" => &mut fields.specversion,
                "id" => &mut fields.id,
                "source" => &mut fields.source,
                "type" => &mut fields.ty,
                "time" => &mut fields.time,
                "datacontenttype" => &mut fields.datacontenttype,
                "dataschema" => &mut fields.dataschema,
                "subject" => &mut fields.subject,
                "data_base64" => &mut fields.data_base64,
                "data" => {
                    let data: D = map.next_value()?;
                    if fields.data.replace(data).is_some() {
                        fields.duplicate.get_or_insert(key.into_owned());
                    } else if let Cow::Borrowed(name) = key {
                        data_name = Some(name);
                    }
                    continue;
                }
                _ => {
                    let value: Scalar<'de> = map.next_value()?;
                    if fields.extensions.iter().any(|(k, _)| *k == key) {
                        fields.duplicate.get_or_insert(key.to_string());
                    }
                    fields.extensions.push((key, value));
                    continue;
                }
            };
            let value: Scalar<'de> = map.next_value()?;
            if slot.replace(value).is_some() {
                fields.duplicate.get_or_insert(key.into_owned());
            }
        }
        if let Some(name) = data_name {
            fields.data_span = Some(DataSpan {
                name,
                next: Next::End,
            });
        }
        Ok(fields)
    }
}

/// An attribute's name, borrowed from the input unless it is written with escapes: the
/// common names need no allocation of their own.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute name")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }

            fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }

            fn visit_string<E>(self, name: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name)))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

fn required<'de>(
    name: &'static str,
    value: Option<Scalar<'de>>,
) -> Result<Cow<'de, str>, DecodeError> {
    match optional(name, value)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(DecodeError::invalid(name, "must not be empty")),
        None => Err(DecodeError::MissingAttribute(name)),
    }
}

fn optional<'de>(
    name: &'static str,
    value: Option<Scalar<'de>>,
) -> Result<Option<Cow<'de, str>>, DecodeError> {
    Ok(value.map(|v| v.into_str(name)).transpose()?.flatten())
}

fn owned(value: Option<Cow<'_, str>>) -> Option<String> {
    value.map(Cow::into_owned)
}

impl<'de, D> Fields<'de, D> {
    /// Records attribute `name` as the structured format would read it; `data` and
    /// `data_base64` are not attributes and are refused.
    pub(crate) fn insert(&mut self, name: &str, value: Scalar<'de>) -> Result<(), DecodeError> {
        let slot = match name {
            "specversion" => &mut self.specversion,
            "id" => &mut self.id,
            "source" => &mut self.source,
            "type" => &mut self.ty,
            "time" => &mut self.time,
            "datacontenttype" => &mut self.datacontenttype,
            "dataschema" => &mut self.dataschema,
            "subject" => &mut self.subject,
            "data" | "data_base64" => {
                return Err(DecodeError::invalid(
                    name,
                    "the body travels as the message body, not as a header",
                ));
            }
            _ => {
                if self.extensions.iter().any(|(k, _)| k == name) {
                    self.duplicate.get_or_insert(name.to_owned());
                }
                self.extensions.push((Cow::Owned(name.to_owned()), value));
                return Ok(());
            }
        };
        if slot.replace(value).is_some() {
            self.duplicate.get_or_insert(name.to_owned());
        }
        Ok(())
    }

    /// The envelope, its JSON data (if any) `data`, once every attribute is found valid.
    fn build(self, data: Option<&str>) -> Result<Envelope, DecodeError> {
        if let Some(name) = self.duplicate {
            return Err(DecodeError::DuplicateAttribute(name));
        }
        let specversion = required("specversion", self.specversion)?;
        if specversion != SPEC_VERSION {
            return Err(DecodeError::UnsupportedSpecVersion(
                specversion.into_owned(),
            ));
        }
        let id = required("id", self.id)?.into_owned();
        let source = required("source", self.source)?.into_owned();
        let ty = required("type", self.ty)?.into_owned();
        let time = optional("time", self.time)?
            .map(|t| parse_time("time", &t))
            .transpose()?;
        let datacontenttype = owned(optional("datacontenttype", self.datacontenttype)?);
        let dataschema = owned(optional("dataschema", self.dataschema)?);
        let subject = owned(optional("subject", self.subject)?);

        let mut extensions = Extensions::default();
        for (name, value) in self.extensions {
            if !is_valid_extension_name(&name) {
                return Err(DecodeError::invalid(
                    name.into_owned(),
                    "not a CloudEvents attribute name (lower-case letters and digits, 1 to 20)",
                ));
            }
            if let Some(value) = value.into_extension(&name)? {
                extensions
                    .set(&name, value)
                    .map_err(|e| DecodeError::invalid(name.to_string(), e.to_string()))?;
            }
        }

        let data_base64 = optional("data_base64", self.data_base64)?;
        let data = match (data, data_base64) {
            (Some(_), Some(_)) => return Err(DecodeError::ConflictingData),
            (Some(text), None) => Some(Data::Json(Json::read(text))),
            (None, Some(b64)) => Some(Data::Binary(Bytes::from(
                BASE64
                    .decode(b64.as_bytes())
                    .map_err(|e| DecodeError::invalid("data_base64", e.to_string()))?,
            ))),
            (None, None) => None,
        };

        Ok(Envelope {
            id,
            source,
            ty,
            time,
            datacontenttype,
            dataschema,
            subject,
            extensions,
            data,
        })
    }
}

impl Fields<'_> {
    /// The envelope, once every attribute is found valid.
    pub(crate) fn into_envelope(mut self) -> Result<Envelope, DecodeError> {
        let data = self.data.take();
        self.build(data.map(RawValue::get))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Category, ExtensionValue};

    fn full_envelope() -> Envelope {
        let mut env = Envelope::new("oms-service", "order.created")
            .with_subject("order_xyz")
            .with_tenant("tenant_abc")
            .with_correlation_id("req_xyz")
            .with_causation_id("evt_0")
            .with_data_version("2")
            .with_json_data(&serde_json::json!({"order_id": "order_xyz", "total": 1000.0}))
            .unwrap();
        env.dataschema = Some("https://schemas.example/order.created/2".into());
        env.extensions.category = Some(Category::Domain);
        env.extensions.partitionkey = Some("order_xyz".into());
        env.extensions.traceparent =
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        env.extensions.tracestate = Some("vendor=1".into());
        env.extensions
            .other
            .insert("priority".into(), ExtensionValue::Integer(3));
        env.extensions
            .other
            .insert("replayed".into(), ExtensionValue::Bool(true));
        env
    }

    /// What the encoder wrote through serde_json's map serializer before it wrote the JSON
    /// itself: the reference the direct writer is held to.
    fn serde_json_reference(envelope: &Envelope) -> Vec<u8> {
        use serde::ser::{SerializeMap, Serializer};

        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut map = ser.serialize_map(None).unwrap();
        map.serialize_entry("specversion", SPEC_VERSION).unwrap();
        map.serialize_entry("id", &envelope.id).unwrap();
        map.serialize_entry("source", &envelope.source).unwrap();
        map.serialize_entry("type", &envelope.ty).unwrap();
        if let Some(time) = &envelope.time {
            map.serialize_entry("time", &format_time(time)).unwrap();
        }
        for (name, value) in [
            ("datacontenttype", &envelope.datacontenttype),
            ("dataschema", &envelope.dataschema),
            ("subject", &envelope.subject),
        ] {
            if let Some(value) = value {
                map.serialize_entry(name, value).unwrap();
            }
        }
        for (name, value) in envelope.extensions.iter() {
            match value {
                ExtensionRef::String(s) => map.serialize_entry(name, s),
                ExtensionRef::Bool(b) => map.serialize_entry(name, &b),
                ExtensionRef::Integer(i) => map.serialize_entry(name, &i),
            }
            .unwrap();
        }
        match &envelope.data {
            Some(Data::Json(json)) => map
                .serialize_entry(
                    "data",
                    serde_json::from_str::<&RawValue>(json.get()).unwrap(),
                )
                .unwrap(),
            Some(Data::Binary(bytes)) => map
                .serialize_entry("data_base64", &BASE64.encode(bytes))
                .unwrap(),
            None => {}
        }
        SerializeMap::end(map).unwrap();
        out
    }

    /// Any text, control characters included: `any::<String>()` alone draws none, and they
    /// are what serde_json escapes as `\n` or `\u00XX`.
    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
            "[\\x00-\\x7f]{0,16}",
        ]
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any_text().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(any_text(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_envelope() -> impl proptest::strategy::Strategy<Value = Envelope> {
        use proptest::prelude::*;
        let text = || any_text().prop_filter("attributes are not empty", |s| !s.is_empty());
        // Any time an envelope can hold: years before 0 and after 9999, leap seconds
        // (nanoseconds past 10⁹ on a minute's last second), whole milliseconds and
        // microseconds as well as any nanosecond.
        let nanos = prop_oneof![
            Just(0u32),
            (0u32..1_000).prop_map(|ms| ms * 1_000_000),
            (0u32..1_000_000).prop_map(|us| us * 1_000),
            0u32..1_000_000_000,
        ];
        let time = prop_oneof![
            4 => (-62_167_219_200i64..=253_402_300_799, nanos)
                .prop_map(|(secs, nanos)| chrono::DateTime::from_timestamp(secs, nanos).unwrap()),
            1 => (-8_334_601_228_800i64..=8_210_266_876_799, 0u32..1_000_000_000)
                .prop_map(|(secs, nanos)| chrono::DateTime::from_timestamp(secs, nanos).unwrap()),
            1 => (0i64..=4_000_000_000, 1_000_000_000u32..2_000_000_000)
                .prop_map(|(minute, nanos)| {
                    chrono::DateTime::from_timestamp(minute * 60 + 59, nanos).unwrap()
                }),
        ];
        let data = prop_oneof![
            Just(None),
            any_json().prop_map(|v| Some(Data::json(&v).unwrap())),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| Some(Data::Binary(b.into()))),
        ];
        let other = prop_oneof![
            any_text().prop_map(ExtensionValue::String),
            any::<bool>().prop_map(ExtensionValue::Bool),
            any::<i64>().prop_map(ExtensionValue::Integer),
        ];
        (
            (text(), text(), text(), proptest::option::of(time)),
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            (
                proptest::option::of(any_text()),
                proptest::option::of(any_text()),
                proptest::option::of(any_text()),
                prop::collection::btree_map(any_text(), other, 0..4),
            ),
            data,
        )
            .prop_map(
                |((id, source, ty, time), contenttype, schema, subject, ext, data)| {
                    let (tenant, trace, version, other) = ext;
                    let mut envelope = Envelope::new(source, ty);
                    envelope.id = id;
                    envelope.time = time;
                    envelope.datacontenttype = contenttype;
                    envelope.dataschema = schema;
                    envelope.subject = subject;
                    envelope.extensions.tenantid = tenant;
                    envelope.extensions.traceparent = trace;
                    envelope.extensions.dataversion = version;
                    envelope.extensions.category = Some(Category::Integration);
                    envelope.extensions.other.extend(other);
                    envelope.data = data;
                    envelope
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Every string escaped as serde_json escapes it, numbers and booleans written as it
        /// writes them, members in the same order: byte for byte the same body.
        #[test]
        fn the_direct_writer_writes_what_serde_json_writes(envelope in any_envelope()) {
            let direct = StructuredJson.encode(&envelope).unwrap();
            let reference = serde_json_reference(&envelope);
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&reference)
            );
        }
    }

    /// `body` with its members laid out again: sorted by name (so that `data` comes before
    /// others) or with `data` moved last, and `space` around every token of the object.
    fn laid_out_again(body: &[u8], data_last: bool, space: &str) -> Vec<u8> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).unwrap();
        let mut members: Vec<_> = object.into_iter().collect();
        if data_last {
            members.sort_by_key(|(name, _)| name == "data");
        }
        let members: Vec<String> = members
            .iter()
            .map(|(name, value)| {
                let (name, value) = (
                    serde_json::to_string(name).unwrap(),
                    serde_json::to_string(value).unwrap(),
                );
                format!("{space}{name}{space}:{space}{value}{space}")
            })
            .collect();
        format!("{space}{{{}}}{space}", members.join(",")).into_bytes()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Reading the data with the envelope gives the envelope `decode` gives, its data
        /// text included, and the data as reading that text gives it; wherever the data
        /// stands among the members, whatever whitespace surrounds it.
        #[test]
        fn reading_the_data_with_the_envelope_gives_what_decoding_gives(
            envelope in any_envelope(),
        ) {
            let direct = StructuredJson.encode(&envelope).unwrap();
            let bodies = [
                laid_out_again(&direct, false, " \n"),
                laid_out_again(&direct, true, "\t\r "),
                direct,
            ];
            for body in bodies {
                let read = StructuredJson.decode_with_data::<serde_json::Value>(&body);
                let Ok(decoded) = StructuredJson.decode(&body) else {
                    // An extension name the generator drew that is not a valid one.
                    proptest::prop_assert!(read.is_none());
                    continue;
                };
                match (&decoded.data, read) {
                    (Some(Data::Json(json)), Some((envelope, data))) => {
                        let reference: serde_json::Value = serde_json::from_str(json.get()).unwrap();
                        proptest::prop_assert_eq!(&envelope, &decoded);
                        proptest::prop_assert_eq!(data, reference);
                    }
                    (Some(Data::Json(_)), None) => {
                        proptest::prop_assert!(false, "JSON data not read with the envelope");
                    }
                    (_, read) => proptest::prop_assert!(read.is_none()),
                }
            }
        }
    }

    #[test]
    fn data_named_with_escapes_or_followed_by_such_a_name_is_left_to_decode() {
        for body in [
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","d\u0061ta":{"a":1}}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","data":{"a":1},"typ\u0065":"t"}"#,
        ] {
            let decoded = StructuredJson.decode(body.as_bytes()).unwrap();
            assert_eq!(decoded.data.unwrap().as_bytes(), br#"{"a":1}"#);
            assert!(
                StructuredJson
                    .decode_with_data::<serde_json::Value>(body.as_bytes())
                    .is_none()
            );
        }
    }

    #[test]
    fn data_the_type_does_not_read_or_a_body_that_is_no_event_is_left_to_decode() {
        let body = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":1}}"#;
        assert!(StructuredJson.decode_with_data::<Vec<u8>>(body).is_none());
        let no_type = br#"{"specversion":"1.0","id":"1","source":"s","data":{"a":1}}"#;
        assert!(
            StructuredJson
                .decode_with_data::<serde_json::Value>(no_type)
                .is_none()
        );
        let both = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}"#;
        assert!(
            StructuredJson
                .decode_with_data::<serde_json::Value>(both)
                .is_none()
        );
    }

    #[test]
    fn structured_round_trip_is_lossless() {
        let env = full_envelope();
        let bytes = StructuredJson.encode(&env).unwrap();
        assert_eq!(StructuredJson.decode(&bytes).unwrap(), env);
    }

    #[test]
    fn binary_data_travels_as_base64() {
        let env = Envelope::new("s", "blob.stored")
            .with_data(Data::Binary(Bytes::from_static(b"\x00\x01\xffbinary")));
        let bytes = StructuredJson.encode(&env).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(json.get("data").is_none());
        assert!(json["data_base64"].is_string());
        assert_eq!(StructuredJson.decode(&bytes).unwrap(), env);
    }

    #[test]
    fn json_body_is_kept_verbatim() {
        let text = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"b":1,  "a":[1.50]}}"#;
        let env = StructuredJson.decode(text).unwrap();
        let Some(Data::Json(raw)) = &env.data else {
            panic!("json data expected")
        };
        assert_eq!(raw.get(), r#"{"b":1,  "a":[1.50]}"#);
    }

    #[test]
    fn time_is_written_in_utc_with_z() {
        let env = StructuredJson
            .decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2024-01-15T12:30:00+02:00"}"#)
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&StructuredJson.encode(&env).unwrap()).unwrap();
        assert_eq!(json["time"], "2024-01-15T10:30:00Z");
    }

    fn decode_err(text: &str) -> DecodeError {
        StructuredJson.decode(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn decoding_errors_name_the_attribute() {
        let cases = [
            (r#"{"id":"1","source":"s","type":"t"}"#, "specversion"),
            (
                r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#,
                "specversion",
            ),
            (r#"{"specversion":"1.0","source":"s","type":"t"}"#, "id"),
            (
                r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#,
                "id",
            ),
            (
                r#"{"specversion":"1.0","id":7,"source":"s","type":"t"}"#,
                "id",
            ),
            (r#"{"specversion":"1.0","id":"1","type":"t"}"#, "source"),
            (r#"{"specversion":"1.0","id":"1","source":"s"}"#, "type"),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"x"}"#,
                "time",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":{}}"#,
                "subject",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","Bad_Name":"x"}"#,
                "Bad_Name",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","ext":1.5}"#,
                "ext",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","ext":9999999999}"#,
                "ext",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","category":"misc"}"#,
                "category",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","tenantid":true}"#,
                "tenantid",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}"#,
                "data",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}"#,
                "data_base64",
            ),
            (
                r#"{"specversion":"1.0","id":"1","id":"2","source":"s","type":"t"}"#,
                "id",
            ),
        ];
        for (text, attribute) in cases {
            let err = decode_err(text);
            assert_eq!(err.attribute(), Some(attribute), "{text}: {err}");
        }
    }

    #[test]
    fn malformed_json_is_a_json_error() {
        assert!(matches!(decode_err("{"), DecodeError::Json(_)));
        assert!(matches!(decode_err("[]"), DecodeError::Json(_)));
        assert!(matches!(decode_err("\"x\""), DecodeError::Json(_)));
        assert!(matches!(
            decode_err(r#"{"specversion":"1.0","id":"1","source":"s","type":"t"} trailing"#),
            DecodeError::Json(_)
        ));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_a_json_error_that_says_where() {
        for body in [
            &b"{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"t\"}"[..],
            &b"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"data\":\"\xc3\"}"[..],
        ] {
            let Err(DecodeError::Json(error)) = StructuredJson.decode(body) else {
                panic!("decoded a body that is not UTF-8");
            };
            assert!(error.column() > 0, "{error}");
        }
    }

    #[test]
    fn attributes_and_data_written_with_escapes_read_as_unescaped() {
        let body = br#"{"specversion":"1\u002e0","id":"a\"b","source":"s\/t","type":"t","time":"2024-01-15T10:30:00\u005a","ext\u0061":"\u00e9","data":{"k":"\n"}}"#;
        let envelope = StructuredJson.decode(body).unwrap();
        assert_eq!(
            (envelope.id.as_str(), envelope.source.as_str()),
            ("a\"b", "s/t")
        );
        assert!(envelope.time.is_some());
        assert_eq!(
            envelope.extensions.other.get("exta"),
            Some(&ExtensionValue::String("é".into()))
        );
        assert_eq!(envelope.data.unwrap().as_bytes(), br#"{"k":"\n"}"#);
    }

    #[test]
    fn null_attributes_read_as_absent() {
        let env = StructuredJson
            .decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":null,"tenantid":null,"data":null}"#)
            .unwrap();
        assert_eq!(env.subject, None);
        assert_eq!(env.extensions.tenantid, None);
        // `data` is the body, not an attribute: an explicit JSON null is kept.
        assert_eq!(env.data, Some(Data::json(&()).unwrap()));
    }
}
