//! What the Redis tests share: the server's URL and a transport on it.

#![allow(dead_code, unreachable_pub)]

use std::sync::LazyLock;
use std::time::Duration;

use tidings_redis::{RedisConfig, RedisTransport};

/// The server under test: `REDIS_URL`, or the machine's Redis.
pub fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| RedisConfig::DEFAULT_URL.to_owned())
}

/// One key prefix per test process, so that runs never see each other's bindings.
static PREFIX: LazyLock<String> =
    LazyLock::new(|| format!("tidings-test-{:08x}", fastrand::u32(..)));

/// This process's key prefix.
pub fn prefix() -> &'static str {
    PREFIX.as_str()
}

/// Settings for tests: a key prefix of this run's own, and a short lease so that what a
/// dropped stream held comes back quickly.
pub fn config() -> RedisConfig {
    RedisConfig::new(url())
        .prefix(PREFIX.as_str())
        .lease(Duration::from_secs(3))
        .block(Duration::from_millis(200))
}

/// A transport on the server under test, or `None` (outside CI) when it is unreachable.
pub async fn connect(config: RedisConfig) -> Option<RedisTransport> {
    match RedisTransport::connect(config).await {
        Ok(transport) => Some(transport),
        Err(error) => {
            tidings_testkit::service::unavailable("Redis", &error);
            None
        }
    }
}
