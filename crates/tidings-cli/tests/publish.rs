//! `tidings publish`: one event from the command line reaches a subscription on the
//! machine's Redis; bad input is one line and exit code 2.

use std::process::{Command, Output};
use std::time::Duration;

use tidings::redis::{RedisConfig, RedisTransport};
use tidings::transport::Subscriber;
use tidings_testkit::{Namespace, conformance::spec, recv};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| RedisConfig::DEFAULT_URL.to_owned())
}

fn publish(args: &[&str], stdin: &str) -> Output {
    tidings_testkit::process::output_with_input(
        Command::new(env!("CARGO_BIN_EXE_tidings"))
            .arg("publish")
            .args(args),
        stdin.as_bytes(),
        Duration::from_secs(60),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_standard_input_reaches_the_subscription() {
    let transport = match RedisTransport::connect(RedisConfig::new(redis_url())).await {
        Ok(transport) => transport,
        Err(error) => return tidings_testkit::service::unavailable("Redis", &error),
    };
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "cli", &["order.*"]))
        .await
        .expect("subscribe");
    let ty = ns.topic("order.created");
    let out = publish(
        &[
            "--url",
            &redis_url(),
            "--type",
            &ty,
            "--data",
            "-",
            "--subject",
            "o_1",
            "--tenant",
            "acme",
            "--correlation-id",
            "req-9",
            "--id",
            "evt-cli-1",
        ],
        "{\"order_id\": \"o_1\", \"total\": 12.5}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("published evt-cli-1"));
    let got = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered");
    let envelope = got.envelope().unwrap();
    assert_eq!(envelope.ty, ty);
    assert_eq!(envelope.source, "tidings-cli");
    assert_eq!(envelope.subject.as_deref(), Some("o_1"));
    assert_eq!(envelope.extensions.tenantid.as_deref(), Some("acme"));
    assert_eq!(envelope.correlation_id(), "req-9");
    assert_eq!(
        envelope.data_as::<serde_json::Value>().unwrap()["total"],
        12.5
    );
    got.ack().await.unwrap();
}

#[test]
fn data_that_is_not_json_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let out = publish(
        &[
            "--store",
            store.to_str().unwrap(),
            "--type",
            "order.created",
            "--data",
            "-",
        ],
        "total: 12.5",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not JSON"), "{stderr}");
}

/// The variables RabbitMQ users already set tune any amqp:// URL; a malformed one is named in
/// one line, before anything is sent.
#[test]
fn a_malformed_rabbitmq_variable_is_one_line_and_exit_code_2() {
    let out = tidings_testkit::process::output(
        Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args([
                "publish",
                "--url",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "--type",
                "order.created",
            ])
            .env("RABBITMQ_PREFETCH", "lots"),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("RABBITMQ_PREFETCH") && stderr.contains("lots"),
        "{stderr}"
    );
}
