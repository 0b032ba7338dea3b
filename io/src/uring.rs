//! The io_uring backend: one dedicated driver thread, `persistx-uring`, runs a `tokio-uring`
//! runtime and performs every file operation of the backend.
//!
//! # Shape
//!
//! It is a handle-plus-task actor (like mini-redis's buffered client): [`UringVfs`] and every
//! [`UringFile`] hold the sending side of one bounded flume channel
//! ([`QUEUE_CAPACITY`] requests). A request is a private enum carrying owned buffers
//! ([`bytes::Bytes`] for writes; reads come back as `Bytes` built from an owned `Vec<u8>`) and a
//! oneshot sender for the answer. The driver receives requests in order and starts each one
//! as a local task, so up to [`IN_FLIGHT_MAX`] operations are in the ring at once; when that
//! many are running it stops receiving and callers wait for room in the channel
//! (backpressure, nothing is dropped).
//!
//! `tokio-uring` files are `!Send`, so open files live in the driver thread, in a map from a
//! file id to the file; a [`UringFile`] is the id, the path and a sender. Dropping the last
//! handle of a file closes it (best effort: the close request follows every earlier request
//! of the file through the same channel, or a side channel when the queue is full).
//!
//! Data-path operations (read, write, `fdatasync`/`fsync`, `statx`, unlink, rename) go through
//! the ring. The rare operations io_uring has no opcode for (opening with `O_CREAT|O_EXCL`
//! semantics via std, `ftruncate`, `mkdir -p`, `readdir`, directory `fsync`) run on the
//! runtime's blocking pool, never on the driver thread itself.
//!
//! Writes to [`OpenMode::DirectDurable`](crate::OpenMode) files (`write_at`, `write_batch`, and
//! the write of `write_and_sync`) are the exception: a second thread, `persistx-uring-direct`
//! (`uring_direct.rs`), performs them through a raw `io-uring` ring on which it blocks in
//! `io_uring_enter`, which answers a durable WAL commit sooner than the driver's epoll park and
//! eventfd wake. Every other operation on those files still goes to the driver. If that ring
//! cannot be set up, the driver writes direct files too.
//!
//! # Lifecycle
//!
//! [`start`] spawns the thread and waits for a probe (a no-op, a read, a write and a `statx`
//! through the ring). If io_uring cannot be set up (seccomp, an old kernel) or the probe fails,
//! [`start`] returns [`Error::Unavailable`](crate::Error::Unavailable) and never panics. The thread ends when every handle
//! is dropped, after the operations already in the ring have completed. If the thread is gone,
//! calls fail with [`Error::BackendGone`](crate::Error::BackendGone).
//!
//! # Cancel safety
//!
//! Every method is cancel safe in the sense that no memory is ever left borrowed by the
//! kernel: buffers are owned by the request. Dropping a future after the request was sent does
//! not stop the operation; it still runs to completion in the driver, and the caller does not
//! learn its outcome (a dropped write may or may not have reached the file).

use std::sync::Arc;

#[cfg(not(target_os = "linux"))]
use crate::error::Error;
use crate::error::Result;
use crate::vfs::Vfs;

#[cfg(target_os = "linux")]
pub use linux::{UringFile, UringVfs};

#[cfg(target_os = "linux")]
#[path = "uring_direct.rs"]
mod direct;

/// The name of this backend in logs and errors.
pub const BACKEND: &str = "io_uring";
/// Requests queued for the driver before callers wait for room.
pub const QUEUE_CAPACITY: usize = 1024;
/// Operations the driver runs at once; beyond that it stops taking requests.
pub const IN_FLIGHT_MAX: usize = 1024;

