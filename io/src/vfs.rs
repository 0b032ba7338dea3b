//! The one storage trait every backend implements: files of pages and log segments, and the
//! few directory operations the engine needs.
//!
//! Buffers are owned [`Bytes`]: a backend may hand them to another thread (the portable
//! backend's I/O thread, the io_uring driver) and a dropped caller future never leaves the
//! kernel writing from freed memory.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// How [`Vfs::open`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading only.
    Read,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Create the file, failing if it exists.
    CreateNew,
    /// Open the file, creating it empty if it is missing.
    CreateOrOpen,
    /// Open an existing file, write-only, for durable direct writes (`O_DIRECT | O_DSYNC`):
    /// each write is on stable storage when it returns, bypassing the page cache, with no
    /// separate sync. Read through another handle.
    /// Offsets and lengths of writes must be multiples of [`DIRECT_ALIGN`]. Backends without
    /// such a path (memory, sim) emulate it with write + sync; a file system that refuses
    /// `O_DIRECT` (tmpfs) fails the open with an I/O error of kind `InvalidInput`.
    DirectDurable,
}

/// The `std` open options of a mode, shared by the backends on real files.
pub(crate) fn std_open_options(mode: OpenMode) -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    match mode {
        OpenMode::Read => o.read(true),
        OpenMode::ReadWrite => o.read(true).write(true),
        OpenMode::CreateNew => o.read(true).write(true).create_new(true),
        OpenMode::CreateOrOpen => o.read(true).write(true).create(true),
        OpenMode::DirectDurable => o.write(true).custom_flags(libc::O_DIRECT | libc::O_DSYNC),
    };
    o
}

/// Alignment of offsets and lengths for [`OpenMode::DirectDurable`] writes.
pub const DIRECT_ALIGN: usize = 4096;

/// Checks a direct write's alignment; misaligned writes are a caller's bug, reported as an
/// `InvalidInput` I/O error rather than left to the kernel.
pub(crate) fn check_direct(path: &Path, offset: u64, len: usize) -> crate::Result<()> {
    if !offset.is_multiple_of(DIRECT_ALIGN as u64) || !len.is_multiple_of(DIRECT_ALIGN) {
        return Err(crate::Error::io(
            "direct write",
            path,
            Some(offset),
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "direct writes need offset and length aligned to {DIRECT_ALIGN}; got {len} bytes"
                ),
            ),
        ));
    }
    Ok(())
}

/// Copies `data` into a fresh buffer whose start is aligned to [`DIRECT_ALIGN`] in memory,
/// as `O_DIRECT` requires. Returns the buffer and the offset of the aligned start.
pub(crate) fn aligned_copy(data: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; data.len() + DIRECT_ALIGN];
    let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
    buf[start..start + data.len()].copy_from_slice(data);
    (buf, start)
}

impl OpenMode {
    /// True if the mode may create a file.
    pub fn creates(self) -> bool {
        matches!(self, OpenMode::CreateNew | OpenMode::CreateOrOpen)
    }
}

/// A file system, real or simulated.
///
/// Durability rules every user of this trait follows (docs/format.md): a new file is synced,
/// then its parent directory, before anything refers to it; a rename is durable only after
/// [`Vfs::sync_dir`] of the directory.
#[async_trait]
pub trait Vfs: Send + Sync + Debug + 'static {
    /// A short name for logs and errors: `portable`, `io_uring`, `memory`, `sim`.
    fn name(&self) -> &'static str;
    /// Opens (or creates) a file.
    async fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn File>>;
    /// Creates a directory and its parents.
    async fn create_dir_all(&self, path: &Path) -> Result<()>;
    /// The names (not full paths) of the entries of a directory, sorted.
    async fn list_dir(&self, path: &Path) -> Result<Vec<String>>;
    /// Removes a file.
    async fn remove_file(&self, path: &Path) -> Result<()>;
    /// Renames a file, replacing `to` if it exists.
    async fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    async fn sync_dir(&self, path: &Path) -> Result<()>;
    /// True if the path exists.
    async fn exists(&self, path: &Path) -> Result<bool>;
    /// Takes the exclusive lock named by `path` (on real file systems an advisory `flock` of
    /// that file, created if missing), held until the guard is dropped. Fails at once with
    /// [`crate::Error::Locked`] if another holder has it, in this process or another.
    async fn lock(&self, path: &Path) -> Result<LockGuard>;
}

/// An exclusive lock from [`Vfs::lock`]; dropping it releases the lock.
pub struct LockGuard {
    _held: Box<dyn Send + Sync>,
}

impl LockGuard {
    /// Wraps whatever keeps the lock held (an open locked file, a registry entry).
    pub fn new(held: impl Send + Sync + 'static) -> LockGuard {
        LockGuard {
            _held: Box::new(held),
        }
    }
}

