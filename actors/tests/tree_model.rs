//! The B+tree against a `BTreeMap` model: random inserts and removes with small and
//! overflowing values, checkpoints through the real page codec, cursors in both directions,
//! positional access, old snapshots that must not change, and `verify` after every step.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use persistx_actors::Result;
use persistx_actors::tree::{self, Child, Cursor, Node, PageSource, TreeLimits, Val, WriteCtx};
use persistx_io::format::node::{KIND_OVERFLOW, decode_overflow};
use persistx_io::format::page::{PageHeader, decode_page, encode_page};
use proptest::prelude::*;

/// Pages in memory, written through the real page and node codecs.
struct MemPages {
    limits: TreeLimits,
    pages: Mutex<HashMap<u64, Bytes>>,
    next: Mutex<u64>,
    /// Every page the working tree stopped using (writes' freed runs, and released delta
    /// base pages once no delta uses them), to check none is freed twice or still in use.
    freed: Mutex<Vec<u64>>,
    /// Base pages of deltas that left the working tree, not yet checked against it.
    released: Mutex<Vec<u64>>,
}

impl MemPages {
    fn new(page_size: usize) -> Self {
        MemPages {
            limits: TreeLimits::new(page_size),
            pages: Mutex::new(HashMap::new()),
            next: Mutex::new(2),
            freed: Mutex::new(Vec::new()),
            released: Mutex::new(Vec::new()),
        }
    }

    /// Records what a write freed and released.
    fn wrote(&self, ctx: &WriteCtx<'_>) {
        self.free(&ctx.freed);
        self.released.lock().unwrap().extend(&ctx.released);
    }

    fn free(&self, runs: &[(u64, u64)]) {
        let mut freed = self.freed.lock().unwrap();
        for &(p, n) in runs {
            freed.extend(p..p + n);
        }
    }

    /// Frees the released base pages no delta of `root` uses (as the collection actor does
    /// before a checkpoint), then checks no page was freed twice and the tree at `root`
    /// reaches none that was freed.
    async fn check_freed(&self, root: &Child) {
        let mut live = Vec::new();
        tree::delta_bases(root, &mut live);
        {
            let mut released = self.released.lock().unwrap();
            released.sort_unstable();
            released.dedup();
            let (kept, gone): (Vec<u64>, Vec<u64>) =
                released.iter().partition(|p| live.contains(p));
            *released = kept;
            self.freed.lock().unwrap().extend(gone);
        }
        let freed: HashSet<u64> = {
            let list = self.freed.lock().unwrap();
            let set: HashSet<u64> = list.iter().copied().collect();
            assert_eq!(set.len(), list.len(), "a page was freed twice");
            set
        };
        let stats = tree::verify(self, root).await.unwrap();
        for (p, n) in stats.pages {
            for q in p..p + n {
                assert!(!freed.contains(&q), "page {q} is freed but still in use");
            }
        }
        for p in stats.delta_bases {
            assert!(
                !freed.contains(&p),
                "base page {p} is freed but still in use"
            );
        }
    }

    /// Checks every page written is in use by the tree at `root` or freed (the checkpoints
    /// of this model swizzle every node they write, so nothing else holds a page).
    async fn check_no_leak(&self, root: &Child) {
        let mut known: HashSet<u64> = self.freed.lock().unwrap().iter().copied().collect();
        known.extend(self.released.lock().unwrap().iter().copied());
        let stats = tree::verify(self, root).await.unwrap();
        for (p, n) in stats.pages {
            known.extend(p..p + n);
        }
        known.extend(stats.delta_bases);
        let pages: Vec<u64> = self.pages.lock().unwrap().keys().copied().collect();
        for p in pages {
            assert!(known.contains(&p), "page {p} is neither in use nor freed");
        }
    }

