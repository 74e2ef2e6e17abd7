//! `tidings tail`: what it prints, and that it leaves no subscription behind.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tidings::envelope::Envelope;
use tidings::transport::{Publisher as _, Transport};
use tidings_testkit::process::{Guarded, Lines};

const LIMIT: Duration = Duration::from_secs(30);

/// A running `tidings tail`, once it has subscribed: its output and its subscription's name.
struct Tail {
    child: Guarded,
    stdout: Lines,
    subscription: String,
}

impl Tail {
    fn start(args: &[&str]) -> Self {
        let mut child = Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_tidings"))
                .arg("tail")
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let stdout = Lines::read(child.0.stdout.take().expect("stdout"));
        let stderr = Lines::read(child.0.stderr.take().expect("stderr"));
        let banner = stderr.find(LIMIT, "the `tailing` banner", |l| l.starts_with("tailing "));
        let subscription = banner
            .split(" as subscription ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the banner names the subscription")
            .to_owned();
        Self {
            child,
            stdout,
            subscription,
        }
    }
}

fn order(ty: &str, id: &str) -> Envelope {
    Envelope::new("checkout", ty)
        .with_id(id)
        .with_subject("o_1")
        .with_tenant("acme")
        .with_json_data(&serde_json::json!({ "order_id": "o_1", "total": 12.5 }))
        .expect("json")
}

/// Publishes an event of type `ty`, which the tail matched, and says whether its
/// subscription got a copy: it must not, once the tail is gone.
async fn kept_a_copy(transport: &dyn Transport, subscription: &str, ty: &str) -> bool {
    transport
        .publish(&order(ty, "after-the-tail"))
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backlog = transport.backlog(subscription).await.expect("backlog");
    backlog.is_some_and(|b| b.depth > 0)
}

/// On the embedded store, `--json`: one CloudEvent per line for each matching event, none
/// for the others; SIGTERM ends it with 0 and its subscription is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_matching_events_as_json_lines_and_removes_its_subscription() {
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("tidings.db");
    let mut tail = Tail::start(&[
        "order.#",
        "--json",
        "--store",
        store.to_str().expect("utf-8"),
    ]);
    let transport =
        tidings::sqlite::SqliteTransport::open(tidings::sqlite::SqliteConfig::new(&store))
            .await
            .expect("store");
    for event in [
        order("order.created", "e1"),
        order("payment.failed", "e2"),
        order("order.paid", "e3"),
    ] {
        transport.publish(&event).await.expect("publish");
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let line = tail.stdout.next_within(LIMIT).expect("a line per event");
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(event["specversion"], "1.0", "{line}");
        assert_eq!(event["tenantid"], "acme", "{line}");
        assert_eq!(event["data"]["total"], 12.5, "{line}");
        seen.push(event["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(seen, ["e1", "e3"]);
    assert_eq!(
        tail.stdout.next_within(Duration::from_millis(500)),
        None,
        "nothing for payment.failed"
    );
    let status = tail.child.terminate(LIMIT, "tidings tail after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        !kept_a_copy(&transport, &tail.subscription, "order.created").await,
        "the temporary subscription is gone"
    );
}

/// On Redis, readable lines, `--count 2`: it prints the two events (type, id, context, data)
/// and exits 0 by itself, removing its subscription from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_on_a_broker_stops_after_count_and_removes_its_subscription() {
    let url = common::redis_url();
    let transport =
        match tidings::redis::RedisTransport::connect(tidings::redis::RedisConfig::new(&url)).await
        {
            Ok(transport) => transport,
            Err(error) => return tidings_testkit::service::unavailable("Redis", &error),
        };
    let topic = format!("tail{:08x}", fastrand::u32(..));
    let mut tail = Tail::start(&[&format!("{topic}.*"), "--count", "2", "--url", &url]);
    for id in ["r1", "r2"] {
        transport
            .publish(&order(&format!("{topic}.created"), id))
            .await
            .expect("publish");
    }
    let status = tail.child.wait(LIMIT, "tidings tail --count 2");
    assert_eq!(status.code(), Some(0));
    let mut printed = Vec::new();
    while let Some(line) = tail.stdout.next_within(Duration::from_secs(1)) {
        printed.push(line);
    }
    let printed = printed.join("\n");
    for expected in [
        format!("{topic}.created  id=r1  source=checkout  subject=o_1  tenant=acme"),
        format!("{topic}.created  id=r2"),
        r#"{"order_id":"o_1","total":12.5}"#.to_owned(),
    ] {
        assert!(printed.contains(&expected), "`{expected}` in:\n{printed}");
    }
    let probe = tidings::redis::RedisTransport::connect(tidings::redis::RedisConfig::new(&url))
        .await
        .expect("connect");
    assert!(
        !kept_a_copy(&probe, &tail.subscription, &format!("{topic}.created")).await,
        "the temporary subscription is gone"
    );
}
