//! The storage engine: a database directory with a page file (`data.px`), a write-ahead log
//! (`wal/`), one actor per collection, checkpoints and recovery.
//!
//! * [`Engine::open`] takes the database lock, reads the superblock in force, the catalog
//!   and the free list, replays the log above each collection's checkpoint LSN, and starts
//!   one actor per collection plus a background checkpointer.
//! * [`Collection::write`] sends changes to the collection's actor, which applies them to its
//!   working tree at once, queues one log record per batch, and publishes the new version
//!   (answering the callers) when the log reports it durable.
//! * [`Collection::snapshot`] is lock-free: the newest published version.
//! * [`Engine::checkpoint`] writes every collection's published version copy-on-write to
//!   free pages, then the catalog and free list, syncs, writes the other superblock slot,
//!   syncs, releases the log below the checkpoint, and turns the written nodes clean.

pub mod alloc;
pub mod collection;
pub mod pagefile;
mod scratch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use persistx_io::format::FormatError;
use persistx_io::format::catalog::{
    self, CatalogEntry, KIND_CATALOG, KIND_FREELIST, Record, RecordOp,
};
use persistx_io::format::superblock::{MAX_PAGE_SIZE, MIN_PAGE_SIZE, Superblock};
use persistx_io::vfs::LockGuard;
use persistx_io::{OpenMode, PoolStats, Vfs};
use persistx_runtime::{ActorConfig, ActorRef};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::tree::{self, Child, PageSource, PageWrite, Ptr, TreeStats, Val, WriteCtx};
use crate::wal::{Durability, Wal, WalOptions, WalStats};
use alloc::{Allocator, Epoch};
use collection::{CollActor, CollMsg, CollShared, Frozen, OwnVersion};
pub use collection::{CollectionInfo, Kind, Op, OpResult, Version};
pub use pagefile::PageFile;

/// The page file's name in the database directory.
pub const DATA_FILE: &str = "data.px";
/// The log's directory in the database directory.
pub const WAL_DIR: &str = "wal";
/// The database lock file.
pub const LOCK_FILE: &str = "LOCK";

/// Options of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Page size of a new database (a power of two, 4 KiB to 64 KiB; default 4 KiB). An
    /// existing database keeps the page size it was created with.
    pub page_size: usize,
    /// Memory budget in bytes (default 64 MiB): up to half for dirty pages (a checkpoint
    /// starts when they pass a quarter of the budget; writers wait while they are over a
    /// half), the buffer pool of clean pages gets what they leave of three quarters, at
    /// least a quarter (misses are mostly served from the OS page cache, a few
    /// microseconds), a sixteenth for interior nodes kept decoded for lookups, and the rest
    /// is room for a checkpoint's pages in flight and the allocator.
    pub cache_bytes: usize,
    /// Durability of writes (default [`Durability::Immediate`]).
    pub durability: Durability,
    /// Options of the log.
    pub wal: WalOptions,
    /// A checkpoint starts when the log has grown this much since the last one (default
    /// 64 MiB).
    pub checkpoint_wal_bytes: u64,
    /// Start checkpoints on their own (default true). `close` always checkpoints.
    pub auto_checkpoint: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            page_size: 4096,
            cache_bytes: 64 << 20,
            durability: Durability::Immediate,
            wal: WalOptions::default(),
            checkpoint_wal_bytes: 64 << 20,
            auto_checkpoint: true,
        }
    }
}

/// The superblock in force and the pages its catalog and free list use.
#[derive(Debug)]
pub(crate) struct CkptState {
    slot: u32,
    number: u64,
    database_id: u64,
    meta_runs: Vec<(u64, u64)>,
}

struct CollEntry {
    shared: Arc<CollShared>,
    actor: ActorRef<CollMsg>,
}

#[derive(Default)]
struct Registry {
    by_name: HashMap<String, CollEntry>,
    next_id: u32,
}

/// The engine's state, shared by the handles, the collection actors and the checkpointer.
pub(crate) struct EngineInner {
    dir: PathBuf,
    options: EngineOptions,
    pub(crate) wal: Wal,
    pub(crate) pages: Arc<PageFile>,
    alloc: Mutex<Allocator>,
    pub(crate) epoch: ArcSwap<Epoch>,
    ckpt: Arc<tokio::sync::Mutex<CkptState>>,
    registry: tokio::sync::Mutex<Registry>,
    dirty_nodes: AtomicU64,
    wal_bytes: AtomicU64,
    trigger: Arc<Notify>,
    /// Notified after every checkpoint (writers throttled by dirty memory wait on it).
    ckpt_done: Notify,
    closed: AtomicBool,
    poisoned: AtomicBool,
    checkpoints: AtomicU64,
    /// Write groups absorbed by the next group (see `collection::OpenGroup`).
    pub(crate) absorbed: AtomicU64,
    /// Bulk writes running, which hold the buffer pool at its least budget (see
    /// `collection::PoolHold`).
    pub(crate) pool_holds: AtomicUsize,
    /// Serializes [`EngineInner::resize_pool`].
    pool_resize: Mutex<()>,
    lock: Mutex<Option<LockGuard>>,
}

impl EngineInner {
    pub(crate) fn lock_alloc(&self) -> MutexGuard<'_, Allocator> {
        self.alloc.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_dirty(&self, n: u64) {
        let total = self.dirty_nodes.fetch_add(n, Ordering::Relaxed) + n;
        if self.options.auto_checkpoint && total > self.dirty_limit_nodes() {
            self.trigger.notify_one();
        }
        self.resize_pool();
    }

