//! What the tests of `tidings serve` share: a running server, and an HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use tidings::redis::RedisConfig;
use tidings_testkit::process::{Guarded, Lines};

/// How long the server may take to exit after SIGTERM (its shutdown deadline is 10 s).
const EXIT_LIMIT: Duration = Duration::from_secs(30);

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

    /// `POST /v1/events` of `event` in structured mode, ready to send (or to add a token).
    pub fn post_event(&self, http: &reqwest::Client, event: &Value) -> reqwest::RequestBuilder {
        http.post(self.url("/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .json(event)
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.child
            .terminate(EXIT_LIMIT, "tidings serve after SIGTERM")
            .code()
    }
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
