//! Collection actors: each owns the working tree of one collection, applies writes at once,
//! logs them, and publishes a new version when the log reports them durable.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use persistx_io::format::catalog::{self, RecordOp};
use persistx_io::format::node::KIND_SCRATCH;
use persistx_runtime::{Actor, Reply};
use tokio::sync::{Notify, OwnedMutexGuard};

use super::alloc::Epoch;
use super::scratch;
use super::{CkptState, EngineInner};
use crate::error::{Error, Result};
use crate::tree::{self, Child, PageSource, Val, WriteCtx};
use crate::wal::Durability;

/// What a collection is. Stored in the catalog; opening with another kind is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Key -> value.
    Map = 1,
    /// Keys only.
    Set = 2,
    /// Positional list (keys are generated).
    List = 3,
}

impl Kind {
    /// The kind stored as this byte, if any.
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Map),
            2 => Some(Kind::Set),
            3 => Some(Kind::List),
            _ => None,
        }
    }

    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Map => "map",
            Kind::Set => "set",
            Kind::List => "list",
        }
    }
}

/// Identity of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionInfo {
    /// Its id (never reused).
    pub id: u32,
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The key type it was created with.
    pub key_type: String,
    /// The value type it was created with.
    pub value_type: String,
}

/// One immutable version of a collection's tree.
#[derive(Debug)]
pub struct Version {
    /// The tree.
    pub root: Child,
    /// Every record of this collection up to this LSN is in the tree, none after it.
    pub lsn: u64,
    /// The actor's batch number that made it.
    pub seq: u64,
    /// Keeps pages this version may read from being reused.
    pub(crate) _epoch: Arc<Epoch>,
    /// The decoded root node of a clean root (as `Ptr::Dirty`, a node in memory), kept once
    /// a reader loaded it (the root is read by every lookup; this spares the buffer pool's
    /// hottest entry).
    pub(crate) pinned: std::sync::OnceLock<tree::Ptr>,
}

impl Version {
    /// The root as a node in memory, if it is at hand: a dirty root, or a clean root that a
    /// reader already loaded. `None` for a delta root or a clean root not loaded yet.
    pub(crate) fn root_now(&self) -> Option<&tree::Ptr> {
        match &self.root.ptr {
            tree::Ptr::Dirty(_) => Some(&self.root.ptr),
            tree::Ptr::Clean(_) => self.pinned.get(),
            tree::Ptr::Delta(_) => None,
        }
    }
}

/// A change requested of a collection.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace; answers the old value.
    Put(Bytes, Bytes),
    /// Remove; answers the old value.
    Delete(Bytes),
    /// Insert or replace; answers only whether the key existed (no old value is read or
    /// kept: for large batches).
    Set(Bytes, Bytes),
    /// Remove; answers only whether the key existed.
    Unset(Bytes),
    /// Remove everything.
    Clear,
    /// Remove and answer the first entry.
    PopFirst,
    /// Remove and answer the last entry.
    PopLast,
    /// List: append a value.
    PushBack(Bytes),
    /// List: prepend a value.
    PushFront(Bytes),
    /// List: insert a value at a position (`0..=len`).
    InsertAt(u64, Bytes),
    /// List: replace the value at a position; answers the old one.
    SetAt(u64, Bytes),
    /// List: remove and answer the value at a position.
    RemoveAt(u64),
    /// List: keep only the first `n` entries.
    Truncate(u64),
}

/// The answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Nothing to answer (clear, push, insert, truncate).
    Done,
    /// The value the key or position held before, if any.
    Old(Option<Bytes>),
    /// The entry removed, if any.
    Popped(Option<(Bytes, Bytes)>),
    /// Whether the key existed before ([`Op::Set`], [`Op::Unset`]).
    Existed(bool),
}

/// One write request: its ops, durability and where to answer.
type WriteReq = (Vec<Op>, Durability, Reply<Result<Vec<OpResult>>>);

/// A collection's own version handed to a checkpoint (bulk writes): id, version, freed runs.
pub(crate) type OwnVersion = (u32, Arc<Version>, Vec<(u64, u64)>);

pub(crate) enum CollMsg {
    Write {
        ops: Vec<Op>,
        durability: Durability,
        reply: Reply<Result<Vec<OpResult>>>,
    },
    /// A write too large for one log record: applied and made durable by a checkpoint that
    /// the caller has locked (`guard`).
    Bulk {
        ops: Vec<Op>,
        guard: OwnedMutexGuard<CkptState>,
        reply: Reply<Result<Vec<OpResult>>>,
    },
    /// A bulk write in parts (see [`super::BulkWrite`]).
    BulkBegin {
        reply: Reply<Result<()>>,
    },
    BulkChunk {
        ops: Vec<Op>,
        reply: Reply<Result<Vec<OpResult>>>,
    },
    /// Key ops of a bulk write applied at its end, sorted and spilled as a run.
    BulkStage {
        ops: Vec<Op>,
        reply: Reply<Result<()>>,
    },
    /// `commit`: the checkpoint lock's guard to commit with; `None` rolls back (the guard
    /// then rides along so the lock is released only after the rollback).
    BulkEnd {
        commit: bool,
        guard: OwnedMutexGuard<CkptState>,
        reply: Reply<Result<u64>>,
    },
    Freeze {
        reply: Reply<Frozen>,
    },
    /// Wait until every write is published, answer the published version, then hold (no
    /// writes applied) until `release` resolves or is dropped: for snapshots consistent
    /// across collections.
    Pause {
        reply: Reply<Arc<Version>>,
        release: tokio::sync::oneshot::Receiver<()>,
    },
    Swizzle {
        map: Arc<tree::WrittenMap>,
        reply: Reply<()>,
    },
    /// The runs the working tree stopped using since the checkpoint in force (for verify).
    Held {
        reply: Reply<Vec<(u64, u64)>>,
    },
    /// Make dirty (up to `budget` of) the nodes stored at page `above` or later, so the next
    /// checkpoint moves them lower in the file; answers how many were made dirty.
    Relocate {
        above: u64,
        /// Also overflow values stored there (reads every leaf).
        values: bool,
        budget: u64,
        reply: Reply<Result<u64>>,
    },
    /// Rewrite (up to `budget` new nodes of) under-full leaves as fewer, fuller ones
    /// ([`tree::repack`]); answers how many leaves that saved.
    Repack {
        budget: u64,
        reply: Reply<Result<u64>>,
    },
}

/// A collection's part of a checkpoint.
pub(crate) struct Frozen {
    pub(crate) version: Arc<Version>,
    pub(crate) lsn: u64,
    pub(crate) freed: Vec<(u64, u64)>,
}

/// State a collection shares with its handles and the version-publishing tasks.
pub(crate) struct CollShared {
    pub(crate) info: CollectionInfo,
    pub(crate) published: ArcSwap<Version>,
    pending: AtomicU64,
    idle: Notify,
    poisoned: AtomicBool,
}

