//! The conformance suite against a moto server (`tests/common`), three times: SNS fanout
//! with standard queues, SNS with FIFO topic and queues (where order is promised), and
//! EventBridge rules to standard queues.
//!
//! Not applicable on moto: broker restarts (moto keeps nothing across one; the failover
//! publisher's test cuts the connection instead, in `tests/failover.rs`). Not applicable on
//! EventBridge: bytes that are not JSON (a bus carries JSON objects only).

mod common;

use std::sync::Arc;

use tidings::transport::Transport;
use tidings_aws::{AwsConfig, Fanout};
use tidings_testkit::{Harness, conformance_suite};

/// The suite's harness: a transport with `configure` applied to the test settings.
struct Moto {
    configure: fn(AwsConfig) -> AwsConfig,
    /// Whether the fanout carries bytes that are not JSON.
    carries_bytes: bool,
    /// Whether its queues are standard ones, which deliver at least once: SQS may hand a
    /// message to two consumers (and moto's server does, when two receives race on its
    /// threads: it checks a message's visibility and marks it received without a lock).
    standard_queues: bool,
}

impl Moto {
    async fn open(&self) -> tidings_aws::AwsTransport {
        let Some(config) = common::config() else {
            panic!("the conformance suite needs a moto server (see tests/common)");
        };
        common::connect((self.configure)(config)).await
    }
}

#[async_trait::async_trait]
impl Harness for Moto {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.open().await)
    }

    async fn publish_raw(&self, topic: &str, bytes: &[u8]) -> bool {
        if !self.carries_bytes {
            return false;
        }
        self.open()
            .await
            .publish_bytes(topic, bytes)
            .await
            .expect("publish raw bytes");
        true
    }

    fn competing_consumers_may_share(&self) -> bool {
        self.standard_queues
    }
}

mod sns {
    use super::*;
    conformance_suite!(Moto {
        configure: |c| c,
        carries_bytes: true,
        standard_queues: true,
    });

    /// Not a case of the suite (the in-memory transport cannot count): the backlog rule, on
    /// SQS's approximate counts.
    #[tokio::test]
    async fn backlog_counts_what_waits() {
        let harness = Moto {
            configure: |c| c,
            carries_bytes: true,
            standard_queues: true,
        };
        tidings_testkit::within(
            tidings_testkit::conformance::CASE_LIMIT,
            "the backlog rule",
            tidings_testkit::conformance::backlog_counts_what_waits(harness.transport().await),
        )
        .await;
    }
}

mod sns_fifo {
    use super::*;
    conformance_suite!(Moto {
        configure: |c| c.fifo(true).topic(format!("{}-ordered", common::run())),
        carries_bytes: true,
        standard_queues: false,
    });
}

mod eventbridge {
    use super::*;
    conformance_suite!(Moto {
        configure: |c| c.fanout(Fanout::EventBridge),
        carries_bytes: false,
        standard_queues: true,
    });
}
