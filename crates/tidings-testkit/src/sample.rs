//! Sample events for benchmarks and tests, from the users' e-commerce catalogue.

use tidings::envelope::Envelope;

/// An `order.created` event (under `topic`) whose structured encoding is about 500 bytes:
/// the event every transport's benchmark moves, so that figures compare.
///
/// ```
/// use tidings::codec::{Codec, StructuredJson};
///
/// let event = tidings_testkit::sample::order(7, "order.created");
/// let size = StructuredJson.encode(&event).unwrap().len();
/// assert!((450..=600).contains(&size), "{size} bytes");
/// ```
pub fn order(seq: u64, topic: &str) -> Envelope {
    Envelope::new("oms-service", topic)
        .with_subject(format!("order-{}", seq % 64))
        .with_tenant("tenant_abc")
        .with_correlation_id("req_7f3a9c")
        .with_json_data(&serde_json::json!({
            "order_id": format!("order-{seq}"),
            "customer_id": "cust_0042",
            "currency": "EUR",
            "total": 1000.0,
            "items": [
                { "sku": "SKU-1001", "quantity": 2, "price": 250.0 },
                { "sku": "SKU-2002", "quantity": 1, "price": 500.0 }
            ],
            "shipping_address": { "city": "Lyon", "postcode": "69001", "country": "FR" },
            "seq": seq
        }))
        .expect("a JSON object serializes")
}
