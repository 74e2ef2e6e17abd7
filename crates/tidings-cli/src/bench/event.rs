//! The event every benchmark moves: an `order.created` whose structured encoding is about 500
//! bytes, the size of the orders in our users' catalogue.

use serde::{Deserialize, Serialize};
use tidings::DomainEvent;

/// The benchmarks' topic, apart from any application's.
pub(crate) const TOPIC: &str = "bench.order.created";

/// An order, as a service publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "bench.order.created", version = 1, category = "domain")]
pub(crate) struct OrderCreated {
    #[event(subject)]
    pub(crate) order_id: String,
    pub(crate) customer_id: String,
    pub(crate) currency: String,
    pub(crate) total: f64,
    pub(crate) items: Vec<Line>,
    pub(crate) shipping_address: Address,
    pub(crate) placed_by: String,
    pub(crate) seq: u64,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, tidings::schemars::JsonSchema)]
#[schemars(crate = "tidings::schemars")]
pub(crate) struct Line {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
    pub(crate) price: f64,
}

/// Where an order goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, tidings::schemars::JsonSchema)]
#[schemars(crate = "tidings::schemars")]
pub(crate) struct Address {
    pub(crate) city: String,
    pub(crate) postcode: String,
    pub(crate) country: String,
}

impl OrderCreated {
    /// The `seq`-th order.
    pub(crate) fn sample(seq: u64) -> Self {
        Self {
            order_id: format!("order-{seq:08}"),
            customer_id: format!("cust_{:04}", seq % 1000),
            currency: "EUR".into(),
            total: 1000.0,
            items: vec![
                Line {
                    sku: "SKU-1001".into(),
                    quantity: 2,
                    price: 250.0,
                },
                Line {
                    sku: "SKU-2002".into(),
                    quantity: 1,
                    price: 500.0,
                },
            ],
            shipping_address: Address {
                city: "Lyon".into(),
                postcode: "69001".into(),
                country: "FR".into(),
            },
            placed_by: "web-checkout".into(),
            seq,
        }
    }
}

/// Orders `from..from + count`. Each side encodes them its own way as it publishes them.
pub(crate) struct Orders {
    pub(crate) events: Vec<OrderCreated>,
}

impl Orders {
    pub(crate) fn new(from: u64, count: u64) -> Self {
        Self {
            events: (from..from + count).map(OrderCreated::sample).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}