    /// Writes every dirty node of `snapshot` and swizzles `working`.
    async fn checkpoint(&self, snapshot: &Child, working: &mut Child) {
        let mut out = tree::Flushed::default();
        let mut alloc = |n: u64| {
            let mut next = self.next.lock().unwrap();
            let first = *next;
            *next += n;
            first
        };
        tree::assign(snapshot, &self.limits, &mut alloc, &mut out);
        // Encoded a few pages at a time, as a checkpoint does in chunks of a few MiB.
        let mut writes = Vec::new();
        loop {
            let (some, _leaves) = tree::encode_some(&mut out, self, 3 * self.limits.page_size)
                .await
                .unwrap();
            if some.is_empty() {
                break;
            }
            writes.extend(some);
        }
        let mut pages = self.pages.lock().unwrap();
        for w in writes {
            let header = PageHeader {
                kind: w.kind,
                flags: 0,
                page_id: w.page,
                lsn: 1,
                payload_len: w.payload.len() as u32,
            };
            let bytes = encode_page(&header, &w.payload, self.limits.page_size);
            assert!(
                pages.insert(w.page, Bytes::from(bytes)).is_none(),
                "page written twice"
            );
        }
        drop(pages);
        let mut hit = HashSet::new();
        let mut bases = Vec::new();
        tree::swizzle(working, &out.map, &mut hit, &mut bases);
        self.released.lock().unwrap().extend(bases);
    }
}

#[async_trait]
impl PageSource for MemPages {
    async fn node(&self, page: u64) -> Result<Arc<Node>> {
        let bytes = self
            .pages
            .lock()
            .unwrap()
            .get(&page)
            .cloned()
            .expect("page exists");
        let (h, payload) = decode_page(&bytes, page).expect("valid page");
        let at = payload.as_ptr() as usize - bytes.as_ptr() as usize;
        let len = payload.len();
        let mut node = tree::node::decode_node(h.kind, &bytes, at, len).expect("valid node");
        // Half the nodes get search prefixes, so both search paths are exercised.
        if page.is_multiple_of(2) {
            node.index();
        }
        Ok(Arc::new(node))
    }

    async fn overflow(&self, first_page: u64, len: u64) -> Result<Bytes> {
        let mut out = Vec::new();
        let pages = self.pages.lock().unwrap();
        let mut p = first_page;
        loop {
            let bytes = pages.get(&p).expect("overflow page exists");
            let (h, payload) = decode_page(bytes, p).expect("valid page");
            assert_eq!(h.kind, KIND_OVERFLOW);
            let (next, data) = decode_overflow(payload).expect("valid overflow");
            out.extend_from_slice(data);
            if next == 0 {
                break;
            }
            p = next;
        }
        assert_eq!(out.len() as u64, len);
        Ok(Bytes::from(out))
    }

    fn limits(&self) -> &TreeLimits {
        &self.limits
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, u8, usize),
    Remove(u16),
    Checkpoint,
    Snapshot,
    Range(u16, u16, bool),
    Nth(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u16..600, 0u8..40, prop_oneof![8 => 0usize..200, 1 => 900usize..1100, 1 => 2000usize..9000])
            .prop_map(|(k, s, v)| Op::Insert(k, s, v)),
        5 => (0u16..600).prop_map(Op::Remove),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Snapshot),
        2 => (0u16..600, 0u16..600, any::<bool>()).prop_map(|(a, b, r)| Op::Range(a, b, r)),
        2 => (0u64..700).prop_map(Op::Nth),
    ]
}

fn key(k: u16, suffix: u8) -> Bytes {
    // Variable-length keys whose order is the order of k.
    let mut v = k.to_be_bytes().to_vec();
    v.extend(std::iter::repeat_n(b'k', suffix as usize));
    Bytes::from(v)
}

fn value(k: u16, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u16).wrapping_mul(31).wrapping_add(k) as u8)
            .collect::<Vec<_>>(),
    )
}

fn model_key(model: &BTreeMap<Bytes, Bytes>, k: u16) -> Option<Bytes> {
    let lo = Bytes::copy_from_slice(&k.to_be_bytes());
    model
        .range(lo..)
        .next()
        .filter(|(kk, _)| kk[..2] == k.to_be_bytes())
        .map(|(kk, _)| kk.clone())
}

async fn check_all(src: &MemPages, root: &Child, model: &BTreeMap<Bytes, Bytes>) {
    assert_eq!(root.count, model.len() as u64);
    tree::verify(src, root).await.expect("tree invariants hold");
    let mut c = Cursor::lower(src, root, Bound::Unbounded).await.unwrap();
    let mut got = Vec::new();
    while let Some((k, v)) = c.next(src).await.unwrap() {
        got.push((k, tree::value_bytes(src, &v).await.unwrap()));
    }
    let want: Vec<(Bytes, Bytes)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got, want);
    let mut c = Cursor::upper(src, root, Bound::Unbounded).await.unwrap();
    let mut back = Vec::new();
    while let Some((k, _)) = c.prev(src).await.unwrap() {
        back.push(k);
    }
    back.reverse();
    assert_eq!(back, model.keys().cloned().collect::<Vec<_>>());
}

