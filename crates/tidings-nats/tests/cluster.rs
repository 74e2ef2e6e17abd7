//! A three-node JetStream cluster on loopback ports, started by the test: streams replicated
//! three times, one node killed with `SIGKILL` while 10,000 events flow, nothing lost.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::inbox::MemoryInbox;
use tidings_nats::{NatsConfig, NatsTransport};
use tidings_testkit::faults;
use tidings_testkit::process::free_port;

/// How long one cluster may take to elect a JetStream leader and know its three peers.
const FORMATION: Duration = Duration::from_secs(45);
/// Clusters started before giving up: a port taken between choosing and binding it, or a
/// cluster slow to form on a loaded machine, gets a fresh cluster on fresh ports.
const STARTS: usize = 3;

/// Three nats-servers routed to each other, each logging to a file; killed when dropped.
struct Cluster {
    nodes: Vec<Option<tokio::process::Child>>,
    client_ports: Vec<u16>,
    logs: Vec<PathBuf>,
}

impl Cluster {
    async fn start(dir: &Path) -> Option<Self> {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        let mut logs = Vec::new();
        for n in 0..3 {
            let routes: Vec<String> = cluster_ports
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != n)
                .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                .collect();
            let log = dir.join(format!("node{n}.log"));
            let child = tokio::process::Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &client_ports[n].to_string()])
                .args(["-n", &format!("node{n}"), "-js", "-sd"])
                .arg(dir.join(format!("node{n}")))
                .arg("-l")
                .arg(&log)
                .args(["--cluster_name", "tidings-test"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", cluster_ports[n]),
                ])
                .args(["--routes", &routes.join(",")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match child {
                Ok(child) => nodes.push(Some(child)),
                Err(error) => {
                    tidings_testkit::service::unavailable("nats-server (the binary)", &error);
                    return None;
                }
            }
            logs.push(log);
        }
        Some(Self {
            nodes,
            client_ports,
            logs,
        })
    }

    /// Starts clusters until one forms (at most [`STARTS`]); `None` when nats-server is not
    /// installed outside CI. Panics with the nodes' logs when none forms.
    async fn start_formed(dir: &Path) -> Option<(Self, NatsTransport)> {
        let mut failures = Vec::new();
        for start in 0..STARTS {
            let run = dir.join(format!("start{start}"));
            std::fs::create_dir_all(&run).expect("a directory for the cluster");
            let mut cluster = Self::start(&run).await?;
            match cluster.connect().await {
                Ok(transport) => return Some((cluster, transport)),
                Err(why) => {
                    eprintln!("cluster start {start} did not form: {why}");
                    failures.push(format!("start {start}: {why}\n{}", cluster.log_tails()));
                    for node in 0..3 {
                        cluster.kill(node).await;
                    }
                }
            }
        }
        panic!(
            "no cluster formed in {STARTS} starts:\n{}",
            failures.join("\n")
        );
    }

    fn url(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn config(&self) -> NatsConfig {
        NatsConfig::new(self.url())
            .replicas(3)
            .ack_wait(Duration::from_secs(3))
            .publish_timeout(Duration::from_secs(3))
    }

    /// Connects once the cluster has a JetStream leader and takes replicated streams; the
    /// last error when it does not within [`FORMATION`], or at once when a node exited.
    async fn connect(&mut self) -> Result<NatsTransport, String> {
        let deadline = Instant::now() + FORMATION;
        loop {
            let error = match NatsTransport::connect(self.config()).await {
                Ok(transport) => return Ok(transport),
                Err(error) => error.to_string(),
            };
            for (n, node) in self.nodes.iter_mut().enumerate() {
                if let Some(Ok(Some(status))) = node.as_mut().map(|child| child.try_wait()) {
                    return Err(format!("node{n} exited ({status}); last error: {error}"));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not formed in {FORMATION:?}: {error}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The last lines of each node's log.
    fn log_tails(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("--- {}\n{tail}", path.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].take() {
            child.kill().await.expect("SIGKILL a node");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_10000_events_flow_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let Some((mut cluster, transport)) = Cluster::start_formed(dir.path()).await else {
        return;
    };
    // The first node: the one the client most likely talks to.
    let outcome = faults::stream_through_fault(
        Arc::new(transport),
        MemoryInbox::new(100_000),
        10_000,
        || cluster.kill(0),
    )
    .await;
    eprintln!("3-node cluster, one node killed: {outcome}");
    outcome.assert_nothing_lost();
}
