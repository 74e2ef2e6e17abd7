use std::path::PathBuf;

use tidings_core::transport::TransportError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with the SQLite store, the outbox or the inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or created.
    #[error("cannot open the tidings store at `{path}`: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: sqlx::Error,
    },
    /// The directory (or the file) does not allow writing.
    #[error(
        "the tidings store at `{path}` is read-only: its directory or file does not allow \
         writing (the store needs to write the file and its -wal and -shm companions)"
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a SQLite database: corrupt, encrypted, or another kind of file.
    #[error(
        "`{path}` is not a SQLite database (corrupt, or another kind of file); it was left \
         untouched"
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is a SQLite database that belongs to something else.
    #[error(
        "`{path}` is a SQLite database of another application (tables: {tables}); tidings will \
         not write into it: choose another path"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Some of its tables.
        tables: String,
    },
    /// The database was written by a newer version of tidings.
    #[error(
        "`{path}` was written by a newer version of tidings (it has schema migration {version}, \
         which this version does not know); upgrade tidings to open it"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The unknown migration.
        version: i64,
    },
    /// The disk, or the configured size limit, is full. Nothing stored was lost; the write
    /// that did not fit was not made.
    #[error("the tidings store is full (disk full or max_size reached); the write was not made")]
    Full,
    /// The database is locked by another process for longer than the busy timeout.
    #[error("the tidings store is busy (locked by another writer): {0}")]
    Busy(#[source] sqlx::Error),
    /// A schema migration failed.
    #[error("migrating the tidings schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No subscription is bound to the topic, and the store requires one.
    #[error("no subscription is bound to topic `{0}`")]
    Unroutable(String),
    /// A stored row could not be read back.
    #[error("stored row is malformed: {0}")]
    Malformed(String),
    /// Any other database error.
    #[error(transparent)]
    Database(sqlx::Error),
    /// The store was closed.
    #[error("the tidings store is closed")]
    Closed,
}

impl Error {
    /// The same failure again, for every caller a shared batch or statement failed for
    /// (errors are not `Clone`, sqlx's are not): the kinds callers act on (full, busy,
    /// closed) are kept, the rest carry the message.
    pub(crate) fn echo(&self) -> Self {
        match self {
            Self::Full => Self::Full,
            Self::Closed => Self::Closed,
            Self::Busy(source) => Self::Busy(sqlx::Error::Protocol(source.to_string())),
            other => Self::Database(sqlx::Error::Protocol(other.to_string())),
        }
    }

    /// Whether trying again later may succeed (a busy database), as opposed to an error that
    /// will recur.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Busy(_))
    }
}

/// SQLite's primary result codes that need a typed error.
const SQLITE_BUSY: u32 = 5;
const SQLITE_LOCKED: u32 = 6;
const SQLITE_READONLY: u32 = 8;
const SQLITE_CORRUPT: u32 = 11;
const SQLITE_FULL: u32 = 13;
const SQLITE_CANTOPEN: u32 = 14;
const SQLITE_NOTADB: u32 = 26;

/// The primary result code of a SQLite error, if it is one.
pub(crate) fn primary_code(error: &sqlx::Error) -> Option<u32> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    db.code()?.parse::<u32>().ok().map(|c| c & 0xff)
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match primary_code(&error) {
            Some(SQLITE_FULL) => Error::Full,
            Some(SQLITE_BUSY | SQLITE_LOCKED) => Error::Busy(error),
            // Corruption found after opening keeps SQLite's own message; `NotADatabase`
            // names a path, which only `opening` knows.
            _ => Error::Database(error),
        }
    }
}

/// Classifies an error met while opening the file at `path`.
pub(crate) fn opening(path: &std::path::Path, error: sqlx::Error) -> Error {
    let path = path.to_owned();
    match primary_code(&error) {
        Some(SQLITE_NOTADB | SQLITE_CORRUPT) => Error::NotADatabase { path },
        Some(SQLITE_READONLY) => Error::ReadOnly { path },
        Some(SQLITE_CANTOPEN) if !writable_dir(&path) => Error::ReadOnly { path },
        Some(SQLITE_FULL) => Error::Full,
        _ => Error::Open {
            path,
            source: error,
        },
    }
}

/// Whether the directory of `path` accepts new files (tried, not guessed from mode bits:
/// root ignores them, a read-only mount does not).
pub(crate) fn writable_dir(path: &std::path::Path) -> bool {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let probe = dir.join(format!(".tidings-write-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Closed => TransportError::Closed,
            Error::Unroutable(topic) => TransportError::Unroutable { topic },
            Error::Busy(_) => TransportError::Connection(Box::new(error)),
            other => TransportError::Other(Box::new(other)),
        }
    }
}
