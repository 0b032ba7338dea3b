//! The storage engine under crashes and I/O faults on the simulated disk (TESTING.md G1, G2,
//! G4): seeded workloads of atomic writes (small and overflowing values, multi-op writes,
//! writes of more ops than the dirty budget, which take the bulk path; puts, sets, deletes,
//! unsets, pops, clears) over one or two collections, interleaved with checkpoints, then a
//! close.
//!
//! * `crash_at_every_io_point`: every workload is rerun on a fresh disk with a crash at each
//!   of its I/O operations, and each of the four crash images is reopened. Passes when the
//!   recovered state equals the model after some prefix of the issued writes that holds
//!   every acknowledged one (a write is all or nothing; for the workloads at
//!   `Durability::Eventual` or `None`, one seed in six each, every one acknowledged before
//!   the last successful checkpoint), `verify` passes with no leaked page,
//!   a crash at a random point of that recovery (and its close) recovers to the same state,
//!   and the database then takes more writes, closes, and reopens with them.
//! * `fault_at_every_io_point`: every I/O operation of every workload fails once, and from
//!   then on: the run stops at its first error; the failure is sticky (the collection, or
//!   every collection after a failed log write or checkpoint, refuses writes until reopen)
//!   unless the write was rejected and rolled back; a new engine on the same disk, and one
//!   on its power-loss image, recover a state between the acknowledged and the issued
//!   writes.
//! * `crash_during_checkpoint`: every I/O point inside a checkpoint of a database whose writes
//!   were all acknowledged: each image reopens to exactly that state.
//! * `fault_during_checkpoint`: every I/O operation of a checkpoint fails once: the
//!   checkpoint reports the error without a panic, the engine refuses writes and
//!   checkpoints (poisoned), snapshots still read the full state, a second engine is locked
//!   out until close, and a new engine on the same disk (and on its durable image) recovers
//!   every acknowledged write.
//! * `crash_with_concurrent_writers_and_checkpoints`: four writers (two sharing a collection,
//!   two creating their own mid-run), a task checkpointing in a loop and the background
//!   checkpointer, on a multi-threaded runtime, crashed at 30 sampled points per workload;
//!   each writer's keys are those after some of its writes, no fewer than it had
//!   acknowledged.
//! * `crash_during_bulk_write` and `crash_during_staged_bulk_write`: a write too large for a
//!   log record (17 MiB: spills, then a checkpoint of its own), as one write or staged in
//!   four parts (sorted runs on scratch pages, merged at commit), crashed at and failing at
//!   each of its I/O operations: all of it or none after recovery, nothing visible after a
//!   failed one, and a rolled-back one gives its spilled and scratch pages back (no leak).
//!
//! CI runs 10 workloads (2 concurrent ones); about 15 s in release mode on 2 cores. A long run:
//! `PERSISTX_ENGINE_CRASH_WORKLOADS=200 cargo test --release -p persistx-actors --test engine_crash`
//! (`PERSISTX_ENGINE_CRASH_SEED=N` starts at another seed; a failure names the seed, the
//! I/O operation and the image). The sequential tests run on a current-thread runtime and
//! replay from the seed; the order of a few page writes depends on hash-map iteration, so a
//! crash point may land one operation off in another process. The concurrent test depends
//! on thread timing and does not replay exactly.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use persistx_actors::engine::{Collection, Engine, EngineOptions, Kind, Op, OpResult};
use persistx_actors::wal::{Durability, WalOptions};
use persistx_io::Vfs;
use persistx_io::sim::{CrashImage, SimDisk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIR: &str = "/db";

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

/// One collection's contents.
type Map = BTreeMap<Bytes, Bytes>;
/// Every collection of the workload: `None` until created.
type State = Vec<Option<Map>>;

#[derive(Debug, Clone)]
enum Step {
    /// Create collection `i` (a logged write).
    Create(usize),
    /// One atomic write to collection `i`.
    Write(usize, Vec<Op>),
    Checkpoint,
}

#[derive(Debug, Clone)]
struct Workload {
    seed: u64,
    direct_io: bool,
    /// Immediate for most seeds; Eventual and None for some: then an acknowledged write is
    /// durable only once a checkpoint (or close) after it succeeded.
    durability: Durability,
    segment_size: u64,
    names: Vec<String>,
    steps: Vec<Step>,
}

fn key(i: u32) -> Bytes {
    // Keys of varied length so leaves hold different numbers of entries.
    let mut k = format!("key-{i:05}-").into_bytes();
    k.extend(std::iter::repeat_n(b'k', (i as usize * 7) % 40));
    Bytes::from(k)
}

/// A value unique to (seed, step, op): a stale or misplaced value never compares equal.
fn value(seed: u64, step: usize, op: usize, len: usize) -> Bytes {
    let mut out = format!("{seed}/{step}/{op}:").into_bytes();
    let mut x = seed ^ ((step as u64) << 20) ^ op as u64;
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push(b'a' + ((x >> 59) % 26) as u8);
    }
    out.truncate(len.max(1));
    Bytes::from(out)
}

impl Workload {
    fn new(seed: u64) -> Workload {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ncoll = rng.random_range(1..=2usize);
        let names = (0..ncoll).map(|i| format!("coll{i}")).collect();
        let key_space = rng.random_range(20..400u32);
        let mut steps = vec![Step::Create(0)];
        let nsteps = rng.random_range(15..45usize);
        for s in 1..nsteps {
            let c = rng.random_range(0..ncoll);
            if ncoll == 2 && c == 1 && !steps.iter().any(|st| matches!(st, Step::Create(1))) {
                steps.push(Step::Create(1));
                continue;
            }
            if rng.random_bool(0.12) {
                steps.push(Step::Checkpoint);
                continue;
            }
            // Writes of more ops than the dirty budget (64 nodes here) take the bulk path:
            // applied with spills and made durable by a checkpoint of their own.
            let nops = if rng.random_bool(0.04) {
                rng.random_range(65..200usize)
            } else if rng.random_bool(0.3) {
                rng.random_range(2..40usize)
            } else {
                1
            };
            let ops = (0..nops)
                .map(|o| {
                    let k = key(rng.random_range(0..key_space));
                    match rng.random_range(0..100) {
                        0..60 => {
                            let len = if rng.random_bool(0.15) {
                                rng.random_range(1100..9000)
                            } else {
                                rng.random_range(0..120)
                            };
                            if rng.random_bool(0.2) {
                                Op::Set(k, value(seed, s, o, len))
                            } else {
                                Op::Put(k, value(seed, s, o, len))
                            }
                        }
                        60..78 => Op::Delete(k),
                        78..85 => Op::Unset(k),
                        85..92 => Op::PopFirst,
                        92..99 => Op::PopLast,
                        _ => Op::Clear,
                    }
                })
                .collect();
            steps.push(Step::Write(c, ops));
        }
        Workload {
            seed,
            direct_io: seed.is_multiple_of(2),
            durability: match seed % 6 {
                3 => Durability::Eventual,
                5 => Durability::None,
                _ => Durability::Immediate,
            },
            segment_size: if rng.random_bool(0.5) {
                16 << 10
            } else {
                64 << 10
            },
            names,
            steps,
        }
    }

