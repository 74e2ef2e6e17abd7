//! What the NATS tests share: the server's URL and a transport on it.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tidings_nats::{NatsConfig, NatsTransport};

/// The server under test: `NATS_URL`, or the machine's NATS.
pub fn url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| NatsConfig::DEFAULT_URL.to_owned())
}

/// Settings for tests: consumers that delete themselves a while after their last client left,
/// and a short ack wait so that what a dropped stream held comes back quickly.
pub fn config() -> NatsConfig {
    NatsConfig::new(url())
        .client_name("tidings-tests")
        .ack_wait(Duration::from_secs(3))
        .inactive_threshold(Duration::from_secs(120))
}

/// A transport on the server under test, or `None` (outside CI) when it is unreachable.
pub async fn connect(config: NatsConfig) -> Option<NatsTransport> {
    match NatsTransport::connect(config).await {
        Ok(transport) => Some(transport),
        Err(error) => {
            tidings_testkit::service::unavailable("NATS with JetStream", &error);
            None
        }
    }
}
