//! Throughput of the embedded store with full durability (`synchronous=FULL`): durable publish
//! (one at a time, many concurrent publishers, batches) and publish-to-handled through a bus.
//!
//! `cargo bench -p tidings-sqlite --bench store`. Each figure is events per second; the event
//! is a ~500-byte order, as in the other transports' benchmarks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tidings::Bus;
use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings_sqlite::{SqliteConfig, SqliteTransport};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// The ~500-byte order event of every transport's benchmark.
fn order(seq: u64) -> Envelope {
    tidings_testkit::sample::order(seq, "order.created")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh store with one subscription bound to the orders, so that publishes are stored.
async fn store(dir: &tempfile::TempDir) -> SqliteTransport {
    let store = SqliteTransport::open(SqliteConfig::new(dir.path().join("bench.db")))
        .await
        .expect("open");
    drop(
        store
            .subscribe(&SubscriptionSpec::new(
                "fulfilment",
                [tidings::topic::Pattern::parse("order.*").expect("pattern")],
            ))
            .await
            .expect("declare"),
    );
    store
}

fn durable_publish(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("sqlite/durable_publish");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    for publishers in [1usize, 16, 64] {
        let dir = tempfile::tempdir().expect("dir");
        let store = rt.block_on(store(&dir));
        group.throughput(Throughput::Elements(publishers as u64 * 50));
        group.bench_with_input(
            BenchmarkId::new("concurrent_publishers", publishers),
            &publishers,
            |b, &publishers| {
                b.to_async(&rt).iter_custom(|iters| {
                    let store = store.clone();
                    async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let tasks: Vec<_> = (0..publishers)
                                .map(|p| {
                                    let store = store.clone();
                                    tokio::spawn(async move {
                                        for i in 0..50 {
                                            store
                                                .publish(&order((p * 50 + i) as u64))
                                                .await
                                                .expect("publish");
                                        }
                                    })
                                })
                                .collect();
                            for task in tasks {
                                task.await.expect("publisher");
                            }
                        }
                        start.elapsed()
                    }
                });
            },
        );
    }

    let dir = tempfile::tempdir().expect("dir");
    let store = rt.block_on(store(&dir));
    let batch: Vec<Envelope> = (0..100).map(order).collect();
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("batch_of_100", |b| {
        b.to_async(&rt)
            .iter(|| async { store.publish_batch(&batch).await.expect("publish") });
    });
    group.finish();
}

fn publish_to_handled(c: &mut Criterion) {
    const EVENTS: u64 = 2_000;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("dir");
    let handled = Arc::new(AtomicU64::new(0));
    let progressed = Arc::new(Notify::new());
    let bus = rt.block_on(async {
        let store = SqliteTransport::open(SqliteConfig::new(dir.path().join("bench.db")))
            .await
            .expect("open");
        let bus = Bus::builder(store)
            .source("oms-service")
            .build()
            .expect("bus");
        let (handled, progressed) = (handled.clone(), progressed.clone());
        bus.subscription("fulfilment")
            .on_pattern("order.*", move |_e: Arc<Envelope>| {
                let (handled, progressed) = (handled.clone(), progressed.clone());
                async move {
                    handled.fetch_add(1, Ordering::Relaxed);
                    progressed.notify_one();
                    Ok(())
                }
            })
            .concurrency(32)
            .prefetch(256)
            .start()
            .await
            .expect("subscribe");
        bus
    });

    let mut group = c.benchmark_group("sqlite/publish_to_handled");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("bus_batches_of_100", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (bus, handled, progressed) = (bus.clone(), handled.clone(), progressed.clone());
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let target = handled.load(Ordering::Relaxed) + EVENTS;
                    for chunk in 0..EVENTS / 100 {
                        let batch = (chunk * 100..(chunk + 1) * 100).map(order).collect();
                        bus.publish_envelopes(batch).await.expect("publish");
                    }
                    while handled.load(Ordering::Relaxed) < target {
                        progressed.notified().await;
                    }
                }
                start.elapsed()
            }
        });
    });
    group.finish();
    rt.block_on(bus.shutdown()).expect("shutdown");
}

criterion_group!(benches, durable_publish, publish_to_handled);
criterion_main!(benches);
