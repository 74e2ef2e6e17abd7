//! The conformance suite against the machine's Redis (`REDIS_URL`).
//!
//! Server restarts are exercised in `tests/recovery.rs` against a Redis of the test's own
//! with AOF, since the machine's keeps nothing across a restart.

mod common;

use std::sync::Arc;

use tidings::transport::Transport;
use tidings_redis::RedisTransport;
use tidings_testkit::{Harness, conformance_suite};

struct Redis;

impl Redis {
    async fn open() -> RedisTransport {
        RedisTransport::connect(common::config())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the conformance suite needs Redis at {}: {e}",
                    common::config().url()
                )
            })
    }
}

#[async_trait::async_trait]
impl Harness for Redis {
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

conformance_suite!(Redis);

/// Not a case of the suite (the in-memory transport cannot count): the backlog rule.
#[tokio::test]
async fn backlog_counts_what_waits() {
    let transport = Harness::transport(&Redis).await;
    tidings_testkit::within(
        tidings_testkit::conformance::CASE_LIMIT,
        "the backlog rule",
        tidings_testkit::conformance::backlog_counts_what_waits(transport),
    )
    .await;
}
