//! SQLite with raw sqlx: the embedded store's tables, made by its own migrations in a database
//! of its own, and the same pragmas (WAL, `synchronous=FULL`); a batch inserted in one
//! transaction, and a consumer that leases 256 rows at a time with one `UPDATE … RETURNING`
//! and deletes them in one statement once handled. Its publishes wake it in-process, as the
//! store's do.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::{Mutex, Notify};

use super::cloudevent;
use crate::bench::event::{Orders, TOPIC};
use crate::bench::side::{Consumer, PREFETCH, Side};
use crate::bench::tally::Tally;

/// Where the benchmark keeps its two databases: a directory the user named, or a temporary
/// one removed afterwards.
pub(crate) enum Files {
    Named(PathBuf),
    Temporary(tempfile::TempDir),
}

impl Files {
    /// The directory `path` names, or a temporary one when it is empty.
    pub(crate) fn new(path: &str) -> anyhow::Result<Self> {
        if path.is_empty() {
            return Ok(Self::Temporary(
                tempfile::Builder::new().prefix("tidings-bench").tempdir()?,
            ));
        }
        std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
        Ok(Self::Named(path.into()))
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            Self::Named(path) => path,
            Self::Temporary(dir) => dir.path(),
        }
    }

    /// The embedded store's file.
    pub(crate) fn tidings(&self) -> PathBuf {
        self.dir().join("tidings.db")
    }

    fn raw(&self) -> PathBuf {
        self.dir().join("raw.db")
    }
}

/// Raw sqlx on one connection (SQLite has one writer).
pub(crate) struct Sqlite {
    conn: Arc<Mutex<SqliteConnection>>,
    published: Arc<Notify>,
    tokens: Arc<AtomicI64>,
    _files: Files,
}

impl Sqlite {
    /// Opens the database; `fresh` empties what an interrupted run left in it.
    pub(crate) async fn open(files: Files, fresh: bool) -> anyhow::Result<Self> {
        // tidings' store migrations make the raw side's tables, in a database of its own,
        // so that both sides write the very same rows and indexes.
        let migrated =
            tidings::sqlite::SqliteTransport::open(tidings::sqlite::SqliteConfig::new(files.raw()))
                .await
                .context("creating the raw side's tables with tidings' migrations")?;
        tidings::transport::Publisher::close(&migrated).await?;
        drop(migrated);
        let mut conn = SqliteConnectOptions::new()
            .filename(files.raw())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .context("raw sqlx: opening the database")?;
        if fresh {
            sqlx::query("DELETE FROM tidings_messages")
                .execute(&mut conn)
                .await?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            published: Arc::new(Notify::new()),
            tokens: Arc::new(AtomicI64::new(1)),
            _files: files,
        })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait::async_trait]
impl Side for Sqlite {
    async fn publish(&self, orders: &Orders, range: Range<usize>) -> anyhow::Result<()> {
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await?;
        let now = now_ms();
        for order in &orders.events[range] {
            let body = cloudevent::encode(order).body;
            sqlx::query(
                "INSERT INTO tidings_messages \
                 (subscription, topic, content_type, body, published_at, visible_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind("bench")
            .bind(TOPIC)
            .bind("application/cloudevents+json")
            .bind(body)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.published.notify_one();
        Ok(())
    }

    async fn consume(&self, tally: Arc<Tally>) -> anyhow::Result<Consumer> {
        let (conn, published, tokens) = (
            self.conn.clone(),
            self.published.clone(),
            self.tokens.clone(),
        );
        Ok(Consumer::spawn(async move {
            while !tally.is_complete() {
                let token = tokens.fetch_add(1, Ordering::Relaxed);
                let now = now_ms();
                let claimed: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "UPDATE tidings_messages \
                     SET lease_token = ?1, visible_at = ?2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM tidings_messages \
                         INDEXED BY tidings_messages_pending \
                         WHERE subscription = 'bench' AND acked_at IS NULL AND visible_at <= ?3 \
                         ORDER BY id LIMIT ?4) \
                     RETURNING id, body",
                )
                .bind(token)
                .bind(now + 30_000)
                .bind(now)
                .bind(i64::from(PREFETCH))
                .fetch_all(&mut *conn.lock().await)
                .await?;
                if claimed.is_empty() {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(50), published.notified()).await;
                    continue;
                }
                for (_, body) in &claimed {
                    cloudevent::decode(body)?;
                    tally.hit();
                }
                sqlx::query("DELETE FROM tidings_messages WHERE lease_token = ?")
                    .bind(token)
                    .execute(&mut *conn.lock().await)
                    .await?;
            }
            Ok(())
        }))
    }
}
