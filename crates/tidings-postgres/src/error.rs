/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with the Postgres queue, outbox or inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached (the URL is shown without its password).
    ///
    /// The driver's error is in the message, as the other transports' connection errors
    /// have theirs, and not also a `source`: a report that walks the chain would say it
    /// twice.
    #[error("cannot connect to {url}: {cause}")]
    Connect {
        /// The database URL, password redacted.
        url: String,
        /// What the driver said.
        cause: sqlx::Error,
    },
    /// The database was migrated by a newer version of tidings.
    #[error(
        "the database has tidings schema migration {0}, which this version does not know; \
         upgrade tidings"
    )]
    NewerSchema(i64),
    /// A schema migration failed.
    #[error("migrating the tidings schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An envelope could not be encoded, or a stored row decoded.
    #[error("{0}")]
    Malformed(String),
    /// Any database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// Whether trying again later may succeed (connection loss, serialization failure).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            Error::Database(sqlx::Error::Database(db)) => {
                // serialization failure, deadlock, lock not available, and class 08
                // (connection exceptions) and 57P0x (the server shutting down)
                let code = db.code();
                let code = code.as_deref().unwrap_or_default();
                matches!(code, "40001" | "40P01" | "55P03")
                    || code.starts_with("08")
                    || code.starts_with("57P0")
            }
            _ => false,
        }
    }
}

impl From<Error> for tidings_core::transport::TransportError {
    fn from(error: Error) -> Self {
        use tidings_core::transport::TransportError;
        if error.is_transient() {
            TransportError::Connection(Box::new(error))
        } else {
            TransportError::Other(Box::new(error))
        }
    }
}
