//! Shared workload drivers and checkers for PersistX's integration tests.
//!
//! A workload is a seeded set of writer tasks appending self-describing records to the WAL
//! at mixed durability levels. [`run_workload`] records which records were acknowledged and
//! at which LSN; [`check_recovered`] verifies a recovered log against that record: every
//! record acknowledged at `Immediate` (or covered by a later acknowledged sync) is present
//! with its exact bytes, the log is a dense LSN prefix, and nothing appears that was never
//! appended or out of a writer's order.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use persistx::io::sim::SimDisk;
use persistx::{Durability, Wal, WalOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The WAL directory used on simulated disks.
pub const WAL_DIR: &str = "/db/wal";

/// One writer's planned appends.
#[derive(Debug, Clone)]
pub struct WriterPlan {
    /// (durability, payload length, sync after this append) per append.
    pub appends: Vec<(Durability, usize, bool)>,
}

/// A seeded workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The seed it was made from.
    pub seed: u64,
    /// WAL segment size (small, so segments rotate).
    pub segment_size: u64,
    /// One plan per concurrent writer.
    pub writers: Vec<WriterPlan>,
    /// Release segments below the LSN reached after this many acknowledged appends.
    pub release_after: Option<usize>,
}

impl Workload {
    /// Builds the workload for `seed`.
    pub fn new(seed: u64) -> Workload {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let writers = (0..rng.random_range(1..=4))
            .map(|_| WriterPlan {
                appends: (0..rng.random_range(3..=16))
                    .map(|_| {
                        let d = match rng.random_range(0..10) {
                            0 => Durability::None,
                            1 => Durability::Eventual,
                            _ => Durability::Immediate,
                        };
                        let len = if rng.random_bool(0.1) {
                            rng.random_range(600..3000)
                        } else {
                            rng.random_range(0..200)
                        };
                        (d, len, rng.random_bool(0.05))
                    })
                    .collect(),
            })
            .collect();
        Workload {
            seed,
            segment_size: if rng.random_bool(0.5) { 4096 } else { 8192 },
            writers,
            release_after: rng.random_bool(0.3).then(|| rng.random_range(5..20)),
        }
    }

    /// WAL options for the workload.
    pub fn options(&self) -> WalOptions {
        WalOptions {
            segment_size: self.segment_size,
            // No timer-driven syncs: keeps runs on a current-thread runtime deterministic.
            sync_interval: std::time::Duration::from_secs(3600),
            // Both write paths: durable direct writes of whole blocks, and buffered writes
            // with fdatasync.
            direct_io: self.seed.is_multiple_of(2),
            ..WalOptions::default()
        }
    }
}

/// The payload of writer `w`'s `i`-th append: self-describing and checkable.
pub fn payload(seed: u64, w: usize, i: usize, len: usize) -> Bytes {
    let mut out = format!("{seed}:{w}:{i}:").into_bytes();
    let mut x = seed ^ ((w as u64) << 32) ^ i as u64;
    while out.len() < len.max(16) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push(b'a' + ((x >> 59) % 26) as u8);
    }
    Bytes::from(out)
}

/// Parses a payload back into (writer, index).
pub fn parse_payload(p: &[u8]) -> Option<(u64, usize, usize)> {
    let s = std::str::from_utf8(p).ok()?;
    let mut it = s.splitn(4, ':');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// What a run acknowledged.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// LSN -> (payload, durability) of every acknowledged append.
    pub acked: BTreeMap<u64, (Bytes, Durability)>,
    /// Highest LSN covered by an acknowledged `sync()`.
    pub synced: u64,
    /// Every payload that was handed to the log, acknowledged or not: (writer, index) -> bytes.
    pub attempted: HashMap<(usize, usize), Bytes>,
    /// True if opening the log failed.
    pub open_failed: bool,
    /// The LSN passed to `release_below` (recorded before the call), 0 if none: records
    /// below it may be gone after recovery.
    pub released_below: u64,
}

impl Outcome {
    /// The highest LSN whose durability is guaranteed against power loss: every LSN up to the
    /// largest acknowledged `Immediate` append or sync.
    pub fn durable_horizon(&self) -> u64 {
        let imm = self
            .acked
            .iter()
            .filter(|(_, (_, d))| *d == Durability::Immediate)
            .map(|(l, _)| *l)
            .max();
        imm.unwrap_or(0).max(self.synced)
    }
}

