//! Opening the file: checks, pragmas, migrations, the writer and the read pool.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqliteConnection};
use tokio_util::sync::CancellationToken;

use crate::config::{Durability, SqliteConfig};
use crate::error::{self, Error, Result};
use crate::signal::Signals;
use crate::writer::{Batch, Writer};

/// The queue's schema, tracked in its own table so that it never collides with an
/// application's own sqlx migrations.
pub(crate) fn store_migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/store");
    migrator.dangerous_set_table_name("_tidings_store_migrations");
    migrator
}

/// The outbox and inbox schema, which also lives in applications' own databases.
pub(crate) fn outbox_migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/outbox");
    migrator.dangerous_set_table_name("_tidings_outbox_migrations");
    migrator
}

/// Everything a transport handle shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SqliteConfig,
    pub(crate) writer: Writer,
    /// Acks waiting to be settled together.
    pub(crate) acks: Arc<crate::acks::Acks>,
    pub(crate) reader: SqlitePool,
    pub(crate) signals: Arc<Signals>,
    pub(crate) closed: CancellationToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn time_of(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn connect_options(config: &SqliteConfig) -> SqliteConnectOptions {
    let mut options = SqliteConnectOptions::new()
        .filename(&config.path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match config.durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(config.busy_timeout)
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", crate::reserve::WAL_PAGES.to_string())
        .disable_statement_logging();
    if let Some(bytes) = config.max_size {
        // The page size is 4096 for new files; max_page_count is what SQLite enforces.
        options = options.pragma("max_page_count", (bytes / 4096).max(1).to_string());
    }
    options
}

/// Opens (creating if missing) the store at `config.path`.
pub(crate) async fn open(config: SqliteConfig) -> Result<Shared> {
    let path = config.path.clone();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| match source.kind() {
            std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
                Error::ReadOnly { path: path.clone() }
            }
            _ => Error::Open {
                path: path.clone(),
                source: sqlx::Error::Io(source),
            },
        })?;
    }
    let options = connect_options(&config);
    let mut conn = options
        .connect()
        .await
        .map_err(|e| error::opening(&path, e))?;
    refuse_foreign(&mut conn, &path).await?;
    migrate(&store_migrator(), &mut conn, &path).await?;
    migrate(&outbox_migrator(), &mut conn, &path).await?;
    let reserve_file = crate::reserve::file_of(&path);
    crate::reserve::ensure(&mut conn, &reserve_file).await;

    let reader = SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(0)
        .connect_with(options.create_if_missing(false))
        .await
        .map_err(|e| error::opening(&path, e))?;
    let signals = Arc::new(Signals::default());
    let writer = Writer::spawn(
        Batch::new(conn, config.require_route, reserve_file),
        config.max_batch,
        signals.clone(),
    );
    let closed = CancellationToken::new();
    if !config.retention.is_zero() {
        tokio::spawn(sweep_acked(
            writer.clone(),
            config.retention,
            closed.clone(),
        ));
    }
    Ok(Shared {
        config,
        writer,
        acks: Arc::default(),
        reader,
        signals,
        closed,
    })
}

/// A database with tables but no trace of tidings is someone else's: refuse to write into it.
async fn refuse_foreign(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| error::opening(path, e))?;
    let ours = |t: &String| t.starts_with("tidings_") || t.starts_with("_tidings_");
    if tables.is_empty() || tables.iter().any(|t| t == "_tidings_store_migrations") {
        return Ok(());
    }
    let foreign: Vec<&str> = tables
        .iter()
        .filter(|t| !ours(t))
        .take(5)
        .map(String::as_str)
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::Foreign {
        path: path.to_owned(),
        tables: foreign.join(", "),
    })
}

pub(crate) async fn migrate(
    migrator: &Migrator,
    conn: &mut SqliteConnection,
    path: &Path,
) -> Result<()> {
    // `run_direct` is what `Migrator::run` calls after acquiring; calling it on the connection
    // avoids `run`'s higher-ranked `Acquire` bound, which makes every caller's future fail to
    // be provably `Send` (sqlx documents it as the way around that error).
    migrator
        .run_direct(None, conn, false)
        .await
        .map_err(|e| match e {
            MigrateError::VersionMissing(version) => Error::NewerSchema {
                path: path.to_owned(),
                version,
            },
            MigrateError::Execute(e) => error::opening(path, e),
            other => Error::Migrate(other),
        })
}

/// Deletes acked messages older than the retention, every tenth of it (between 1 s and 1 min).
async fn sweep_acked(writer: Writer, retention: Duration, closed: CancellationToken) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = closed.cancelled() => return,
        }
        let cutoff = now_ms() - ms(retention);
        let swept = writer
            .submit(move |batch| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "DELETE FROM tidings_messages WHERE acked_at IS NOT NULL AND acked_at < ?",
                    )
                    .bind(cutoff)
                    .execute(&mut batch.conn)
                    .await?;
                    Ok(done.rows_affected())
                })
            })
            .await;
        match swept {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "acked messages past retention"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "retention sweep failed"),
        }
    }
}
