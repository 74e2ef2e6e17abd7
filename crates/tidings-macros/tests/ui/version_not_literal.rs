use serde::{Deserialize, Serialize};

const V: u32 = 2;

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(name = "order.created", version = V)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