    pub(crate) fn sub_dirty(&self, n: u64) {
        let _ = self
            .dirty_nodes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(n))
            });
        self.resize_pool();
    }

    /// Gives the buffer pool what dirty nodes leave of its share of the budget (see
    /// [`pool_budget`]), or its least budget while a bulk write holds it
    /// (`collection::PoolHold`).
    pub(crate) fn resize_pool(&self) {
        // One at a time, each reading both counts under the lock: otherwise a resize that
        // read an older count could store its budget after a newer one.
        let _one = self
            .pool_resize
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let dirty_bytes = if self.pool_holds.load(Ordering::Acquire) > 0 {
            usize::MAX
        } else {
            usize::try_from(self.dirty_nodes.load(Ordering::Relaxed))
                .unwrap_or(usize::MAX)
                .saturating_mul(self.pages.page_size())
        };
        self.pages
            .set_pool_budget(pool_budget(self.options.cache_bytes, dirty_bytes));
    }

    pub(crate) fn add_wal_bytes(&self, n: u64) {
        let total = self.wal_bytes.fetch_add(n, Ordering::Relaxed) + n;
        if self.options.auto_checkpoint && total > self.options.checkpoint_wal_bytes {
            self.trigger.notify_one();
        }
    }

    /// Dirty nodes allowed before a checkpoint starts: a quarter of the budget (writers
    /// wait at twice that; the clean-page pool has another quarter).
    pub(crate) fn dirty_limit_nodes(&self) -> u64 {
        (self.options.cache_bytes / 4 / self.pages.page_size()) as u64
    }

    /// Makes a writer wait while dirty nodes are over twice their budget, until
    /// checkpoints bring them down: memory stays bounded however fast writes come. Waits
    /// on the caller's task, never inside an actor (the checkpoint needs the actors).
    async fn throttle(&self) {
        if !self.options.auto_checkpoint {
            return;
        }
        let hard = self.dirty_limit_nodes().saturating_mul(2);
        while self.dirty_nodes.load(Ordering::Relaxed) > hard
            && !self.closed.load(Ordering::Acquire)
            && !self.poisoned.load(Ordering::Acquire)
        {
            let done = self.ckpt_done.notified();
            self.trigger.notify_one();
            // Bounded: a checkpoint that cannot lower the count (dirty nodes a pending
            // write still holds) must not stall writers for good.
            let _ = tokio::time::timeout(Duration::from_millis(200), done).await;
        }
    }

    fn over_thresholds(&self) -> bool {
        self.dirty_nodes.load(Ordering::Relaxed) > self.dirty_limit_nodes()
            || self.wal_bytes.load(Ordering::Relaxed) > self.options.checkpoint_wal_bytes
    }

    fn check_open(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                cause: "an earlier checkpoint failed".into(),
            });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    async fn checkpoint(self: &Arc<Self>) -> Result<()> {
        let guard = self.ckpt.clone().lock_owned().await;
        self.checkpoint_locked(guard, None).await.map(|_| ())
    }

    /// Shrinks the file while free pages are over a quarter of it: each round makes dirty
    /// the nodes stored past the pages in use (at most `budget` nodes) and checkpoints, which
    /// writes them into free pages lower down (allocation takes the lowest first), frees the
    /// old ones and cuts the free end of the file off. Once moving nodes no longer helps (or
    /// from the start with `values`), rounds also move overflow values stored there. Stops
    /// after `rounds` rounds, or when such a round neither moves anything nor shortens the
    /// file (what is left at the end is held by an open snapshot); a round that moves
    /// nothing checkpoints only if that cuts the end. Returns what it did.
    async fn vacuum(
        self: &Arc<Self>,
        rounds: usize,
        budget: u64,
        min_pages: u64,
        mut values: bool,
        repack: bool,
    ) -> Result<Vacuumed> {
        let start = self.lock_alloc().end();
        let mut moved_total = 0;
        // First, with `repack`, under-full leaves are rewritten as fewer, fuller ones (a
        // round at most `budget` new nodes per collection, then a checkpoint writes them
        // into free pages, the lowest first), until a round saves no leaf.
        let mut repack_rounds = if repack && start >= min_pages {
            rounds
        } else {
            0
        };
        while repack_rounds > 0 {
            repack_rounds -= 1;
            let guard = self.ckpt.clone().lock_owned().await;
            if self.is_poisoned() {
                break;
            }
            let mut saved = 0;
            for a in self.actors().await {
                saved += a.ask(|reply| CollMsg::Repack { budget, reply }).await??;
            }
            tracing::debug!(saved, "repack round");
            if saved == 0 {
                break;
            }
            moved_total += saved;
            self.checkpoint_locked(guard, None).await?;
        }
        for _ in 0..rounds {
            let (end, free, pending) = {
                let mut a = self.lock_alloc();
                // Pages whose last reader went away since the last checkpoint count as free.
                a.reclaim();
                (a.end(), a.free_pages(), a.pending_pages())
            };
            if end < min_pages || free.saturating_mul(4) < end {
                break;
            }
            // Where the file could end: the pages in use, and a little room.
            let used = end - free - pending;
            let above = used + used / 16 + 2;
            if above >= end {
                break;
            }
            let guard = self.ckpt.clone().lock_owned().await;
            if self.is_poisoned() {
                break;
            }
            let mut moved = 0;
            for a in self.actors().await {
                moved += a
                    .ask(|reply| CollMsg::Relocate {
                        above,
                        values,
                        budget,
                        reply,
                    })
                    .await??;
            }
            moved_total += moved;
            if moved > 0 || self.lock_alloc().tail_free() > 0 {
                self.checkpoint_locked(guard, None).await?;
            } else {
                drop(guard);
            }
            let now = self.lock_alloc().end();
            tracing::debug!(above, moved, end_before = end, end = now, "vacuum round");
            if moved == 0 && now >= end {
                if values {
                    break;
                }
                values = true;
            }
        }
        // Pages freed by the last round (once no snapshot read them) may now reach the end:
        // one more checkpoint cuts them off.
        if self.lock_alloc().tail_free() > 0 && !self.is_poisoned() {
            self.checkpoint().await?;
        }
        Ok(Vacuumed {
            cut: start.saturating_sub(self.lock_alloc().end()),
            moved: moved_total,
        })
    }

    /// Every collection's actor.
    async fn actors(&self) -> Vec<ActorRef<CollMsg>> {
        let registry = self.registry.lock().await;
        registry.by_name.values().map(|e| e.actor.clone()).collect()
    }

    /// True once a failed checkpoint or log write poisoned the engine.
    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire) || self.wal.is_poisoned()
    }

    /// Runs a checkpoint; the caller holds the checkpoint lock. `own` is a collection whose
    /// actor is the caller (a bulk write): its version is given, not asked for. Returns that
    /// collection's checkpoint LSN and the map of written nodes (for it to swizzle).
    pub(crate) async fn checkpoint_locked(
        self: &Arc<Self>,
        mut state: tokio::sync::OwnedMutexGuard<CkptState>,
        own: Option<OwnVersion>,
    ) -> Result<(u64, tree::WrittenMap)> {
        let r = self.checkpoint_steps(&mut state, own).await;
        self.ckpt_done.notify_waiters();
        if r.is_err() {
            // Pages may be half written and the allocator's view is unsure: no more
            // checkpoints in this process; reopening recovers from the superblock in force.
            self.poisoned.store(true, Ordering::Release);
        }
        r
    }

    async fn checkpoint_steps(
        self: &Arc<Self>,
        state: &mut CkptState,
        own: Option<OwnVersion>,
    ) -> Result<(u64, tree::WrittenMap)> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned {
                cause: "an earlier checkpoint failed".into(),
            });
        }
        let wal_bytes_before = self.wal_bytes.load(Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        // 1. Freeze every collection: its newest durable version and its exact LSN.
        let mut frozen: Vec<(CollectionInfo, Frozen)> = Vec::new();
        let mut actors: Vec<(u32, ActorRef<CollMsg>)> = Vec::new();
        let mut own_lsn = 0;
        let durable_at_freeze;
        {
            let registry = self.registry.lock().await;
            // Read under the registry lock: a collection created after it gets a create
            // record above this LSN, so releasing the log up to it keeps that record.
            durable_at_freeze = self.wal.durable_lsn();
            for e in registry.by_name.values() {
                let info = e.shared.info.clone();
                match &own {
                    Some((id, version, freed)) if *id == info.id => {
                        own_lsn = self.wal.durable_lsn().max(version.lsn);
                        frozen.push((
                            info,
                            Frozen {
                                version: version.clone(),
                                lsn: own_lsn,
                                freed: freed.clone(),
                            },
                        ));
                    }
                    _ => {
                        let f = e.actor.ask(|reply| CollMsg::Freeze { reply }).await?;
                        actors.push((info.id, e.actor.clone()));
                        frozen.push((info, f));
                    }
                }
            }
        }
        frozen.sort_by_key(|(info, _)| info.id);
        // The log must be durable at least up to every LSN the superblock will name.
        let durable = self.wal.sync().await?;
        let ckpt_lsn = frozen
            .iter()
            .map(|(_, f)| f.lsn)
            .min()
            .unwrap_or(durable_at_freeze)
            .min(durable);
        let limits = *self.pages.limits();
        let t1 = t0.elapsed();
        // 2. Allocate: trees, catalog, free list. The trees' pages are encoded after the
        // allocator lock is released, a few MiB at a time.
        // One map of written nodes per collection: a collection told about another's
        // nodes would count them as written pages it no longer reaches, and free them.
        let mut flushes: Vec<(u32, tree::Flushed)> = Vec::new();
        let mut entries = Vec::new();
        let mut freed: Vec<(u64, u64)> = state.meta_runs.clone();
        let (meta_writes, catalog_root, free_root, end, meta_runs, trimmed) = {
            let mut alloc = self.lock_alloc();
            // Free pages at the end of the file are cut off (the file is truncated once this
            // checkpoint's superblock, which no longer counts them, is durable).
            let trimmed = alloc.trim_tail();
            // The base pages of the deltas this checkpoint writes: its tree no longer
            // references them, so its free list counts them free, while in memory they
            // stay in use until the working trees drop them (then they are freed as any
            // page, at a later checkpoint).
            let mut limbo: Vec<u64> = Vec::new();
            for (info, f) in &frozen {
                let mut out = tree::Flushed::default();
                let root =
                    tree::assign(&f.version.root, &limits, &mut |n| alloc.alloc(n), &mut out);
                flushes.push((info.id, out));
                entries.push(CatalogEntry {
                    id: info.id,
                    kind: info.kind as u8,
                    root,
                    count: f.version.root.count,
                    checkpoint_lsn: f.lsn,
                    name: info.name.clone(),
                    key_type: info.key_type.clone(),
                    value_type: info.value_type.clone(),
                });
                freed.extend(f.freed.iter().copied());
                tree::delta_bases(&f.version.root, &mut limbo);
            }
            // Two deltas can share a base page.
            limbo.sort_unstable();
            limbo.dedup();
            let limbo_runs: Vec<(u64, u64)> = limbo.iter().map(|&p| (p, 1)).collect();
            let mut writes = Vec::new();
            let mut meta_runs = Vec::new();
            let mut cat_pages = catalog::encode_catalog(&entries, limits.capacity);
            let cat_ids: Vec<u64> = cat_pages.iter().map(|_| alloc.alloc(1)).collect();
            // Pages freed by this checkpoint wait for the snapshots of the current epoch.
            let epoch = self.epoch.load_full();
            alloc.defer(&epoch, freed);
            // The free list's own pages come out of the free space they describe: take
            // pages until the list (without them) fits in them. Taking a page shrinks or
            // removes a run, never adds one, so this ends after a round or two.
            let mut free_ids: Vec<u64> = Vec::new();
            let free_runs = loop {
                let runs = alloc.persisted_free_with(&limbo_runs);
                let need = catalog::freelist_pages(runs.len(), limits.capacity);
                if free_ids.len() >= need {
                    break runs;
                }
                for _ in free_ids.len()..need {
                    free_ids.push(alloc.alloc(1));
                }
            };
            let mut free_pages = catalog::encode_freelist(&free_runs, limits.capacity);
            free_pages.resize_with(free_ids.len(), || {
                catalog::encode_freelist(&[], limits.capacity).remove(0)
            });
            for (i, p) in cat_pages.iter_mut().enumerate() {
                catalog::set_next(p, cat_ids.get(i + 1).copied().unwrap_or(0));
            }
            for (i, p) in free_pages.iter_mut().enumerate() {
                catalog::set_next(p, free_ids.get(i + 1).copied().unwrap_or(0));
            }
            for (id, payload) in cat_ids.iter().zip(cat_pages) {
                meta_runs.push((*id, 1));
                writes.push(PageWrite {
                    page: *id,
                    kind: KIND_CATALOG,
                    payload: Bytes::from(payload),
                });
            }
            for (id, payload) in free_ids.iter().zip(free_pages) {
                meta_runs.push((*id, 1));
                writes.push(PageWrite {
                    page: *id,
                    kind: KIND_FREELIST,
                    payload: Bytes::from(payload),
                });
            }
            (
                writes,
                cat_ids[0],
                free_ids[0],
                alloc.end(),
                meta_runs,
                trimmed,
            )
        };
        self.pages.set_end(end);
        let t2 = t0.elapsed();
        // 3. Pages (encoded and written 4 MiB at a time; each written leaf goes to the
        // buffer pool, which keeps what fits), sync, superblock (other slot), sync.
        let mut pages = meta_writes.len();
        for (_, out) in &mut flushes {
            pages += self.pages.write_flushed(out, durable, true).await?;
        }
        self.pages.write_pages(&meta_writes, durable).await?;
        drop(meta_writes);
        let t3 = t0.elapsed();
        self.pages.sync().await?;
        let t4 = t0.elapsed();
        let slot = 1 - state.slot;
        let sb = Superblock {
            page_size: limits.page_size as u32,
            checkpoint: state.number + 1,
            checkpoint_lsn: ckpt_lsn,
            catalog_root,
            free_list_root: free_root,
            page_count: end,
            database_id: state.database_id,
        };
        self.pages.write_superblock(slot, &sb).await?;
        if trimmed > 0 {
            self.pages.truncate(end).await?;
        }
        state.slot = slot;
        state.number += 1;
        state.meta_runs = meta_runs;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        // 4. The new superblock is in force: a new epoch, the log below it released.
        let old = self.epoch.load_full();
        self.epoch.store(old.advance());
        drop(old);
        self.wal.release_below(ckpt_lsn.saturating_add(1)).await?;
        // 5. Written nodes become clean in every collection.
        let mut maps: HashMap<u32, tree::WrittenMap> =
            flushes.into_iter().map(|(id, f)| (id, f.map)).collect();
        for (id, a) in actors {
            let map = Arc::new(maps.remove(&id).unwrap_or_default());
            // A stopped actor has nothing left to swizzle.
            let _ = a.ask(|reply| CollMsg::Swizzle { map, reply }).await;
        }
        // publish: the superblock written and synced, the log released, trees swizzled.
        let t5 = t0.elapsed();
        let reclaimed = self.lock_alloc().reclaim();
        // The nodes the swizzle replaced are free now.
        persistx_io::bufs::trim_allocator();
        tracing::debug!(
            checkpoint = state.number,
            lsn = ckpt_lsn,
            pages,
            reclaimed,
            freeze_ms = t1.as_secs_f64() * 1e3,
            assign_ms = (t2 - t1).as_secs_f64() * 1e3,
            encode_write_ms = (t3 - t2).as_secs_f64() * 1e3,
            sync_ms = (t4 - t3).as_secs_f64() * 1e3,
            publish_ms = (t5 - t4).as_secs_f64() * 1e3,
            "checkpoint"
        );
        let _ = self
            .wal_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(wal_bytes_before))
            });
        let map = own
            .and_then(|(id, _, _)| maps.remove(&id))
            .unwrap_or_default();
        Ok((own_lsn, map))
    }
}

