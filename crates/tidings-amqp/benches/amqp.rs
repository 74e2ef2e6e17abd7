//! tidings on RabbitMQ beside raw lapin, on the same broker, in one run (criterion).
//!
//! `cargo bench -p tidings-amqp --bench amqp` (RabbitMQ at `RABBITMQ_URL`, default the
//! machine's). What each benchmark does is described in `rig/mod.rs`. Each runs its samples
//! one after the other; `tidings bench --url amqp://…` alternates raw and tidings round by
//! round, which is the better ratio on a noisy machine.

#[path = "rig/mod.rs"]
mod rig;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rig::{EVENTS, Rig};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn rabbitmq(c: &mut Criterion) {
    let rt = runtime();
    let rig = rt.block_on(Rig::new());
    for (group, cases) in [
        ("amqp/publish", &["raw_lapin", "tidings"][..]),
        (
            "amqp/consume",
            &["raw_lapin", "tidings_stream", "tidings_bus"][..],
        ),
    ] {
        let mut g = c.benchmark_group(group);
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(20));
        g.throughput(Throughput::Elements(EVENTS));
        for case in cases {
            g.bench_function(*case, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let rig = &rig;
                    async move {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            spent += match (group, *case) {
                                ("amqp/publish", "raw_lapin") => rig.raw_publish().await,
                                ("amqp/publish", _) => rig.tidings_publish().await,
                                (_, "raw_lapin") => rig.raw_consume().await,
                                (_, "tidings_stream") => rig.tidings_stream().await,
                                _ => rig.tidings_bus().await,
                            };
                        }
                        spent
                    }
                });
            });
        }
        g.finish();
    }
    rt.block_on(rig.shutdown());
}

criterion_group!(benches, rabbitmq);
criterion_main!(benches);
