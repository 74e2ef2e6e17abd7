//! Old services keep sending the flat envelope; tidings reads it as a CloudEvent, and can
//! write it back for consumers that have not moved yet.
//!
//! `cargo run -p tidings-examples --example 04_legacy_envelope`

use tidings::codec::{Codec, Legacy, StructuredJson};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let from_go_service = br#"{
        "id": "evt_123456789",
        "type": "order.created",
        "source": "oms-service",
        "timestamp": "2024-01-15T10:30:00Z",
        "tenant_id": "tenant_abc",
        "correlation_id": "req_xyz",
        "data": {"order_id": "order_xyz", "order_number": "ORD-2024-001", "total": 1000.0},
        "metadata": {"version": "1.0", "user_id": "user_123"}
    }"#;
    let envelope = Legacy.decode(from_go_service)?;
    println!(
        "as CloudEvents: {}",
        String::from_utf8(StructuredJson.encode(&envelope)?)?
    );
    println!(
        "back to legacy: {}",
        String::from_utf8(Legacy.encode(&envelope)?)?
    );

    match StructuredJson.decode(br#"{"specversion":"1.0","id":"1","source":"s"}"#) {
        Err(e) => println!("a broken event says what is wrong: {e}"),
        Ok(_) => unreachable!(),
    }
    Ok(())
}
