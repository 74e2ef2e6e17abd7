//! The outbox rules on Postgres, each case in a schema of its own.
//!
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) names the server.

use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tidings::envelope::Envelope;
use tidings::inbox::Inbox;
use tidings::outbox::OutboxStore;
use tidings_postgres::{PgInbox, PgOutbox};
use tidings_testkit::{OutboxHarness, outbox_suite, service};

fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

struct Postgres {
    options: PgConnectOptions,
    app: PgPool,
    outbox: PgOutbox,
}

async fn pool(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .expect("connect")
}

impl Postgres {
    async fn new() -> Option<Self> {
        let base: PgConnectOptions = url().parse().expect("DATABASE_URL");
        let admin = match PgPoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await
        {
            Ok(pool) => pool,
            Err(error) => {
                service::unavailable("PostgreSQL", &error);
                return None;
            }
        };
        let schema = format!("tidings_t{:08x}", fastrand::u32(..));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create schema");
        let options = base.options([("search_path", schema.as_str())]);
        let app = pool(&options).await;
        sqlx::raw_sql(
            "CREATE TABLE orders (id TEXT PRIMARY KEY, total NUMERIC NOT NULL); \
             CREATE TABLE ledger (entry BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL);",
        )
        .execute(&app)
        .await
        .expect("application tables");
        let outbox = PgOutbox::new(app.clone()).await.expect("outbox");
        Some(Self {
            options,
            app,
            outbox,
        })
    }
}

#[async_trait::async_trait]
impl OutboxHarness for Postgres {
    async fn store(&self) -> Arc<dyn OutboxStore> {
        Arc::new(
            PgOutbox::new(pool(&self.options).await)
                .await
                .expect("outbox"),
        )
    }

    async fn stage(&self, envelopes: &[Envelope], commit: bool) {
        let mut tx = self.app.begin().await.expect("begin");
        for envelope in envelopes {
            sqlx::query(
                "INSERT INTO orders (id, total) VALUES ($1, 1) \
                 ON CONFLICT (id) DO UPDATE SET total = orders.total + 1",
            )
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
        Arc::new(PgInbox::new(self.app.clone()).await.expect("inbox"))
    }

    async fn handle_in_transaction(
        &self,
        subscription: &str,
        envelope: &Envelope,
        commit: bool,
    ) -> bool {
        let inbox = PgInbox::new(self.app.clone()).await.expect("inbox");
        let mut tx = self.app.begin().await.expect("begin");
        let new = inbox
            .record(&mut tx, subscription, envelope)
            .await
            .expect("record");
        if new {
            sqlx::query("INSERT INTO ledger (event_id) VALUES ($1)")
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

outbox_suite!(Postgres::new());

/// An idle relay is woken by the commit's NOTIFY, long before its poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_relay_is_woken_by_notify() {
    use futures::StreamExt;
    use std::time::Duration;
    use tidings::outbox::Relay;
    use tidings::transport::{Subscriber, SubscriptionSpec};

    let Some(harness) = Postgres::new().await else {
        return;
    };
    let transport = tidings::memory::MemoryTransport::new();
    let spec = SubscriptionSpec::new("audit", [tidings::topic::Pattern::parse("#").unwrap()]);
    let mut deliveries = transport.subscribe(&spec).await.expect("subscribe");
    let relay = Relay::new(harness.store().await, Arc::new(transport.clone()))
        .poll_interval(Duration::from_secs(3600))
        .spawn();
    // Let the relay find the outbox empty and start listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    harness
        .stage(
            &[Envelope::new("oms", "order.created").with_subject("o-1")],
            true,
        )
        .await;
    let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("published long before the hour-long poll")
        .expect("stream open")
        .expect("delivery");
    assert_eq!(delivery.envelope().expect("decodable").ty, "order.created");
    eprintln!("staged -> published in {:?}", started.elapsed());
    relay.stop().await;
}
