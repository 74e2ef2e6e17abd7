//! tidings on PostgreSQL: a durable queue, the transactional outbox and the inbox.
//!
//! - [`PgTransport`]: a durable [`Transport`](tidings_core::transport::Transport) in the
//!   database (`postgres://` in `tidings serve`): fan-out, competing consumers with
//!   `FOR UPDATE SKIP LOCKED`, leases, delayed retries, dead letters, wake-ups by
//!   `LISTEN`/`NOTIFY`.
//! - [`PgOutbox`]: stage events in the application's own transaction; any number of
//!   [`Relay`](tidings_core::outbox::Relay)s publish them, sharing the work with
//!   `FOR UPDATE SKIP LOCKED`, woken by `LISTEN`/`NOTIFY` with polling as the fallback.
//! - [`PgInbox`]: de-duplication by (subscription, source, id), optionally joined to the
//!   handler's own transaction.
//!
//! Tables are created by versioned sqlx migrations, tracked in `_tidings_queue_migrations`
//! and `_tidings_outbox_migrations` so that they never collide with the application's own
//! migrations.

mod acks;
mod config;
mod dead_letter;
mod delivery;
mod error;
mod inbox;
mod outbox;
mod publisher;
mod routes;
mod subscriber;
mod transport;
mod wakeup;

pub use config::PgConfig;
pub use error::{Error, Result};
pub use inbox::PgInbox;
pub use outbox::{CHANNEL, PgOutbox};
pub use transport::PgTransport;
pub use wakeup::QUEUE_CHANNEL;

use sqlx::PgConnection;
use sqlx::migrate::{MigrateError, Migrator};

fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/outbox");
    migrator.dangerous_set_table_name("_tidings_outbox_migrations");
    migrator
}

/// Applies the schema. `run_direct` is what `Migrator::run` calls after acquiring; calling it
/// on the connection avoids `run`'s higher-ranked `Acquire` bound, which would make callers'
/// futures not provably `Send`.
async fn migrate(conn: &mut PgConnection) -> Result<()> {
    migrator()
        .run_direct(None, conn, false)
        .await
        .map_err(|e| match e {
            MigrateError::VersionMissing(version) => Error::NewerSchema(version),
            other => Error::Migrate(other),
        })
}
