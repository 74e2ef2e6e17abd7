use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tidings::dead_letter::{DeadLetter, Original, Page, Reason, ReasonKind};
use tidings::envelope::Envelope;
use tidings::transport::{DeliveryStream, Transport, TransportError};

use super::{QUIET, WAIT, envelope, seq_of, spec};
use crate::{Harness, Namespace, Probe, recv, recv_none};

/// A published event reaches a subscriber whose pattern matches it, identical to what was
/// sent, exactly once. A connected transport says it is ready, before and after.
pub async fn publish_subscribe(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    transport
        .ready()
        .await
        .expect("a connected transport is ready");
    let mut stream = transport
        .subscribe(&spec(&ns, "notification", &["order.*"]))
        .await
        .expect("subscribe");
    let sent = envelope(&ns, "order.created", 1)
        .with_tenant("tenant_abc")
        .with_correlation_id("req_xyz");
    transport.publish(&sent).await.expect("publish");

    let delivery = recv(&mut stream, WAIT).await.expect("delivered");
    assert_eq!(**delivery.envelope().expect("decodable"), sent);
    assert_eq!(delivery.attempt(), 1);
    delivery.ack().await.expect("ack");
    recv_none(&mut stream, QUIET).await;
}

/// A delivery dropped without being settled comes back, with its attempt count raised.
pub async fn no_ack_means_redelivery(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let subscription = spec(&ns, "billing", &["order.#"]);
    let mut stream = transport.subscribe(&subscription).await.expect("subscribe");
    let sent = envelope(&ns, "order.paid", 7);
    transport.publish(&sent).await.expect("publish");

    let first = recv(&mut stream, WAIT).await.expect("delivered");
    assert_eq!(first.attempt(), 1);
    drop(first);
    drop(stream);

    let mut stream = transport
        .subscribe(&subscription)
        .await
        .expect("resubscribe");
    let again = recv(&mut stream, WAIT).await.expect("redelivered");
    assert_eq!(again.envelope().expect("decodable").id, sent.id);
    assert!(again.attempt() >= 2, "attempt {}", again.attempt());
    again.ack().await.expect("ack");
    recv_none(&mut stream, QUIET).await;
}

/// A subscription outlives its consumers: when one goes away mid-stream, a new one gets
/// everything that was not acked, including what the first held.
pub async fn continue_after_subscriber_closes(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let subscription = spec(&ns, "search", &["product.#"]).with_prefetch(4);
    let mut first = transport.subscribe(&subscription).await.expect("subscribe");
    for seq in 0..10 {
        transport
            .publish(&envelope(&ns, "product.updated", seq))
            .await
            .expect("publish");
    }
    let mut acked = BTreeSet::new();
    for _ in 0..3 {
        let d = recv(&mut first, WAIT).await.expect("delivered");
        acked.insert(seq_of(d.envelope().expect("decodable")));
        d.ack().await.expect("ack");
    }
    let held = recv(&mut first, WAIT).await.expect("delivered");
    drop(first);
    drop(held);

    let mut second = transport
        .subscribe(&subscription)
        .await
        .expect("resubscribe");
    let mut rest = BTreeSet::new();
    while rest.len() + acked.len() < 10 {
        let d = recv(&mut second, WAIT)
            .await
            .expect("the rest is delivered");
        rest.insert(seq_of(d.envelope().expect("decodable")));
        d.ack().await.expect("ack");
    }
    assert!(acked.is_disjoint(&rest), "acked events came back: {rest:?}");
    let all: BTreeSet<u64> = acked.union(&rest).copied().collect();
    assert_eq!(all, (0..10).collect());
}

/// With one consumer and no failures, events of a subscription arrive in publish order.
pub async fn ordering_with_one_consumer(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    if !transport.capabilities().ordering {
        eprintln!("not applicable: {} promises no ordering", transport.name());
        return;
    }
    let mut stream = transport
        .subscribe(&spec(&ns, "ledger", &["payment.*"]).with_prefetch(1))
        .await
        .expect("subscribe");
    let sent: Vec<_> = (0..50)
        .map(|seq| envelope(&ns, "payment.completed", seq))
        .collect();
    transport.publish_batch(&sent).await.expect("publish");
    for expected in 0..50 {
        let d = recv(&mut stream, WAIT).await.expect("delivered");
        assert_eq!(seq_of(d.envelope().expect("decodable")), expected);
        d.ack().await.expect("ack");
    }
}

