//! The io_uring backend's direct writer: one dedicated thread, `persistx-uring-direct`, that
//! performs the writes to files opened with [`OpenMode::DirectDurable`](crate::OpenMode)
//! (`O_DIRECT | O_DSYNC`) through a raw `io-uring` ring.
//!
//! # Why a second thread
//!
//! A durable direct write is the whole cost of a WAL group commit, and the log actor awaits
//! each one. The `tokio-uring` driver parks in `epoll` and is woken through an eventfd when a
//! completion arrives; this thread instead blocks in `io_uring_enter` itself
//! (`submit_and_wait`), with a ring set up for a single issuer and deferred task work where the
//! kernel allows it, so a completion wakes it directly.
//!
//! # Shape
//!
//! [`DirectWriter`] (held by the backend) and every [`DirectFile`] hold the sending side of one
//! bounded flume channel of commands: register a file (a duplicate of the `O_DIRECT` descriptor),
//! unregister it, write. When nothing is in flight the thread blocks in `recv`; otherwise it
//! takes every waiting command without blocking, submits the new writes and waits in the ring for
//! at least one completion. Each write is copied into an owned buffer aligned to
//! [`DIRECT_ALIGN`], kept in a slab keyed by the operation's `user_data` until its completion is
//! reaped, so the kernel never reads freed memory. A short write is resubmitted for the rest.
//! Files are registered in the ring's fixed-file table when the kernel has one (Linux 5.19);
//! a file's descriptor and slot stay until its last operation completed.
//!
//! The thread ends when every sender is gone, after the operations in flight have completed.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use io_uring::{IoUring, opcode, squeue, types};
use tokio::sync::oneshot;

use super::BACKEND;
use crate::error::{Error, Result};
use crate::vfs::DIRECT_ALIGN;

/// The thread's name.
const THREAD_NAME: &str = "persistx-uring-direct";
/// Submission queue entries of the ring (the completion queue is twice as large).
const RING_ENTRIES: u32 = 256;
/// Writes in the ring at once; beyond that the thread stops taking commands. Never more than
/// the submission queue holds, so a push never finds it full.
const IN_FLIGHT_MAX: usize = RING_ENTRIES as usize;
/// Commands queued before callers wait for room.
const QUEUE_CAPACITY: usize = 1024;
/// Slots of the fixed-file table.
const FILE_SLOTS: u32 = 64;
/// The largest single write submitted (an SQE's length is a `u32`); longer writes go in parts.
const CHUNK_MAX: usize = 1 << 30;
/// Times an operation failing with `EINTR` or `EAGAIN` is resubmitted before failing.
const RETRY_MAX: u32 = 16;
/// Aligned buffers kept for reuse, and the largest one kept.
const POOL_MAX: usize = 32;
const POOL_BUF_MAX: usize = 1 << 20;
/// The smallest buffer allocated, so that slowly growing writes reuse buffers.
const POOL_BUF_MIN: usize = 16 << 10;
/// How long [`DirectWriter::start`] waits for the thread to set up its ring.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// `user_data` of the setup probe's operations (never a slab key).
const PROBE_USER_DATA: u64 = u64::MAX;

type WriteReply = oneshot::Sender<io::Result<()>>;

/// The thread's mailbox.
enum Command {
    /// Takes ownership of a descriptor opened `O_DIRECT | O_DSYNC` under the caller-chosen id.
    Register { id: u64, file: std::fs::File },
    /// Closes the file once its operations in flight have completed.
    Unregister { id: u64 },
    /// Writes all of `data` at `offset` (both already checked for alignment by the caller).
    Write {
        id: u64,
        offset: u64,
        data: Bytes,
        reply: WriteReply,
    },
}

/// The backend's handle on the direct-writer thread.
#[derive(Debug, Clone)]
pub(super) struct DirectWriter {
    tx: flume::Sender<Command>,
    unregister_tx: flume::Sender<u64>,
    next_id: Arc<AtomicU64>,
}

