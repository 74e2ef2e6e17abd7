use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(name = "order.created", version = 0)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
