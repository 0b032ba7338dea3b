//! loom models of the committer → log-actor hand-off (group commit), built on the real
//! `CommitLedger` (`actors/src/wal/commit.rs`, included as `persistx_loom_tests::commit`).
//!
//! Each model runs two committer threads and the log actor (the main model thread):
//!
//! * a committer puts `(durability, reply slot)` into the log actor's mailbox and blocks on
//!   its reply slot for the LSN;
//! * the log actor loops like `LogActor::handle_batch` + `settle`: block for one request,
//!   drain the others without blocking (one batch), `assign` each, then — if the ledger
//!   needs it — "write" (store the last LSN into `disk_written`) and "sync" (store it into
//!   `disk_synced`), `mark_written` / `mark_synced`, `release()`, and send each ack to its
//!   committer. When every request has been handled it stops like `on_stop`: writes and
//!   syncs whatever is left, and releases again.
//!
//! Checked, in every interleaving:
//! * no ack before its durability is met: an `Immediate` committer sees
//!   `disk_synced >= lsn` when its ack arrives (an `Eventual` one, `disk_written >= lsn`);
//! * acks leave in increasing LSN order (the actor logs each send in a `Mutex<Vec>`);
//! * no lost wake-up: every committer gets its ack (a missing ack leaves it blocked, which
//!   loom reports as a deadlock) and no request is left in the mailbox;
//! * LSNs are distinct and dense (`1..=2`), and shutdown leaves everything synced with no
//!   waiter pending.
//!
//! The request mailbox and the reply slots are a loom `Mutex` + `Condvar`, not
//! `loom::sync::mpsc`: loom 0.7's channel treats a send and a receive as independent (a send
//! only races other sends, a receive other receives), so its partial-order reduction never
//! explores a second request arriving before the actor's first receive, and the batch of two
//! (the interesting case for group commit) never happens. With a mutex every access is
//! dependent, and each model asserts that some interleaving did batch both requests.
//!
//! Unbounded, the state space is too large (a model ran over 10 minutes without finishing),
//! so each model is bounded to 3 preemptions (`PREEMPTION_BOUND`): about 20,000-25,000
//! interleavings per model, a few seconds in all in release mode. `LOOM_MAX_PREEMPTIONS=4`
//! (about 150,000 interleavings per model, about 20 s in all) is the deeper run. Run with
//!
//! ```text
//! cd /work/main
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p persistx-loom-tests --release --test commit
//! # deeper:
//! LOOM_MAX_PREEMPTIONS=4 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p persistx-loom-tests --release --test commit
//! ```

#![cfg(loom)]

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use persistx_loom_tests::commit::{CommitLedger, Durability};

/// The default preemption bound (`LOOM_MAX_PREEMPTIONS` overrides it).
const PREEMPTION_BOUND: usize = 3;

/// A one-shot reply slot (a `tokio::sync::oneshot` stand-in).
#[derive(Default)]
struct Reply {
    lsn: Mutex<Option<u64>>,
    ready: Condvar,
}

impl Reply {
    fn send(&self, lsn: u64) {
        let mut slot = self.lsn.lock().expect("no poisoning in the model");
        assert!(slot.is_none(), "a committer was acknowledged twice");
        *slot = Some(lsn);
        self.ready.notify_one();
    }

    fn recv(&self) -> u64 {
        let mut slot = self.lsn.lock().expect("no poisoning in the model");
        loop {
            if let Some(lsn) = *slot {
                return lsn;
            }
            slot = self.ready.wait(slot).expect("no poisoning in the model");
        }
    }
}

/// A committer's request: what it wants, and where to send its LSN.
struct Request {
    durability: Durability,
    reply: Arc<Reply>,
}

/// The log actor's mailbox (an unbounded channel stand-in).
#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Request>>,
    nonempty: Condvar,
}

impl Mailbox {
    fn send(&self, request: Request) {
        self.queue
            .lock()
            .expect("no poisoning in the model")
            .push_back(request);
        self.nonempty.notify_one();
    }

    /// Blocks until a request is there.
    fn recv(&self) -> Request {
        let mut queue = self.queue.lock().expect("no poisoning in the model");
        loop {
            if let Some(request) = queue.pop_front() {
                return request;
            }
            queue = self
                .nonempty
                .wait(queue)
                .expect("no poisoning in the model");
        }
    }

    /// Takes a request if one is there.
    fn try_recv(&self) -> Option<Request> {
        self.queue
            .lock()
            .expect("no poisoning in the model")
            .pop_front()
    }
}

/// What the "disk" has seen, and the order acks were sent in.
#[derive(Default)]
struct Disk {
    /// Every LSN up to this one was written to the OS.
    written: AtomicU64,
    /// Every LSN up to this one was synced.
    synced: AtomicU64,
    /// LSNs in the order their acks were sent.
    acks: Mutex<Vec<u64>>,
}

