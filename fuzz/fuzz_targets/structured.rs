//! Any bytes given to the structured JSON decoder (`application/cloudevents+json`, what every
//! broker transport and the gateway receive by default): it never panics, and whatever it
//! accepts survives encoding and decoding again unchanged, in structured mode, in binary mode
//! and, where the data is JSON, in the legacy flat format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::codec::{BinaryMode, Codec, Legacy, StructuredJson};
use tidings_core::envelope::{Data, ExtensionValue};

fuzz_target!(|bytes: &[u8]| {
    let Ok(envelope) = StructuredJson.decode(bytes) else {
        return;
    };
    let encoded = StructuredJson
        .encode(&envelope)
        .expect("a decoded envelope encodes");
    assert_eq!(
        StructuredJson
            .decode(&encoded)
            .expect("what was encoded decodes"),
        envelope,
        "structured round trip"
    );

    let mut headers = Vec::new();
    BinaryMode::for_each_attribute(&envelope, |name, value| {
        headers.push((name.to_owned(), ExtensionValue::from(value)));
    });
    let again = BinaryMode::decode(
        headers.iter().map(|(n, v)| (n.as_str(), v.clone())),
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

    if !matches!(envelope.data, Some(Data::Binary(_))) {
        let flat = Legacy.encode(&envelope).expect("legacy encodes JSON data");
        assert_eq!(
            Legacy.decode(&flat).expect("legacy reads what it writes"),
            envelope,
            "legacy round trip"
        );
    }
});