impl CollShared {
    pub(crate) fn new(info: CollectionInfo, version: Version) -> Self {
        CollShared {
            info,
            published: ArcSwap::from_pointee(version),
            pending: AtomicU64::new(0),
            idle: Notify::new(),
            poisoned: AtomicBool::new(false),
        }
    }

    fn publish(&self, v: Arc<Version>) {
        self.published.rcu(|cur| {
            if cur.seq < v.seq {
                v.clone()
            } else {
                cur.clone()
            }
        });
    }

    /// Releases `n` units of `pending`, waking `wait_idle` when none is left.
    fn release(&self, n: u64) {
        if n > 0 && self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A bulk write in progress.
pub(crate) struct BulkState {
    /// The working tree before it, for a rollback.
    saved_root: Child,
    saved_freed: usize,
    saved_released: usize,
    /// Pages written by spills: first page -> count.
    spilled: HashMap<u64, u64>,
    /// The first failure of a part: the bulk write can only be rolled back.
    failed: Option<Error>,
    /// Staged runs on scratch pages (first page, count), in staging order.
    staged: Vec<(u64, u64)>,
    /// The last staged part, sorted, not yet written as a run.
    staged_mem: Option<Vec<Op>>,
    /// Staged ops applied so far whose key was present.
    existed: u64,
    /// Holds the buffer pool at its least budget while the bulk write runs (taken and
    /// dropped by `bulk_end` before the writes that waited are applied).
    pool: Option<PoolHold>,
}

/// Holds the buffer pool at its least budget (a quarter of the memory budget) while it
/// lives: a bulk write's sorted runs, spills and merge use memory that the dirty count does
/// not see, so the pool must not take the room dirty nodes leave (compare, 1,000,000 pairs:
/// peak RSS of the bulk load 85 MiB above the harness with the pool at three quarters, 53
/// with it held at a quarter).
pub(crate) struct PoolHold(Arc<EngineInner>);

impl PoolHold {
    pub(crate) fn new(engine: &Arc<EngineInner>) -> PoolHold {
        engine.pool_holds.fetch_add(1, Ordering::AcqRel);
        engine.resize_pool();
        // What the pool evicted goes back to the system before the bulk write needs it.
        persistx_io::bufs::release_kept();
        persistx_io::bufs::trim_allocator();
        PoolHold(engine.clone())
    }
}

impl Drop for PoolHold {
    fn drop(&mut self) {
        self.0.pool_holds.fetch_sub(1, Ordering::AcqRel);
        self.0.resize_pool();
    }
}

pub(crate) struct CollActor {
    pub(crate) shared: Arc<CollShared>,
    pub(crate) engine: Arc<EngineInner>,
    pub(crate) working: Child,
    pub(crate) seq: u64,
    /// Runs no longer referenced from version `tag` on.
    pub(crate) freed: Vec<(u64, (u64, u64))>,
    /// Base pages of deltas that left the working tree from version `tag` on (see
    /// `tree::WriteCtx::released`): freed by [`CollActor::resolve_released`] once no delta
    /// of the working tree uses them.
    pub(crate) released: Vec<(u64, u64)>,
    pub(crate) dirty: u64,
    /// Bytes charged (deltas, interior nodes made dirty) since `dirty` last counted them
    /// (below one page's worth).
    pub(crate) charge_carry: u64,
    /// The bulk write in progress, if any.
    pub(crate) bulk: Option<BulkState>,
    /// Writes that arrived during a bulk write.
    pub(crate) deferred: Vec<WriteReq>,
    /// The last group of writes handed to the log, while it may still take more (see
    /// [`OpenGroup`]), with the log's drain count when its records were queued.
    pub(crate) open: Option<(Arc<Mutex<OpenGroup>>, u64)>,
}

/// A group of writes whose records are queued with the log and not yet durable: its version
/// (the working tree after it) waits to be published, its callers to be answered.
///
/// While the log has not yet taken its records, the next group's records will be written
/// and synced with them: that group absorbs this one (takes its callers, answers them with
/// its own version) and drops this version first, so its changes need not copy the nodes
/// this version shares with the working tree. Without that, every batch the actor takes
/// (often one or two writes while the log syncs) would copy each node on its writes' paths.
pub(crate) struct OpenGroup {
    /// The tree to publish; `None` once absorbed.
    root: Option<Child>,
    answered: Vec<Answer>,
    durability: Durability,
    /// What the log answered, once it did: too late to absorb.
    outcome: Option<Result<u64>>,
    /// Units of `CollShared::pending` released when the log answers: this group's own and
    /// those of the groups it absorbed; none once it is absorbed itself (the absorbing
    /// group holds them until it has published), so `wait_idle` never returns while an
    /// absorbed group's writes are still unpublished.
    held: u64,
}

/// A caller waiting for its write to be published, and what to answer.
type Answer = (Reply<Result<Vec<OpResult>>>, Vec<OpResult>);

/// A group absorbed by the next one, with what the absorbing writes took over from it.
struct Absorbed {
    group: Arc<Mutex<OpenGroup>>,
    callers: Vec<Answer>,
    durability: Durability,
    /// The log's drain count when its records were queued.
    drains: u64,
    /// Its units of `CollShared::pending` (see `OpenGroup::held`).
    held: u64,
}

/// The most bytes of log record one batch writes before the batch is split; larger single
/// writes take the bulk path.
pub(crate) const RECORD_SPLIT: usize = 16 << 20;

/// How many results say the key was present.
fn existed(results: &[OpResult]) -> u64 {
    results
        .iter()
        .filter(|r| matches!(r, OpResult::Existed(true) | OpResult::Old(Some(_))))
        .count() as u64
}

/// Ops a bulk write applies between checks of its dirty nodes.
const BULK_STEP: usize = 4096;

fn list_key_after(last: Option<&[u8]>) -> Vec<u8> {
    match last {
        None => 0x8000_0000_0000_0001u64.to_be_bytes().to_vec(),
        Some(k) => {
            let mut p = [0u8; 8];
            let n = k.len().min(8);
            p[..n].copy_from_slice(&k[..n]);
            let x = u64::from_be_bytes(p);
            match x.checked_add(if x.wrapping_add(1) & 0xFF == 0 { 2 } else { 1 }) {
                Some(y) => y.to_be_bytes().to_vec(),
                None => list_key_between(k, None),
            }
        }
    }
}

fn list_key_before(first: &[u8]) -> Vec<u8> {
    let mut p = [0u8; 8];
    let n = first.len().min(8);
    p[..n].copy_from_slice(&first[..n]);
    let x = u64::from_be_bytes(p);
    let step = if x.wrapping_sub(1) & 0xFF == 0 { 2 } else { 1 };
    match x.checked_sub(step) {
        Some(y) if y > 0 => y.to_be_bytes().to_vec(),
        _ => list_key_between(&[], Some(first)),
    }
}

/// A key strictly between `a` and `b` (or after `a`), never ending in a zero byte. Keys
/// are read as base-256 fractions; generated keys never end in 0, so distinct keys are
/// distinct fractions.
pub(crate) fn list_key_between(a: &[u8], b: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bound = b.is_some();
    let mut i = 0;
    loop {
        let da = u32::from(a.get(i).copied().unwrap_or(0));
        let db = if bound {
            u32::from(b.and_then(|b| b.get(i)).copied().unwrap_or(0))
        } else {
            256
        };
        if db > da + 1 {
            out.push(((da + db) / 2) as u8);
            return out;
        }
        out.push(da as u8);
        if db == da + 1 {
            bound = false;
        }
        i += 1;
    }
}

impl CollActor {
    /// Recounts the working tree's dirty memory (`tree::dirty_nodes`) and corrects the
    /// engine's total by the difference (the estimate added per write drifts: copies of
    /// nodes a snapshot shared are not counted, nodes dropped by merges are, and dirty
    /// interior nodes grown by merges are not). A delta made whole or split keeps its
    /// charge until then, on purpose: giving it back at once (measured, stop 11) made the
    /// checkpoints of 1,000-insert transactions start later and grow, and one of them
    /// then ran into the next phase's 32 concurrent writers (22-40k commits/s instead of
    /// 72-74k in the comparison); the overstatement is small and never understates.
    fn recount_dirty(&mut self) {
        let before = self.dirty;
        self.dirty = tree::dirty_nodes(&self.working, self.engine.pages.limits().page_size);
        self.charge_carry = 0;
        if self.dirty >= before {
            self.engine.add_dirty(self.dirty - before);
        } else {
            self.engine.sub_dirty(before - self.dirty);
        }
    }

    /// Applies one message's ops to the working tree; on error the tree is restored.
    async fn apply(
        &mut self,
        ops: &[Op],
        log: &mut Vec<(u8, Bytes, Bytes)>,
    ) -> Result<Vec<OpResult>> {
        // An undo copy of the root would make the next change copy its whole path (the
        // root is then shared), so keep one only where an op can fail after earlier ops of
        // the same write changed the tree: positions checked against a changed length.
        // Single ops check their arguments before changing anything; any other failure
        // (I/O, damage) may leave the tree half changed and poisons the collection.
        let undo = ops.len() > 1
            && ops
                .iter()
                .any(|o| matches!(o, Op::InsertAt(..) | Op::SetAt(..)));
        let saved = undo.then(|| self.working.clone());
        let (freed_len, released_len, log_len) = (self.freed.len(), self.released.len(), log.len());
        match self.apply_inner(ops, log, true).await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.freed.truncate(freed_len);
                self.released.truncate(released_len);
                log.truncate(log_len);
                match saved {
                    Some(root) => self.working = root,
                    None if matches!(e, Error::InvalidArgument(_)) => {}
                    None => self.shared.poisoned.store(true, Ordering::Release),
                }
                Err(e)
            }
        }
    }

