//! The engine against models from `std`: two map collections against `BTreeMap`s and a list
//! collection against a `VecDeque`, driven by random steps: atomic multi-op writes (small,
//! boundary-sized and overflowing values; puts, sets, deletes, unsets, pops, clears; list
//! pushes, inserts, sets, removes, truncates, out-of-range positions; big fills and many
//! inserts at one spot), checkpoints, close and reopen, crashes between steps (restart from
//! the durable image, or the durable image plus a random subset of unsynced writes), crashes
//! inside a step (a write, a checkpoint, a close and reopen) at a random I/O operation with
//! a random one of the four crash images, and old snapshots held across later steps. Each
//! case also picks the page size (4, 8 or 16 KiB), the log's segment size and whether the
//! log uses direct I/O.
//!
//! Passes when, after every step, every collection reads exactly like its model (full
//! iteration both ways, `len`, `nth`, `get`), every write answers what the model says (a
//! rejected write changes nothing), a held snapshot never changes, and `verify` passes with
//! no leaked page. With one writer at `Durability::Immediate` every acknowledged write is
//! durable, so after a crash the state equals the model exactly, except that a write the
//! crash cut short (answered with an error) may be there or not, whole (TESTING.md G1, G2).
//!
//! CI runs 256 cases per test (about a second in release mode). A long run:
//! `PROPTEST_CASES=10000 cargo test --release -p persistx-actors --test engine_model`
//! (failures are shrunk and saved in `engine_model.proptest-regressions`, replayed first).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use persistx_actors::engine::{Collection, Engine, EngineOptions, Kind, Op, OpResult};
use persistx_actors::wal::WalOptions;
use persistx_actors::{Error, Result};
use persistx_io::Vfs;
use persistx_io::sim::{CrashImage, SimDisk};
use proptest::prelude::*;

const DIR: &str = "/db";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Engine options of one case.
#[derive(Debug, Clone, Copy)]
struct Setup {
    page_size: usize,
    direct_io: bool,
    segment_size: u64,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![4 => Just(4096usize), 1 => Just(8192), 1 => Just(16384)],
        any::<bool>(),
        prop_oneof![Just(16u64 << 10), Just(64 << 10)],
    )
        .prop_map(|(page_size, direct_io, segment_size)| Setup {
            page_size,
            direct_io,
            segment_size,
        })
}

impl Setup {
    fn options(&self) -> EngineOptions {
        EngineOptions {
            page_size: self.page_size,
            cache_bytes: 1 << 20,
            auto_checkpoint: false,
            wal: WalOptions {
                segment_size: self.segment_size,
                sync_interval: std::time::Duration::from_secs(3600),
                direct_io: self.direct_io,
                ..WalOptions::default()
            },
            ..EngineOptions::default()
        }
    }
}

/// A value: its length, and a tag that makes its bytes unique.
#[derive(Debug, Clone, Copy)]
struct V(usize, u32);

fn val() -> impl Strategy<Value = V> {
    (
        prop_oneof![
            8 => 0usize..120,
            1 => 1000usize..1100,
            2 => 1100usize..9000,
        ],
        any::<u32>(),
    )
        .prop_map(|(len, tag)| V(len, tag))
}

impl V {
    fn bytes(self) -> Bytes {
        let mut out = format!("{}:", self.1).into_bytes();
        let mut x = u64::from(self.1) ^ (self.0 as u64) << 32;
        while out.len() < self.0 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.push(b'a' + ((x >> 59) % 26) as u8);
        }
        out.truncate(self.0);
        Bytes::from(out)
    }
}

fn key(i: u16) -> Bytes {
    let mut k = format!("{i:05}").into_bytes();
    k.extend(std::iter::repeat_n(b'-', usize::from(i) % 60));
    Bytes::from(k)
}

/// How a step ends the engine it runs on.
#[derive(Debug, Clone, Copy)]
enum Restart {
    /// `close`, then open again.
    Reopen,
    /// The disk crashes; the engine restarts on the durable image.
    CrashDurable,
    /// The disk crashes; the image keeps a random subset of unsynced writes.
    CrashSomeUnsynced(u64),
}

fn restart() -> impl Strategy<Value = Restart> {
    prop_oneof![
        Just(Restart::Reopen),
        Just(Restart::CrashDurable),
        any::<u64>().prop_map(Restart::CrashSomeUnsynced),
    ]
}

