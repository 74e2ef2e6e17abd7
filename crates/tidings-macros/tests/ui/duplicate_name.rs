use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(name = "order.created", name = "order.paid")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
