use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tidings::dead_letter::{Page, ReasonKind};
use tidings::envelope::Envelope;
use tidings::retry::RetryPolicy;
use tidings::{Event, HandlerError};

use super::{
    CartCheckedOut, CartLine, MeterRead, OrderCreated, OrderPriced, QUIET, Reading, WAIT, envelope,
    fast_retry, observed_bus, seq_of,
};
use crate::{Harness, Namespace, Probe};

type Env = Arc<Envelope>;

/// Many topics published at once all reach a subscription matching them all.
pub async fn many_topics_at_once(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, _) = observed_bus(&ns, harness.transport().await);
    let probe = Probe::new();
    let seen = probe.clone();
    bus.subscribe_pattern(ns.subscription("audit"), &ns.topic("#"), move |e: Env| {
        let seen = seen.clone();
        async move {
            seen.push((e.ty.clone(), seq_of(&e)));
            Ok(())
        }
    })
    .await
    .expect("subscribe");
    let topics = [
        "order.created",
        "order.paid",
        "product.stock.low",
        "customer.created",
        "payment.refund.completed",
    ];
    let mut sent = BTreeSet::new();
    let mut batch = Vec::new();
    for (i, topic) in topics.iter().cycle().take(100).enumerate() {
        let e = envelope(&ns, topic, i as u64);
        sent.insert((e.ty.clone(), i as u64));
        batch.push(e);
    }
    bus.publish_envelopes(batch).await.expect("publish");
    let got: BTreeSet<_> = probe.wait_for(100, WAIT).await.into_iter().collect();
    assert_eq!(got, sent);
    bus.shutdown().await.expect("shutdown");
}

/// Several subscriptions, fed by several concurrent publishers, each get every event once.
pub async fn concurrent_subscribers(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, _) = observed_bus(&ns, harness.transport().await);
    let probes: Vec<Arc<Probe<u64>>> = (0..4).map(|_| Probe::new()).collect();
    for (i, probe) in probes.iter().enumerate() {
        let seen = probe.clone();
        bus.subscribe_pattern(
            ns.subscription(&format!("s{i}")),
            &ns.topic("order.*"),
            move |e: Env| {
                let seen = seen.clone();
                async move {
                    seen.push(seq_of(&e));
                    Ok(())
                }
            },
        )
        .await
        .expect("subscribe");
    }
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let bus = bus.clone();
            let ns = ns.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    bus.publish_envelope(envelope(&ns, "order.created", p * 100 + i))
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    let expected: BTreeSet<u64> = (0..4u64)
        .flat_map(|p| (0..25).map(move |i| p * 100 + i))
        .collect();
    for probe in &probes {
        let got = probe.wait_for(100, WAIT).await;
        assert_eq!(got.len(), 100, "each subscription got each event once");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
    }
    bus.shutdown().await.expect("shutdown");
}

/// A handler error leads to redelivery, with the attempt count raised.
pub async fn redelivery_on_error(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, _) = observed_bus(&ns, harness.transport().await);
    let attempts = Probe::new();
    let seen = attempts.clone();
    bus.subscription(ns.subscription("email"))
        .on_pattern(&ns.topic("order.created"), move |e: Env| {
            let seen = seen.clone();
            async move {
                seen.push(e.id.clone());
                if seen.len() == 1 {
                    return Err(HandlerError::retry("smtp unavailable"));
                }
                Ok(())
            }
        })
        .retry(fast_retry(5))
        .start()
        .await
        .expect("subscribe");
    let sent = envelope(&ns, "order.created", 1);
    bus.publish_envelope(sent.clone()).await.expect("publish");
    let got = attempts.wait_for(2, WAIT).await;
    assert_eq!(got, [sent.id.clone(), sent.id.clone()]);
    tokio::time::sleep(QUIET).await;
    assert_eq!(attempts.len(), 2, "acked after the successful retry");
    bus.shutdown().await.expect("shutdown");
}

