//! The one error type of the I/O crate.

use std::path::PathBuf;
use std::sync::Arc;

/// Result alias of the I/O crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong below the actors: failed system calls, bytes on disk that do
/// not decode, and a backend whose driver thread is gone.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A system call (or a simulated one) failed.
    #[error("I/O error during {op} on {}{}: {source}", path.display(), fmt_offset(*offset))]
    Io {
        /// The operation: `read`, `write`, `sync_data`, `open`, ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The byte offset, for positioned reads and writes.
        offset: Option<u64>,
        /// The operating system's error, shared so the error can be cloned to every caller.
        source: Arc<std::io::Error>,
    },
    /// The device is full. Nothing was written by the failed call.
    #[error("no space left on device while writing {} at offset {offset}", path.display())]
    NoSpace {
        /// The file being written.
        path: PathBuf,
        /// Where the write began.
        offset: u64,
    },
    /// Bytes on disk are damaged or are not what the format says they must be.
    #[error("corruption in {} at offset {offset}: {what}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What was wrong, e.g. the expected and found checksums.
        what: String,
    },
    /// Another holder (this process or another) has the lock: the database is open elsewhere.
    #[error("{} is locked: the database is already open (in this or another process)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The backend's driver thread stopped (it panicked or the database was closed).
    #[error("the {backend} I/O backend is no longer running")]
    BackendGone {
        /// Which backend.
        backend: &'static str,
    },
    /// The requested backend cannot run here (e.g. io_uring is blocked by the kernel).
    #[error("I/O backend {backend} is unavailable: {reason}")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// Why the probe failed.
        reason: String,
    },
}

fn fmt_offset(offset: Option<u64>) -> String {
    match offset {
        Some(o) => format!(" at offset {o}"),
        None => String::new(),
    }
}

impl Error {
    /// Wraps an operating-system error with its context, mapping `ENOSPC` to [`Error::NoSpace`].
    pub fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: Option<u64>,
        e: std::io::Error,
    ) -> Self {
        let path = path.into();
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            return Error::NoSpace {
                path,
                offset: offset.unwrap_or(0),
            };
        }
        Error::Io {
            op,
            path,
            offset,
            source: Arc::new(e),
        }
    }

    /// True if this is an I/O error whose OS error kind is `NotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}
