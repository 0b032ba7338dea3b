//! The buffer pool: a sharded cache of clean pages under a memory budget.
//!
//! # Design
//!
//! A [`BufferPool`] maps page ids to shared values (`Arc<V>`, typically decoded pages). Every
//! entry carries a *charge*: the bytes the caller says it costs. The pool keeps the sum of the
//! charges under its budget by evicting entries with the clock (second-chance) algorithm.
//!
//! * **Shards.** The pool is split into a power-of-two number of shards (at most 16, fewer
//!   when the budget is small, so that every shard holds at least 256 KiB of charges). A page
//!   goes to the shard chosen by a multiplicative (Fibonacci) hash of its id. Each shard is a
//!   plain `Mutex` around a map from page id to slot, a ring of slots, a clock hand, a free
//!   slot list and the shard's byte total. The budget is split evenly across the shards; each
//!   shard's share is what its clock normally evicts down to.
//! * **Clock.** Every slot has a reference bit. [`BufferPool::get`] sets it; a new entry starts
//!   with it clear. To evict, the hand sweeps the ring: a set bit is cleared and the entry
//!   spared (its second chance), the first entry with a clear bit is the victim. A page that
//!   keeps being read survives any scan of pages that are read once, and one sweep never goes
//!   around the ring more than twice. A new entry reuses the most recently freed slot, which
//!   is usually the last victim's, just behind the hand: it gets a full turn of the hand
//!   before it can be evicted.
//! * **Locks.** One shard lock at a time, held only for map and ring updates. No user code runs
//!   under a lock: values leave the pool (eviction, replacement, removal, clearing) as `Arc`s
//!   that are dropped after the lock is released, so a value's `Drop` may even call back into
//!   the pool. That is also why a poisoned shard lock is simply taken over: no panic can leave
//!   a shard half updated. The hit, miss and eviction counters are relaxed atomics.
//! * **Values stay alive.** Eviction drops only the pool's own `Arc`. A reader holding a clone
//!   keeps its value; the pool simply stops handing it out. Entries are clean (dirty pages
//!   never enter the pool), so every entry may be evicted at any time.
//!
//! # Memory guarantee
//!
//! Once [`BufferPool::insert`] returns, and no other call is running, the charges held add up
//! to at most [`BufferPool::budget`], with one exception: an entry whose charge alone exceeds
//! the budget is still admitted (a page must fit somewhere), and then it is the only entry.
//! The next insert evicts it.
//!
//! Normally each shard stays within its share on its own. An entry larger than its shard's
//! share makes that shard overflow; the insert then checks the pool-wide total and, if it is
//! over the budget, first trims the shards that are over their share, then evicts from every
//! shard in turn until the total fits (never the entry it just inserted). Charges are the
//! caller's numbers: the pool's own bookkeeping (a few dozen bytes per entry) is not counted.
//!
//! [`BufferPool::set_budget`] changes the budget while the pool is in use: a smaller one
//! evicts at once until every shard is within its new share (the guarantee then holds for the
//! new budget), a larger one lets later inserts keep more.
//!
//! While calls run concurrently the total may briefly exceed the budget by the entries being
//! inserted at that moment. An entry inserted by one thread can be evicted by another
//! thread's insert before the first call returns; the caller keeps its own `Arc` either way.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The most shards a pool has.
const SHARDS_MAX: usize = 16;

/// The least budget share a shard gets: below it the pool uses fewer shards, so that each
/// shard's clock has enough entries to choose from (64 pages of 4 KiB, 4 of 64 KiB).
const SHARD_BUDGET_MIN_BYTES: usize = 256 * 1024;

/// Hashes page ids for a shard's map: one multiply (SipHash costs more than the whole
/// lookup otherwise; page ids are not attacker-chosen keys).
#[derive(Debug, Clone, Copy, Default)]
struct BuildPageHasher;

/// The hasher of [`BuildPageHasher`].
#[derive(Debug, Default)]
struct PageHasher(u64);

impl std::hash::BuildHasher for BuildPageHasher {
    type Hasher = PageHasher;
    fn build_hasher(&self) -> PageHasher {
        PageHasher(0)
    }
}

