//! The store's file: what survives reopening, what it refuses to open, how it fails when full.

use std::path::Path;
use std::time::Duration;

use tidings::dead_letter::Page;
use tidings::envelope::Envelope;
use tidings::topic::Pattern;
use tidings::transport::{
    DeadLetters, DeliveryStream, Publisher, Subscriber, SubscriptionSpec, Transport, TransportError,
};
use tidings_sqlite::{Error, SqliteConfig, SqliteTransport};
use tidings_testkit::{recv, service};

fn spec() -> SubscriptionSpec {
    SubscriptionSpec::new("billing", [Pattern::parse("order.*").expect("pattern")])
}

fn order(seq: u64, padding: usize) -> Envelope {
    Envelope::new("oms", "order.created")
        .with_subject(format!("o-{seq}"))
        .with_json_data(&serde_json::json!({ "seq": seq, "note": "x".repeat(padding) }))
        .expect("json")
}

async fn drain(stream: &mut DeliveryStream) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(d) = recv(stream, Duration::from_millis(500)).await {
        let e = d.envelope().expect("decodable");
        seqs.push(
            e.data_as::<serde_json::Value>().expect("json")["seq"]
                .as_u64()
                .expect("seq"),
        );
        d.ack().await.expect("ack");
    }
    seqs
}

#[tokio::test]
async fn events_survive_closing_and_reopening_the_store() {
    let dir = tempfile::tempdir().expect("dir");
    let config = SqliteConfig::new(dir.path().join("events.db"));
    {
        let store = SqliteTransport::open(config.clone()).await.expect("open");
        drop(store.subscribe(&spec()).await.expect("declare"));
        let batch: Vec<_> = (0..100).map(|seq| order(seq, 0)).collect();
        store.publish_batch(&batch).await.expect("publish");
        store.close().await.expect("close");
    }
    let store = SqliteTransport::open(config).await.expect("reopen");
    assert_eq!(store.depth("billing").await.expect("depth"), 100);
    let mut stream = store.subscribe(&spec()).await.expect("subscribe");
    assert_eq!(drain(&mut stream).await, (0..100).collect::<Vec<_>>());
    assert_eq!(store.depth("billing").await.expect("depth"), 0);
}

#[tokio::test]
async fn the_backlog_counts_every_unacked_event_and_ages_the_oldest() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteTransport::open(SqliteConfig::new(dir.path().join("events.db")))
        .await
        .expect("open");
    drop(store.subscribe(&spec()).await.expect("declare"));
    let batch: Vec<_> = (0..3).map(|seq| order(seq, 0)).collect();
    store.publish_batch(&batch).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let backlog = store
        .backlog("billing")
        .await
        .expect("backlog")
        .expect("known");
    assert_eq!(backlog.depth, 3);
    assert!(
        backlog.oldest_age.expect("an age") >= Duration::from_millis(30),
        "{backlog:?}"
    );
    // Leased but unacked still counts; acked does not.
    let mut stream = store.subscribe(&spec()).await.expect("subscribe");
    let first = recv(&mut stream, Duration::from_secs(5))
        .await
        .expect("one");
    first.ack().await.expect("ack");
    let backlog = store
        .backlog("billing")
        .await
        .expect("backlog")
        .expect("known");
    assert_eq!(backlog.depth, 2);
    let nobody = store
        .backlog("nobody")
        .await
        .expect("backlog")
        .expect("known");
    assert_eq!((nobody.depth, nobody.oldest_age), (0, None));
}

#[tokio::test]
async fn acked_events_are_kept_for_the_retention_then_deleted() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.db");
    let store = SqliteTransport::open(SqliteConfig::new(&path).retention(Duration::from_secs(2)))
        .await
        .expect("open");
    let mut stream = store.subscribe(&spec()).await.expect("subscribe");
    store
        .publish_batch(&(0..5).map(|s| order(s, 0)).collect::<Vec<_>>())
        .await
        .expect("publish");
    assert_eq!(drain(&mut stream).await.len(), 5);
    let rows = || async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("inspect");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tidings_messages")
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    };
    assert_eq!(rows().await, 5, "acked rows kept within the retention");
    assert_eq!(
        store.depth("billing").await.expect("depth"),
        0,
        "none pending"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while rows().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention sweep never ran"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_database_of_the_first_schema_opens_without_loss() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.db");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-0001.db");
    std::fs::copy(fixture, &path).expect("copy fixture");

    let store = SqliteTransport::open(SqliteConfig::new(&path))
        .await
        .expect("migrate and open");
    assert_eq!(store.depth("billing").await.expect("depth"), 3);
    let letters = store
        .list("billing", Page::default())
        .await
        .expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason.message, "card declined");
    assert_eq!(letters[0].handler.as_deref(), Some("charge"));
    assert_eq!(letters[0].envelope().expect("decodable").id, "evt-0");
    let mut stream = store.subscribe(&spec()).await.expect("subscribe");
    let mut ids = Vec::new();
    while let Some(d) = recv(&mut stream, Duration::from_millis(500)).await {
        ids.push(d.envelope().expect("decodable").id.clone());
        d.ack().await.expect("ack");
    }
    assert_eq!(ids, ["evt-1", "evt-2", "evt-3"]);
}

