use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