/// A crash armed for the next step: the disk crashes `after_ops` I/O operations on (if the
/// step gets that far), and the engine restarts from this image of it.
#[derive(Debug, Clone, Copy)]
struct CrashPlan {
    after_ops: u64,
    image: CrashImage,
    seed: u64,
}

fn crash_plan() -> impl Strategy<Value = CrashPlan> {
    // Writes make two or three I/O operations, checkpoints and reopens a few dozen.
    let after = prop_oneof![3 => 0..3u64, 2 => 0..40u64];
    (after, 0..4usize, any::<u64>()).prop_map(|(after_ops, i, seed)| CrashPlan {
        after_ops,
        image: CrashImage::ALL[i],
        seed,
    })
}

// ---------------------------------------------------------------------------------------
// The engine's life cycle, shared by both models.

struct Db {
    setup: Setup,
    disk: SimDisk,
    db: Engine,
}

impl Db {
    async fn open(setup: Setup) -> Db {
        let disk = SimDisk::new();
        let db = Engine::open(vfs(&disk), DIR, setup.options())
            .await
            .unwrap();
        Db { setup, disk, db }
    }

    /// Restarts the engine. With a crash armed, the crash may hit the close or the open:
    /// then [`Db::settle`] restarts it from the crash image.
    async fn restart(&mut self, how: Restart) {
        match how {
            Restart::Reopen => {
                let closed = self.db.close().await;
                if self.disk.has_crashed() {
                    return;
                }
                closed.unwrap();
            }
            Restart::CrashDurable | Restart::CrashSomeUnsynced(_) => {
                self.disk.crash_now();
                // Everything fails now; close only stops the actors.
                let _ = self.db.close().await;
                self.disk = match how {
                    Restart::CrashSomeUnsynced(seed) => {
                        self.disk.crash_image(CrashImage::SomeUnsynced, seed)
                    }
                    _ => self.disk.crash_image(CrashImage::DurableOnly, 0),
                };
            }
        }
        match Engine::open(vfs(&self.disk), DIR, self.setup.options()).await {
            Ok(db) => self.db = db,
            Err(e) => assert!(self.disk.has_crashed(), "reopen after {how:?}: {e}"),
        }
    }

    /// Arms a crash for the next step.
    fn arm(&self, plan: &CrashPlan) {
        self.disk.crash_at(self.disk.ops() + 1 + plan.after_ops);
    }

    /// Disarms the crash; if it happened, restarts the engine from the crash image.
    /// Returns whether it crashed.
    async fn settle(&mut self, plan: &CrashPlan) -> bool {
        // Operations count from 1: a crash at 0 never comes.
        self.disk.crash_at(0);
        if !self.disk.has_crashed() {
            return false;
        }
        let _ = self.db.close().await;
        self.disk = self.disk.crash_image(plan.image, plan.seed);
        self.db = Engine::open(vfs(&self.disk), DIR, self.setup.options())
            .await
            .unwrap_or_else(|e| panic!("recovery from {plan:?}: {e}"));
        true
    }

    async fn verify(&self, ctx: &str) {
        let report = self
            .db
            .verify()
            .await
            .unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
        assert_eq!(report.leaked_pages, 0, "{ctx}: leaked pages: {report:?}");
    }
}

fn vfs(disk: &SimDisk) -> Arc<dyn Vfs> {
    Arc::new(disk.clone())
}

/// Every entry of a snapshot, forward; checks the backward order and `len` agree.
async fn entries(snap: &persistx_actors::engine::Snapshot) -> Vec<(Bytes, Bytes)> {
    let mut fwd = Vec::new();
    let mut c = snap.cursor(Bound::Unbounded, true).await.unwrap();
    while let Some(e) = snap.step(&mut c, true).await.unwrap() {
        fwd.push(e);
    }
    let mut back = Vec::new();
    let mut c = snap.cursor(Bound::Unbounded, false).await.unwrap();
    while let Some(e) = snap.step(&mut c, false).await.unwrap() {
        back.push(e);
    }
    back.reverse();
    assert!(fwd == back, "forward and backward iteration differ");
    assert_eq!(snap.len(), fwd.len() as u64, "len vs iteration");
    fwd
}

// ---------------------------------------------------------------------------------------
// Maps.

#[derive(Debug, Clone)]
enum MapOp {
    Put(u16, V),
    Delete(u16),
    /// Put without the old value.
    Set(u16, V),
    /// Delete without the old value.
    Unset(u16),
    PopFirst,
    PopLast,
    Clear,
}