impl std::hash::Hasher for PageHasher {
    fn finish(&self) -> u64 {
        // The high bits pick the bucket group in hashbrown; mix them in.
        self.0.wrapping_mul(HASH_MULTIPLIER).rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Fibonacci hashing multiplier (2^64 / golden ratio): spreads consecutive page ids across
/// shards.
const HASH_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// A sharded cache of clean pages under a memory budget, evicting by the clock algorithm.
///
/// See the [module documentation](self) for the design and the memory guarantee. Share it
/// between threads and tasks with an `Arc<BufferPool<V>>`; every method takes `&self`.
pub struct BufferPool<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// log2 of the shard count.
    shard_bits: u32,
    /// The budget in force (see [`BufferPool::set_budget`]).
    budget: AtomicUsize,
    /// Sum of the charges of all entries. Updated under the lock of the shard that changes.
    bytes: AtomicUsize,
    /// Number of entries. Updated under the lock of the shard that changes.
    entries: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// A snapshot of a [`BufferPool`]'s counters, from [`BufferPool::stats`].
///
/// `hits`, `misses` and `evictions` count since the pool was created; `entries` and `bytes`
/// describe its content when the snapshot was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Lookups that found their page.
    pub hits: u64,
    /// Lookups that did not find their page.
    pub misses: u64,
    /// Entries dropped by the clock to stay within the budget (not removals, replacements or
    /// clears).
    pub evictions: u64,
    /// Entries held.
    pub entries: u64,
    /// Sum of the charges of the entries held, in bytes.
    pub bytes: u64,
    /// The pool's budget, in bytes.
    pub budget: u64,
}

impl PoolStats {
    /// The share of lookups that hit, from 0.0 to 1.0; 0.0 when there were no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits.saturating_add(self.misses);
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// One cached page. It lives in the shard's index itself, so a lookup touches the hash
/// table and then the value, nothing between.
struct Slot<V> {
    value: Arc<V>,
    charge: usize,
    /// The clock's reference bit: set by a lookup, cleared when the hand passes.
    referenced: bool,
    /// Its place in the clock ring.
    ring: usize,
}

/// One shard: the cached pages by page id, and a clock ring of their ids.
///
/// Invariants (checked by `check_invariants` in tests): `index[p].ring == i` exactly when
/// `ring[i] == Some(p)`; `free` lists exactly the empty places of `ring`; `bytes` is the
/// sum of the charges in `index`; `hand < ring.len()` or `hand == 0`.
struct Shard<V> {
    index: HashMap<u64, Slot<V>, BuildPageHasher>,
    ring: Vec<Option<u64>>,
    /// Empty slots of `ring`, most recently freed last.
    free: Vec<usize>,
    hand: usize,
    bytes: usize,
}

impl<V> Shard<V> {
    fn new() -> Self {
        Shard {
            index: HashMap::with_hasher(BuildPageHasher),
            ring: Vec::new(),
            free: Vec::new(),
            hand: 0,
            bytes: 0,
        }
    }

    /// Places an entry for a page that is not in the shard (its `ring` is set here).
    fn put(&mut self, page: u64, mut slot: Slot<V>) {
        debug_assert!(!self.index.contains_key(&page));
        self.bytes = self.bytes.saturating_add(slot.charge);
        slot.ring = match self.free.pop() {
            Some(i) => {
                debug_assert!(self.ring[i].is_none());
                self.ring[i] = Some(page);
                i
            }
            None => {
                self.ring.push(Some(page));
                self.ring.len() - 1
            }
        };
        self.index.insert(page, slot);
    }

    /// Removes `page`'s entry and returns it.
    fn take(&mut self, page: u64) -> Option<Slot<V>> {
        let slot = self.index.remove(&page)?;
        debug_assert_eq!(self.ring[slot.ring], Some(page));
        self.ring[slot.ring] = None;
        self.free.push(slot.ring);
        self.bytes -= slot.charge;
        Some(slot)
    }

