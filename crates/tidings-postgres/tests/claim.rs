//! The claim's plan: whatever the statistics say, the ready rows are read in id order through
//! an index and never all sorted (which drained a backlog in quadratic time).

use sqlx::{Connection as _, PgConnection, Row as _};
use tidings_postgres::{PgConfig, PgTransport};

fn base_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

const SCHEMA_PREFIX: &str = "tidings_claim";

/// A schema of this test's own, made afresh, and the URL of connections that use it.
async fn fresh_schema() -> (String, String) {
    let schema = format!("{SCHEMA_PREFIX}{}", std::process::id());
    let mut admin = PgConnection::connect(&base_url())
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL at {}: {e}", base_url()));
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let separator = if base_url().contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}options=-csearch_path%3D{schema}", base_url());
    (schema, url)
}

#[tokio::test]
async fn a_claim_reads_ready_rows_in_id_order_through_an_index_whatever_the_statistics_say() {
    let (schema, url) = fresh_schema().await;
    // Its migrations make the table and `tidings_claim`.
    let transport = PgTransport::connect(PgConfig::new(&url).max_connections(1))
        .await
        .unwrap();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO tidings_messages (subscription, topic, body) \
         SELECT 'plan', 'plan.created', convert_to(repeat('x', 500), 'UTF8') \
         FROM generate_series(1, 5000)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // Vacuumed, never analyzed: the planner believes a handful of rows are ready, and would
    // sort them all (the plan the function exists to avoid).
    sqlx::raw_sql("VACUUM tidings_messages")
        .execute(&mut conn)
        .await
        .unwrap();

    // The function's own statement, planned under the function's own settings.
    let row = sqlx::query(
        "SELECT prosrc, coalesce(proconfig, '{}') AS config FROM pg_proc \
         WHERE proname = 'tidings_claim' AND pronamespace = current_schema()::regnamespace",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let body: String = row.get("prosrc");
    let config: Vec<String> = row.get("config");
    assert!(config.iter().any(|c| c == "enable_sort=off"), "{config:?}");
    let mut tx = conn.begin().await.unwrap();
    for setting in &config {
        let (name, value) = setting.split_once('=').unwrap();
        sqlx::query("SELECT set_config($1, $2, true)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PREPARE claim_plan(BIGINT, DOUBLE PRECISION, TEXT, BIGINT) AS {body}"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE claim_plan(1, 30, 'plan', 256)")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(!plan.contains("Sort"), "the ready rows are sorted:\n{plan}");
    assert!(
        plan.contains("Index Scan using tidings_messages_queue"),
        "the ready rows are read in id order through the queue's index:\n{plan}"
    );
    tx.rollback().await.unwrap();

    // And it claims the oldest, in order.
    let claimed: Vec<i64> = sqlx::query_scalar("SELECT id FROM tidings_claim(1, 30, 'plan', 256)")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let oldest: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM tidings_messages ORDER BY id LIMIT 256")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut sorted = claimed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, oldest);

    tidings::transport::Publisher::close(&transport)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .unwrap();
}
