//! What every decoder's target checks of an envelope it accepted: that it survives each of
//! tidings' encodings unchanged.

use tidings_core::codec::{
    BinaryMode, Codec, EncodeError, LEGACY_METADATA, Legacy, StructuredJson, is_json,
};
use tidings_core::envelope::{Data, Envelope, ExtensionValue};

/// Panics unless `envelope` comes back unchanged from the structured encoding, from binary
/// mode (up to what binary mode cannot carry, below) and, unless its data is bytes, from the
/// legacy flat format.
pub fn assert_round_trips(envelope: &Envelope) {
    let structured = StructuredJson
        .encode(envelope)
        .expect("a decoded envelope encodes");
    assert_eq!(
        &StructuredJson
            .decode(&structured)
            .expect("structured mode reads what it writes"),
        envelope,
        "structured round trip"
    );

    let mut headers = Vec::new();
    BinaryMode::for_each_attribute(envelope, |name, value| {
        headers.push((name.to_owned(), ExtensionValue::from(value)));
    });
    let again = BinaryMode::decode(
        headers.iter().map(|(n, v)| (n.as_str(), v.clone())),
        BinaryMode::content_type(envelope),
        BinaryMode::body(envelope),
    )
    .expect("binary mode reads what it writes");
    assert_eq!(
        again,
        as_binary_mode_reads_it(envelope),
        "binary round trip"
    );

    if !matches!(envelope.data, Some(Data::Binary(_))) {
        match Legacy.encode(envelope) {
            Ok(flat) => assert_eq!(
                &Legacy.decode(&flat).expect("legacy reads what it writes"),
                envelope,
                "legacy round trip"
            ),
            // A `legacymetadata` extension that is not what the legacy decoder keeps there,
            // or an extension named like an entry the decoder renames (`version`), cannot
            // come back as it went: refusing it is right, dropping it was not.
            Err(EncodeError::Unrepresentable { what, .. })
                if what.contains(LEGACY_METADATA) || what.starts_with("an extension named") => {}
            Err(error) => panic!("legacy does not encode JSON data: {error}"),
        }
    }
}

/// `envelope` as it reads back from binary mode, which carries the data's media type in the
/// protocol's content type and the data as the body.
fn as_binary_mode_reads_it(envelope: &Envelope) -> Envelope {
    let mut expected = envelope.clone();
    // JSON data without a `datacontenttype` goes as `application/json` and comes back with
    // it set: CloudEvents gives an absent one that meaning.
    if expected.datacontenttype.is_none() && matches!(expected.data, Some(Data::Json(_))) {
        expected.datacontenttype = Some("application/json".to_owned());
    }
    // JSON data under a media type that is not JSON goes as the bytes of its text, and comes
    // back as those bytes.
    if let Some(Data::Json(raw)) = &expected.data
        && !expected.datacontenttype.as_deref().is_some_and(is_json)
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
    expected
}