impl Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// A process-local lock registry for backends without a real file system (memory, sim).
#[derive(Debug, Clone, Default)]
pub struct LockRegistry {
    held: Arc<std::sync::Mutex<std::collections::BTreeSet<PathBuf>>>,
}

struct Registered {
    registry: LockRegistry,
    path: PathBuf,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.path);
    }
}

impl LockRegistry {
    /// Takes the lock named `path`, or fails with [`crate::Error::Locked`].
    pub fn lock(&self, path: &Path) -> Result<LockGuard> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !held.insert(path.to_path_buf()) {
            return Err(crate::Error::Locked {
                path: path.to_path_buf(),
            });
        }
        Ok(LockGuard::new(Registered {
            registry: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

/// Takes an advisory exclusive lock on the file at `path` with a blocking call (creating the
/// file if missing). For the real backends, run on their I/O threads.
pub(crate) fn lock_file_blocking(path: &Path) -> Result<LockGuard> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| crate::Error::io("open lock file", path, None, e))?;
    match file.try_lock() {
        Ok(()) => Ok(LockGuard::new(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(crate::Error::io("lock", path, None, e)),
    }
}

/// An open file. Positioned I/O only: there is no cursor, so one handle serves many callers.
#[allow(clippy::len_without_is_empty)]
#[async_trait]
pub trait File: Send + Sync + Debug + 'static {
    /// The path the file was opened with.
    fn path(&self) -> &Path;
    /// Reads up to `len` bytes at `offset`; fewer only at the end of the file.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes>;
    /// Reads `len` bytes at `offset` on the calling thread if the OS has them in memory,
    /// never waiting for the disk (`preadv2` with `RWF_NOWAIT`). `None` when the read would
    /// wait, comes up short, fails, or the backend cannot tell: the caller then uses
    /// [`File::read_at`], which also reports errors.
    fn try_read_cached(&self, _offset: u64, _len: usize) -> Option<Bytes> {
        None
    }
    /// Writes all of `data` at `offset`, extending the file if needed.
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()>;
    /// Writes several buffers; backends that can submit them together do so.
    async fn write_batch(&self, writes: Vec<(u64, Bytes)>) -> Result<()> {
        for (offset, data) in writes {
            self.write_at(offset, data).await?;
        }
        Ok(())
    }
    /// Writes `data` at `offset` and then makes the file's data durable, as one request (one
    /// round trip to the I/O thread or the io_uring driver). If the write fails
    /// the sync is not attempted.
    async fn write_and_sync(&self, offset: u64, data: Bytes) -> Result<()> {
        self.write_at(offset, data).await?;
        self.sync_data().await
    }
    /// Starts writing the file's changed pages to the disk without waiting for them
    /// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`), so that a later [`File::sync_data`]
    /// has less left to do and the disk is not handed everything at once. Makes nothing
    /// durable. Does nothing where the backend cannot.
    async fn start_writeback(&self) -> Result<()> {
        Ok(())
    }
    /// `fdatasync`: data and the metadata needed to read it back are durable.
    async fn sync_data(&self) -> Result<()>;
    /// `fsync`: data and all metadata are durable.
    async fn sync_all(&self) -> Result<()>;
    /// The current length in bytes.
    async fn len(&self) -> Result<u64>;
    /// Truncates or extends (with zeros) the file.
    async fn set_len(&self, len: u64) -> Result<()>;
}

/// `preadv2(RWF_NOWAIT)` of exactly `len` bytes: the bytes if the page cache had them all.
#[cfg(target_os = "linux")]
pub(crate) fn read_nowait(file: &std::fs::File, offset: u64, len: usize) -> Option<Bytes> {
    let mut buf = crate::bufs::take(len);
    let mut done = 0;
    while done < len {
        let mut slices = [std::io::IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(
            file,
            &mut slices,
            offset + done as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) | Err(_) => return None,
            Ok(n) => done += n,
        }
    }
    Some(crate::bufs::into_bytes(buf))
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` over the whole file: writeback of its changed
/// pages starts; nothing waits for it to end.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback_blocking(file: &std::fs::File, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    #[allow(unsafe_code)]
    // SAFETY: the descriptor stays open for the call (borrowed from `file`), and the call
    // takes no memory from us.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        return Err(crate::Error::io(
            "sync_file_range",
            path,
            None,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Without `sync_file_range`: the sync that follows does all the work.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback_blocking(_file: &std::fs::File, _path: &Path) -> Result<()> {
    Ok(())
}

/// Without `RWF_NOWAIT`: never served from the calling thread.
#[cfg(not(target_os = "linux"))]
pub(crate) fn read_nowait(_file: &std::fs::File, _offset: u64, _len: usize) -> Option<Bytes> {
    None
}

/// The parent directory of a path, or `.` for a bare file name.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