async fn run(ops: Vec<Op>, page_size: usize) {
    let src = MemPages::new(page_size);
    let mut root = Child::empty();
    let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    let mut snapshots: Vec<(Child, BTreeMap<Bytes, Bytes>)> = Vec::new();
    for op in ops {
        match op {
            Op::Insert(k, s, len) => {
                // Replace any key with the same k (so removes find it).
                if let Some(old) = model_key(&model, k) {
                    let mut ctx = WriteCtx::new(&src);
                    let got = tree::remove(&mut ctx, &mut root, &old).await.unwrap();
                    src.wrote(&ctx);
                    assert_eq!(
                        tree::value_bytes(&src, &got.unwrap()).await.unwrap(),
                        model.remove(&old).unwrap()
                    );
                }
                let (kk, v) = (key(k, s), value(k, len));
                let mut ctx = WriteCtx::new(&src);
                let old = tree::insert(&mut ctx, &mut root, kk.clone(), Val::Inline(v.clone()))
                    .await
                    .unwrap();
                src.wrote(&ctx);
                assert!(old.is_none());
                model.insert(kk.clone(), v.clone());
                // Replace in place too.
                let mut ctx = WriteCtx::new(&src);
                let old = tree::insert(&mut ctx, &mut root, kk.clone(), Val::Inline(v.clone()))
                    .await
                    .unwrap();
                src.wrote(&ctx);
                assert_eq!(tree::value_bytes(&src, &old.unwrap()).await.unwrap(), v);
            }
            Op::Remove(k) => {
                let target = model_key(&model, k).unwrap_or_else(|| key(k, 0));
                let mut ctx = WriteCtx::new(&src);
                let got = tree::remove(&mut ctx, &mut root, &target).await.unwrap();
                src.wrote(&ctx);
                let want = model.remove(&target);
                match (got, want) {
                    (None, None) => assert!(ctx.freed.is_empty(), "a miss frees nothing"),
                    (Some(g), Some(w)) => assert_eq!(tree::value_bytes(&src, &g).await.unwrap(), w),
                    (g, w) => panic!("remove disagrees: tree {g:?}, model {w:?}"),
                }
            }
            Op::Checkpoint => {
                let snap = root.clone();
                src.checkpoint(&snap, &mut root).await;
                assert_eq!(tree::dirty_parts(&root, 4096), tree::Dirty::default());
                src.check_freed(&root).await;
            }
            Op::Snapshot => snapshots.push((root.clone(), model.clone())),
            Op::Range(a, b, rev) => {
                let (lo, hi) = (key(a.min(b), 0), key(a.max(b), 0));
                let want: Vec<Bytes> = model
                    .range(lo.clone()..hi.clone())
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut got = Vec::new();
                if rev {
                    let mut c = Cursor::upper(&src, &root, Bound::Excluded(&hi))
                        .await
                        .unwrap();
                    while let Some((k, _)) = c.prev(&src).await.unwrap() {
                        if k < lo {
                            break;
                        }
                        got.push(k);
                    }
                    got.reverse();
                } else {
                    let mut c = Cursor::lower(&src, &root, Bound::Included(&lo))
                        .await
                        .unwrap();
                    while let Some((k, _)) = c.next(&src).await.unwrap() {
                        if k >= hi {
                            break;
                        }
                        got.push(k);
                    }
                }
                assert_eq!(got, want);
                let r = tree::rank(&src, &root, &lo).await.unwrap();
                assert_eq!(r, model.range(..lo.clone()).count() as u64);
            }
            Op::Nth(i) => {
                let got = tree::nth(&src, &root, i).await.unwrap().map(|(k, _)| k);
                assert_eq!(got, model.keys().nth(i as usize).cloned());
            }
        }
    }
    check_all(&src, &root, &model).await;
    src.check_freed(&root).await;
    for (snap, m) in &snapshots {
        check_all(&src, snap, m).await;
    }
    // A final checkpoint, then everything again from pages only.
    let snap = root.clone();
    src.checkpoint(&snap, &mut root).await;
    check_all(&src, &root, &model).await;
    src.check_freed(&root).await;
    src.check_no_leak(&root).await;
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_btreemap(ops in prop::collection::vec(op(), 1..400)) {
        rt().block_on(run(ops, 4096));
    }

    #[test]
    fn tree_matches_btreemap_big_pages(ops in prop::collection::vec(op(), 1..300)) {
        rt().block_on(run(ops, 8192));
    }
}

