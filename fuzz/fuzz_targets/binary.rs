//! Any headers, content type and body given to the binary-mode decoder (AMQP `cloudEvents:`
//! and NATS/HTTP `ce-` headers, after the transport strips the prefix): it never panics, and
//! whatever it accepts survives each encoding unchanged ([`assert_round_trips`]).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tidings_core::codec::BinaryMode;
use tidings_core::envelope::ExtensionValue;
use tidings_fuzz::assert_round_trips;

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
    if let Ok(envelope) =
        BinaryMode::decode(headers, message.content_type.as_deref(), &message.body)
    {
        assert_round_trips(&envelope);
    }
});
