//! PostgreSQL with raw sqlx: tidings' queue table, made by tidings' own migrations in a schema
//! of its own; a batch inserted with one `INSERT … SELECT unnest(…)` that notifies the
//! consumers, and a consumer that leases 256 rows at a time (`FOR UPDATE SKIP LOCKED`),
//! deletes them in one statement once handled, and sleeps on `LISTEN` when there is nothing.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection as _, PgPool};

use super::cloudevent;
use crate::bench::event::{Orders, TOPIC};
use crate::bench::side::{Consumer, PREFETCH, Side};
use crate::bench::tally::Tally;

const CHANNEL: &str = "tidings_bench_raw";

/// The schema the raw side's queue lives in, apart from tidings' own.
const SCHEMA: &str = "tidings_bench_raw";

/// `url` with its connections' `search_path` set to [`SCHEMA`].
fn in_schema(url: &str) -> String {
    let join = if url.contains('?') { '&' } else { '?' };
    format!("{url}{join}options=-csearch_path%3D{SCHEMA}")
}

/// `VACUUM` of one queue table: what autovacuum does on a server that runs it.
pub(crate) struct Vacuum {
    url: String,
}

impl Vacuum {
    /// Of the `tidings_messages` table that `url`'s `search_path` finds.
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
        }
    }

    pub(crate) async fn run(&self) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .context("connecting to PostgreSQL to vacuum")?;
        sqlx::raw_sql("VACUUM tidings_messages")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}

/// Raw sqlx on a pool of its own.
pub(crate) struct Postgres {
    pool: PgPool,
    tokens: Arc<AtomicI64>,
    vacuum: Vacuum,
}

impl Postgres {
    /// Connects; `fresh` empties what an interrupted run left in the table.
    pub(crate) async fn connect(url: &str, fresh: bool) -> anyhow::Result<Self> {
        // tidings' queue migrations make the raw side's table, in a schema of its own, so
        // that both sides write the very same rows and indexes.
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .context("raw sqlx: connecting to PostgreSQL")?;
        sqlx::query("CREATE SCHEMA IF NOT EXISTS tidings_bench_raw")
            .execute(&admin)
            .await?;
        admin.close().await;
        let url = in_schema(url);
        let migrated = tidings::postgres::PgTransport::connect(
            tidings::postgres::PgConfig::new(&url).max_connections(2),
        )
        .await
        .context("creating the raw side's queue with tidings' migrations")?;
        tidings::transport::Publisher::close(&migrated).await?;
        drop(migrated);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .context("raw sqlx: connecting to PostgreSQL")?;
        if fresh {
            sqlx::query("TRUNCATE tidings_messages")
                .execute(&pool)
                .await?;
        }
        // Lease tokens unique across runs, so a leftover lease never matches.
        let start = chrono::Utc::now().timestamp_micros();
        Ok(Self {
            pool,
            tokens: Arc::new(AtomicI64::new(start)),
            vacuum: Vacuum::new(&url),
        })
    }
}

#[async_trait::async_trait]
impl Side for Postgres {
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()> {
        let n = range.len();
        let bodies: Vec<Vec<u8>> = orders.events[range]
            .iter()
            .map(|order| cloudevent::encode(order).body)
            .collect();
        sqlx::query(
            "WITH stored AS ( \
                 INSERT INTO tidings_messages (subscription, topic, content_type, body) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) \
                 RETURNING subscription) \
             SELECT pg_notify($5, subscription) FROM (SELECT DISTINCT subscription FROM stored) s",
        )
        .bind(vec!["bench"; n])
        .bind(vec![TOPIC; n])
        .bind(vec!["application/cloudevents+json"; n])
        .bind(bodies)
        .bind(CHANNEL)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let (pool, tokens) = (self.pool.clone(), self.tokens.clone());
        Ok(Consumer::spawn(async move {
            while !tally.is_complete() {
                let token = tokens.fetch_add(1, Ordering::Relaxed);
                let claimed: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "UPDATE tidings_messages m \
                     SET lease_token = $1, visible_at = now() + interval '30 seconds', \
                         attempts = m.attempts + 1 \
                     FROM (SELECT id FROM tidings_messages \
                           WHERE subscription = 'bench' AND visible_at <= now() \
                           ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) ready \
                     WHERE m.id = ready.id \
                     RETURNING m.id, m.body",
                )
                .bind(token)
                .bind(i64::from(PREFETCH))
                .fetch_all(&pool)
                .await?;
                if claimed.is_empty() {
                    let _ = tokio::time::timeout(Duration::from_millis(100), listener.recv()).await;
                    continue;
                }
                for (_, body) in &claimed {
                    cloudevent::decode(body)?;
                    tally.hit();
                }
                sqlx::query("DELETE FROM tidings_messages WHERE lease_token = $1")
                    .bind(token)
                    .execute(&pool)
                    .await?;
            }
            Ok(())
        }))
    }

    async fn tidy(&self) -> anyhow::Result<()> {
        self.vacuum.run().await
    }
}
