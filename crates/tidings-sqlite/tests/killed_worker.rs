//! A worker process killed with SIGKILL in the middle of its handlers loses nothing: what it
//! held comes back once its lease runs out, and an inbox written in the handler's own
//! transaction turns the redeliveries into exactly one effect per event.
//!
//! This file has its own `main` (`harness = false`): run with `TIDINGS_KILLED_WORKER_DIR` set,
//! the same binary is the worker that the test starts and kills.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tidings::envelope::Envelope;
use tidings::topic::Pattern;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings::{Bus, HandlerError};
use tidings_sqlite::{SqliteConfig, SqliteInbox, SqliteTransport};
use tidings_testkit::process::{Guarded, Lines};

const CHILD: &str = "TIDINGS_KILLED_WORKER_DIR";
const SUBSCRIPTION: &str = "fulfilment";
const EVENTS: u64 = 2_000;
/// The worker is killed once it has handled this many.
const KILL_AFTER: usize = 300;
const LEASE: Duration = Duration::from_secs(2);

fn main() {
    if let Ok(dir) = std::env::var(CHILD) {
        runtime().block_on(worker(PathBuf::from(dir), Role::Child));
        return;
    }
    let args = libtest_mimic::Arguments::from_args();
    let trials = vec![libtest_mimic::Trial::test(
        "a_worker_killed_mid_handler_loses_nothing_and_the_inbox_removes_duplicates",
        || {
            runtime().block_on(killed_worker_loses_nothing());
            Ok(())
        },
    )];
    libtest_mimic::run(&args, trials).exit();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn store_config(dir: &Path) -> SqliteConfig {
    SqliteConfig::new(dir.join("events.db"))
        .lease(LEASE)
        .poll_interval(Duration::from_millis(50))
}

/// The application's own database: the handler's effects and its inbox, written together.
async fn app_db(dir: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("app.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("app db");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS shipments (seq INTEGER NOT NULL, handled_by TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("app table");
    pool
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// Prints `handled <seq>` after each commit, and is killed mid-stream.
    Child,
    /// Handles what is left after the kill.
    Survivor,
}

/// What the survivor saw.
#[derive(Default)]
struct Counts {
    duplicates_removed: AtomicU64,
}

/// Runs a bus whose handler ships an order in the application's database, recording the event
/// in the inbox in the same transaction. Returns once `done` says so (the child never does).
async fn worker(dir: PathBuf, role: Role) -> Arc<Counts> {
    let pool = app_db(&dir).await;
    let inbox = SqliteInbox::new(pool.clone()).await.expect("inbox");
    let transport = SqliteTransport::open(store_config(&dir))
        .await
        .expect("store");
    // The bus's own in-memory inbox would hide redeliveries inside one process; the
    // transactional one is what must hold across the kill.
    let bus = Bus::builder(transport)
        .source("fulfilment-worker")
        .without_inbox()
        .build()
        .expect("bus");
    let counts = Arc::new(Counts::default());
    let label = match role {
        Role::Child => format!("child-{}", std::process::id()),
        Role::Survivor => "survivor".to_owned(),
    };
    let handler_counts = counts.clone();
    bus.subscription(SUBSCRIPTION)
        .on_pattern("order.*", move |e: Arc<Envelope>| {
            let (pool, inbox, counts, label) = (
                pool.clone(),
                inbox.clone(),
                handler_counts.clone(),
                label.clone(),
            );
            async move {
                let seq = seq_of(&e);
                let mut tx = pool.begin().await.map_err(HandlerError::retry)?;
                if !inbox
                    .record(&mut tx, SUBSCRIPTION, &e)
                    .await
                    .map_err(HandlerError::retry)?
                {
                    counts.duplicates_removed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                sqlx::query("INSERT INTO shipments (seq, handled_by) VALUES (?, ?)")
                    .bind(i64::try_from(seq).expect("seq"))
                    .bind(&label)
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::retry)?;
                // Work that takes a while, so that the kill lands inside handlers.
                tokio::time::sleep(Duration::from_millis(3)).await;
                tx.commit().await.map_err(HandlerError::retry)?;
                if role == Role::Child {
                    println!("handled {seq}");
                }
                Ok(())
            }
        })
        .concurrency(8)
        .prefetch(32)
        .start()
        .await
        .expect("subscribe");
    if role == Role::Child {
        std::future::pending::<()>().await;
    }
    counts
}

/// Deliveries still leased (to the dead worker) right after the kill.
async fn leased_by_the_dead(dir: &Path) -> i64 {
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(dir.join("events.db"))
            .read_only(true),
    )
    .await
    .expect("inspect the store");
    let now = chrono::Utc::now().timestamp_millis();
    let held = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tidings_messages \
         WHERE acked_at IS NULL AND lease_token IS NOT NULL AND visible_at > ?",
    )
    .bind(now)
    .fetch_one(&pool)
    .await
    .expect("count leases");
    pool.close().await;
    held
}