/// Runs the workload against the WAL on `disk`, until done or until the disk fails.
pub async fn run_workload(disk: &SimDisk, w: &Workload) -> Outcome {
    let out = Arc::new(Mutex::new(Outcome::default()));
    let vfs: Arc<dyn persistx::io::Vfs> = Arc::new(disk.clone());
    let wal = match Wal::open(vfs, Path::new(WAL_DIR), w.options()).await {
        Ok((wal, _, _)) => wal,
        Err(_) => {
            let mut o = out.lock().expect("outcome lock").clone();
            o.open_failed = true;
            return o;
        }
    };
    let acked_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (wi, plan) in w.writers.iter().enumerate() {
        let wal = wal.clone();
        let plan = plan.clone();
        let out = out.clone();
        let seed = w.seed;
        let release_after = w.release_after;
        let acked_count = acked_count.clone();
        tasks.push(tokio::spawn(async move {
            for (i, (d, len, sync)) in plan.appends.iter().enumerate() {
                let p = payload(seed, wi, i, *len);
                out.lock()
                    .expect("outcome lock")
                    .attempted
                    .insert((wi, i), p.clone());
                match wal.append_with(p.clone(), *d).await {
                    Ok(lsn) => {
                        out.lock().expect("outcome lock").acked.insert(lsn, (p, *d));
                        let n = acked_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        if release_after == Some(n) {
                            out.lock().expect("outcome lock").released_below = lsn;
                            if wal.release_below(lsn).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(_) => return,
                }
                if *sync {
                    match wal.sync().await {
                        Ok(lsn) => {
                            let mut o = out.lock().expect("outcome lock");
                            o.synced = o.synced.max(lsn);
                        }
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task panicked");
    }
    let _ = wal.close().await;
    out.lock().expect("outcome lock").clone()
}

/// Checks a recovered log against what the run acknowledged. `must_have` is the LSN up to
/// which every acknowledged record must be present. Returns a description of the first
/// violation.
pub fn check_recovered(
    seed: u64,
    outcome: &Outcome,
    records: &[(u64, Bytes)],
    must_have: u64,
) -> Result<(), String> {
    // Records below a release may be gone; nothing at or above it may be.
    let floor = outcome.released_below.max(1);
    let first = records.first().map(|r| r.0).unwrap_or(floor);
    if first > floor {
        return Err(format!(
            "the log starts at LSN {first} but only records below {floor} were released"
        ));
    }
    for (i, (lsn, _)) in records.iter().enumerate() {
        if *lsn != first + i as u64 {
            return Err(format!(
                "gap: record {i} has LSN {lsn}, expected {}",
                first + i as u64
            ));
        }
    }
    let by_lsn: BTreeMap<u64, &Bytes> = records.iter().map(|(l, p)| (*l, p)).collect();
    let last = records.last().map(|r| r.0).unwrap_or(0);
    for (lsn, (p, _)) in &outcome.acked {
        if *lsn <= must_have && *lsn >= first {
            match by_lsn.get(lsn) {
                Some(got) if *got == p => {}
                Some(_) => {
                    return Err(format!("acknowledged LSN {lsn} came back with other bytes"));
                }
                None => return Err(format!("acknowledged LSN {lsn} lost (log ends at {last})")),
            }
        }
        if *lsn <= last && *lsn >= first && by_lsn.get(lsn) != Some(&p) {
            return Err(format!(
                "LSN {lsn} holds bytes that were not acknowledged for it"
            ));
        }
    }
    let mut next_index: HashMap<usize, usize> = HashMap::new();
    for (lsn, p) in records {
        let Some((s, w, i)) = parse_payload(p) else {
            return Err(format!(
                "LSN {lsn} holds a payload that was never written: {:?}",
                String::from_utf8_lossy(&p[..p.len().min(40)])
            ));
        };
        if s != seed || outcome.attempted.get(&(w, i)) != Some(p) {
            return Err(format!(
                "LSN {lsn} holds a payload that was never written: {:?}",
                String::from_utf8_lossy(&p[..p.len().min(40)])
            ));
        }
        let n = next_index.entry(w).or_insert(0);
        if i < *n {
            return Err(format!("LSN {lsn}: writer {w} record {i} out of order"));
        }
        *n = i + 1;
    }
    Ok(())
}
