use std::path::{Path, PathBuf};
use std::time::Duration;

/// How hard a commit tries to survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk when publish returns, power loss included.
    /// The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: faster; a commit survives the process crashing, but a power loss
    /// can roll back the last commits (WAL + NORMAL).
    Normal,
}

/// Settings of a [`SqliteTransport`](crate::SqliteTransport).
///
/// ```
/// use std::time::Duration;
/// use tidings_sqlite::SqliteConfig;
///
/// let config = SqliteConfig::new("data/events.db")
///     .lease(Duration::from_secs(60))
///     .retention(Duration::from_secs(24 * 3600));
/// assert_eq!(config.path().to_str(), Some("data/events.db"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteConfig {
    pub(crate) path: PathBuf,
    pub(crate) durability: Durability,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) retention: Duration,
    pub(crate) max_size: Option<u64>,
    pub(crate) require_route: bool,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_batch: usize,
}

impl SqliteConfig {
    /// The default file name, under the working directory.
    pub const DEFAULT_PATH: &'static str = "tidings.db";

    /// A store in the file at `path` (created with its directory if missing), with defaults:
    /// full durability, a 30 s lease, acked events deleted at once.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::Full,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            retention: Duration::ZERO,
            max_size: None,
            require_route: false,
            busy_timeout: Duration::from_secs(5),
            max_batch: 1024,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a delivery stays reserved for its consumer (the visibility timeout). A live
    /// consumer renews the lease of what it holds every third of this; a consumer that dies
    /// (even by `kill -9`) lets its deliveries come back after at most this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// How often an idle consumer looks for events published by other processes. Events
    /// published by this process wake consumers at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long acked events are kept before they are deleted. Default zero: deleted on ack.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Caps the file's size. When it is full, publishes fail with a clear error and
    /// everything already stored stays deliverable.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Fail publishes that no subscription is bound to instead of dropping them.
    pub fn require_route(mut self, yes: bool) -> Self {
        self.require_route = yes;
        self
    }

    /// How long a write waits for another process holding the database's write lock.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Most operations committed together in one transaction (group commit).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
}

impl Default for SqliteConfig {
    /// `tidings.db` in the working directory.
    fn default() -> Self {
        Self::new(Self::DEFAULT_PATH)
    }
}