fn map_op(keys: u16) -> impl Strategy<Value = MapOp> {
    prop_oneof![
        12 => (0..keys, val()).prop_map(|(k, v)| MapOp::Put(k, v)),
        5 => (0..keys).prop_map(MapOp::Delete),
        3 => (0..keys, val()).prop_map(|(k, v)| MapOp::Set(k, v)),
        2 => (0..keys).prop_map(MapOp::Unset),
        1 => Just(MapOp::PopFirst),
        1 => Just(MapOp::PopLast),
        1 => Just(MapOp::Clear),
    ]
}

#[derive(Debug, Clone)]
enum MapStep {
    /// One atomic write to map 0 or 1.
    Write(usize, Vec<MapOp>),
    /// A write of many puts (a bigger tree; splits and merges).
    Fill(usize, u16, u16, V),
    Checkpoint,
    Restart(Restart),
    /// Take a snapshot of map 0 and keep it (with the model) until the next restart.
    Hold,
    /// Another step with a crash armed: a write it cuts short may or may not survive.
    Crashing(CrashPlan, Box<MapStep>),
}

fn map_step() -> impl Strategy<Value = MapStep> {
    let write = || {
        (0..2usize, prop::collection::vec(map_op(200), 1..6))
            .prop_map(|(c, ops)| MapStep::Write(c, ops))
    };
    let fill = || {
        (0..2usize, 0..800u16, 1..600u16, val()).prop_map(|(c, a, n, v)| MapStep::Fill(c, a, n, v))
    };
    let crashable = prop_oneof![
        4 => write(),
        1 => fill(),
        2 => Just(MapStep::Checkpoint),
        1 => Just(MapStep::Restart(Restart::Reopen)),
    ];
    prop_oneof![
        10 => write(),
        2 => fill(),
        2 => Just(MapStep::Checkpoint),
        2 => restart().prop_map(MapStep::Restart),
        1 => Just(MapStep::Hold),
        2 => (crash_plan(), crashable).prop_map(|(p, s)| MapStep::Crashing(p, Box::new(s))),
    ]
}

fn map_ops(step: &MapStep) -> Option<(usize, Vec<Op>)> {
    match step {
        MapStep::Write(c, ops) => Some((
            *c,
            ops.iter()
                .map(|o| match o {
                    MapOp::Put(k, v) => Op::Put(key(*k), v.bytes()),
                    MapOp::Delete(k) => Op::Delete(key(*k)),
                    MapOp::Set(k, v) => Op::Set(key(*k), v.bytes()),
                    MapOp::Unset(k) => Op::Unset(key(*k)),
                    MapOp::PopFirst => Op::PopFirst,
                    MapOp::PopLast => Op::PopLast,
                    MapOp::Clear => Op::Clear,
                })
                .collect(),
        )),
        MapStep::Fill(c, a, n, v) => Some((
            *c,
            (*a..a.saturating_add(*n))
                .map(|k| Op::Put(key(k), V(v.0 % 400, v.1 ^ u32::from(k)).bytes()))
                .collect(),
        )),
        _ => None,
    }
}

type Map = BTreeMap<Bytes, Bytes>;