/// A database engine: its page file, log and collections. Cheap to clone. Closing (or
/// dropping the last clone inside a tokio runtime) checkpoints and releases the lock.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
    _handle: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct CloseOnDrop(Weak<EngineInner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade()
            && !inner.closed.load(Ordering::Acquire)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if let Err(e) = close_inner(&inner).await {
                    tracing::warn!(error = %e, "closing a dropped database failed");
                }
            });
        }
    }
}

/// A handle to one collection of an [`Engine`]: byte keys and values. Cheap to clone.
#[derive(Clone)]
pub struct Collection {
    shared: Arc<CollShared>,
    actor: ActorRef<CollMsg>,
    engine: Engine,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("info", &self.shared.info)
            .finish_non_exhaustive()
    }
}

/// The buffer pool's budget when dirty nodes take `dirty_bytes`: clean pages and dirty nodes
/// share three quarters of the memory budget `cache_bytes`, and the pool keeps at least a
/// quarter. So a database that is only read caches three times what it could with a fixed
/// quarter, and writes take their memory back from the pool as they make nodes dirty
/// (checkpoints start at a quarter of dirty memory, writers wait at a half: the pool then has
/// its quarter). The rest of the budget is room for a checkpoint's write chunk, pinned
/// interior nodes (a sixteenth) and the allocator's slack.
fn pool_budget(cache_bytes: usize, dirty_bytes: usize) -> usize {
    (cache_bytes / 4 * 3)
        .saturating_sub(dirty_bytes)
        .max(cache_bytes / 4)
}

/// Looks `key` up in `version` without I/O (see [`tree::find_now`]) and hands an inline
/// value to `f`. When the lookup needs a page that is not at hand, or the value is on
/// overflow pages, gives `f` back with where to resume: the pointer the walk stopped at
/// (valid while `version` lives), or `None` to start again from the root.
#[allow(clippy::type_complexity)] // a result or the pieces to resume with
fn get_now<R, F: FnOnce(&[u8]) -> R>(
    pages: &PageFile,
    version: &Version,
    key: &[u8],
    f: F,
) -> std::result::Result<Option<R>, (F, Option<Ptr>)> {
    let Some(root) = version.root_now() else {
        return Err((f, None));
    };
    match tree::find_now(pages, root, key) {
        tree::Located::Absent => Ok(None),
        tree::Located::Here(tree::ValRef::Inline(b)) => Ok(Some(f(b))),
        tree::Located::InLeaf(leaf, i) => match &*leaf {
            tree::Node::Leaf(l) => match l.value(i) {
                tree::ValRef::Inline(b) => Ok(Some(f(b))),
                tree::ValRef::Overflow { .. } => Err((f, None)),
            },
            tree::Node::Interior(_) => Err((f, None)),
        },
        tree::Located::Here(tree::ValRef::Overflow { .. }) => Err((f, None)),
        tree::Located::Miss(resume) => Err((f, resume)),
    }
}

/// Whether `key` is in `version`, if that is known without I/O; else where to resume (as
/// [`get_now`]).
fn contains_now(
    pages: &PageFile,
    version: &Version,
    key: &[u8],
) -> std::result::Result<bool, Option<Ptr>> {
    let Some(root) = version.root_now() else {
        return Err(None);
    };
    match tree::find_now(pages, root, key) {
        tree::Located::Absent => Ok(false),
        tree::Located::Here(_) | tree::Located::InLeaf(..) => Ok(true),
        tree::Located::Miss(resume) => Err(resume),
    }
}

/// Where a read resumes in a version the caller keeps alive: at `ptr`, where a walk without
/// I/O stopped (only the pointer of the returned child is used).
fn resume_at(ptr: Ptr) -> Child {
    Child { ptr, count: 0 }
}

/// A snapshot of one collection: an immutable tree version and the page file to read it
/// from. `'static`, cheap to clone, never changes.
#[derive(Clone)]
pub struct Snapshot {
    version: Arc<Version>,
    pages: Arc<PageFile>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("lsn", &self.version.lsn)
            .field("len", &self.version.root.count)
            .finish()
    }
}

impl Snapshot {
    /// Entries in the snapshot.
    pub fn len(&self) -> u64 {
        self.version.root.count
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The LSN the snapshot reflects.
    pub fn lsn(&self) -> u64 {
        self.version.lsn
    }

    /// The root for reading: a clean root is resolved once per version and then followed
    /// like an in-memory node.
    async fn read_root(&self) -> Result<Child> {
        let root = &self.version.root;
        match &root.ptr {
            Ptr::Dirty(_) | Ptr::Delta(_) => Ok(root.clone()),
            Ptr::Clean(page) => {
                let ptr = match self.version.pinned.get() {
                    Some(p) => p.clone(),
                    None => {
                        let p = Ptr::Dirty(self.pages.node(*page).await?);
                        let _ = self.version.pinned.set(p.clone());
                        p
                    }
                };
                Ok(Child {
                    ptr,
                    count: root.count,
                })
            }
        }
    }

    /// Where a read that [`get_now`] or [`contains_now`] could not finish goes on: where the
    /// walk stopped, or the root.
    async fn resume(&self, at: Option<Ptr>) -> Result<Child> {
        match at {
            Some(ptr) => Ok(resume_at(ptr)),
            None => self.read_root().await,
        }
    }

    /// The value of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        // A miss or an overflow value: read on, sharing the bytes read instead of copying.
        let at = match get_now(&self.pages, &self.version, key, Bytes::copy_from_slice) {
            Ok(found) => return Ok(found),
            Err((_, at)) => at,
        };
        let root = self.resume(at).await?;
        match tree::get(&*self.pages, &root, key).await? {
            Some(v) => Ok(Some(tree::value_bytes(&*self.pages, &v).await?)),
            None => Ok(None),
        }
    }

    /// True if `key` is present (its value, even a long one, is not read).
    pub async fn contains(&self, key: &[u8]) -> Result<bool> {
        let at = match contains_now(&self.pages, &self.version, key) {
            Ok(found) => return Ok(found),
            Err(at) => at,
        };
        let root = self.resume(at).await?;
        tree::contains(&*self.pages, &root, key).await
    }