    /// Runs the clock hand to the next victim and returns its page, sparing `protect` and
    /// clearing the reference bits it passes. `None` when nothing but `protect` is held.
    fn victim(&mut self, protect: Option<u64>) -> Option<u64> {
        let protected = protect.is_some_and(|p| self.index.contains_key(&p));
        if self.index.len() <= usize::from(protected) {
            return None;
        }
        let len = self.ring.len();
        // The first turn visits every candidate and either picks it or clears its bit; the
        // second turn then finds a clear bit at its first candidate. Nothing sets bits
        // meanwhile: the shard lock is held.
        for _ in 0..2 * len {
            if self.hand >= len {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            if let Some(page) = self.ring[i]
                && Some(page) != protect
            {
                let slot = self
                    .index
                    .get_mut(&page)
                    .expect("a page in the ring is in the index");
                if !slot.referenced {
                    return Some(page);
                }
                slot.referenced = false;
            }
        }
        debug_assert!(
            false,
            "the clock found no victim in two turns of {len} slots"
        );
        None
    }
}

impl<V: Send + Sync + 'static> BufferPool<V> {
    /// An empty pool that holds at most `budget_bytes` of charges.
    ///
    /// At least one entry is always admitted, even one larger than the whole budget (see the
    /// [memory guarantee](self#memory-guarantee)). A budget of 0 holds one entry at a time.
    pub fn new(budget_bytes: usize) -> Self {
        let shard_count = shard_count_for(budget_bytes);
        BufferPool {
            shards: (0..shard_count).map(|_| Mutex::new(Shard::new())).collect(),
            shard_bits: shard_count.trailing_zeros(),
            budget: AtomicUsize::new(budget_bytes),
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Looks a page up: its value if the pool holds it.
    ///
    /// Counts a hit or a miss and sets the entry's reference bit, so the clock spares it once.
    pub fn get(&self, page: u64) -> Option<Arc<V>> {
        let found = self.lookup(page);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// [`BufferPool::get`] that counts only a hit: for a caller that falls back to `get` (which
    /// then counts the miss) when this finds nothing.
    pub fn get_hit(&self, page: u64) -> Option<Arc<V>> {
        let found = self.lookup(page);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// The page's value, with its reference bit set; counts nothing.
    #[inline]
    fn lookup(&self, page: u64) -> Option<Arc<V>> {
        let mut shard = self.lock(self.shard_of(page));
        shard.index.get_mut(&page).map(|slot| {
            slot.referenced = true;
            Arc::clone(&slot.value)
        })
    }

    /// Inserts `value` for `page` with a charge of `charge` bytes, replacing any entry the page
    /// had, then evicts entries by the clock until the pool is within its budget.
    ///
    /// The new entry starts with a clear reference bit; a replacement keeps the old entry's
    /// bit. This call never evicts the entry it inserts: when `charge` alone exceeds the budget
    /// the entry is still admitted and everything else is evicted. Another thread's insert may
    /// evict it at any time after; the caller keeps its own clone of `value` for as long as it
    /// needs the value.
    pub fn insert(&self, page: u64, value: Arc<V>, charge: usize) {
        let home = self.shard_of(page);
        let share = self.share(home);
        // Values leaving the pool, dropped after every lock is released.
        let mut dropped = Vec::new();
        {
            let mut shard = self.lock(home);
            let referenced = self.take(&mut shard, page).is_some_and(|old| {
                dropped.push(old.value);
                old.referenced
            });
            // Evict before placing, so the entry lands in the slot just freed behind the hand.
            while shard.bytes.saturating_add(charge) > share
                && self.evict_one(&mut shard, None, &mut dropped)
            {}
            let slot = Slot {
                value,
                charge,
                referenced,
                ring: 0,
            };
            shard.put(page, slot);
            self.bytes.fetch_add(charge, Ordering::Relaxed);
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        if self.bytes.load(Ordering::Relaxed) > self.budget() {
            self.enforce_budget(home, page, &mut dropped);
        }
        drop(dropped);
    }

    /// Changes the budget. A smaller budget evicts at once (by the clock, shard by shard)
    /// until every shard is within its new share; a larger one lets later inserts keep more.
    /// The number of shards stays what [`BufferPool::new`] chose.
    ///
    /// For a pool that shares memory with something that grows and shrinks (the engine's
    /// dirty nodes): the owner gives the pool what the other does not use.
    pub fn set_budget(&self, budget_bytes: usize) {
        let old = self.budget.swap(budget_bytes, Ordering::AcqRel);
        if budget_bytes >= old || self.bytes.load(Ordering::Relaxed) <= budget_bytes {
            return;
        }
        let mut dropped = Vec::new();
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            while shard.bytes > self.share(i) && self.evict_one(&mut shard, None, &mut dropped) {}
        }
        drop(dropped);
    }

    /// Drops a page's entry (the page was freed or rewritten). Returns whether it was present.
    ///
    /// Readers holding the value keep it; the pool no longer hands it out.
    pub fn remove(&self, page: u64) -> bool {
        let removed = {
            let mut shard = self.lock(self.shard_of(page));
            self.take(&mut shard, page)
        };
        removed.is_some()
    }

    /// Drops every entry. The counters keep counting; readers keep the values they hold.
    pub fn clear(&self) {
        for i in 0..self.shards.len() {
            let old = {
                let mut shard = self.lock(i);
                let old = std::mem::replace(&mut *shard, Shard::new());
                self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
                self.entries.fetch_sub(old.index.len(), Ordering::Relaxed);
                old
            };
            drop(old);
        }
    }

    /// A snapshot of the counters. Under concurrent calls the fields may come from slightly
    /// different moments.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed) as u64,
            bytes: self.bytes.load(Ordering::Relaxed) as u64,
            budget: self.budget() as u64,
        }
    }

    /// The most bytes of charges the pool holds: as given to [`BufferPool::new`], or the last
    /// [`BufferPool::set_budget`].
    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    fn shard_of(&self, page: u64) -> usize {
        // The top bits of the product are the well mixed ones; with one shard the shift is
        // 64 and `checked_shr` yields shard 0.
        let hash = page.wrapping_mul(HASH_MULTIPLIER);
        hash.checked_shr(64 - self.shard_bits).unwrap_or(0) as usize
    }

    /// Shard `i`'s part of the budget. The parts add up to the budget exactly.
    fn share(&self, i: usize) -> usize {
        let n = self.shards.len();
        let budget = self.budget();
        budget / n + usize::from(i < budget % n)
    }

    /// Locks shard `i`, taking over a poisoned lock: no user code runs under a shard lock, so
    /// a panic there cannot leave the shard inconsistent.
    fn lock(&self, i: usize) -> MutexGuard<'_, Shard<V>> {
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes `page`'s entry from `shard` and updates the pool totals.
    fn take(&self, shard: &mut Shard<V>, page: u64) -> Option<Slot<V>> {
        let slot = shard.take(page)?;
        self.bytes.fetch_sub(slot.charge, Ordering::Relaxed);
        self.entries.fetch_sub(1, Ordering::Relaxed);
        Some(slot)
    }

    /// Evicts the clock's next victim in `shard`, sparing `protect`, and moves its value to
    /// `dropped`. Returns false when there was nothing to evict.
    fn evict_one(
        &self,
        shard: &mut Shard<V>,
        protect: Option<u64>,
        dropped: &mut Vec<Arc<V>>,
    ) -> bool {
        let Some(slot) = shard.victim(protect).and_then(|p| self.take(shard, p)) else {
            return false;
        };
        self.evictions.fetch_add(1, Ordering::Relaxed);
        dropped.push(slot.value);
        true
    }

    /// Brings the pool-wide total back within the budget after an insert of `page` into shard
    /// `home` pushed it over. This only happens when a shard holds more than its share, which
    /// a single entry larger than the share causes.
    fn enforce_budget(&self, home: usize, page: u64, dropped: &mut Vec<Arc<V>>) {
        let n = self.shards.len();
        let over_budget = || self.bytes.load(Ordering::Relaxed) > self.budget();
        // Visit the other shards first and the home shard last.
        let order = (1..=n).map(|k| (home + k) % n);

        // First trim the shards that are over their share: the total exceeds the budget only
        // because some shard does.
        for i in order.clone() {
            if !over_budget() {
                return;
            }
            let protect = (i == home).then_some(page);
            let mut shard = self.lock(i);
            while shard.bytes > self.share(i) && self.evict_one(&mut shard, protect, dropped) {}
        }

        // Still over: the new entry alone exceeds its share. Evict from every shard in turn,
        // one entry per shard per round, until the total fits or only the new entry is left.
        // Without concurrent inserts every round but the last evicts at least one of the
        // entries counted here, so the bound is never reached; with them, each concurrent
        // insert enforces the budget itself once its entry is in.
        let rounds_max = self.entries.load(Ordering::Relaxed) + 1;
        for _ in 0..rounds_max {
            let mut evicted = false;
            for i in order.clone() {
                if !over_budget() {
                    return;
                }
                let protect = (i == home).then_some(page);
                evicted |= self.evict_one(&mut self.lock(i), protect, dropped);
            }
            if !evicted {
                return;
            }
        }
    }
}

impl<V: Send + Sync + 'static> fmt::Debug for BufferPool<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("shards", &self.shards.len())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The number of shards for a budget: the largest power of two up to [`SHARDS_MAX`] that
/// leaves each shard at least [`SHARD_BUDGET_MIN_BYTES`], and at least one.
fn shard_count_for(budget_bytes: usize) -> usize {
    let mut n = SHARDS_MAX;
    while n > 1 && budget_bytes / n < SHARD_BUDGET_MIN_BYTES {
        n /= 2;
    }
    n
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Mutex, Weak};

    use super::*;

    impl<V: Send + Sync + 'static> BufferPool<V> {
        /// Checks every shard's invariants and the pool totals. Call with no other call
        /// running.
        fn check_invariants(&self) {
            let mut bytes = 0;
            let mut entries = 0;
            for i in 0..self.shards.len() {
                let shard = self.lock(i);
                let mut shard_bytes = 0;
                let mut empty = Vec::new();
                for (slot_index, page) in shard.ring.iter().enumerate() {
                    match page {
                        Some(page) => {
                            let slot = shard.index.get(page).expect("ring page indexed");
                            assert_eq!(slot.ring, slot_index);
                            assert_eq!(self.shard_of(*page), i);
                            shard_bytes += slot.charge;
                        }
                        None => empty.push(slot_index),
                    }
                }
                let mut free = shard.free.clone();
                free.sort_unstable();
                assert_eq!(free, empty, "free list of shard {i}");
                assert_eq!(shard.index.len() + empty.len(), shard.ring.len());
                assert_eq!(shard.bytes, shard_bytes, "bytes of shard {i}");
                assert!(shard.hand <= shard.ring.len());
                bytes += shard_bytes;
                entries += shard.index.len();
            }
            assert_eq!(self.bytes.load(Ordering::Relaxed), bytes);
            assert_eq!(self.entries.load(Ordering::Relaxed), entries);
        }
    }

