//! Crash at every I/O point of seeded random append workloads on the simulated disk, with
//! each crash image; then crash again during recovery and recover once more.
//!
//! Passes when (TESTING.md G1, G2): every record acknowledged at `Immediate` (or covered by an
//! acknowledged sync) survives; the recovered log is a dense prefix holding only records that
//! were appended, each writer's in order; recovery never reports corruption for a crash;
//! recovery is idempotent; the recovered log accepts new appends.
//!
//! CI runs 50 workloads. A long run:
//! `PERSISTX_CRASH_WORKLOADS=5000 cargo test --release -p persistx-tests --test wal_crash`
//! (`PERSISTX_CRASH_SEED=N` starts elsewhere; a failure prints the seed, crash point and
//! image, which replay exactly).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use persistx::Wal;
use persistx::io::Vfs;
use persistx::io::sim::{CrashImage, SimDisk};
use persistx_tests::{WAL_DIR, Workload, check_recovered, run_workload};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn recover(disk: &SimDisk, w: &Workload) -> persistx::Result<Vec<(u64, Bytes)>> {
    let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
    let (wal, _, records) = Wal::open(vfs, Path::new(WAL_DIR), w.options()).await?;
    let _ = wal.close().await;
    Ok(records)
}

/// Recovers `img`, checks it, then crashes at a chosen point of recovery, recovers the
/// resulting image again, and checks that both recoveries agree; finally appends.
async fn check_image(w: &Workload, outcome: &persistx_tests::Outcome, img: SimDisk, ctx: &str) {
    let must = outcome.durable_horizon();
    // Recovery on a copy, counting its I/O operations.
    let probe = img.crash_image(CrashImage::RevertNames, 0);
    let first = recover(&probe, w)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
    check_recovered(w.seed, outcome, &first, must).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let recovery_ops = probe.ops();

    // Crash during recovery at a few points, recover again: same log.
    let points = [
        1,
        recovery_ops / 2,
        recovery_ops.saturating_sub(1),
        recovery_ops,
    ];
    for (k, at) in points.into_iter().filter(|p| *p >= 1).enumerate() {
        for image in [CrashImage::DurableOnly, CrashImage::TornLast] {
            let d = img.crash_image(CrashImage::RevertNames, 0);
            d.crash_at(at);
            let _ = recover(&d, w).await;
            let again = d.crash_image(image, w.seed ^ k as u64);
            let second = recover(&again, w).await.unwrap_or_else(|e| {
                panic!("{ctx}: recovery after crash in recovery at op {at} failed: {e}")
            });
            assert_eq!(
                second, first,
                "{ctx}: recovery not idempotent (crash in recovery at op {at}, {image:?})"
            );
        }
    }

    // The recovered log takes new records, after the recovered ones.
    let vfs: Arc<dyn Vfs> = Arc::new(img.clone());
    let (wal, report, _) = Wal::open(vfs.clone(), Path::new(WAL_DIR), w.options())
        .await
        .expect("reopen");
    let lsn = wal
        .append(Bytes::from_static(b"after"))
        .await
        .unwrap_or_else(|e| panic!("{ctx}: append failed: {e}"));
    assert_eq!(
        lsn,
        report.last_lsn.max(first.last().map(|r| r.0).unwrap_or(0)) + 1,
        "{ctx}"
    );
    wal.close().await.expect("close");
    let (_, _, again) = Wal::open(vfs, Path::new(WAL_DIR), w.options())
        .await
        .expect("reopen");
    assert_eq!(
        again.last().map(|r| (r.0, r.1.clone())),
        Some((lsn, Bytes::from_static(b"after"))),
        "{ctx}"
    );
}

fn crash_everywhere(seed: u64) {
    let w = Workload::new(seed);
    let rt = rt();
    // A clean run tells how many I/O operations the workload makes.
    let clean = SimDisk::new();
    let outcome = rt.block_on(run_workload(&clean, &w));
    assert!(
        !outcome.open_failed,
        "seed {seed}: clean run failed to open"
    );
    let total_appends: usize = w.writers.iter().map(|p| p.appends.len()).sum();
    assert_eq!(
        outcome.acked.len(),
        total_appends,
        "seed {seed}: clean run lost appends"
    );
    let total_ops = clean.ops();
    for n in 1..=total_ops + 1 {
        let disk = SimDisk::new();
        disk.crash_at(n);
        let outcome = rt.block_on(run_workload(&disk, &w));
        for image in CrashImage::ALL {
            let img = disk.crash_image(image, seed.wrapping_mul(1_000_003) ^ n);
            let ctx = format!("seed {seed}, crash at op {n}/{total_ops}, image {image:?}");
            rt.block_on(check_image(&w, &outcome, img, &ctx));
        }
    }
}

#[test]
fn crash_at_every_io_point() {
    let start = env_u64("PERSISTX_CRASH_SEED", 0);
    let count = env_u64("PERSISTX_CRASH_WORKLOADS", 50);
    for seed in start..start + count {
        crash_everywhere(seed);
    }
}