    /// Applies `ops` to the working tree; with `deltas`, puts into clean leaves may be kept
    /// as [`tree::Delta`]s (not for a bulk write: its sorted puts fill each leaf they
    /// touch).
    async fn apply_inner(
        &mut self,
        ops: &[Op],
        log: &mut Vec<(u8, Bytes, Bytes)>,
        deltas: bool,
    ) -> Result<Vec<OpResult>> {
        let engine = self.engine.clone();
        let src: &dyn PageSource = &*engine.pages;
        let tag = self.seq + 1;
        let mut ctx = WriteCtx::new(src);
        ctx.deltas = deltas;
        let mut results = Vec::with_capacity(ops.len());
        let limits = *src.limits();
        for op in ops {
            let r = match op {
                Op::Put(k, v) | Op::Set(k, v) => {
                    let old = tree::insert(
                        &mut ctx,
                        &mut self.working,
                        k.clone(),
                        Val::Inline(v.clone()),
                    )
                    .await?;
                    log.push((1, k.clone(), v.clone()));
                    match op {
                        Op::Set(..) => OpResult::Existed(old.is_some()),
                        _ => OpResult::Old(old_bytes(src, old).await?),
                    }
                }
                Op::Delete(k) | Op::Unset(k) => {
                    let old = tree::remove(&mut ctx, &mut self.working, k).await?;
                    if old.is_some() {
                        log.push((2, k.clone(), Bytes::new()));
                    }
                    match op {
                        Op::Unset(..) => OpResult::Existed(old.is_some()),
                        _ => OpResult::Old(old_bytes(src, old).await?),
                    }
                }
                Op::Clear => {
                    if self.working.count > 0 || !matches!(self.working.ptr, tree::Ptr::Dirty(_)) {
                        let stats = tree::verify(src, &self.working).await?;
                        ctx.freed.extend(stats.pages);
                        ctx.released.extend(stats.delta_bases);
                        self.working = Child::empty();
                        log.push((3, Bytes::new(), Bytes::new()));
                    }
                    OpResult::Done
                }
                Op::PopFirst | Op::PopLast | Op::RemoveAt(_) => {
                    let index = match op {
                        Op::PopFirst => 0,
                        Op::PopLast => self.working.count.wrapping_sub(1),
                        Op::RemoveAt(i) => *i,
                        _ => unreachable!(),
                    };
                    match tree::nth(src, &self.working, index).await? {
                        None => match op {
                            Op::RemoveAt(_) => OpResult::Old(None),
                            _ => OpResult::Popped(None),
                        },
                        Some((k, _)) => {
                            let old = tree::remove(&mut ctx, &mut self.working, &k).await?;
                            log.push((2, k.clone(), Bytes::new()));
                            let v = match old {
                                Some(v) => tree::value_bytes(src, &v).await?,
                                None => Bytes::new(),
                            };
                            match op {
                                Op::RemoveAt(_) => OpResult::Old(Some(v)),
                                _ => OpResult::Popped(Some((k, v))),
                            }
                        }
                    }
                }
                Op::PushBack(v) | Op::PushFront(v) | Op::InsertAt(_, v) => {
                    let len = self.working.count;
                    let at = match op {
                        Op::PushBack(_) => len,
                        Op::PushFront(_) => 0,
                        Op::InsertAt(i, _) => *i,
                        _ => unreachable!(),
                    };
                    if at > len {
                        return Err(Error::InvalidArgument(format!(
                            "list position {at} is past the end (length {len})"
                        )));
                    }
                    let before = if at > 0 {
                        tree::nth(src, &self.working, at - 1).await?.map(|e| e.0)
                    } else {
                        None
                    };
                    let after = if at < len {
                        tree::nth(src, &self.working, at).await?.map(|e| e.0)
                    } else {
                        None
                    };
                    let key = match (&before, &after) {
                        (None, None) => list_key_after(None),
                        (Some(a), None) => list_key_after(Some(a)),
                        (None, Some(b)) => list_key_before(b),
                        (Some(a), Some(b)) => list_key_between(a, Some(b)),
                    };
                    if key.len() > limits.max_key {
                        return Err(Error::InvalidArgument(format!(
                            "list position keys near {at} are exhausted after many inserts at one spot; rewrite the list"
                        )));
                    }
                    let key = Bytes::from(key);
                    tree::insert(
                        &mut ctx,
                        &mut self.working,
                        key.clone(),
                        Val::Inline(v.clone()),
                    )
                    .await?;
                    log.push((1, key, v.clone()));
                    OpResult::Done
                }
                Op::SetAt(i, v) => match tree::nth(src, &self.working, *i).await? {
                    None => {
                        return Err(Error::InvalidArgument(format!(
                            "list position {i} is past the end (length {})",
                            self.working.count
                        )));
                    }
                    Some((k, _)) => {
                        let old = tree::insert(
                            &mut ctx,
                            &mut self.working,
                            k.clone(),
                            Val::Inline(v.clone()),
                        )
                        .await?;
                        log.push((1, k, v.clone()));
                        OpResult::Old(old_bytes(src, old).await?)
                    }
                },
                Op::Truncate(n) => {
                    while self.working.count > *n {
                        let last = self.working.count - 1;
                        let Some((k, _)) = tree::nth(src, &self.working, last).await? else {
                            break;
                        };
                        tree::remove(&mut ctx, &mut self.working, &k).await?;
                        log.push((2, k, Bytes::new()));
                    }
                    OpResult::Done
                }
            };
            results.push(r);
        }
        // Deltas count by their bytes, in whole pages.
        let page = limits.page_size as u64;
        let carry = self.charge_carry + ctx.charged_bytes;
        self.charge_carry = carry % page;
        let added = ctx.dirtied + carry / page;
        self.dirty += added;
        self.engine.add_dirty(added);
        self.freed.extend(ctx.freed.into_iter().map(|r| (tag, r)));
        self.released
            .extend(ctx.released.into_iter().map(|p| (tag, p)));
        Ok(results)
    }

