//! The SQLite store runs the whole conformance suite, each case on a fresh file.

use std::sync::Arc;
use std::time::Duration;

use tidings::transport::Transport;
use tidings_sqlite::{SqliteConfig, SqliteTransport};
use tidings_testkit::{Harness, conformance_suite};

/// One database file per case. Every `transport()` opens the file again, with its own writer
/// and its own wake-ups, the way a second process would.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn config(&self) -> SqliteConfig {
        SqliteConfig::new(self.dir.path().join("conformance.db"))
            .lease(Duration::from_secs(5))
            .poll_interval(Duration::from_millis(50))
    }

    async fn open(&self) -> SqliteTransport {
        SqliteTransport::open(self.config())
            .await
            .expect("open store")
    }
}

#[async_trait::async_trait]
impl Harness for Sqlite {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.open().await)
    }

    async fn publish_raw(&self, topic: &str, bytes: &[u8]) -> bool {
        self.open()
            .await
            .publish_encoded(topic, bytes.to_vec(), None)
            .await
            .expect("publish raw bytes");
        true
    }
}

conformance_suite!(Sqlite::new());

/// Not a case of the suite (the in-memory transport cannot count): the backlog rule.
#[tokio::test]
async fn backlog_counts_what_waits() {
    // Kept to the end: its temporary directory holds the store's file.
    let harness = Sqlite::new();
    let transport = Harness::transport(&harness).await;
    tidings_testkit::within(
        tidings_testkit::conformance::CASE_LIMIT,
        "the backlog rule",
        tidings_testkit::conformance::backlog_counts_what_waits(transport),
    )
    .await;
}
