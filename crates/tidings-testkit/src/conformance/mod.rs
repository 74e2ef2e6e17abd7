//! The rules every transport must follow, one `async fn` each.
//!
//! Transport-level rules drive [`Transport`](tidings::transport::Transport) directly; the others
//! run a [`Bus`](tidings::Bus) on it, since retries, dead-lettering and de-duplication are the
//! runtime's job carried out through the transport's primitives.

mod bus_rules;
mod routing;
mod transport_rules;

pub use bus_rules::*;
pub use routing::*;
pub use transport_rules::*;

use std::sync::Arc;
use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::retry::RetryPolicy;
use tidings::topic::Pattern;
use tidings::transport::{SubscriptionSpec, Transport};
use tidings::{Bus, DomainEvent};

use crate::Namespace;

/// How long a case waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long a whole case may take before it fails as hung (cases wait at most [`WAIT`] for
/// each step, so only a hang reaches this).
pub const CASE_LIMIT: Duration = Duration::from_secs(180);
/// How long a case watches for something that should not happen.
pub const QUIET: Duration = Duration::from_millis(500);

/// An envelope with a small JSON body carrying `seq`.
pub fn envelope(ns: &Namespace, topic: &str, seq: u64) -> Envelope {
    Envelope::new(ns.as_str(), ns.topic(topic))
        .with_subject(format!("order-{}", seq % 7))
        .with_json_data(&serde_json::json!({ "seq": seq, "total": 100.5 }))
        .expect("json")
}

/// The `seq` of an envelope made by [`envelope`].
pub fn seq_of(envelope: &Envelope) -> u64 {
    envelope
        .data_as::<serde_json::Value>()
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .expect("conformance envelopes carry a seq")
}

/// A subscription spec in `ns` for `patterns` (relative to the namespace).
pub fn spec(ns: &Namespace, name: &str, patterns: &[&str]) -> SubscriptionSpec {
    SubscriptionSpec::new(
        ns.subscription(name),
        patterns
            .iter()
            .map(|p| Pattern::parse(&ns.topic(p)).expect("pattern")),
    )
}

/// Backoff from 20 ms, capped at 100 ms, `attempts` in all.
pub fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(100))
        .with_max_attempts(attempts)
}

/// A typed event the suite uses where a typed handler is needed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, DomainEvent)]
#[event(name = "conformance.order.created", version = 1)]
pub struct OrderCreated {
    /// Aggregate id.
    #[event(subject)]
    pub order_id: String,
    /// Sequence number.
    pub seq: u64,
}

/// A typed event at its second version, for the rule that each version is read as it was
/// written: version 1 had the total in euros, version 2 has it in cents. Version 1's data
/// also deserializes as version 2 as it is (`cents` defaults to 0), so only reading it
/// through the upcaster gives the right total.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, DomainEvent)]
#[event(
    name = "conformance.order.priced",
    version = 2,
    upcasters(priced_v1_to_v2)
)]
pub struct OrderPriced {
    /// Aggregate id.
    #[event(subject)]
    pub order_id: String,
    /// The total, in cents.
    #[serde(default)]
    pub cents: u64,
}

/// Version 1 of [`OrderPriced`] had `euros`; version 2 has `cents`.
fn priced_v1_to_v2(mut data: serde_json::Value) -> Result<serde_json::Value, tidings::UpcastError> {
    let euros = data["euros"]
        .as_f64()
        .ok_or_else(|| tidings::UpcastError::new("no `euros`"))?;
    data["cents"] = serde_json::json!((euros * 100.0).round() as u64);
    Ok(data)
}

/// A typed event whose JSON Schema asserts more than deserializing checks (a quantity from
/// 1), for the rule that such data is held to its schema on every transport.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, DomainEvent)]
#[event(name = "conformance.cart.checked_out")]
pub struct CartCheckedOut {
    /// Aggregate id.
    #[event(subject)]
    pub cart_id: String,
    /// What is in it.
    pub lines: Vec<CartLine>,
}

/// One line of a [`CartCheckedOut`].
#[derive(
    Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, tidings::schemars::JsonSchema,
)]
#[schemars(crate = "tidings::schemars")]
pub struct CartLine {
    /// How many, from 1: serde alone would take 0.
    #[schemars(range(min = 1))]
    pub quantity: u32,
}

/// A typed event whose data can make deserializing panic (a reading of 0), for the rule
/// that such a panic is a transient failure of its handler on every transport.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, DomainEvent)]
#[event(name = "conformance.meter.read")]
pub struct MeterRead {
    /// Aggregate id.
    #[event(subject)]
    pub meter_id: String,
    /// What it read.
    pub reading: Reading,
}

/// A meter's reading, never 0: deserializing 0 panics, as a `Deserialize` written by hand
/// with an `assert!` would.
#[derive(Debug, Clone, PartialEq, serde::Serialize, tidings::schemars::JsonSchema)]
#[schemars(crate = "tidings::schemars")]
pub struct Reading(pub u32);

impl<'de> serde::Deserialize<'de> for Reading {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        assert_ne!(value, 0, "a meter never reads 0");
        Ok(Self(value))
    }
}

/// One settled delivery, as the bus's observer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The subscription.
    pub subscription: String,
    /// `ack`, `retry` or `dead_letter`.
    pub label: &'static str,
    /// The event's id, when it was decodable.
    pub id: Option<String>,
}

struct SettledProbe(Arc<crate::Probe<Settled>>);

impl tidings::Observer for SettledProbe {
    fn on_settled(
        &self,
        subscription: &str,
        envelope: Option<&Envelope>,
        settlement: &tidings::Settlement,
        _elapsed: Duration,
    ) {
        self.0.push(Settled {
            subscription: subscription.to_owned(),
            label: settlement.label(),
            id: envelope.map(|e| e.id.clone()),
        });
    }
}

/// A bus on `transport` with a fast retry policy suited to tests, whose settlements are recorded in the returned probe, so that cases can wait for
/// them instead of polling.
pub fn observed_bus(
    ns: &Namespace,
    transport: Arc<dyn Transport>,
) -> (Bus, Arc<crate::Probe<Settled>>) {
    let probe = crate::Probe::new();
    let bus = Bus::builder_shared(transport)
        .source(ns.as_str())
        .retry(fast_retry(3))
        .shutdown_timeout(Duration::from_secs(10))
        .observer(SettledProbe(probe.clone()))
        .build()
        .expect("bus");
    (bus, probe)
}