    /// Looks `key` up and hands its value's bytes to `f` (no copy for values in a leaf).
    pub async fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R + Send,
    ) -> Result<Option<R>> {
        let (f, at) = match get_now(&self.pages, &self.version, key, f) {
            Ok(found) => return Ok(found),
            Err(miss) => miss,
        };
        let root = self.resume(at).await?;
        tree::get_with(&*self.pages, &root, key, f).await
    }

    /// The key at position `index` (its value is not read).
    pub async fn key_at(&self, index: u64) -> Result<Option<Bytes>> {
        let root = self.read_root().await?;
        Ok(tree::nth(&*self.pages, &root, index).await?.map(|(k, _)| k))
    }

    /// The entry at position `index`.
    pub async fn nth(&self, index: u64) -> Result<Option<(Bytes, Bytes)>> {
        let root = self.read_root().await?;
        match tree::nth(&*self.pages, &root, index).await? {
            Some((k, v)) => Ok(Some((k, tree::value_bytes(&*self.pages, &v).await?))),
            None => Ok(None),
        }
    }

    /// Number of keys below `key`.
    pub async fn rank(&self, key: &[u8]) -> Result<u64> {
        let root = self.read_root().await?;
        tree::rank(&*self.pages, &root, key).await
    }

    /// A cursor at the lower bound (for iterating forward) or after the upper bound (for
    /// iterating backward).
    pub async fn cursor(
        &self,
        bound: std::ops::Bound<&[u8]>,
        forward: bool,
    ) -> Result<tree::Cursor> {
        let root = self.read_root().await?;
        if forward {
            tree::Cursor::lower(&*self.pages, &root, bound).await
        } else {
            tree::Cursor::upper(&*self.pages, &root, bound).await
        }
    }

    /// Moves a cursor of this snapshot; answers the entry passed.
    pub async fn step(
        &self,
        cursor: &mut tree::Cursor,
        forward: bool,
    ) -> Result<Option<(Bytes, Bytes)>> {
        let e = if forward {
            cursor.next(&*self.pages).await?
        } else {
            cursor.prev(&*self.pages).await?
        };
        match e {
            Some((k, v)) => Ok(Some((k, tree::value_bytes(&*self.pages, &v).await?))),
            None => Ok(None),
        }
    }

    /// Moves a cursor of this snapshot and hands the entry passed to `f` by reference (an
    /// overflow value is read first; otherwise nothing is copied), if `keep` accepts its key:
    /// `Some(None)` when it does not, and then the value is not read (a scan's first entry
    /// past its far bound costs no overflow read).
    pub async fn step_with<R>(
        &self,
        cursor: &mut tree::Cursor,
        forward: bool,
        keep: impl FnOnce(&[u8]) -> bool + Send,
        f: impl FnOnce(&[u8], &[u8]) -> R + Send,
    ) -> Result<Option<Option<R>>> {
        let mut f = Some(f);
        let got = cursor
            .step_with(&*self.pages, forward, |k, v| {
                if !keep(k) {
                    return Ok(None);
                }
                match v {
                    tree::ValRef::Inline(v) => Ok(f.take().map(|f| f(k, v))),
                    tree::ValRef::Overflow { len, first_page } => {
                        Err((Bytes::copy_from_slice(k), len, first_page))
                    }
                }
            })
            .await?;
        match got {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err((k, len, first_page))) => {
                let v = self.pages.overflow(first_page, len).await?;
                Ok(Some(f.take().map(|f| f(&k, &v))))
            }
        }
    }

    /// [`Snapshot::step_with`] for the key alone: the value, inline or not, is never read.
    pub async fn step_key_with<R>(
        &self,
        cursor: &mut tree::Cursor,
        forward: bool,
        f: impl FnOnce(&[u8]) -> R + Send,
    ) -> Result<Option<R>> {
        cursor.step_with(&*self.pages, forward, |k, _| f(k)).await
    }

    /// Checks every invariant and checksum of the snapshot's tree.
    pub async fn verify(&self) -> Result<TreeStats> {
        tree::verify(&*self.pages, &self.version.root).await
    }
}

impl Collection {
    /// The collection's identity.
    pub fn info(&self) -> &CollectionInfo {
        &self.shared.info
    }

    /// The newest published version. Lock-free; never waits.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.shared.published.load_full(),
            pages: self.engine.inner.pages.clone(),
        }
    }

    /// Looks `key` up in the newest published version and hands its value's bytes to `f`
    /// (as [`Snapshot::get_with`]). A lookup whose nodes are at hand borrows the published
    /// version and the page file without taking a reference count of either (no write to a
    /// line that every reader shares); one that needs I/O reads from a snapshot.
    pub async fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R + Send,
    ) -> Result<Option<R>> {
        let (f, resume) = {
            let version = self.shared.published.load();
            match get_now(&self.engine.inner.pages, &version, key, f) {
                Ok(found) => return Ok(found),
                // A miss: keep the version walked (its pages stay as they are while it
                // lives) and read from where the walk stopped.
                Err((f, Some(ptr))) => (f, Some((arc_swap::Guard::into_inner(version), ptr))),
                Err((f, None)) => (f, None),
            }
        };
        let pages = &*self.engine.inner.pages;
        match resume {
            Some((version, ptr)) => {
                let found = tree::get_with(pages, &resume_at(ptr), key, f).await;
                drop(version);
                found
            }
            None => self.snapshot().get_with(key, f).await,
        }
    }

    /// True if `key` is in the newest published version (as [`Snapshot::contains`], and
    /// without reference counts as [`Collection::get_with`]).
    pub async fn contains(&self, key: &[u8]) -> Result<bool> {
        let resume = {
            let version = self.shared.published.load();
            match contains_now(&self.engine.inner.pages, &version, key) {
                Ok(found) => return Ok(found),
                Err(Some(ptr)) => Some((arc_swap::Guard::into_inner(version), ptr)),
                Err(None) => None,
            }
        };
        let pages = &*self.engine.inner.pages;
        match resume {
            Some((version, ptr)) => {
                let found = tree::contains(pages, &resume_at(ptr), key).await;
                drop(version);
                found
            }
            None => self.snapshot().contains(key).await,
        }
    }

    /// Applies `ops` atomically (one log record) and answers each, once durable at the
    /// database's durability level.
    ///
    /// # Cancel safety
    /// Dropping the future after the request reached the actor does not withdraw it: the
    /// write is applied and logged; only the answer is lost.
    pub async fn write(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        self.engine.inner.check_open()?;
        self.check_sizes(&ops)?;
        self.engine.inner.throttle().await;
        let size: usize = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) | Op::Set(k, v) => k.len() + v.len() + 9,
                Op::PushBack(v) | Op::PushFront(v) | Op::InsertAt(_, v) | Op::SetAt(_, v) => {
                    v.len() + 30
                }
                _ => 16,
            })
            .sum();
        // Too large for one log record, or so many changes that the dirty nodes they make
        // could pass the dirty budget before a checkpoint: the bulk path, which spills.
        if size > collection::RECORD_SPLIT
            || ops.len() as u64 > self.engine.inner.dirty_limit_nodes()
        {
            // Too large for the log: applied and made durable by a checkpoint.
            let guard = self.engine.inner.ckpt.clone().lock_owned().await;
            return self
                .actor
                .ask(|reply| CollMsg::Bulk { ops, guard, reply })
                .await?;
        }
        let durability = self.engine.inner.options.durability;
        self.actor
            .ask(|reply| CollMsg::Write {
                ops,
                durability,
                reply,
            })
            .await?
    }

    /// Starts a bulk write: changes sent in parts with [`BulkWrite::push`] and made
    /// durable, all at once, by [`BulkWrite::commit`] (a checkpoint, not the log). Memory
    /// stays bounded: dirty nodes are spilled to pages that no superblock references
    /// until the commit. Other writes to this collection wait until it ends, and no
    /// checkpoint runs meanwhile.
    ///
    /// # Cancel safety
    /// Dropping the returned writer without committing rolls the bulk write back.
    pub async fn bulk(&self) -> Result<BulkWrite> {
        self.engine.inner.check_open()?;
        let guard = self.engine.inner.ckpt.clone().lock_owned().await;
        // Made before the actor is asked, so that dropping this future while it waits for
        // the answer rolls back what the actor began (the rollback queues behind the begin)
        // instead of leaving the collection in a bulk write nobody ends; after a failed
        // begin the rollback finds nothing, or ends a bulk write an earlier cancel left.
        let writer = BulkWrite {
            coll: self.clone(),
            guard: Some(guard),
        };
        self.actor
            .ask(|reply| CollMsg::BulkBegin { reply })
            .await??;
        Ok(writer)
    }

    fn check_sizes(&self, ops: &[Op]) -> Result<()> {
        let limits = self.engine.inner.pages.limits();
        let too = |what, len: usize, max: usize| Error::TooLarge {
            what,
            len: len as u64,
            max: max as u64,
            collection: self.shared.info.name.clone(),
        };
        for op in ops {
            match op {
                Op::Put(k, v) | Op::Set(k, v) => {
                    if k.len() > limits.max_key {
                        return Err(too("key", k.len(), limits.max_key));
                    }
                    if v.len() > MAX_VALUE_LEN {
                        return Err(too("value", v.len(), MAX_VALUE_LEN));
                    }
                }
                Op::Delete(k) | Op::Unset(k) if k.len() > limits.max_key => {
                    return Err(too("key", k.len(), limits.max_key));
                }
                Op::PushBack(v) | Op::PushFront(v) | Op::InsertAt(_, v) | Op::SetAt(_, v)
                    if v.len() > MAX_VALUE_LEN =>
                {
                    return Err(too("value", v.len(), MAX_VALUE_LEN));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A bulk write in progress: see [`Collection::bulk`].
pub struct BulkWrite {
    coll: Collection,
    guard: Option<tokio::sync::OwnedMutexGuard<CkptState>>,
}

impl std::fmt::Debug for BulkWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkWrite")
            .field("collection", &self.coll.info().name)
            .finish()
    }
}

impl BulkWrite {
    /// Applies a part (nothing is visible or durable before [`BulkWrite::commit`]).
    ///
    /// # Cancel safety
    /// Dropping the future after the part was sent does not withdraw it.
    pub async fn push(&mut self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        self.coll.check_sizes(&ops)?;
        self.coll
            .actor
            .ask(|reply| CollMsg::BulkChunk { ops, reply })
            .await?
    }

    /// Stages a part of key ops (put, delete, set, unset; others are refused): applied at
    /// [`BulkWrite::commit`], after every pushed part, in key order (for one key, the
    /// last staged op wins). Each part is sorted and, once another follows, written to
    /// scratch pages of the data file, so a bulk write larger than memory is an external
    /// merge sort: the commit reads the runs back a few pages at a time and merges them
    /// into the tree, touching each leaf once. No result per op (use [`BulkWrite::push`]
    /// for those). A later push first applies what was staged.
    ///
    /// # Cancel safety
    /// Dropping the future after the part was sent does not withdraw it.
    pub async fn stage(&mut self, ops: Vec<Op>) -> Result<()> {
        self.coll.check_sizes(&ops)?;
        self.coll
            .actor
            .ask(|reply| CollMsg::BulkStage { ops, reply })
            .await?
    }

    /// Makes every part durable (one checkpoint) and visible, atomically. Returns how many
    /// staged ops found their key present when applied (for staged removals: how many
    /// keys were removed).
    ///
    /// # Cancel safety
    /// Dropping the future after the request was sent lets the commit finish.
    pub async fn commit(mut self) -> Result<u64> {
        let Some(guard) = self.guard.take() else {
            return Err(Error::Closed);
        };
        self.coll
            .actor
            .ask(|reply| CollMsg::BulkEnd {
                commit: true,
                guard,
                reply,
            })
            .await?
    }
}

impl Drop for BulkWrite {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            // Roll back; the lock is released once the actor has done so.
            let (reply_tx, _) = persistx_runtime::Reply::<Result<u64>>::detached();
            let msg = CollMsg::BulkEnd {
                commit: false,
                guard,
                reply: reply_tx,
            };
            match self.coll.actor.try_tell(msg) {
                Ok(()) => {}
                Err(e) if e.is_full() => {
                    let (actor, msg) = (self.coll.actor.clone(), e.into_inner());
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            let _ = actor.tell(msg).await;
                        });
                    }
                }
                // The actor is gone: nothing to roll back.
                Err(_) => {}
            }
        }
    }
}

