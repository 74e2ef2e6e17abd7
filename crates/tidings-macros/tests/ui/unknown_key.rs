use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(name = "order.created", topic = "orders")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