/// Failing events do not hold up the others: everything else is handled.
pub async fn continue_after_errors(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let handled = Probe::new();
    let seen = handled.clone();
    let name = ns.subscription("inventory");
    bus.subscription(&name)
        .on_pattern(&ns.topic("product.#"), move |e: Env| {
            let seen = seen.clone();
            async move {
                let seq = seq_of(&e);
                if seq.is_multiple_of(3) {
                    return Err(HandlerError::reject(format!("bad sku in event {seq}")));
                }
                seen.push(seq);
                Ok(())
            }
        })
        .start()
        .await
        .expect("subscribe");
    for seq in 0..30 {
        bus.publish_envelope(envelope(&ns, "product.stock.updated", seq))
            .await
            .expect("publish");
    }
    settled.wait_for(30, WAIT).await;
    let got: BTreeSet<u64> = handled.items().into_iter().collect();
    assert_eq!(got, (0..30).filter(|s| s % 3 != 0).collect());
    // Each failing event is dead-lettered once. A dead-lettering the transport refused (a
    // lease that ran out, say) comes back and is dead-lettered then: wait for it.
    let dead_letters = bus.dead_letters();
    let deadline = tokio::time::Instant::now() + WAIT;
    while dead_letters.count(&name).await.expect("count") < 10 {
        assert!(tokio::time::Instant::now() < deadline, "ten dead letters");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(dead_letters.count(&name).await.expect("count"), 10);
    bus.shutdown().await.expect("shutdown");
}

/// A transient failure is retried with backoff up to the policy's attempts, then
/// dead-lettered with the original envelope, the error, the attempts, the first and last
/// failure times, the handler and the subscription.
pub async fn retry_with_backoff_then_dead_letter(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let name = ns.subscription("payments");
    let topic = ns.topic("payment.initiated");
    bus.subscription(&name)
        .on_pattern(&topic, move |_: Env| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::retry("gateway timeout"))
            }
        })
        .retry(fast_retry(3))
        .start()
        .await
        .expect("subscribe");
    let mut sent = envelope(&ns, "payment.initiated", 9).with_tenant("tenant_abc");
    // Its own trace context, which the bus keeps (it would start a trace for one without).
    sent.extensions.traceparent =
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
    bus.publish_envelope(sent.clone()).await.expect("publish");
    let labels: Vec<_> = settled
        .wait_for(3, WAIT)
        .await
        .into_iter()
        .map(|s| s.label)
        .collect();
    assert_eq!(labels, ["retry", "retry", "dead_letter"]);
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no delivery after dead-lettering"
    );

    let letters = bus
        .dead_letters()
        .list(&name, Page::default())
        .await
        .expect("list");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        letter.envelope(),
        Some(&sent),
        "original envelope untouched"
    );
    assert_eq!(letter.reason.kind, ReasonKind::RetriesExhausted);
    assert!(
        letter.reason.message.contains("gateway timeout"),
        "{}",
        letter.reason
    );
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.subscription, name);
    assert_eq!(letter.handler.as_deref(), Some(topic.as_str()));
    assert!(letter.first_failure_at < letter.last_failure_at);
    let fetched = bus
        .dead_letters()
        .get(&name, &letter.id)
        .await
        .expect("get");
    assert_eq!(fetched.as_ref(), Some(letter));
    bus.shutdown().await.expect("shutdown");
}

/// Dead letters can be replayed to their subscription (handled afresh), replayed under
/// another topic, and purged.
pub async fn dead_letter_replay_and_purge(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let name = ns.subscription("shipping");
    let (broken, handled) = rejecting_until_mended(&bus, &name, &ns.topic("order.paid")).await;
    let review = Probe::new();
    let reviewed = review.clone();
    bus.subscribe_pattern(
        ns.subscription("review"),
        &ns.topic("order.review"),
        move |e: Env| {
            let reviewed = reviewed.clone();
            async move {
                reviewed.push((e.ty.clone(), seq_of(&e)));
                Ok(())
            }
        },
    )
    .await
    .expect("subscribe");

    for seq in 0..4 {
        bus.publish_envelope(envelope(&ns, "order.paid", seq))
            .await
            .expect("publish");
    }
    settled.wait_for(4, WAIT).await;
    let dlq = bus.dead_letters();
    assert_eq!(dlq.count(&name).await.expect("count"), 4);
    let letters = dlq.list(&name, Page::default()).await.expect("list");

    broken.store(false, Ordering::SeqCst);
    dlq.replay(&name, &letters[0].id).await.expect("replay");
    assert_eq!(
        handled.wait_for(1, WAIT).await,
        [seq_of(letters[0].envelope().expect("env"))]
    );

    dlq.replay_to(&name, &letters[1].id, &ns.topic("order.review"))
        .await
        .expect("replay to topic");
    let got = review.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, seq_of(letters[1].envelope().expect("env")));

    assert_eq!(dlq.count(&name).await.expect("count"), 2);
    let unknown = dlq.replay(&name, "no-such-id").await;
    assert!(unknown.is_err(), "replaying an unknown id fails");
    assert_eq!(dlq.purge(&name).await.expect("purge"), 2);
    assert_eq!(dlq.count(&name).await.expect("count"), 0);
    tokio::time::sleep(QUIET).await;
    assert_eq!(handled.len(), 1, "purged letters are gone for good");
    bus.shutdown().await.expect("shutdown");
}

