//! A broker password never shows: not in logs (ours and the client library's, at TRACE),
//! not in errors, not in `Debug` output, through a connection, a reconnection and a refused
//! login.
//!
//! The test makes a user of its own on the machine's RabbitMQ so that the password is a
//! string nothing else prints, and captures every log line of the process.

mod common;

use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber};
use tidings_amqp::{AmqpConfig, AmqpTransport, Error};
use tidings_testkit::conformance::spec;
use tidings_testkit::logs::Captured;
use tidings_testkit::{Namespace, recv};

const USER: &str = "tidings-secret-test";
const PASSWORD: &str = "S3cr3t-tidings-P4ss";
const WRONG: &str = "Wr0ng-tidings-P4ss";

fn with_password(password: &str) -> String {
    let mut url = url::Url::parse(&common::url()).expect("broker url");
    url.set_username(USER).expect("user");
    url.set_password(Some(password)).expect("password");
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_logs_errors_or_debug_output() {
    if common::connect(common::config()).await.is_none() {
        return;
    }
    let logs = Captured::install();

    let _ = tokio::process::Command::new("rabbitmqctl")
        .args(["delete_user", USER])
        .output()
        .await;
    common::rabbitmqctl(&["add_user", USER, PASSWORD]).await;
    common::rabbitmqctl(&["set_permissions", "-p", "/", USER, ".*", ".*", ".*"]).await;

    let config = AmqpConfig::new(with_password(PASSWORD))
        .connection_name("tidings-secrets")
        .queue_expires(Duration::from_secs(120))
        .publish_timeout(Duration::from_secs(10));
    let transport = AmqpTransport::connect(config.clone())
        .await
        .expect("connect as the test user");
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "audit", &["#"]))
        .await
        .expect("subscribe");
    transport
        .publish(&Envelope::new(ns.as_str(), ns.topic("order.created")))
        .await
        .expect("publish");
    recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered")
        .ack()
        .await
        .expect("ack");

    // The broker drops the connection: tidings reconnects, and says so in its logs.
    common::rabbitmqctl(&["close_all_connections", "secrets test"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    transport
        .publish(&Envelope::new(ns.as_str(), ns.topic("order.paid")))
        .await
        .expect("publish after the reconnection");
    recv(&mut stream, Duration::from_secs(20))
        .await
        .expect("delivered after the reconnection")
        .ack()
        .await
        .expect("ack");

    let refused = AmqpTransport::connect(AmqpConfig::new(with_password(WRONG)))
        .await
        .expect_err("a wrong password is refused");
    assert!(
        matches!(refused, Error::AccessRefused { .. }),
        "{refused:?}"
    );
    assert!(
        !refused.is_transient(),
        "retrying a wrong password cannot help"
    );
    let shown = format!(
        "{refused} {refused:?} {config:?} {transport:?} {}",
        config.url()
    );
    common::rabbitmqctl(&["delete_user", USER]).await;
    drop(stream);
    transport.close().await.expect("close");

    let logs = logs.text();
    assert!(
        logs.contains("reconnect"),
        "the capture works: the reconnection was logged\n{logs}"
    );
    for secret in [PASSWORD, WRONG] {
        assert!(!shown.contains(secret), "`{secret}` shown in: {shown}");
        assert!(!logs.contains(secret), "`{secret}` logged");
    }
    assert!(shown.contains("***"), "the redaction is visible: {shown}");
}