fn seq_of(e: &Envelope) -> u64 {
    e.data_as::<serde_json::Value>().expect("json")["seq"]
        .as_u64()
        .expect("seq")
}

async fn killed_worker_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteTransport::open(store_config(dir.path()))
        .await
        .expect("store");
    drop(
        store
            .subscribe(&SubscriptionSpec::new(
                SUBSCRIPTION,
                [Pattern::parse("order.*").expect("pattern")],
            ))
            .await
            .expect("declare"),
    );
    let events: Vec<Envelope> = (0..EVENTS)
        .map(|seq| {
            Envelope::new("oms", "order.paid")
                .with_subject(format!("order-{}", seq % 50))
                .with_json_data(&serde_json::json!({ "seq": seq }))
                .expect("json")
        })
        .collect();
    store.publish_batch(&events).await.expect("publish");
    store.close().await.expect("close");

    let mut child = Guarded::spawn(
        Command::new(std::env::current_exe().expect("test binary"))
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let lines = Lines::read(child.0.stdout.take().expect("stdout"));
    for _ in 0..KILL_AFTER {
        lines.find(Duration::from_secs(60), "`handled …`", |line| {
            line.starts_with("handled ")
        });
    }
    child.0.kill().expect("SIGKILL the worker"); // std sends SIGKILL on Unix
    let killed_at = Instant::now();
    let status = child.0.wait().expect("reap");
    assert!(!status.success(), "the worker was killed: {status}");

    let held = leased_by_the_dead(dir.path()).await;
    assert!(held > 0, "the worker held deliveries when it was killed");
    let counts = worker(dir.path().to_owned(), Role::Survivor).await;
    let pool = app_db(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let per_seq = loop {
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT seq, handled_by FROM shipments")
            .fetch_all(&pool)
            .await
            .expect("read shipments");
        let mut per_seq = BTreeMap::<i64, Vec<String>>::new();
        for (seq, by) in rows {
            per_seq.entry(seq).or_default().push(by);
        }
        if per_seq.len() as u64 == EVENTS || Instant::now() > deadline {
            break per_seq;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recovered_after = killed_at.elapsed();
    // Let anything left over (redeliveries of rows the child committed but never acked)
    // arrive, so that a double effect would show.
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM shipments")
        .fetch_all(&pool)
        .await
        .expect("read shipments");
    let by_child = per_seq
        .values()
        .filter(|by| by[0].starts_with("child"))
        .count();
    let duplicates = counts.duplicates_removed.load(Ordering::Relaxed);
    eprintln!(
        "killed worker: {EVENTS} events, child handled {by_child} (killed after {KILL_AFTER}), \
         {held} leased to it at the kill, survivor handled {}, duplicates removed by the inbox \
         {duplicates}, everything handled {:.1?} after the kill",
        per_seq.len() - by_child,
        recovered_after
    );
    assert_eq!(per_seq.len() as u64, EVENTS, "every event was handled");
    assert!(
        per_seq
            .keys()
            .copied()
            .eq(0..i64::try_from(EVENTS).expect("n")),
        "the handled seqs are exactly the published ones"
    );
    assert_eq!(
        rows.len() as u64,
        EVENTS,
        "each event had exactly one effect: the inbox removed every redelivery"
    );
    assert!(
        by_child >= KILL_AFTER,
        "the child's committed work counts: {by_child}"
    );
}
