//! The server is killed (`SIGKILL`) mid-stream and started again: nothing is lost, and the
//! inbox removes the duplicates.
//!
//! These tests kill and start the machine's nats-server the way the machine starts it. They
//! take turns (one lock for the binary), and live in a binary of their own so that no other
//! test talks to the server while it is down.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::inbox::MemoryInbox;
use tidings::transport::Transport;
use tidings_nats::NatsTransport;
use tidings_testkit::{Harness, faults};

/// One test at a time touches the server's life.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How the machine starts its nats-server (and how CI starts it again).
const START: &str = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
     -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log";

async fn sh(command: &str) {
    let status = tokio::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .await
        .expect("run a shell");
    assert!(status.success(), "`{command}` failed: {status}");
}

/// The pids of nats-server processes listening on port 4222 (read from `/proc`: a pattern
/// given to `pkill -f` would match the shell running it too).
fn server_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_server = args.first().is_some_and(|a| a.ends_with(b"nats-server"));
        let on_4222 = args.windows(2).any(|w| w[0] == b"-p" && w[1] == b"4222");
        if is_server && on_4222 {
            pids.push(pid);
        }
    }
    pids
}

/// `kill -9` the server on port 4222.
async fn kill_server() {
    let pids = server_pids();
    assert!(!pids.is_empty(), "no nats-server on port 4222 to kill");
    for pid in pids {
        sh(&format!("kill -9 {pid}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect("127.0.0.1:4222")
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "nats-server still up after kill -9"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts it again and waits until JetStream answers.
async fn start_server() {
    sh(START).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while NatsTransport::connect(common::config()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not come back within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Restartable;

#[async_trait::async_trait]
impl Harness for Restartable {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(
            NatsTransport::connect(common::config())
                .await
                .expect("NATS"),
        )
    }

    async fn restart_broker(&self) -> bool {
        kill_server().await;
        start_server().await;
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_broker_restart() {
    let _server = SERVER.lock().await;
    if common::connect(common::config()).await.is_none() {
        return;
    }
    tidings_testkit::within(
        tidings_testkit::conformance::CASE_LIMIT,
        "reconnect_after_broker_restart",
        tidings_testkit::conformance::reconnect_after_broker_restart(&Restartable),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_of_10000_events_loses_nothing() {
    let _server = SERVER.lock().await;
    let Some(transport) =
        common::connect(common::config().publish_timeout(Duration::from_secs(2))).await
    else {
        return;
    };
    let outcome = faults::stream_through_fault(
        Arc::new(transport),
        MemoryInbox::new(100_000),
        10_000,
        || async {
            kill_server().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            start_server().await;
        },
    )
    .await;
    eprintln!("kill -9 nats-server: {outcome}");
    outcome.assert_nothing_lost();
}