/// The longest value (bytes after encoding).
pub const MAX_VALUE_LEN: usize = 16 << 20;

/// Counters of an engine, from [`Engine::stats`].
#[derive(Debug, Clone)]
pub struct EngineStats {
    /// Collections: identity and entry count.
    pub collections: Vec<(CollectionInfo, u64)>,
    /// Page size.
    pub page_size: usize,
    /// Pages in the page file.
    pub pages: u64,
    /// Pages free for reuse.
    pub free_pages: u64,
    /// Pages freed but waiting for old snapshots.
    pub pending_pages: u64,
    /// Dirty memory waiting for a checkpoint, in pages: a dirty leaf counts a page,
    /// interior nodes and deltas their memory (see `tree::Dirty`).
    pub dirty_nodes: u64,
    /// Checkpoints completed since open.
    pub checkpoints: u64,
    /// Buffer pool counters.
    pub pool: PoolStats,
    /// Bytes of interior nodes that their parents keep pinned for lookups (outside the
    /// pool; see `tree::pin`), and the most they may take.
    pub pinned_bytes: (usize, usize),
    /// Log counters.
    pub wal: WalStats,
    /// Bytes of the log's segment files.
    pub wal_bytes: u64,
    /// Pages read and written since open.
    pub page_reads: u64,
    /// Pages written since open.
    pub page_writes: u64,
    /// Groups of writes that the next group absorbed while the log had not yet taken
    /// their records: no version of their own was made; their callers were answered with
    /// the absorbing group (its version, or its error).
    pub groups_absorbed: u64,
}

/// What [`Engine::verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Per collection: name and tree statistics.
    pub collections: Vec<(String, TreeStats)>,
    /// Pages in the file.
    pub pages: u64,
    /// Pages free.
    pub free_pages: u64,
    /// Pages neither referenced nor free (space lost until `compact`).
    pub leaked_pages: u64,
}

async fn read_chain(pages: &PageFile, first: u64, kind: u8, max: u64) -> Result<Vec<(u64, Bytes)>> {
    let mut out = Vec::new();
    let mut p = first;
    while p != 0 {
        if out.len() as u64 > max {
            return Err(Error::Corruption {
                file: pages.path().to_path_buf(),
                offset: p * pages.page_size() as u64,
                what: "page chain loops".into(),
            });
        }
        let payload = pages.read_payload(p, kind).await?;
        let next = u64::from_le_bytes(
            payload
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 8]),
        );
        out.push((p, payload));
        p = next;
    }
    Ok(out)
}

fn format_err(path: &Path, offset: u64, e: FormatError) -> Error {
    Error::from(e.at(path, offset))
}

