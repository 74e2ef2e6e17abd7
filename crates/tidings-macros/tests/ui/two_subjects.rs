use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, tidings::DomainEvent)]
#[event(name = "order.created")]
struct OrderCreated {
    #[event(subject)]
    order_id: String,
    #[event(subject)]
    customer_id: String,
}

fn main() {}