impl DirectWriter {
    /// Spawns the thread and waits until its ring is set up and a probe write went through it.
    /// An error means direct files keep using the `tokio-uring` driver.
    pub(super) fn start() -> std::result::Result<DirectWriter, String> {
        let (tx, rx) = flume::bounded::<Command>(QUEUE_CAPACITY);
        let (unregister_tx, unregister_rx) = flume::unbounded::<u64>();
        let (ready_tx, ready_rx) =
            std::sync::mpsc::sync_channel::<std::result::Result<(), String>>(2);
        let panic_tx = ready_tx.clone();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    run(rx, unregister_rx, ready_tx)
                }));
                if outcome.is_err() {
                    tracing::error!("the io_uring direct writer thread panicked");
                    let _ = panic_tx.send(Err("the direct writer thread panicked".into()));
                }
            })
            .map_err(|e| format!("cannot spawn the direct writer thread: {e}"))?;
        match ready_rx.recv_timeout(SETUP_TIMEOUT) {
            Ok(Ok(())) => Ok(DirectWriter {
                tx,
                unregister_tx,
                next_id: Arc::new(AtomicU64::new(1)),
            }),
            Ok(Err(reason)) => Err(reason),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the direct writer did not set up within {SETUP_TIMEOUT:?}"
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err("the direct writer thread exited during setup".into())
            }
        }
    }

    /// Hands a duplicate of a direct file's descriptor to the thread. `None` if the thread is
    /// gone: the caller then writes through the `tokio-uring` driver.
    pub(super) async fn register(&self, file: std::fs::File) -> Option<DirectFile> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send_async(Command::Register { id, file })
            .await
            .ok()?;
        Some(DirectFile {
            id,
            tx: self.tx.clone(),
            unregister_tx: self.unregister_tx.clone(),
        })
    }
}

/// A direct file registered with the direct writer. Dropping it closes the thread's descriptor
/// after the file's writes in flight have completed.
#[derive(Debug)]
pub(super) struct DirectFile {
    id: u64,
    tx: flume::Sender<Command>,
    unregister_tx: flume::Sender<u64>,
}

impl DirectFile {
    /// Writes all of `data` at `offset`, durably (`O_DSYNC`). The caller has checked that both
    /// are multiples of [`DIRECT_ALIGN`].
    pub(super) async fn write(&self, path: &Path, offset: u64, data: Bytes) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send_async(Command::Write {
                id: self.id,
                offset,
                data,
                reply,
            })
            .await
            .map_err(|_| Error::BackendGone { backend: BACKEND })?;
        answer
            .await
            .map_err(|_| Error::BackendGone { backend: BACKEND })?
            .map_err(|e| Error::io("direct write", path, Some(offset), e))
    }
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        // The command channel keeps the unregistration behind every earlier write of the file.
        // If it is full, the thread is busy with it and drains the side channel right after.
        match self.tx.try_send(Command::Unregister { id: self.id }) {
            Ok(()) | Err(flume::TrySendError::Disconnected(_)) => {}
            Err(flume::TrySendError::Full(_)) => {
                let _ = self.unregister_tx.send(self.id);
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// The thread
// -------------------------------------------------------------------------------------------

/// Builds the ring: single issuer and deferred task work (Linux 6.1) if the kernel has them,
/// else a plain ring.
fn build_ring() -> io::Result<IoUring> {
    match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
    {
        Ok(ring) => Ok(ring),
        Err(e) => {
            tracing::debug!(error = %e, "no SINGLE_ISSUER/DEFER_TASKRUN ring, using a plain one");
            IoUring::new(RING_ENTRIES)
        }
    }
}

/// The thread's body: set up, report, serve.
fn run(
    rx: flume::Receiver<Command>,
    unregister_rx: flume::Receiver<u64>,
    ready: std::sync::mpsc::SyncSender<std::result::Result<(), String>>,
) {
    // Built on this thread: a single-issuer ring belongs to the thread that created it.
    let mut ring = match build_ring() {
        Ok(ring) => ring,
        Err(e) => {
            let _ = ready.send(Err(format!("io_uring setup failed: {e}")));
            return;
        }
    };
    if let Err(e) = probe(&mut ring) {
        let _ = ready.send(Err(format!("the direct writer's probe failed: {e}")));
        return;
    }
    let fixed_files = ring.submitter().register_files_sparse(FILE_SLOTS).is_ok();
    if ready.send(Ok(())).is_err() {
        return;
    }
    drop(ready);
    let mut writer = Writer {
        ring,
        files: HashMap::new(),
        free_slots: if fixed_files {
            (0..FILE_SLOTS).rev().collect()
        } else {
            Vec::new()
        },
        ops: Slab::default(),
        pool: Vec::new(),
        completions: Vec::with_capacity(IN_FLIGHT_MAX),
    };
    writer.serve(&rx, &unregister_rx);
}

/// Checks that the ring runs a no-op and a write (`IORING_OP_WRITE`, Linux 5.6).
#[allow(unsafe_code)]
fn probe(ring: &mut IoUring) -> io::Result<()> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // Static, so it outlives any write still in the kernel if this returns early.
    static BYTE: [u8; 1] = [0];
    let byte = &BYTE;
    let nop = opcode::Nop::new().build().user_data(PROBE_USER_DATA);
    let write = opcode::Write::new(types::Fd(null.as_raw_fd()), byte.as_ptr(), 1)
        .build()
        .user_data(PROBE_USER_DATA);
    for entry in [nop, write] {
        // SAFETY: the write reads one byte of the static `BYTE`, which lives for the whole
        // program, through `null`, whose file the kernel holds a reference to while the
        // operation is in flight (so closing our descriptor early is harmless). The loop below
        // waits for the completion before the next entry.
        unsafe { ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("the submission queue is full"))?;
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e),
            }
            if let Some(cqe) = ring.completion().next() {
                if cqe.result() < 0 {
                    return Err(io::Error::from_raw_os_error(-cqe.result()));
                }
                break;
            }
        }
    }
    Ok(())
}

