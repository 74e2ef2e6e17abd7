use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(name = "order.created", category = "command")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
