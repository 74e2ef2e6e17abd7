use serde::{Deserialize, Serialize};

fn v1_to_v2(data: serde_json::Value) -> Result<serde_json::Value, tidings::UpcastError> {
    Ok(data)
}

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(name = "order.placed", version = 3, upcasters(v1_to_v2))]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
