//! Publishing to RabbitMQ: what `mandatory`, size limits, content modes and per-domain
//! exchanges promise, checked against the machine's broker.

mod common;

use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber, Transport, TransportError};
use tidings_amqp::{AmqpTransport, ContentMode, Exchanges, QueueType};
use tidings_testkit::conformance::spec;
use tidings_testkit::{Namespace, recv, recv_none};

fn order(ns: &Namespace, topic: &str) -> Envelope {
    Envelope::new(ns.as_str(), ns.topic(topic))
        .with_subject("order_xyz")
        .with_tenant("tenant_abc")
        .with_correlation_id("req_xyz")
        .with_json_data(&serde_json::json!({ "order_id": "order_xyz", "total": 1000.0 }))
        .expect("json")
}

#[tokio::test]
async fn an_event_no_queue_is_bound_to_is_an_error_not_a_silent_drop() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let result = transport.publish(&order(&ns, "order.created")).await;
    assert!(
        matches!(&result, Err(TransportError::Unroutable { topic }) if *topic == ns.topic("order.created")),
        "{result:?}"
    );
    // The channel is fine afterwards: a routable event goes through.
    let mut stream = transport
        .subscribe(&spec(&ns, "audit", &["#"]))
        .await
        .expect("subscribe");
    transport
        .publish(&order(&ns, "order.created"))
        .await
        .expect("routable now");
    recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered")
        .ack()
        .await
        .expect("ack");
}

#[tokio::test]
async fn in_a_batch_one_unroutable_event_fails_the_call_and_the_others_arrive() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "orders", &["order.*"]))
        .await
        .expect("subscribe");
    let batch = [
        order(&ns, "order.created"),
        order(&ns, "invoice.created"),
        order(&ns, "order.paid"),
    ];
    let result = transport.publish_batch(&batch).await;
    assert!(
        matches!(&result, Err(TransportError::Unroutable { topic }) if *topic == ns.topic("invoice.created")),
        "{result:?}"
    );
    for expected in ["order.created", "order.paid"] {
        let d = recv(&mut stream, Duration::from_secs(10))
            .await
            .expect("delivered");
        assert_eq!(d.envelope().expect("decodable").ty, ns.topic(expected));
        d.ack().await.expect("ack");
    }
}

#[tokio::test]
async fn without_mandatory_an_unroutable_event_is_dropped_as_configured() {
    let Some(transport) = common::connect(common::config().mandatory(false)).await else {
        return;
    };
    let ns = Namespace::new();
    transport
        .publish(&order(&ns, "order.created"))
        .await
        .expect("dropped by the broker, as a plain topic exchange does");
}

#[tokio::test]
async fn a_message_over_the_size_limit_fails_before_it_is_sent() {
    let Some(transport) = common::connect(common::config().max_message_size(64 * 1024)).await
    else {
        return;
    };
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "media", &["product.*"]))
        .await
        .expect("subscribe");
    let big = Envelope::new(ns.as_str(), ns.topic("product.image"))
        .with_json_data(&serde_json::json!({ "png": "x".repeat(100 * 1024) }))
        .expect("json");
    let small = order(&ns, "product.updated");
    let result = transport.publish_batch(&[small.clone(), big]).await;
    assert!(
        matches!(result, Err(TransportError::TooLarge { limit: 65536, .. })),
        "{result:?}"
    );
    recv_none(&mut stream, Duration::from_millis(500)).await;
    transport
        .publish(&small)
        .await
        .expect("small ones still go");
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(d.envelope().expect("decodable").id, small.id);
    d.ack().await.expect("ack");
}

#[tokio::test]
async fn every_content_mode_reaches_a_subscriber_intact() {
    let Some(consumer) = common::connect(common::config()).await else {
        return;
    };
    for mode in [
        ContentMode::Structured,
        ContentMode::Binary,
        ContentMode::Legacy,
    ] {
        let ns = Namespace::new();
        let producer = AmqpTransport::connect(common::config().content_mode(mode))
            .await
            .expect("connect");
        let mut stream = consumer
            .subscribe(&spec(&ns, "notification", &["order.*"]))
            .await
            .expect("subscribe");
        let sent = order(&ns, "order.created");
        producer.publish(&sent).await.expect("publish");
        let d = recv(&mut stream, Duration::from_secs(10))
            .await
            .expect("delivered");
        let got = d.envelope().expect("decodable");
        if mode == ContentMode::Legacy {
            // The flat envelope has no subject: everything else survives.
            assert_eq!(
                (&got.id, &got.ty, &got.extensions.tenantid, &got.data),
                (&sent.id, &sent.ty, &sent.extensions.tenantid, &sent.data),
                "{mode:?}"
            );
        } else {
            assert_eq!(**got, sent, "{mode:?}");
        }
        d.ack().await.expect("ack");
    }
}