/// A dead letter replayed goes back to the subscription that dead-lettered it (DESIGN:
/// "replayed to the original subscription"), not to the others bound to its topic, which
/// handled the event already.
pub async fn a_replay_reaches_only_its_own_subscription(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let shipping = ns.subscription("shipping");
    let (broken, shipped) = rejecting_until_mended(&bus, &shipping, &ns.topic("order.paid")).await;
    // Without its inbox, which would drop a replay that reached it as a duplicate.
    let audited = Probe::new();
    let seen = audited.clone();
    bus.subscription(ns.subscription("audit"))
        .dedupe(false)
        .on_pattern(&ns.topic("order.paid"), move |e: Env| {
            let seen = seen.clone();
            async move {
                seen.push(seq_of(&e));
                Ok(())
            }
        })
        .start()
        .await
        .expect("subscribe");

    let paid = envelope(&ns, "order.paid", 7);
    bus.publish_envelope(paid.clone()).await.expect("publish");
    settled
        .wait_until(WAIT, |all| {
            all.iter()
                .any(|s| s.subscription == shipping && s.label == "dead_letter")
        })
        .await;
    assert_eq!(audited.wait_for(1, WAIT).await, [7]);

    broken.store(false, Ordering::SeqCst);
    let letter = dead_letter_of(&bus, &shipping, &paid.id).await;
    bus.dead_letters()
        .replay(&shipping, &letter.id)
        .await
        .expect("replay");
    assert_eq!(
        shipped.wait_for(1, WAIT).await,
        [7],
        "shipping has it again"
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        audited.len(),
        1,
        "the audit subscription, which handled it, does not get the replay"
    );
    bus.shutdown().await.expect("shutdown");
}

/// An event whose data does not fit its type is dead-lettered once, with the offending field,
/// and never reaches the handler; the subscription goes on.
pub async fn poison_input_dead_lettered_once(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let name = ns.subscription("typed");
    let handled = recording(&bus, &name, None, |e: &OrderCreated| e.seq).await;
    let poison = Envelope::new(ns.as_str(), "conformance.order.created")
        .with_json_data(&serde_json::json!({ "order_id": "o-1", "seq": "not a number" }))
        .expect("json");
    bus.publish_envelope(poison.clone()).await.expect("publish");
    bus.publish(&OrderCreated {
        order_id: "o-2".into(),
        seq: 2,
    })
    .await
    .expect("publish");
    let mine = |s: &super::Settled| s.subscription == name;
    settled.wait_for(2, WAIT).await;
    tokio::time::sleep(QUIET).await;
    let labels: Vec<_> = settled
        .items()
        .into_iter()
        .filter(mine)
        .map(|s| (s.id.unwrap_or_default(), s.label))
        .collect();
    assert!(
        labels.contains(&(poison.id.clone(), "dead_letter")),
        "{labels:?}"
    );
    assert_eq!(
        labels.iter().filter(|(id, _)| *id == poison.id).count(),
        1,
        "poison handled once: {labels:?}"
    );
    assert!(handled.items().contains(&2));
    let letter = dead_letter_of(&bus, &name, &poison.id).await;
    assert_eq!(letter.reason.kind, ReasonKind::SchemaViolation);
    assert!(letter.reason.message.contains("seq"), "{}", letter.reason);
    assert_eq!(letter.attempts, 1);
    bus.shutdown().await.expect("shutdown");
}

/// A typed handler gets each event's data as the version it was written in reads into its
/// type: an older version through the upcasters even when its data would deserialize as it
/// is, a newer one not at all (dead-lettered as an unsupported version).
pub async fn each_version_read_as_written(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let name = ns.subscription("priced");
    let handled = recording(&bus, &name, None, |e: &OrderPriced| {
        (e.order_id.clone(), e.cents)
    })
    .await;
    let priced = |order: &str, data: serde_json::Value, version: &str| {
        Envelope::new(ns.as_str(), "conformance.order.priced")
            .with_json_data(&data)
            .expect("json")
            .with_data_version(version)
            .with_subject(order)
    };
    let older = priced(
        "v1",
        serde_json::json!({ "order_id": "v1", "euros": 1.5 }),
        "1",
    );
    let newer = priced(
        "v3",
        serde_json::json!({ "order_id": "v3", "cents": 7 }),
        "3",
    );
    bus.publish_envelope(older).await.expect("publish");
    bus.publish_envelope(newer.clone()).await.expect("publish");
    bus.publish(&OrderPriced {
        order_id: "v2".into(),
        cents: 250,
    })
    .await
    .expect("publish");
    let mine = |s: &super::Settled| s.subscription == name;
    settled.wait_for(3, WAIT).await;
    tokio::time::sleep(QUIET).await;
    let mut handled = handled.items();
    handled.sort();
    assert_eq!(
        handled,
        [("v1".to_owned(), 150), ("v2".to_owned(), 250)],
        "version 1 upcast, version 2 as it is, version 3 not handled"
    );
    let letter = dead_letter_of(&bus, &name, &newer.id).await;
    assert_eq!(letter.reason.kind, ReasonKind::UnsupportedVersion);
    assert_eq!(
        settled.items().into_iter().filter(mine).count(),
        3,
        "each event settled once"
    );
    bus.shutdown().await.expect("shutdown");
}