/// After close, publishing fails with `Closed` and delivery streams end.
pub async fn publisher_close(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let mut stream = transport
        .subscribe(&spec(&ns, "audit", &["#"]))
        .await
        .expect("subscribe");
    transport
        .publish(&envelope(&ns, "order.created", 1))
        .await
        .expect("publish before close");
    recv(&mut stream, WAIT)
        .await
        .expect("delivered before close")
        .ack()
        .await
        .expect("ack");
    transport.close().await.expect("close");
    let after = transport.publish(&envelope(&ns, "order.created", 2)).await;
    assert!(
        matches!(after, Err(TransportError::Closed)),
        "publish after close: {after:?}"
    );
    assert!(
        recv(&mut stream, WAIT).await.is_none(),
        "stream ends on close"
    );
}

async fn consume_into(mut stream: DeliveryStream, probe: Arc<Probe<(u8, u64)>>, consumer: u8) {
    while let Some(d) = recv(&mut stream, WAIT).await {
        probe.push((consumer, seq_of(d.envelope().expect("decodable"))));
        // Let the other consumers run before settling, so that competing consumers interleave.
        tokio::task::yield_now().await;
        d.ack().await.expect("ack");
    }
}

/// Subscriptions with different names each get every event (fan-out); streams of the same
/// subscription share them, each event going to one of them (competing consumers).
pub async fn fan_out_and_competing_consumers(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let shared = spec(&ns, "workers", &["order.*"]).with_prefetch(1);
    let a1 = transport.subscribe(&shared).await.expect("subscribe");
    let a2 = transport.subscribe(&shared).await.expect("subscribe");
    let b = transport
        .subscribe(&spec(&ns, "analytics", &["order.*"]))
        .await
        .expect("subscribe");
    let (competing, fanned) = (Probe::new(), Probe::new());
    let tasks = [
        tokio::spawn(consume_into(a1, competing.clone(), 1)),
        tokio::spawn(consume_into(a2, competing.clone(), 2)),
        tokio::spawn(consume_into(b, fanned.clone(), 0)),
    ];
    let n = 60;
    for seq in 0..n {
        transport
            .publish(&envelope(&ns, "order.created", seq))
            .await
            .expect("publish");
    }
    let got: BTreeSet<u64> = fanned
        .wait_for(n as usize, WAIT)
        .await
        .into_iter()
        .map(|(_, seq)| seq)
        .collect();
    assert_eq!(got, (0..n).collect(), "fan-out subscription got everything");

    let shared_items = competing.wait_for(n as usize, WAIT).await;
    tokio::time::sleep(QUIET).await;
    let shared_items = if competing.len() > shared_items.len() {
        competing.items()
    } else {
        shared_items
    };
    let mut seqs: Vec<u64> = shared_items.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    // Where the broker delivers at least once, a copy is allowed; every event still is not.
    let may_share = harness.competing_consumers_may_share();
    if may_share {
        seqs.dedup();
    }
    assert_eq!(
        seqs,
        (0..n).collect::<Vec<_>>(),
        "competing consumers together got each event {}",
        if may_share { "at least once" } else { "once" }
    );
    let per_consumer = |c: u8| shared_items.iter().filter(|(who, _)| *who == c).count();
    assert!(
        per_consumer(1) > 0 && per_consumer(2) > 0,
        "both competing consumers got work: {} and {}",
        per_consumer(1),
        per_consumer(2)
    );
    transport.close().await.expect("close");
    for task in tasks {
        let _ = task.await;
    }
}

/// A subscription, once declared, keeps events published while no consumer is attached.
pub async fn new_subscriber_of_persistent_subscription_gets_old_messages(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let subscription = spec(&ns, "loyalty", &["customer.#"]);
    drop(transport.subscribe(&subscription).await.expect("declare"));
    for seq in 0..5 {
        transport
            .publish(&envelope(&ns, "customer.points.earned", seq))
            .await
            .expect("publish");
    }
    let later = harness.transport().await;
    let mut stream = later.subscribe(&subscription).await.expect("subscribe");
    let mut got = BTreeSet::new();
    while got.len() < 5 {
        let d = recv(&mut stream, WAIT)
            .await
            .expect("old message delivered");
        got.insert(seq_of(d.envelope().expect("decodable")));
        d.ack().await.expect("ack");
    }
    assert_eq!(got, (0..5).collect());
}

