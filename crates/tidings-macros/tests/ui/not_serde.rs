#[derive(tidings::DomainEvent)]
#[event(name = "order.created")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
