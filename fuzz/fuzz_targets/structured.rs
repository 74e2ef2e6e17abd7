//! Any bytes given to the structured JSON decoder (`application/cloudevents+json`, what every
//! broker transport and the gateway receive by default): it never panics, whatever it
//! accepts survives each encoding unchanged ([`assert_round_trips`]), and reading the data
//! with the envelope in one pass (what a typed handler's delivery does) gives the same
//! envelope and the data its text reads as, or leaves the body to the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::codec::{Codec, StructuredJson};
use tidings_core::envelope::Data;
use tidings_fuzz::assert_round_trips;

fuzz_target!(|bytes: &[u8]| {
    let read = StructuredJson.decode_with_data::<serde_json::Value>(bytes);
    match StructuredJson.decode(bytes) {
        Ok(envelope) => {
            if let Some((same, data)) = read {
                assert_eq!(same, envelope, "the envelope read with its data");
                let Some(Data::Json(json)) = &envelope.data else {
                    panic!("data read from an envelope without JSON data");
                };
                let text: serde_json::Value =
                    serde_json::from_str(json.get()).expect("the data's text is JSON");
                assert_eq!(data, text, "the data read with the envelope");
            }
            assert_round_trips(&envelope);
        }
        Err(_) => assert!(read.is_none(), "a body decode refuses read with its data"),
    }
});