/// Consumers and publishers carry on across a broker restart, losing nothing.
pub async fn reconnect_after_broker_restart(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let probe = Probe::new();
    let stream = transport
        .subscribe(&spec(&ns, "restart", &["order.*"]))
        .await
        .expect("subscribe");
    let consumer = tokio::spawn(consume_into(stream, probe.clone(), 0));
    for seq in 0..5 {
        transport
            .publish(&envelope(&ns, "order.created", seq))
            .await
            .expect("publish");
    }
    probe.wait_for(5, WAIT).await;
    if !harness.restart_broker().await {
        eprintln!("not applicable: the harness cannot restart its broker");
        consumer.abort();
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for seq in 5..10 {
        while let Err(e) = transport
            .publish(&envelope(&ns, "order.created", seq))
            .await
        {
            assert!(e.is_transient(), "publish after restart: {e}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "publishing failed for 60 s after the restart: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A restart may redeliver what was acked just before it (at-least-once): wait for ten
    // distinct events, not ten deliveries.
    let deadline = tokio::time::Instant::now() + WAIT;
    let got = loop {
        let got: BTreeSet<u64> = probe.items().into_iter().map(|(_, seq)| seq).collect();
        if got.len() >= 10 || tokio::time::Instant::now() >= deadline {
            break got;
        }
        probe
            .wait_for(probe.len() + 1, Duration::from_millis(200))
            .await;
    };
    assert_eq!(got, (0..10).collect());
    consumer.abort();
}

/// Bytes that are not an event are dead-lettered once, as undecodable, and the subscription
/// goes on.
pub async fn undecodable_bytes_dead_lettered_once(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport: Arc<dyn Transport> = harness.transport().await;
    let (bus, settled) = super::observed_bus(&ns, transport.clone());
    let probe = Probe::new();
    let seen = probe.clone();
    let name = ns.subscription("poison");
    bus.subscribe_pattern(&name, &ns.topic("order.*"), move |e: Arc<Envelope>| {
        let seen = seen.clone();
        async move {
            seen.push(seq_of(&e));
            Ok(())
        }
    })
    .await
    .expect("subscribe");
    if !harness
        .publish_raw(&ns.topic("order.created"), b"\x00not json{")
        .await
    {
        eprintln!(
            "not applicable: {} carries envelopes, not bytes",
            transport.name()
        );
        return;
    }
    bus.publish_envelope(envelope(&ns, "order.created", 1))
        .await
        .expect("publish");
    settled.wait_for(2, WAIT).await;
    tokio::time::sleep(QUIET).await;
    let labels: Vec<_> = settled.items().into_iter().map(|s| s.label).collect();
    assert_eq!(
        labels.iter().filter(|l| **l == "dead_letter").count(),
        1,
        "{labels:?}"
    );
    assert_eq!(labels.len(), 2, "nothing was redelivered: {labels:?}");
    let letters = bus
        .dead_letters()
        .list(&name, Page::default())
        .await
        .expect("list");
    assert_eq!(letters.len(), 1, "dead-lettered exactly once: {letters:?}");
    assert_eq!(letters[0].reason.kind, ReasonKind::Undecodable);
    assert!(matches!(
        &letters[0].original,
        Original::Undecodable { body, .. } if &body[..] == b"\x00not json{"
    ));
    assert_eq!(probe.items(), [1]);
    bus.shutdown().await.expect("shutdown");
}

/// [`Transport::backlog`]: three events nobody consumed are a backlog of three, and none is
/// left once they are handled and acked. Where the transport tells the oldest's age, it is
/// the first event's: no more than the time since it was published, growing while it
/// waits, and gone with the backlog. For the transports that can count (the others answer
/// `None`, which this reports as not applicable).
pub async fn backlog_counts_what_waits(transport: Arc<dyn Transport>) {
    let ns = Namespace::new();
    let spec = spec(&ns, "backlog", &["order.*"]);
    drop(transport.subscribe(&spec).await.expect("declare"));
    let name = spec.name.clone();
    if transport.backlog(&name).await.expect("backlog").is_none() {
        eprintln!("not applicable: {} cannot count", transport.name());
        return;
    }
    let published = std::time::Instant::now();
    for seq in 0..3 {
        transport
            .publish(&envelope(&ns, "order.created", seq))
            .await
            .expect("publish");
    }
    let depth = || async {
        transport
            .backlog(&name)
            .await
            .expect("backlog")
            .map(|b| b.depth)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while depth().await != Some(3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "three waiting: {:?}",
            depth().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let age = || async {
        transport
            .backlog(&name)
            .await
            .expect("backlog")
            .and_then(|b| b.oldest_age)
    };
    if let Some(first) = age().await {
        // Stores keep times to the millisecond or the second: a second of slack.
        let slack = Duration::from_secs(1);
        assert!(
            first <= published.elapsed() + slack,
            "the oldest waited {first:?}, published {:?} ago",
            published.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let later = age().await.expect("still waiting, its age still known");
        assert!(
            later >= first + Duration::from_millis(500),
            "the age grows while it waits: {first:?}, then {later:?}"
        );
    }
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    for _ in 0..3 {
        recv(&mut stream, WAIT)
            .await
            .expect("delivered")
            .ack()
            .await
            .expect("ack");
    }
    while depth().await != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline + WAIT,
            "none left after the acks: {:?}",
            depth().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(age().await, None, "no age once nothing waits");
}

/// [`Transport::remove_subscription`]: a removed subscription keeps nothing. What waited in
/// it, what is published while it is gone and its dead letters are gone; subscribing again
/// under its name starts empty and gets what is published from then on. Removing it twice,
/// or a name never used, succeeds. For the transports that can remove subscriptions (the
/// others refuse, which this reports as not applicable).
pub async fn removed_subscription_keeps_nothing(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let spec = spec(&ns, "tail", &["order.*"]);
    let name = spec.name.clone();
    let mut stream = transport.subscribe(&spec).await.expect("subscribe");
    transport
        .publish(&envelope(&ns, "order.created", 1))
        .await
        .expect("publish");
    let delivery = recv(&mut stream, WAIT).await.expect("delivered");
    let original = Original::Envelope(Box::new((**delivery.envelope().expect("event")).clone()));
    delivery
        .dead_letter(DeadLetter::new(
            &name,
            original,
            Reason::new(ReasonKind::Rejected, "kept for the rule"),
        ))
        .await
        .expect("dead-letter");
    transport
        .publish(&envelope(&ns, "order.created", 2))
        .await
        .expect("publish");
    drop(stream);
    let deadline = tokio::time::Instant::now() + WAIT;
    while transport.count(&name).await.expect("count") != 1 {
        assert!(tokio::time::Instant::now() < deadline, "one dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    match transport.remove_subscription(&name).await {
        Err(TransportError::Refused(reason)) => {
            eprintln!("not applicable: {reason}");
            return;
        }
        removed => removed.expect("remove"),
    }
    // Nothing is bound to the topic now: a transport may drop the event or refuse it.
    match transport.publish(&envelope(&ns, "order.created", 3)).await {
        Ok(()) | Err(TransportError::Unroutable { .. }) => {}
        Err(error) => panic!("publish with nothing bound: {error}"),
    }
    assert_eq!(
        transport.count(&name).await.expect("count"),
        0,
        "dead letters"
    );
    transport.remove_subscription(&name).await.expect("again");
    transport
        .remove_subscription(&ns.subscription("never"))
        .await
        .expect("a name never used");

    let mut stream = transport.subscribe(&spec).await.expect("subscribe again");
    transport
        .publish(&envelope(&ns, "order.created", 4))
        .await
        .expect("publish");
    let delivery = recv(&mut stream, WAIT).await.expect("delivered");
    assert_eq!(
        seq_of(delivery.envelope().expect("event")),
        4,
        "only what was published after subscribing again"
    );
    delivery.ack().await.expect("ack");
    recv_none(&mut stream, QUIET).await;
}
