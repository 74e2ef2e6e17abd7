//! tidings/raw async-nats throughput ratios on JetStream, measured in pairs.
//!
//! `cargo bench -p tidings-nats --bench paired [-- ROUNDS]` (default 15 rounds). Each round
//! runs raw async-nats and tidings on the same 5,000 events back to back, alternating which
//! goes first; it prints the median throughputs and the median and quartiles of the
//! per-round ratio tidings/raw. What each side does is described in `rig/mod.rs`.

#[path = "rig/mod.rs"]
mod rig;

use rig::{EVENTS, Rig};
use tidings_testkit::bench::Paired;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(15);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rig = Rig::new().await;
        rig.raw_publish().await;
        rig.tidings_publish().await;
        rig.raw_consume().await;
        rig.tidings_bus().await;
        println!("{}", Paired::header());
        let publish = Paired::measure(
            rounds,
            EVENTS,
            || rig.raw_publish(),
            || rig.tidings_publish(),
        )
        .await;
        println!("{}", publish.row("publish"));
        let stream = Paired::measure(
            rounds,
            EVENTS,
            || rig.raw_consume(),
            || rig.tidings_stream(),
        )
        .await;
        println!("{}", stream.row("consume stream"));
        let bus = Paired::measure(rounds, EVENTS, || rig.raw_consume(), || rig.tidings_bus()).await;
        println!("{}", bus.row("consume bus"));
        rig.shutdown().await;
    });
}