    fn options(&self) -> EngineOptions {
        EngineOptions {
            auto_checkpoint: false,
            durability: self.durability,
            cache_bytes: 1 << 20,
            wal: WalOptions {
                segment_size: self.segment_size,
                // No timer-driven syncs: keeps runs on a current-thread runtime deterministic.
                sync_interval: std::time::Duration::from_secs(3600),
                direct_io: self.direct_io,
                ..WalOptions::default()
            },
            ..EngineOptions::default()
        }
    }

    /// The model state after each number of writes (creates count as writes): `states[k]` is
    /// the state after the first `k`.
    fn states(&self) -> Vec<State> {
        let mut cur: State = vec![None; self.names.len()];
        let mut out = vec![cur.clone()];
        for step in &self.steps {
            match step {
                Step::Create(c) => {
                    cur[*c] = Some(Map::new());
                    out.push(cur.clone());
                }
                Step::Write(c, ops) => {
                    apply_model(cur[*c].as_mut().unwrap(), ops);
                    out.push(cur.clone());
                }
                Step::Checkpoint => {}
            }
        }
        out
    }
}

/// Applies a write to the model; returns what the engine must answer.
fn apply_model(m: &mut Map, ops: &[Op]) -> Vec<OpResult> {
    ops.iter()
        .map(|op| match op {
            Op::Put(k, v) => OpResult::Old(m.insert(k.clone(), v.clone())),
            Op::Delete(k) => OpResult::Old(m.remove(k)),
            Op::Set(k, v) => OpResult::Existed(m.insert(k.clone(), v.clone()).is_some()),
            Op::Unset(k) => OpResult::Existed(m.remove(k).is_some()),
            Op::PopFirst => OpResult::Popped(m.pop_first()),
            Op::PopLast => OpResult::Popped(m.pop_last()),
            Op::Clear => {
                m.clear();
                OpResult::Done
            }
            other => panic!("not a map op: {other:?}"),
        })
        .collect()
}

/// What a run got acknowledged.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    /// Writes acknowledged (they are issued one at a time, so these are the first ones).
    acked: usize,
    /// Writes issued: `acked`, or one more whose answer was an error (outcome unknown).
    issued: usize,
    /// Writes that must survive a crash: `acked` at `Durability::Immediate`, else those
    /// acknowledged before the last checkpoint (or close) that succeeded.
    durable: usize,
    /// The run went to the end and closed cleanly.
    completed: bool,
}

fn vfs_of(disk: &SimDisk) -> Arc<dyn Vfs> {
    Arc::new(disk.clone())
}

async fn open_coll(db: &Engine, name: &str) -> persistx_actors::Result<Collection> {
    db.collection(name, Kind::Map, "k", "v").await
}

/// Runs the workload on `disk` until it ends or an operation fails. With `check_answers`,
/// every answer must match the model (a run without faults).
async fn run(disk: &SimDisk, w: &Workload, check_answers: bool) -> Outcome {
    let mut out = Outcome::default();
    let Ok(db) = Engine::open(vfs_of(disk), DIR, w.options()).await else {
        return out;
    };
    let mut colls: Vec<Option<Collection>> = vec![None; w.names.len()];
    let mut model: State = vec![None; w.names.len()];
    let mut ok = true;
    // The collections a failure must leave refusing writes: the one whose write failed (a
    // page that cannot be read poisons only its collection), or all (a failed log write,
    // sync or checkpoint poisons the log or the engine).
    let mut stuck: Vec<usize> = Vec::new();
    let mut failure = String::new();
    for step in &w.steps {
        match step {
            Step::Create(c) => {
                out.issued += 1;
                match open_coll(&db, &w.names[*c]).await {
                    Ok(coll) => {
                        colls[*c] = Some(coll);
                        model[*c] = Some(Map::new());
                        out.acked += 1;
                    }
                    Err(e) => {
                        failure = format!("creating {}: {e}", w.names[*c]);
                        stuck = (0..w.names.len()).collect();
                        ok = false;
                        break;
                    }
                }
            }
            Step::Write(c, ops) => {
                out.issued += 1;
                let coll = colls[*c].as_ref().unwrap();
                match coll.write(ops.clone()).await {
                    Ok(r) => {
                        let want = apply_model(model[*c].as_mut().unwrap(), ops);
                        if check_answers {
                            assert_eq!(r, want, "seed {}: answers of {step:?}", w.seed);
                        }
                        out.acked += 1;
                    }
                    Err(e) => {
                        failure = format!("a write of {} ops to {}: {e}", ops.len(), w.names[*c]);
                        if matches!(e, persistx_actors::Error::RolledBack { .. }) {
                            // Rolled back (a bulk write whose spill failed): known not
                            // applied, and the collection stays usable.
                            out.issued -= 1;
                        } else {
                            stuck = vec![*c];
                        }
                        ok = false;
                        break;
                    }
                }
            }
            Step::Checkpoint => {
                if let Err(e) = db.checkpoint().await {
                    failure = format!("checkpoint: {e}");
                    stuck = (0..w.names.len()).collect();
                    ok = false;
                    break;
                }
                out.durable = out.acked;
            }
        }
        if w.durability == Durability::Immediate {
            out.durable = out.acked;
        }
        if check_answers {
            check_verify(&db, &format!("seed {}, clean run after {step:?}", w.seed)).await;
        }
    }
    // Failure is sticky (G4): even once the fault has passed, no write is accepted until
    // the database is reopened.
    for c in stuck {
        if let Some(coll) = &colls[c] {
            let again = coll
                .write(vec![Op::Put(key(0), Bytes::from_static(b"x"))])
                .await;
            assert!(
                again.is_err(),
                "seed {}: {} accepted a write after a failure ({failure}; issued {}, acked {})",
                w.seed,
                w.names[c],
                out.issued,
                out.acked
            );
        }
    }
    drop(colls);
    let closed = db.close().await;
    out.completed = ok && closed.is_ok();
    if closed.is_ok() {
        out.durable = out.acked;
    }
    if check_answers {
        closed.unwrap_or_else(|e| panic!("seed {}: close failed: {e}", w.seed));
    }
    out
}

