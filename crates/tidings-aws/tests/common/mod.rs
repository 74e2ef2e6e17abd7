//! What the AWS tests share: a moto server and transports on it.
//!
//! The server is `AWS_ENDPOINT_URL` when set (`.ci/run` starts one and sets it); otherwise
//! this process starts its own `moto_server` on a free loopback port, found in
//! `TIDINGS_MOTO`, beside `TIDINGS_PYTHON`, in CI's virtual environment
//! (`~/.cache/tidings/venv`) or on `PATH`. It stops when the process ends. Only loopback
//! endpoints are accepted: these tests never talk to AWS itself.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use tidings_aws::{AwsConfig, AwsTransport};

/// One name prefix per test process, so that runs on one server never see each other.
static RUN: LazyLock<String> = LazyLock::new(|| format!("t{:06x}", fastrand::u32(..0xFF_FFFF)));

/// This process's name prefix.
pub fn run() -> &'static str {
    RUN.as_str()
}

/// The moto server's endpoint, or why there is none.
static ENDPOINT: LazyLock<Result<String, String>> = LazyLock::new(endpoint);

fn endpoint() -> Result<String, String> {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        let host = url::Url::parse(&url)
            .map_err(|e| format!("AWS_ENDPOINT_URL `{url}`: {e}"))?
            .host_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]"),
            "AWS_ENDPOINT_URL must be a loopback address for these tests, not `{host}`"
        );
        return Ok(url);
    }
    let program = moto_server().ok_or("no moto_server found (pip install 'moto[server]')")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // The shell stops the server once this process's end of its stdin closes, that is
    // when this process exits, however it exits.
    let script = format!(
        "'{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & server=$!; cat >/dev/null; kill $server",
        program.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    // Its stdin stays open for the life of the process.
    std::mem::forget(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{} did not listen on {port}", program.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(format!("http://127.0.0.1:{port}"))
}

fn moto_server() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("TIDINGS_MOTO") {
        candidates.push(PathBuf::from(path));
    }
    if let Some(python) = std::env::var_os("TIDINGS_PYTHON") {
        candidates.push(PathBuf::from(python).with_file_name("moto_server"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/tidings/venv/bin/moto_server"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("moto_server")));
    }
    candidates.into_iter().find(|path| path.is_file())
}

/// The endpoint, or `None` (outside CI) when there is no moto server.
pub fn moto() -> Option<String> {
    match &*ENDPOINT {
        Ok(url) => Some(url.clone()),
        Err(why) => {
            tidings_testkit::service::unavailable("a moto server", why);
            None
        }
    }
}

/// Settings for tests on `endpoint`: this run's own topic, bus and queue prefix, dummy
/// credentials, a short lease and short polls.
pub fn config_at(endpoint: &str) -> AwsConfig {
    AwsConfig::new()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials("testing", "testing")
        .topic(format!("{}-events", run()))
        .event_bus(format!("{}-bus", run()))
        .queue_prefix(format!("{}-", run()))
        .lease(Duration::from_secs(5))
        .wait(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
}

/// [`config_at`] the moto server, or `None` (outside CI) when there is none.
pub fn config() -> Option<AwsConfig> {
    moto().map(|endpoint| config_at(&endpoint))
}

/// A transport with `config`; panics when moto refuses it.
pub async fn connect(config: AwsConfig) -> AwsTransport {
    AwsTransport::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connecting to moto: {e}"))
}