/// Writes and syncs as far as the waiters need (or everything, at `stop`), then sends every
/// ack the ledger releases.
fn settle(ledger: &mut CommitLedger<Arc<Reply>>, disk: &Disk, stop: bool) {
    let last = ledger.last_assigned();
    let sync = stop || ledger.needs_sync();
    let write = sync || ledger.needs_write();
    if write && ledger.written_lsn() < last {
        disk.written.store(last, Ordering::Release);
        ledger.mark_written(last);
    }
    if sync && ledger.synced_lsn() < ledger.written_lsn() {
        disk.synced.store(ledger.written_lsn(), Ordering::Release);
        ledger.mark_synced(ledger.written_lsn());
    }
    for (lsn, reply) in ledger.release() {
        disk.acks
            .lock()
            .expect("no poisoning in the model")
            .push(lsn);
        reply.send(lsn);
    }
}

/// The log actor: handles `expected` requests in batches, then stops. Returns the size of
/// its largest batch.
fn log_actor(mailbox: &Mailbox, expected: usize, disk: &Disk) -> usize {
    let mut ledger = CommitLedger::new(0);
    let mut handled = 0;
    let mut largest = 0;
    while handled < expected {
        let mut batch = vec![mailbox.recv()];
        while let Some(more) = mailbox.try_recv() {
            batch.push(more);
        }
        handled += batch.len();
        largest = largest.max(batch.len());
        for request in batch {
            ledger.assign(request.durability, request.reply);
        }
        settle(&mut ledger, disk, false);
    }
    settle(&mut ledger, disk, true);
    assert_eq!(ledger.pending(), 0, "a waiter was left behind at shutdown");
    assert_eq!(
        ledger.synced_lsn(),
        ledger.last_assigned(),
        "shutdown left records unsynced"
    );
    largest
}

/// A committer: sends its request and waits for the ack; returns its LSN.
fn commit(mailbox: &Mailbox, durability: Durability, disk: &Disk) -> u64 {
    let reply = Arc::new(Reply::default());
    mailbox.send(Request {
        durability,
        reply: reply.clone(),
    });
    let lsn = reply.recv();
    match durability {
        Durability::Immediate => {
            let synced = disk.synced.load(Ordering::Acquire);
            assert!(
                synced >= lsn,
                "Immediate ack of LSN {lsn} before its sync (synced {synced})"
            );
        }
        Durability::Eventual => {
            let written = disk.written.load(Ordering::Acquire);
            assert!(
                written >= lsn,
                "Eventual ack of LSN {lsn} before its write (written {written})"
            );
        }
        Durability::None => {}
    }
    lsn
}

/// Runs two committers with the given durabilities against the log actor, and checks that
/// loom explored more than one interleaving, some of them with both requests in one batch.
fn model(levels: [Durability; 2]) {
    use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let batched = std::sync::Arc::new(AtomicUsize::new(0));
    let (runs2, batched2) = (runs.clone(), batched.clone());
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTION_BOUND);
    }
    builder.check(move || {
        runs2.fetch_add(1, StdOrdering::Relaxed);
        let disk = Arc::new(Disk::default());
        let mailbox = Arc::new(Mailbox::default());
        let committers: Vec<_> = levels
            .iter()
            .map(|&durability| {
                let (mailbox, disk) = (mailbox.clone(), disk.clone());
                thread::spawn(move || commit(&mailbox, durability, &disk))
            })
            .collect();

        if log_actor(&mailbox, levels.len(), &disk) > 1 {
            batched2.fetch_add(1, StdOrdering::Relaxed);
        }

        let mut lsns: Vec<u64> = committers
            .into_iter()
            .map(|c| c.join().expect("committer panicked"))
            .collect();
        lsns.sort_unstable();
        assert_eq!(lsns, vec![1, 2], "LSNs are distinct and dense");
        let acks = disk.acks.lock().expect("no poisoning in the model").clone();
        assert_eq!(
            acks,
            vec![1, 2],
            "acks are sent once each, in increasing LSN order"
        );
        assert_eq!(
            disk.synced.load(Ordering::Acquire),
            2,
            "shutdown syncs everything"
        );
    });
    let (runs, batched) = (
        runs.load(StdOrdering::Relaxed),
        batched.load(StdOrdering::Relaxed),
    );
    println!(
        "{levels:?}: {runs} interleavings explored, {batched} with both requests in one batch"
    );
    assert!(runs > 1, "the model explored a single interleaving");
    assert!(batched > 0, "no interleaving batched both requests");
}

#[test]
fn two_immediate_committers() {
    model([Durability::Immediate, Durability::Immediate]);
}

#[test]
fn immediate_and_none_committers() {
    model([Durability::Immediate, Durability::None]);
}

#[test]
fn eventual_and_immediate_committers() {
    model([Durability::Eventual, Durability::Immediate]);
}
