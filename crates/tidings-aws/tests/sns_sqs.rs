//! SNS fanout to SQS queues, on a moto server: filter policies, the client-side filter,
//! leases kept for long handlers and lost in a network cut, SQS's redrive, FIFO
//! de-duplication, the size limit.

mod common;

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use tidings::dead_letter::{DeadLetter, Original, Page, Reason, ReasonKind, ReplayTarget};
use tidings::envelope::Envelope;
use tidings::transport::{DeadLetters, Delivery, Publisher, Subscriber, TransportError};
use tidings_aws::AwsTransport;
use tidings_testkit::conformance::spec;
use tidings_testkit::proxy::Proxy;
use tidings_testkit::{Namespace, recv, recv_none};

async fn transport(
    configure: impl FnOnce(tidings_aws::AwsConfig) -> tidings_aws::AwsConfig,
) -> Option<AwsTransport> {
    Some(common::connect(configure(common::config()?)).await)
}

fn event(ns: &Namespace, topic: &str) -> Envelope {
    Envelope::new(ns.as_str(), ns.topic(topic))
}

/// Messages waiting in the queue of `subscription`, as SQS counts them.
async fn waiting(transport: &AwsTransport, subscription: &str) -> u64 {
    let (url, _) = transport
        .queue_urls(subscription)
        .await
        .expect("queue urls")
        .expect("declared");
    let out = transport
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes");
    out.attributes()
        .expect("attributes")
        .values()
        .map(|v| v.parse::<u64>().expect("a count"))
        .sum()
}

/// The filter policy SNS holds for the queue of `subscription`.
async fn filter_policy(transport: &AwsTransport, subscription: &str) -> String {
    let (url, _) = transport.queue_urls(subscription).await.unwrap().unwrap();
    let arn = transport
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let subs = transport
        .sns()
        .list_subscriptions_by_topic()
        .topic_arn(transport.topic_arn().unwrap())
        .send()
        .await
        .unwrap();
    let sub = subs
        .subscriptions()
        .iter()
        .find(|s| s.endpoint() == Some(arn.as_str()))
        .expect("the queue is subscribed");
    let attributes = transport
        .sns()
        .get_subscription_attributes()
        .subscription_arn(sub.subscription_arn().unwrap())
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    assert_eq!(
        attributes.get("RawMessageDelivery").map(String::as_str),
        Some("true")
    );
    attributes.get("FilterPolicy").cloned().unwrap_or_default()
}

#[tokio::test]
async fn sns_filters_what_it_can_express_and_the_consumer_filters_the_rest() {
    let Some(transport) = transport(|c| c).await else {
        return;
    };
    let ns = Namespace::new();
    let narrow = spec(&ns, "orders", &["order.*"]);
    let wide = spec(&ns, "created", &["*.created"]);
    let mut orders = transport.subscribe(&narrow).await.expect("subscribe");
    let mut created = transport.subscribe(&wide).await.expect("subscribe");
    let policy = |text: String| serde_json::from_str::<serde_json::Value>(&text).unwrap();
    assert_eq!(
        policy(filter_policy(&transport, &narrow.name).await),
        serde_json::json!({
            "eventName": [{ "prefix": ns.topic("order.") }],
            "depth": [{ "numeric": ["=", 3] }],
        })
    );
    // SNS has no wildcard in the middle: the namespace's prefix and the depth, no more.
    assert_eq!(
        policy(filter_policy(&transport, &wide.name).await),
        serde_json::json!({
            "eventName": [{ "prefix": ns.topic("") + "." }],
            "depth": [{ "numeric": ["=", 3] }],
        })
    );

    for topic in [
        "order.created",
        "order.paid",
        "order.stock.low",
        "payment.created",
    ] {
        transport
            .publish(&event(&ns, topic))
            .await
            .expect("publish");
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = recv(&mut orders, Duration::from_secs(10))
            .await
            .expect("an order event");
        got.push(d.topic().to_owned());
        d.ack().await.expect("ack");
    }
    got.sort();
    assert_eq!(got, [ns.topic("order.created"), ns.topic("order.paid")]);
    recv_none(&mut orders, Duration::from_secs(2)).await;

    // SNS let three into the wide queue (`order.stock.low` has four words); the consumer
    // handed out the two that match and deleted `order.paid`.
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = recv(&mut created, Duration::from_secs(10))
            .await
            .expect("a created event");
        got.push(d.topic().to_owned());
        d.ack().await.expect("ack");
    }
    got.sort();
    assert_eq!(
        got,
        [ns.topic("order.created"), ns.topic("payment.created")]
    );
    recv_none(&mut created, Duration::from_secs(2)).await;
    assert_eq!(
        waiting(&transport, &wide.name).await,
        0,
        "order.paid was deleted"
    );
}

