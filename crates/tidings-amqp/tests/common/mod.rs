//! What the RabbitMQ tests share: the broker's URL and a transport on it.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tidings_amqp::{AmqpConfig, AmqpTransport};

/// The broker under test: `RABBITMQ_URL`, or the machine's RabbitMQ.
pub fn url() -> String {
    std::env::var("RABBITMQ_URL").unwrap_or_else(|_| AmqpConfig::DEFAULT_URL.to_owned())
}

/// Settings for tests: queues that delete themselves a while after their last consumer left,
/// so that test runs do not pile up queues on a shared broker.
pub fn config() -> AmqpConfig {
    AmqpConfig::new(url())
        .connection_name("tidings-tests")
        .queue_expires(Duration::from_secs(120))
}

/// A transport on the broker under test, or `None` (outside CI) when it is unreachable.
pub async fn connect(config: AmqpConfig) -> Option<AmqpTransport> {
    match AmqpTransport::connect(config).await {
        Ok(transport) => Some(transport),
        Err(error) => {
            tidings_testkit::service::unavailable("RabbitMQ", &error);
            None
        }
    }
}

/// Runs `rabbitmqctl <args>`, failing the test if it fails.
pub async fn rabbitmqctl(args: &[&str]) {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl runs (the RabbitMQ tests need it on PATH)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops the broker's application (connections are closed, the port refuses new ones).
pub async fn stop_broker() {
    rabbitmqctl(&["stop_app"]).await;
}

/// Starts the broker's application and waits until it accepts connections again.
pub async fn start_broker() {
    rabbitmqctl(&["start_app"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if AmqpTransport::connect(config()).await.is_ok() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "RabbitMQ did not accept connections within 60 s of start_app"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
