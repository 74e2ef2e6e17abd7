//! `tidings tail`: what it prints, and that it leaves no subscription behind.

mod common;

use std::time::Duration;

use common::Tail;
use serde_json::Value;
use std::process::Command;
use tidings::envelope::Envelope;
use tidings::transport::{Publisher as _, Transport};

const LIMIT: Duration = Duration::from_secs(30);

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

/// A tail killed with SIGKILL cannot remove its subscription: on RabbitMQ its queues expire
/// once unread for `--expire-after`. While the tail lives, longer than that, both stay (the
/// dead-letter queue, which nothing consumes, is declared again in time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tail_leaves_no_queues_on_rabbitmq() {
    let url = std::env::var("RABBITMQ_URL")
        .unwrap_or_else(|_| tidings::amqp::AmqpConfig::DEFAULT_URL.to_owned());
    let transport =
        match tidings::amqp::AmqpTransport::connect(tidings::amqp::AmqpConfig::new(&url)).await {
            Ok(transport) => transport,
            Err(error) => return tidings_testkit::service::unavailable("RabbitMQ", &error),
        };
    let queues = || {
        let out = tidings_testkit::process::output(
            Command::new("rabbitmqctl").args([
                "list_queues",
                "name",
                "--quiet",
                "--no-table-headers",
            ]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "rabbitmqctl list_queues: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Its queue and its dead-letter queue.
    killed_tail_expires(&transport, &url, 2, async |name: &str| {
        queues().lines().filter(|q| q.contains(name)).count()
    })
    .await;
}

/// The same on NATS: the killed tail's consumer goes once unread for `--expire-after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tail_leaves_no_consumer_on_nats() {
    let config = tidings::nats::NatsConfig::from_env();
    let url = config.url().expose().to_owned();
    let transport = match tidings::nats::NatsTransport::connect(config).await {
        Ok(transport) => transport,
        Err(error) => return tidings_testkit::service::unavailable("NATS", &error),
    };
    let probe = transport.clone();
    // Its consumer.
    killed_tail_expires(&transport, &url, 1, async |name: &str| {
        usize::from(probe.backlog(name).await.expect("backlog").is_some())
    })
    .await;
}

/// Starts a tail of its own topic with `--expire-after 2s` on `url`; checks that it prints
/// what is published, that its subscription (the `parts` that `present` counts) outlives
/// the expiry while it runs, then kills it with SIGKILL and waits for the broker to remove
/// every part.
async fn killed_tail_expires(
    transport: &dyn Transport,
    url: &str,
    parts: usize,
    present: impl AsyncFn(&str) -> usize,
) {
    let topic = format!("tail{:08x}", fastrand::u32(..));
    let mut tail = Tail::start(&[&format!("{topic}.*"), "--url", url, "--expire-after", "2s"]);
    transport
        .publish(&order(&format!("{topic}.created"), &format!("{topic}-1")))
        .await
        .expect("publish");
    // Ids of their own: JetStream drops an id it saw in the last two minutes.
    tail.event(&format!("{topic}-1"));
    // Twice the expiry, read all along: nothing expires.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        present(&tail.subscription).await,
        parts,
        "a live tail keeps its subscription"
    );
    transport
        .publish(&order(&format!("{topic}.created"), &format!("{topic}-2")))
        .await
        .expect("publish");
    tail.event(&format!("{topic}-2"));

    tail.child.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while present(&tail.subscription).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker removes the killed tail's subscription"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
