//! Room set aside for consumers when the store fills up.
//!
//! A full store cannot even be drained: leasing a message updates indexes, which may need a new
//! page, and every write appends to the WAL file. So the store sets room aside twice: a row in
//! `tidings_reserve` (inside `max_size`) and a file beside the database (`<db>-reserve`, on the
//! disk). When a publish finds the disk or `max_size` full, the writer stops accepting
//! publishes and frees both: the row's pages go to SQLite's free list, the file's bytes to the
//! disk, where claims, acks and the WAL can use them. Once consumers have freed at least twice
//! the reserve, it is set aside again and publishes are accepted.

use std::path::{Path, PathBuf};

use sqlx::SqliteConnection;

/// Size of the reserve row.
pub(crate) const BYTES: i64 = 256 * 1024;

/// Size of the reserve file: enough for a checkpoint to move a full WAL (see
/// [`WAL_PAGES`]) into the database file, and then some.
pub(crate) const FILE_BYTES: usize = 4 * 1024 * 1024;

/// The WAL is checkpointed when it reaches this many pages (4 KiB each): 1 MiB.
pub(crate) const WAL_PAGES: u32 = 256;

/// The reserve file of the database at `path`.
pub(crate) fn file_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-reserve");
    PathBuf::from(name)
}

fn place_file(file: &Path) -> bool {
    let zeros = vec![0u8; FILE_BYTES];
    match std::fs::write(file, zeros).and_then(|()| std::fs::File::open(file)?.sync_all()) {
        Ok(()) => true,
        Err(_) => {
            let _ = std::fs::remove_file(file);
            false
        }
    }
}

/// Sets the reserve aside if it is missing. Returns whether it is in place.
pub(crate) async fn restore(conn: &mut SqliteConnection, file: &Path) -> bool {
    let free: Result<(i64, i64), _> = async {
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await?;
        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *conn)
            .await?;
        Ok::<_, sqlx::Error>((free, page))
    }
    .await;
    let Ok((free, page)) = free else { return false };
    if free * page < 2 * BYTES {
        return false;
    }
    // The file only comes back once the disk has room for it twice over.
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let room = fs4::available_space(dir).unwrap_or(0);
    if room < 2 * FILE_BYTES as u64 {
        return false;
    }
    let restored =
        sqlx::query("INSERT OR IGNORE INTO tidings_reserve (id, space) VALUES (1, zeroblob(?))")
            .bind(BYTES)
            .execute(&mut *conn)
            .await;
    if restored.is_err() || !place_file(file) {
        return false;
    }
    tracing::info!("the store has room again; publishes are accepted");
    true
}

/// Sets the reserve aside on a new store; a store too full for it runs without.
pub(crate) async fn ensure(conn: &mut SqliteConnection, file: &Path) {
    if !file.exists() && !place_file(file) {
        tracing::warn!(file = %file.display(), "no room for the consumers' reserve file");
    }
    let placed =
        sqlx::query("INSERT OR IGNORE INTO tidings_reserve (id, space) VALUES (1, zeroblob(?))")
            .bind(BYTES)
            .execute(&mut *conn)
            .await;
    if let Err(error) = placed {
        tracing::warn!(%error, "no room for the consumers' reserve");
    }
}

/// Frees the reserve for consumers.
pub(crate) async fn release(conn: &mut SqliteConnection, file: &Path) {
    tracing::warn!("the store is full: publishes are refused until consumers make room");
    let _ = std::fs::remove_file(file);
    if let Err(error) = sqlx::query("DELETE FROM tidings_reserve")
        .execute(&mut *conn)
        .await
    {
        tracing::warn!(%error, "could not free the consumers' reserve");
    }
}

/// Copies the WAL into the database file and truncates it, giving its disk space back.
pub(crate) async fn checkpoint(conn: &mut SqliteConnection) {
    if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut *conn)
        .await
    {
        tracing::debug!(%error, "checkpoint of a full store");
    }
}
