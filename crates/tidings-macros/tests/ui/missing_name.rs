use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(version = 1)]
struct OrderCreated {
    order_id: String,
}

fn main() {}