    /// Encodes the batch's changes as log records of about [`RECORD_SPLIT`] bytes, split
    /// only at the boundaries of writes (`ends`: the log length after each write), so that
    /// every write is inside one record and replays all or nothing.
    fn encode_records(&self, log: &[(u8, Bytes, Bytes)], ends: &[usize]) -> Vec<Bytes> {
        let id = self.shared.info.id;
        let mut records = Vec::new();
        let mut start = 0;
        let mut size = 0;
        let to_ops = |part: &[(u8, Bytes, Bytes)]| -> Vec<u8> {
            let ops: Vec<RecordOp<'_>> = part
                .iter()
                .map(|(t, k, v)| match t {
                    1 => RecordOp::Put(k, v),
                    2 => RecordOp::Delete(k),
                    _ => RecordOp::Clear,
                })
                .collect();
            catalog::encode_write(id, &ops)
        };
        let mut prev = 0;
        for &end in ends {
            let len: usize = log[prev..end]
                .iter()
                .map(|(_, k, v)| 9 + k.len() + v.len())
                .sum();
            if size + len > RECORD_SPLIT && prev > start {
                records.push(Bytes::from(to_ops(&log[start..prev])));
                start = prev;
                size = 0;
            }
            size += len;
            prev = end;
        }
        if start < log.len() {
            records.push(Bytes::from(to_ops(&log[start..])));
        }
        records
    }

    fn poisoned_error(&self) -> Error {
        Error::Poisoned {
            cause: format!(
                "an earlier write to collection {:?} failed",
                self.shared.info.name
            ),
        }
    }