    /// A tiny deterministic generator, so the randomized test needs no seed plumbing.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn pool_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<BufferPool<Vec<u8>>>();
    }

    #[test]
    fn shard_count_shrinks_with_the_budget() {
        assert_eq!(shard_count_for(0), 1);
        assert_eq!(shard_count_for(SHARD_BUDGET_MIN_BYTES * 2 - 1), 1);
        assert_eq!(shard_count_for(SHARD_BUDGET_MIN_BYTES * 2), 2);
        assert_eq!(shard_count_for(SHARD_BUDGET_MIN_BYTES * 5), 4);
        assert_eq!(shard_count_for(SHARD_BUDGET_MIN_BYTES * 16), 16);
        assert_eq!(shard_count_for(usize::MAX), 16);
    }

    #[test]
    fn shares_add_up_to_the_budget() {
        for budget in [0, 1, 15, SHARD_BUDGET_MIN_BYTES * 16 + 7, usize::MAX] {
            let pool = BufferPool::<u8>::new(budget);
            let total: u128 = (0..pool.shards.len()).map(|i| pool.share(i) as u128).sum();
            assert_eq!(total, budget as u128, "budget {budget}");
        }
    }

    #[test]
    fn a_smaller_budget_evicts_at_once_and_a_larger_one_keeps_more() {
        let pool = BufferPool::<u64>::new(SHARD_BUDGET_MIN_BYTES * 16);
        for page in 0..2048 {
            pool.insert(page, Arc::new(page), 4096);
        }
        let full = pool.stats().bytes;
        assert!(full <= (SHARD_BUDGET_MIN_BYTES * 16) as u64);
        pool.set_budget(SHARD_BUDGET_MIN_BYTES * 4);
        pool.check_invariants();
        let stats = pool.stats();
        assert!(
            stats.bytes <= (SHARD_BUDGET_MIN_BYTES * 4) as u64,
            "{stats:?}"
        );
        assert_eq!(stats.budget, (SHARD_BUDGET_MIN_BYTES * 4) as u64);
        assert!(stats.evictions > 0);
        // Entries left are still served.
        let kept = (0..2048).filter(|&p| pool.get(p).is_some()).count() as u64;
        assert_eq!(kept * 4096, stats.bytes);
        // A larger budget: later inserts keep more again.
        pool.set_budget(SHARD_BUDGET_MIN_BYTES * 16);
        for page in 2048..4096 {
            pool.insert(page, Arc::new(page), 4096);
        }
        pool.check_invariants();
        assert!(pool.stats().bytes > (SHARD_BUDGET_MIN_BYTES * 4) as u64);
    }

