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

/// How long one `rabbitmqctl` command may take (`start_app` of a broker with many queues
/// takes a few seconds; a minute means it hangs).
const RABBITMQCTL_LIMIT: Duration = Duration::from_secs(90);

/// Runs `rabbitmqctl <args>`, failing the test if it fails or hangs.
pub async fn rabbitmqctl(args: &[&str]) {
    let running = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tidings_testkit::within(
        RABBITMQCTL_LIMIT,
        &format!("rabbitmqctl {}", args.join(" ")),
        running,
    )
    .await
    .expect("rabbitmqctl runs (the RabbitMQ tests need it on PATH)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops the broker's application (connections are closed, the port refuses new ones).
///
/// Keep the returned guard until [`start_broker`] ran: if the test fails in between, the
/// guard starts the broker again, so that one failure does not fail every test after it.
#[must_use = "the guard restarts the broker if the test fails while it is stopped"]
pub async fn stop_broker() -> Stopped {
    rabbitmqctl(&["stop_app"]).await;
    Stopped { started: false }
}

/// Starts the broker's application and waits until it accepts connections again.
pub async fn start_broker(mut stopped: Stopped) {
    rabbitmqctl(&["start_app"]).await;
    stopped.started = true;
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

/// A stopped broker application; started again on drop unless [`start_broker`] did.
#[derive(Debug)]
pub struct Stopped {
    started: bool,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        eprintln!("the test ended with RabbitMQ stopped; starting it again");
        // A blocking call in a destructor: this runs only when a test already failed.
        let started = std::process::Command::new("timeout")
            .args(["90", "rabbitmqctl", "start_app"])
            .status();
        if !matches!(started, Ok(status) if status.success()) {
            eprintln!("could not start RabbitMQ again: {started:?}");
        }
    }
}
