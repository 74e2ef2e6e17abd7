//! Any bytes given to the legacy flat-envelope decoder (`application/json` bodies from the
//! producers our users already run): it never panics, and whatever it accepts survives the
//! structured JSON encoding and the legacy one unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::codec::{Codec, Legacy, StructuredJson};

fuzz_target!(|bytes: &[u8]| {
    let Ok(envelope) = Legacy.decode(bytes) else {
        return;
    };
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
    let flat = Legacy
        .encode(&envelope)
        .expect("legacy encodes what it decoded");
    assert_eq!(
        Legacy.decode(&flat).expect("legacy reads what it writes"),
        envelope,
        "legacy round trip"
    );
});
