//! The failover publisher: while the broker is unreachable, events wait in the local store and
//! reach the broker in order, all of them, once it is back.
//!
//! The broker here is the in-memory transport behind a gate that fails every publish with a
//! connection error while closed, the error a broker adapter reports for a refused or dropped
//! connection. The broker-restart tests of the RabbitMQ and NATS transports run the same
//! publisher against a real outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tidings::envelope::Envelope;
use tidings::memory::MemoryTransport;
use tidings::retry::RetryPolicy;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec, TransportError};
use tidings_sqlite::{FailoverPublisher, SqliteConfig, SqliteTransport};
use tidings_testkit::{Probe, recv};

#[derive(Clone)]
struct Gate {
    broker: MemoryTransport,
    open: Arc<AtomicBool>,
}

#[async_trait]
impl Publisher for Gate {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), TransportError> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(TransportError::Connection(
                "connection refused (gate closed)".into(),
            ));
        }
        self.broker.publish_batch(envelopes).await
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

fn order(seq: u64) -> Envelope {
    Envelope::new("oms", "order.created")
        .with_subject(format!("o-{}", seq % 5))
        .with_json_data(&serde_json::json!({ "seq": seq }))
        .expect("json")
}

/// Everything the broker's subscription receives, as seqs in arrival order.
async fn broker_with_probe() -> (MemoryTransport, Arc<Probe<u64>>) {
    let broker = MemoryTransport::new();
    let mut stream = broker
        .subscribe(&SubscriptionSpec::new(
            "audit",
            [Pattern::parse("#").expect("pattern")],
        ))
        .await
        .expect("subscribe");
    let probe = Probe::new();
    let seen = probe.clone();
    tokio::spawn(async move {
        while let Some(d) = recv(&mut stream, Duration::from_secs(3600)).await {
            let e = d.envelope().expect("decodable");
            seen.push(
                e.data_as::<serde_json::Value>().expect("json")["seq"]
                    .as_u64()
                    .expect("seq"),
            );
            d.ack().await.expect("ack");
        }
    });
    (broker, probe)
}

fn fast() -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(20)).with_max_delay(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_keeps_publish_order() {
    let dir = tempfile::tempdir().expect("dir");
    let local = SqliteTransport::open(SqliteConfig::new(dir.path().join("spool.db")))
        .await
        .expect("local store");
    let (broker, seen) = broker_with_probe().await;
    let open = Arc::new(AtomicBool::new(true));
    let gate = Gate {
        broker,
        open: open.clone(),
    };
    let publisher = FailoverPublisher::with_backoff(gate, &local, fast())
        .await
        .expect("failover");

    for seq in 0..100 {
        publisher
            .publish(&order(seq))
            .await
            .expect("direct publish");
    }
    assert!(!publisher.is_spooling().await);

    open.store(false, Ordering::SeqCst);
    for seq in 100..600 {
        publisher
            .publish(&order(seq))
            .await
            .expect("spooled publish is Ok");
    }
    assert!(
        publisher.is_spooling().await,
        "the outage switched to the spool"
    );
    assert_eq!(publisher.spooled().await.expect("spooled"), 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 100, "nothing passes the closed gate");

    open.store(true, Ordering::SeqCst);
    for seq in 600..700 {
        publisher
            .publish(&order(seq))
            .await
            .expect("publish while draining");
    }
    let got = seen.wait_for(700, Duration::from_secs(20)).await;
    assert_eq!(
        got,
        (0..700).collect::<Vec<_>>(),
        "all of them, in publish order"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while publisher.is_spooling().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never went back to direct publishing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(publisher.spooled().await.expect("spooled"), 0);
    publisher.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_events_survive_a_restart_and_are_forwarded_by_the_next_publisher() {
    let dir = tempfile::tempdir().expect("dir");
    let config = SqliteConfig::new(dir.path().join("spool.db"));
    let (broker, seen) = broker_with_probe().await;
    let open = Arc::new(AtomicBool::new(false));
    {
        let local = SqliteTransport::open(config.clone())
            .await
            .expect("local store");
        let gate = Gate {
            broker: broker.clone(),
            open: open.clone(),
        };
        let publisher = FailoverPublisher::with_backoff(gate, &local, fast())
            .await
            .expect("failover");
        for seq in 0..50 {
            publisher.publish(&order(seq)).await.expect("spooled");
        }
        publisher.close().await.expect("close");
    }
    assert!(seen.is_empty());

    open.store(true, Ordering::SeqCst);
    let local = SqliteTransport::open(config).await.expect("reopen");
    let gate = Gate { broker, open };
    let publisher = FailoverPublisher::with_backoff(gate, &local, fast())
        .await
        .expect("failover");
    assert!(
        publisher.is_spooling().await,
        "starts by forwarding what is spooled"
    );
    publisher.publish(&order(50)).await.expect("publish");
    let got = seen.wait_for(51, Duration::from_secs(20)).await;
    assert_eq!(got, (0..51).collect::<Vec<_>>());
    publisher.close().await.expect("close");
}