impl Engine {
    /// Opens (creating if needed) the database in `dir` on `vfs`.
    ///
    /// # Errors
    /// [`Error::Locked`] if it is open elsewhere; [`Error::NotADatabase`] if `dir` holds
    /// other files; [`Error::NewerFormat`]; [`Error::Corruption`] naming file and offset.
    pub async fn open(
        vfs: Arc<dyn Vfs>,
        dir: impl Into<PathBuf>,
        options: EngineOptions,
    ) -> Result<Engine> {
        let dir = dir.into();
        if !options.page_size.is_power_of_two()
            || options.page_size < MIN_PAGE_SIZE as usize
            || options.page_size > MAX_PAGE_SIZE as usize
        {
            return Err(Error::InvalidArgument(format!(
                "page size {} is not a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}",
                options.page_size
            )));
        }
        if options.cache_bytes < 1 << 20 {
            return Err(Error::InvalidArgument(format!(
                "cache budget of {} bytes is under the minimum of 1 MiB",
                options.cache_bytes
            )));
        }
        let data_path = dir.join(DATA_FILE);
        if vfs.exists(&dir).await? {
            let names = vfs.list_dir(&dir).await?;
            let ours = |n: &String| n == DATA_FILE || n == WAL_DIR || n == LOCK_FILE;
            if !names.is_empty() && !names.iter().any(|n| n == DATA_FILE) {
                return Err(Error::NotADatabase {
                    path: dir.clone(),
                    reason: format!(
                        "it holds {:?} but no {DATA_FILE}",
                        names.iter().find(|n| !ours(n)).unwrap_or(&names[0])
                    ),
                });
            }
        } else {
            vfs.create_dir_all(&dir).await?;
            vfs.sync_dir(&persistx_io::vfs::parent_dir(&dir)).await?;
        }
        let lock = vfs.lock(&dir.join(LOCK_FILE)).await?;
        let file = vfs.open(&data_path, OpenMode::CreateOrOpen).await?;
        let len = file.len().await?;
        let (page_size, state, sb) = if len == 0 {
            let page_size = options.page_size;
            let database_id = rand::random::<u64>() | 1;
            let sb = Superblock {
                page_size: page_size as u32,
                checkpoint: 1,
                checkpoint_lsn: 0,
                catalog_root: 0,
                free_list_root: 0,
                page_count: 2,
                database_id,
            };
            let mut page = vec![0u8; page_size * 2];
            page[..persistx_io::format::superblock::SUPERBLOCK_LEN].copy_from_slice(&sb.encode(0));
            file.write_and_sync(0, Bytes::from(page)).await?;
            vfs.sync_dir(&dir).await?;
            (
                page_size,
                CkptState {
                    slot: 0,
                    number: 1,
                    database_id,
                    meta_runs: Vec::new(),
                },
                sb,
            )
        } else {
            let (slot, sb) = read_superblock(&*file, &data_path).await?;
            (
                sb.page_size as usize,
                CkptState {
                    slot,
                    number: sb.checkpoint,
                    database_id: sb.database_id,
                    meta_runs: Vec::new(),
                },
                sb,
            )
        };
        let pages = Arc::new(PageFile::new(
            file,
            data_path.clone(),
            page_size,
            pool_budget(options.cache_bytes, 0),
            options.cache_bytes / 16,
        ));
        pages.bump_end(sb.page_count);
        // Catalog and free list.
        let mut state = state;
        let mut entries = Vec::new();
        if sb.catalog_root != 0 {
            for (p, payload) in
                read_chain(&pages, sb.catalog_root, KIND_CATALOG, sb.page_count).await?
            {
                let (_, e) = catalog::decode_catalog(&payload)
                    .map_err(|e| format_err(&data_path, p * page_size as u64, e))?;
                entries.extend(e);
                state.meta_runs.push((p, 1));
            }
        }
        let mut free = Vec::new();
        if sb.free_list_root != 0 {
            for (p, payload) in
                read_chain(&pages, sb.free_list_root, KIND_FREELIST, sb.page_count).await?
            {
                let (_, runs) = catalog::decode_freelist(&payload)
                    .map_err(|e| format_err(&data_path, p * page_size as u64, e))?;
                for (first, n) in runs {
                    if first + n > sb.page_count {
                        return Err(Error::Corruption {
                            file: data_path.clone(),
                            offset: p * page_size as u64,
                            what: format!(
                                "free run {first}+{n} past the file's {} pages",
                                sb.page_count
                            ),
                        });
                    }
                    free.push((first, n));
                }
                state.meta_runs.push((p, 1));
            }
        }
        let allocator = Allocator::new(sb.page_count, &free);
        // The log: replay what lies above the oldest collection checkpoint.
        let min_lsn = entries
            .iter()
            .map(|e| e.checkpoint_lsn)
            .min()
            .unwrap_or(sb.checkpoint_lsn)
            .min(sb.checkpoint_lsn);
        let mut records: Vec<(u64, Bytes)> = Vec::new();
        let mut wal_options = options.wal.clone();
        wal_options.durability = options.durability;
        let (wal, report) = Wal::open_with(
            vfs.clone(),
            dir.join(WAL_DIR),
            wal_options,
            |lsn, payload| {
                if lsn > min_lsn {
                    records.push((lsn, Bytes::copy_from_slice(payload)));
                }
                Ok(())
            },
        )
        .await?;
        // A log that starts after the oldest collection checkpoint: the records between were
        // released by a newer checkpoint whose superblock is now unreadable (the older slot
        // was chosen), or log files are missing. Replaying the rest would mix versions.
        if report.first_lsn > min_lsn.saturating_add(1) {
            return Err(Error::Corruption {
                file: data_path.clone(),
                offset: u64::from(1 - state.slot) * page_size as u64,
                what: format!(
                    "the superblock in force names checkpoint LSN {min_lsn}, but the log starts at LSN {}: a newer superblock is damaged or log files are missing",
                    report.first_lsn
                ),
            });
        }
        let wal_end = wal.durable_lsn();
        if let Some(max) = entries.iter().map(|e| e.checkpoint_lsn).max()
            && wal_end < max
        {
            return Err(Error::Corruption {
                file: dir.join(WAL_DIR),
                offset: 0,
                what: format!(
                    "the log ends at LSN {wal_end}, before the checkpoint's LSN {max}: log files are missing"
                ),
            });
        }
        let epoch = Arc::new(Epoch::default());
        let inner = Arc::new(EngineInner {
            dir: dir.clone(),
            options: options.clone(),
            wal,
            pages: pages.clone(),
            alloc: Mutex::new(allocator),
            epoch: ArcSwap::new(epoch.clone()),
            ckpt: Arc::new(tokio::sync::Mutex::new(state)),
            registry: tokio::sync::Mutex::new(Registry::default()),
            dirty_nodes: AtomicU64::new(0),
            wal_bytes: AtomicU64::new(records.iter().map(|(_, r)| r.len() as u64).sum()),
            trigger: Arc::new(Notify::new()),
            ckpt_done: Notify::new(),
            closed: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            checkpoints: AtomicU64::new(0),
            absorbed: AtomicU64::new(0),
            pool_holds: AtomicUsize::new(0),
            pool_resize: Mutex::new(()),
            lock: Mutex::new(Some(lock)),
        });
        // Rebuild the collections: catalog, then the log.
        struct Rebuilt {
            info: CollectionInfo,
            root: Child,
            lsn: u64,
            ckpt_lsn: u64,
            freed: Vec<(u64, u64)>,
            released: Vec<(u64, u64)>,
        }
        let mut colls: HashMap<u32, Rebuilt> = HashMap::new();
        let mut next_id = 1;
        for e in entries {
            let kind = Kind::from_u8(e.kind).ok_or_else(|| Error::Corruption {
                file: data_path.clone(),
                offset: 0,
                what: format!("catalog entry {:?} has unknown kind {}", e.name, e.kind),
            })?;
            next_id = next_id.max(e.id.saturating_add(1));
            colls.insert(
                e.id,
                Rebuilt {
                    info: CollectionInfo {
                        id: e.id,
                        kind,
                        name: e.name,
                        key_type: e.key_type,
                        value_type: e.value_type,
                    },
                    root: Child {
                        ptr: Ptr::Clean(e.root),
                        count: e.count,
                    },
                    lsn: e.checkpoint_lsn,
                    ckpt_lsn: e.checkpoint_lsn,
                    freed: Vec::new(),
                    released: Vec::new(),
                },
            );
        }
        let wal_dir = dir.join(WAL_DIR);
        let bad_record = |lsn: u64, what: String| Error::Corruption {
            file: wal_dir.clone(),
            offset: lsn,
            what: format!("log record at LSN {lsn}: {what}"),
        };
        for (lsn, payload) in &records {
            let rec =
                catalog::decode_record(payload).map_err(|e| bad_record(*lsn, e.to_string()))?;
            match rec {
                Record::Create {
                    id,
                    kind,
                    name,
                    key_type,
                    value_type,
                } => {
                    next_id = next_id.max(id.saturating_add(1));
                    if colls.contains_key(&id) {
                        continue;
                    }
                    let kind = Kind::from_u8(kind)
                        .ok_or_else(|| bad_record(*lsn, format!("unknown kind {kind}")))?;
                    colls.insert(
                        id,
                        Rebuilt {
                            info: CollectionInfo {
                                id,
                                kind,
                                name,
                                key_type,
                                value_type,
                            },
                            root: Child::empty(),
                            lsn: *lsn,
                            ckpt_lsn: 0,
                            freed: Vec::new(),
                            released: Vec::new(),
                        },
                    );
                }
                Record::Write { id, ops } => {
                    let c = colls.get_mut(&id).ok_or_else(|| {
                        bad_record(*lsn, format!("write to unknown collection {id}"))
                    })?;
                    if *lsn <= c.ckpt_lsn {
                        continue;
                    }
                    let mut ctx = WriteCtx::new(&*pages);
                    for op in ops {
                        match op {
                            RecordOp::Put(k, v) => {
                                tree::insert(
                                    &mut ctx,
                                    &mut c.root,
                                    Bytes::copy_from_slice(k),
                                    Val::Inline(Bytes::copy_from_slice(v)),
                                )
                                .await?;
                            }
                            RecordOp::Delete(k) => {
                                tree::remove(&mut ctx, &mut c.root, k).await?;
                            }
                            RecordOp::Clear => {
                                let stats = tree::verify(&*pages, &c.root).await?;
                                ctx.freed.extend(stats.pages);
                                ctx.released.extend(stats.delta_bases);
                                c.root = Child::empty();
                            }
                        }
                    }
                    c.freed.append(&mut ctx.freed);
                    c.released.extend(ctx.released.drain(..).map(|p| (0, p)));
                    c.lsn = *lsn;
                }
            }
        }
        let engine = Engine {
            _handle: Arc::new(CloseOnDrop(Arc::downgrade(&inner))),
            inner: inner.clone(),
        };
        {
            let mut registry = inner.registry.lock().await;
            registry.next_id = next_id;
            for (_, c) in colls {
                let dirty = tree::dirty_nodes(&c.root, inner.pages.limits().page_size);
                inner.add_dirty(dirty);
                let version = Version {
                    root: c.root.clone(),
                    lsn: c.lsn,
                    seq: 0,
                    _epoch: epoch.clone(),
                    pinned: Default::default(),
                };
                let entry = spawn_collection(
                    &inner,
                    c.info.clone(),
                    version,
                    c.root,
                    (c.freed, c.released),
                    dirty,
                );
                registry.by_name.insert(c.info.name.clone(), entry);
            }
        }
        if options.auto_checkpoint {
            tokio::spawn(checkpointer(Arc::downgrade(&inner)));
        }
        Ok(engine)
    }