#[tokio::test]
async fn declaring_again_with_other_patterns_replaces_the_filter_policy() {
    let Some(transport) = transport(|c| c).await else {
        return;
    };
    let ns = Namespace::new();
    let first = spec(&ns, "audit", &["order.created"]);
    drop(transport.subscribe(&first).await.expect("subscribe"));
    assert!(
        filter_policy(&transport, &first.name)
            .await
            .contains("order.created")
    );
    let second = spec(&ns, "audit", &["payment.#"]);
    let mut stream = transport.subscribe(&second).await.expect("subscribe again");
    let policy = filter_policy(&transport, &second.name).await;
    assert!(
        policy.contains("payment") && !policy.contains("order.created"),
        "{policy}"
    );
    transport
        .publish(&event(&ns, "order.created"))
        .await
        .unwrap();
    transport
        .publish(&event(&ns, "payment.settled"))
        .await
        .unwrap();
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("payment.settled");
    assert_eq!(d.topic(), ns.topic("payment.settled"));
    d.ack().await.unwrap();
    recv_none(&mut stream, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_handler_keeps_its_message_past_the_lease() {
    let lease = Duration::from_secs(2);
    let Some(transport) = transport(|c| c.lease(lease)).await else {
        return;
    };
    let ns = Namespace::new();
    let spec = spec(&ns, "slow", &["#"]);
    let mut first = transport.subscribe(&spec).await.expect("subscribe");
    let mut second = transport
        .subscribe(&spec)
        .await
        .expect("a competing consumer");
    transport
        .publish(&event(&ns, "report.requested"))
        .await
        .unwrap();
    let held = recv(&mut first, Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(held.attempt(), 1);
    // Three and a half leases: without extensions the other consumer would get it.
    recv_none(&mut second, lease * 7 / 2).await;
    held.ack().await.expect("the receipt is still good");
    recv_none(&mut second, lease).await;
    recv_none(&mut first, Duration::from_millis(100)).await;
}

/// A transport that reaches moto through a proxy the test can cut, with a short lease.
async fn behind_a_proxy(endpoint: &str, lease: Duration) -> (Proxy, AwsTransport) {
    let upstream = url::Url::parse(endpoint)
        .expect("endpoint")
        .socket_addrs(|| None)
        .expect("address")[0];
    let proxy = Proxy::start(upstream).await.expect("proxy");
    let transport = common::connect(
        common::config_at(&proxy.http_url())
            .lease(lease)
            .timeout(Duration::from_secs(1)),
    )
    .await;
    (proxy, transport)
}

/// Cuts `transport` off for two leases, then waits until it reaches moto again.
async fn cut_past_the_lease(
    proxy: &Proxy,
    transport: &AwsTransport,
    subscription: &str,
    lease: Duration,
) {
    proxy.cut().await;
    tokio::time::sleep(lease * 2).await;
    proxy.restore().await.expect("restore");
    transport
        .count(subscription)
        .await
        .expect("the network is back");
}

fn rejected(subscription: &str, event: &Envelope) -> DeadLetter {
    DeadLetter::new(
        subscription,
        Original::Envelope(Box::new(event.clone())),
        Reason::new(ReasonKind::Rejected, "poison"),
    )
}

/// Dead-letters `stale`, whose lease ran out: refused, in words that name the lease.
async fn refused(stale: Box<dyn Delivery>, subscription: &str, event: &Envelope) {
    let error = stale
        .dead_letter(rejected(subscription, event))
        .await
        .expect_err("the lease ran out: the stale delivery is not dead-lettered");
    assert!(error.to_string().contains("lease"), "{error}");
}

/// Dead-letters `current`, which holds the lease: the event is in the dead-letter queue
/// once and gone from the subscription's queue.
async fn dead_lettered_once(
    current: Box<dyn Delivery>,
    transport: &AwsTransport,
    subscription: &str,
    event: &Envelope,
) {
    current
        .dead_letter(rejected(subscription, event))
        .await
        .expect("the delivery that holds the lease dead-letters it");
    assert_eq!(transport.count(subscription).await.expect("count"), 1);
    assert_eq!(
        waiting(transport, subscription).await,
        0,
        "deleted from the queue"
    );
}

/// A consumer cut off from SQS for longer than the lease no longer holds its message: by
/// then another consumer may have it. The first must not dead-letter it as well, or the
/// dead-letter queue holds the event twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_lease_ran_out_is_dead_lettered_once() {
    let lease = Duration::from_secs(2);
    let Some(endpoint) = common::moto() else {
        return;
    };
    let (proxy, cut_off) = behind_a_proxy(&endpoint, lease).await;
    // A long lease for the other consumer: its own lease keeping then stays quiet while the
    // test checks that the cut-off one does not release what the other holds.
    let other = common::connect(common::config_at(&endpoint).lease(Duration::from_secs(60))).await;
    let ns = Namespace::new();
    let spec = spec(&ns, "poison", &["#"]);
    let mut first = cut_off.subscribe(&spec).await.expect("subscribe");
    let sent = event(&ns, "order.created");
    other.publish(&sent).await.expect("publish");
    let stale = recv(&mut first, Duration::from_secs(10))
        .await
        .expect("delivered");
    drop(first);

    // Cut off past the lease: its extensions fail, and the message goes to the other.
    let mut second = other.subscribe(&spec).await.expect("subscribe");
    let waiting_for_it = tokio::spawn(async move {
        let current = recv(&mut second, Duration::from_secs(20)).await;
        (current, second)
    });
    cut_past_the_lease(&proxy, &cut_off, &spec.name, lease).await;
    let (current, mut second) = waiting_for_it.await.expect("receiver");
    let current = current.expect("delivered again after the lease");
    assert_eq!(current.attempt(), 2);

    refused(stale, &spec.name, &sent).await;
    // Dropped unsettled, the stale delivery does not release what the other one holds.
    recv_none(&mut second, lease).await;
    dead_lettered_once(current, &other, &spec.name, &sent).await;
}

/// The same, when the message comes back to the same stream: the stale delivery and the
/// new one hold leases of their own, so the stale one is refused and the new one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_received_again_by_the_same_stream_is_dead_lettered_once() {
    let lease = Duration::from_secs(2);
    let Some(endpoint) = common::moto() else {
        return;
    };
    let (proxy, transport) = behind_a_proxy(&endpoint, lease).await;
    let ns = Namespace::new();
    let spec = spec(&ns, "poison-again", &["#"]);
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    let sent = event(&ns, "order.created");
    transport.publish(&sent).await.expect("publish");
    let stale = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    cut_past_the_lease(&proxy, &transport, &spec.name, lease).await;
    let current = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered again after the lease");
    assert_eq!(current.attempt(), 2);

    refused(stale, &spec.name, &sent).await;
    dead_lettered_once(current, &transport, &spec.name, &sent).await;
}

#[tokio::test]
async fn sqs_moves_a_message_to_the_dead_letter_queue_after_the_delivery_limit() {
    let Some(transport) = transport(|c| c.delivery_limit(2)).await else {
        return;
    };
    let ns = Namespace::new();
    let spec = spec(&ns, "crashy", &["#"]);
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    let envelope = event(&ns, "order.created");
    transport.publish(&envelope).await.unwrap();
    // A consumer that dies with the message, twice: dropped unsettled, released at once.
    for attempt in 1..=2 {
        let d = recv(&mut stream, Duration::from_secs(10))
            .await
            .expect("delivered");
        assert_eq!(d.attempt(), attempt);
        drop(d);
    }
    // The next receive finds it past the limit: SQS moves it (moto does so on receive).
    recv_none(&mut stream, Duration::from_secs(3)).await;
    let letters = transport
        .list(&spec.name, Page::default())
        .await
        .expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.reason.kind, ReasonKind::RetriesExhausted);
    assert!(
        letter.reason.message.contains("redrive"),
        "{}",
        letter.reason
    );
    assert_eq!(
        letter.envelope().map(|e| e.id.as_str()),
        Some(envelope.id.as_str())
    );
    assert_eq!(transport.count(&spec.name).await.unwrap(), 1);

    transport
        .replay(&spec.name, &letter.id, ReplayTarget::Subscription)
        .await
        .expect("replay");
    let again = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("replayed");
    assert_eq!(again.envelope().unwrap().id, envelope.id);
    assert_eq!(again.attempt(), 1, "a replayed message starts over");
    again.ack().await.unwrap();
    assert_eq!(transport.count(&spec.name).await.unwrap(), 0);
}

