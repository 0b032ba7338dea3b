//! Free space of the page file, and the epochs that say when freed pages may be reused.
//!
//! A page that a checkpoint stops referencing is not free at once: the superblock that
//! still references it stays in force until the next one is synced, and snapshots taken
//! before may still read it. So freed pages wait in `pending` with a weak reference to the
//! [`Epoch`] that was current before the checkpoint that freed them; they become free when
//! that epoch (and so every older one, see [`Epoch`]) is no longer held by any snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

/// A checkpoint generation. Every tree version holds the epoch current when it was made.
/// An epoch holds the next one, so a live old version keeps every later epoch alive too:
/// "epoch `e` is dead" implies "no version from `e` or before is alive".
#[derive(Debug, Default)]
pub struct Epoch {
    next: OnceLock<Arc<Epoch>>,
}

impl Epoch {
    /// Starts the next epoch after this one.
    pub fn advance(self: &Arc<Self>) -> Arc<Epoch> {
        let next = Arc::new(Epoch::default());
        // Only the checkpointer advances, once per epoch.
        let _ = self.next.set(next.clone());
        next
    }
}

/// Runs freed by one checkpoint and the epoch they wait for.
type Pending = (Weak<Epoch>, Vec<(u64, u64)>);

/// Page allocation: free runs, the file's end, and runs waiting for old snapshots.
#[derive(Debug, Default)]
pub struct Allocator {
    /// Free runs: first page -> page count. Adjacent runs are merged.
    free: BTreeMap<u64, u64>,
    /// One past the last page in use or free: allocation beyond it grows the file.
    end: u64,
    /// Runs freed by a checkpoint, reusable once the epoch dies.
    pending: Vec<Pending>,
}

impl Allocator {
    /// An allocator for a file of `end` pages with these free runs.
    pub fn new(end: u64, free: &[(u64, u64)]) -> Allocator {
        let mut a = Allocator {
            free: BTreeMap::new(),
            end: end.max(2),
            pending: Vec::new(),
        };
        for &(p, n) in free {
            a.release(p, n);
        }
        a
    }

    /// One past the last page.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The first page of `n` consecutive free pages (lowest first fit, else the file grows).
    pub fn alloc(&mut self, n: u64) -> u64 {
        let found = self
            .free
            .iter()
            .find(|(_, len)| **len >= n)
            .map(|(p, len)| (*p, *len));
        match found {
            Some((p, len)) => {
                self.free.remove(&p);
                if len > n {
                    self.free.insert(p + n, len - n);
                }
                p
            }
            None => {
                let p = self.end;
                self.end += n;
                p
            }
        }
    }

    /// Pages of the free run that reaches the end of the file (0 if none does).
    pub fn tail_free(&self) -> u64 {
        match self.free.iter().next_back() {
            Some((p, n)) if p + n == self.end && *p >= 2 => *n,
            _ => 0,
        }
    }

    /// Cuts the free run that reaches the end of the file off: the file then ends where
    /// that run starts. Returns how many pages were cut.
    pub fn trim_tail(&mut self) -> u64 {
        let n = self.tail_free();
        if n > 0 {
            self.end -= n;
            self.free.remove(&self.end);
        }
        n
    }

    /// Allocates `n` pages at the end of the file (for the free list itself, whose size must
    /// not change the free runs it records).
    pub fn alloc_at_end(&mut self, n: u64) -> u64 {
        let p = self.end;
        self.end += n;
        p
    }

    /// True if any page of the run is free or pending already (a double free).
    pub fn overlaps(&self, p: u64, n: u64) -> bool {
        let hit = |q: u64, m: u64| q < p + n && p < q + m;
        self.free
            .range(..p + n)
            .next_back()
            .is_some_and(|(q, m)| hit(*q, *m))
            || self
                .pending
                .iter()
                .any(|(_, runs)| runs.iter().any(|(q, m)| hit(*q, *m)))
    }

    /// Marks a run free now.
    pub fn release(&mut self, mut p: u64, mut n: u64) {
        if n == 0 {
            return;
        }
        debug_assert!(
            !self
                .free
                .range(..p + n)
                .next_back()
                .is_some_and(|(q, m)| *q < p + n && p < q + m),
            "double free of {p}+{n}"
        );
        if let Some((&q, &m)) = self.free.range(..p).next_back()
            && q + m == p
        {
            self.free.remove(&q);
            p = q;
            n += m;
        }
        if let Some(m) = self.free.remove(&(p + n)) {
            n += m;
        }
        self.free.insert(p, n);
    }

