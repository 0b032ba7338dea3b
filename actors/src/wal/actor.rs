//! The log actor: owns the tail segment and makes appends durable in groups.
//!
//! It drains every message waiting in its mailbox (up to the batch limit), assigns LSNs,
//! encodes all records into one buffer, issues one write and (if any caller asked for
//! `Immediate`) one `fdatasync`, then answers the whole batch in LSN order. While one batch
//! is being written and synced, writers keep queueing the next one in the mailbox.
//!
//! A failed write or sync poisons the log: the batch's callers get the I/O error, every later
//! caller [`Error::Poisoned`]. Nothing is retried.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use persistx_io::OpenMode;
use persistx_io::format::segment::SEGMENT_HEADER_LEN;
use persistx_io::format::wal::{MAX_LSN, MAX_RECORD_PAYLOAD, encode_record, frame_len};
use persistx_io::vfs::DIRECT_ALIGN;
use persistx_runtime::{Actor, Reply};

use super::commit::{CommitLedger, Durability};
use super::segment::{Segment, SegmentDir};
use super::{Shared, WalStats};
use crate::error::{Error, Result};

/// Unwritten records at `Durability::None` are written once they pass this many bytes.
const NONE_BUFFER_MAX: usize = 1 << 20;
/// How many times the actor yields to the scheduler after answering a group of writers.
const LINGER_YIELDS: usize = 2;

/// Messages of the log actor.
#[derive(Debug)]
pub(crate) enum LogMsg {
    Append {
        payload: Bytes,
        durability: Durability,
        reply: Reply<Result<u64>>,
    },
    Sync {
        reply: Reply<Result<u64>>,
    },
    Release {
        below: u64,
        reply: Reply<Result<()>>,
    },
    Stats {
        reply: Reply<WalStats>,
    },
}

pub(crate) struct LogActor {
    pub(crate) segdir: SegmentDir,
    /// Live segments, oldest first: (sequence number, first LSN, path); the last is `tail`.
    pub(crate) segments: Vec<(u64, u64, PathBuf)>,
    pub(crate) tail: Segment,
    /// Where the next write goes in the tail segment.
    pub(crate) write_offset: u64,
    /// Encoded records not yet written, destined for `write_offset`.
    pub(crate) buf: Vec<u8>,
    pub(crate) ledger: CommitLedger<Reply<Result<u64>>>,
    pub(crate) poisoned: Option<String>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sync_interval: Option<Duration>,
    pub(crate) batches: u64,
    pub(crate) syncs: u64,
    pub(crate) metrics: LogMetrics,
    /// Held while the actor lives: released when its state drops, after `on_stop`.
    pub(crate) _lock: persistx_io::vfs::LockGuard,
    /// The direct-I/O path for the tail segment, when the backend has one.
    pub(crate) direct: Option<DirectTail>,
}

/// The tail segment opened for durable direct writes (`O_DIRECT | O_DSYNC`).
///
/// Direct writes cover whole aligned blocks, so each group commit rewrites the partial block
/// that holds the end of the log: `block` is a byte-exact copy of the segment from the start
/// of that block up to `write_offset`. Rewriting committed bytes with identical bytes keeps
/// them intact whichever sectors of the write reach the disk, so a torn write can only lose
/// the new records. Each write is durable when it returns: no separate fsync, which on
/// io_uring would be handed to a kernel worker thread.
pub(crate) struct DirectTail {
    pub(crate) file: Arc<dyn persistx_io::File>,
    pub(crate) block: Vec<u8>,
}