#[test]
fn bulk_build_matches_inserts() {
    rt().block_on(async {
        let src = MemPages::new(4096);
        let entries: Vec<(Bytes, Val)> = (0u32..20_000)
            .map(|i| {
                (
                    Bytes::from(i.to_be_bytes().to_vec()),
                    Val::Inline(value(i as u16, (i % 300) as usize)),
                )
            })
            .collect();
        let model: BTreeMap<Bytes, Bytes> = entries
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    match v {
                        Val::Inline(b) => b.clone(),
                        _ => unreachable!(),
                    },
                )
            })
            .collect();
        let mut root = tree::bulk_build(entries, src.limits(), 1.0);
        check_all(&src, &root, &model).await;
        let snap = root.clone();
        src.checkpoint(&snap, &mut root).await;
        let stats = tree::verify(&src, &root).await.unwrap();
        assert_eq!(stats.entries, 20_000);
        // Bulk loading fills leaves: well over 90% of the capacity on average.
        let fill = stats.used_bytes as f64
            / ((stats.leaves + stats.interiors) as f64 * src.limits().capacity as f64);
        assert!(fill > 0.9, "fill {fill}");
        // Then random removes down to a tenth, and the tree stays valid.
        let mut model = model;
        for i in (0u32..20_000).filter(|i| i % 10 != 0) {
            let k = Bytes::from(i.to_be_bytes().to_vec());
            let mut ctx = WriteCtx::new(&src);
            assert!(
                tree::remove(&mut ctx, &mut root, &k)
                    .await
                    .unwrap()
                    .is_some()
            );
            model.remove(&k);
        }
        check_all(&src, &root, &model).await;
        let stats = tree::verify(&src, &root).await.unwrap();
        assert!(
            stats.leaves < 300,
            "merges keep the tree small: {} leaves",
            stats.leaves
        );
    });
}

#[test]
fn ascending_inserts_fill_leaves() {
    rt().block_on(async {
        let src = MemPages::new(4096);
        let mut root = Child::empty();
        for i in 0u32..10_000 {
            let mut ctx = WriteCtx::new(&src);
            tree::insert(
                &mut ctx,
                &mut root,
                Bytes::from(i.to_be_bytes().to_vec()),
                Val::Inline(value(1, 100)),
            )
            .await
            .unwrap();
        }
        let stats = tree::verify(&src, &root).await.unwrap();
        let fill = stats.used_bytes as f64 / (stats.leaves as f64 * src.limits().capacity as f64);
        assert!(fill > 0.9, "fill {fill}");
    });
}

