//! The write-ahead log: segment files of checksummed records, written by one log actor that
//! commits in groups.
//!
//! * [`Wal::open`] recovers the log (see [`recovery`]) and starts the log actor.
//! * [`Wal::append`] hands a record to the actor and resolves with its LSN once the record
//!   is as durable as the chosen [`Durability`] says.
//! * [`Wal::release_below`] lets segments whose records are all below an LSN be recycled
//!   (a checkpoint calls it).
//! * [`Wal::close`] drains queued appends, syncs, and stops the actor.

mod actor;
pub mod commit;
pub mod recovery;
mod segment;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use persistx_io::Vfs;
use persistx_io::format::segment::SEGMENT_HEADER_LEN;
use persistx_runtime::{ActorConfig, ActorRef};

use crate::error::{Error, Result};
use actor::{LogActor, LogMetrics, LogMsg};
pub use commit::{CommitLedger, Durability};
pub use recovery::RecoveryReport;
use segment::SegmentDir;

/// The lock file in the WAL directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Options of the write-ahead log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Preallocated size of each segment file (default 16 MiB; a multiple of 4 KiB from
    /// 4 KiB to 1 GiB).
    pub segment_size: u64,
    /// The durability of [`Wal::append`] (default [`Durability::Immediate`]).
    pub durability: Durability,
    /// How often records written at `Eventual` or `None` are synced (default 50 ms).
    pub sync_interval: Duration,
    /// Capacity of the log actor's mailbox (default 4096 waiting appends).
    pub mailbox_capacity: usize,
    /// Most appends the actor takes into one batch (default 4096).
    pub max_batch: usize,
    /// Write the log with durable direct I/O (`O_DIRECT | O_DSYNC`, whole 4 KiB blocks, no
    /// separate fsync) where the backend and file system allow it (default true); else
    /// buffered writes and `fdatasync`. With direct I/O every write is durable, so records
    /// at `Eventual` are durable when acknowledged.
    pub direct_io: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 16 << 20,
            durability: Durability::Immediate,
            sync_interval: Duration::from_millis(50),
            mailbox_capacity: 4096,
            max_batch: 4096,
            direct_io: true,
        }
    }
}

/// Counters of the log, from [`Wal::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStats {
    /// The last LSN assigned.
    pub last_lsn: u64,
    /// Every LSN up to this one reached the OS.
    pub written_lsn: u64,
    /// Every LSN up to this one is durable.
    pub durable_lsn: u64,
    /// Live segment files.
    pub segments: u64,
    /// Spare segment files waiting for reuse.
    pub spare_segments: u64,
    /// Writes issued (one per group commit).
    pub batches: u64,
    /// `fdatasync` calls issued.
    pub syncs: u64,
    /// True once a failed write or sync has poisoned the log.
    pub poisoned: bool,
}

/// State the log actor publishes for lock-free readers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) durable_lsn: AtomicU64,
    pub(crate) written_lsn: AtomicU64,
    pub(crate) poisoned: AtomicBool,
    /// Batches of queued messages the log actor has taken so far.
    pub(crate) drains: AtomicU64,
}

/// A handle to the write-ahead log. Cheap to clone; `Send + Sync`. The log actor stops when
/// [`Wal::close`] is called or the last handle is dropped (after writing and syncing every
/// record it accepted).
#[derive(Debug, Clone)]
pub struct Wal {
    actor: ActorRef<LogMsg>,
    shared: Arc<Shared>,
    durability: Durability,
    dir: PathBuf,
}

impl Wal {
    /// Opens (creating if needed) the log in directory `dir`, recovers it, and starts the log
    /// actor. Every record of the recovered log is passed to `on_record(lsn, payload)` in
    /// LSN order before this returns.
    ///
    /// Fails with [`Error::Corruption`] if records that had been synced are unreadable.
    /// Must be called inside a tokio runtime.
    pub async fn open_with(
        vfs: Arc<dyn Vfs>,
        dir: impl Into<PathBuf>,
        options: WalOptions,
        mut on_record: impl FnMut(u64, &[u8]) -> Result<()> + Send,
    ) -> Result<(Wal, RecoveryReport)> {
        let dir = dir.into();
        let max = persistx_io::format::segment::MAX_SEGMENT_SIZE;
        if !(4096..=max).contains(&options.segment_size)
            || !options.segment_size.is_multiple_of(4096)
        {
            return Err(Error::InvalidArgument(format!(
                "WAL segment size {} must be a multiple of 4096 in 4096..={max} bytes",
                options.segment_size
            )));
        }
        if options.mailbox_capacity == 0 || options.max_batch == 0 {
            return Err(Error::InvalidArgument(
                "WAL mailbox capacity and batch size must be at least 1".into(),
            ));
        }
        let mut segdir = SegmentDir {
            vfs: vfs.clone(),
            dir: dir.clone(),
            segment_size: options.segment_size,
            spares: Vec::new(),
            next_spare: 0,
        };
        // One log actor per directory: a second one would hand out the same LSNs and
        // overwrite acknowledged records. The lock lives as long as the actor's state.
        if !vfs.exists(&dir).await? {
            vfs.create_dir_all(&dir).await?;
            vfs.sync_dir(&persistx_io::vfs::parent_dir(&dir)).await?;
        }
        let lock = vfs.lock(&dir.join(LOCK_FILE)).await?;
        let recovered = recovery::recover(&mut segdir, &mut on_record).await?;
        let report = recovered.report.clone();
        let last = report.last_lsn.max(recovered.tail.header.first_lsn - 1);
        let direct = if options.direct_io {
            actor::DirectTail::open(&vfs, &recovered.tail, report.tail_offset).await?
        } else {
            None
        };
        let shared = Arc::new(Shared::default());
        shared.durable_lsn.store(last, Ordering::Release);
        shared.written_lsn.store(last, Ordering::Release);
        let actor = LogActor {
            segdir,
            segments: recovered.segments,
            tail: recovered.tail,
            write_offset: report.tail_offset.max(SEGMENT_HEADER_LEN as u64),
            buf: Vec::new(),
            ledger: CommitLedger::new(last),
            poisoned: None,
            shared: shared.clone(),
            sync_interval: Some(options.sync_interval),
            batches: 0,
            syncs: 0,
            metrics: LogMetrics::register(),
            _lock: lock,
            direct,
        };
        let mut config = ActorConfig::new("wal");
        config.mailbox_capacity = options.mailbox_capacity;
        config.max_batch = options.max_batch;
        let actor = persistx_runtime::spawn(actor, config);
        Ok((
            Wal {
                actor,
                shared,
                durability: options.durability,
                dir,
            },
            report,
        ))
    }

