//! The broker goes away and comes back: nothing is lost, and the inbox removes the duplicates.
//!
//! These tests stop and start the machine's RabbitMQ (`rabbitmqctl stop_app` / `start_app`)
//! or close every connection (`rabbitmqctl close_all_connections`). They take turns (one
//! lock for the binary), and live in a binary of their own so that no other test talks to the
//! broker while it restarts.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::inbox::MemoryInbox;
use tidings::transport::{Publisher, Subscriber, Transport};
use tidings_amqp::AmqpTransport;
use tidings_sqlite::{FailoverPublisher, SqliteConfig, SqliteTransport};
use tidings_testkit::conformance::{envelope, seq_of};
use tidings_testkit::{Harness, Namespace, Probe, faults, recv, within};

/// One test at a time touches the broker's life.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long one test may take before it fails as hung (they pass in under a minute).
const LIMIT: Duration = Duration::from_secs(420);

struct Restartable;

#[async_trait::async_trait]
impl Harness for Restartable {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(
            AmqpTransport::connect(common::config())
                .await
                .expect("RabbitMQ"),
        )
    }

    async fn restart_broker(&self) -> bool {
        let stopped = common::stop_broker().await;
        common::start_broker(stopped).await;
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_broker_restart() {
    let _broker = BROKER.lock().await;
    if common::connect(common::config()).await.is_none() {
        return;
    }
    within(
        LIMIT,
        "reconnect_after_broker_restart",
        tidings_testkit::conformance::reconnect_after_broker_restart(&Restartable),
    )
    .await;
}

async fn stream_through(fault: &str, events: u64) {
    let Some(transport) = common::connect(
        common::config()
            .connection_name("tidings-recovery")
            .publish_timeout(Duration::from_secs(2)),
    )
    .await
    else {
        return;
    };
    let outcome = faults::stream_through_fault(
        Arc::new(transport),
        MemoryInbox::new(100_000),
        events,
        || async {
            if fault == "restart" {
                let stopped = common::stop_broker().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                common::start_broker(stopped).await;
            } else {
                common::rabbitmqctl(&["close_all_connections", "tidings recovery test"]).await;
            }
        },
    )
    .await;
    eprintln!("{fault}: {outcome}");
    outcome.assert_nothing_lost();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_of_10000_events_loses_nothing() {
    let _broker = BROKER.lock().await;
    within(
        LIMIT,
        "10,000 events through a restart",
        stream_through("restart", 10_000),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_broker_mid_stream_lose_nothing() {
    let _broker = BROKER.lock().await;
    within(
        LIMIT,
        "10,000 events through closed connections",
        stream_through("close_all_connections", 10_000),
    )
    .await;
}

/// The failover publisher of the embedded store in front of RabbitMQ: while the broker is
/// stopped, publishes succeed into the local spool; once it is back, the spool drains to it
/// in publish order, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_publisher_spools_through_a_broker_outage() {
    let _broker = BROKER.lock().await;
    within(
        LIMIT,
        "the failover publisher test",
        spool_through_an_outage(),
    )
    .await;
}

async fn spool_through_an_outage() {
    let Some(transport) = common::connect(
        common::config()
            .connection_name("tidings-failover")
            .publish_timeout(Duration::from_secs(1)),
    )
    .await
    else {
        return;
    };
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&tidings_testkit::conformance::spec(&ns, "audit", &["#"]).with_prefetch(64))
        .await
        .expect("subscribe");
    let arrived: Arc<Probe<u64>> = Probe::new();
    let seen = arrived.clone();
    let consumer = tokio::spawn(async move {
        while let Some(d) = recv(&mut stream, Duration::from_secs(300)).await {
            seen.push(seq_of(d.envelope().expect("decodable")));
            let _ = d.ack().await;
        }
    });

    let dir = tempfile::tempdir().expect("dir");
    let local = SqliteTransport::open(SqliteConfig::new(dir.path().join("spool.db")))
        .await
        .expect("spool");
    let backoff = tidings::retry::RetryPolicy::exponential(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1));
    let publisher = FailoverPublisher::with_backoff(transport.clone(), &local, backoff)
        .await
        .expect("failover publisher");

    for seq in 0..500 {
        publisher
            .publish(&envelope(&ns, "order.paid", seq))
            .await
            .expect("direct");
    }
    assert!(!publisher.is_spooling().await);
    let stopped = common::stop_broker().await;
    let outage = Instant::now();
    for seq in 500..1500 {
        publisher
            .publish(&envelope(&ns, "order.paid", seq))
            .await
            .expect("a publish during the outage is spooled, not failed");
    }
    let spooled_in = outage.elapsed();
    assert!(
        publisher.is_spooling().await,
        "the outage switched to the spool"
    );
    let waiting = publisher.spooled().await.expect("spooled");
    common::start_broker(stopped).await;
    for seq in 1500..2000 {
        publisher
            .publish(&envelope(&ns, "order.paid", seq))
            .await
            .expect("publish");
    }
    // At-least-once: what was unacked when the broker stopped comes again, so wait for
    // 2,000 distinct events, not 2,000 deliveries.
    let got = arrived
        .wait_until(Duration::from_secs(120), |got| {
            got.iter().collect::<BTreeSet<_>>().len() >= 2000
        })
        .await;
    let mut first_seen = Vec::new();
    let mut distinct = BTreeSet::new();
    for seq in &got {
        if distinct.insert(*seq) {
            first_seen.push(*seq);
        }
    }
    eprintln!(
        "failover: 2000 events, 1000 published during the outage in {spooled_in:.1?} \
         ({waiting} waiting in the spool), {} deliveries, {} distinct",
        got.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), 2000, "nothing lost");
    assert_eq!(
        first_seen,
        (0..2000).collect::<Vec<_>>(),
        "the broker got them in publish order"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.is_spooling().await {
        assert!(
            Instant::now() < deadline,
            "never went back to direct publishing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publisher.close().await.expect("close");
    consumer.abort();
}
