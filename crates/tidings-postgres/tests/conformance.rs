//! The conformance suite against the machine's PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), in a schema of this test process's own.

use std::sync::Arc;

use tidings::transport::Transport;
use tidings_postgres::{PgConfig, PgTransport};
use tidings_testkit::{Harness, conformance_suite};

fn base_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema for this process, so that runs never see each other's rows.
fn schema() -> String {
    format!("tidings_q{}", std::process::id())
}

struct Postgres;

impl Postgres {
    /// The test's database URL: the schema is chosen with libpq's `options`, as a user would.
    fn url() -> String {
        let separator = if base_url().contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            base_url(),
            schema()
        )
    }

    async fn open() -> PgTransport {
        static SCHEMA: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SCHEMA
            .get_or_init(|| async {
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base_url())
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "the conformance suite needs PostgreSQL at {}: {e}",
                            base_url()
                        )
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    schema()
                )))
                .execute(&mut admin)
                .await
                .expect("create the test schema");
            })
            .await;
        PgTransport::connect(PgConfig::new(Self::url()).max_connections(4))
            .await
            .unwrap_or_else(|e| panic!("the conformance suite needs PostgreSQL: {e}"))
    }
}

#[async_trait::async_trait]
impl Harness for Postgres {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(Self::open().await)
    }

    async fn publish_raw(&self, topic: &str, bytes: &[u8]) -> bool {
        Self::open()
            .await
            .publish_encoded(topic, bytes.to_vec(), None)
            .await
            .expect("publish raw bytes");
        true
    }
}

conformance_suite!(Postgres);

/// Not a case of the suite (the in-memory transport cannot count): the backlog rule.
#[tokio::test]
async fn backlog_counts_what_waits() {
    let transport = Harness::transport(&Postgres).await;
    tidings_testkit::within(
        tidings_testkit::conformance::CASE_LIMIT,
        "the backlog rule",
        tidings_testkit::conformance::backlog_counts_what_waits(transport),
    )
    .await;
}

/// The queue's tables live in the schema the URL chose, beside (not in) `public`.
#[tokio::test]
async fn the_url_chooses_the_schema() {
    let _transport = Postgres::open().await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base_url())
        .await
        .expect("connect");
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables \
         WHERE table_name = 'tidings_messages' AND table_schema = $1",
    )
    .bind(schema())
    .fetch_all(&mut admin)
    .await
    .expect("query the catalog");
    assert_eq!(schemas, [schema()]);
}
