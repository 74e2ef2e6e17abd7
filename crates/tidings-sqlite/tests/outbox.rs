//! The outbox rules on SQLite: a file shared by the application's pool and the relays' pools.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tidings::envelope::Envelope;
use tidings::inbox::Inbox;
use tidings::outbox::OutboxStore;
use tidings_sqlite::{SqliteInbox, SqliteOutbox};
use tidings_testkit::{OutboxHarness, outbox_suite};

struct Sqlite {
    dir: tempfile::TempDir,
    app: SqlitePool,
    outbox: SqliteOutbox,
}

async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("app.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("open app database")
}

impl Sqlite {
    async fn new() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let app = pool(&dir).await;
        sqlx::raw_sql(
            "CREATE TABLE orders (id TEXT PRIMARY KEY, total REAL NOT NULL); \
             CREATE TABLE ledger (entry INTEGER PRIMARY KEY, event_id TEXT NOT NULL);",
        )
        .execute(&app)
        .await
        .expect("application tables");
        let outbox = SqliteOutbox::new(app.clone()).await.expect("outbox");
        Some(Self { dir, app, outbox })
    }
}

#[async_trait::async_trait]
impl OutboxHarness for Sqlite {
    async fn store(&self) -> Arc<dyn OutboxStore> {
        let relay_pool = pool(&self.dir).await;
        Arc::new(SqliteOutbox::new(relay_pool).await.expect("outbox"))
    }

    async fn stage(&self, envelopes: &[Envelope], commit: bool) {
        let mut tx = self.app.begin().await.expect("begin");
        for envelope in envelopes {
            sqlx::query("INSERT OR REPLACE INTO orders (id, total) VALUES (?, 1.0)")
                .bind(envelope.subject.as_deref())
                .execute(&mut *tx)
                .await
                .expect("the application's own write");
            self.outbox.stage(&mut tx, envelope).await.expect("stage");
        }
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
    }

    async fn inbox(&self) -> Arc<dyn Inbox> {
        Arc::new(SqliteInbox::new(self.app.clone()).await.expect("inbox"))
    }

    async fn handle_in_transaction(
        &self,
        subscription: &str,
        envelope: &Envelope,
        commit: bool,
    ) -> bool {
        let inbox = SqliteInbox::new(self.app.clone()).await.expect("inbox");
        let mut tx = self.app.begin().await.expect("begin");
        let new = inbox
            .record(&mut tx, subscription, envelope)
            .await
            .expect("record");
        if new {
            sqlx::query("INSERT INTO ledger (event_id) VALUES (?)")
                .bind(&envelope.id)
                .execute(&mut *tx)
                .await
                .expect("handler's write");
        }
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        new
    }

    async fn handled_rows(&self) -> u64 {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger")
            .fetch_one(&self.app)
            .await
            .expect("count");
        n.try_into().expect("count")
    }
}

outbox_suite!(Sqlite::new());
