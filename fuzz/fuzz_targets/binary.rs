//! Any headers, content type and body given to the binary-mode decoder (AMQP `cloudEvents:`
//! and NATS/HTTP `ce-` headers, after the transport strips the prefix): it never panics, and
//! whatever it accepts survives binary and structured encoding unchanged.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tidings_core::codec::{BinaryMode, Codec, StructuredJson};
use tidings_core::envelope::{Data, ExtensionValue};

#[derive(Debug, Arbitrary)]
enum Value {
    String(String),
    Bool(bool),
    Integer(i64),
}

#[derive(Debug, Arbitrary)]
struct Message {
    headers: Vec<(String, Value)>,
    content_type: Option<String>,
    body: Vec<u8>,
}

fuzz_target!(|message: Message| {
    let headers = message.headers.iter().map(|(name, value)| {
        let value = match value {
            Value::String(s) => ExtensionValue::String(s.clone()),
            Value::Bool(b) => ExtensionValue::Bool(*b),
            Value::Integer(i) => ExtensionValue::Integer(*i),
        };
        (name.as_str(), value)
    });
    let Ok(envelope) = BinaryMode::decode(headers, message.content_type.as_deref(), &message.body)
    else {
        return;
    };
    let mut written = Vec::new();
    BinaryMode::for_each_attribute(&envelope, |name, value| {
        written.push((name.to_owned(), ExtensionValue::from(value)));
    });
    let again = BinaryMode::decode(
        written.iter().map(|(n, v)| (n.as_str(), v.clone())),
        BinaryMode::content_type(&envelope),
        BinaryMode::body(&envelope),
    )
    .expect("binary mode reads what it writes");
    // Binary mode carries the data's media type in the protocol's content type, which is
    // `application/json` for JSON data without a `datacontenttype`: read back, it is set.
    // CloudEvents gives an absent one that meaning, so the two envelopes say the same.
    let mut expected = envelope.clone();
    if expected.datacontenttype.is_none() && matches!(expected.data, Some(Data::Json(_))) {
        expected.datacontenttype = Some("application/json".to_owned());
    }
    // JSON data under a media type that is not JSON travels as the bytes of its text, and
    // comes back as those bytes.
    let media = expected.datacontenttype.as_deref().unwrap_or_default();
    let essence = media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json =
        essence == "application/json" || essence == "text/json" || essence.ends_with("+json");
    if let Some(Data::Json(raw)) = &expected.data
        && !json
    {
        expected.data = Some(Data::Binary(raw.get().as_bytes().to_vec().into()));
    }
    // An empty body is no data: binary mode cannot tell them apart.
    if expected
        .data
        .as_ref()
        .is_some_and(|d| d.as_bytes().is_empty())
    {
        expected.data = None;
    }
    assert_eq!(again, expected, "binary round trip");
    let structured = StructuredJson
        .encode(&envelope)
        .expect("a decoded envelope encodes");
    assert_eq!(
        StructuredJson
            .decode(&structured)
            .expect("structured reads it"),
        envelope,
        "structured round trip"
    );
});