    /// [`Wal::open_with`] collecting the recovered records into a vector.
    pub async fn open(
        vfs: Arc<dyn Vfs>,
        dir: impl Into<PathBuf>,
        options: WalOptions,
    ) -> Result<(Wal, RecoveryReport, Vec<(u64, Bytes)>)> {
        let mut records = Vec::new();
        let (wal, report) = Wal::open_with(vfs, dir, options, |lsn, payload| {
            records.push((lsn, Bytes::copy_from_slice(payload)));
            Ok(())
        })
        .await?;
        Ok((wal, report, records))
    }

    /// Appends a record at the log's default durability and returns its LSN once it is
    /// that durable.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes does not withdraw the record: once handed to
    /// the log actor it is written like any other, the LSN is simply not reported.
    pub async fn append(&self, payload: Bytes) -> Result<u64> {
        self.append_with(payload, self.durability).await
    }

    /// Appends a record at the given durability. See [`Durability`] for what each level
    /// guarantees and [`Wal::append`] for cancel safety.
    pub async fn append_with(&self, payload: Bytes, durability: Durability) -> Result<u64> {
        if payload.len() > persistx_io::format::wal::MAX_RECORD_PAYLOAD as usize {
            return Err(Error::RecordTooLarge {
                len: payload.len() as u64,
                max: persistx_io::format::wal::MAX_RECORD_PAYLOAD.into(),
            });
        }
        self.actor
            .ask(|reply| LogMsg::Append {
                payload,
                durability,
                reply,
            })
            .await?
    }

    /// [`Wal::append_with`] in two steps: returns once the record is queued for the log
    /// (records queued one after another from one task get increasing LSNs), with a future
    /// that resolves to the LSN once the record is as durable as `durability` says.
    ///
    /// # Cancel safety
    /// Dropping the first future while it waits for mailbox space leaves the record
    /// unqueued; dropping the returned future does not withdraw a queued record.
    pub async fn submit(
        &self,
        payload: Bytes,
        durability: Durability,
    ) -> Result<impl std::future::Future<Output = Result<u64>> + Send + 'static> {
        if payload.len() > persistx_io::format::wal::MAX_RECORD_PAYLOAD as usize {
            return Err(Error::RecordTooLarge {
                len: payload.len() as u64,
                max: persistx_io::format::wal::MAX_RECORD_PAYLOAD.into(),
            });
        }
        let answer = self
            .actor
            .ask_deferred(|reply| LogMsg::Append {
                payload,
                durability,
                reply,
            })
            .await?;
        Ok(async move { answer.get().await? })
    }

    /// Makes every record appended so far durable; returns the durable LSN.
    ///
    /// # Cancel safety
    /// Safe to drop: the sync happens anyway.
    pub async fn sync(&self) -> Result<u64> {
        self.actor.ask(|reply| LogMsg::Sync { reply }).await?
    }

    /// Declares that records below `lsn` are no longer needed (they are in a checkpoint):
    /// segments holding only such records become spares for reuse.
    ///
    /// # Cancel safety
    /// Safe to drop; the release may or may not have happened.
    pub async fn release_below(&self, lsn: u64) -> Result<()> {
        self.actor
            .ask(|reply| LogMsg::Release { below: lsn, reply })
            .await?
    }

    /// The log's counters.
    pub async fn stats(&self) -> Result<WalStats> {
        Ok(self.actor.ask(|reply| LogMsg::Stats { reply }).await?)
    }

    /// Every LSN up to this one is durable. Lock-free.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// How many batches of queued messages the log actor has begun to handle (the appends
    /// of a batch are written and synced as one group). Records queued while this stays
    /// the same are almost always written in one group: the count moves when the actor
    /// starts on the messages it took, a moment after taking them, so it is a hint for
    /// speed, never for correctness. Lock-free.
    pub fn drains(&self) -> u64 {
        self.shared.drains.load(Ordering::Acquire)
    }

    /// True once a failed write or sync has poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// The log's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Stops accepting appends, writes and syncs every queued one, and stops the actor.
    /// Idempotent.
    ///
    /// # Cancel safety
    /// Safe to drop: the shutdown proceeds without the caller.
    pub async fn close(&self) -> Result<()> {
        self.actor.shutdown().await?;
        if self.is_poisoned() {
            return Err(Error::Poisoned {
                cause: "an earlier write or sync failed".into(),
            });
        }
        Ok(())
    }
}
