//! # persistx-io: page I/O for PersistX
//!
//! The layer between the engine and the disk. A map of the crate:
//!
//! * [`vfs`]: the one storage trait ([`Vfs`] for directories, [`File`] for positioned I/O on
//!   page files and log segments) that every backend implements, with owned [`bytes::Bytes`]
//!   buffers.
//! * Backends: [`uring`] (a dedicated io_uring driver thread), [`portable`] (`pread`/`pwrite`
//!   on dedicated threads), [`memory`] (in-memory databases and fast tests) and [`sim`] (the
//!   simulated disk for crash and fault tests). [`open_backend`] picks one; `Auto` probes
//!   io_uring and falls back to the portable backend.
//! * [`pool`]: the [`BufferPool`], a sharded clock cache of clean pages under a memory budget.
//! * [`mod@format`]: the on-disk structures (WAL segment header, WAL record frame, page header),
//!   checksummed with crc32c, documented byte by byte in `docs/format.md`.
//! * [`error`]: the crate's [`Error`].
//!
//! This is the only PersistX crate allowed to contain `unsafe` code. `unsafe_code` is denied
//! crate-wide and allowed only on the two submission-queue pushes of `uring_direct` (the raw
//! io_uring ring behind durable direct writes), each with a `// SAFETY:` comment: the buffer
//! and the file stay owned by the ring's thread until the completion is reaped.

#![deny(unsafe_code)]

pub mod bufs;
pub mod error;
pub mod format;
pub mod memory;
pub mod pool;
pub mod portable;
pub mod sim;
pub mod uring;
pub mod vfs;

use std::sync::Arc;

pub use error::{Error, Result};
pub use pool::{BufferPool, PoolStats};
pub use vfs::{File, OpenMode, Vfs};

/// Which I/O backend a database uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring when the kernel allows it, else the portable backend (the default).
    #[default]
    Auto,
    /// io_uring only; opening fails with [`Error::Unavailable`] where it cannot run.
    IoUring,
    /// Positioned reads and writes on dedicated threads.
    Portable,
    /// Files in memory; nothing survives the process.
    Memory,
}

/// Starts the chosen backend. `Auto` probes io_uring once and falls back to the portable
/// backend, logging why.
pub fn open_backend(backend: Backend) -> Result<Arc<dyn Vfs>> {
    match backend {
        Backend::Auto => match uring::start() {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::info!(error = %e, "io_uring unavailable, using the portable backend");
                Ok(Arc::new(portable::PortableVfs::start(1)?))
            }
        },
        Backend::IoUring => uring::start(),
        Backend::Portable => Ok(Arc::new(portable::PortableVfs::start(1)?)),
        Backend::Memory => Ok(Arc::new(memory::MemoryVfs::new())),
    }
}
