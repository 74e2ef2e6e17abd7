//! Rules of the runtime that hold whatever the transport: correlation, naming, panics,
//! time-outs, backpressure, delayed redelivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::envelope::Envelope;
use tidings::memory::{MemoryConfig, MemoryTransport};
use tidings::retry::RetryPolicy;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings::{Bus, DomainEvent, Error, Event, HandlerError};
use tidings_testkit::{Probe, recv};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.created", version = 1)]
struct OrderCreated {
    #[event(subject)]
    order_id: String,
    total: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[event(name = "notification.email", version = 2, category = "notification")]
struct SendEmail {
    order_id: String,
}

fn order(id: &str) -> OrderCreated {
    OrderCreated {
        order_id: id.into(),
        total: 1000.0,
    }
}

/// Subscribes `name` to `pattern` and records every envelope it gets.
async fn record(bus: &Bus, name: &str, pattern: &str) -> Arc<Probe<Envelope>> {
    let probe = Probe::new();
    let seen = probe.clone();
    bus.subscribe_pattern(name, pattern, move |e: Arc<Envelope>| {
        let seen = seen.clone();
        async move {
            seen.push((*e).clone());
            Ok(())
        }
    })
    .await
    .unwrap();
    probe
}

/// Waits (at most [`WAIT`]) until `subscription` holds `count` dead letters, each dead-lettered
/// on its first attempt, and returns their reasons by event id.
async fn dead_lettered_once(
    bus: &Bus,
    subscription: &str,
    count: usize,
) -> std::collections::HashMap<String, (tidings::dead_letter::ReasonKind, String)> {
    let dlq = bus.dead_letters();
    let letters = tokio::time::timeout(WAIT, async {
        loop {
            let letters = dlq.list(subscription, Default::default()).await.unwrap();
            if letters.len() == count {
                break letters;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} dead letters in {subscription}"));
    letters
        .into_iter()
        .map(|letter| {
            assert_eq!(letter.attempts, 1, "never retried: {letter:?}");
            let id = letter.envelope().expect("an envelope").id.clone();
            (id, (letter.reason.kind, letter.reason.message))
        })
        .collect()
}

fn bus() -> Bus {
    Bus::builder(MemoryTransport::new())
        .source("oms-service")
        .retry(
            RetryPolicy::exponential(Duration::from_millis(10))
                .with_max_attempts(3)
                .with_max_delay(Duration::from_millis(50)),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn published_envelopes_carry_type_version_subject_and_source() {
    let bus = bus();
    let probe = record(&bus, "audit", "#").await;
    bus.publish(&order("o-1")).await.unwrap();
    let got = probe.wait_for(1, WAIT).await;
    let e = &got[0];
    assert_eq!(e.ty, "order.created");
    assert_eq!(e.source, "oms-service");
    assert_eq!(e.subject.as_deref(), Some("o-1"));
    assert_eq!(e.extensions.partitionkey.as_deref(), Some("o-1"));
    assert_eq!(e.extensions.dataversion.as_deref(), Some("1"));
    assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
    assert_eq!(uuid_version(&e.id), Some(7), "ids are UUIDv7");
    bus.shutdown().await.unwrap();
}

fn uuid_version(id: &str) -> Option<usize> {
    // xxxxxxxx-xxxx-Vxxx-...
    id.chars()
        .nth(14)
        .and_then(|c| c.to_digit(16))
        .map(|d| d as usize)
}

/// `notification` handles OrderCreated by publishing SendEmail; `mailer` records the
/// envelopes of the emails it gets.
async fn order_to_email_chain(bus: &Bus) -> Arc<Probe<Envelope>> {
    let emails = Probe::new();
    let seen = emails.clone();
    bus.subscribe::<SendEmail, _>("mailer", move |e: Event<SendEmail>| {
        let seen = seen.clone();
        async move {
            seen.push(e.envelope().clone());
            Ok(())
        }
    })
    .await
    .unwrap();
    let publisher = bus.clone();
    bus.subscribe::<OrderCreated, _>("notification", move |e: Event<OrderCreated>| {
        let bus = publisher.clone();
        async move {
            bus.publish(&SendEmail {
                order_id: e.order_id.clone(),
            })
            .await
            .map_err(HandlerError::retry)
        }
    })
    .await
    .unwrap();
    emails
}

#[tokio::test(start_paused = true)]
async fn publishing_from_a_handler_sets_causation_and_keeps_correlation() {
    let bus = bus();
    let emails = order_to_email_chain(&bus).await;
    let original = bus
        .envelope(&order("o-9"))
        .unwrap()
        .with_correlation_id("req_xyz")
        .with_tenant("tenant_abc");
    bus.publish_envelope(original.clone()).await.unwrap();
    let email = &emails.wait_for(1, WAIT).await[0];
    assert_eq!(
        email.extensions.causationid.as_deref(),
        Some(original.id.as_str())
    );
    assert_eq!(email.extensions.correlationid.as_deref(), Some("req_xyz"));
    assert_eq!(email.extensions.tenantid.as_deref(), Some("tenant_abc"));
    assert_eq!(email.extensions.dataversion.as_deref(), Some("2"));
    assert_eq!(
        email.extensions.category,
        Some(tidings::envelope::Category::Notification)
    );
    bus.shutdown().await.unwrap();
}

/// W3C trace context: the first event of a flow starts a trace, and what a handler publishes
/// continues it with a hop of its own.
#[tokio::test(start_paused = true)]
async fn a_flow_is_one_trace_and_each_published_event_a_hop_of_it() {
    use tidings::trace::TraceParent;
    let bus = bus();
    let emails = order_to_email_chain(&bus).await;
    let observed = Probe::new();
    let seen = observed.clone();
    bus.subscribe::<OrderCreated, _>("audit", move |e: Event<OrderCreated>| {
        let seen = seen.clone();
        async move {
            seen.push(e.envelope().clone());
            Ok(())
        }
    })
    .await
    .unwrap();
    let original = bus.envelope(&order("o-3")).unwrap();
    assert!(original.extensions.traceparent.is_none());
    bus.publish_envelope(original).await.unwrap();
    let order = &observed.wait_for(1, WAIT).await[0];
    let email = &emails.wait_for(1, WAIT).await[0];
    let parse = |e: &Envelope| {
        TraceParent::parse(e.extensions.traceparent.as_deref().expect("a traceparent"))
            .expect("a valid traceparent")
    };
    let (started, continued) = (parse(order), parse(email));
    assert_eq!(started.trace_id(), continued.trace_id(), "one trace");
    assert_ne!(started, continued, "a hop of its own");
    assert!(started.sampled());
    bus.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_first_event_of_a_flow_correlates_with_itself() {
    let bus = bus();
    let emails = order_to_email_chain(&bus).await;
    let original = bus.envelope(&order("o-1")).unwrap();
    bus.publish_envelope(original.clone()).await.unwrap();
    let email = &emails.wait_for(1, WAIT).await[0];
    assert_eq!(
        email.extensions.correlationid.as_deref(),
        Some(original.id.as_str())
    );
    bus.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn naming_convention_violations_are_refused_at_registration() {
    let bus = Bus::builder(MemoryTransport::new())
        .naming_convention("[company].[service].[version].event.[resource].[action]")
        .build()
        .unwrap();
    let err = bus.register::<OrderCreated>().unwrap_err();
    assert!(matches!(err, Error::Naming(_)), "{err}");
    let err = bus
        .subscribe::<OrderCreated, _>("notification", |_: Event<OrderCreated>| async { Ok(()) })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Naming(_)), "{err}");
    assert!(bus.event_types().is_empty());

    assert!(
        Bus::builder(MemoryTransport::new())
            .naming_convention("[a]..[b]")
            .build()
            .is_err(),
        "a malformed convention is refused when the bus is built"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_retried_then_dead_lettered_and_the_worker_survives() {
    let bus = bus();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let handled = Probe::new();
    let seen = handled.clone();
    bus.subscribe::<OrderCreated, _>("fragile", move |e: Event<OrderCreated>| {
        let (counter, seen) = (counter.clone(), seen.clone());
        async move {
            if e.order_id == "boom" {
                counter.fetch_add(1, Ordering::SeqCst);
                panic!("index out of bounds");
            }
            seen.push(e.order_id.clone());
            Ok(())
        }
    })
    .await
    .unwrap();
    bus.publish(&order("boom")).await.unwrap();
    bus.publish(&order("fine")).await.unwrap();
    handled.wait_for(1, WAIT).await;
    let dlq = bus.dead_letters();
    let letters = loop {
        let letters = dlq.list("fragile", Default::default()).await.unwrap();
        if !letters.is_empty() {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        letters[0]
            .reason
            .message
            .contains("handler panicked: index out of bounds")
    );
    assert_eq!(handled.items(), ["fine"]);
    bus.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_handler_past_its_timeout_is_a_transient_failure() {
    let bus = bus();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    bus.subscription("slow")
        .on::<OrderCreated, _>(move |_: Event<OrderCreated>| {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok(())
            }
        })
        .timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    bus.publish(&order("o-1")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "timed out once, then handled"
    );
    assert_eq!(bus.dead_letters().count("slow").await.unwrap(), 0);
    bus.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_makes_publishers_wait_instead_of_growing() {
    let transport = MemoryTransport::with_config(MemoryConfig::default().with_queue_capacity(3));
    let spec = SubscriptionSpec::new("slow", [Pattern::parse("#").unwrap()]);
    let mut stream = transport.subscribe(&spec).await.unwrap();
    for i in 0..3 {
        transport
            .publish(&Envelope::new("s", format!("e.{i}")))
            .await
            .unwrap();
    }
    let blocked = tokio::time::timeout(
        Duration::from_secs(1),
        transport.publish(&Envelope::new("s", "e.3")),
    )
    .await;
    assert!(blocked.is_err(), "the fourth publish waits for room");
    assert_eq!(transport.depth("slow"), 3);

    let first = recv(&mut stream, WAIT).await.unwrap();
    first.ack().await.unwrap();
    tokio::time::timeout(WAIT, transport.publish(&Envelope::new("s", "e.3")))
        .await
        .expect("room after an ack")
        .unwrap();
    assert_eq!(transport.depth("slow"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_retry_holds_no_handler_slot() {
    let bus = bus();
    let handled = Probe::new();
    let seen = handled.clone();
    bus.subscription("single")
        .on::<OrderCreated, _>(move |e: Event<OrderCreated>| {
            let seen = seen.clone();
            async move {
                if e.order_id == "later" && seen.items().iter().all(|s: &String| s != "first-try") {
                    seen.push("first-try".to_owned());
                    return Err(HandlerError::retry_after(
                        Duration::from_secs(60),
                        "not yet",
                    ));
                }
                seen.push(e.order_id.clone());
                Ok(())
            }
        })
        .concurrency(1)
        .retry(RetryPolicy::default().with_max_delay(Duration::from_secs(120)))
        .start()
        .await
        .unwrap();
    bus.publish(&order("later")).await.unwrap();
    for i in 0..5 {
        bus.publish(&order(&format!("o-{i}"))).await.unwrap();
    }
    // With one slot, the five others are handled while "later" waits out its minute.
    let got = handled.wait_for(6, Duration::from_secs(30)).await;
    assert_eq!(got, ["first-try", "o-0", "o-1", "o-2", "o-3", "o-4"]);
    let got = handled.wait_for(7, Duration::from_secs(120)).await;
    assert_eq!(got.last().map(String::as_str), Some("later"));
    bus.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn subscription_names_are_unique_per_bus_and_publish_after_shutdown_fails() {
    let bus = bus();
    let h = |_: Event<OrderCreated>| async { Ok(()) };
    let handle = bus.subscribe::<OrderCreated, _>("one", h).await.unwrap();
    let err = bus
        .subscribe::<OrderCreated, _>("one", h)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SubscriptionExists(_)), "{err}");
    handle.stop().await;
    let again = bus.subscribe::<OrderCreated, _>("one", h).await;
    assert!(again.is_ok(), "the name is free once stopped");
    assert!(matches!(
        bus.subscription("empty").start().await,
        Err(Error::NoHandler(_))
    ));
    bus.shutdown().await.unwrap();
    assert!(matches!(bus.publish(&order("x")).await, Err(Error::Closed)));
}

#[tokio::test(start_paused = true)]
async fn bulk_replay_is_rate_limited_and_replays_a_snapshot() {
    let bus = bus();
    let seen = Probe::new();
    let probe = seen.clone();
    bus.subscription("refunds")
        .on::<OrderCreated, _>(move |e: Event<OrderCreated>| {
            let probe = probe.clone();
            async move {
                probe.push(e.order_id.clone());
                Err(HandlerError::reject("always"))
            }
        })
        .start()
        .await
        .unwrap();
    for i in 0..10 {
        bus.publish(&order(&format!("o-{i}"))).await.unwrap();
    }
    seen.wait_for(10, WAIT).await;
    let dlq = bus.dead_letters();
    while dlq.count("refunds").await.unwrap() < 10 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    let replayed = dlq
        .replay_all("refunds", tidings::ReplayRate::per_second(5))
        .await
        .unwrap();
    assert_eq!(
        replayed, 10,
        "each letter replayed once, even though they fail again"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    seen.wait_for(20, WAIT).await;
    bus.shutdown().await.unwrap();
}

/// The registry: each type the bus published or handles, with its version and its schema,
/// and in which role; a type only declared is in neither role.
#[tokio::test(start_paused = true)]
async fn the_bus_keeps_the_types_it_publishes_and_consumes_with_versions_and_schemas() {
    #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
    #[event(name = "order.cancelled", version = 3)]
    struct OrderCancelled {
        order_id: String,
    }

    let bus = bus();
    bus.register::<OrderCancelled>().unwrap();
    let handled = bus
        .subscribe::<OrderCreated, _>("notification", |_: Event<OrderCreated>| async { Ok(()) })
        .await
        .unwrap();
    bus.publish(&order("o-1")).await.unwrap();
    bus.publish(&SendEmail {
        order_id: "o-1".into(),
    })
    .await
    .unwrap();
    let types = bus.event_types();
    let summary: Vec<_> = types
        .iter()
        .map(|t| (t.name, t.version, t.published, t.consumed))
        .collect();
    assert_eq!(
        summary,
        [
            ("notification.email", 2, true, false),
            ("order.cancelled", 3, false, false),
            ("order.created", 1, true, true),
        ]
    );
    let schema = types[2].schema.as_ref().expect("a schema").as_value();
    assert_eq!(schema["title"], "OrderCreated");
    assert_eq!(schema["properties"]["total"]["type"], "number", "{schema}");
    handled.stop().await;
}

/// Version 3 of an order's placement: `total_cents` (v2 had `total` in euros) and
/// `currency` (v1 had none).
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[event(
    name = "order.placed",
    version = 3,
    upcasters(placed_v1_to_v2, placed_v2_to_v3)
)]
struct OrderPlaced {
    order_id: String,
    total_cents: u64,
    currency: String,
}

/// v1 → v2: the currency, which v1 producers never sent, was always euros.
fn placed_v1_to_v2(mut data: serde_json::Value) -> Result<serde_json::Value, tidings::UpcastError> {
    data["currency"] = "EUR".into();
    Ok(data)
}

/// v2 → v3: euros to cents.
fn placed_v2_to_v3(mut data: serde_json::Value) -> Result<serde_json::Value, tidings::UpcastError> {
    let euros = data["total"]
        .as_f64()
        .ok_or_else(|| tidings::UpcastError::new("v2 data without a numeric `total`"))?;
    data["total_cents"] = ((euros * 100.0).round() as u64).into();
    Ok(data)
}

/// The wire form of an `order.placed` of `version`, as another service published it.
fn placed(id: &str, version: &str, data: serde_json::Value) -> Envelope {
    Envelope::new("legacy-shop", "order.placed")
        .with_id(id)
        .with_data_version(version)
        .with_json_data(&data)
        .unwrap()
}

/// Upcasting and validation: v1 and v2 events reach the v3 handler converted, one step per
/// version; a v4 event, an event whose upcaster fails, one with a malformed `dataversion`
/// and one with a field of the wrong type are dead-lettered once, each with its reason (the
/// last with the field's path), and never reach the handler.
#[tokio::test(start_paused = true)]
async fn old_versions_reach_the_handler_upcast_and_unreadable_ones_are_dead_lettered() {
    use tidings::dead_letter::ReasonKind;

    let bus = bus();
    let handled = Probe::new();
    let seen = handled.clone();
    bus.subscribe::<OrderPlaced, _>("billing", move |e: Event<OrderPlaced>| {
        let seen = seen.clone();
        async move {
            seen.push((e.order_id.clone(), e.total_cents, e.currency.clone()));
            Ok(())
        }
    })
    .await
    .unwrap();
    for envelope in [
        placed(
            "v1",
            "1",
            serde_json::json!({"order_id": "o-1", "total": 12.5}),
        ),
        placed(
            "v2",
            "2",
            serde_json::json!({"order_id": "o-2", "total": 3.0, "currency": "USD"}),
        ),
        placed(
            "v3",
            "3",
            serde_json::json!({"order_id": "o-3", "total_cents": 700, "currency": "GBP"}),
        ),
        placed("v4", "4", serde_json::json!({"order_id": "o-4"})),
        placed("bad-v1", "1", serde_json::json!({"order_id": "o-5"})),
        placed("bad-version", "two", serde_json::json!({"order_id": "o-6"})),
        placed(
            "bad-field",
            "3",
            serde_json::json!({"order_id": "o-7", "total_cents": "seven", "currency": "EUR"}),
        ),
    ] {
        bus.publish_envelope(envelope).await.unwrap();
    }
    handled.wait_for(3, WAIT).await;
    let mut seen = handled.items();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("o-1".to_owned(), 1250, "EUR".to_owned()),
            ("o-2".to_owned(), 300, "USD".to_owned()),
            ("o-3".to_owned(), 700, "GBP".to_owned()),
        ]
    );
    let letters = dead_lettered_once(&bus, "billing", 4).await;
    let reason = |id: &str| {
        letters
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} dead-lettered"))
    };
    assert_eq!(
        reason("v4"),
        (
            ReasonKind::UnsupportedVersion,
            "order.placed version 4 is newer than this consumer reads (up to 3)".to_owned()
        )
    );
    let (kind, message) = reason("bad-v1");
    assert_eq!(kind, ReasonKind::SchemaViolation);
    assert_eq!(
        message,
        "upcasting order.placed from version 2: v2 data without a numeric `total`"
    );
    let (kind, message) = reason("bad-version");
    assert_eq!(kind, ReasonKind::UnsupportedVersion);
    assert!(message.contains("`two`"), "{message}");
    let (kind, message) = reason("bad-field");
    assert_eq!(kind, ReasonKind::SchemaViolation);
    assert!(
        message.contains("at `/total_cents`") && message.contains("not of type \"integer\""),
        "the path of the offending field: {message}"
    );
    assert_eq!(
        handled.items().len(),
        3,
        "nothing unreadable reached the handler"
    );
    bus.shutdown().await.unwrap();
}

/// A cart as a Python service sends it: quantities from 1, which serde alone would not check.
#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "cart.checked_out")]
struct CartCheckedOut {
    cart_id: String,
    lines: Vec<CartLine>,
}

#[derive(Debug, Serialize, Deserialize, tidings::schemars::JsonSchema)]
#[schemars(crate = "tidings::schemars")]
struct CartLine {
    sku: String,
    #[schemars(range(min = 1))]
    quantity: u32,
}

/// Validation: data from another service is held to its type's JSON Schema, including the
/// constraints serde does not check (a `range`), and what breaks it is dead-lettered once as
/// a schema violation with the JSON pointer of the offending value, never handled.
#[tokio::test(start_paused = true)]
async fn data_that_breaks_its_schema_is_dead_lettered_with_the_pointer_of_the_value() {
    use tidings::dead_letter::ReasonKind;

    let bus = bus();
    let handled = Probe::new();
    let seen = handled.clone();
    bus.subscribe::<CartCheckedOut, _>("fulfilment", move |e: Event<CartCheckedOut>| {
        let seen = seen.clone();
        async move {
            seen.push(e.cart_id.clone());
            Ok(())
        }
    })
    .await
    .unwrap();
    let cart = |id: &str, quantities: &[i64]| {
        let lines: Vec<serde_json::Value> = quantities
            .iter()
            .map(|q| serde_json::json!({"sku": "s-1", "quantity": q}))
            .collect();
        Envelope::new("cart-py", "cart.checked_out")
            .with_id(id)
            .with_json_data(&serde_json::json!({"cart_id": id, "lines": lines}))
            .unwrap()
    };
    for envelope in [
        cart("fine", &[1, 3]),
        cart("zero", &[2, 0]),
        cart("negative", &[-1]),
    ] {
        bus.publish_envelope(envelope).await.unwrap();
    }
    handled.wait_for(1, WAIT).await;
    let letters = dead_lettered_once(&bus, "fulfilment", 2).await;
    let reason = |id: &str| {
        let (kind, message) = letters
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} dead-lettered"));
        assert_eq!(kind, ReasonKind::SchemaViolation);
        message
    };
    let zero = reason("zero");
    assert!(
        zero.contains("cart.checked_out v1 at `/lines/1/quantity`") && zero.contains("minimum"),
        "{zero}"
    );
    let negative = reason("negative");
    assert!(negative.contains("/lines/0/quantity"), "{negative}");
    assert_eq!(handled.items(), ["fine"], "only the valid cart was handled");
    bus.shutdown().await.unwrap();
}

/// Outcome events: work run inside a handler announces `<name>.succeeded` with its output,
/// caused by the handled event and in its correlation; work run outside a handler with
/// `caused_by` announces `<name>.failed` with the error, caused by the given event. The
/// caller gets the work's own result either way.
#[tokio::test(start_paused = true)]
async fn a_task_publishes_its_outcome_with_causation_and_correlation() {
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Invoice {
        number: String,
        total_cents: u64,
    }

    let bus = bus();
    let outcomes = record(&bus, "outcomes", "invoice.generation.*").await;
    let worker = bus.clone();
    bus.subscribe::<OrderCreated, _>("invoicing", move |e: Event<OrderCreated>| {
        let bus = worker.clone();
        async move {
            let invoice = bus
                .task("invoice.generation")
                .subject(e.order_id.clone())
                .run(async {
                    Ok::<_, std::io::Error>(Invoice {
                        number: format!("INV-{}", e.order_id),
                        total_cents: (e.total * 100.0) as u64,
                    })
                })
                .await
                .map_err(HandlerError::retry)?;
            assert_eq!(invoice.unwrap().number, "INV-o-7");
            Ok(())
        }
    })
    .await
    .unwrap();
    let order = bus
        .envelope(&order("o-7"))
        .unwrap()
        .with_correlation_id("checkout-42");
    bus.publish_envelope(order.clone()).await.unwrap();
    outcomes.wait_for(1, WAIT).await;
    let succeeded = outcomes.items().remove(0);
    assert_eq!(succeeded.ty, "invoice.generation.succeeded");
    assert_eq!(
        succeeded.extensions.causationid.as_deref(),
        Some(&*order.id)
    );
    assert_eq!(
        succeeded.extensions.correlationid.as_deref(),
        Some("checkout-42")
    );
    assert_eq!(succeeded.subject.as_deref(), Some("o-7"));
    assert_eq!(
        succeeded.data_as::<Invoice>().unwrap(),
        Invoice {
            number: "INV-o-7".into(),
            total_cents: 100_000,
        }
    );

    let failed = bus
        .task("invoice.generation")
        .caused_by(&order)
        .run(async { Err::<Invoice, _>("the tax service is down") })
        .await
        .unwrap();
    assert_eq!(failed.unwrap_err(), "the tax service is down");
    outcomes.wait_for(2, WAIT).await;
    let failure = outcomes.items().remove(1);
    assert_eq!(failure.ty, "invoice.generation.failed");
    assert_eq!(failure.extensions.causationid.as_deref(), Some(&*order.id));
    assert_eq!(
        failure.extensions.correlationid.as_deref(),
        Some("checkout-42")
    );
    assert_eq!(
        failure.data_as::<tidings::TaskFailed>().unwrap().error,
        "the tax service is down"
    );
    bus.shutdown().await.unwrap();
}
