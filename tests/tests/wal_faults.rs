//! Fault loop: for every I/O operation N of seeded workloads, fail operation N once, then
//! fail every operation from N on. Passes when every run ends with clean errors (no panic,
//! no hang), nothing is acknowledged that is not where its durability level promises, and
//! the log reopens (on the disk as it is, and on its power-loss image) holding every
//! acknowledged record.
//!
//! CI runs 10 workloads; a long run:
//! `PERSISTX_FAULT_WORKLOADS=200 cargo test --release -p persistx-tests --test wal_faults`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use persistx::io::Vfs;
use persistx::io::sim::{CrashImage, SimDisk};
use persistx::{Durability, EngineError as Error, Wal};
use persistx_tests::{Outcome, WAL_DIR, Workload, check_recovered, run_workload};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every LSN up to this one reached the OS (acknowledged at Eventual or Immediate, or synced).
fn written_horizon(o: &Outcome) -> u64 {
    let w = o
        .acked
        .iter()
        .filter(|(_, (_, d))| *d != Durability::None)
        .map(|(l, _)| *l)
        .max();
    w.unwrap_or(0).max(o.synced)
}

async fn reopen_and_check(disk: &SimDisk, w: &Workload, o: &Outcome, must: u64, ctx: &str) {
    let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
    let (wal, _, records) = Wal::open(vfs, Path::new(WAL_DIR), w.options())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    check_recovered(w.seed, o, &records, must).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    wal.append(bytes::Bytes::from_static(b"x"))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: append after reopen: {e}"));
    wal.close()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
}

fn fault_loop(seed: u64) {
    let w = Workload::new(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clean = SimDisk::new();
    rt.block_on(run_workload(&clean, &w));
    let total = clean.ops();
    for n in 1..=total + 1 {
        for persistent in [false, true] {
            let ctx = format!("seed {seed}, fail op {n}/{total}, persistent {persistent}");
            let disk = SimDisk::new();
            disk.fail_at(n, persistent);
            // A bound against hangs only; the workload takes milliseconds.
            let o = rt
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(60), run_workload(&disk, &w)).await
                })
                .unwrap_or_else(|_| panic!("{ctx}: the workload hung"));
            disk.clear_fault();
            let img = disk.crash_image(CrashImage::DurableOnly, seed ^ n);
            rt.block_on(reopen_and_check(
                &img,
                &w,
                &o,
                o.durable_horizon(),
                &format!("{ctx}, power loss"),
            ));
            rt.block_on(reopen_and_check(
                &disk,
                &w,
                &o,
                written_horizon(&o),
                &format!("{ctx}, as is"),
            ));
        }
    }
}

#[test]
fn fail_every_io_operation_once_then_persistently() {
    let start = env_u64("PERSISTX_FAULT_SEED", 1000);
    for seed in start..start + env_u64("PERSISTX_FAULT_WORKLOADS", 10) {
        fault_loop(seed);
    }
}

/// A failed fsync fails its batch and poisons the log: later appends fail with `Poisoned`
/// and nothing is retried; after reopen the log works and holds every acknowledged record.
#[test]
fn failed_sync_poisons_until_reopen() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let disk = SimDisk::new();
        let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
        let w = Workload::new(7);
        let (wal, _, _) = Wal::open(vfs.clone(), Path::new(WAL_DIR), w.options())
            .await
            .expect("open");
        let a = wal
            .append(bytes::Bytes::from_static(b"first"))
            .await
            .expect("append");
        // The next operation is the batch's write+sync; fail the sync (write is op n+1).
        let n = disk.ops();
        disk.fail_at(n + 2, false);
        let err = wal
            .append(bytes::Bytes::from_static(b"second"))
            .await
            .expect_err("sync failed");
        assert!(
            matches!(err, Error::Io(_)),
            "the batch gets the I/O error: {err}"
        );
        let ops_after_failure = disk.ops();
        let err = wal
            .append(bytes::Bytes::from_static(b"third"))
            .await
            .expect_err("poisoned");
        assert!(
            matches!(err, Error::Poisoned { .. }),
            "later callers get Poisoned: {err}"
        );
        assert!(wal.is_poisoned());
        assert_eq!(
            disk.ops(),
            ops_after_failure,
            "nothing is retried after a failed fsync"
        );
        assert!(matches!(wal.close().await, Err(Error::Poisoned { .. })));
        let (wal, _, records) = Wal::open(vfs, Path::new(WAL_DIR), w.options())
            .await
            .expect("reopen");
        assert_eq!(records.first().map(|r| r.0), Some(a));
        wal.append(bytes::Bytes::from_static(b"fourth"))
            .await
            .expect("append after reopen");
    });
}