/// Reads every collection's contents, checking `len`, `nth`, `get` and backward iteration
/// against the forward cursor.
async fn read_state(db: &Engine, names: &[String], ctx: &str) -> State {
    let existing: Vec<String> = db
        .collections()
        .await
        .into_iter()
        .map(|(i, _)| i.name)
        .collect();
    for n in &existing {
        assert!(names.contains(n), "{ctx}: unknown collection {n:?}");
    }
    let mut state = Vec::new();
    for name in names {
        if !existing.contains(name) {
            state.push(None);
            continue;
        }
        let coll = open_coll(db, name)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: opening {name}: {e}"));
        state.push(Some(read_map(&coll, ctx).await));
    }
    state
}

async fn read_map(coll: &Collection, ctx: &str) -> Map {
    let snap = coll.snapshot();
    let mut m = Map::new();
    let mut cur = snap
        .cursor(Bound::Unbounded, true)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: cursor: {e}"));
    while let Some((k, v)) = snap
        .step(&mut cur, true)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: step: {e}"))
    {
        assert!(
            m.last_key_value().is_none_or(|(l, _)| *l < k),
            "{ctx}: cursor out of order"
        );
        m.insert(k, v);
    }
    assert_eq!(snap.len(), m.len() as u64, "{ctx}: len vs iteration");
    let mut back = Vec::new();
    let mut cur = snap.cursor(Bound::Unbounded, false).await.unwrap();
    while let Some(e) = snap.step(&mut cur, false).await.unwrap() {
        back.push(e);
    }
    back.reverse();
    assert!(
        back.iter().eq(m
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
            .iter()),
        "{ctx}: backward iteration differs"
    );
    let n = m.len() as u64;
    for i in [0, n / 3, n / 2, n.saturating_sub(1), n] {
        let want = m
            .iter()
            .nth(i as usize)
            .map(|(k, v)| (k.clone(), v.clone()));
        assert_eq!(snap.nth(i).await.unwrap(), want, "{ctx}: nth({i})");
        if let Some((k, v)) = want {
            assert_eq!(snap.get(&k).await.unwrap(), Some(v), "{ctx}: get");
        }
    }
    m
}

