//! What the tests of `tidings serve` share: a running server, and an HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use tidings::redis::RedisConfig;
use tidings_testkit::process::{Guarded, Lines};

/// How long the server may take to exit after SIGTERM (its shutdown deadline is 10 s).
const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// Runs `tidings args...` to its end (at most a minute).
pub fn tidings(args: &[&str]) -> std::process::Output {
    tidings_testkit::process::output(
        Command::new(env!("CARGO_BIN_EXE_tidings")).args(args),
        Duration::from_secs(60),
    )
}

/// What a run printed, standard output then standard error: for assertions and their
/// messages.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An HTTP client whose requests fail after 10 s instead of waiting for ever.
pub fn http() -> reqwest::Client {
    // The CLI builds reqwest's rustls without a provider: tests install ring, as it does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The machine's Redis, or `REDIS_URL`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| RedisConfig::DEFAULT_URL.to_owned())
}

/// A running `tidings serve` and its address; killed when dropped.
pub struct Served {
    child: Guarded,
    base: String,
    /// What it printed after `listening on`.
    pub lines: Lines,
}

impl Served {
    /// On the machine's Redis, with `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_at(&redis_url(), extra)
    }

    /// On the transport of `url`, with `extra` flags.
    pub fn start_at(url: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0", "--url", url];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// `tidings serve` with exactly `args`; returns once it listens.
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// `tidings serve` with exactly `args` and these environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_tidings"))
                .arg("serve")
                .args(args)
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let lines = Lines::read(child.0.stdout.take().expect("stdout"));
        let line = lines.find(Duration::from_secs(30), "`listening on`", |line| {
            line.trim().starts_with("listening on ")
        });
        let base = line.trim()["listening on ".len()..].to_owned();
        Self { child, base, lines }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The body of `GET path`, which must answer 2xx.
    pub async fn get_text(&self, http: &reqwest::Client, path: &str) -> String {
        let answer = http.get(self.url(path)).send().await.expect("GET");
        assert!(
            answer.status().is_success(),
            "GET {path}: {}",
            answer.status()
        );
        answer.text().await.expect("body")
    }

    /// The JSON body of `GET path`, which must answer 2xx.
    pub async fn get_json(&self, http: &reqwest::Client, path: &str) -> Value {
        serde_json::from_str(&self.get_text(http, path).await).expect("JSON")
    }

    /// `POST /v1/events` of `event` in structured mode, ready to send (or to add a token).
    pub fn post_event(&self, http: &reqwest::Client, event: &Value) -> reqwest::RequestBuilder {
        http.post(self.url("/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .json(event)
    }

    /// `POST /v1/events:batch` of `events` (a JSON array), ready to send.
    pub fn post_batch(&self, http: &reqwest::Client, events: &Value) -> reqwest::RequestBuilder {
        http.post(self.url("/v1/events:batch"))
            .header("content-type", "application/cloudevents-batch+json")
            .json(events)
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.child
            .terminate(EXIT_LIMIT, "tidings serve after SIGTERM")
            .code()
    }
}

/// Writes `dir/tidings.toml` for a server on the embedded store in `dir`, on any port, with
/// one webhook subscription, `notify` on `order.*`, delivering to the receiver on `port`
/// signed with `secret`; `serve` and `webhook` are more lines for `[serve]` and for the
/// webhook. Returns the file's path.
pub fn webhook_config(dir: &Path, port: u16, secret: &str, serve: &str, webhook: &str) -> PathBuf {
    let config = dir.join("tidings.toml");
    let store = dir.join("tidings.db");
    std::fs::write(
        &config,
        format!(
            r#"
store = "{store}"

[serve]
listen = "127.0.0.1:0"
{serve}

[[serve.webhooks]]
name = "notify"
patterns = ["order.*"]
url = "http://127.0.0.1:{port}/events"
secret = "{secret}"
{webhook}
"#,
            store = store.display(),
        ),
    )
    .expect("config");
    config
}

/// The Python endpoint, and what it printed.
pub struct Receiver {
    _child: Guarded,
    lines: Lines,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Every request so far, in arrival order.
    pub seen: Vec<Value>,
}

impl Receiver {
    /// Starts `tests/webhook_receiver.py` with `python`, verifying with `secret`.
    pub fn start(python: &str, secret: &str) -> Self {
        let mut child = Guarded::spawn(
            Command::new(python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/webhook_receiver.py"
                ))
                .arg(secret)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let lines = Lines::read(child.0.stdout.take().expect("stdout"));
        let first = lines.find(Duration::from_secs(30), "the receiver's port", |_| true);
        let port = serde_json::from_str::<Value>(&first).expect("json")["port"]
            .as_u64()
            .expect("port") as u16;
        Self {
            _child: child,
            lines,
            port,
            seen: Vec::new(),
        }
    }

    /// Reads requests until `done` holds for them, for at most `limit`.
    pub fn wait_until(&mut self, limit: Duration, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = std::time::Instant::now() + limit;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // A blocking wait: off the runtime's worker, so that other tasks run meanwhile.
            let next = tokio::task::block_in_place(|| self.lines.next_within(left));
            let Some(line) = next else {
                panic!(
                    "{what}: not within {limit:?}; requests so far: {:#?}",
                    self.seen
                );
            };
            self.seen
                .push(serde_json::from_str(&line).expect("a JSON line"));
        }
    }

    /// The requests for event `id`, in order.
    pub fn of(&self, id: &str) -> Vec<&Value> {
        self.seen.iter().filter(|r| r["id"] == id).collect()
    }
}

/// A running `tidings tail`, once it has subscribed: its output and its subscription's name.
pub struct Tail {
    pub child: Guarded,
    pub stdout: Lines,
    /// Read all along: a pipe left unread would fail the tail's next log line.
    pub stderr: Lines,
    pub subscription: String,
}

impl Tail {
    pub fn start(args: &[&str]) -> Self {
        let mut child = Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_tidings"))
                .arg("tail")
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let stdout = Lines::read(child.0.stdout.take().expect("stdout"));
        let stderr = Lines::read(child.0.stderr.take().expect("stderr"));
        let banner = stderr.find(Duration::from_secs(30), "the `tailing` banner", |l| {
            l.starts_with("tailing ")
        });
        let subscription = banner
            .split(" as subscription ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the banner names the subscription")
            .to_owned();
        Self {
            child,
            stdout,
            stderr,
            subscription,
        }
    }

    /// Waits (30 s at most) for the line printed about the event with id `id`.
    ///
    /// # Panics
    ///
    /// When it is not printed in time, with what the tail wrote on standard error.
    pub fn event(&self, id: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let wanted = format!("id={id}");
        while let Some(line) = self
            .stdout
            .next_within(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if line.contains(&wanted) {
                return line;
            }
        }
        panic!(
            "the tail printed no event {id} within 30 s; its standard error:\n{}",
            self.stderr.drain().join("\n")
        )
    }
}

/// Three events for a webhook whose endpoint closes every connection without answering, on
/// the transport that `transport` (a line of the configuration file) names: each is tried
/// once and waits for its retry, and the backlog shows the three, with the oldest's age where
/// the transport knows it (`oldest_age`).
pub async fn stuck_webhook_shows_its_backlog(transport: &str, oldest_age: bool) {
    // The port stays bound for the whole test: a port closed again could be taken by another
    // test's server meanwhile (one answered 404 in a CI run, and the events were rejected).
    let endpoint = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = endpoint.local_addr().unwrap().port();
    // Ends with the test's runtime.
    tokio::spawn(async move {
        while let Ok((connection, _)) = endpoint.accept().await {
            drop(connection);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{transport}
[serve]
listen = "127.0.0.1:0"
[[serve.webhooks]]
name = "stuck"
patterns = ["order.*"]
url = "http://127.0.0.1:{port}/events"
secret = "s3cret"
backoff = "10m"
"#
        ),
    )
    .unwrap();
    let served = Served::start_with(&["--config", config.to_str().unwrap()]);
    let http = http();
    for i in 0..3 {
        let event = serde_json::json!({
            "specversion": "1.0", "id": format!("stuck-{i}"), "source": "s",
            "type": "order.created",
        });
        let answer = served.post_event(&http, &event).send().await.unwrap();
        assert_eq!(answer.status(), 202);
    }
    // Each is tried once (the connection closes) and waits for its retry in ten minutes.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stuck = loop {
        let stats = served.get_json(&http, "/v1/stats").await;
        let stuck = stats["subscriptions"][0].clone();
        if stuck["retried"] == 3 {
            break stuck;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three retries: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stuck["backlog"]["depth"], 3, "{stuck}");
    if oldest_age {
        assert!(
            stuck["backlog"]["oldest_age_s"].as_f64().unwrap() >= 0.0,
            "{stuck}"
        );
    }
    assert!(
        stuck["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "the failure names the endpoint: {stuck}"
    );
    let text = served.get_text(&http, "/metrics").await;
    assert!(
        text.contains(r#"tidings_queue_depth{subscription="stuck"} 3"#),
        "{text}"
    );
    assert_eq!(
        text.contains(r#"tidings_queue_oldest_age_seconds{subscription="stuck"}"#),
        oldest_age,
        "{text}"
    );
    assert_eq!(served.terminate(), Some(0));
}
