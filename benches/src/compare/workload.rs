//! The checked workload, generic over the engine.
//!
//! Phases, in order, on one database (see `benches/README.md` for the full description):
//!
//! 1. bulk load of `items` pairs in one transaction, durable commit;
//! 2. `single_commits` durable single-insert transactions of fresh keys, one thread;
//! 3. `batch_txns` durable transactions of `batch_size` fresh inserts, one thread;
//! 4. `writers` threads, each `writer_commits` durable single-insert transactions;
//! 5. an untimed warm-up reading every loaded pair once, then `reads` random point reads of
//!    loaded keys, for each count in `read_threads`;
//! 6. `ranges` reads of `range_len` entries from a random loaded key, one thread;
//! 7. removal of the first `removes` loaded pairs in one durable transaction;
//! 8. close, then the size of the directory and the peak RSS.
//!
//! After each write phase every key it wrote is read back (untimed); every timed read is
//! checked against the dataset. Any wrong answer ends the run with an error that names the
//! engine, the phase, the pair and what was expected.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::Result;
use crate::compare::dataset::{self, Dataset, Stream, hex_prefix};
use crate::compare::engine::{Engine, Pair, Session};
use crate::compare::proc_stats;
use crate::compare::report::{EngineReport, point_reads_key};

/// Sizes of every phase. All values are counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Seed of every random choice.
    pub seed: u64,
    /// Pairs of the bulk load.
    pub items: usize,
    /// Bytes of every key.
    pub key_len: usize,
    /// Bytes of every value.
    pub value_len: usize,
    /// Transactions of phase 2.
    pub single_commits: usize,
    /// Transactions of phase 3.
    pub batch_txns: usize,
    /// Inserts per transaction of phase 3.
    pub batch_size: usize,
    /// Threads of phase 4.
    pub writers: usize,
    /// Transactions per thread of phase 4.
    pub writer_commits: usize,
    /// Point reads of phase 5, split across the threads, for each thread count.
    pub reads: usize,
    /// Thread counts of phase 5.
    pub read_threads: Vec<usize>,
    /// Range reads of phase 6.
    pub ranges: usize,
    /// Entries per range read.
    pub range_len: usize,
    /// Loaded pairs removed in phase 7.
    pub removes: usize,
    /// Removed and kept keys checked after phase 7 (each).
    pub remove_checks: usize,
}

impl Workload {
    /// Checks that the sizes make sense together.
    pub fn validate(&self) -> Result<()> {
        if self.items == 0 {
            return Err("--items must be at least 1".into());
        }
        if self.key_len < 8 {
            return Err(format!(
                "--key-len {} is too short for random distinct keys (min 8)",
                self.key_len
            )
            .into());
        }
        if self.batch_size == 0 || self.writers == 0 || self.range_len == 0 {
            return Err("--batch-size, --writers and the range length must be at least 1".into());
        }
        if self.read_threads.is_empty() || self.read_threads.contains(&0) {
            return Err("--read-threads needs at least one count, none of them 0".into());
        }
        if self.removes > self.items {
            return Err(format!(
                "--removes {} is more than the {} loaded pairs",
                self.removes, self.items
            )
            .into());
        }
        if self.total_pairs() > u32::MAX as usize {
            return Err(format!(
                "{} pairs in all is too many (max {})",
                self.total_pairs(),
                u32::MAX
            )
            .into());
        }
        Ok(())
    }

    /// Pairs of phase 1.
    pub fn loaded(&self) -> Range<usize> {
        0..self.items
    }

    /// Pairs of phase 2.
    pub fn singles(&self) -> Range<usize> {
        let start = self.loaded().end;
        start..start + self.single_commits
    }

    /// Pairs of phase 3.
    pub fn batched(&self) -> Range<usize> {
        let start = self.singles().end;
        start..start + self.batch_txns * self.batch_size
    }

