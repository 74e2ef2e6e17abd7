//! Leases on Redis: a consumer killed with SIGKILL while holding entries gives them up to
//! another after the lease (`XAUTOCLAIM`); a live consumer keeps what it holds however long
//! its handler runs; trimming keeps streams short.
//!
//! This file has its own `main` (`harness = false`): run with `TIDINGS_REDIS_HOLDER` set,
//! the same binary is the consumer that the test starts and kills.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber, SubscriptionSpec};
use tidings::{Bus, HandlerError};
use tidings_redis::{RedisTransport, Trim};
use tidings_testkit::process::{Guarded, Lines};
use tidings_testkit::{Probe, recv};

const HOLDER: &str = "TIDINGS_REDIS_HOLDER";
const HELD: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(args) = std::env::var(HOLDER) {
        runtime.block_on(hold(args));
        return;
    }
    let args = libtest_mimic::Arguments::from_args();
    let trial =
        |name: &'static str,
         test: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| {
            libtest_mimic::Trial::test(name, move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(test());
                Ok(())
            })
        };
    let trials = vec![
        trial(
            "entries_a_killed_consumer_held_are_claimed_after_the_lease",
            || Box::pin(killed_consumer()),
        ),
        trial("a_handler_longer_than_the_lease_is_not_redelivered", || {
            Box::pin(long_handler())
        }),
        trial("maxlen_trimming_keeps_a_stream_short", || {
            Box::pin(trimming())
        }),
        trial("minid_trimming_drops_entries_older_than_the_age", || {
            Box::pin(trimming_by_age())
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn spec(name: &str, topic: &str) -> SubscriptionSpec {
    SubscriptionSpec::new(
        name,
        [tidings::topic::Pattern::parse(topic).expect("pattern")],
    )
    .with_prefetch(HELD)
}

/// The child: takes `HELD` deliveries, says so, and holds them until it is killed.
async fn hold(args: String) {
    let (prefix, name, topic) = {
        let mut parts = args.splitn(3, ' ');
        (
            parts.next().expect("prefix").to_owned(),
            parts.next().expect("name").to_owned(),
            parts.next().expect("topic").to_owned(),
        )
    };
    let transport = RedisTransport::connect(common::config().prefix(prefix))
        .await
        .expect("connect");
    let mut stream = transport
        .subscribe(&spec(&name, &topic))
        .await
        .expect("subscribe");
    let mut held = Vec::new();
    while held.len() < HELD {
        // Bounded: a holder that gets nothing exits (and the parent fails), never hangs.
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
        held.push(
            next.expect("a delivery within 30 s")
                .expect("a delivery")
                .expect("delivered"),
        );
    }
    println!("holding {}", held.len());
    std::future::pending::<()>().await;
}

async fn killed_consumer() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let name = format!("killed-{:08x}", fastrand::u32(..));
    let topic = format!("{name}.order.paid");
    drop(
        transport
            .subscribe(&spec(&name, &topic))
            .await
            .expect("declare"),
    );
    let events: Vec<Envelope> = (0..HELD)
        .map(|_| Envelope::new("oms", topic.clone()))
        .collect();
    transport.publish_batch(&events).await.expect("publish");

    let mut child = Guarded::spawn(
        Command::new(std::env::current_exe().expect("test binary"))
            .env(HOLDER, format!("{} {name} {topic}", common::prefix()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let lines = Lines::read(child.0.stdout.take().expect("stdout"));
    let line = lines
        .next_within(Duration::from_secs(60))
        .expect("the holder said what it holds within 60 s");
    assert_eq!(line.trim(), format!("holding {HELD}"));
    // SIGKILL, and reaped.
    child.kill();
    let killed = std::time::Instant::now();

    let mut stream = transport
        .subscribe(&spec(&name, &topic))
        .await
        .expect("subscribe");
    let mut got = BTreeSet::new();
    while got.len() < HELD {
        let d = recv(&mut stream, Duration::from_secs(20))
            .await
            .expect("claimed after the lease");
        assert!(d.attempt() >= 2, "a redelivery: attempt {}", d.attempt());
        got.insert(d.envelope().expect("decodable").id.clone());
        d.ack().await.expect("ack");
    }
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_millis(2500),
        "claimed only once idle for the 3 s lease, not at once: {after:?}"
    );
    assert_eq!(got, events.iter().map(|e| e.id.clone()).collect());
}

async fn long_handler() {
    let Some(transport) = common::connect(common::config()).await else {
        return;
    };
    let name = format!("slow-{:08x}", fastrand::u32(..));
    let bus = Bus::builder(transport.clone())
        .source("reports")
        .without_inbox()
        .build()
        .expect("bus");
    let calls: Arc<Probe<u64>> = Probe::new();
    let seen = calls.clone();
    bus.subscription(&name)
        .on_pattern(&format!("{name}.report.*"), move |e: Arc<Envelope>| {
            let seen = seen.clone();
            async move {
                seen.push(e.data_as::<u64>().map_err(HandlerError::reject)?);
                // Longer than two leases (3 s each).
                tokio::time::sleep(Duration::from_secs(7)).await;
                Ok(())
            }
        })
        .timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("subscribe");
    transport
        .publish(
            &Envelope::new("reports", format!("{name}.report.requested"))
                .with_json_data(&7u64)
                .expect("json"),
        )
        .await
        .expect("publish");
    calls.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(calls.items(), [7], "handled once, for more than two leases");
    bus.shutdown().await.expect("shutdown");
}

async fn trimming() {
    let Some(transport) = common::connect(common::config().trim(Trim::MaxLen(100))).await else {
        return;
    };
    let name = format!("trimmed-{:08x}", fastrand::u32(..));
    let topic = format!("{name}.audit.logged");
    drop(
        transport
            .subscribe(&spec(&name, &topic))
            .await
            .expect("declare"),
    );
    let events: Vec<Envelope> = (0..2_000)
        .map(|_| Envelope::new("audit", topic.clone()))
        .collect();
    transport.publish_batch(&events).await.expect("publish");
    let depth = transport.depth(&name).await.expect("depth");
    // `MAXLEN ~` trims whole radix-tree nodes: about, not exactly, 100.
    assert!(depth < 500, "trimmed to about 100, {depth} left");
    assert!(depth >= 100, "never below the limit: {depth}");
}

async fn trimming_by_age() {
    let Some(transport) =
        common::connect(common::config().trim(Trim::MaxAge(Duration::from_secs(1)))).await
    else {
        return;
    };
    let name = format!("aged-{:08x}", fastrand::u32(..));
    let topic = format!("{name}.audit.logged");
    drop(
        transport
            .subscribe(&spec(&name, &topic))
            .await
            .expect("declare"),
    );
    let old: Vec<Envelope> = (0..500)
        .map(|_| Envelope::new("audit", topic.clone()))
        .collect();
    transport.publish_batch(&old).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new: Vec<Envelope> = (0..500)
        .map(|_| Envelope::new("audit", topic.clone()))
        .collect();
    transport.publish_batch(&new).await.expect("publish");
    let depth = transport.depth(&name).await.expect("depth");
    // `MINID ~` trims whole radix-tree nodes: most of the old entries go, none of the new.
    assert!(depth >= 500, "the new entries stay: {depth}");
    assert!(depth < 1000, "old entries were trimmed: {depth}");
}
