//! Any bytes given to the legacy flat-envelope decoder (`application/json` bodies from the
//! producers our users already run): it never panics, and whatever it accepts survives each
//! encoding unchanged ([`assert_round_trips`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::codec::{Codec, Legacy};
use tidings_fuzz::assert_round_trips;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(envelope) = Legacy.decode(bytes) {
        assert_round_trips(&envelope);
    }
});
