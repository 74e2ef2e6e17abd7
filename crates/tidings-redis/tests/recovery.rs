//! Redis killed and started again, on servers of the test's own (loopback ports, temporary
//! directories): with AOF (`appendfsync always`) nothing is lost across a `kill -9`
//! mid-stream; without persistence the consumers declare their groups again and carry on
//! with what is published after the restart.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::Bus;
use tidings::envelope::Envelope;
use tidings::inbox::MemoryInbox;
use tidings::transport::Publisher;
use tidings_redis::{RedisConfig, RedisTransport};
use tidings_testkit::{Namespace, Probe, faults};

/// A redis-server of the test's own; killed (`SIGKILL`) when dropped or restarted.
struct Server {
    child: Option<tokio::process::Child>,
    port: u16,
    dir: std::path::PathBuf,
    aof: bool,
}

impl Server {
    async fn start(dir: &std::path::Path, aof: bool) -> Option<Self> {
        let port = tidings_testkit::process::free_port();
        let mut server = Self {
            child: None,
            port,
            dir: dir.to_owned(),
            aof,
        };
        if let Err(error) = server.spawn().await {
            tidings_testkit::service::unavailable("redis-server (the binary)", &error);
            return None;
        }
        Some(server)
    }

    async fn spawn(&mut self) -> std::io::Result<()> {
        let mut command = tokio::process::Command::new("redis-server");
        command
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if self.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        self.child = Some(command.spawn()?);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.url();
            let answered = tokio::time::timeout(Duration::from_secs(2), async move {
                let client = redis::Client::open(url).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                // LOADING while the AOF is replayed: wait for a real answer.
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            })
            .await;
            if matches!(answered, Ok(Some(_))) {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `kill -9`, a pause, and the same server again on the same port and directory.
    async fn restart(&mut self, down_for: Duration) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL redis-server");
        }
        tokio::time::sleep(down_for).await;
        self.spawn().await.expect("redis-server starts again");
    }
}

fn config(server: &Server) -> RedisConfig {
    RedisConfig::new(server.url())
        .lease(Duration::from_secs(3))
        .block(Duration::from_millis(200))
        .response_timeout(Duration::from_secs(2))
}

fn order(ns: &Namespace, seq: u64) -> Envelope {
    Envelope::new(ns.as_str(), ns.topic("order.paid"))
        .with_subject(format!("order-{}", seq % 50))
        .with_json_data(&serde_json::json!({ "seq": seq }))
        .expect("json")
}

fn seq_of(e: &Envelope) -> u64 {
    e.data_as::<serde_json::Value>().expect("json")["seq"]
        .as_u64()
        .expect("seq")
}

async fn bus(transport: RedisTransport, ns: &Namespace) -> (Bus, Arc<Probe<u64>>) {
    let bus = Bus::builder(transport)
        .source(ns.as_str())
        .build()
        .expect("bus");
    let handled: Arc<Probe<u64>> = Probe::new();
    let seen = handled.clone();
    bus.subscription(ns.subscription("billing"))
        .on_pattern(&ns.topic("order.*"), move |e: Arc<Envelope>| {
            let seen = seen.clone();
            async move {
                seen.push(seq_of(&e));
                Ok(())
            }
        })
        .start()
        .await
        .expect("subscribe");
    (bus, handled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aof_a_redis_killed_mid_stream_of_10000_events_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(mut server) = Server::start(dir.path(), true).await else {
        return;
    };
    let transport = RedisTransport::connect(config(&server))
        .await
        .expect("connect");
    let outcome = faults::stream_through_fault(
        Arc::new(transport),
        MemoryInbox::new(100_000),
        10_000,
        || server.restart(Duration::from_secs(2)),
    )
    .await;
    eprintln!("kill -9 redis-server (AOF, appendfsync always): {outcome}");
    outcome.assert_nothing_lost();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_persistence_consumers_declare_again_and_carry_on() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(mut server) = Server::start(dir.path(), false).await else {
        return;
    };
    let transport = RedisTransport::connect(config(&server))
        .await
        .expect("connect");
    let ns = Namespace::new();
    let (bus, handled) = bus(transport.clone(), &ns).await;
    let before: Vec<Envelope> = (0..100).map(|s| order(&ns, s)).collect();
    transport.publish_batch(&before).await.expect("publish");
    handled.wait_for(100, Duration::from_secs(20)).await;

    server.restart(Duration::from_millis(500)).await;
    // Everything Redis held is gone, the bindings with it: events published before the
    // consumer has declared itself again reach no one. Publish until one gets through.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 100;
    while handled.len() <= 100 {
        assert!(Instant::now() < deadline, "the consumer never came back");
        let _ = transport.publish(&order(&ns, seq)).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after: Vec<Envelope> = (1000..1100).map(|s| order(&ns, s)).collect();
    transport
        .publish_batch(&after)
        .await
        .expect("publish after the restart");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: BTreeSet<u64> = handled.items().into_iter().collect();
        if (1000..1100).all(|s| got.contains(&s)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "everything published once the consumer was back arrived"
        );
        handled
            .wait_for(handled.len() + 1, Duration::from_millis(200))
            .await;
    }
    bus.shutdown().await.expect("shutdown");
}
