// `serde_json` is named so that rustc's list of types implementing serde's traits names its
// types by their own crate, not by a re-export's path, whichever it happens to meet first.
use serde_json as _;

#[derive(tidings::DomainEvent)]
#[event(name = "order.created")]
struct OrderCreated {
    order_id: String,
}

fn main() {}