/// Puts into clean leaves after a checkpoint are kept as deltas over their pages (a few
/// hundred bytes each, not a page): reads, cursors and positions see them, a later removal
/// makes the leaf whole (freeing its base page), and the next checkpoint writes them.
#[test]
fn puts_after_a_checkpoint_stay_small() {
    rt().block_on(async {
        let src = MemPages::new(4096);
        let entries: Vec<(Bytes, Val)> = (0u32..20_000)
            .map(|i| {
                (
                    Bytes::from((i * 2).to_be_bytes().to_vec()),
                    Val::Inline(value(i as u16, 100)),
                )
            })
            .collect();
        let mut model: BTreeMap<Bytes, Bytes> = entries
            .iter()
            .map(|(k, v)| match v {
                Val::Inline(b) => (k.clone(), b.clone()),
                Val::Overflow { .. } => unreachable!(),
            })
            .collect();
        let mut root = tree::bulk_build(entries, src.limits(), 0.8);
        let snap = root.clone();
        src.checkpoint(&snap, &mut root).await;
        let leaves = tree::verify(&src, &root).await.unwrap().leaves;
        // 200 puts, one per 100 keys: new odd keys and replaced even ones.
        let before = root.clone();
        let mut freed = 0;
        // What the writes tell the owner to count never falls below what a recount finds
        // (memory is never understated). It overstates deltas made whole or split (their
        // charge stays until the next recount, at each freeze): deliberately, see
        // `CollActor::recount_dirty`.
        let charge = |ctx: &WriteCtx<'_>| ctx.dirtied as i64 * 4096 + ctx.charged_bytes as i64;
        let recount = |root: &tree::Child| {
            let d = tree::dirty_parts(root, 4096);
            (d.leaves * 4096 + d.interior_bytes + d.delta_bytes) as i64
        };
        let mut counted = 0i64;
        for i in (0u32..20_000).step_by(100) {
            let k = Bytes::from((i * 2 + (i / 100) % 2).to_be_bytes().to_vec());
            let v = value(7, 120);
            let mut ctx = WriteCtx::new(&src);
            let old = tree::insert(&mut ctx, &mut root, k.clone(), Val::Inline(v.clone()))
                .await
                .unwrap();
            counted += charge(&ctx);
            // Only interior pages on the path are freed, not the leaf's.
            freed += ctx.freed.len();
            src.wrote(&ctx);
            let want = model.insert(k, v);
            assert_eq!(
                old.map(|o| match o {
                    Val::Inline(b) => b,
                    Val::Overflow { .. } => unreachable!(),
                }),
                want
            );
        }
        let r = recount(&root);
        assert!(
            (counted - r).abs() <= 256,
            "after puts: counted {counted} bytes, a recount {r}"
        );
        let dirty = tree::dirty_parts(&root, 4096);
        assert_eq!(dirty.leaves, 0, "no leaf made whole");
        let nodes = dirty.interiors;
        assert!(nodes < leaves / 10, "{nodes} dirty nodes for 200 puts");
        assert_eq!(freed as u64, nodes, "the dirty interior nodes' pages");
        // 200 deltas of one put each, in 200 leaves: each counts a quarter page.
        assert_eq!(dirty.delta_bytes, 200 * 1024, "what the deltas count");
        // Interior nodes count their memory: a few bytes per child beside the keys.
        assert!(dirty.interior_bytes >= nodes * 4096 && dirty.interior_bytes < nodes * 4096 * 2);
        check_all(&src, &root, &model).await;
        for (k, v) in model.iter().step_by(97) {
            let got = tree::get(&src, &root, k).await.unwrap().unwrap();
            assert_eq!(tree::value_bytes(&src, &got).await.unwrap(), *v);
        }
        // The snapshot from before sees none of it.
        assert_eq!(before.count, 20_000);
        let k = Bytes::from(1u32.to_be_bytes().to_vec());
        assert!(tree::get(&src, &before, &k).await.unwrap().is_none());
        // Puts that overfill a leaf split it into two deltas over the same page.
        for i in 6_000u32..6_040 {
            let k = Bytes::from((i * 2 + 1).to_be_bytes().to_vec());
            let v = value(9, 100);
            let mut ctx = WriteCtx::new(&src);
            tree::insert(&mut ctx, &mut root, k.clone(), Val::Inline(v.clone()))
                .await
                .unwrap();
            counted += charge(&ctx);
            src.wrote(&ctx);
            model.insert(k, v);
        }
        let r = recount(&root);
        assert!(
            counted >= r - 256,
            "after splits: counted {counted} bytes, a recount {r}"
        );
        let mut bases = Vec::new();
        tree::delta_bases(&root, &mut bases);
        let n = bases.len();
        bases.sort_unstable();
        bases.dedup();
        assert!(bases.len() < n, "no two deltas share a base page");
        check_all(&src, &root, &model).await;
        src.check_freed(&root).await;
        // A removal in a delta's leaf makes it whole and releases the base page.
        let k = Bytes::from(2u32.to_be_bytes().to_vec());
        let mut ctx = WriteCtx::new(&src);
        assert!(
            tree::remove(&mut ctx, &mut root, &k)
                .await
                .unwrap()
                .is_some()
        );
        model.remove(&k);
        assert!(!ctx.released.is_empty());
        counted += charge(&ctx);
        let r = recount(&root);
        assert!(
            counted >= r - 256,
            "after a removal: counted {counted} bytes, a recount {r}"
        );
        src.wrote(&ctx);
        check_all(&src, &root, &model).await;
        let snap = root.clone();
        src.checkpoint(&snap, &mut root).await;
        assert_eq!(tree::dirty_parts(&root, 4096), tree::Dirty::default());
        check_all(&src, &root, &model).await;
        src.check_freed(&root).await;
        src.check_no_leak(&root).await;
    });
}