fn describe(s: &State) -> String {
    s.iter()
        .map(|c| match c {
            None => "absent".to_string(),
            Some(m) => format!("{} entries", m.len()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Verifies the open database: every tree and checksum, no page twice, none leaked.
async fn check_verify(db: &Engine, ctx: &str) {
    let report = db
        .verify()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: verify failed: {e}"));
    assert_eq!(report.leaked_pages, 0, "{ctx}: leaked pages: {report:?}");
}

/// Opens `disk`, and returns the number of writes whose state it holds (within
/// `acked..=issued`).
async fn recover_and_match(
    disk: &SimDisk,
    w: &Workload,
    states: &[State],
    out: Outcome,
    ctx: &str,
) -> (Engine, usize) {
    let db = Engine::open(vfs_of(disk), DIR, w.options())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
    let got = read_state(&db, &w.names, ctx).await;
    let k = (out.durable..=out.issued)
        .rev()
        .find(|k| states[*k] == got)
        .unwrap_or_else(|| {
            panic!(
                "{ctx}: recovered state ({}) is not the state after any of writes {}..={} \
                 (acked {} of {}; per collection, it is the state after writes {:?}); after {} writes \
                 it would be ({})",
                describe(&got),
                out.durable,
                out.issued,
                out.acked,
                states.len() - 1,
                (0..got.len()).map(|c| (0..states.len()).filter(|k| states[*k][c] == got[c]).collect::<Vec<_>>()).collect::<Vec<_>>(),
                out.acked,
                describe(&states[out.acked]),
            )
        });
    check_verify(&db, ctx).await;
    (db, k)
}

/// More writes on a recovered database: a new key, a large value, a delete; also creates
/// a collection the crash lost. Applied to `state` too.
async fn write_more(db: &Engine, w: &Workload, state: &mut State, ctx: &str) {
    for (c, name) in w.names.iter().enumerate() {
        let coll = open_coll(db, name)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: create after recovery: {e}"));
        let m = state[c].get_or_insert_with(Map::new);
        let mut ops = vec![
            Op::Put(key(90_000), value(w.seed, 9999, 0, 50)),
            Op::Put(key(90_001), value(w.seed, 9999, 1, 3000)),
        ];
        if let Some(k) = m.keys().next().cloned() {
            ops.push(Op::Delete(k));
        }
        let want = apply_model(m, &ops);
        let got = coll
            .write(ops)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: write after recovery: {e}"));
        assert_eq!(got, want, "{ctx}: answers after recovery");
    }
}

/// Checks one crash image: recovery, a crash during recovery, more writes, close, reopen.
async fn check_image(
    w: &Workload,
    states: &[State],
    out: Outcome,
    img: SimDisk,
    recovery_crash: u64,
    ctx: &str,
) -> usize {
    // Recovery, on a copy that counts its I/O.
    let probe = img.crash_image(CrashImage::RevertNames, 0);
    let (db, k) = recover_and_match(&probe, w, states, out, ctx).await;
    db.close()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: close after recovery: {e}"));
    let recovery_ops = probe.ops();

    // A crash inside that recovery (or its close), then recovery again: the same state.
    if recovery_ops > 0 {
        let at = 1 + recovery_crash % recovery_ops;
        let d = img.crash_image(CrashImage::RevertNames, 0);
        d.crash_at(at);
        if let Ok(db) = Engine::open(vfs_of(&d), DIR, w.options()).await {
            let _ = db.close().await;
        }
        for image in [CrashImage::DurableOnly, CrashImage::TornLast] {
            let again = d.crash_image(image, recovery_crash);
            let ctx2 =
                format!("{ctx}, then crash at op {at}/{recovery_ops} of recovery, {image:?}");
            let exact = Outcome {
                acked: k,
                issued: k,
                durable: k,
                completed: false,
            };
            let (db, _) = recover_and_match(&again, w, states, exact, &ctx2).await;
            let _ = db.close().await;
        }
    }

    // The recovered database takes writes, closes and reopens with them.
    let vfs = vfs_of(&img);
    let db = Engine::open(vfs.clone(), DIR, w.options())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let mut state = states[k].clone();
    write_more(&db, w, &mut state, ctx).await;
    if w.seed.is_multiple_of(3) {
        db.checkpoint()
            .await
            .unwrap_or_else(|e| panic!("{ctx}: checkpoint after recovery: {e}"));
    }
    db.close()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: close after more writes: {e}"));
    let db = Engine::open(vfs, DIR, w.options())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: reopen after more writes: {e}"));
    let got = read_state(&db, &w.names, ctx).await;
    assert!(
        got == state,
        "{ctx}: after more writes and a reopen: got ({}), want ({})",
        describe(&got),
        describe(&state)
    );
    check_verify(&db, &format!("{ctx}, reopened after more writes")).await;
    db.close().await.unwrap();
    k
}

fn crash_everywhere(seed: u64) {
    let w = Workload::new(seed);
    let states = w.states();
    let rt = rt();
    let clean = SimDisk::new();
    let out = rt.block_on(run(&clean, &w, true));
    assert!(out.completed, "seed {seed}: the clean run failed: {out:?}");
    assert_eq!(out.acked, states.len() - 1, "seed {seed}");
    let total = clean.ops();
    let mut lost_unknown = 0;
    for n in 1..=total + 1 {
        let disk = SimDisk::new();
        disk.crash_at(n);
        let out = rt.block_on(run(&disk, &w, false));
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) ^ n);
        for image in CrashImage::ALL {
            let img = disk.crash_image(image, rng.random());
            let ctx = format!("seed {seed}, crash at op {n}/{total}, image {image:?}");
            let k = rt.block_on(check_image(&w, &states, out, img, rng.random(), &ctx));
            lost_unknown += usize::from(k < out.issued);
        }
    }
    eprintln!(
        "seed {seed}: {} writes, {total} I/O operations, {} crash images checked, {lost_unknown} lost an unacknowledged write",
        states.len() - 1,
        4 * (total + 1)
    );
}

/// Every I/O operation of the workload fails once, or from then on: the run stops at the
/// first error; a new engine on the same disk (the fault cleared) recovers a state between
/// the acknowledged and the issued writes, and so does the disk's power-loss image.
fn fault_everywhere(seed: u64) {
    let w = Workload::new(seed);
    let states = w.states();
    let rt = rt();
    let clean = SimDisk::new();
    rt.block_on(run(&clean, &w, false));
    let total = clean.ops();
    for n in 1..=total {
        for persistent in [false, true] {
            let disk = SimDisk::new();
            disk.fail_at(n, persistent);
            let out = rt.block_on(run(&disk, &w, false));
            disk.clear_fault();
            let ctx = format!("seed {seed}, fault at op {n}/{total} (persistent: {persistent})");
            rt.block_on(async {
                let (db, k) = recover_and_match(&disk, &w, &states, out, &ctx).await;
                let mut state = states[k].clone();
                write_more(&db, &w, &mut state, &ctx).await;
                db.close()
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: close after recovery: {e}"));
                let db = Engine::open(vfs_of(&disk), DIR, w.options()).await.unwrap();
                let got = read_state(&db, &w.names, &ctx).await;
                assert!(got == state, "{ctx}: after more writes and a reopen");
                check_verify(&db, &ctx).await;
                db.close().await.unwrap();
            });
            // What survives a power loss right after the failed run.
            let disk = SimDisk::new();
            disk.fail_at(n, persistent);
            let out = rt.block_on(run(&disk, &w, false));
            let img = disk.crash_image(CrashImage::DurableOnly, 0);
            rt.block_on(check_image(
                &w,
                &states,
                out,
                img,
                n,
                &format!("{ctx}, power loss"),
            ));
        }
    }
}

#[test]
fn fault_at_every_io_point() {
    let start = env_u64("PERSISTX_ENGINE_CRASH_SEED", 0);
    let count = env_u64("PERSISTX_ENGINE_CRASH_WORKLOADS", 10);
    for seed in start..start + count {
        fault_everywhere(seed);
    }
}

#[test]
fn crash_at_every_io_point() {
    let start = env_u64("PERSISTX_ENGINE_CRASH_SEED", 0);
    // TESTING.md: 50 workloads in CI.
    let count = env_u64("PERSISTX_ENGINE_CRASH_WORKLOADS", 50);
    for seed in start..start + count {
        crash_everywhere(seed);
    }
}

/// Builds a database whose writes are all acknowledged (with an earlier checkpoint, so the
/// next one frees pages), returns the model and the I/O count just before the checkpoint
/// under test.
async fn before_checkpoint(disk: &SimDisk, w: &Workload) -> (Engine, Vec<Collection>, State) {
    let db = Engine::open(vfs_of(disk), DIR, w.options()).await.unwrap();
    let mut colls = Vec::new();
    let mut state = State::new();
    for name in &w.names {
        colls.push(open_coll(&db, name).await.unwrap());
        state.push(Some(Map::new()));
    }
    let half = w.steps.len() / 2;
    for (i, step) in w.steps.iter().enumerate() {
        match step {
            Step::Create(_) => {}
            Step::Write(c, ops) => {
                colls[*c].write(ops.clone()).await.unwrap();
                apply_model(state[*c].as_mut().unwrap(), ops);
            }
            Step::Checkpoint => db.checkpoint().await.unwrap(),
        }
        if i == half {
            db.checkpoint().await.unwrap();
        }
    }
    (db, colls, state)
}

/// The workload of `seed` at `Durability::Immediate` (every write before the checkpoint must
/// survive it) and the I/O operations `first..=last` of its checkpoint on a clean disk.
fn checkpoint_io_range(rt: &tokio::runtime::Runtime, seed: u64) -> (Workload, u64, u64) {
    let w = Workload {
        durability: Durability::Immediate,
        ..Workload::new(seed)
    };
    let clean = SimDisk::new();
    let (first, last) = rt.block_on(async {
        let (db, _, _) = before_checkpoint(&clean, &w).await;
        let first = clean.ops() + 1;
        db.checkpoint().await.unwrap();
        let last = clean.ops();
        db.close().await.unwrap();
        (first, last)
    });
    (w, first, last)
}

#[test]
fn crash_during_checkpoint() {
    let start = env_u64("PERSISTX_ENGINE_CRASH_SEED", 0);
    let count = env_u64("PERSISTX_ENGINE_CRASH_WORKLOADS", 10);
    let rt = rt();
    for seed in start..start + count {
        let (w, first, last) = checkpoint_io_range(&rt, seed);
        assert!(last >= first, "seed {seed}: the checkpoint did no I/O");
        for n in first..=last + 1 {
            let disk = SimDisk::new();
            rt.block_on(async {
                let (db, colls, state) = before_checkpoint(&disk, &w).await;
                assert_eq!(
                    disk.ops() + 1,
                    first,
                    "seed {seed}: the run is not deterministic"
                );
                disk.crash_at(n);
                let r = db.checkpoint().await;
                assert!(
                    !disk.has_crashed() || r.is_err(),
                    "seed {seed}: checkpoint ignored a crash at op {n}"
                );
                drop(colls);
                let _ = db.close().await;
                for image in CrashImage::ALL {
                    let img = disk.crash_image(image, seed ^ n);
                    let ctx = format!(
                        "seed {seed}, crash at op {n} of checkpoint ops {first}..={last}, {image:?}"
                    );
                    let db = Engine::open(vfs_of(&img), DIR, w.options())
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
                    let got = read_state(&db, &w.names, &ctx).await;
                    assert!(
                        got == state,
                        "{ctx}: got ({}), want ({})",
                        describe(&got),
                        describe(&state)
                    );
                    check_verify(&db, &ctx).await;
                    db.checkpoint()
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: checkpoint after recovery: {e}"));
                    check_verify(&db, &format!("{ctx}, after a checkpoint")).await;
                    db.close().await.unwrap();
                }
            });
        }
    }
}

#[test]
fn fault_during_checkpoint() {
    let start = env_u64("PERSISTX_ENGINE_CRASH_SEED", 0);
    let count = env_u64("PERSISTX_ENGINE_CRASH_WORKLOADS", 10);
    let rt = rt();
    for seed in start..start + count {
        let (w, first, last) = checkpoint_io_range(&rt, seed);
        for n in first..=last {
            let disk = SimDisk::new();
            rt.block_on(async {
                let ctx =
                    format!("seed {seed}, fault at op {n} of checkpoint ops {first}..={last}");
                let (db, colls, state) = before_checkpoint(&disk, &w).await;
                disk.fail_at(n, false);
                let r = db.checkpoint().await;
                if disk.ops() < n {
                    // This run's checkpoint made fewer operations than the first run's (the
                    // order of some page writes follows hash-map iteration).
                    r.unwrap_or_else(|e| panic!("{ctx}: checkpoint failed without a fault: {e}"));
                    disk.clear_fault();
                    drop(colls);
                    db.close().await.unwrap();
                    return;
                }
                assert!(r.is_err(), "{ctx}: checkpoint ignored a failed I/O");
                // Poisoned: no more writes or checkpoints, reads still see everything.
                let more = colls[0]
                    .write(vec![Op::Put(key(1), Bytes::from_static(b"after"))])
                    .await;
                assert!(
                    more.is_err(),
                    "{ctx}: a write was accepted after a failed checkpoint"
                );
                assert!(
                    db.checkpoint().await.is_err(),
                    "{ctx}: a checkpoint ran after a failed one"
                );
                for (c, coll) in colls.iter().enumerate() {
                    let got = read_map(coll, &ctx).await;
                    assert!(
                        Some(&got) == state[c].as_ref(),
                        "{ctx}: snapshot of {} changed by the failed checkpoint",
                        w.names[c]
                    );
                }
                // A second open while this engine is open is refused.
                assert!(
                    Engine::open(vfs_of(&disk), DIR, w.options()).await.is_err(),
                    "{ctx}: a second engine opened a locked database"
                );
                drop(colls);
                let _ = db.close().await;
                // A new engine on the same disk (and on what survives power loss).
                for (what, d) in [
                    ("same disk", disk.clone()),
                    (
                        "durable image",
                        disk.crash_image(CrashImage::DurableOnly, 0),
                    ),
                ] {
                    let ctx = format!("{ctx}, reopened on the {what}");
                    let db = Engine::open(vfs_of(&d), DIR, w.options())
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                    let got = read_state(&db, &w.names, &ctx).await;
                    assert!(
                        got == state,
                        "{ctx}: got ({}), want ({})",
                        describe(&got),
                        describe(&state)
                    );
                    check_verify(&db, &ctx).await;
                    let mut state = state.clone();
                    write_more(&db, &w, &mut state, &ctx).await;
                    db.close()
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
                    let db = Engine::open(vfs_of(&d), DIR, w.options()).await.unwrap();
                    assert!(
                        read_state(&db, &w.names, &ctx).await == state,
                        "{ctx}: second reopen"
                    );
                    check_verify(&db, &ctx).await;
                    db.close().await.unwrap();
                }
            });
        }
    }
}

/// Writers of one concurrent workload.
const WRITERS: usize = 4;

/// Writer `w`'s `i`-th write: put its key `i` and delete its key `i - 2`, atomically. After
/// `j` writes the writer's keys are exactly `j - 2` and `j - 1`.
fn writer_op(seed: u64, w: usize, i: usize) -> Vec<Op> {
    let len = if (seed as usize + w + i).is_multiple_of(7) {
        1100 + (i * 331) % 4000
    } else {
        20 + (i * 37) % 200
    };
    let mut ops = vec![Op::Put(writer_key(w, i), value(seed, w * 1000 + i, 0, len))];
    if i >= 2 {
        ops.push(Op::Delete(writer_key(w, i - 2)));
    }
    ops
}

fn writer_key(w: usize, i: usize) -> Bytes {
    Bytes::from(format!("w{w}-{i:05}"))
}

fn concurrent_options() -> EngineOptions {
    EngineOptions {
        // The background checkpointer runs too: the log's threshold is small.
        auto_checkpoint: true,
        checkpoint_wal_bytes: 24 << 10,
        cache_bytes: 1 << 20,
        wal: WalOptions {
            segment_size: 16 << 10,
            ..WalOptions::default()
        },
        ..EngineOptions::default()
    }
}

/// The collection writer `w` writes to: writers 0 and 1 share `c0` (created before them);
/// writers 2 and 3 each create their own while the others write and checkpoint.
fn writer_coll(w: usize) -> String {
    if w < 2 {
        "c0".into()
    } else {
        format!("c{}", w - 1)
    }
}

/// A writer's writes: creating its collection (writers 2 and 3) counts as its first.
fn creates(w: usize) -> usize {
    usize::from(w >= 2)
}

/// Runs `WRITERS` writer tasks and a task that checkpoints and verifies in a loop (the
/// background checkpointer runs too); each stops at its first error (`strict`: verify must
/// not fail). Returns per writer (acknowledged, issued) writes.
async fn run_concurrent(
    disk: &SimDisk,
    seed: u64,
    writes: usize,
    strict: bool,
) -> Vec<(usize, usize)> {
    let Ok(db) = Engine::open(vfs_of(disk), DIR, concurrent_options()).await else {
        return vec![(0, 0); WRITERS];
    };
    let Ok(shared) = open_coll(&db, "c0").await else {
        let _ = db.close().await;
        return vec![(0, 0); WRITERS];
    };
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ckpt = {
        let db = db.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                if db.checkpoint().await.is_err() {
                    return;
                }
                // Page accounting holds at any moment, writes in flight or not.
                // (After a crash a failed background checkpoint may have left the
                // allocator unsure: only the run without faults is checked.)
                let r = db.verify().await;
                if strict {
                    let r = r.unwrap_or_else(|e| panic!("seed {seed}: verify while writing: {e}"));
                    assert_eq!(
                        r.leaked_pages, 0,
                        "seed {seed}: leaked while writing: {r:?}"
                    );
                }
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let coll = if creates(w) == 1 {
                    match open_coll(&db, &writer_coll(w)).await {
                        Ok(c) => c,
                        Err(_) => return (0, 1),
                    }
                } else {
                    shared
                };
                let mut acked = creates(w);
                for i in 0..writes {
                    if coll.write(writer_op(seed, w, i)).await.is_err() {
                        return (acked, acked + 1);
                    }
                    acked += 1;
                }
                (acked, acked)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    ckpt.await.unwrap();
    drop(shared);
    let _ = db.close().await;
    out
}

/// Checks a recovered database against the writers' outcomes: after `j` of its writes,
/// `acked <= j <= issued`, a writer's collection exists if it was created, and the
/// writer's keys in it are exactly those its writes leave, with their values.
async fn check_concurrent(disk: &SimDisk, seed: u64, outcome: &[(usize, usize)], ctx: &str) {
    let db = Engine::open(vfs_of(disk), DIR, concurrent_options())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
    let names: Vec<String> = (0..WRITERS).map(writer_coll).collect();
    let state = read_state(&db, &names, ctx).await;
    for (w, &(acked, issued)) in outcome.iter().enumerate() {
        let got: Option<Map> = state[w].as_ref().map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(format!("w{w}-").as_bytes()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        let matches = (acked..=issued).any(|j| {
            if j < creates(w) {
                return got.is_none();
            }
            if j == 0 && got.is_none() {
                // Nothing written, and the collection's creation may be lost too.
                return true;
            }
            let mut want = Map::new();
            for i in 0..j - creates(w) {
                apply_model(&mut want, &writer_op(seed, w, i));
            }
            got.as_ref() == Some(&want)
        });
        assert!(
            matches,
            "{ctx}: writer {w} (acked {acked}, issued {issued}) has keys {:?}",
            got.map(|m| m
                .keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>())
        );
    }
    check_verify(&db, ctx).await;
    db.close()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: close after recovery: {e}"));
}

/// Concurrent writers, explicit and background checkpoints on a multi-threaded runtime,
/// crashed at sampled I/O points, each crash image checked. Thread timing makes a run
/// differ from the next, so a failure names the seed and the point but may not replay
/// exactly; a long run tries many.
#[test]
fn crash_with_concurrent_writers_and_checkpoints() {
    let start = env_u64("PERSISTX_ENGINE_CRASH_SEED", 0);
    let count = env_u64("PERSISTX_ENGINE_CRASH_WORKLOADS", 10).div_ceil(5);
    let points = 30;
    let writes = 40;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for seed in start..start + count {
        let clean = SimDisk::new();
        let out = rt.block_on(run_concurrent(&clean, seed, writes, true));
        assert!(
            out.iter()
                .enumerate()
                .all(|(w, &(a, i))| a == writes + creates(w) && i == a),
            "seed {seed}: the clean run failed: {out:?}"
        );
        rt.block_on(check_concurrent(
            &clean,
            seed,
            &out,
            &format!("seed {seed}, no crash"),
        ));
        let total = clean.ops();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for p in 0..points {
            let n = 1 + total * p / points + rng.random_range(0..total / points);
            let disk = SimDisk::new();
            disk.crash_at(n);
            let out = rt.block_on(run_concurrent(&disk, seed, writes, false));
            for image in CrashImage::ALL {
                let img = disk.crash_image(image, rng.random());
                let ctx = format!("seed {seed}, concurrent, crash at op {n}/~{total}, {image:?}");
                rt.block_on(check_concurrent(&img, seed, &out, &ctx));
            }
        }
    }
}

/// A write too large for one log record goes through a checkpoint of its own (with spills
/// of dirty nodes on the way); a crash at any of its I/O operations leaves either all of
/// it or none, and the database recovers clean.
#[test]
fn crash_during_bulk_write() {
    bulk_write_under_faults(false);
}

#[test]
fn crash_during_staged_bulk_write() {
    bulk_write_under_faults(true);
}

/// Writes `ops` as one write (checking its answers against `want`), or `staged` as a bulk
/// write of four staged parts.
async fn bulk_write(
    c: &Collection,
    ops: &[Op],
    want: Option<&[OpResult]>,
    staged: bool,
) -> persistx_actors::Result<()> {
    if !staged {
        let got = c.write(ops.to_vec()).await?;
        if let Some(want) = want {
            assert_eq!(got, want);
        }
        return Ok(());
    }
    let mut bulk = c.bulk().await?;
    for part in ops.chunks(ops.len().div_ceil(4)) {
        bulk.stage(part.to_vec()).await?;
    }
    bulk.commit().await.map(|_| ())
}

fn bulk_write_under_faults(staged: bool) {
    let rt = rt();
    let opts = || EngineOptions {
        auto_checkpoint: false,
        cache_bytes: 1 << 20,
        wal: WalOptions {
            segment_size: 64 << 10,
            ..WalOptions::default()
        },
        ..EngineOptions::default()
    };
    // Before: some checkpointed entries, some only in the log.
    let setup = |disk: SimDisk| async move {
        let db = Engine::open(vfs_of(&disk), DIR, opts()).await.unwrap();
        let c = open_coll(&db, "bulk").await.unwrap();
        let mut model = Map::new();
        for i in 0..300u32 {
            let ops = vec![Op::Put(
                key(i * 100),
                value(1, i as usize, 0, 50 + (i as usize % 3) * 700),
            )];
            apply_model(&mut model, &ops);
            c.write(ops).await.unwrap();
            if i == 150 {
                db.checkpoint().await.unwrap();
            }
        }
        (db, c, model)
    };
    // Just under the inline limit: many leaves, so the bulk write spills dirty nodes.
    // Staged parts are unsorted and overlap: the merge orders them and the last write to a
    // key wins.
    let bulk: Vec<Op> = if staged {
        (0..17_500u32)
            .rev()
            .map(|i| Op::Set(key(i * 2 + 1), value(2, i as usize, 0, 1000)))
            .chain((0..100u32).map(|i| Op::Unset(key(i * 100))))
            .chain((0..50u32).map(|i| Op::Set(key(i * 200 + 1), value(4, i as usize, 0, 30))))
            .collect()
    } else {
        (0..17_500u32)
            .map(|i| Op::Put(key(i * 2 + 1), value(2, i as usize, 0, 1000)))
            .chain((0..100u32).map(|i| Op::Delete(key(i * 100))))
            .collect()
    };
    let clean = SimDisk::new();
    let (first, last, before, after) = rt.block_on(async {
        let (db, c, before) = setup(clean.clone()).await;
        let mut after = before.clone();
        let want = apply_model(&mut after, &bulk);
        let first = clean.ops() + 1;
        bulk_write(&c, &bulk, Some(&want), staged).await.unwrap();
        let last = clean.ops();
        db.close().await.unwrap();
        (first, last, before, after)
    });
    assert!(
        last > first + 10,
        "the bulk write did little I/O: {first}..={last}"
    );
    eprintln!("bulk write: I/O operations {first}..={last}");
    // Recovers `disk` and checks it holds `before` or `after` (only `after` if `acked`).
    let check = |disk: SimDisk, acked: bool, ctx: String| {
        let (before, after) = (&before, &after);
        async move {
            let db = Engine::open(vfs_of(&disk), DIR, opts())
                .await
                .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
            let c = open_coll(&db, "bulk").await.unwrap();
            let got = read_map(&c, &ctx).await;
            assert!(
                got == *after || (!acked && got == *before),
                "{ctx}: {} entries: neither before ({}) nor after ({}), acknowledged: {acked}",
                got.len(),
                before.len(),
                after.len()
            );
            check_verify(&db, &ctx).await;
            // The database takes writes again, and keeps them.
            let more = vec![
                Op::Put(key(7), value(3, 0, 0, 2000)),
                Op::Put(key(4_000_000), value(3, 0, 1, 20)),
            ];
            let mut want = got;
            apply_model(&mut want, &more);
            c.write(more)
                .await
                .unwrap_or_else(|e| panic!("{ctx}: write after recovery: {e}"));
            drop(c);
            db.close().await.unwrap();
            let db = Engine::open(vfs_of(&disk), DIR, opts()).await.unwrap();
            let c = open_coll(&db, "bulk").await.unwrap();
            assert!(
                read_map(&c, &ctx).await == want,
                "{ctx}: after more writes and a reopen"
            );
            check_verify(&db, &ctx).await;
            drop(c);
            db.close().await.unwrap();
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for n in first..=last + 1 {
        // A crash at operation n: each image recovers to all or nothing.
        let disk = SimDisk::new();
        rt.block_on(async {
            let (db, c, _) = setup(disk.clone()).await;
            assert_eq!(disk.ops() + 1, first, "the run is not deterministic");
            disk.crash_at(n);
            let r = bulk_write(&c, &bulk, None, staged).await;
            drop(c);
            let _ = db.close().await;
            for image in CrashImage::ALL {
                let img = disk.crash_image(image, rng.random());
                let ctx = format!("bulk write, crash at op {n} of {first}..={last}, {image:?}");
                check(img, r.is_ok(), ctx).await;
            }
        });
        if n > last {
            continue;
        }
        // Operation n fails once: a clean error, the published version unchanged, and
        // the same disk recovers to all or nothing.
        let disk = SimDisk::new();
        rt.block_on(async {
            let ctx = format!("bulk write, fault at op {n} of {first}..={last}");
            let (db, c, _) = setup(disk.clone()).await;
            disk.fail_at(n, false);
            let r = bulk_write(&c, &bulk, None, staged).await;
            if disk.ops() < n {
                // This run's bulk write made fewer operations than the first run's (the
                // order of some page writes follows hash-map iteration).
                disk.clear_fault();
                r.unwrap_or_else(|e| panic!("{ctx}: failed without a fault: {e}"));
                drop(c);
                db.close().await.unwrap();
                check(disk.clone(), true, ctx.clone()).await;
                return;
            }
            assert!(r.is_err(), "{ctx}: the failed I/O went unnoticed");
            let got = read_map(&c, &ctx).await;
            assert!(got == before, "{ctx}: a failed bulk write is visible");
            // A rolled-back bulk write gives its spilled and scratch pages back at once
            // (a failed checkpoint instead poisons the engine).
            if !db.is_poisoned() {
                // The error says it was rolled back and names the I/O failure (a staged
                // part that failed answers the failure itself; dropping the bulk write
                // then rolls it back).
                match &r {
                    Err(persistx_actors::Error::RolledBack { cause, .. }) => assert!(
                        matches!(**cause, persistx_actors::Error::Io(_)),
                        "{ctx}: rolled back for {cause}, not the injected I/O fault"
                    ),
                    Err(persistx_actors::Error::Io(_)) if staged => {}
                    other => panic!("{ctx}: a failed bulk write answered {other:?}"),
                }
                check_verify(&db, &format!("{ctx}, rolled back")).await;
            }
            drop(c);
            let _ = db.close().await;
            check(disk.clone(), false, ctx.clone()).await;
        });
    }
}

/// Options for the vacuum tests: those of the seeded workloads (no background work) at
/// `Durability::Immediate`, with a cache that holds the whole file: which pages a full
/// buffer pool keeps depends on the order of a hash map, and with it the reads, so runs
/// would not repeat the same I/O operations.
fn vacuum_options() -> EngineOptions {
    EngineOptions {
        cache_bytes: 16 << 20,
        ..Workload {
            durability: Durability::Immediate,
            ..Workload::new(0)
        }
        .options()
    }
}

/// A database worth vacuuming: 3,000 entries (every 97th value on overflow pages), most of
/// them then removed over several checkpoints, so live nodes are spread over a mostly free
/// file. Returns the engine, the model and the file's pages.
async fn before_vacuum(disk: &SimDisk) -> (Engine, Map, u64) {
    let db = Engine::open(vfs_of(disk), DIR, vacuum_options())
        .await
        .unwrap();
    let c = open_coll(&db, "v").await.unwrap();
    let mut m = Map::new();
    let val = |i: u32| {
        let len = if i.is_multiple_of(97) {
            6000
        } else {
            100 + (i as usize * 37) % 200
        };
        Bytes::from(vec![(i % 251) as u8; len])
    };
    // Writes of at most 50 ops: larger ones take the bulk path, whose blocking-pool work
    // would make the I/O order differ between runs.
    for chunk in (0..3000u32).collect::<Vec<_>>().chunks(50) {
        let ops: Vec<Op> = chunk.iter().map(|&i| Op::Put(key(i), val(i))).collect();
        c.write(ops.clone()).await.unwrap();
        apply_model(&mut m, &ops);
    }
    db.checkpoint().await.unwrap();
    // Two in three removed: most leaves are left part full, next to neighbours too full to
    // merge with (the vacuum repacks them), and the file mostly free.
    for (j, chunk) in (0..3000u32)
        .filter(|i| i % 3 != 1)
        .collect::<Vec<_>>()
        .chunks(50)
        .enumerate()
    {
        let ops: Vec<Op> = chunk.iter().map(|&i| Op::Delete(key(i))).collect();
        c.write(ops.clone()).await.unwrap();
        apply_model(&mut m, &ops);
        if j % 8 == 7 {
            db.checkpoint().await.unwrap();
        }
    }
    db.checkpoint().await.unwrap();
    let pages = db.stats().await.unwrap().pages;
    (db, m, pages)
}

/// The I/O operations `first..=last` of the vacuum on a clean disk (and a check that it
/// shrinks the file).
fn vacuum_io_range(rt: &tokio::runtime::Runtime) -> (u64, u64) {
    let clean = SimDisk::new();
    rt.block_on(async {
        let (db, _, before) = before_vacuum(&clean).await;
        let first = clean.ops() + 1;
        let cut = db.vacuum().await.unwrap();
        let last = clean.ops();
        assert!(
            cut > 0 && cut * 2 > before,
            "the vacuum cut {cut} of {before} pages"
        );
        db.close().await.unwrap();
        (first, last)
    })
}

/// Crash at every I/O point of a vacuum (every `PERSISTX_VACUUM_CRASH_STEP`-th, default every one),
/// and fail each one once: the database opens with every entry, verify accounts for every
/// page, and a checkpoint and another vacuum after recovery work.
#[test]
fn crash_and_fail_during_vacuum() {
    let step = env_u64("PERSISTX_VACUUM_CRASH_STEP", 1).max(1);
    let rt = rt();
    let (first, last) = vacuum_io_range(&rt);
    assert!(last >= first, "the vacuum did no I/O");
    for n in (first..=last + 1).step_by(step as usize) {
        for fail in [false, true] {
            let disk = SimDisk::new();
            rt.block_on(async {
                let (db, model, _) = before_vacuum(&disk).await;
                assert_eq!(disk.ops() + 1, first, "the run is not deterministic");
                if fail {
                    disk.fail_at(n, false);
                } else {
                    disk.crash_at(n);
                }
                let r = db.vacuum().await;
                assert!(
                    !disk.has_crashed() || r.is_err(),
                    "vacuum ignored a crash at op {n}"
                );
                let _ = db.close().await;
                let images: Vec<SimDisk> = if fail {
                    vec![disk.clone()]
                } else {
                    CrashImage::ALL
                        .iter()
                        .map(|&image| disk.crash_image(image, n))
                        .collect()
                };
                for (k, img) in images.iter().enumerate() {
                    let ctx = format!(
                        "{} at op {n} of vacuum ops {first}..={last}, image {k}",
                        if fail { "failure" } else { "crash" }
                    );
                    let db = Engine::open(vfs_of(img), DIR, vacuum_options())
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
                    let got = read_state(&db, &["v".to_string()], &ctx).await;
                    assert!(
                        got == vec![Some(model.clone())],
                        "{ctx}: got ({}), want {} entries",
                        describe(&got),
                        model.len()
                    );
                    check_verify(&db, &ctx).await;
                    db.checkpoint()
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: checkpoint after recovery: {e}"));
                    db.vacuum()
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: vacuum after recovery: {e}"));
                    check_verify(&db, &format!("{ctx}, after a vacuum")).await;
                    assert_eq!(
                        read_state(&db, &["v".to_string()], &ctx).await,
                        vec![Some(model.clone())]
                    );
                    db.close().await.unwrap();
                }
            });
        }
    }
}