    /// Queues runs that become free when `epoch` is gone.
    pub fn defer(&mut self, epoch: &Arc<Epoch>, runs: Vec<(u64, u64)>) {
        if cfg!(debug_assertions) {
            let mut sorted = runs.clone();
            sorted.sort_unstable();
            for (i, &(p, n)) in sorted.iter().enumerate() {
                assert!(!self.overlaps(p, n), "double free of {p}+{n}");
                assert!(
                    i == 0 || sorted[i - 1].0 + sorted[i - 1].1 <= p,
                    "run {p}+{n} freed twice"
                );
            }
        }
        if !runs.is_empty() {
            self.pending.push((Arc::downgrade(epoch), runs));
        }
    }

    /// Frees the pending runs whose epoch is gone; returns how many pages.
    pub fn reclaim(&mut self) -> u64 {
        let mut freed = Vec::new();
        self.pending.retain_mut(|(epoch, runs)| {
            if epoch.strong_count() == 0 {
                freed.append(runs);
                false
            } else {
                true
            }
        });
        let mut pages = 0;
        for (p, n) in freed {
            pages += n;
            self.release(p, n);
        }
        pages
    }

    /// Every run that no superblock written now would reference: free and pending runs,
    /// merged. This is what a checkpoint records as its free list.
    pub fn persisted_free(&self) -> Vec<(u64, u64)> {
        self.persisted_free_with(&[])
    }

    /// [`Allocator::persisted_free`] plus `limbo`: runs still in use in memory that the
    /// tree a checkpoint writes no longer references (the base pages of the deltas it
    /// writes), so a reopen finds them free.
    pub fn persisted_free_with(&self, limbo: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut all = Allocator {
            free: self.free.clone(),
            end: self.end,
            pending: Vec::new(),
        };
        for (_, runs) in &self.pending {
            for &(p, n) in runs {
                all.release(p, n);
            }
        }
        for &(p, n) in limbo {
            all.release(p, n);
        }
        all.free.into_iter().collect()
    }

    /// Pages free now.
    pub fn free_pages(&self) -> u64 {
        self.free.values().sum()
    }

    /// Pages waiting for old snapshots.
    pub fn pending_pages(&self) -> u64 {
        self.pending
            .iter()
            .flat_map(|(_, r)| r.iter().map(|(_, n)| *n))
            .sum()
    }

    /// Free runs (for verification).
    pub fn free_runs(&self) -> Vec<(u64, u64)> {
        self.free.iter().map(|(p, n)| (*p, *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_run_at_the_end_is_cut_off() {
        let mut a = Allocator::new(100, &[(10, 5), (90, 10)]);
        assert_eq!(a.trim_tail(), 10);
        assert_eq!(a.end(), 90);
        assert_eq!(a.free_runs(), vec![(10, 5)]);
        assert_eq!(
            a.trim_tail(),
            0,
            "the last free run no longer reaches the end"
        );
        a.release(20, 70);
        assert_eq!(a.trim_tail(), 70);
        assert_eq!((a.end(), a.free_runs()), (20, vec![(10, 5)]));
        assert_eq!(
            a.alloc(6),
            20,
            "allocation past the new end grows the file again"
        );
        let mut b = Allocator::new(10, &[(2, 8)]);
        assert_eq!(b.trim_tail(), 8);
        assert_eq!(b.end(), 2, "the superblock pages stay");
    }

    #[test]
    fn runs_merge_and_split() {
        let mut a = Allocator::new(100, &[(10, 5), (20, 5)]);
        a.release(15, 5);
        assert_eq!(a.free_runs(), vec![(10, 15)]);
        assert_eq!(a.alloc(3), 10);
        assert_eq!(a.alloc(20), 100);
        assert_eq!(a.end(), 120);
        assert_eq!(a.free_runs(), vec![(13, 12)]);
    }

    #[test]
    fn pending_runs_wait_for_their_epoch() {
        let mut a = Allocator::new(10, &[]);
        let e0 = Arc::new(Epoch::default());
        let snapshot = e0.clone();
        let e1 = e0.advance();
        a.defer(&e0, vec![(5, 2)]);
        drop(e0);
        assert_eq!(a.reclaim(), 0, "a snapshot of epoch 0 is alive");
        assert_eq!(a.persisted_free(), vec![(5, 2)]);
        drop(snapshot);
        assert_eq!(a.reclaim(), 2);
        assert_eq!(a.free_runs(), vec![(5, 2)]);
        drop(e1);
    }

    #[test]
    fn an_old_snapshot_keeps_later_epochs_pending() {
        let mut a = Allocator::new(10, &[]);
        let e0 = Arc::new(Epoch::default());
        let old = e0.clone();
        let e1 = e0.advance();
        drop(e0);
        let e2 = e1.advance();
        a.defer(&e1, vec![(3, 1)]);
        drop(e1);
        assert_eq!(a.reclaim(), 0, "the epoch-0 snapshot keeps epoch 1 alive");
        drop(old);
        assert_eq!(a.reclaim(), 1);
        drop(e2);
    }
}