/// Data that deserializes into the handler's type but breaks what its JSON Schema asserts
/// beyond that (a `range`) is dead-lettered as a schema violation, never handled.
pub async fn schema_beyond_serde_is_held(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let name = ns.subscription("carts");
    let handled = recording(&bus, &name, None, |e: &CartCheckedOut| e.cart_id.clone()).await;
    let cart = |id: &str, quantity: u32| CartCheckedOut {
        cart_id: id.into(),
        lines: vec![CartLine { quantity }],
    };
    let empty = Envelope::new(ns.as_str(), "conformance.cart.checked_out")
        .with_json_data(&cart("empty", 0))
        .expect("json");
    bus.publish_envelope(empty.clone()).await.expect("publish");
    bus.publish(&cart("full", 2)).await.expect("publish");
    settled.wait_for(2, WAIT).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(handled.items(), ["full"], "only the valid cart handled");
    let letter = dead_letter_of(&bus, &name, &empty.id).await;
    assert_eq!(letter.reason.kind, ReasonKind::SchemaViolation);
    assert!(
        letter.reason.message.contains("/lines/0/quantity"),
        "{}",
        letter.reason
    );
    bus.shutdown().await.expect("shutdown");
}

/// Deserializing that panics is a transient failure of the handler, as a panic in the
/// handler is: retried up to the policy's attempts, then dead-lettered; the other events of
/// the subscription are handled meanwhile.
pub async fn a_panic_reading_the_data_is_a_transient_failure(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let name = ns.subscription("meters");
    let handled = recording(&bus, &name, Some(fast_retry(2)), |e: &MeterRead| {
        e.reading.0
    })
    .await;
    let read = |meter: &str, reading: u32| MeterRead {
        meter_id: meter.into(),
        reading: Reading(reading),
    };
    let broken = bus.envelope(&read("m-0", 0)).expect("envelope");
    bus.publish_envelope(broken.clone()).await.expect("publish");
    bus.publish(&read("m-7", 7)).await.expect("publish");
    settled.wait_for(3, WAIT).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(handled.items(), [7], "the other event handled");
    let labels: Vec<_> = settled
        .items()
        .into_iter()
        .filter(|s| s.id.as_ref() == Some(&broken.id))
        .map(|s| s.label)
        .collect();
    assert_eq!(labels, ["retry", "dead_letter"]);
    let letter = dead_letter_of(&bus, &name, &broken.id).await;
    assert_eq!(letter.reason.kind, ReasonKind::RetriesExhausted);
    assert!(letter.reason.message.contains("panic"), "{}", letter.reason);
    assert_eq!(letter.attempts, 2);
    bus.shutdown().await.expect("shutdown");
}

/// The same event (same source and id) published twice is handled once.
pub async fn deduplication(harness: &impl Harness) {
    let ns = Namespace::new();
    let (bus, settled) = observed_bus(&ns, harness.transport().await);
    let handled = Probe::new();
    let seen = handled.clone();
    bus.subscribe_pattern(
        ns.subscription("crm"),
        &ns.topic("customer.*"),
        move |e: Env| {
            let seen = seen.clone();
            async move {
                seen.push(seq_of(&e));
                Ok(())
            }
        },
    )
    .await
    .expect("subscribe");
    let event = envelope(&ns, "customer.created", 5);
    bus.publish_envelope(event.clone()).await.expect("publish");
    settled.wait_for(1, WAIT).await;
    bus.publish_envelope(event.clone())
        .await
        .expect("publish the duplicate");
    bus.publish_envelope(envelope(&ns, "customer.updated", 6))
        .await
        .expect("publish");
    settled.wait_for(3, WAIT).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(handled.items(), [5, 6]);
    bus.shutdown().await.expect("shutdown");
}