impl DirectTail {
    /// Opens the direct path for a segment whose log ends at `write_offset`, reading the
    /// partial tail block through the segment's buffered handle. `None` if the backend or
    /// file system has no direct path (e.g. tmpfs refuses `O_DIRECT`).
    pub(crate) async fn open(
        vfs: &Arc<dyn persistx_io::Vfs>,
        seg: &Segment,
        write_offset: u64,
    ) -> Result<Option<DirectTail>> {
        let file = match vfs.open(&seg.path, OpenMode::DirectDurable).await {
            Ok(f) => f,
            Err(persistx_io::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::InvalidInput =>
            {
                tracing::info!(file = %seg.path.display(), "no O_DIRECT here: buffered writes and fdatasync");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let block_start = write_offset / DIRECT_ALIGN as u64 * DIRECT_ALIGN as u64;
        let block = seg
            .file
            .read_at(block_start, (write_offset - block_start) as usize)
            .await?;
        if block.len() as u64 != write_offset - block_start {
            return Err(Error::Corruption {
                file: seg.path.clone(),
                offset: block_start,
                what: "the segment ends inside its valid records".into(),
            });
        }
        Ok(Some(DirectTail {
            file,
            block: block.to_vec(),
        }))
    }
}

/// The log's metrics, registered once (the `metrics` facade: free until a recorder is set).
#[derive(Debug, Clone)]
pub(crate) struct LogMetrics {
    /// Callers answered per group commit.
    group_records: metrics::Histogram,
    /// Duration of each write + fdatasync (or lone fdatasync).
    sync_seconds: metrics::Histogram,
    /// Bytes per write.
    write_bytes: metrics::Histogram,
}

impl LogMetrics {
    pub(crate) fn register() -> LogMetrics {
        LogMetrics {
            group_records: metrics::histogram!("persistx_wal_group_records"),
            sync_seconds: metrics::histogram!("persistx_wal_sync_seconds"),
            write_bytes: metrics::histogram!("persistx_wal_write_bytes"),
        }
    }
}

impl LogActor {
    fn poison(&mut self, cause: &Error) {
        if self.poisoned.is_none() {
            tracing::error!(error = %cause, "write-ahead log poisoned");
            self.poisoned = Some(cause.to_string());
            self.shared.poisoned.store(true, Ordering::Release);
        }
        self.buf.clear();
        for (_, reply) in self.ledger.fail_all() {
            reply.send(Err(cause.clone()));
        }
    }

    fn poisoned_error(&self) -> Option<Error> {
        self.poisoned
            .as_ref()
            .map(|c| Error::Poisoned { cause: c.clone() })
    }

    /// Publishes the written and durable horizons for lock-free readers.
    fn publish(&self) {
        self.shared
            .written_lsn
            .store(self.ledger.written_lsn(), Ordering::Release);
        self.shared
            .durable_lsn
            .store(self.ledger.synced_lsn(), Ordering::Release);
    }

    /// Writes the buffered records (and syncs if asked). On failure the log is poisoned.
    async fn flush(&mut self, sync: bool) -> Result<()> {
        self.flush_upto(self.ledger.last_assigned(), sync).await
    }

    /// Encodes a record, first moving to a new segment if it does not fit in the tail.
    async fn encode(&mut self, lsn: u64, payload: &[u8]) -> Result<()> {
        let need = frame_len(payload.len()) as u64;
        let end = self.write_offset + self.buf.len() as u64 + need;
        if end > self.tail.header.segment_size {
            // Everything in the old segment is synced before the next one exists.
            let before = lsn - 1;
            // Flush records encoded so far (they precede `lsn`).
            let last = self.ledger.last_assigned();
            debug_assert_eq!(last, lsn, "the record being encoded is the last assigned");
            self.flush_upto(before, true).await?;
            let seq = self.tail.header.seq + 1;
            let seg = self
                .segdir
                .create(seq, lsn, SEGMENT_HEADER_LEN as u64 + need)
                .await?;
            self.segments.push((seq, lsn, seg.path.clone()));
            if self.direct.is_some() {
                self.direct =
                    DirectTail::open(&self.segdir.vfs, &seg, SEGMENT_HEADER_LEN as u64).await?;
            }
            self.tail = seg;
            self.write_offset = SEGMENT_HEADER_LEN as u64;
        }
        let watermark = self.ledger.synced_lsn();
        encode_record(&mut self.buf, self.tail.header.seq, lsn, watermark, payload);
        Ok(())
    }

    /// Writes the buffer, which holds the records up to `upto`, and syncs if asked (also
    /// when earlier writes are still unsynced).
    async fn flush_upto(&mut self, upto: u64, sync: bool) -> Result<()> {
        if let Some(direct) = self.direct.as_mut() {
            if !self.buf.is_empty() {
                // Tail block + new records + zeros to the block boundary, durable on return.
                let block_start = self.write_offset - direct.block.len() as u64;
                let end = self.write_offset + self.buf.len() as u64;
                let mut data = std::mem::take(&mut direct.block);
                data.extend_from_slice(&self.buf);
                self.buf.clear();
                data.resize(data.len().next_multiple_of(DIRECT_ALIGN), 0);
                let new_block_start = end / DIRECT_ALIGN as u64 * DIRECT_ALIGN as u64;
                let keep = data
                    [(new_block_start - block_start) as usize..(end - block_start) as usize]
                    .to_vec();
                let len = data.len() as u64;
                let started = Instant::now();
                direct.file.write_at(block_start, Bytes::from(data)).await?;
                direct.block = keep;
                self.write_offset = end;
                self.batches += 1;
                self.syncs += 1;
                self.ledger.mark_written(upto);
                self.ledger.mark_synced(upto);
                self.metrics.write_bytes.record(len as f64);
                self.metrics
                    .sync_seconds
                    .record(started.elapsed().as_secs_f64());
            }
            self.publish();
            return Ok(());
        }
        if !self.buf.is_empty() {
            let data = Bytes::from(std::mem::take(&mut self.buf));
            let len = data.len() as u64;
            let started = Instant::now();
            if sync {
                self.tail
                    .file
                    .write_and_sync(self.write_offset, data)
                    .await?;
            } else {
                self.tail.file.write_at(self.write_offset, data).await?;
            }
            self.write_offset += len;
            self.batches += 1;
            self.ledger.mark_written(upto);
            self.metrics.write_bytes.record(len as f64);
            if sync {
                self.syncs += 1;
                self.ledger.mark_synced(upto);
                self.metrics
                    .sync_seconds
                    .record(started.elapsed().as_secs_f64());
            }
        } else if sync && self.ledger.synced_lsn() < self.ledger.written_lsn() {
            let started = Instant::now();
            self.tail.file.sync_data().await?;
            self.syncs += 1;
            self.ledger.mark_synced(self.ledger.written_lsn());
            self.metrics
                .sync_seconds
                .record(started.elapsed().as_secs_f64());
        }
        self.publish();
        Ok(())
    }

    async fn append(&mut self, payload: Bytes, durability: Durability, reply: Reply<Result<u64>>) {
        if let Some(e) = self.poisoned_error() {
            reply.send(Err(e));
            return;
        }
        if payload.len() > MAX_RECORD_PAYLOAD as usize {
            reply.send(Err(Error::RecordTooLarge {
                len: payload.len() as u64,
                max: MAX_RECORD_PAYLOAD.into(),
            }));
            return;
        }
        if self.ledger.last_assigned() >= MAX_LSN {
            reply.send(Err(Error::InvalidArgument(format!(
                "the log has used every LSN up to {MAX_LSN}"
            ))));
            return;
        }
        let lsn = self.ledger.assign(durability, reply);
        if let Err(e) = self.encode(lsn, &payload).await {
            self.poison(&e);
        }
    }

    async fn release(&mut self, below: u64) -> Result<()> {
        if let Some(e) = self.poisoned_error() {
            return Err(e);
        }
        // Segment i is wholly below `below` if segment i+1 starts at or before it.
        let mut retired = 0;
        while self.segments.len() > 1 && self.segments[1].1 <= below {
            let (_, _, path) = self.segments.remove(0);
            self.segdir.retire(&path).await?;
            retired += 1;
        }
        if retired > 0 {
            self.segdir.vfs.sync_dir(&self.segdir.dir).await?;
        }
        Ok(())
    }

    /// Writes and syncs whatever is pending, then answers every waiter that can be.
    async fn settle(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        let sync = self.ledger.needs_sync();
        let write = sync || self.ledger.needs_write() || self.buf.len() >= NONE_BUFFER_MAX;
        if (write || sync)
            && let Err(e) = self.flush(sync).await
        {
            self.poison(&e);
            return;
        }
        let released = self.ledger.release();
        let group = released.len();
        if group > 0 {
            self.metrics.group_records.record(group as f64);
        }
        for (lsn, reply) in released {
            reply.send(Ok(lsn));
        }
        if group > 1 {
            // Let the writers just answered run before the next batch is drained: they are
            // runnable now and most append again within microseconds. Without this the
            // writers split into two groups that alternate (each batch carries half of them)
            // because the next batch would be taken while the answered half is still waking.
            // A lone writer (group of 1) never waits here.
            for _ in 0..LINGER_YIELDS {
                tokio::task::yield_now().await;
            }
        }
    }
}

#[async_trait::async_trait]
impl Actor for LogActor {
    type Msg = LogMsg;

    async fn handle_batch(&mut self, batch: Vec<LogMsg>) {
        self.shared.drains.fetch_add(1, Ordering::AcqRel);
        for msg in batch {
            match msg {
                LogMsg::Append {
                    payload,
                    durability,
                    reply,
                } => self.append(payload, durability, reply).await,
                LogMsg::Sync { reply } => {
                    if let Some(e) = self.poisoned_error() {
                        reply.send(Err(e));
                    } else {
                        self.ledger.wait_synced(reply);
                    }
                }
                LogMsg::Release { below, reply } => {
                    let r = self.release(below).await;
                    if let Err(e) = &r
                        && self.poisoned.is_none()
                        && !matches!(e, Error::Poisoned { .. })
                    {
                        self.poison(e);
                    }
                    reply.send(r);
                }
                LogMsg::Stats { reply } => reply.send(WalStats {
                    last_lsn: self.ledger.last_assigned(),
                    written_lsn: self.ledger.written_lsn(),
                    durable_lsn: self.ledger.synced_lsn(),
                    segments: self.segments.len() as u64,
                    spare_segments: self.segdir.spares.len() as u64,
                    batches: self.batches,
                    syncs: self.syncs,
                    poisoned: self.poisoned.is_some(),
                }),
            }
        }
        self.settle().await;
    }

    async fn handle(&mut self, msg: LogMsg) {
        self.handle_batch(vec![msg]).await;
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.sync_interval
    }

    async fn on_tick(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        let dirty = !self.buf.is_empty() || self.ledger.synced_lsn() < self.ledger.written_lsn();
        if dirty {
            if let Err(e) = self.flush(true).await {
                self.poison(&e);
                return;
            }
            for (lsn, reply) in self.ledger.release() {
                reply.send(Ok(lsn));
            }
        }
    }

    async fn on_stop(&mut self) {
        // A clean close leaves everything durable, whatever level it was written at.
        self.on_tick().await;
        // Spare segments only save preparing a new one while the log runs: a closed
        // database does not keep them on disk (a failure just leaves one for next time).
        for spare in std::mem::take(&mut self.segdir.spares) {
            if let Err(e) = self.segdir.vfs.remove_file(&spare).await {
                tracing::debug!(error = %e, path = %spare.display(), "spare log segment not removed");
            }
        }
    }
}