    /// Opens the collection `name`, creating it (durably) if it does not exist.
    ///
    /// # Errors
    /// [`Error::WrongCollectionType`] if it exists with another kind or types;
    /// [`Error::InvalidArgument`] for an empty, too long or reserved name.
    pub async fn collection(
        &self,
        name: &str,
        kind: Kind,
        key_type: &str,
        value_type: &str,
    ) -> Result<Collection> {
        self.inner.check_open()?;
        if name.is_empty()
            || name.len() > catalog::MAX_NAME_LEN
            || name.starts_with("__")
            || name.chars().any(char::is_control)
        {
            return Err(Error::InvalidArgument(format!(
                "collection name {name:?} is invalid: 1 to {} bytes, no control characters, not starting with \"__\" (reserved)",
                catalog::MAX_NAME_LEN
            )));
        }
        let key_type = truncate_utf8(key_type, catalog::MAX_NAME_LEN);
        let value_type = truncate_utf8(value_type, catalog::MAX_NAME_LEN);
        let mut registry = self.inner.registry.lock().await;
        if let Some(e) = registry.by_name.get(name) {
            let i = &e.shared.info;
            if i.kind != kind || i.key_type != key_type || i.value_type != value_type {
                return Err(Error::WrongCollectionType {
                    name: name.to_string(),
                    found: format!("{}<{}, {}>", i.kind.name(), i.key_type, i.value_type),
                    expected: format!("{}<{}, {}>", kind.name(), key_type, value_type),
                });
            }
            return Ok(Collection {
                shared: e.shared.clone(),
                actor: e.actor.clone(),
                engine: self.clone(),
            });
        }
        let id = registry.next_id;
        if id == u32::MAX {
            return Err(Error::InvalidArgument(
                "the database has used every collection id".into(),
            ));
        }
        let record = catalog::encode_create(id, kind as u8, name, key_type, value_type);
        let lsn = self
            .inner
            .wal
            .append_with(Bytes::from(record), Durability::Immediate)
            .await?;
        registry.next_id += 1;
        let info = CollectionInfo {
            id,
            kind,
            name: name.to_string(),
            key_type: key_type.to_string(),
            value_type: value_type.to_string(),
        };
        let root = Child::empty();
        let version = Version {
            root: root.clone(),
            lsn,
            seq: 0,
            _epoch: self.inner.epoch.load_full(),
            pinned: Default::default(),
        };
        let entry = spawn_collection(
            &self.inner,
            info,
            version,
            root,
            (Vec::new(), Vec::new()),
            1,
        );
        let c = Collection {
            shared: entry.shared.clone(),
            actor: entry.actor.clone(),
            engine: self.clone(),
        };
        registry.by_name.insert(name.to_string(), entry);
        Ok(c)
    }

    /// Opens an existing collection whatever its kind and types (for tools that read
    /// bytes: dump, stats). `None` if there is no such collection.
    pub async fn existing_collection(&self, name: &str) -> Result<Option<Collection>> {
        self.inner.check_open()?;
        let registry = self.inner.registry.lock().await;
        Ok(registry.by_name.get(name).map(|e| Collection {
            shared: e.shared.clone(),
            actor: e.actor.clone(),
            engine: self.clone(),
        }))
    }

    /// Snapshots of every collection, consistent with each other: each reflects exactly the
    /// writes up to one common point of the log. Briefly holds every collection's writes
    /// (until each has published what it logged).
    ///
    /// # Cancel safety
    /// Safe to drop: held collections resume.
    pub async fn snapshot_all(&self) -> Result<Vec<(CollectionInfo, Snapshot)>> {
        self.inner.check_open()?;
        // No checkpoint or bulk write may wait on a held collection meanwhile.
        let _ckpt = self.inner.ckpt.lock().await;
        let entries: Vec<(Arc<CollShared>, ActorRef<CollMsg>)> = {
            let registry = self.inner.registry.lock().await;
            registry
                .by_name
                .values()
                .map(|e| (e.shared.clone(), e.actor.clone()))
                .collect()
        };
        let mut releases = Vec::with_capacity(entries.len());
        let mut out = Vec::with_capacity(entries.len());
        for (shared, actor) in entries {
            let (tx, rx) = tokio::sync::oneshot::channel();
            releases.push(tx);
            let version = actor
                .ask(|reply| CollMsg::Pause { reply, release: rx })
                .await?;
            out.push((
                shared.info.clone(),
                Snapshot {
                    version,
                    pages: self.inner.pages.clone(),
                },
            ));
        }
        drop(releases);
        out.sort_by_key(|(i, _)| i.id);
        Ok(out)
    }

    /// The collections that exist.
    pub async fn collections(&self) -> Vec<(CollectionInfo, u64)> {
        let registry = self.inner.registry.lock().await;
        let mut v: Vec<_> = registry
            .by_name
            .values()
            .map(|e| (e.shared.info.clone(), e.shared.published.load().root.count))
            .collect();
        v.sort_by_key(|(i, _)| i.id);
        v
    }

    /// Runs a checkpoint now.
    ///
    /// # Cancel safety
    /// Dropping the future may stop the checkpoint between steps; the superblock in force
    /// stays valid either way (a half-written checkpoint is ignored at open).
    pub async fn checkpoint(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.checkpoint().await
    }

    /// Shrinks the page file after large removals: moves the tree nodes stored near its end
    /// (and overflow values) into free pages lower down and cuts the freed end off, in
    /// rounds of at most the dirty budget, while free pages are over a quarter of the file.
    /// Returns the pages cut off. It runs on its own when the engine is
    /// idle (one round at a time) and at close (a few rounds) for files of 1 MiB or more;
    /// this runs it to the end now.
    /// Pages an open snapshot still reads stay until it is dropped.
    ///
    /// Cancel safety: dropping the future between rounds leaves a consistent database (each
    /// round ends with a checkpoint); dropped inside a checkpoint, the checkpoint finishes or
    /// fails as [`Engine::checkpoint`]'s does.
    pub async fn vacuum(&self) -> Result<u64> {
        self.inner.check_open()?;
        let budget = (self.inner.dirty_limit_nodes() / 2).max(64);
        Ok(self
            .inner
            .vacuum(usize::MAX, budget, 0, false, true)
            .await?
            .cut)
    }

    /// True once a failed checkpoint or log write made the engine refuse writes (until the
    /// database is reopened, which recovers from the superblock and log in force).
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// Counters.
    pub async fn stats(&self) -> Result<EngineStats> {
        let collections = self.collections().await;
        let wal = self.inner.wal.stats().await?;
        let (free_pages, pending_pages, end) = {
            let a = self.inner.lock_alloc();
            (a.free_pages(), a.pending_pages(), a.end())
        };
        let (page_reads, page_writes) = self.inner.pages.io_counts();
        // Segment files are preallocated: live and spare segments at the segment size.
        let wal_bytes = (wal.segments + wal.spare_segments) * self.inner.options.wal.segment_size;
        Ok(EngineStats {
            collections,
            page_size: self.inner.pages.page_size(),
            pages: end,
            free_pages,
            pending_pages,
            dirty_nodes: self.inner.dirty_nodes.load(Ordering::Relaxed),
            checkpoints: self.inner.checkpoints.load(Ordering::Relaxed),
            pool: self.inner.pages.pool_stats(),
            pinned_bytes: self.inner.pages.pinned_bytes(),
            wal,
            wal_bytes,
            page_reads,
            page_writes,
            groups_absorbed: self.inner.absorbed.load(Ordering::Relaxed),
        })
    }

    /// Checks every collection's tree (every page's checksum, every invariant) and that no
    /// page is both used and free. Pages a collection stopped using since the checkpoint in
    /// force are still that checkpoint's: they count as used, not leaked.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let _guard = self.inner.ckpt.lock().await;
        let mut report = VerifyReport::default();
        let mut used: Vec<(u64, u64, String)> = Vec::new();
        let entries: Vec<(String, Arc<CollShared>, ActorRef<CollMsg>)> = {
            let registry = self.inner.registry.lock().await;
            registry
                .by_name
                .iter()
                .map(|(n, e)| (n.clone(), e.shared.clone(), e.actor.clone()))
                .collect()
        };
        // Pages the working trees stopped using since the checkpoint in force: that
        // checkpoint still references them, the next one frees them.
        let mut held: Vec<(u64, u64)> = Vec::new();
        for (name, shared, actor) in entries {
            let snap = Snapshot {
                version: shared.published.load_full(),
                pages: self.inner.pages.clone(),
            };
            // Asked after the version is taken: every write it reflects has its freed runs
            // in the answer (runs of later writes are pages the version still uses).
            if let Ok(runs) = actor.ask(|reply| CollMsg::Held { reply }).await {
                held.extend(runs);
            }
            let stats = snap.verify().await?;
            for &(p, n) in &stats.pages {
                used.push((p, n, name.clone()));
            }
            for &p in &stats.delta_bases {
                used.push((p, 1, format!("{name} (a changed leaf's base page)")));
            }
            report.collections.push((name, stats));
        }
        let (free, end) = {
            let a = self.inner.lock_alloc();
            (a.persisted_free(), a.end())
        };
        for &(p, n) in &_guard.meta_runs {
            used.push((p, n, "catalog and free list".into()));
        }
        for &(p, n) in &free {
            used.push((p, n, "free space".into()));
        }
        used.sort();
        let mut covered = 0u64;
        let mut prev_end = 2u64;
        let mut prev_owner = String::from("superblocks");
        for (p, n, owner) in &used {
            if *p < prev_end {
                return Err(Error::Corruption {
                    file: self.inner.pages.path().to_path_buf(),
                    offset: p * self.inner.pages.page_size() as u64,
                    what: format!("page {p} is used by both {prev_owner} and {owner}"),
                });
            }
            covered += n;
            prev_end = p + n;
            prev_owner = owner.clone();
        }
        // Held pages a newer version still uses are counted above; a held page in the free
        // space would be freed twice.
        held.sort_unstable();
        if let Some(w) = held.windows(2).find(|w| w[1].0 < w[0].0 + w[0].1) {
            return Err(Error::Corruption {
                file: self.inner.pages.path().to_path_buf(),
                offset: w[1].0 * self.inner.pages.page_size() as u64,
                what: format!(
                    "page {} was freed twice since the checkpoint in force",
                    w[1].0
                ),
            });
        }
        let mut held_only = std::collections::BTreeSet::new();
        for &(p, n) in &held {
            for q in p..p + n {
                let i = used.partition_point(|(s, _, _)| *s <= q);
                match i.checked_sub(1).map(|i| &used[i]) {
                    Some((s, m, owner)) if q < s + m => {
                        if owner == "free space" {
                            return Err(Error::Corruption {
                                file: self.inner.pages.path().to_path_buf(),
                                offset: q * self.inner.pages.page_size() as u64,
                                what: format!(
                                    "page {q} is free and still held by the checkpoint in force"
                                ),
                            });
                        }
                    }
                    _ => {
                        held_only.insert(q);
                    }
                }
            }
        }
        covered += held_only.len() as u64;
        report.pages = end;
        report.free_pages = free.iter().map(|(_, n)| n).sum();
        report.leaked_pages = end.saturating_sub(2).saturating_sub(covered);
        Ok(report)
    }

    /// Stops accepting writes, waits for every acknowledged write, checkpoints, stops the
    /// actors and the log, and releases the lock. Idempotent.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the close half done; the data stays safe (the log has
    /// every acknowledged write) and the next open recovers.
    pub async fn close(&self) -> Result<()> {
        close_inner(&self.inner).await
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The size limits of keys and values.
    pub fn max_key_len(&self) -> usize {
        self.inner.pages.limits().max_key
    }
}

