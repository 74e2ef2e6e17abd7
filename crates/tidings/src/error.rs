use tidings_core::naming::NamingError;
use tidings_core::topic::PatternError;
use tidings_core::transport::TransportError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong using a [`Bus`](crate::Bus).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An event type breaks the bus's naming convention.
    #[error(transparent)]
    Naming(#[from] NamingError),
    /// A topic pattern is invalid.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// An event could not be serialized.
    #[error("could not serialize event `{ty}`: {source}")]
    Serialize {
        /// The event type.
        ty: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A subscription of that name is already running on this bus.
    #[error("subscription `{0}` is already running on this bus")]
    SubscriptionExists(String),
    /// A subscription was started without any handler.
    #[error("subscription `{0}` has no handler")]
    NoHandler(String),
    /// The bus was shut down.
    #[error("the bus is shut down")]
    Closed,
    /// Some subscriptions did not finish their in-flight work before the deadline; their
    /// unsettled deliveries will be redelivered.
    #[error("shutdown deadline passed with {0} handler(s) still running")]
    ShutdownTimeout(usize),
}

impl Error {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transport(e) if e.is_transient())
    }
}
