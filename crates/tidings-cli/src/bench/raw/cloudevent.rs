//! What a hand-written service sends and reads: each order as a CloudEvents structured JSON
//! body, built and parsed with serde_json, as our users' services do by hand (`json.dumps` of
//! a dict with a fresh id and time before publishing, `json.loads` of each body before
//! handling it).
//!
//! The raw sides pay for this, as tidings does for its own encoding and decoding: a consumer
//! that does not read what it receives handles nothing.

use serde::{Deserialize, Serialize};

use crate::bench::event::{OrderCreated, TOPIC};

/// The body of one order, and the id it was given.
pub(crate) struct Encoded {
    pub(crate) id: String,
    pub(crate) body: Vec<u8>,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    time: String,
    datacontenttype: &'static str,
    subject: &'a str,
    data: &'a OrderCreated,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "id")]
    _id: String,
    #[serde(rename = "type")]
    _ty: String,
    data: OrderCreated,
}

/// `order` as a CloudEvent with a fresh UUIDv7 id and the time now.
pub(crate) fn encode(order: &OrderCreated) -> Encoded {
    let id = uuid::Uuid::now_v7().to_string();
    let body = serde_json::to_vec(&Outgoing {
        specversion: "1.0",
        id: &id,
        source: "bench",
        ty: TOPIC,
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        datacontenttype: "application/json",
        subject: &order.order_id,
        data: order,
    })
    .expect("an order serializes");
    Encoded { id, body }
}

/// The order a CloudEvent body carries.
pub(crate) fn decode(body: &[u8]) -> anyhow::Result<OrderCreated> {
    Ok(serde_json::from_slice::<Incoming>(body)?.data)
}

#[cfg(test)]
mod tests {
    use tidings::Bus;
    use tidings::codec::{Codec as _, StructuredJson};
    use tidings::memory::MemoryTransport;

    use super::*;

    #[test]
    fn what_the_raw_sides_send_tidings_reads_and_back() {
        let order = OrderCreated::sample(7);
        let encoded = encode(&order);
        assert_eq!(decode(&encoded.body).unwrap(), order);
        let envelope = tidings::codec::decode_json(&encoded.body).unwrap();
        assert_eq!(
            (envelope.id.as_str(), envelope.ty.as_str()),
            (encoded.id.as_str(), TOPIC)
        );
    }

    #[test]
    fn an_order_is_about_500_bytes_as_either_side_encodes_it() {
        let bus = Bus::builder(MemoryTransport::new())
            .source("bench")
            .build()
            .unwrap();
        for order in crate::bench::event::Orders::new(0, 3).events {
            let tidings = StructuredJson
                .encode(&bus.envelope(&order).unwrap())
                .unwrap();
            let raw = encode(&order).body;
            for body in [tidings, raw] {
                assert!((450..=600).contains(&body.len()), "{} bytes", body.len());
            }
        }
    }
}