/// `EINTR`, `EAGAIN` and `EBUSY` from `io_uring_enter` mean "try again".
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// A registered file.
struct FileEntry {
    file: std::fs::File,
    /// Its slot in the fixed-file table, if it has one.
    slot: Option<u32>,
    /// Operations in flight on it; the file stays open until they complete.
    ops: usize,
    /// Unregistered: close when `ops` reaches zero.
    closing: bool,
}

/// A write in flight.
struct Op {
    id: u64,
    offset: u64,
    /// The aligned copy of the data: `buf[start..start + len]`.
    buf: Vec<u8>,
    start: usize,
    len: usize,
    /// Bytes written so far.
    done: usize,
    retries: u32,
    reply: WriteReply,
}

/// The operations in flight, keyed by their `user_data`.
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Op>>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    fn insert(&mut self, op: Op) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = Some(op);
                key
            }
            None => {
                self.entries.push(Some(op));
                self.entries.len() - 1
            }
        }
    }

    fn get(&self, key: usize) -> Option<&Op> {
        self.entries.get(key).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Op> {
        self.entries.get_mut(key).and_then(Option::as_mut)
    }

    fn remove(&mut self, key: usize) -> Option<Op> {
        let op = self.entries.get_mut(key)?.take()?;
        self.free.push(key);
        self.len -= 1;
        Some(op)
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // Only reached with operations in flight if the thread unwinds or gives up on the ring:
        // the kernel may still read their buffers, so leak them. Their callers learn the
        // backend is gone when the reply senders drop.
        for op in self.entries.drain(..).flatten() {
            std::mem::forget(op.buf);
        }
    }
}

/// The thread's state.
struct Writer {
    /// Dropped first: closing the ring cancels what is left in it before the buffers (leaked if
    /// any operation is still in flight) and the files go.
    ring: IoUring,
    files: HashMap<u64, FileEntry>,
    free_slots: Vec<u32>,
    ops: Slab,
    /// Aligned buffers for reuse.
    pool: Vec<Vec<u8>>,
    /// Scratch space for reaped completions: `(user_data, result)`.
    completions: Vec<(u64, i32)>,
}