/// Starts the io_uring driver thread and probes it.
///
/// Returns [`crate::Error::Unavailable`] if io_uring cannot run here (not Linux, blocked by
/// seccomp, an old kernel, or a failed probe).
pub fn start() -> Result<Arc<dyn Vfs>> {
    #[cfg(target_os = "linux")]
    {
        Ok(Arc::new(UringVfs::start()?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(Error::Unavailable {
            backend: BACKEND,
            reason: "io_uring exists only on Linux".into(),
        })
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;
    use tokio::sync::oneshot;
    use tokio::task::JoinSet;
    use tokio_uring::buf::BoundedBuf;

    use super::direct::{DirectFile, DirectWriter};
    use super::{BACKEND, IN_FLIGHT_MAX, QUEUE_CAPACITY};
    use crate::error::{Error, Result};
    use crate::vfs::{
        File, LockGuard, OpenMode, Vfs, aligned_copy, check_direct, lock_file_blocking,
        std_open_options,
    };

    /// Submission queue entries of the ring (the completion queue is twice as large).
    const RING_ENTRIES: u32 = 256;
    /// Writes of one batch submitted before the driver waits for them.
    const BATCH_IN_FLIGHT_MAX: usize = 256;
    /// How long [`UringVfs::start`] waits for the driver thread's probe.
    const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A failed operation as the driver reports it; the caller adds the path.
    struct Failure {
        op: &'static str,
        offset: Option<u64>,
        source: io::Error,
    }

    impl Failure {
        fn new(op: &'static str, offset: Option<u64>, source: io::Error) -> Failure {
            Failure { op, offset, source }
        }

        fn into_error(self, path: &Path) -> Error {
            Error::io(self.op, path, self.offset, self.source)
        }
    }

    type Answer<T> = std::result::Result<T, Failure>;
    type Reply<T> = oneshot::Sender<Answer<T>>;

    /// The driver's mailbox. `file` is an id from a previous `Open`.
    enum Request {
        /// Answers the file id and, if `dup` is set, one more duplicate of the descriptor.
        Open {
            path: PathBuf,
            mode: OpenMode,
            dup: bool,
            reply: Reply<(u64, Option<std::fs::File>)>,
        },
        Close {
            file: u64,
        },
        Read {
            file: u64,
            offset: u64,
            len: usize,
            reply: Reply<Bytes>,
        },
        Write {
            file: u64,
            offset: u64,
            data: Bytes,
            reply: Reply<()>,
        },
        WriteBatch {
            file: u64,
            writes: Vec<(u64, Bytes)>,
            reply: Reply<()>,
        },
        WriteAndSync {
            file: u64,
            offset: u64,
            data: Bytes,
            reply: Reply<()>,
        },
        Sync {
            file: u64,
            data_only: bool,
            reply: Reply<()>,
        },
        Len {
            file: u64,
            reply: Reply<u64>,
        },
        SetLen {
            file: u64,
            len: u64,
            reply: Reply<()>,
        },
        CreateDirAll {
            path: PathBuf,
            reply: Reply<()>,
        },
        ListDir {
            path: PathBuf,
            reply: Reply<Vec<String>>,
        },
        RemoveFile {
            path: PathBuf,
            reply: Reply<()>,
        },
        Rename {
            from: PathBuf,
            to: PathBuf,
            reply: Reply<()>,
        },
        SyncDir {
            path: PathBuf,
            reply: Reply<()>,
        },
        Exists {
            path: PathBuf,
            reply: Reply<bool>,
        },
    }

    /// Sends a request and awaits its answer.
    async fn call<T>(
        tx: &flume::Sender<Request>,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<Answer<T>> {
        let (reply, answer) = oneshot::channel();
        tx.send_async(make(reply))
            .await
            .map_err(|_| Error::BackendGone { backend: BACKEND })?;
        answer
            .await
            .map_err(|_| Error::BackendGone { backend: BACKEND })
    }

    // ---------------------------------------------------------------------------------------
    // The handles
    // ---------------------------------------------------------------------------------------

    /// The io_uring backend. Cloning shares the driver thread; the thread ends when the last
    /// clone and the last file opened from it are dropped.
    #[derive(Debug, Clone)]
    pub struct UringVfs {
        tx: flume::Sender<Request>,
        close_tx: flume::Sender<u64>,
        /// The thread writing to [`OpenMode::DirectDurable`] files, if it could start.
        direct: Option<DirectWriter>,
    }

    impl UringVfs {
        /// Spawns the `persistx-uring` driver thread and waits until a probe through the ring
        /// succeeded.
        ///
        /// Fails with [`Error::Unavailable`] (never panics) if the ring cannot be set up, the
        /// probe fails, or the thread dies or hangs during the probe.
        pub fn start() -> Result<UringVfs> {
            let unavailable = |reason: String| Error::Unavailable {
                backend: BACKEND,
                reason,
            };
            let (tx, rx) = flume::bounded::<Request>(QUEUE_CAPACITY);
            let (close_tx, close_rx) = flume::unbounded::<u64>();
            // Room for the probe's answer and a later panic report, so the thread never blocks.
            let (probe_tx, probe_rx) =
                std::sync::mpsc::sync_channel::<std::result::Result<(), String>>(2);
            let panic_tx = probe_tx.clone();
            std::thread::Builder::new()
                .name("persistx-uring".into())
                .spawn(move || {
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                            let mut builder = tokio_uring::builder();
                            builder.entries(RING_ENTRIES);
                            match tokio_uring::Runtime::new(&builder) {
                                Ok(rt) => rt.block_on(drive(rx, close_rx, probe_tx)),
                                Err(e) => {
                                    let _ =
                                        probe_tx.send(Err(format!("io_uring setup failed: {e}")));
                                }
                            }
                        }));
                    if let Err(panic) = outcome {
                        let reason = format!(
                            "the driver thread panicked: {}",
                            panic_message(panic.as_ref())
                        );
                        tracing::error!(%reason, "io_uring driver stopped");
                        let _ = panic_tx.send(Err(reason));
                    }
                })
                .map_err(|e| unavailable(format!("cannot spawn the driver thread: {e}")))?;
            match probe_rx.recv_timeout(PROBE_TIMEOUT) {
                Ok(Ok(())) => Ok(UringVfs {
                    tx,
                    close_tx,
                    direct: start_direct_writer(),
                }),
                Ok(Err(reason)) => Err(unavailable(reason)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(unavailable(format!(
                    "the probe did not answer within {PROBE_TIMEOUT:?}"
                ))),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(unavailable(
                    "the driver thread exited during the probe".into(),
                )),
            }
        }

        async fn call<T>(&self, path: &Path, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
            call(&self.tx, make).await?.map_err(|f| f.into_error(path))
        }
    }

    /// Starts the direct writer; without it, direct files are written by the driver.
    fn start_direct_writer() -> Option<DirectWriter> {
        match DirectWriter::start() {
            Ok(writer) => Some(writer),
            Err(reason) => {
                tracing::info!(%reason, "no io_uring direct writer; direct writes use the driver");
                None
            }
        }
    }

    fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = panic.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = panic.downcast_ref::<String>() {
            s.clone()
        } else {
            "(no message)".to_owned()
        }
    }

    #[async_trait]
    impl Vfs for UringVfs {
        fn name(&self) -> &'static str {
            BACKEND
        }

        async fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn File>> {
            let p = path.to_path_buf();
            let writer = self
                .direct
                .as_ref()
                .filter(|_| mode == OpenMode::DirectDurable);
            let (id, dup) = self
                .call(path, |reply| Request::Open {
                    path: p,
                    mode,
                    // A second handle: the direct writer's for a durable file, else ours
                    // for reads served from the page cache without the driver.
                    dup: writer.is_some() || mode != OpenMode::DirectDurable,
                    reply,
                })
                .await?;
            let (direct, cached) = match (writer, dup) {
                (Some(writer), Some(dup)) => (writer.register(dup).await, None),
                (None, Some(dup)) => (None, Some(Arc::new(dup))),
                _ => (None, None),
            };
            Ok(Arc::new(UringFile {
                id,
                path: path.to_path_buf(),
                tx: self.tx.clone(),
                close_tx: self.close_tx.clone(),
                direct,
                cached,
            }))
        }

        async fn create_dir_all(&self, path: &Path) -> Result<()> {
            let p = path.to_path_buf();
            self.call(path, |reply| Request::CreateDirAll { path: p, reply })
                .await
        }

        async fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
            let p = path.to_path_buf();
            self.call(path, |reply| Request::ListDir { path: p, reply })
                .await
        }

        async fn remove_file(&self, path: &Path) -> Result<()> {
            let p = path.to_path_buf();
            self.call(path, |reply| Request::RemoveFile { path: p, reply })
                .await
        }

        async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
            let (f, t) = (from.to_path_buf(), to.to_path_buf());
            self.call(from, |reply| Request::Rename {
                from: f,
                to: t,
                reply,
            })
            .await
        }

        async fn sync_dir(&self, path: &Path) -> Result<()> {
            let p = path.to_path_buf();
            self.call(path, |reply| Request::SyncDir { path: p, reply })
                .await
        }

        async fn exists(&self, path: &Path) -> Result<bool> {
            let p = path.to_path_buf();
            self.call(path, |reply| Request::Exists { path: p, reply })
                .await
        }

        async fn lock(&self, path: &Path) -> Result<LockGuard> {
            // A rare, quick call: the caller's blocking pool, not the ring.
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || lock_file_blocking(&p))
                .await
                .map_err(|e| {
                    Error::io(
                        "lock",
                        path,
                        None,
                        io::Error::other(format!("the blocking task failed: {e}")),
                    )
                })?
        }
    }

    /// A file of the io_uring backend: an id into the driver's table of open files.
    ///
    /// Dropping it closes the file once every operation sent before has run.
    #[derive(Debug)]
    pub struct UringFile {
        id: u64,
        path: PathBuf,
        tx: flume::Sender<Request>,
        close_tx: flume::Sender<u64>,
        /// For a [`OpenMode::DirectDurable`] file, its registration with the direct writer,
        /// which then performs its writes (everything else still goes to the driver).
        direct: Option<DirectFile>,
        /// A duplicate handle for `RWF_NOWAIT` reads on the caller's thread.
        cached: Option<Arc<std::fs::File>>,
    }

    impl UringFile {
        async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
            call(&self.tx, make)
                .await?
                .map_err(|f| f.into_error(&self.path))
        }
    }

    impl Drop for UringFile {
        fn drop(&mut self) {
            // The request channel keeps the close behind every earlier request of this file. If
            // it is full, the unbounded side channel (one id per file, ever) takes it instead.
            match self.tx.try_send(Request::Close { file: self.id }) {
                Ok(()) | Err(flume::TrySendError::Disconnected(_)) => {}
                Err(flume::TrySendError::Full(_)) => {
                    let _ = self.close_tx.send(self.id);
                }
            }
        }
    }

    #[async_trait]
    impl File for UringFile {
        fn path(&self) -> &Path {
            &self.path
        }

        fn try_read_cached(&self, offset: u64, len: usize) -> Option<Bytes> {
            crate::vfs::read_nowait(self.cached.as_deref()?, offset, len)
        }

        async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
            if len == 0 {
                return Ok(Bytes::new());
            }
            let file = self.id;
            self.call(|reply| Request::Read {
                file,
                offset,
                len,
                reply,
            })
            .await
        }

        async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
            if let Some(direct) = &self.direct {
                check_direct(&self.path, offset, data.len())?;
                return direct.write(&self.path, offset, data).await;
            }
            let file = self.id;
            self.call(|reply| Request::Write {
                file,
                offset,
                data,
                reply,
            })
            .await
        }

        async fn write_batch(&self, writes: Vec<(u64, Bytes)>) -> Result<()> {
            if writes.is_empty() {
                return Ok(());
            }
            if self.direct.is_some() {
                // Durable direct writes, in order, like the driver does them.
                for (offset, data) in writes {
                    self.write_at(offset, data).await?;
                }
                return Ok(());
            }
            let file = self.id;
            self.call(|reply| Request::WriteBatch {
                file,
                writes,
                reply,
            })
            .await
        }

        async fn write_and_sync(&self, offset: u64, data: Bytes) -> Result<()> {
            if self.direct.is_some() {
                // The write is durable by itself (`O_DSYNC`); the `fdatasync` through the
                // driver keeps the meaning of this call for writes made through other handles.
                self.write_at(offset, data).await?;
                return self.sync_data().await;
            }
            let file = self.id;
            self.call(|reply| Request::WriteAndSync {
                file,
                offset,
                data,
                reply,
            })
            .await
        }

        async fn start_writeback(&self) -> Result<()> {
            // Buffered files keep a plain handle for cached reads; it serves here too, on
            // a blocking thread (the call can wait while the device queue is full).
            let Some(f) = self.cached.clone() else {
                return Ok(());
            };
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || crate::vfs::start_writeback_blocking(&f, &path))
                .await
                .map_err(|_| Error::BackendGone { backend: BACKEND })?
        }

        async fn sync_data(&self) -> Result<()> {
            let file = self.id;
            self.call(|reply| Request::Sync {
                file,
                data_only: true,
                reply,
            })
            .await
        }

        async fn sync_all(&self) -> Result<()> {
            let file = self.id;
            self.call(|reply| Request::Sync {
                file,
                data_only: false,
                reply,
            })
            .await
        }

        async fn len(&self) -> Result<u64> {
            let file = self.id;
            self.call(|reply| Request::Len { file, reply }).await
        }

        async fn set_len(&self, len: u64) -> Result<()> {
            let file = self.id;
            self.call(|reply| Request::SetLen { file, len, reply })
                .await
        }
    }

    // ---------------------------------------------------------------------------------------
    // The driver (runs on the `persistx-uring` thread only)
    // ---------------------------------------------------------------------------------------

    /// An open file: the ring's handle and a duplicate std handle of the same open file
    /// description for `ftruncate`, which has no io_uring opcode here.
    struct OpenFile {
        ring: tokio_uring::fs::File,
        std: Arc<std::fs::File>,
        /// Opened with `O_DIRECT | O_DSYNC`: writes go from an aligned copy and are durable
        /// when they complete (no io-wq punt, no separate fsync).
        direct: bool,
        path: PathBuf,
    }

    /// The driver's state, shared by its local tasks.
    struct Driver {
        files: RefCell<HashMap<u64, Rc<OpenFile>>>,
        next_id: Cell<u64>,
        /// The kernel has `IORING_OP_UNLINKAT` and `IORING_OP_RENAMEAT` (Linux 5.11); if not,
        /// removals and renames run on the blocking pool.
        path_ops: bool,
    }

    /// The driver thread's main future: probe, then serve requests until every sender is gone.
    async fn drive(
        rx: flume::Receiver<Request>,
        close_rx: flume::Receiver<u64>,
        probe_tx: std::sync::mpsc::SyncSender<std::result::Result<(), String>>,
    ) {
        let path_ops = match probe().await {
            Ok(path_ops) => path_ops,
            Err(e) => {
                let _ = probe_tx.send(Err(format!("the probe failed: {e}")));
                return;
            }
        };
        if probe_tx.send(Ok(())).is_err() {
            return;
        }
        drop(probe_tx);
        let driver = Rc::new(Driver {
            files: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            path_ops,
        });
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut closes_open = true;
        loop {
            tokio::select! {
                biased;
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "an io_uring operation task failed");
                    }
                }
                id = close_rx.recv_async(), if closes_open => match id {
                    Ok(id) => {
                        driver.files.borrow_mut().remove(&id);
                    }
                    Err(_) => closes_open = false,
                },
                request = rx.recv_async(), if tasks.len() < IN_FLIGHT_MAX => match request {
                    Ok(request) => dispatch(&driver, &mut tasks, request),
                    Err(_) => break,
                },
            }
        }
        // Every handle is gone; let the operations in the ring finish before the ring goes.
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "an io_uring operation task failed");
            }
        }
        driver.files.borrow_mut().clear();
    }

    /// Checks that the ring really performs the operations the backend uses. Returns whether
    /// unlink and rename are available as io_uring operations.
    async fn probe() -> io::Result<bool> {
        tokio_uring::no_op().await?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        let null = tokio_uring::fs::File::from_std(null);
        let (res, _) = null.read_at(Vec::with_capacity(16), 0).await;
        res?;
        let (res, _) = null.write_at(vec![0u8; 1], 0).submit().await;
        if res? != 1 {
            return Err(io::Error::other(
                "a 1-byte write to /dev/null did not write 1 byte",
            ));
        }
        null.statx().await?;
        null.close().await?;
        // An empty path gives ENOENT when the opcode exists and EINVAL when it does not.
        let path_ops = match tokio_uring::fs::remove_file("").await {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        Ok(path_ops)
    }

    /// Starts the task answering one request. File ids are resolved now, in channel order, so
    /// a later `Close` never overtakes an earlier operation on the same file.
    fn dispatch(driver: &Rc<Driver>, tasks: &mut JoinSet<()>, request: Request) {
        match request {
            Request::Open {
                path,
                mode,
                dup,
                reply,
            } => {
                let driver = driver.clone();
                tasks.spawn_local(async move {
                    let _ = reply.send(open(&driver, path, mode, dup).await);
                });
            }
            Request::Close { file } => {
                driver.files.borrow_mut().remove(&file);
            }
            Request::Read {
                file,
                offset,
                len,
                reply,
            } => {
                with_file(
                    driver,
                    tasks,
                    file,
                    "read",
                    Some(offset),
                    reply,
                    move |f| async move { read(&f, offset, len).await },
                );
            }
            Request::Write {
                file,
                offset,
                data,
                reply,
            } => {
                with_file(
                    driver,
                    tasks,
                    file,
                    "write",
                    Some(offset),
                    reply,
                    move |f| async move { write(&f, offset, data).await },
                );
            }
            Request::WriteBatch {
                file,
                writes,
                reply,
            } => {
                with_file(
                    driver,
                    tasks,
                    file,
                    "write",
                    None,
                    reply,
                    move |f| async move { write_batch(&f, writes).await },
                );
            }
            Request::WriteAndSync {
                file,
                offset,
                data,
                reply,
            } => {
                with_file(
                    driver,
                    tasks,
                    file,
                    "write",
                    Some(offset),
                    reply,
                    move |f| async move {
                        write(&f, offset, data).await?;
                        f.ring
                            .sync_data()
                            .await
                            .map_err(|e| Failure::new("sync_data", None, e))
                    },
                );
            }
            Request::Sync {
                file,
                data_only,
                reply,
            } => {
                let op = if data_only { "sync_data" } else { "sync_all" };
                with_file(driver, tasks, file, op, None, reply, move |f| async move {
                    let res = if data_only {
                        f.ring.sync_data().await
                    } else {
                        f.ring.sync_all().await
                    };
                    res.map_err(|e| Failure::new(op, None, e))
                });
            }
            Request::Len { file, reply } => {
                with_file(driver, tasks, file, "stat", None, reply, |f| async move {
                    let stat = f
                        .ring
                        .statx()
                        .await
                        .map_err(|e| Failure::new("stat", None, e))?;
                    Ok(stat.stx_size)
                });
            }
            Request::SetLen { file, len, reply } => {
                with_file(
                    driver,
                    tasks,
                    file,
                    "set_len",
                    Some(len),
                    reply,
                    move |f| async move {
                        let std = f.std.clone();
                        blocking("set_len", Some(len), move || std.set_len(len)).await
                    },
                );
            }
            Request::CreateDirAll { path, reply } => {
                tasks.spawn_local(async move {
                    let _ = reply.send(
                        blocking("create_dir_all", None, move || {
                            std::fs::create_dir_all(&path)
                        })
                        .await,
                    );
                });
            }
            Request::ListDir { path, reply } => {
                tasks.spawn_local(async move {
                    let _ = reply.send(blocking("read_dir", None, move || list_dir(&path)).await);
                });
            }
            Request::RemoveFile { path, reply } => {
                let path_ops = driver.path_ops;
                tasks.spawn_local(async move {
                    let res = if path_ops {
                        tokio_uring::fs::remove_file(&path)
                            .await
                            .map_err(|e| Failure::new("remove_file", None, e))
                    } else {
                        blocking("remove_file", None, move || std::fs::remove_file(&path)).await
                    };
                    let _ = reply.send(res);
                });
            }
            Request::Rename { from, to, reply } => {
                let path_ops = driver.path_ops;
                tasks.spawn_local(async move {
                    let res = if path_ops {
                        tokio_uring::fs::rename(&from, &to)
                            .await
                            .map_err(|e| Failure::new("rename", None, e))
                    } else {
                        blocking("rename", None, move || std::fs::rename(&from, &to)).await
                    };
                    let _ = reply.send(res);
                });
            }
            Request::SyncDir { path, reply } => {
                tasks.spawn_local(async move {
                    let res = blocking("sync directory", None, move || {
                        std::fs::File::open(&path)?.sync_all()
                    })
                    .await;
                    let _ = reply.send(res);
                });
            }
            Request::Exists { path, reply } => {
                tasks.spawn_local(async move {
                    let _ = reply.send(exists(&path).await);
                });
            }
        }
    }

    /// Resolves `file` and starts `op` on it, or answers at once if the id is not open.
    fn with_file<T, F, Fut>(
        driver: &Driver,
        tasks: &mut JoinSet<()>,
        file: u64,
        op_name: &'static str,
        offset: Option<u64>,
        reply: Reply<T>,
        op: F,
    ) where
        T: 'static,
        F: FnOnce(Rc<OpenFile>) -> Fut,
        Fut: std::future::Future<Output = Answer<T>> + 'static,
    {
        let Some(open) = driver.files.borrow().get(&file).cloned() else {
            let e = io::Error::other(format!("file id {file} is not open in the io_uring driver"));
            let _ = reply.send(Err(Failure::new(op_name, offset, e)));
            return;
        };
        let fut = op(open);
        tasks.spawn_local(async move {
            let _ = reply.send(fut.await);
        });
    }

    /// Runs a blocking std call on the runtime's blocking pool.
    async fn blocking<T: Send + 'static>(
        op: &'static str,
        offset: Option<u64>,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Answer<T> {
        match tokio::task::spawn_blocking(f).await {
            Ok(res) => res.map_err(|e| Failure::new(op, offset, e)),
            Err(e) => Err(Failure::new(
                op,
                offset,
                io::Error::other(format!("the blocking task failed: {e}")),
            )),
        }
    }

    async fn open(
        driver: &Driver,
        path: PathBuf,
        mode: OpenMode,
        extra_dup: bool,
    ) -> Answer<(u64, Option<std::fs::File>)> {
        let path_for_file = path.clone();
        let std = blocking("open", None, move || {
            let o = std_open_options(mode);
            let file = o.open(&path)?;
            let dup = file.try_clone()?;
            let extra = if extra_dup {
                Some(file.try_clone()?)
            } else {
                None
            };
            Ok((file, dup, extra))
        })
        .await;
        let (file, dup, extra) = std?;
        let id = driver.next_id.get();
        driver.next_id.set(id + 1);
        let open = OpenFile {
            ring: tokio_uring::fs::File::from_std(file),
            std: Arc::new(dup),
            direct: mode == OpenMode::DirectDurable,
            path: path_for_file,
        };
        driver.files.borrow_mut().insert(id, Rc::new(open));
        Ok((id, extra))
    }

    fn overflow() -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, "file offset overflows u64")
    }

    /// Reads up to `len` bytes, looping over short reads until `len` bytes or the end of file.
    async fn read(f: &OpenFile, offset: u64, len: usize) -> Answer<Bytes> {
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        // Every pass reads at least one byte or ends the loop, so it runs at most `len` times.
        while buf.len() < len {
            let done = buf.len();
            let pos = offset
                .checked_add(done as u64)
                .ok_or_else(|| Failure::new("read", Some(offset), overflow()))?;
            let (res, slice) = f.ring.read_at(buf.slice(done..len), pos).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::new("read", Some(offset), e)),
            }
        }
        debug_assert!(buf.len() <= len);
        Ok(Bytes::from(buf))
    }

    /// Writes all of `data` (`write_all_at` loops over short writes).
    async fn write(f: &OpenFile, offset: u64, data: Bytes) -> Answer<()> {
        if f.direct {
            check_direct(&f.path, offset, data.len()).map_err(|e| {
                Failure::new(
                    "direct write",
                    Some(offset),
                    io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
                )
            })?;
            let len = data.len();
            let (buf, start) = aligned_copy(&data);
            let (res, _) = f
                .ring
                .write_all_at(buf.slice(start..start + len), offset)
                .await;
            return res.map_err(|e| Failure::new("direct write", Some(offset), e));
        }
        // Zero-copy when `data` is the only handle to a `Vec`-backed buffer, else one copy.
        let (res, _) = f.ring.write_all_at(Vec::from(data), offset).await;
        res.map_err(|e| Failure::new("write", Some(offset), e))
    }

    /// Submits up to [`BATCH_IN_FLIGHT_MAX`] writes at once, then awaits them; a short write is
    /// finished on its own. After a failure no further writes are submitted, the ones in flight
    /// are awaited, and the first failure is returned.
    async fn write_batch(f: &OpenFile, writes: Vec<(u64, Bytes)>) -> Answer<()> {
        if f.direct {
            // Durable direct writes each need an aligned copy; keep them in order.
            for (offset, data) in writes {
                write(f, offset, data).await?;
            }
            return Ok(());
        }
        let mut first_failure: Option<Failure> = None;
        let mut writes = writes.into_iter().filter(|(_, data)| !data.is_empty());
        while first_failure.is_none() {
            let in_flight: Vec<_> = writes
                .by_ref()
                .take(BATCH_IN_FLIGHT_MAX)
                .map(|(offset, data)| (offset, f.ring.write_at(Vec::from(data), offset).submit()))
                .collect();
            if in_flight.is_empty() {
                break;
            }
            for (offset, op) in in_flight {
                let (res, buf) = op.await;
                let res = match res {
                    Ok(n) if n == buf.len() => Ok(()),
                    Ok(0) => Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the write wrote no bytes",
                    )),
                    Ok(n) => match offset.checked_add(n as u64) {
                        Some(pos) => f.ring.write_all_at(buf.slice(n..), pos).await.0,
                        None => Err(overflow()),
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    first_failure.get_or_insert(Failure::new("write", Some(offset), e));
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    fn list_dir(path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    async fn exists(path: &Path) -> Answer<bool> {
        let stat = async {
            tokio_uring::fs::StatxBuilder::new()
                .pathname(path)?
                .flags(0)
                .statx()
                .await
        };
        match stat.await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Failure::new("stat", None, e)),
        }
    }
}