#[tokio::test]
async fn a_fifo_topic_drops_a_second_publish_of_the_same_event() {
    let Some(transport) =
        transport(|c| c.fifo(true).topic(format!("{}-dedup", common::run()))).await
    else {
        return;
    };
    let ns = Namespace::new();
    let spec = spec(&ns, "once", &["#"]);
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    let mut envelope = event(&ns, "order.created").with_subject("order_1");
    envelope.extensions.partitionkey = Some("customer_9".to_owned());
    transport.publish(&envelope).await.unwrap();
    transport
        .publish(&envelope)
        .await
        .expect("accepted, and dropped");
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered once");
    assert_eq!(d.envelope().unwrap().id, envelope.id);
    d.ack().await.unwrap();
    recv_none(&mut stream, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn batches_keep_within_the_size_limit_and_an_oversized_event_is_refused() {
    let Some(transport) = transport(|c| c).await else {
        return;
    };
    let ns = Namespace::new();
    let spec = spec(&ns, "bulky", &["#"]);
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    // 25 events of 60 kB: three calls of ten would each be over 256 KiB.
    let filler = "x".repeat(60_000);
    let batch: Vec<Envelope> = (0..25)
        .map(|i| {
            event(&ns, "report.generated")
                .with_json_data(&serde_json::json!({ "i": i, "filler": filler }))
                .unwrap()
        })
        .collect();
    transport
        .publish_batch(&batch)
        .await
        .expect("publish in batches");
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 25 {
        let d = recv(&mut stream, Duration::from_secs(20))
            .await
            .expect("all 25 arrive");
        got.insert(d.envelope().unwrap().id.clone());
        d.ack().await.unwrap();
    }

    let huge = event(&ns, "report.generated")
        .with_json_data(&serde_json::json!({ "filler": "x".repeat(300_000) }))
        .unwrap();
    match transport.publish(&huge).await {
        Err(TransportError::TooLarge { limit, .. }) => assert_eq!(limit, 262_144),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// A producer that is not tidings sends CloudEvents straight to the queue, with no
/// attributes: the event's own type routes it, and the patterns still filter it.
#[tokio::test]
async fn events_sent_to_the_queue_by_hand_are_routed_by_their_type() {
    let Some(transport) = transport(|c| c).await else {
        return;
    };
    let ns = Namespace::new();
    let spec = spec(&ns, "inbox", &["order.*"]);
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    let (url, _) = transport.queue_urls(&spec.name).await.unwrap().unwrap();
    for (id, topic) in [("a", "payment.created"), ("b", "order.created")] {
        let body = serde_json::json!({
            "specversion": "1.0", "id": id, "source": "celery-worker", "type": ns.topic(topic),
        });
        transport
            .sqs()
            .send_message()
            .queue_url(&url)
            .message_body(body.to_string())
            .send()
            .await
            .expect("send by hand");
    }
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    assert_eq!(d.envelope().unwrap().id, "b");
    assert_eq!(d.topic(), ns.topic("order.created"));
    d.ack().await.unwrap();
    recv_none(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(
        waiting(&transport, &spec.name).await,
        0,
        "the payment was deleted"
    );
}
