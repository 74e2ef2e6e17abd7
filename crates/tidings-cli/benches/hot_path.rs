//! The hot path on its own, with no broker: encoding a ~500-byte order, decoding it, and
//! in-memory publish-to-handled through a typed handler beside a raw tokio channel carrying
//! the same decoded orders (the floor under any in-process bus).
//!
//! `cargo bench -p tidings-cli --bench hot_path`. `tidings bench --url memory://` measures the
//! same pair end to end, with latency; this bench is the one to profile (`valgrind
//! --tool=callgrind target/release/deps/hot_path-* --bench --profile-time 5`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tidings::codec::{Codec, StructuredJson};
use tidings::memory::MemoryTransport;
use tidings::{Bus, Event};
use tokio::sync::{Notify, mpsc};

/// The order `tidings bench` moves, so that both measure the same event.
#[allow(dead_code)]
#[path = "../src/bench/event.rs"]
mod event;

use event::OrderCreated;

fn order(seq: u64) -> OrderCreated {
    OrderCreated::sample(seq)
}

/// Events per publish-to-handled iteration.
const BATCH: u64 = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn envelope(c: &mut Criterion) {
    let rt = runtime();
    let bus = rt.block_on(async {
        Bus::builder(MemoryTransport::new())
            .source("bench")
            .build()
            .expect("bus")
    });
    let event = order(7);
    let bytes = StructuredJson
        .encode(&bus.envelope(&event).expect("envelope"))
        .expect("encode");
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        b.iter(|| {
            StructuredJson
                .encode(&bus.envelope(&event).expect("envelope"))
                .expect("encode")
        });
    });
    group.bench_function("decode", |b| {
        b.iter(|| StructuredJson.decode(&bytes).expect("decode"));
    });
    // What a typed handler's delivery costs to read: the envelope, then its data into the
    // type (two passes over the data), beside both in one pass.
    group.bench_function("decode_then_data", |b| {
        b.iter(|| {
            let envelope = StructuredJson.decode(&bytes).expect("decode");
            let data: OrderCreated = envelope.data_as().expect("data");
            (envelope, data)
        });
    });
    group.bench_function("decode_with_data", |b| {
        b.iter(|| {
            StructuredJson
                .decode_with_data::<OrderCreated>(&bytes)
                .expect("decode")
        });
    });
    group.finish();
}

fn publish_to_handled(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("memory/publish_to_handled");
    group.throughput(Throughput::Elements(BATCH));
    let events: Vec<OrderCreated> = (0..BATCH).map(order).collect();

    // The raw floor: a channel of decoded orders and a task receiving them.
    let (sender, mut receiver) = mpsc::unbounded_channel::<OrderCreated>();
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (counter, finished) = (handled.clone(), done.clone());
    rt.spawn(async move {
        while let Some(order) = receiver.recv().await {
            std::hint::black_box(&order);
            if counter.fetch_add(1, Ordering::Relaxed) % BATCH == BATCH - 1 {
                finished.notify_one();
            }
        }
    });
    group.bench_function("tokio_channel", |b| {
        b.to_async(&rt).iter(|| async {
            for event in &events {
                sender.send(event.clone()).expect("open");
            }
            done.notified().await;
        });
    });

    // tidings: a bus on the memory transport and a typed handler.
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (counter, finished) = (handled.clone(), done.clone());
    let bus = rt.block_on(async move {
        let bus = Bus::builder(MemoryTransport::new())
            .source("bench")
            .build()
            .expect("bus");
        let running = bus
            .subscription("bench")
            .on::<OrderCreated, _>(move |order: Event<OrderCreated>| {
                std::hint::black_box(&order);
                if counter.fetch_add(1, Ordering::Relaxed) % BATCH == BATCH - 1 {
                    finished.notify_one();
                }
                async { Ok(()) }
            })
            .concurrency(64)
            .prefetch(256)
            .start()
            .await
            .expect("subscribe");
        std::mem::forget(running);
        bus
    });
    group.bench_function("tidings_typed", |b| {
        b.to_async(&rt).iter(|| async {
            for chunk in events.chunks(500) {
                bus.publish_batch(chunk).await.expect("published");
            }
            done.notified().await;
        });
    });
    group.finish();
}

criterion_group!(benches, envelope, publish_to_handled);
criterion_main!(benches);
