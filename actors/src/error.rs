//! The one error type of the actors crate.

use std::path::PathBuf;

/// Result alias of the actors crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the log and the other actors.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An I/O call failed (the cause names the file, operation and offset).
    #[error(transparent)]
    Io(persistx_io::Error),
    /// Bytes on disk are damaged: the WAL or a page is not what the format requires.
    #[error("corruption in {} at offset {offset}: {what}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What was found.
        what: String,
    },
    /// An earlier fsync of the log failed, so the data it covered may be lost. The log
    /// refuses further writes until the database is reopened (and recovery decides what
    /// survived). Never retried: see PostgreSQL's fsyncgate.
    #[error("the write-ahead log is poisoned since a failed {cause}; reopen the database")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: String,
    },
    /// The log is already open, in this process or another; nothing was changed. Close the
    /// other handle (and let it finish closing) first.
    #[error("{} is locked: the log is already open (in this or another process)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A record is larger than the log accepts. Nothing was written.
    #[error("record of {len} bytes is over the limit of {max} bytes")]
    RecordTooLarge {
        /// The record's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The folder is not a PersistX database (or its page file is unreadable as one).
    /// Nothing was changed.
    #[error("{} is not a PersistX database: {reason}", path.display())]
    NotADatabase {
        /// The folder or file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The database was written by a newer PersistX (a newer on-disk format). Nothing was
    /// changed; open it with that version.
    #[error("{} uses format version {found}; this build reads up to {supported}", path.display())]
    NewerFormat {
        /// The page file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A collection exists with another kind or key/value type than the one asked for.
    /// Nothing was changed.
    #[error("collection {name:?} is a {found}, not a {expected}")]
    WrongCollectionType {
        /// The collection.
        name: String,
        /// What it was created as (kind and types).
        found: String,
        /// What was asked for.
        expected: String,
    },
    /// A key or value is over the documented size limit. Nothing was changed.
    #[error("{what} of {len} bytes is over the limit of {max} bytes (collection {collection:?})")]
    TooLarge {
        /// "key" or "value".
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
        /// The collection.
        collection: String,
    },
    /// A bad argument (e.g. an option out of range). Nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bulk write failed part way and was rolled back: nothing of it is visible or
    /// durable, the pages it wrote are free again, and the collection takes writes.
    #[error("the bulk write to collection {collection:?} was rolled back: {cause}")]
    RolledBack {
        /// The collection.
        collection: String,
        /// What failed (an I/O error, damage found while reading, a refused part).
        cause: Box<Error>,
    },
    /// The log was closed; the request was not applied.
    #[error("the write-ahead log is closed")]
    Closed,
    /// The log actor failed or stopped; see the cause for whether the request was applied.
    #[error(transparent)]
    Actor(persistx_runtime::Error),
}

impl From<persistx_io::Error> for Error {
    fn from(e: persistx_io::Error) -> Self {
        match e {
            persistx_io::Error::Corruption { file, offset, what } => {
                Error::Corruption { file, offset, what }
            }
            persistx_io::Error::Locked { path } => Error::Locked { path },
            other => Error::Io(other),
        }
    }
}

impl From<persistx_runtime::Error> for Error {
    fn from(e: persistx_runtime::Error) -> Self {
        match e {
            persistx_runtime::Error::Stopped { .. } => Error::Closed,
            other => Error::Actor(other),
        }
    }
}