    #[test]
    fn pages_spread_over_all_shards() {
        let pool = BufferPool::<u8>::new(SHARD_BUDGET_MIN_BYTES * 16);
        assert_eq!(pool.shards.len(), 16);
        let mut per_shard = [0_u32; 16];
        for page in 0..1600 {
            per_shard[pool.shard_of(page)] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (50..=150).contains(&n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn hit_ratio_is_zero_without_lookups() {
        assert_eq!(PoolStats::default().hit_ratio(), 0.0);
        let stats = PoolStats {
            hits: 3,
            misses: 1,
            ..PoolStats::default()
        };
        assert_eq!(stats.hit_ratio(), 0.75);
    }

    #[test]
    fn oversized_entry_is_admitted_alone_then_evicted() {
        let pool = BufferPool::new(100);
        pool.insert(1, Arc::new(1_u64), 40);
        pool.insert(2, Arc::new(2_u64), 40);
        pool.insert(3, Arc::new(3_u64), 500);
        let stats = pool.stats();
        assert_eq!((stats.entries, stats.bytes, stats.evictions), (1, 500, 2));
        assert_eq!(pool.get(3).as_deref(), Some(&3));
        pool.insert(4, Arc::new(4_u64), 10);
        assert_eq!(pool.get(3), None);
        assert_eq!(pool.stats().bytes, 10);
        pool.check_invariants();
    }

    #[test]
    fn entry_larger_than_its_share_keeps_the_pool_within_budget() {
        let share = SHARD_BUDGET_MIN_BYTES;
        let budget = share * 4;
        let pool = BufferPool::new(budget);
        assert_eq!(pool.shards.len(), 4);
        // Fill every shard close to its share with small entries.
        let mut page = 0;
        while pool.stats().bytes + 1024 <= budget as u64 - 8 * 1024 {
            pool.insert(page, Arc::new(page), 1024);
            page += 1;
        }
        pool.check_invariants();
        // Larger than one share, smaller than the budget.
        pool.insert(u64::MAX, Arc::new(u64::MAX), share * 3 / 2);
        assert!(pool.stats().bytes <= budget as u64, "{:?}", pool.stats());
        assert!(pool.get(u64::MAX).is_some());
        pool.check_invariants();
        // Larger than the whole budget: admitted alone.
        pool.insert(7, Arc::new(7), budget + 1);
        assert_eq!(pool.stats().entries, 1);
        assert!(pool.get(7).is_some());
        pool.check_invariants();
        // And gone once something else arrives.
        pool.insert(8, Arc::new(8), 1);
        assert!(pool.get(7).is_none());
        assert!(pool.stats().bytes <= budget as u64);
        pool.check_invariants();
    }

    #[test]
    fn replacement_keeps_one_entry_and_updates_the_charge() {
        let pool = BufferPool::new(1000);
        pool.insert(5, Arc::new("old"), 100);
        pool.insert(5, Arc::new("new"), 300);
        assert_eq!(pool.get(5).as_deref(), Some(&"new"));
        let stats = pool.stats();
        assert_eq!((stats.entries, stats.bytes, stats.evictions), (1, 300, 0));
        pool.check_invariants();
    }

    #[test]
    fn eviction_leaves_readers_their_value() {
        let pool = BufferPool::new(10);
        let value = Arc::new(vec![1_u8; 4]);
        pool.insert(1, Arc::clone(&value), 10);
        let read = pool.get(1);
        pool.insert(2, Arc::new(vec![2_u8]), 10);
        assert!(pool.get(1).is_none());
        assert_eq!(read.as_deref(), Some(&vec![1_u8; 4]));
        drop(read);
        assert_eq!(Arc::strong_count(&value), 1);
    }

    #[test]
    fn remove_and_clear_drop_entries() {
        let pool = BufferPool::new(1000);
        for page in 0..5 {
            pool.insert(page, Arc::new(page), 10);
        }
        assert!(pool.remove(3));
        assert!(!pool.remove(3));
        assert!(pool.get(3).is_none());
        assert_eq!(pool.stats().entries, 4);
        pool.check_invariants();
        pool.clear();
        let stats = pool.stats();
        assert_eq!((stats.entries, stats.bytes), (0, 0));
        assert!(pool.get(0).is_none());
        pool.check_invariants();
        pool.insert(9, Arc::new(9), 10);
        assert!(pool.get(9).is_some());
        pool.check_invariants();
    }

    /// A value whose `Drop` records whether any shard lock was held when it ran.
    struct Reentrant {
        pool: Mutex<Weak<BufferPool<Reentrant>>>,
        dropped_under_lock: Arc<AtomicBool>,
    }

    impl Drop for Reentrant {
        fn drop(&mut self) {
            let pool = self
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .upgrade();
            if let Some(pool) = pool
                && pool.shards.iter().any(|s| s.try_lock().is_err())
            {
                self.dropped_under_lock.store(true, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn values_are_dropped_outside_the_shard_locks() {
        let pool = Arc::new(BufferPool::new(20));
        let flag = Arc::new(AtomicBool::new(false));
        let value = |_page: u64| {
            Arc::new(Reentrant {
                pool: Mutex::new(Arc::downgrade(&pool)),
                dropped_under_lock: Arc::clone(&flag),
            })
        };
        for page in 0..10 {
            pool.insert(page, value(page), 10); // evicts
        }
        pool.insert(9, value(9), 10); // replaces
        assert!(pool.remove(9));
        pool.insert(1, value(1), 10);
        pool.clear();
        pool.insert(2, value(2), 100); // oversized: evicts everything else
        pool.insert(3, value(3), 1);
        assert!(
            !flag.load(Ordering::Relaxed),
            "a value was dropped under a shard lock"
        );
        assert!(pool.stats().evictions >= 8);
    }

    #[test]
    fn poisoned_shard_lock_is_taken_over() {
        let pool = Arc::new(BufferPool::new(100));
        pool.insert(1, Arc::new(1_u32), 10);
        let poisoner = Arc::clone(&pool);
        let joined = std::thread::spawn(move || {
            let _guard = poisoner.lock(0);
            panic!("poison the shard lock on purpose");
        })
        .join();
        assert!(joined.is_err());
        assert!(pool.shards[0].is_poisoned());
        assert_eq!(pool.get(1).as_deref(), Some(&1));
        pool.insert(2, Arc::new(2), 10);
        assert!(pool.remove(1));
        pool.clear();
        assert_eq!(pool.stats().entries, 0);
        pool.check_invariants();
    }

    #[test]
    fn clock_spares_the_referenced_entry() {
        let pool = BufferPool::new(30);
        for page in 1..=3 {
            pool.insert(page, Arc::new(page), 10);
        }
        assert!(pool.get(1).is_some());
        // Page 1 is referenced: the hand clears its bit and evicts page 2 instead.
        pool.insert(4, Arc::new(4), 10);
        assert!(pool.get(2).is_none());
        // Page 1 is referenced again; page 3 is next after it.
        pool.insert(5, Arc::new(5), 10);
        assert!(pool.get(3).is_none());
        assert!(pool.get(1).is_some());
        assert_eq!(pool.stats().evictions, 2);
        pool.check_invariants();
    }

    /// Random operations without lookups between them (lookups set reference bits), checking
    /// the shard invariants and the budget after each.
    #[test]
    fn random_operations_keep_the_invariants() {
        for (seed, budget) in [
            (1, 0),
            (2, 100),
            (3, 5_000),
            (4, SHARD_BUDGET_MIN_BYTES * 8),
        ] {
            let pool = BufferPool::new(budget);
            let mut state = 0x2545_F491_4F6C_DD1D_u64 ^ seed;
            // The latest insert's page and charge, while that page is in the pool or evicted.
            let mut newest = None;
            for _ in 0..5_000 {
                let page = xorshift(&mut state) % 64;
                match xorshift(&mut state) % 100 {
                    0..10 => {
                        pool.remove(page);
                        newest = newest.filter(|&(p, _)| p != page);
                    }
                    10..40 => {
                        pool.get(page);
                    }
                    40 => {
                        pool.clear();
                        newest = None;
                    }
                    _ => {
                        let charge = (xorshift(&mut state) % (budget as u64 / 4 + 10)) as usize;
                        pool.insert(page, Arc::new(page), charge);
                        newest = Some((page, charge as u64));
                    }
                }
                pool.check_invariants();
                let stats = pool.stats();
                if stats.bytes > budget as u64 {
                    assert_eq!(stats.entries, 1);
                    assert_eq!(newest.map(|(_, charge)| charge), Some(stats.bytes));
                }
            }
        }
    }
}