    /// Pairs of phase 4, all writers; writer `w` owns the `w`-th block of `writer_commits`.
    pub fn concurrent(&self) -> Range<usize> {
        let start = self.batched().end;
        start..start + self.writers * self.writer_commits
    }

    /// Pairs in all.
    pub fn total_pairs(&self) -> usize {
        self.concurrent().end
    }

    /// The same workload as command-line flags of the `compare` binary.
    pub fn to_args(&self) -> Vec<String> {
        let threads: Vec<String> = self.read_threads.iter().map(ToString::to_string).collect();
        [
            ("--seed", self.seed.to_string()),
            ("--items", self.items.to_string()),
            ("--key-len", self.key_len.to_string()),
            ("--value-len", self.value_len.to_string()),
            ("--single-commits", self.single_commits.to_string()),
            ("--batch-txns", self.batch_txns.to_string()),
            ("--batch-size", self.batch_size.to_string()),
            ("--writers", self.writers.to_string()),
            ("--writer-commits", self.writer_commits.to_string()),
            ("--reads", self.reads.to_string()),
            ("--read-threads", threads.join(",")),
            ("--ranges", self.ranges.to_string()),
            ("--range-len", self.range_len.to_string()),
            ("--removes", self.removes.to_string()),
            ("--remove-checks", self.remove_checks.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Reads back pairs `range` through `s` and fails on the first missing or wrong one.
fn check_present<S: Session>(
    name: &str,
    phase: &str,
    s: &mut S,
    ds: &Dataset,
    range: Range<usize>,
) -> Result<()> {
    let mut value = Vec::new();
    for i in range {
        check_get(name, phase, s, ds, i, &mut value)?;
    }
    Ok(())
}

/// Reads pair `i` through `s` and fails unless it is there with its value.
fn check_get<S: Session>(
    name: &str,
    phase: &str,
    s: &mut S,
    ds: &Dataset,
    i: usize,
    value: &mut Vec<u8>,
) -> Result<()> {
    let found = s.get(ds.key(i), value)?;
    check_value(name, phase, ds, i, found.then_some(value.as_slice()))
}

/// Fails unless a run of lookups answered all `expected` of them (an adapter that stopped
/// early would otherwise inflate the rate).
fn all_answered(name: &str, phase: &str, answered: usize, expected: usize) -> Result<()> {
    if answered != expected {
        return Err(format!(
            "{name}: WRONG ANSWER in {phase}: {answered} of {expected} lookups were answered"
        )
        .into());
    }
    Ok(())
}

/// Fails unless `found` (a lookup of pair `i`) is pair `i`'s value.
fn check_value(
    name: &str,
    phase: &str,
    ds: &Dataset,
    i: usize,
    found: Option<&[u8]>,
) -> Result<()> {
    let Some(value) = found else {
        return Err(format!(
            "{name}: WRONG ANSWER in {phase}: pair #{i} (key {}) not found, expected it present",
            hex_prefix(ds.key(i))
        )
        .into());
    };
    if value != ds.value(i) {
        return Err(format!(
            "{name}: WRONG ANSWER in {phase}: pair #{i} (key {}) has value {} ({} bytes), expected {} ({} bytes)",
            hex_prefix(ds.key(i)),
            hex_prefix(value),
            value.len(),
            hex_prefix(ds.value(i)),
            ds.value(i).len()
        )
        .into());
    }
    Ok(())
}

/// Runs `threads` threads, each with its own session, released together; returns the wall
/// time from the release until the last one finished, or the first error.
fn timed_threads<E, F>(engine: &E, threads: usize, work: F) -> Result<Duration>
where
    E: Engine,
    F: Fn(usize, &mut E::Session<'_>) -> Result<()> + Sync,
{
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let work = &work;
                scope.spawn(move || -> Result<()> {
                    // Every thread reaches the barrier, even one whose session failed, so
                    // none waits forever.
                    let session = engine.session();
                    barrier.wait();
                    work(t, &mut session?)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut first_error = None;
        for h in handles {
            let outcome = h
                .join()
                .unwrap_or_else(|_| Err("a benchmark thread panicked".into()));
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        let elapsed = start.elapsed();
        match first_error {
            Some(e) => Err(e),
            None => Ok(elapsed),
        }
    })
}

/// Runs the workload on a new database of engine `E` in `dir`.
pub fn run<E: Engine>(w: &Workload, dir: &Path) -> Result<EngineReport> {
    w.validate()?;
    let name = E::NAME;
    // Each progress line carries the peak RSS so far, to see which phase sets it.
    let log = |msg: String| {
        let hwm = proc_stats::status_kib("VmHWM").map(mib).unwrap_or(f64::NAN);
        eprintln!("[{name}] {msg} (peak RSS so far {hwm:.0} MiB)")
    };
    let mut values: BTreeMap<String, f64> = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        values.insert(k.to_string(), v);
    };

    let t = Instant::now();
    let ds = Dataset::generate(w.seed, w.total_pairs(), w.key_len, w.value_len)?;
    // The bulk load's list of pairs is counted in the harness's memory too.
    let pairs = ds.pairs(w.loaded());
    let harness_kib = proc_stats::status_kib("VmRSS")?;
    log(format!(
        "generated {} pairs in {:.1} s; harness RSS {:.1} MiB",
        ds.len(),
        t.elapsed().as_secs_f64(),
        mib(harness_kib)
    ));
    put("harness_rss_mib", mib(harness_kib));

    let engine = E::open(dir)?;

    // 1. Bulk load.
    let mut s = engine.session()?;
    let t = Instant::now();
    s.bulk_load(&pairs)?;
    let elapsed = t.elapsed();
    drop(s);
    drop(pairs);
    log(format!(
        "1. bulk load of {} pairs: {:.2} s",
        w.items,
        elapsed.as_secs_f64()
    ));
    put("bulk_load_s", elapsed.as_secs_f64());
    put("bulk_load_per_s", rate(w.items, elapsed));

    // 2. Single durable inserts.
    let mut s = engine.session()?;
    let pairs = ds.pairs(w.singles());
    let t = Instant::now();
    s.insert_each_durable(&pairs)?;
    let elapsed = t.elapsed();
    drop(s);
    drop(pairs);
    check_present(
        name,
        "phase 2 (single inserts)",
        &mut engine.session()?,
        &ds,
        w.singles(),
    )?;
    let r = rate(w.single_commits, elapsed);
    log(format!(
        "2. {} durable single inserts: {r:.0} commits/s",
        w.single_commits
    ));
    put("single_commits_per_s", r);

    // 3. Batched durable inserts.
    let mut s = engine.session()?;
    let pairs = ds.pairs(w.batched());
    let t = Instant::now();
    for chunk in pairs.chunks(w.batch_size) {
        s.insert_batch_durable(chunk)?;
    }
    let elapsed = t.elapsed();
    drop(s);
    drop(pairs);
    check_present(
        name,
        "phase 3 (batched inserts)",
        &mut engine.session()?,
        &ds,
        w.batched(),
    )?;
    let r = rate(w.batched().len(), elapsed);
    log(format!(
        "3. {} durable txns of {} inserts: {r:.0} inserts/s",
        w.batch_txns, w.batch_size
    ));
    put("batch_inserts_per_s", r);

    // 4. Concurrent durable single inserts.
    let base = w.concurrent().start;
    let parts: Vec<Vec<Pair<'_>>> = (0..w.writers)
        .map(|t| {
            let first = base + t * w.writer_commits;
            ds.pairs(first..first + w.writer_commits)
        })
        .collect();
    let elapsed = timed_threads(&engine, w.writers, |t, ws| {
        ws.insert_each_durable(&parts[t])
    })?;
    drop(parts);
    check_present(
        name,
        "phase 4 (concurrent inserts)",
        &mut engine.session()?,
        &ds,
        w.concurrent(),
    )?;
    let r = rate(w.concurrent().len(), elapsed);
    log(format!(
        "4. {} writers x {} durable single inserts: {r:.0} commits/s",
        w.writers, w.writer_commits
    ));
    put("concurrent_commits_per_s", r);

    // 5. Point reads, after an untimed warm-up that reads every loaded pair once (in pair
    // order, which is random key order) and so also checks the whole bulk load.
    let t = Instant::now();
    check_present(
        name,
        "the warm-up (every loaded pair)",
        &mut engine.session()?,
        &ds,
        w.loaded(),
    )?;
    log(format!(
        "5. warm-up: all {} loaded pairs read and checked in {:.2} s",
        w.items,
        t.elapsed().as_secs_f64()
    ));
    for &threads in &w.read_threads {
        let elapsed = timed_threads(&engine, threads, |t, rs| {
            let n = w.reads / threads + usize::from(t < w.reads % threads);
            let mut rng = dataset::rng(
                w.seed,
                Stream::PointReads {
                    threads: u32::try_from(threads)?,
                    thread: u32::try_from(t)?,
                },
            );
            // The pair of the lookup in flight: `get_each` checks each answer before it
            // takes the next key.
            let current = Cell::new(0);
            let mut keys = (0..n).map(|_| {
                let i = dataset::pick(&mut rng, w.loaded());
                current.set(i);
                ds.key(i)
            });
            let mut answered = 0;
            rs.get_each(&mut keys, &mut |found| {
                answered += 1;
                check_value(name, "phase 5 (point reads)", &ds, current.get(), found)
            })?;
            all_answered(name, "phase 5 (point reads)", answered, n)
        })?;
        let r = rate(w.reads, elapsed);
        log(format!(
            "5. {} point reads on {threads} thread(s): {r:.0} reads/s",
            w.reads
        ));
        put(&point_reads_key(threads), r);
    }

    // 6. Range reads. Every pair written so far is present, so the entries after a key are
    // the next ones in the dataset's key order.
    let mut s = engine.session()?;
    let mut rng = dataset::rng(w.seed, Stream::RangeReads);
    let current = Cell::new(0);
    let mut starts = (0..w.ranges).map(|_| {
        let i = dataset::pick(&mut rng, w.loaded());
        current.set(i);
        ds.key(i)
    });
    let mut answered = 0;
    let t = Instant::now();
    s.range_each(&mut starts, w.range_len, &mut |got| {
        answered += 1;
        check_range(name, &ds, w.range_len, current.get(), got)
    })?;
    let elapsed = t.elapsed();
    all_answered(name, "phase 6 (range reads)", answered, w.ranges)?;
    drop(s);
    let r = rate(w.ranges, elapsed);
    log(format!(
        "6. {} range reads of {}: {r:.0} ranges/s",
        w.ranges, w.range_len
    ));
    put("range_reads_per_s", r);

    // 7. Remove the first `removes` loaded pairs (random keys, so a random subset).
    let mut s = engine.session()?;
    let removed = 0..w.removes;
    let keys: Vec<&[u8]> = removed.clone().map(|i| ds.key(i)).collect();
    let t = Instant::now();
    s.remove_batch_durable(&keys)?;
    let elapsed = t.elapsed();
    drop(s);
    drop(keys);
    log(format!(
        "7. removal of {} keys: {:.2} s",
        w.removes,
        elapsed.as_secs_f64()
    ));
    put("remove_s", elapsed.as_secs_f64());
    let mut s = engine.session()?;
    let mut rng = dataset::rng(w.seed, Stream::RemoveCheck);
    let mut value = Vec::new();
    if !removed.is_empty() {
        for _ in 0..w.remove_checks {
            let i = dataset::pick(&mut rng, removed.clone());
            if s.get(ds.key(i), &mut value)? {
                return Err(format!(
                    "{name}: WRONG ANSWER after phase 7: removed pair #{i} (key {}) is still present",
                    hex_prefix(ds.key(i))
                )
                .into());
            }
        }
    }
    if w.removes < ds.len() {
        for _ in 0..w.remove_checks {
            let i = dataset::pick(&mut rng, w.removes..ds.len());
            check_get(name, "phase 7 (kept keys)", &mut s, &ds, i, &mut value)?;
        }
    }

    // 8. Close; size on disk and peak memory.
    drop(s);
    engine.close()?;
    let bytes = proc_stats::dir_bytes(dir)?;
    let peak_kib = proc_stats::status_kib("VmHWM")?;
    log(format!(
        "8. file size {:.1} MiB, peak RSS {:.1} MiB",
        bytes as f64 / (1024.0 * 1024.0),
        mib(peak_kib)
    ));
    put("file_size_mib", bytes as f64 / (1024.0 * 1024.0));
    put("peak_rss_mib", mib(peak_kib));

    Ok(EngineReport {
        engine: name.to_string(),
        values,
    })
}

/// Checks the answer of a range read that started at the key of pair `start`.
fn check_range(
    name: &str,
    ds: &Dataset,
    limit: usize,
    start: usize,
    got: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    let pos = ds.rank(start);
    let expected = limit.min(ds.len() - pos);
    if got.len() != expected {
        return Err(format!(
            "{name}: WRONG ANSWER in phase 6 (range reads): from pair #{start} (key {}) got {} entries, expected {expected}",
            hex_prefix(ds.key(start)),
            got.len()
        )
        .into());
    }
    for (j, (k, v)) in got.iter().enumerate() {
        let e = ds.at_rank(pos + j);
        if k.as_slice() != ds.key(e) || v.as_slice() != ds.value(e) {
            return Err(format!(
                "{name}: WRONG ANSWER in phase 6 (range reads): from pair #{start} (key {}), entry {j} is key {} value {}, expected pair #{e} key {} value {}",
                hex_prefix(ds.key(start)),
                hex_prefix(k),
                hex_prefix(v),
                hex_prefix(ds.key(e)),
                hex_prefix(ds.value(e))
            )
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::compare::engine::Pair;

    /// A `BTreeMap` engine; `FAULT` picks a wrong answer it gives (0: none).
    struct Model<const FAULT: u8> {
        map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    }

    const NO_FAULT: u8 = 0;
    /// Loses the last pair of every batch.
    const LOSE_WRITE: u8 = 1;
    /// Flips a bit of every value it reads back through `get`, after its first 1,000 reads.
    const CORRUPT_READ: u8 = 2;
    /// Skips the second entry of every range.
    const SKIP_IN_RANGE: u8 = 3;
    /// Keeps every removed key.
    const IGNORE_REMOVE: u8 = 4;
    /// Answers only the first lookup of each run of point reads.
    const STOP_EARLY: u8 = 5;

    impl<const FAULT: u8> Model<FAULT> {
        fn map(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>>> {
            self.map.lock().map_err(|_| "model lock poisoned".into())
        }
    }

    impl<const FAULT: u8> Engine for Model<FAULT> {
        const NAME: &'static str = "model";
        type Session<'e> = ModelSession<'e, FAULT>;

        fn open(_dir: &Path) -> Result<Self> {
            Ok(Model {
                map: Mutex::new(BTreeMap::new()),
            })
        }

        fn session(&self) -> Result<ModelSession<'_, FAULT>> {
            Ok(ModelSession {
                engine: self,
                reads: 0,
            })
        }
    }

    struct ModelSession<'e, const FAULT: u8> {
        engine: &'e Model<FAULT>,
        reads: u64,
    }

    impl<const FAULT: u8> Session for ModelSession<'_, FAULT> {
        fn insert_one_durable(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            self.engine.map()?.insert(key.to_vec(), value.to_vec());
            Ok(())
        }

        fn insert_batch_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
            let n = if FAULT == LOSE_WRITE {
                pairs.len().saturating_sub(1)
            } else {
                pairs.len()
            };
            let mut map = self.engine.map()?;
            for &(k, v) in &pairs[..n] {
                map.insert(k.to_vec(), v.to_vec());
            }
            Ok(())
        }

        fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
            self.reads += 1;
            let map = self.engine.map()?;
            let Some(v) = map.get(key) else {
                return Ok(false);
            };
            value.clear();
            value.extend_from_slice(v);
            if FAULT == CORRUPT_READ && self.reads > 1_000 {
                value[0] ^= 1;
            }
            Ok(true)
        }

        fn get_each<'k>(
            &mut self,
            keys: &mut dyn Iterator<Item = &'k [u8]>,
            check: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
        ) -> Result<()> {
            let mut value = Vec::new();
            let take = if FAULT == STOP_EARLY { 1 } else { usize::MAX };
            for key in keys.take(take) {
                let found = self.get(key, &mut value)?;
                check(found.then_some(value.as_slice()))?;
            }
            Ok(())
        }

        fn range(
            &mut self,
            start: &[u8],
            limit: usize,
            out: &mut Vec<(Vec<u8>, Vec<u8>)>,
        ) -> Result<()> {
            out.clear();
            let map = self.engine.map()?;
            let skip = usize::from(FAULT == SKIP_IN_RANGE);
            for (j, (k, v)) in map.range(start.to_vec()..).enumerate() {
                if out.len() == limit {
                    break;
                }
                if skip == 1 && j == 1 {
                    continue;
                }
                out.push((k.clone(), v.clone()));
            }
            Ok(())
        }

        fn remove_batch_durable(&mut self, keys: &[&[u8]]) -> Result<()> {
            if FAULT != IGNORE_REMOVE {
                let mut map = self.engine.map()?;
                for &k in keys {
                    map.remove(k);
                }
            }
            Ok(())
        }
    }

    fn small() -> Workload {
        Workload {
            seed: 1,
            items: 2000,
            key_len: 24,
            value_len: 150,
            single_commits: 20,
            batch_txns: 3,
            batch_size: 50,
            writers: 4,
            writer_commits: 10,
            reads: 3000,
            read_threads: vec![1, 2],
            ranges: 500,
            range_len: 10,
            removes: 1000,
            remove_checks: 100,
        }
    }

    fn error_of<E: Engine>() -> String {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        match run::<E>(&small(), dir.path()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_correct_engine_passes_and_reports_every_metric() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let w = small();
        let report = run::<Model<NO_FAULT>>(&w, dir.path())?;
        for m in crate::compare::report::metrics(&w) {
            assert!(report.values.contains_key(&m.key), "missing {}", m.key);
        }
        Ok(())
    }

    #[test]
    fn every_wrong_answer_aborts_the_run() {
        let lost = error_of::<Model<LOSE_WRITE>>();
        assert!(
            lost.contains("WRONG ANSWER") && lost.contains("not found"),
            "{lost}"
        );
        let corrupt = error_of::<Model<CORRUPT_READ>>();
        assert!(
            corrupt.contains("WRONG ANSWER") && corrupt.contains("has value"),
            "{corrupt}"
        );
        let skipped = error_of::<Model<SKIP_IN_RANGE>>();
        assert!(skipped.contains("phase 6"), "{skipped}");
        let kept = error_of::<Model<IGNORE_REMOVE>>();
        assert!(kept.contains("still present"), "{kept}");
        let early = error_of::<Model<STOP_EARLY>>();
        assert!(early.contains("lookups were answered"), "{early}");
    }

    #[test]
    fn to_args_roundtrips_through_the_flags() {
        let args = small().to_args();
        assert_eq!(args.len() % 2, 0);
        assert!(
            args.windows(2)
                .any(|p| p[0] == "--read-threads" && p[1] == "1,2")
        );
    }
}