#[tokio::test]
async fn a_database_of_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("newer.db");
    drop(
        SqliteTransport::open(SqliteConfig::new(&path))
            .await
            .expect("open"),
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("inspect");
    sqlx::query(
        "INSERT INTO _tidings_store_migrations \
         (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .expect("a migration this version does not know");
    pool.close().await;

    let error = SqliteTransport::open(SqliteConfig::new(&path))
        .await
        .expect_err("refused");
    assert!(
        matches!(error, Error::NewerSchema { version: 9999, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("newer version of tidings"),
        "{error}"
    );
}

#[tokio::test]
async fn a_corrupt_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("corrupt.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).expect("write garbage");

    let error = SqliteTransport::open(SqliteConfig::new(&path))
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::NotADatabase { .. }), "{error}");
    assert!(
        error.to_string().contains("not a SQLite database"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        garbage,
        "file untouched"
    );
}

#[tokio::test]
async fn a_sqlite_database_of_another_application_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("crm.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("create");
    sqlx::raw_sql("CREATE TABLE customers (id TEXT); INSERT INTO customers VALUES ('c-1');")
        .execute(&pool)
        .await
        .expect("someone else's data");
    pool.close().await;

    let error = SqliteTransport::open(SqliteConfig::new(&path))
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::Foreign { .. }), "{error}");
    assert!(error.to_string().contains("customers"), "{error}");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("reopen");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .expect("tables");
    assert_eq!(
        tables,
        ["customers"],
        "nothing of tidings was written into it"
    );
}

/// Publishes padded events until the store refuses one; checks the refusal is the typed
/// "full" error, then that everything accepted before is delivered, and that once there is
/// room again (`make_room`) publishes are accepted.
async fn fill_then_drain(config: SqliteConfig, make_room: impl FnOnce()) {
    let store = SqliteTransport::open(config).await.expect("open");
    let mut stream = store.subscribe(&spec()).await.expect("subscribe");
    let mut accepted = 0u64;
    let refusal = loop {
        match store.publish(&order(accepted, 4096)).await {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 100_000, "the store never filled up");
    };
    assert!(accepted > 10, "only {accepted} events fit");
    assert!(!refusal.is_transient(), "{refusal}");
    let text = refusal.to_string();
    assert!(text.contains("full"), "a clear error: {text}");
    assert!(matches!(refusal, TransportError::Other(_)), "{refusal:?}");

    assert_eq!(drain(&mut stream).await, (0..accepted).collect::<Vec<_>>());
    make_room();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Err(error) = store.publish(&order(accepted, 4096)).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes still refused with room: {error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_store_at_its_size_limit_refuses_publishes_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().expect("dir");
    // Consuming deletes rows: their pages are room again inside the limit.
    fill_then_drain(
        SqliteConfig::new(dir.path().join("capped.db")).max_size(1 << 20),
        || {},
    )
    .await;
}

/// Mounts a tmpfs at `dir` (`mount` needs root; outside CI the test is skipped without it).
fn mount_tmpfs(dir: &Path, options: &str) -> Option<TmpfsMount> {
    std::fs::create_dir_all(dir).expect("mount point");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(dir)
        .status();
    match status {
        Ok(s) if s.success() => Some(TmpfsMount(dir.to_owned())),
        other => {
            service::unavailable("a tmpfs mount (root)", &format!("{other:?}"));
            None
        }
    }
}

struct TmpfsMount(std::path::PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().expect("dir");
    let mount = dir.path().join("tiny");
    let Some(_mounted) = mount_tmpfs(&mount, "size=16m") else {
        return;
    };
    // Another program's file shares the disk; deleting it is what gives room back, since a
    // database file does not shrink when rows are deleted.
    let other = mount.join("other-program.log");
    std::fs::write(&other, vec![0u8; 10 << 20]).expect("other program's file");
    fill_then_drain(SqliteConfig::new(mount.join("events.db")), || {
        std::fs::remove_file(&other).expect("free the disk");
    })
    .await;
}

#[tokio::test]
async fn a_read_only_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let mount = dir.path().join("ro");
    let Some(_mounted) = mount_tmpfs(&mount, "ro,size=1m") else {
        return;
    };
    let error = SqliteTransport::open(SqliteConfig::new(mount.join("events.db")))
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::ReadOnly { .. }), "{error:?}");
    assert!(error.to_string().contains("read-only"), "{error}");
}

#[tokio::test]
async fn acks_whose_batch_cannot_begin_all_learn_why_and_later_acks_still_settle() {
    use sqlx::{ConnectOptions as _, Connection as _};

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.db");
    let store =
        SqliteTransport::open(SqliteConfig::new(&path).busy_timeout(Duration::from_millis(300)))
            .await
            .expect("open");
    let mut stream = store.subscribe(&spec()).await.expect("subscribe");
    let batch: Vec<_> = (0..4).map(|seq| order(seq, 0)).collect();
    store.publish_batch(&batch).await.expect("publish");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            recv(&mut stream, Duration::from_secs(5))
                .await
                .expect("a delivery"),
        );
    }

    // Another process holds the write lock for longer than the store's busy timeout: the
    // batch the acks ride in cannot even begin.
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("another connection");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("write lock");
    let last = held.pop().expect("four");
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join_all(held.into_iter().map(|d| d.ack())),
    )
    .await
    .expect("every ack is answered, none waits for ever");
    for outcome in refused {
        let error = outcome.expect_err("the batch did not commit");
        assert!(error.to_string().contains("busy"), "{error}");
    }

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release");
    other.close().await.expect("close");
    tokio::time::timeout(Duration::from_secs(10), last.ack())
        .await
        .expect("a later ack is not stuck behind the failed ones")
        .expect("and settles");
}