#[tokio::test]
async fn per_domain_exchanges_route_by_the_first_word_and_wildcards_hear_them_all() {
    let exchanges = Exchanges::shared("tidings.test.events")
        .domain("ordering", "tidings.test.orders")
        .domain("catalog", "tidings.test.products");
    let Some(transport) = common::connect(common::config().exchanges(exchanges)).await else {
        return;
    };
    // Namespaces go after the first word here, which picks the exchange.
    let ns = Namespace::new();
    let topic = |first: &str, rest: &str| format!("{first}.{}.{rest}", ns.as_str());
    let mut orders = transport
        .subscribe(&tidings::transport::SubscriptionSpec::new(
            ns.subscription("orders"),
            [tidings::topic::Pattern::parse(&topic("ordering", "*")).expect("pattern")],
        ))
        .await
        .expect("subscribe");
    let mut everything = transport
        .subscribe(&tidings::transport::SubscriptionSpec::new(
            ns.subscription("audit"),
            [tidings::topic::Pattern::parse(&format!("*.{}.#", ns.as_str())).expect("pattern")],
        ))
        .await
        .expect("subscribe");
    let events = [
        topic("ordering", "created"),
        topic("catalog", "updated"),
        topic("customer", "created"),
    ];
    for ty in &events {
        transport
            .publish(&Envelope::new(ns.as_str(), ty.clone()))
            .await
            .expect("publish");
    }
    let d = recv(&mut orders, Duration::from_secs(10))
        .await
        .expect("order delivered");
    assert_eq!(d.envelope().expect("decodable").ty, events[0]);
    d.ack().await.expect("ack");
    recv_none(&mut orders, Duration::from_millis(300)).await;
    let mut heard = Vec::new();
    for _ in 0..3 {
        let d = recv(&mut everything, Duration::from_secs(10))
            .await
            .expect("delivered");
        heard.push(d.envelope().expect("decodable").ty.clone());
        d.ack().await.expect("ack");
    }
    heard.sort();
    let mut expected = events.to_vec();
    expected.sort();
    assert_eq!(
        heard, expected,
        "a wildcard first word binds every exchange"
    );
}

#[tokio::test]
async fn a_queue_declared_with_other_settings_is_reported_not_crashed_on() {
    let Some(classic) = common::connect(common::config().queue_type(QueueType::Classic)).await
    else {
        return;
    };
    let ns = Namespace::new();
    drop(
        classic
            .subscribe(&spec(&ns, "crm", &["customer.*"]))
            .await
            .expect("declared as classic"),
    );
    let quorum = AmqpTransport::connect(common::config())
        .await
        .expect("connect");
    let error = quorum
        .subscribe(&spec(&ns, "crm", &["customer.*"]))
        .await
        .err()
        .expect("the quorum declaration conflicts");
    let text = error.to_string();
    assert!(
        matches!(error, TransportError::Refused(_))
            && text.contains(&ns.subscription("crm"))
            && text.contains("already exists")
            && text.contains("inequivalent arg"),
        "{text}"
    );
    // The transport is still usable.
    drop(
        quorum
            .subscribe(&spec(&ns, "crm2", &["customer.*"]))
            .await
            .expect("another subscription"),
    );
}

#[tokio::test]
async fn the_backlog_is_the_messages_ready_in_the_queue() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let name = ns.subscription("backlog");
    // Declared, then nobody consumes.
    drop(
        transport
            .subscribe(&spec(&ns, "backlog", &["order.*"]))
            .await
            .expect("declare"),
    );
    for _ in 0..2 {
        transport
            .publish(&order(&ns, "order.created"))
            .await
            .expect("publish");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let backlog = transport.backlog(&name).await.expect("backlog");
        let depth = backlog.expect("a declared queue").depth;
        if depth == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "depth {depth}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown = transport.backlog(&ns.subscription("never-declared")).await;
    assert!(matches!(unknown, Ok(None)), "{unknown:?}");
}