async fn close_inner(inner: &Arc<EngineInner>) -> Result<()> {
    if inner.closed.swap(true, Ordering::AcqRel) {
        // Someone else closes (or closed); wait for the lock to be released.
        let _ = inner.ckpt.lock().await;
        return Ok(());
    }
    let mut vacuumed = Ok(0);
    if !inner.is_poisoned() {
        // A file mostly free (after large removals) shrinks before it is left: rounds of
        // moving nodes down, each the size of an ordinary checkpoint.
        let budget = inner.dirty_limit_nodes().max(64);
        vacuumed = inner
            .vacuum(CLOSE_VACUUM_ROUNDS, budget, VACUUM_MIN_PAGES, false, true)
            .await
            .map(|v| v.cut);
    }
    let guard = inner.ckpt.clone().lock_owned().await;
    let entries: Vec<(Arc<CollShared>, ActorRef<CollMsg>)> = {
        let registry = inner.registry.lock().await;
        registry
            .by_name
            .values()
            .map(|e| (e.shared.clone(), e.actor.clone()))
            .collect()
    };
    let mut result = Ok(());
    if !inner.is_poisoned() {
        result = inner.checkpoint_locked(guard, None).await.map(|_| ());
    } else {
        drop(guard);
    }
    for (_, actor) in entries {
        let _ = actor.shutdown().await;
    }
    let closed = inner.wal.close().await;
    inner
        .lock
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    vacuumed.and(result).and(closed)
}

/// What a recovered working tree stopped using: freed page runs, and released delta base
/// pages (with the version that released them; see `CollActor::released`).
type Unused = (Vec<(u64, u64)>, Vec<(u64, u64)>);

fn spawn_collection(
    inner: &Arc<EngineInner>,
    info: CollectionInfo,
    version: Version,
    working: Child,
    (freed, released): Unused,
    dirty: u64,
) -> CollEntry {
    let shared = Arc::new(CollShared::new(info.clone(), version));
    let actor = CollActor {
        shared: shared.clone(),
        engine: inner.clone(),
        working,
        seq: 0,
        freed: freed.into_iter().map(|r| (0, r)).collect(),
        released,
        dirty,
        charge_carry: 0,
        bulk: None,
        deferred: Vec::new(),
        open: None,
    };
    let mut config = ActorConfig::new(format!("collection-{}", info.name));
    config.mailbox_capacity = 1024;
    config.max_batch = 1024;
    let actor = persistx_runtime::spawn(actor, config);
    CollEntry { shared, actor }
}

async fn checkpointer(inner: Weak<EngineInner>) {
    let mut idle_vacuum = IdleVacuum::Nodes;
    loop {
        let Some(e) = inner.upgrade() else {
            return;
        };
        if e.closed.load(Ordering::Acquire) || e.poisoned.load(Ordering::Acquire) {
            return;
        }
        if e.over_thresholds() {
            if let Err(err) = e.checkpoint().await {
                tracing::error!(error = %err, "automatic checkpoint failed");
            }
            idle_vacuum = IdleVacuum::Nodes;
            continue;
        }
        let trigger = e.trigger.clone();
        let dirty = e.dirty_nodes.load(Ordering::Relaxed);
        drop(e);
        let timed_out = tokio::time::timeout(IDLE_CHECKPOINT, trigger.notified())
            .await
            .is_err();
        // No writes for a while, dirty nodes left: write them now, so that the next burst
        // of writes finds the whole dirty budget free (and recovery has less log to replay).
        if timed_out
            && let Some(e) = inner.upgrade()
            && e.dirty_nodes.load(Ordering::Relaxed) == dirty
            && !e.closed.load(Ordering::Acquire)
            && !e.poisoned.load(Ordering::Acquire)
        {
            if dirty > 0 {
                if let Err(err) = e.checkpoint().await {
                    tracing::error!(error = %err, "idle checkpoint failed");
                }
                // Writes came since the last vacuum round: it may find work again.
                idle_vacuum = IdleVacuum::Nodes;
            } else if idle_vacuum != IdleVacuum::Stuck {
                // Still idle with nothing dirty: shrink a mostly free file by one round.
                let budget = (e.dirty_limit_nodes() / 2).max(64);
                let values = idle_vacuum == IdleVacuum::Values;
                match e.vacuum(1, budget, VACUUM_MIN_PAGES, values, false).await {
                    Ok(v) if v.cut > 0 || v.moved > 0 => {}
                    Ok(_) if values => idle_vacuum = IdleVacuum::Stuck,
                    Ok(_) => idle_vacuum = IdleVacuum::Values,
                    Err(err) => {
                        tracing::error!(error = %err, "idle vacuum failed");
                        idle_vacuum = IdleVacuum::Stuck;
                    }
                }
            }
        }
    }
}

/// Time without writes after which the checkpointer writes the dirty nodes left below the
/// thresholds.
const IDLE_CHECKPOINT: Duration = Duration::from_millis(200);

/// What a vacuum did.
struct Vacuumed {
    /// Pages cut off the end of the file.
    cut: u64,
    /// Nodes (and overflow pages) moved.
    moved: u64,
}

/// The idle checkpointer's vacuum, one round per idle period.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdleVacuum {
    /// Move nodes.
    Nodes,
    /// Moving nodes stopped helping: move overflow values too (reads every leaf).
    Values,
    /// Nothing could move or be cut (an open snapshot holds the end): wait for writes.
    Stuck,
}

/// Files smaller than this many pages are not vacuumed on their own (when idle, at close).
const VACUUM_MIN_PAGES: u64 = 256;

/// Vacuum rounds at most when the engine closes.
const CLOSE_VACUUM_ROUNDS: usize = 16;

async fn read_superblock(file: &dyn persistx_io::File, path: &Path) -> Result<(u32, Superblock)> {
    let len = persistx_io::format::superblock::SUPERBLOCK_LEN;
    let a = file.read_at(0, len).await?;
    let first = Superblock::decode(&a, 0);
    // Slot 1 sits one page in; find the page size from slot 0, or try each size.
    let mut sizes: Vec<u32> = Vec::new();
    if let Ok(sb) = &first {
        sizes.push(sb.page_size);
    } else {
        let mut s = MIN_PAGE_SIZE;
        while s <= MAX_PAGE_SIZE {
            sizes.push(s);
            s *= 2;
        }
    }
    let mut best: Option<std::result::Result<(u32, Superblock), FormatError>> = None;
    for size in sizes {
        let b = file.read_at(u64::from(size), len).await?;
        let second = Superblock::decode(&b, 1).and_then(|sb| {
            if sb.page_size == size {
                Ok(sb)
            } else {
                Err(FormatError::Mismatch {
                    field: "page size",
                    expected: size.into(),
                    found: sb.page_size.into(),
                })
            }
        });
        let chosen = persistx_io::format::superblock::choose(first.clone(), second);
        if chosen.is_ok() || best.is_none() {
            best = Some(chosen);
        }
        if best.as_ref().is_some_and(|b| b.is_ok()) {
            break;
        }
    }
    match best {
        Some(Ok(x)) => Ok(x),
        Some(Err(FormatError::UnsupportedVersion { found, supported })) => {
            Err(Error::NewerFormat {
                path: path.to_path_buf(),
                found,
                supported,
            })
        }
        Some(Err(FormatError::BadMagic { .. })) => Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "its first page is not a PersistX superblock".into(),
        }),
        Some(Err(e)) => Err(format_err(path, 0, e)),
        None => Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "no superblock".into(),
        }),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
