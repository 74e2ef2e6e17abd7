//! Leases and de-duplication on JetStream beyond the conformance suite.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber};
use tidings::{Bus, HandlerError};
use tidings_testkit::conformance::spec;
use tidings_testkit::{Namespace, Probe, recv, recv_none};

/// A handler that runs past the ack wait keeps its delivery: in-progress acks tell the
/// server it is still being worked on, so it is not handed to anyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_the_ack_wait_is_not_redelivered() {
    let Some(transport) = common::connect(common::config().ack_wait(Duration::from_secs(1))).await
    else {
        return;
    };
    let ns = Namespace::new();
    let bus = Bus::builder(transport.clone())
        .source(ns.as_str())
        .without_inbox()
        .build()
        .expect("bus");
    let calls: Arc<Probe<u64>> = Probe::new();
    let seen = calls.clone();
    bus.subscription(ns.subscription("slow"))
        .on_pattern(&ns.topic("report.*"), move |e: Arc<Envelope>| {
            let seen = seen.clone();
            async move {
                seen.push(e.data_as::<u64>().map_err(HandlerError::reject)?);
                tokio::time::sleep(Duration::from_secs(4)).await;
                Ok(())
            }
        })
        .timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("subscribe");
    transport
        .publish(
            &Envelope::new(ns.as_str(), ns.topic("report.requested"))
                .with_json_data(&7u64)
                .expect("json"),
        )
        .await
        .expect("publish");
    calls.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls.items(), [7], "handled once, for four ack waits");
    bus.shutdown().await.expect("shutdown");
}

/// Publishing the same event twice within the duplicate window stores it once: the server
/// drops the repeat (`Nats-Msg-Id`), before any inbox is needed.
#[tokio::test]
async fn the_server_drops_a_repeated_event_within_its_window() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "crm", &["customer.*"]))
        .await
        .expect("subscribe");
    let event = Envelope::new(ns.as_str(), ns.topic("customer.created"));
    transport.publish(&event).await.expect("publish");
    transport.publish(&event).await.expect("publish the repeat");
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(d.envelope().expect("decodable").id, event.id);
    d.ack().await.expect("ack");
    recv_none(&mut stream, Duration::from_secs(1)).await;
}

/// Both content modes of the CloudEvents NATS binding arrive intact through the server.
#[tokio::test]
async fn structured_and_binary_events_arrive_intact() {
    let Some(consumer) = common::connect(common::config()).await else {
        return;
    };
    for mode in [
        tidings_nats::ContentMode::Structured,
        tidings_nats::ContentMode::Binary,
    ] {
        let ns = Namespace::new();
        let producer = tidings_nats::NatsTransport::connect(common::config().content_mode(mode))
            .await
            .expect("connect");
        let mut stream = consumer
            .subscribe(&spec(&ns, "notification", &["order.*"]))
            .await
            .expect("subscribe");
        let sent = Envelope::new(ns.as_str(), ns.topic("order.created"))
            .with_subject("order_xyz")
            .with_tenant("tenant_abc")
            .with_correlation_id("req_xyz")
            .with_json_data(&serde_json::json!({ "order_id": "order_xyz", "total": 1000.0 }))
            .expect("json");
        producer.publish(&sent).await.expect("publish");
        let d = recv(&mut stream, Duration::from_secs(10))
            .await
            .expect("delivered");
        assert_eq!(**d.envelope().expect("decodable"), sent, "{mode:?}");
        d.ack().await.expect("ack");
    }
}
