//! Dead-letter queues on RabbitMQ beyond the conformance suite: what the broker dead-letters
//! by itself (a quorum queue's delivery limit), paging, and the failure details a letter keeps.

mod common;

use std::time::Duration;

use tidings::dead_letter::{Original, Page, ReasonKind};
use tidings::envelope::Envelope;
use tidings::transport::{DeadLetters, Publisher, Subscriber};
use tidings_testkit::conformance::spec;
use tidings_testkit::{Namespace, recv};

/// A message that takes every consumer down before it can be settled is dead-lettered by the
/// broker at the queue's delivery limit, and shows up in the subscription's dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_killing_consumers_is_dead_lettered_at_the_delivery_limit() {
    let Some(transport) = common::connect(common::config().delivery_limit(Some(2))).await else {
        return;
    };
    let ns = Namespace::new();
    let subscription = spec(&ns, "fragile", &["order.*"]).with_prefetch(1);
    let sent = Envelope::new(ns.as_str(), ns.topic("order.created"))
        .with_json_data(&serde_json::json!({ "order_id": "order_crash" }))
        .expect("json");
    drop(transport.subscribe(&subscription).await.expect("declare"));
    transport.publish(&sent).await.expect("publish");

    // Each stream receives it and goes away without settling, as a crashing process would.
    let mut deliveries = 0;
    loop {
        let mut stream = transport.subscribe(&subscription).await.expect("subscribe");
        match recv(&mut stream, Duration::from_secs(3)).await {
            Some(d) => {
                deliveries += 1;
                assert!(deliveries <= 3, "delivered after the limit");
                drop(d);
                drop(stream);
            }
            None => break,
        }
    }
    // The broker counts every return, including ones to a consumer being cancelled that
    // the test never saw: at most the first delivery and two more reach the test.
    assert!(
        (1..=3).contains(&deliveries),
        "{deliveries} deliveries seen before the limit"
    );

    let dlq = transport.clone();
    let name = ns.subscription("fragile");
    let mut letters = Vec::new();
    for _ in 0..50 {
        letters = dlq.list(&name, Page::default()).await.expect("list");
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(letters.len(), 1, "dead-lettered by the broker once");
    let letter = &letters[0];
    assert_eq!(letter.envelope().map(|e| &e.id), Some(&sent.id));
    assert_eq!(letter.reason.kind, ReasonKind::RetriesExhausted);
    assert!(
        letter.reason.message.contains("delivery limit"),
        "{}",
        letter.reason
    );
    // It can be replayed like any other: here to a topic nobody failed on.
    let mut review = transport
        .subscribe(&spec(&ns, "review", &["review.*"]))
        .await
        .expect("subscribe");
    dlq.replay(
        &name,
        &letter.id,
        tidings::dead_letter::ReplayTarget::Topic(ns.topic("review.order")),
    )
    .await
    .expect("replay");
    let d = recv(&mut review, Duration::from_secs(10))
        .await
        .expect("replayed");
    assert_eq!(d.envelope().expect("decodable").id, sent.id);
    d.ack().await.expect("ack");
    assert_eq!(dlq.count(&name).await.expect("count"), 0);
}

/// Listing pages through a dead-letter queue oldest first and leaves it as it was; a letter
/// keeps the original message's bytes, even when they were not an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_oldest_first_and_leaves_the_queue_as_it_was() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let ns = Namespace::new();
    let name = ns.subscription("ledger");
    let mut stream = transport
        .subscribe(&spec(&ns, "ledger", &["payment.*"]))
        .await
        .expect("subscribe");
    for seq in 0..7u64 {
        transport
            .publish(
                &Envelope::new(ns.as_str(), ns.topic("payment.failed"))
                    .with_json_data(&serde_json::json!({ "seq": seq }))
                    .expect("json"),
            )
            .await
            .expect("publish");
    }
    transport
        .publish_bytes(
            &ns.topic("payment.failed"),
            b"\xffnot an event".to_vec(),
            Some("text/plain"),
        )
        .await
        .expect("publish bytes");
    for n in 0..8 {
        let d = recv(&mut stream, Duration::from_secs(10))
            .await
            .expect("delivered");
        let original = match d.envelope() {
            Ok(e) => Original::Envelope(Box::new((**e).clone())),
            Err(u) => Original::Undecodable {
                body: u.body.clone(),
                content_type: u.content_type.clone(),
            },
        };
        let letter = tidings::dead_letter::DeadLetter::new(
            &name,
            original,
            tidings::dead_letter::Reason::new(ReasonKind::Rejected, format!("ledger closed ({n})")),
        )
        .with_handler("payment.failed");
        d.dead_letter(letter).await.expect("dead-letter");
    }

    let first = transport
        .list(
            &name,
            Page {
                offset: 0,
                limit: 5,
            },
        )
        .await
        .expect("page 1");
    let second = transport
        .list(
            &name,
            Page {
                offset: 5,
                limit: 5,
            },
        )
        .await
        .expect("page 2");
    assert_eq!((first.len(), second.len()), (5, 3));
    let reasons: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|l| l.reason.message.clone())
        .collect();
    assert_eq!(
        reasons,
        (0..8)
            .map(|n| format!("ledger closed ({n})"))
            .collect::<Vec<_>>(),
        "oldest first"
    );
    assert!(
        first
            .iter()
            .all(|l| l.handler.as_deref() == Some("payment.failed"))
    );
    assert!(matches!(
        &second[2].original,
        Original::Undecodable { body, content_type }
            if &body[..] == b"\xffnot an event" && content_type.as_deref() == Some("text/plain")
    ));
    assert_eq!(
        transport.count(&name).await.expect("count"),
        8,
        "browsing took nothing"
    );
    let again = transport
        .list(&name, Page::first(8))
        .await
        .expect("list again");
    assert_eq!(
        again.iter().map(|l| &l.id).collect::<Vec<_>>(),
        first
            .iter()
            .chain(&second)
            .map(|l| &l.id)
            .collect::<Vec<_>>(),
        "same letters, same order"
    );
    let one = transport
        .get(&name, &second[0].id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(one, second[0]);
    assert_eq!(transport.purge(&name).await.expect("purge"), 8);
}
