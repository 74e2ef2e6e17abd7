//! Any bytes given to the structured JSON decoder (`application/cloudevents+json`, what every
//! broker transport and the gateway receive by default): it never panics, and whatever it
//! accepts survives each encoding unchanged ([`assert_round_trips`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::codec::{Codec, StructuredJson};
use tidings_fuzz::assert_round_trips;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(envelope) = StructuredJson.decode(bytes) {
        assert_round_trips(&envelope);
    }
});
