//! tidings/raw redis throughput ratios on Redis Streams, measured in pairs.
//!
//! `cargo bench -p tidings-redis --bench paired [-- ROUNDS]` (default 15 rounds). Each round
//! runs the raw client and tidings on the same 5,000 events back to back, alternating which
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
        // Both sides take the rig in turn, never at once.
        let rig = tokio::sync::Mutex::new(Rig::new().await);
        println!("{}", Paired::header());
        let publish = Paired::measure(
            rounds,
            EVENTS,
            || async { rig.lock().await.raw_publish().await },
            || async { rig.lock().await.tidings_publish().await },
        )
        .await;
        println!("{}", publish.row("publish"));
        let stream = Paired::measure(
            rounds,
            EVENTS,
            || async { rig.lock().await.raw_consume().await },
            || async { rig.lock().await.tidings_stream().await },
        )
        .await;
        println!("{}", stream.row("consume stream"));
        let bus = Paired::measure(
            rounds,
            EVENTS,
            || async { rig.lock().await.raw_consume().await },
            || async { rig.lock().await.tidings_bus().await },
        )
        .await;
        println!("{}", bus.row("consume bus"));
        rig.into_inner().shutdown().await;
    });
}
