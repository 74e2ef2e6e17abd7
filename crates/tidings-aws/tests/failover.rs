//! The failover publisher in front of AWS: the network to AWS is cut while events are
//! published, and nothing is lost.
//!
//! moto keeps its state in memory, so the cut is a TCP forwarder between the SDK and moto
//! ([`Proxy`]) that closes every connection and refuses new ones, as a partition would.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tidings::transport::{Publisher, Subscriber};
use tidings_sqlite::{FailoverPublisher, SqliteConfig, SqliteTransport};
use tidings_testkit::conformance::{envelope, seq_of};
use tidings_testkit::proxy::Proxy;
use tidings_testkit::{Namespace, Probe, recv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_publisher_spools_through_a_network_cut_and_keeps_each_subjects_order() {
    let Some(endpoint) = common::moto() else {
        return;
    };
    let upstream = url::Url::parse(&endpoint)
        .expect("endpoint")
        .socket_addrs(|| None)
        .expect("address")[0];
    let proxy = Proxy::start(upstream).await.expect("proxy");
    // FIFO: per-subject order, and SQS removes what the spool forwards twice.
    let config = common::config_at(&proxy.http_url())
        .fifo(true)
        .topic(format!("{}-failover", common::run()))
        .timeout(Duration::from_secs(2));
    let transport = common::connect(config).await;
    // The consumer reads through moto directly: only the publisher's network is cut.
    let consumer_side = common::connect(
        common::config_at(&endpoint)
            .fifo(true)
            .topic(format!("{}-failover", common::run())),
    )
    .await;
    let ns = Namespace::new();
    let mut stream = consumer_side
        .subscribe(&tidings_testkit::conformance::spec(&ns, "audit", &["#"]).with_prefetch(64))
        .await
        .expect("subscribe");
    let arrived: std::sync::Arc<Probe<(String, u64)>> = Probe::new();
    let seen = arrived.clone();
    let consumer = tokio::spawn(async move {
        while let Some(d) = recv(&mut stream, Duration::from_secs(300)).await {
            let envelope = d.envelope().expect("decodable");
            seen.push((
                envelope.subject.clone().unwrap_or_default(),
                seq_of(envelope),
            ));
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

    let total = 900;
    for seq in 0..300 {
        publisher
            .publish(&envelope(&ns, "order.paid", seq))
            .await
            .expect("direct");
    }
    assert!(!publisher.is_spooling().await);
    proxy.cut().await;
    let outage = Instant::now();
    for seq in 300..600 {
        publisher
            .publish(&envelope(&ns, "order.paid", seq))
            .await
            .expect("a publish during the cut is spooled, not failed");
    }
    let spooled_in = outage.elapsed();
    assert!(
        publisher.is_spooling().await,
        "the cut switched to the spool"
    );
    let waiting = publisher.spooled().await.expect("spooled");
    proxy.restore().await.expect("restore");
    for seq in 600..total {
        publisher
            .publish(&envelope(&ns, "order.paid", seq))
            .await
            .expect("publish");
    }
    // At-least-once: wait for every event, not for as many deliveries.
    let got = arrived
        .wait_until(Duration::from_secs(180), |got| {
            got.iter()
                .map(|(_, seq)| seq)
                .collect::<BTreeSet<_>>()
                .len()
                >= total as usize
        })
        .await;
    let mut distinct = BTreeSet::new();
    let mut first_seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (subject, seq) in &got {
        if distinct.insert(*seq) {
            first_seen.entry(subject.clone()).or_default().push(*seq);
        }
    }
    eprintln!(
        "failover on AWS (moto, FIFO): {total} events, 300 published during the cut in \
         {spooled_in:.1?} ({waiting} waiting in the spool), {} deliveries, {} distinct",
        got.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), total as usize, "nothing lost");
    for (subject, seqs) in &first_seen {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{subject} arrived in publish order: {seqs:?}"
        );
    }
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