impl Writer {
    /// Serves commands until every sender is gone and nothing is in flight.
    fn serve(&mut self, rx: &flume::Receiver<Command>, unregister_rx: &flume::Receiver<u64>) {
        let mut open = true;
        loop {
            if self.ops.len == 0 {
                if !open {
                    break;
                }
                // Idle: block until there is work.
                match rx.recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => open = false,
                }
            }
            while open && self.ops.len < IN_FLIGHT_MAX {
                match rx.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(flume::TryRecvError::Empty) => break,
                    Err(flume::TryRecvError::Disconnected) => open = false,
                }
            }
            while let Ok(id) = unregister_rx.try_recv() {
                self.unregister(id);
            }
            if self.ops.len == 0 {
                continue;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if retryable(&e) => {}
                Err(e) => {
                    self.give_up(&e);
                    return;
                }
            }
            self.reap();
        }
        while let Ok(id) = unregister_rx.try_recv() {
            self.unregister(id);
        }
    }

    /// The ring refuses to work: fail every operation in flight (their buffers are leaked by
    /// the slab, as the kernel may still hold them) and stop.
    fn give_up(&mut self, e: &io::Error) {
        tracing::error!(error = %e, "the io_uring direct writer failed; stopping it");
        for op in self.ops.entries.iter_mut().filter_map(Option::take) {
            let Op { buf, reply, .. } = op;
            std::mem::forget(buf);
            let _ = reply.send(Err(io::Error::new(
                e.kind(),
                format!("the io_uring direct writer failed: {e}"),
            )));
        }
        self.ops.len = 0;
        // The kernel may still use the descriptors of the failed operations: keep them open.
        for (_, entry) in self.files.drain() {
            std::mem::forget(entry.file);
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Register { id, file } => self.register(id, file),
            Command::Unregister { id } => self.unregister(id),
            Command::Write {
                id,
                offset,
                data,
                reply,
            } => self.start_write(id, offset, &data, reply),
        }
    }

    fn register(&mut self, id: u64, file: std::fs::File) {
        let slot = self.free_slots.pop().and_then(|slot| {
            match self
                .ring
                .submitter()
                .register_files_update(slot, &[file.as_raw_fd()])
            {
                Ok(_) => Some(slot),
                Err(e) => {
                    tracing::debug!(error = %e, "no fixed-file slot for a direct file");
                    self.free_slots.push(slot);
                    None
                }
            }
        });
        self.files.insert(
            id,
            FileEntry {
                file,
                slot,
                ops: 0,
                closing: false,
            },
        );
    }

    fn unregister(&mut self, id: u64) {
        match self.files.get_mut(&id) {
            Some(entry) if entry.ops == 0 => self.close(id),
            Some(entry) => entry.closing = true,
            None => {}
        }
    }

    /// Closes a file with nothing in flight: frees its slot, then its descriptor.
    fn close(&mut self, id: u64) {
        let Some(entry) = self.files.remove(&id) else {
            return;
        };
        if let Some(slot) = entry.slot {
            const EMPTY: RawFd = -1;
            match self.ring.submitter().register_files_update(slot, &[EMPTY]) {
                Ok(_) => self.free_slots.push(slot),
                // The slot still refers to the file; never hand it out again.
                Err(e) => tracing::warn!(error = %e, slot, "cannot clear a fixed-file slot"),
            }
        }
        drop(entry.file);
    }

    fn start_write(&mut self, id: u64, offset: u64, data: &[u8], reply: WriteReply) {
        let Some(entry) = self.files.get_mut(&id) else {
            let _ = reply.send(Err(io::Error::other(format!(
                "direct file id {id} is not registered with the direct writer"
            ))));
            return;
        };
        if data.is_empty() {
            let _ = reply.send(Ok(()));
            return;
        }
        if offset.checked_add(data.len() as u64).is_none() {
            let _ = reply.send(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file offset overflows u64",
            )));
            return;
        }
        entry.ops += 1;
        let (buf, start) = aligned(&mut self.pool, data);
        let key = self.ops.insert(Op {
            id,
            offset,
            buf,
            start,
            len: data.len(),
            done: 0,
            retries: 0,
            reply,
        });
        self.submit(key);
    }

    /// Pushes the submission for the rest of operation `key`.
    #[allow(unsafe_code)]
    fn submit(&mut self, key: usize) {
        let Some(op) = self.ops.get(key) else {
            return;
        };
        let Some(entry) = self.files.get(&op.id) else {
            // Unreachable: a file stays registered while it has operations.
            self.finish(key, Err(io::Error::other("the direct file went away")));
            return;
        };
        let rest = &op.buf[op.start + op.done..op.start + op.len];
        let chunk = rest.len().min(CHUNK_MAX);
        // `start_write` checked that `offset + len` fits in a u64.
        let pos = op.offset + op.done as u64;
        let sqe = match entry.slot {
            Some(slot) => opcode::Write::new(types::Fixed(slot), rest.as_ptr(), chunk as u32)
                .offset(pos)
                .build(),
            None => opcode::Write::new(
                types::Fd(entry.file.as_raw_fd()),
                rest.as_ptr(),
                chunk as u32,
            )
            .offset(pos)
            .build(),
        };
        let sqe: squeue::Entry = sqe.user_data(key as u64);
        loop {
            // SAFETY: the write reads `chunk` bytes of `op.buf`, which stays in the slab (never
            // moved: a `Vec`'s heap block does not move with it, and it is not resized) until
            // `reap` has taken this operation's completion; if the thread unwinds or gives up
            // first, the slab leaks the buffer instead of freeing it. The descriptor (or the
            // fixed-file slot referring to it) belongs to the file entry, which is neither
            // closed nor cleared while `entry.ops` counts this operation.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            // Unreachable with at most `IN_FLIGHT_MAX` operations: make room and retry.
            if let Err(e) = self.ring.submit()
                && !retryable(&e)
            {
                tracing::warn!(error = %e, "io_uring submit failed while making room");
            }
        }
    }

    /// Takes every completion out of the ring and answers or resubmits its operation.
    fn reap(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        for &(user_data, result) in &completions {
            if user_data == PROBE_USER_DATA {
                continue;
            }
            let key = user_data as usize;
            let Some(op) = self.ops.get_mut(key) else {
                tracing::error!(
                    user_data,
                    "a completion for no operation in the direct writer"
                );
                continue;
            };
            if result < 0 {
                let e = io::Error::from_raw_os_error(-result);
                if matches!(-result, libc::EINTR | libc::EAGAIN) && op.retries < RETRY_MAX {
                    op.retries += 1;
                    self.submit(key);
                } else {
                    self.finish(key, Err(e));
                }
            } else if result == 0 {
                self.finish(
                    key,
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the direct write wrote no bytes",
                    )),
                );
            } else {
                op.done += result as usize;
                if op.done >= op.len {
                    self.finish(key, Ok(()));
                } else {
                    // A short write: write the rest.
                    self.submit(key);
                }
            }
        }
        completions.clear();
        self.completions = completions;
    }

    /// Answers operation `key`, recycles its buffer, and closes its file if it was the last
    /// operation of an unregistered one.
    fn finish(&mut self, key: usize, result: io::Result<()>) {
        let Some(op) = self.ops.remove(key) else {
            return;
        };
        let Op { id, buf, reply, .. } = op;
        let _ = reply.send(result);
        if self.pool.len() < POOL_MAX && buf.len() <= POOL_BUF_MAX + DIRECT_ALIGN {
            self.pool.push(buf);
        }
        let close = match self.files.get_mut(&id) {
            Some(entry) => {
                entry.ops -= 1;
                entry.closing && entry.ops == 0
            }
            None => false,
        };
        if close {
            self.close(id);
        }
    }
}

/// Copies `data` into a buffer (from the pool when one is large enough) at an offset aligned to
/// [`DIRECT_ALIGN`] in memory, as `O_DIRECT` requires. Returns the buffer and that offset.
fn aligned(pool: &mut Vec<Vec<u8>>, data: &[u8]) -> (Vec<u8>, usize) {
    let need = data.len() + DIRECT_ALIGN;
    let mut buf = match pool.iter().position(|b| b.len() >= need) {
        Some(i) => pool.swap_remove(i),
        None => vec![0u8; need.max(POOL_BUF_MIN + DIRECT_ALIGN)],
    };
    let mut start = buf.as_ptr().align_offset(DIRECT_ALIGN);
    if start >= DIRECT_ALIGN {
        // `align_offset` may give up; copy unaligned and let the kernel refuse it rather
        // than index out of bounds.
        start = 0;
    }
    buf[start..start + data.len()].copy_from_slice(data);
    (buf, start)
}
