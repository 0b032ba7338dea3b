//! The group-commit bookkeeping of the log actor: which waiter may be acknowledged once a
//! batch is written or synced.
//!
//! Pure, single-owner logic (no I/O, no tokio), so the same code runs in the log actor and
//! in the loom model of the committer / log-actor hand-off (`loom-tests/`). It imports
//! nothing but `core`/`alloc` items.
//!
//! Invariants:
//! * LSNs are assigned densely, +1 per record, in arrival order.
//! * Acknowledgements leave strictly in LSN order.
//! * An `Immediate` waiter is released only when the synced LSN covers it; an `Eventual`
//!   one when the written LSN covers it; a `None` one at once, but never ahead of an older
//!   waiter.

use std::collections::VecDeque;

/// How durable a record must be before its writer is answered.
///
/// | level | answered when | survives a process crash | survives power loss |
/// |---|---|---|---|
/// | `Immediate` | its batch is written and `fdatasync`ed | yes | yes |
/// | `Eventual` | its batch is written to the OS | yes | only after the next sync (at most `sync_interval` later) |
/// | `None` | it is queued in the log actor's memory | only after the next write | only after the next sync |
///
/// Whatever the level, recovery yields a prefix of the log: a record is never present
/// while an older one is missing. With direct I/O (`WalOptions::direct_io`, the default where
/// the file system allows it) every write is durable when it completes, so `Eventual`
/// records are durable when acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// Acknowledged after `fdatasync`: survives power loss. The default.
    #[default]
    Immediate,
    /// Acknowledged after the write reached the OS; synced within the sync interval.
    Eventual,
    /// Acknowledged when queued; written with the next batch or within the sync interval.
    None,
}

/// The group-commit ledger: waiters in LSN order and the written / synced horizons.
#[derive(Debug)]
pub struct CommitLedger<W> {
    next_lsn: u64,
    written_lsn: u64,
    synced_lsn: u64,
    waiters: VecDeque<(u64, Durability, W)>,
}

impl<W> CommitLedger<W> {
    /// A ledger whose log holds every LSN up to `last_lsn`, all synced.
    pub fn new(last_lsn: u64) -> CommitLedger<W> {
        CommitLedger {
            next_lsn: last_lsn + 1,
            written_lsn: last_lsn,
            synced_lsn: last_lsn,
            waiters: VecDeque::new(),
        }
    }

    /// Assigns the next LSN to a record whose writer waits with `waiter`.
    pub fn assign(&mut self, durability: Durability, waiter: W) -> u64 {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.waiters.push_back((lsn, durability, waiter));
        lsn
    }

    /// Registers a waiter that wants every LSN assigned so far synced (a `sync` call);
    /// returns the LSN it waits for.
    pub fn wait_synced(&mut self, waiter: W) -> u64 {
        let lsn = self.next_lsn - 1;
        self.waiters.push_back((lsn, Durability::Immediate, waiter));
        lsn
    }

    /// The last LSN assigned.
    pub fn last_assigned(&self) -> u64 {
        self.next_lsn - 1
    }

    /// Every LSN up to this one has been written to the OS.
    pub fn written_lsn(&self) -> u64 {
        self.written_lsn
    }

    /// Every LSN up to this one is durable.
    pub fn synced_lsn(&self) -> u64 {
        self.synced_lsn
    }

    /// True if some waiter needs a sync to be released.
    pub fn needs_sync(&self) -> bool {
        self.waiters
            .iter()
            .any(|(lsn, d, _)| *d == Durability::Immediate && *lsn > self.synced_lsn)
    }

    /// True if some waiter needs a write to be released.
    pub fn needs_write(&self) -> bool {
        self.waiters
            .iter()
            .any(|(lsn, d, _)| *d != Durability::None && *lsn > self.written_lsn)
    }

    /// Records that every LSN up to `lsn` reached the OS.
    pub fn mark_written(&mut self, lsn: u64) {
        debug_assert!(
            lsn <= self.last_assigned(),
            "written past the last assigned LSN"
        );
        self.written_lsn = self.written_lsn.max(lsn);
    }

    /// Records that every LSN up to `lsn` is durable.
    pub fn mark_synced(&mut self, lsn: u64) {
        debug_assert!(lsn <= self.written_lsn, "synced past the written LSN");
        self.synced_lsn = self.synced_lsn.max(lsn);
    }

    /// Pops, in LSN order, every waiter whose durability is met, stopping at the first that
    /// is not.
    pub fn release(&mut self) -> Vec<(u64, W)> {
        let mut out = Vec::new();
        while let Some((lsn, d, _)) = self.waiters.front() {
            let met = match d {
                Durability::Immediate => *lsn <= self.synced_lsn,
                Durability::Eventual => *lsn <= self.written_lsn,
                Durability::None => true,
            };
            if !met {
                break;
            }
            if let Some((lsn, _, w)) = self.waiters.pop_front() {
                out.push((lsn, w));
            }
        }
        out
    }

    /// Removes every waiter (the log failed); they get the error.
    pub fn fail_all(&mut self) -> Vec<(u64, W)> {
        self.waiters.drain(..).map(|(lsn, _, w)| (lsn, w)).collect()
    }

    /// Number of waiters not yet released.
    pub fn pending(&self) -> usize {
        self.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_lsn_order_only_when_durable() {
        let mut l = CommitLedger::new(10);
        assert_eq!(l.assign(Durability::Immediate, 'a'), 11);
        assert_eq!(l.assign(Durability::None, 'b'), 12);
        assert_eq!(l.assign(Durability::Eventual, 'c'), 13);
        assert!(l.release().is_empty(), "nothing before the sync of 11");
        l.mark_written(13);
        assert!(l.release().is_empty(), "b and c wait behind a");
        l.mark_synced(13);
        assert_eq!(l.release(), vec![(11, 'a'), (12, 'b'), (13, 'c')]);
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn none_is_released_at_once() {
        let mut l = CommitLedger::new(0);
        l.assign(Durability::None, 1);
        assert!(!l.needs_write() && !l.needs_sync());
        assert_eq!(l.release(), vec![(1, 1)]);
    }
}
