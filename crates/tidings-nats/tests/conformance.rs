//! The conformance suite against the machine's NATS with JetStream (`NATS_URL`).
//!
//! Server restarts are exercised in `tests/recovery.rs`, a binary of its own, so that
//! restarting the server never breaks the cases running here in parallel.

mod common;

use std::sync::Arc;

use tidings::transport::Transport;
use tidings_nats::NatsTransport;
use tidings_testkit::{Harness, conformance_suite};

struct Nats;

impl Nats {
    async fn open() -> NatsTransport {
        NatsTransport::connect(common::config())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the conformance suite needs NATS with JetStream at {}: {e}",
                    common::config().url()
                )
            })
    }
}

#[async_trait::async_trait]
impl Harness for Nats {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(Self::open().await)
    }

    async fn publish_raw(&self, topic: &str, bytes: &[u8]) -> bool {
        Self::open()
            .await
            .publish_bytes(topic, bytes.to_vec())
            .await
            .expect("publish raw bytes");
        true
    }
}

conformance_suite!(Nats);

/// Not a case of the suite (the in-memory transport cannot count): the backlog rule.
#[tokio::test]
async fn backlog_counts_what_waits() {
    let transport = Harness::transport(&Nats).await;
    tidings_testkit::within(
        tidings_testkit::conformance::CASE_LIMIT,
        "the backlog rule",
        tidings_testkit::conformance::backlog_counts_what_waits(transport),
    )
    .await;
}