    async fn handle_writes(&mut self, writes: Vec<WriteReq>) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            for (_, _, reply) in writes {
                reply.send(Err(self.poisoned_error()));
            }
            return;
        }
        let mut log = Vec::new();
        let mut ends = Vec::new();
        let mut answered = Vec::new();
        let mut durability = Durability::None;
        let mut absorbed = self.absorb_open();
        if let Some(a) = &absorbed {
            durability = a.durability;
        }
        for (ops, d, reply) in writes {
            match self.apply(&ops, &mut log).await {
                Ok(r) => {
                    durability = stronger(durability, d);
                    answered.push((reply, r));
                    ends.push(log.len());
                }
                Err(e) => reply.send(Err(e)),
            }
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            // A write failed half way: nothing of this batch was logged; the working tree
            // goes back to the last durable version and no write is accepted any more.
            self.working = self.shared.published.load().root.clone();
            self.recount_dirty();
            // Absorbed callers too: their writes are gone from the working tree (their
            // records may still become durable, so reopening may show them: an ambiguous
            // failure, as for any write whose answer is an error).
            let (callers, held) = absorbed.map_or((Vec::new(), 0), |a| (a.callers, a.held));
            for (reply, _) in answered.into_iter().chain(callers) {
                reply.send(Err(self.poisoned_error()));
            }
            self.shared.release(held);
            return;
        }
        if log.is_empty()
            && let Some(absorbed) = absorbed.take()
        {
            // Nothing to log after all: the absorbed group's version is the working tree.
            self.give_back(absorbed);
        }
        if answered.is_empty() {
            return;
        }
        if log.is_empty() {
            // Nothing changed (misses): answer from the current state, after anything pending
            // is published, so an answer never reflects a write that could still be lost;
            // if a pending write failed instead, this answer may reflect it: an error.
            let shared = self.shared.clone();
            let failed = self.poisoned_error();
            tokio::spawn(async move {
                shared.wait_idle().await;
                let poisoned = shared.poisoned.load(Ordering::Acquire);
                for (reply, r) in answered {
                    reply.send(if poisoned { Err(failed.clone()) } else { Ok(r) });
                }
            });
            return;
        }
        self.seq += 1;
        let records = self.encode_records(&log, &ends);
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        self.engine.add_wal_bytes(bytes);
        let seq = self.seq;
        let epoch = self.engine.epoch.load_full();
        let shared = self.shared.clone();
        let wal = self.engine.wal.clone();
        let mut held = 1;
        if let Some(a) = absorbed {
            answered.splice(0..0, a.callers);
            held += a.held;
            self.engine.absorbed.fetch_add(1, Ordering::Relaxed);
        }
        let group = Arc::new(Mutex::new(OpenGroup {
            root: Some(self.working.clone()),
            answered,
            durability,
            outcome: None,
            held,
        }));
        shared.pending.fetch_add(1, Ordering::AcqRel);
        // Queue the records with the log now, in order (so LSN order is the order the
        // actor applied them), and wait for durability in a task so the actor keeps
        // applying the next writes meanwhile.
        let drains = wal.drains();
        let mut appends = Vec::with_capacity(records.len());
        let mut submit_error = None;
        for r in records {
            match wal.submit(r, durability).await {
                Ok(a) => appends.push(a),
                Err(e) => {
                    submit_error = Some(e);
                    break;
                }
            }
        }
        self.open = Some((group.clone(), drains));
        tokio::spawn(async move {
            let mut result = Ok(0);
            for a in appends {
                match a.await {
                    Ok(lsn) => result = Ok(lsn),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if let Some(e) = submit_error
                && result.is_ok()
            {
                result = Err(e);
            }
            let (root, answered, held) = {
                let mut g = group.lock().unwrap_or_else(PoisonError::into_inner);
                g.outcome = Some(result.clone());
                (
                    g.root.take(),
                    std::mem::take(&mut g.answered),
                    std::mem::take(&mut g.held),
                )
            };
            match result {
                // Absorbed: the next group publishes and answers.
                Ok(_) if root.is_none() => {}
                Ok(lsn) => {
                    shared.publish(Arc::new(Version {
                        root: root.expect("checked above"),
                        lsn,
                        seq,
                        _epoch: epoch,
                        pinned: Default::default(),
                    }));
                    for (reply, r) in answered {
                        reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    shared.poisoned.store(true, Ordering::Release);
                    for (reply, _) in answered {
                        reply.send(Err(e.clone()));
                    }
                }
            }
            shared.release(held);
        });
    }

    /// Takes over the last group handed to the log if the log has not taken its records
    /// yet (see [`OpenGroup`]): returns its callers and durability, and drops its version so
    /// that the writes applied next change the working tree in place.
    fn absorb_open(&mut self) -> Option<Absorbed> {
        let (group, drains) = self.open.take()?;
        if self.engine.wal.drains() != drains {
            return None;
        }
        let mut g = group.lock().unwrap_or_else(PoisonError::into_inner);
        if g.outcome.is_some() {
            return None;
        }
        g.root = None;
        let callers = std::mem::take(&mut g.answered);
        let held = std::mem::take(&mut g.held);
        let durability = g.durability;
        drop(g);
        Some(Absorbed {
            group,
            callers,
            durability,
            drains,
            held,
        })
    }

    /// Undoes [`CollActor::absorb_open`] when the writes that absorbed a group logged
    /// nothing (so the working tree is the group's version): the group publishes the working
    /// tree when the log answers, or now if it already has.
    fn give_back(&mut self, a: Absorbed) {
        let Absorbed {
            group,
            callers,
            drains,
            held,
            ..
        } = a;
        let mut g = group.lock().unwrap_or_else(PoisonError::into_inner);
        match g.outcome.clone() {
            None => {
                g.root = Some(self.working.clone());
                g.answered = callers;
                g.held = held;
                drop(g);
                // Still open: the next writes may absorb it again.
                self.open = Some((group, drains));
                return;
            }
            Some(Ok(lsn)) => {
                // It is the last group made (any later one would have absorbed it), so
                // the working tree is version `self.seq`.
                self.shared.publish(self.working_version(lsn));
                for (reply, r) in callers {
                    reply.send(Ok(r));
                }
            }
            Some(Err(e)) => {
                for (reply, _) in callers {
                    reply.send(Err(e.clone()));
                }
            }
        }
        drop(g);
        self.shared.release(held);
    }

    async fn handle_bulk(
        &mut self,
        ops: Vec<Op>,
        guard: OwnedMutexGuard<CkptState>,
    ) -> Result<Vec<OpResult>> {
        self.bulk_begin().await?;
        match self.bulk_chunk(ops).await {
            Ok(results) => {
                self.bulk_end(Some(guard)).await?;
                Ok(results)
            }
            // Rolled back: the error says so and carries the cause.
            Err(e) => Err(self.bulk_end(None).await.err().unwrap_or(e)),
        }
    }

    /// Starts a bulk write: everything logged before is published first; writes that
    /// arrive until it ends wait (they would otherwise be published before the bulk write
    /// is durable).
    async fn bulk_begin(&mut self) -> Result<()> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        if self.bulk.is_some() {
            return Err(Error::InvalidArgument(format!(
                "collection {:?} already has a bulk write in progress",
                self.shared.info.name
            )));
        }
        self.shared.wait_idle().await;
        self.bulk = Some(BulkState {
            saved_root: self.working.clone(),
            saved_freed: self.freed.len(),
            saved_released: self.released.len(),
            spilled: HashMap::new(),
            failed: None,
            staged: Vec::new(),
            staged_mem: None,
            existed: 0,
            pool: Some(PoolHold::new(&self.engine)),
        });
        Ok(())
    }

    /// Applies one chunk of a bulk write, sorted by key where the ops allow (a stable sort:
    /// the last write to a key still wins), spilling dirty nodes past half the dirty
    /// budget to pages no superblock references.
    async fn bulk_chunk(&mut self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        let Some(mut state) = self.bulk.take() else {
            return Err(Error::InvalidArgument("no bulk write in progress".into()));
        };
        let r = self.bulk_apply(ops, &mut state).await;
        if let Err(e) = &r {
            state.failed.get_or_insert_with(|| e.clone());
        }
        self.bulk = Some(state);
        r
    }

    async fn bulk_apply(&mut self, ops: Vec<Op>, state: &mut BulkState) -> Result<Vec<OpResult>> {
        if state.failed.is_some() {
            return Err(Error::InvalidArgument(
                "an earlier part of this bulk write failed; it can only be dropped".into(),
            ));
        }
        // Staged parts came first.
        self.merge_staged(state).await?;
        let mut order: Vec<u32> = (0..ops.len() as u32).collect();
        if ops.iter().all(|o| scratch::op_key(o).is_some()) {
            let key = |o: &Op| scratch::op_key(o).cloned().unwrap_or_default();
            order.sort_by(|a, b| key(&ops[*a as usize]).cmp(&key(&ops[*b as usize])));
        }
        let mut sorted_results = Vec::with_capacity(ops.len());
        for part in order.chunks(BULK_STEP) {
            let chunk: Vec<Op> = part.iter().map(|&i| ops[i as usize].clone()).collect();
            sorted_results.extend(self.bulk_step(&chunk, state).await?);
        }
        drop(ops);
        let mut results = vec![OpResult::Done; sorted_results.len()];
        for (r, &i) in sorted_results.into_iter().zip(&order) {
            results[i as usize] = r;
        }
        Ok(results)
    }

    /// Applies one sorted step of a bulk write, spilling dirty nodes past half the dirty
    /// budget to pages no superblock references.
    async fn bulk_step(&mut self, chunk: &[Op], state: &mut BulkState) -> Result<Vec<OpResult>> {
        let spill_nodes = (self.engine.dirty_limit_nodes() / 2).max(64);
        let before = self.freed.len();
        let mut log = Vec::new();
        let results = self.apply_inner(chunk, &mut log, false).await?;
        // Spilled pages this chunk replaced are referenced by nothing (no superblock, no
        // snapshot): reuse them at once.
        if !state.spilled.is_empty() {
            let mut alloc = self.engine.lock_alloc();
            let mut kept = Vec::with_capacity(self.freed.len() - before);
            for (tag, (p, n)) in self.freed.drain(before..) {
                if state.spilled.remove(&p).is_some() {
                    for q in p..p + n {
                        self.engine.pages.uncache(q);
                    }
                    alloc.release(p, n);
                } else {
                    kept.push((tag, (p, n)));
                }
            }
            self.freed.extend(kept);
        }
        if tree::dirty_nodes(&self.working, self.engine.pages.limits().page_size) > spill_nodes {
            let mut runs = Vec::new();
            let spilled = self.spill(&mut runs).await;
            // Recorded even when the spill failed: its pages are allocated, and the
            // rollback must release them.
            state.spilled.extend(runs);
            spilled?;
        }
        Ok(results)
    }

    /// Stages key ops (applied at the end of the bulk write, after every earlier part):
    /// sorted (stably: the last write to a key wins) and, once another part follows,
    /// written as a run to scratch pages.
    async fn bulk_stage(&mut self, mut ops: Vec<Op>) -> Result<()> {
        let Some(mut state) = self.bulk.take() else {
            return Err(Error::InvalidArgument("no bulk write in progress".into()));
        };
        let r = self.stage_into(&mut ops, &mut state).await;
        if let Err(e) = &r {
            state.failed.get_or_insert_with(|| e.clone());
        }
        self.bulk = Some(state);
        r
    }

    async fn stage_into(&mut self, ops: &mut Vec<Op>, state: &mut BulkState) -> Result<()> {
        if state.failed.is_some() {
            return Err(Error::InvalidArgument(
                "an earlier part of this bulk write failed; it can only be dropped".into(),
            ));
        }
        if ops.iter().any(|o| scratch::op_key(o).is_none()) {
            return Err(Error::InvalidArgument(
                "only key ops (put, delete, set, unset) can be staged".into(),
            ));
        }
        ops.sort_by(|a, b| scratch::op_key(a).cmp(&scratch::op_key(b)));
        let Some(prev) = state.staged_mem.replace(std::mem::take(ops)) else {
            return Ok(());
        };
        let pages = scratch::encode_run(&prev, self.engine.pages.limits().capacity);
        drop(prev);
        let n = pages.len() as u64;
        let first = self.engine.lock_alloc().alloc(n);
        // Recorded before the write: a failed write's pages are released by the rollback.
        state.staged.push((first, n));
        self.engine.pages.bump_end(self.engine.lock_alloc().end());
        let writes: Vec<tree::PageWrite> = pages
            .into_iter()
            .enumerate()
            .map(|(i, payload)| tree::PageWrite {
                page: first + i as u64,
                kind: KIND_SCRATCH,
                payload,
            })
            .collect();
        self.engine.pages.write_pages(&writes, 0).await?;
        drop(writes);
        persistx_io::bufs::trim_allocator();
        Ok(())
    }

    /// Merges the staged runs into the working tree in key order (equal keys in staging
    /// order), in steps of [`BULK_STEP`] ops; every scratch page is released, whatever
    /// happens.
    async fn merge_staged(&mut self, state: &mut BulkState) -> Result<()> {
        let mut sources: Vec<scratch::Source> = state
            .staged
            .drain(..)
            .map(|(p, n)| scratch::Source::pages(p, n))
            .collect();
        if let Some(mem) = state.staged_mem.take() {
            sources.push(scratch::Source::Memory(mem.into_iter()));
        }
        if sources.is_empty() {
            return Ok(());
        }
        let r = self.merge_sources(&mut sources, state).await;
        let mut alloc = self.engine.lock_alloc();
        for s in &sources {
            if let Some((p, n)) = s.held() {
                alloc.release(p, n);
            }
        }
        r
    }

    async fn merge_sources(
        &mut self,
        sources: &mut [scratch::Source],
        state: &mut BulkState,
    ) -> Result<()> {
        use std::cmp::Reverse;
        let engine = self.engine.clone();
        let mut heads: Vec<Option<Op>> = Vec::with_capacity(sources.len());
        let mut heap = std::collections::BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            let op = s.next(&engine).await?;
            if let Some(k) = op.as_ref().and_then(scratch::op_key) {
                heap.push(Reverse((k.clone(), i)));
            }
            heads.push(op);
        }
        let mut chunk = Vec::with_capacity(BULK_STEP);
        while let Some(Reverse((_, i))) = heap.pop() {
            let op = heads[i].take().expect("a head per heap entry");
            chunk.push(op);
            let next = sources[i].next(&engine).await?;
            if let Some(k) = next.as_ref().and_then(scratch::op_key) {
                heap.push(Reverse((k.clone(), i)));
            }
            heads[i] = next;
            if chunk.len() == BULK_STEP {
                let results = self.bulk_step(&chunk, state).await?;
                state.existed += existed(&results);
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            let results = self.bulk_step(&chunk, state).await?;
            state.existed += existed(&results);
        }
        Ok(())
    }

    /// Ends a bulk write: with the checkpoint lock's guard and no failure, makes it durable
    /// with a checkpoint and publishes it; else rolls it back. Then applies the writes
    /// that waited.
    async fn bulk_end(&mut self, commit: Option<OwnedMutexGuard<CkptState>>) -> Result<u64> {
        let Some(state) = self.bulk.take() else {
            return Err(Error::InvalidArgument("no bulk write in progress".into()));
        };
        let mut state = state;
        if commit.is_some()
            && state.failed.is_none()
            && let Err(e) = self.merge_staged(&mut state).await
        {
            state.failed = Some(e);
        }
        let hold = state.pool.take();
        let result = match commit {
            Some(guard) if state.failed.is_none() => {
                self.bulk_commit(guard).await.map(|()| state.existed)
            }
            other => {
                self.working = state.saved_root;
                self.freed.truncate(state.saved_freed);
                self.released.truncate(state.saved_released);
                let mut alloc = self.engine.lock_alloc();
                for (p, n) in state.spilled {
                    for q in p..p + n {
                        self.engine.pages.uncache(q);
                    }
                    alloc.release(p, n);
                }
                for (p, n) in state.staged {
                    alloc.release(p, n);
                }
                drop(alloc);
                self.recount_dirty();
                drop(other);
                match state.failed {
                    Some(cause) => Err(Error::RolledBack {
                        collection: self.shared.info.name.clone(),
                        cause: Box::new(cause),
                    }),
                    None => Ok(0),
                }
            }
        };
        // The pool may grow again before the writes that waited run.
        drop(hold);
        let waiting = std::mem::take(&mut self.deferred);
        if !waiting.is_empty() {
            self.handle_writes(waiting).await;
        }
        result
    }

    async fn bulk_commit(&mut self, guard: OwnedMutexGuard<CkptState>) -> Result<()> {
        self.seq += 1;
        // The tree holds every record this collection logged (the bulk write began once
        // all were published): its checkpoint LSN must not be below the last one, or
        // recovery would replay them over it. At `Durability::Eventual` or `None` the
        // log's durable LSN can still be below that record.
        let last_logged = self.shared.published.load().lsn;
        let version = self.working_version(last_logged);
        self.resolve_released();
        let freed: Vec<(u64, u64)> = {
            let seq = self.seq;
            let (now, later): (Vec<_>, Vec<_>) = self.freed.drain(..).partition(|(t, _)| *t <= seq);
            self.freed = later;
            now.into_iter().map(|(_, r)| r).collect()
        };
        let done = self
            .engine
            .checkpoint_locked(guard, Some((self.shared.info.id, version.clone(), freed)))
            .await;
        match done {
            Ok((lsn, map)) => {
                self.swizzle(&map);
                self.shared.publish(self.working_version(lsn));
                Ok(())
            }
            Err(e) => {
                self.shared.poisoned.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Writes the working tree's dirty nodes to pages no superblock references (the caller
    /// holds the checkpoint lock, so none is written meanwhile) to bound memory.
    async fn spill(&mut self, spilled: &mut Vec<(u64, u64)>) -> Result<()> {
        let mut out = tree::Flushed::default();
        {
            let mut alloc = self.engine.lock_alloc();
            let mut f = |n: u64| {
                let p = alloc.alloc(n);
                spilled.push((p, n));
                p
            };
            tree::assign(&self.working, self.engine.pages.limits(), &mut f, &mut out);
        }
        self.engine.pages.bump_end(self.engine.lock_alloc().end());
        self.engine.pages.write_flushed(&mut out, 0, false).await?;
        // Only the working tree: the published version must not point at spilled pages,
        // which a failed bulk write releases at once. The base pages of the deltas written
        // are released (a rollback forgets this).
        let mut hit = HashSet::new();
        let mut bases = Vec::new();
        tree::swizzle(&mut self.working, &out.map, &mut hit, &mut bases);
        let tag = self.seq + 1;
        self.released.extend(bases.into_iter().map(|p| (tag, p)));
        self.recount_dirty();
        drop(out);
        persistx_io::bufs::trim_allocator();
        Ok(())
    }

    /// Rewrites the working tree for the vacuum (see [`Rewrite`]; at most `budget` new dirty
    /// nodes) and publishes the result: the same content, which the next checkpoint writes
    /// lower in the file. Nothing is logged (no entry changes). Skipped during a bulk write
    /// or after a failure. Answers what [`Rewrite`] says.
    async fn rewrite(&mut self, how: Rewrite, budget: u64) -> Result<u64> {
        if self.bulk.is_some() || self.shared.poisoned.load(Ordering::Acquire) {
            return Ok(0);
        }
        let engine = self.engine.clone();
        let src: &dyn PageSource = &*engine.pages;
        let height = tree::height(src, &self.working).await?;
        let before = self.working.clone();
        let mut ctx = WriteCtx::new(src);
        let mut saved = 0;
        let done = match how {
            Rewrite::Relocate { above, values } => {
                tree::relocate(&mut ctx, &mut self.working, height, above, values, budget).await
            }
            Rewrite::Repack => {
                tree::repack(&mut ctx, &mut self.working, height, budget, &mut saved).await
            }
        };
        if let Err(e) = done {
            // Nothing was published or logged: the tree as it was stands.
            self.working = before;
            return Err(e);
        }
        if ctx.dirtied == 0 && ctx.freed.is_empty() && ctx.released.is_empty() {
            return Ok(0);
        }
        self.seq += 1;
        let tag = self.seq;
        self.freed.extend(ctx.freed.into_iter().map(|r| (tag, r)));
        self.released
            .extend(ctx.released.into_iter().map(|p| (tag, p)));
        self.recount_dirty();
        let lsn = self.shared.published.load().lsn;
        self.shared.publish(self.working_version(lsn));
        Ok(match how {
            Rewrite::Relocate { .. } => ctx.dirtied,
            Rewrite::Repack => saved,
        })
    }

    /// The working tree as version `self.seq` at `lsn`, holding the current epoch.
    fn working_version(&self, lsn: u64) -> Arc<Version> {
        Arc::new(Version {
            root: self.working.clone(),
            lsn,
            seq: self.seq,
            _epoch: self.engine.epoch.load_full(),
            pinned: Default::default(),
        })
    }

    /// Replaces written nodes by their pages in the working tree and the published version
    /// (the buffer pool got the clean nodes as they were written).
    fn swizzle(&mut self, map: &tree::WrittenMap) {
        let mut hit = HashSet::new();
        let mut bases = Vec::new();
        tree::swizzle(&mut self.working, map, &mut hit, &mut bases);
        self.recount_dirty();
        // Written pages the working tree no longer uses, and the base pages of the deltas
        // written: the working tree is version `self.seq`, so from that version on.
        let tag = self.seq;
        for run in tree::unreached(map, &hit) {
            self.freed.push((tag, run));
        }
        self.released.extend(bases.into_iter().map(|p| (tag, p)));
        let cur = self.shared.published.load_full();
        let (root, epoch) = if cur.seq == self.seq {
            // The published version is the working tree's state: publish the swizzled
            // working tree itself. Swizzling a copy would give the two trees different
            // node identities; the next checkpoint (which flushes the published version
            // and matches written nodes by identity) would then not clean the working
            // tree's copies, and would count the pages it wrote for the published ones as
            // unreached and free them while the published version still used them.
            (self.working.clone(), self.engine.epoch.load_full())
        } else {
            // An older version (a bulk write about to publish its own): swizzled as well,
            // for readers until then. It keeps the older version's epoch: the pages only it
            // reaches (those the bulk write replaced, the base pages of its deltas) were
            // freed by this checkpoint for the epoch before it, and a reader that loads the
            // copy must hold that epoch, not the new one.
            let mut root = cur.root.clone();
            // (Only the working tree's swizzle frees delta bases.)
            tree::swizzle(&mut root, map, &mut HashSet::new(), &mut Vec::new());
            (root, cur._epoch.clone())
        };
        let v = Arc::new(Version {
            root,
            lsn: cur.lsn,
            seq: cur.seq,
            _epoch: epoch,
            pinned: Default::default(),
        });
        self.shared.published.rcu(|now| {
            if now.seq == v.seq {
                v.clone()
            } else {
                now.clone()
            }
        });
    }

    /// Frees the released base pages no delta of the working tree uses any more, from the
    /// version of their last release on: the last delta using such a page left then (no
    /// delta over it can appear later), so that is the first version that does not use it.
    /// A checkpoint whose version is older still references it (as a delta's base page: it
    /// counts it free on disk) and leaves it for the next one.
    fn resolve_released(&mut self) {
        if self.released.is_empty() {
            return;
        }
        let mut live = Vec::new();
        tree::delta_bases(&self.working, &mut live);
        let live: HashSet<u64> = live.into_iter().collect();
        // By page, the last release first.
        self.released
            .sort_unstable_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        self.released.dedup_by_key(|r| r.1);
        let mut kept = Vec::new();
        for (tag, p) in std::mem::take(&mut self.released) {
            if live.contains(&p) {
                kept.push((tag, p));
            } else {
                self.freed.push((tag, (p, 1)));
            }
        }
        self.released = kept;
    }

    fn freeze(&mut self) -> Frozen {
        self.resolve_released();
        let (version, lsn) = if self.shared.pending.load(Ordering::Acquire) == 0 {
            // Everything this collection logged is published; any later record gets an LSN
            // above the log's durable LSN.
            let v = self.shared.published.load_full();
            let lsn = self.engine.wal.durable_lsn().max(v.lsn);
            (v, lsn)
        } else {
            let v = self.shared.published.load_full();
            let lsn = v.lsn;
            (v, lsn)
        };
        let seq = version.seq;
        let (now, later): (Vec<_>, Vec<_>) = self.freed.drain(..).partition(|(t, _)| *t <= seq);
        self.freed = later;
        Frozen {
            version,
            lsn,
            freed: now.into_iter().map(|(_, r)| r).collect(),
        }
    }
}

/// How [`CollActor::rewrite`] changes the working tree for the vacuum.
#[derive(Debug, Clone, Copy)]
enum Rewrite {
    /// Make dirty the nodes stored at page `above` or later (and, with `values`, the
    /// overflow values stored there; see [`tree::relocate`]); answers how many nodes.
    Relocate { above: u64, values: bool },
    /// Rewrite under-full leaves as fewer, fuller ones ([`tree::repack`]); answers how many
    /// leaves that saved.
    Repack,
}

/// The bytes of a replaced or removed value (an overflow value is read: its pages stay
/// unused until a checkpoint and every older snapshot are gone).
async fn old_bytes(src: &dyn PageSource, old: Option<Val>) -> Result<Option<Bytes>> {
    match old {
        Some(v) => Ok(Some(tree::value_bytes(src, &v).await?)),
        None => Ok(None),
    }
}

fn stronger(a: Durability, b: Durability) -> Durability {
    let rank = |d: Durability| match d {
        Durability::Immediate => 2,
        Durability::Eventual => 1,
        Durability::None => 0,
    };
    if rank(a) >= rank(b) { a } else { b }
}

#[async_trait]
impl Actor for CollActor {
    type Msg = CollMsg;

    async fn handle_batch(&mut self, batch: Vec<CollMsg>) {
        let mut writes = Vec::new();
        for msg in batch {
            match msg {
                CollMsg::Write {
                    ops,
                    durability,
                    reply,
                } if self.bulk.is_some() => self.deferred.push((ops, durability, reply)),
                CollMsg::Write {
                    ops,
                    durability,
                    reply,
                } => writes.push((ops, durability, reply)),
                other => {
                    if !writes.is_empty() {
                        self.handle_writes(std::mem::take(&mut writes)).await;
                    }
                    self.handle(other).await;
                }
            }
        }
        if !writes.is_empty() {
            self.handle_writes(writes).await;
        }
    }

    async fn handle(&mut self, msg: CollMsg) {
        match msg {
            CollMsg::Write {
                ops,
                durability,
                reply,
            } => self.handle_writes(vec![(ops, durability, reply)]).await,
            CollMsg::Bulk { ops, guard, reply } => {
                let r = self.handle_bulk(ops, guard).await;
                reply.send(r);
            }
            CollMsg::BulkBegin { reply } => reply.send(self.bulk_begin().await),
            CollMsg::BulkChunk { ops, reply } => reply.send(self.bulk_chunk(ops).await),
            CollMsg::BulkStage { ops, reply } => reply.send(self.bulk_stage(ops).await),
            CollMsg::BulkEnd {
                commit,
                guard,
                reply,
            } => {
                let r = if commit {
                    self.bulk_end(Some(guard)).await
                } else {
                    let r = self.bulk_end(None).await;
                    drop(guard);
                    r
                };
                reply.send(r);
            }
            CollMsg::Freeze { reply } => reply.send(self.freeze()),
            CollMsg::Pause { reply, release } => {
                self.shared.wait_idle().await;
                reply.send(self.shared.published.load_full());
                let _ = release.await;
            }
            CollMsg::Swizzle { map, reply } => {
                // Versions still waiting for the log hold the tree as it was before the
                // swizzle; published later they would bring back nodes the checkpoint wrote,
                // which the next one would write again (leaking the first pages). Once
                // they are published the published version is the working tree, and both
                // are swizzled.
                self.shared.wait_idle().await;
                self.swizzle(&map);
                reply.send(());
            }
            CollMsg::Held { reply } => {
                let mut released: Vec<u64> = self.released.iter().map(|r| r.1).collect();
                released.sort_unstable();
                released.dedup();
                reply.send(
                    self.freed
                        .iter()
                        .map(|(_, r)| *r)
                        .chain(released.into_iter().map(|p| (p, 1)))
                        .collect(),
                )
            }
            CollMsg::Relocate {
                above,
                values,
                budget,
                reply,
            } => {
                // The relocated tree is published at once: every earlier write must be.
                self.shared.wait_idle().await;
                reply.send(
                    self.rewrite(Rewrite::Relocate { above, values }, budget)
                        .await,
                );
            }
            CollMsg::Repack { budget, reply } => {
                // As for Relocate: the repacked tree is published at once.
                self.shared.wait_idle().await;
                reply.send(self.rewrite(Rewrite::Repack, budget).await);
            }
        }
    }

    async fn on_stop(&mut self) {
        // Versions still being made durable finish in their tasks; wait so that a stopped
        // actor has published everything it acknowledged.
        self.shared.wait_idle().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn list_keys_grow_slowly_at_the_ends() {
        let mut k = list_key_after(None);
        for _ in 0..100_000 {
            let n = list_key_after(Some(&k));
            assert!(n > k);
            k = n;
        }
        assert_eq!(k.len(), 8);
        let mut f = list_key_after(None);
        for _ in 0..100_000 {
            let n = list_key_before(&f);
            assert!(n < f);
            assert_ne!(n.last(), Some(&0));
            f = n;
        }
        assert_eq!(f.len(), 8);
    }

    proptest! {
        #[test]
        fn between_is_strictly_between(a in prop::collection::vec(any::<u8>(), 1..12), b in prop::collection::vec(any::<u8>(), 1..12)) {
            prop_assume!(a.last() != Some(&0) && b.last() != Some(&0) && a != b);
            let (a, b) = if a < b { (a, b) } else { (b, a) };
            let c = list_key_between(&a, Some(&b));
            prop_assert!(a < c && c < b, "{:?} {:?} {:?}", a, c, b);
            prop_assert_ne!(c.last(), Some(&0));
        }

        #[test]
        fn repeated_inserts_at_one_spot_stay_ordered(steps in prop::collection::vec(any::<bool>(), 1..200)) {
            let mut lo = list_key_after(None);
            let mut hi = list_key_after(Some(&lo));
            for left in steps {
                let m = list_key_between(&lo, Some(&hi));
                prop_assert!(lo < m && m < hi);
                if left { hi = m } else { lo = m }
            }
        }
    }
}
