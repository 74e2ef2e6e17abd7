//! Interoperability with the Python services our users run today, through the machine's
//! RabbitMQ:
//!
//! - a `pika` producer publishing the legacy flat envelope to a topic exchange, handled by a
//!   typed tidings subscription;
//! - tidings events, structured and binary, read by a `pika` consumer that parses them with
//!   the `cloudevents` SDK's AMQP binding.
//!
//! The Python comes from `TIDINGS_PYTHON` (`.ci/run` sets it to a virtual environment with
//! `pika` and `cloudevents` installed), else `python3`.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::envelope::Envelope;
use tidings::transport::Publisher;
use tidings::{Bus, DomainEvent, Event};
use tidings_amqp::{AmqpTransport, ContentMode};
use tidings_testkit::{Namespace, Probe};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const EXCHANGE: &str = "tidings.events";

fn script(name: &str) -> String {
    format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A Python with pika and cloudevents, or `None` (outside CI) without one.
async fn python() -> Option<String> {
    let python = std::env::var("TIDINGS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let check = Command::new(&python)
        .args(["-c", "import pika, cloudevents.core.bindings.amqp"])
        .output()
        .await;
    match check {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => {
            tidings_testkit::service::unavailable(
                "Python with pika and cloudevents (TIDINGS_PYTHON)",
                &String::from_utf8_lossy(&out.stderr),
            );
            None
        }
        Err(e) => {
            tidings_testkit::service::unavailable("Python (TIDINGS_PYTHON)", &e);
            None
        }
    }
}

/// A field's type of an event: it describes its JSON Schema too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
struct Item {
    product_id: String,
    sku: String,
    quantity: u32,
    price: f64,
}

/// The order the users' catalogue describes, as the legacy producer sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, DomainEvent)]
#[event(name = "order.created", version = 1)]
struct OrderCreated {
    #[event(subject)]
    order_id: String,
    order_number: String,
    customer_id: String,
    items: Vec<Item>,
    total: f64,
    currency: String,
    status: String,
}

/// What the handler saw: event id, tenant, data version, the typed order.
type Handled = (String, Option<String>, Option<String>, OrderCreated);

#[tokio::test]
async fn a_pika_producer_of_the_legacy_envelope_is_handled_typed() {
    let Some(python) = python().await else { return };
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let bus = Bus::builder(transport)
        .source("tidings-interop")
        .build()
        .expect("bus");
    let handled: Arc<Probe<Handled>> = Probe::new();
    let seen = handled.clone();
    bus.subscribe::<OrderCreated, _>(
        ns.subscription("notification"),
        move |e: Event<OrderCreated>| {
            let seen = seen.clone();
            async move {
                let envelope = e.envelope();
                seen.push((
                    envelope.id.clone(),
                    envelope.extensions.tenantid.clone(),
                    envelope.extensions.dataversion.clone(),
                    (*e).clone(),
                ));
                Ok(())
            }
        },
    )
    .await
    .expect("subscribe");

    let out = Command::new(&python)
        .args([&script("publish_legacy.py"), &common::url(), EXCHANGE, "3"])
        .output()
        .await
        .expect("run the pika producer");
    assert!(
        out.status.success(),
        "pika producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(published.len(), 3);

    let got = handled.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "every legacy event handled: {got:?}");
    for (n, (id, tenant, version, order)) in got.iter().enumerate() {
        assert_eq!(id, &published[n], "the legacy id is the event id");
        assert_eq!(tenant.as_deref(), Some("tenant_abc"));
        assert_eq!(version.as_deref(), Some("1.0"), "metadata.version");
        assert_eq!(order.order_number, format!("ORD-2024-{n:03}"));
        assert_eq!(order.items[0].sku, "SKU001");
        assert_eq!(order.total, 1000.0);
    }
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn tidings_events_are_read_by_the_python_cloudevents_sdk_in_both_modes() {
    let Some(python) = python().await else { return };
    let Some(structured) = common::connect(common::config()).await else {
        return;
    };
    let binary = AmqpTransport::connect(common::config().content_mode(ContentMode::Binary))
        .await
        .expect("connect");
    let ns = Namespace::new();
    let mut consumer = Command::new(&python)
        .args([
            &script("consume_cloudevents.py"),
            &common::url(),
            EXCHANGE,
            &ns.topic("order.*"),
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python consumer");
    let mut lines = BufReader::new(consumer.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("consumer ready in time")
        .expect("read");
    assert_eq!(ready.as_deref(), Some("ready"));

    let event = |seq: u64| {
        Envelope::new("oms-service", ns.topic("order.created"))
            .with_subject(format!("order_{seq}"))
            .with_tenant("tenant_abc")
            .with_correlation_id("req_xyz")
            .with_json_data(
                &serde_json::json!({ "order_id": format!("order_{seq}"), "total": 1000.0 }),
            )
            .expect("json")
    };
    let sent = [event(1), event(2)];
    structured.publish(&sent[0]).await.expect("structured");
    binary.publish(&sent[1]).await.expect("binary");

    let mut parsed = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("an event parsed in time")
            .expect("read")
            .expect("a line per event");
        parsed.push(serde_json::from_str::<serde_json::Value>(&line).expect("json line"));
    }
    let status = consumer.wait().await.expect("consumer exits");
    assert!(status.success(), "the Python consumer failed");
    for (mode, (sent, got)) in ["structured", "binary"]
        .iter()
        .zip(sent.iter().zip(&parsed))
    {
        assert_eq!(got["mode"], *mode);
        assert_eq!(got["id"], sent.id.as_str(), "{mode}");
        assert_eq!(got["type"], sent.ty.as_str());
        assert_eq!(got["source"], "oms-service");
        assert_eq!(got["subject"], sent.subject.as_deref().expect("subject"));
        assert_eq!(got["tenantid"], "tenant_abc");
        assert_eq!(got["correlationid"], "req_xyz");
        assert!(got["time"].is_string(), "{mode}: time parsed");
        assert_eq!(
            got["data"],
            sent.data_as::<serde_json::Value>().expect("data"),
            "{mode}"
        );
    }
}