/// Stopping a subscription lets in-flight handlers finish and settle; what was not started is
/// delivered to the next consumer; nothing is lost and nothing handled twice.
pub async fn graceful_shutdown_with_in_flight(harness: &impl Harness) {
    let ns = Namespace::new();
    let transport = harness.transport().await;
    let (bus, _) = observed_bus(&ns, transport.clone());
    let started = Probe::new();
    let finished = Probe::new();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let name = ns.subscription("slow");
    let topic = ns.topic("order.*");
    let handler = {
        let (started, finished, release) = (started.clone(), finished.clone(), release.clone());
        move |e: Env| {
            let (started, finished, release) = (started.clone(), finished.clone(), release.clone());
            async move {
                let seq = seq_of(&e);
                started.push(seq);
                release.acquire().await.expect("open").forget();
                finished.push(seq);
                Ok::<(), HandlerError>(())
            }
        }
    };
    let handle = bus
        .subscription(&name)
        .on_pattern(&topic, handler.clone())
        .concurrency(4)
        .prefetch(8)
        .start()
        .await
        .expect("subscribe");
    for seq in 0..20 {
        bus.publish_envelope(envelope(&ns, "order.created", seq))
            .await
            .expect("publish");
    }
    let in_flight = started.wait_for(4, WAIT).await.len();
    assert_eq!(in_flight, 4, "concurrency bounds the handlers in flight");
    let stopping = tokio::spawn(handle.stop());
    tokio::task::yield_now().await;
    release.add_permits(4);
    stopping.await.expect("stop");
    assert_eq!(
        finished.len(),
        4,
        "in-flight handlers finished before stop returned"
    );

    release.add_permits(1000);
    bus.subscription(&name)
        .on_pattern(&topic, handler)
        .start()
        .await
        .expect("resubscribe");
    let all = finished.wait_for(20, WAIT).await;
    tokio::time::sleep(QUIET).await;
    let all = if finished.len() > all.len() {
        finished.items()
    } else {
        all
    };
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct, (0..20).collect(), "nothing lost");
    assert_eq!(all.len(), 20, "nothing handled twice: {all:?}");
    bus.shutdown().await.expect("shutdown");
}

/// A subscription `name` on `pattern` whose handler rejects every event (a dead letter at
/// once) while the returned flag is set, and records each event's seq once it is cleared.
async fn rejecting_until_mended(
    bus: &tidings::Bus,
    name: &str,
    pattern: &str,
) -> (Arc<AtomicBool>, Arc<Probe<u64>>) {
    let broken = Arc::new(AtomicBool::new(true));
    let handled = Probe::new();
    let (flag, seen) = (broken.clone(), handled.clone());
    bus.subscription(name)
        .on_pattern(pattern, move |e: Env| {
            let (flag, seen) = (flag.clone(), seen.clone());
            async move {
                if flag.load(Ordering::SeqCst) {
                    return Err(HandlerError::reject("warehouse offline"));
                }
                seen.push(seq_of(&e));
                Ok(())
            }
        })
        .start()
        .await
        .expect("subscribe");
    (broken, handled)
}

/// A typed subscription `name` whose handler records `record` of each event it handles,
/// retried by `policy` (the bus's when `None`).
async fn recording<T, V>(
    bus: &tidings::Bus,
    name: &str,
    policy: Option<RetryPolicy>,
    record: fn(&T) -> V,
) -> Arc<Probe<V>>
where
    T: tidings::DomainEvent,
    V: Clone + Send + Sync + 'static,
{
    let handled = Probe::new();
    let seen = handled.clone();
    let mut subscription = bus.subscription(name).on::<T, _>(move |e: Event<T>| {
        let seen = seen.clone();
        async move {
            seen.push(record(&e));
            Ok(())
        }
    });
    if let Some(policy) = policy {
        subscription = subscription.retry(policy);
    }
    subscription.start().await.expect("subscribe");
    handled
}

/// The dead letter of the event `id` in `subscription`'s queue, which must hold it.
async fn dead_letter_of(
    bus: &tidings::Bus,
    subscription: &str,
    id: &str,
) -> tidings::dead_letter::DeadLetter {
    let letters = bus
        .dead_letters()
        .list(subscription, Page::default())
        .await
        .expect("list");
    letters
        .into_iter()
        .find(|l| l.envelope().is_some_and(|e| e.id == id))
        .unwrap_or_else(|| panic!("{id} dead-lettered in {subscription}"))
}
