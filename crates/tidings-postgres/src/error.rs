/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with the Postgres outbox or inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
            Error::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            Error::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40001" | "40P01" | "55P03"))
            }
            _ => false,
        }
    }
}
