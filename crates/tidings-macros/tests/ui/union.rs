#[derive(tidings::DomainEvent)]
#[event(name = "order.created")]
union OrderCreated {
    id: u64,
}

fn main() {}