fn apply_map(m: &mut Map, ops: &[Op]) -> Vec<OpResult> {
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

async fn check_map(coll: &Collection, model: &Map, ctx: &str) {
    let snap = coll.snapshot();
    let got = entries(&snap).await;
    let want: Vec<(Bytes, Bytes)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "{ctx}: {} entries, the model has {}; first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
    let n = want.len();
    for i in [0, n / 2, n.saturating_sub(1), n] {
        assert_eq!(
            snap.nth(i as u64).await.unwrap(),
            want.get(i).cloned(),
            "{ctx}: nth({i})"
        );
    }
    for k in [0u16, 7, 100, 199, 250, 399, 1399] {
        let k = key(k);
        assert_eq!(
            snap.get(&k).await.unwrap(),
            model.get(&k).cloned(),
            "{ctx}: get"
        );
    }
}

fn run_map_case(setup: Setup, steps: Vec<MapStep>) {
    rt().block_on(async move {
        let mut db = Db::open(setup).await;
        let names = ["a", "b"];
        let open = |db: &Engine| {
            let db = db.clone();
            async move {
                let mut v = Vec::new();
                for n in names {
                    v.push(db.collection(n, Kind::Map, "k", "v").await.unwrap());
                }
                v
            }
        };
        let mut colls = open(&db.db).await;
        let mut models = [Map::new(), Map::new()];
        let mut held: Option<(persistx_actors::engine::Snapshot, Map)> = None;
        for (i, step) in steps.iter().enumerate() {
            let ctx = format!("step {i} ({step:?})");
            let (plan, step) = match step {
                MapStep::Crashing(plan, inner) => (Some(plan), &**inner),
                other => (None, other),
            };
            if let Some(plan) = plan {
                db.arm(plan);
            }
            let crash_ok = |db: &Db, what: &str| {
                assert!(plan.is_some() && db.disk.has_crashed(), "{ctx}: {what}");
            };
            // A write the crash cut short: its collection and the model with it.
            let mut unknown = None;
            if let Some((c, ops)) = map_ops(step) {
                let mut next = models[c].clone();
                let want = apply_map(&mut next, &ops);
                match colls[c].write(ops).await {
                    Ok(got) => {
                        assert_eq!(got, want, "{ctx}: answers");
                        models[c] = next;
                    }
                    Err(e) => {
                        crash_ok(&db, &e.to_string());
                        unknown = Some((c, next));
                    }
                }
            }
            let mut restarted = false;
            match step {
                MapStep::Checkpoint => {
                    if let Err(e) = db.db.checkpoint().await {
                        crash_ok(&db, &e.to_string());
                    }
                }
                MapStep::Restart(how) => {
                    held = None;
                    drop(colls);
                    db.restart(*how).await;
                    colls = Vec::new();
                    restarted = true;
                }
                MapStep::Hold => held = Some((colls[0].snapshot(), models[0].clone())),
                _ => {}
            }
            if let Some(plan) = plan
                && db.settle(plan).await
            {
                held = None;
                restarted = true;
            }
            if restarted {
                colls = open(&db.db).await;
            }
            if let Some((c, next)) = unknown {
                assert!(restarted, "{ctx}: a failed write without a crash");
                // Either outcome is allowed; the checks below hold the engine to it.
                if entries(&colls[c].snapshot())
                    .await
                    .iter()
                    .map(|(k, v)| (k, v))
                    .eq(next.iter())
                {
                    models[c] = next;
                }
            }
            for (c, coll) in colls.iter().enumerate() {
                check_map(coll, &models[c], &format!("{ctx}, map {}", names[c])).await;
            }
            if let Some((snap, model)) = &held {
                let got = entries(snap).await;
                assert!(
                    got.iter().map(|(k, v)| (k, v)).eq(model.iter()),
                    "{ctx}: a held snapshot changed"
                );
            }
            db.verify(&ctx).await;
        }
        drop(held);
        drop(colls);
        db.restart(Restart::Reopen).await;
        let colls = open(&db.db).await;
        for (c, coll) in colls.iter().enumerate() {
            check_map(coll, &models[c], "after the last reopen").await;
        }
        db.verify("after the last reopen").await;
        db.db.close().await.unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Lists.

#[derive(Debug, Clone)]
enum ListOp {
    PushBack(V),
    PushFront(V),
    /// Positions are taken modulo `len + 2`, so some are past the end.
    InsertAt(u16, V),
    SetAt(u16, V),
    RemoveAt(u16),
    PopFirst,
    PopLast,
    Truncate(u16),
    Clear,
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        6 => val().prop_map(ListOp::PushBack),
        3 => val().prop_map(ListOp::PushFront),
        5 => (any::<u16>(), val()).prop_map(|(i, v)| ListOp::InsertAt(i, v)),
        3 => (any::<u16>(), val()).prop_map(|(i, v)| ListOp::SetAt(i, v)),
        3 => any::<u16>().prop_map(ListOp::RemoveAt),
        1 => Just(ListOp::PopFirst),
        1 => Just(ListOp::PopLast),
        1 => any::<u16>().prop_map(ListOp::Truncate),
        1 => Just(ListOp::Clear),
    ]
}

#[derive(Debug, Clone)]
enum ListStep {
    Write(Vec<ListOp>),
    /// Many inserts at one position (long generated keys).
    InsertMany(u16, u16, V),
    Checkpoint,
    Restart(Restart),
    Hold,
    /// Another step with a crash armed: a write it cuts short may or may not survive.
    Crashing(CrashPlan, Box<ListStep>),
}

fn list_step() -> impl Strategy<Value = ListStep> {
    let write = || prop::collection::vec(list_op(), 1..6).prop_map(ListStep::Write);
    let many =
        || (any::<u16>(), 1..120u16, val()).prop_map(|(i, n, v)| ListStep::InsertMany(i, n, v));
    let crashable = prop_oneof![
        4 => write(),
        1 => many(),
        2 => Just(ListStep::Checkpoint),
        1 => Just(ListStep::Restart(Restart::Reopen)),
    ];
    prop_oneof![
        10 => write(),
        1 => many(),
        2 => Just(ListStep::Checkpoint),
        2 => restart().prop_map(ListStep::Restart),
        1 => Just(ListStep::Hold),
        2 => (crash_plan(), crashable).prop_map(|(p, s)| ListStep::Crashing(p, Box::new(s))),
    ]
}

/// Turns generated list ops into engine ops, choosing positions against the model's length
/// as each op will see it (an op past the end rejects the whole write).
fn list_ops(step: &ListStep, model: &VecDeque<Bytes>) -> Option<Vec<Op>> {
    let ops = match step {
        ListStep::Write(ops) => ops.clone(),
        ListStep::InsertMany(i, n, v) => (0..*n)
            .map(|j| ListOp::InsertAt(*i, V(v.0 % 300, v.1 ^ u32::from(j))))
            .collect(),
        _ => return None,
    };
    let mut len = model.len() as u64;
    let mut out = Vec::new();
    for op in ops {
        let pos = |i: u16, len: u64| u64::from(i) % (len + 2);
        out.push(match op {
            ListOp::PushBack(v) => {
                len += 1;
                Op::PushBack(v.bytes())
            }
            ListOp::PushFront(v) => {
                len += 1;
                Op::PushFront(v.bytes())
            }
            ListOp::InsertAt(i, v) => {
                let p = match step {
                    // The same spot every time: the middle of the list as it was.
                    ListStep::InsertMany(..) => u64::from(i) % (model.len() as u64 + 1),
                    _ => pos(i, len),
                };
                len += 1;
                Op::InsertAt(p, v.bytes())
            }
            ListOp::SetAt(i, v) => Op::SetAt(pos(i, len), v.bytes()),
            ListOp::RemoveAt(i) => {
                let p = pos(i, len);
                len -= u64::from(p < len);
                Op::RemoveAt(p)
            }
            ListOp::PopFirst | ListOp::PopLast => {
                len = len.saturating_sub(1);
                if matches!(op, ListOp::PopFirst) {
                    Op::PopFirst
                } else {
                    Op::PopLast
                }
            }
            ListOp::Truncate(n) => {
                let n = u64::from(n) % (len + 2);
                len = len.min(n);
                Op::Truncate(n)
            }
            ListOp::Clear => {
                len = 0;
                Op::Clear
            }
        });
    }
    Some(out)
}

/// The model's answers, or `None` if an op is past the end (the write is rejected).
fn apply_list(m: &mut VecDeque<Bytes>, ops: &[Op]) -> Option<Vec<Option<Bytes>>> {
    let mut work = m.clone();
    let mut out = Vec::new();
    for op in ops {
        out.push(match op {
            Op::PushBack(v) => {
                work.push_back(v.clone());
                None
            }
            Op::PushFront(v) => {
                work.push_front(v.clone());
                None
            }
            Op::InsertAt(i, v) => {
                if *i as usize > work.len() {
                    return None;
                }
                work.insert(*i as usize, v.clone());
                None
            }
            Op::SetAt(i, v) => {
                let slot = work.get_mut(*i as usize)?;
                Some(std::mem::replace(slot, v.clone()))
            }
            Op::RemoveAt(i) => work.remove(*i as usize),
            Op::PopFirst => work.pop_front(),
            Op::PopLast => work.pop_back(),
            Op::Truncate(n) => {
                work.truncate(*n as usize);
                None
            }
            Op::Clear => {
                work.clear();
                None
            }
            other => panic!("not a list op: {other:?}"),
        });
    }
    *m = work;
    Some(out)
}

/// The value an engine answer carries (list keys are generated, so only values compare).
fn answer_value(r: &OpResult) -> Option<Bytes> {
    match r {
        OpResult::Done => None,
        OpResult::Old(v) => v.clone(),
        OpResult::Popped(e) => e.as_ref().map(|(_, v)| v.clone()),
        other => panic!("a list op answered {other:?}"),
    }
}

async fn check_list(coll: &Collection, model: &VecDeque<Bytes>, ctx: &str) {
    let snap = coll.snapshot();
    let got: Vec<Bytes> = entries(&snap).await.into_iter().map(|(_, v)| v).collect();
    if !got.iter().eq(model.iter()) {
        let first = got.iter().zip(model).position(|(a, b)| a != b);
        panic!(
            "{ctx}: {} values, the model has {}; first difference at {first:?}",
            got.len(),
            model.len()
        );
    }
    for (i, want) in model.iter().enumerate() {
        let (_, v) = snap
            .nth(i as u64)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{ctx}: nth({i}) missing"));
        assert_eq!(&v, want, "{ctx}: nth({i})");
    }
    assert_eq!(snap.nth(model.len() as u64).await.unwrap(), None, "{ctx}");
}

fn run_list_case(setup: Setup, steps: Vec<ListStep>) {
    rt().block_on(async move {
        let mut db = Db::open(setup).await;
        let open = |db: &Engine| {
            let db = db.clone();
            async move { db.collection("l", Kind::List, "", "v").await.unwrap() }
        };
        let mut coll = open(&db.db).await;
        let mut model: VecDeque<Bytes> = VecDeque::new();
        let mut held: Option<(persistx_actors::engine::Snapshot, VecDeque<Bytes>)> = None;
        for (i, step) in steps.iter().enumerate() {
            let ctx = format!("step {i} ({step:?})");
            let (plan, step) = match step {
                ListStep::Crashing(plan, inner) => (Some(plan), &**inner),
                other => (None, other),
            };
            if let Some(plan) = plan {
                db.arm(plan);
            }
            let crash_ok = |db: &Db, what: &str| {
                assert!(plan.is_some() && db.disk.has_crashed(), "{ctx}: {what}");
            };
            // The model with a write the crash cut short.
            let mut unknown = None;
            if let Some(ops) = list_ops(step, &model) {
                let mut next = model.clone();
                let want = apply_list(&mut next, &ops);
                let got: Result<Vec<OpResult>> = coll.write(ops).await;
                match (want, got) {
                    (Some(want), Ok(got)) => {
                        let got: Vec<Option<Bytes>> = got.iter().map(answer_value).collect();
                        assert_eq!(got, want, "{ctx}: answers");
                        model = next;
                    }
                    (None, Err(Error::InvalidArgument(_))) => {}
                    // A rejected write may meet the crash first (reading pages).
                    (None, Err(e)) => crash_ok(&db, &e.to_string()),
                    (Some(_), Err(e)) => {
                        crash_ok(&db, &e.to_string());
                        unknown = Some(next);
                    }
                    (want, got) => panic!("{ctx}: the model says {want:?}, the engine {got:?}"),
                }
            }
            let mut restarted = false;
            match step {
                ListStep::Checkpoint => {
                    if let Err(e) = db.db.checkpoint().await {
                        crash_ok(&db, &e.to_string());
                    }
                }
                ListStep::Restart(how) => {
                    held = None;
                    db.restart(*how).await;
                    restarted = true;
                }
                ListStep::Hold => held = Some((coll.snapshot(), model.clone())),
                _ => {}
            }
            if let Some(plan) = plan
                && db.settle(plan).await
            {
                held = None;
                restarted = true;
            }
            if restarted {
                coll = open(&db.db).await;
            }
            if let Some(next) = unknown {
                assert!(restarted, "{ctx}: a failed write without a crash");
                // Either outcome is allowed; the checks below hold the engine to it.
                let got = entries(&coll.snapshot()).await;
                if got.iter().map(|(_, v)| v).eq(next.iter()) {
                    model = next;
                }
            }
            check_list(&coll, &model, &ctx).await;
            if let Some((snap, model)) = &held {
                let got = entries(snap).await;
                assert!(
                    got.iter().map(|(_, v)| v).eq(model.iter()),
                    "{ctx}: a held snapshot changed"
                );
            }
            db.verify(&ctx).await;
        }
        drop(held);
        drop(coll);
        db.restart(Restart::Reopen).await;
        let coll = open(&db.db).await;
        check_list(&coll, &model, "after the last reopen").await;
        db.verify("after the last reopen").await;
        db.db.close().await.unwrap();
    });
}

proptest! {
    // 256 cases by default; PROPTEST_CASES raises it.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn maps_match_btreemap(setup in setup(), steps in prop::collection::vec(map_step(), 1..40)) {
        run_map_case(setup, steps);
    }

    #[test]
    fn list_matches_vecdeque(setup in setup(), steps in prop::collection::vec(list_step(), 1..40)) {
        run_list_case(setup, steps);
    }
}
