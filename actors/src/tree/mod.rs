//! The copy-on-write B+tree over byte keys and values.
//!
//! A tree is a root [`Child`]: a pointer ([`Ptr::Clean`] page id or [`Ptr::Dirty`] node in
//! memory) plus the number of entries below it. Interior nodes carry each child's subtree
//! count, so `len` is O(1) and positional access ([`nth`]) is O(log n).
//!
//! Writers change a tree by path copying: the nodes on the path from the root are made
//! dirty (a clean node is loaded and copied; the page it came from is recorded as freed),
//! and [`Arc::make_mut`] copies a dirty node only if a snapshot still shares it. So a
//! snapshot is a clone of the root, and it never changes.
//!
//! A checkpoint ([`flush`]) writes every dirty node of a snapshot bottom-up to newly
//! allocated pages and returns a map from node identity to page; [`swizzle`] then replaces
//! those nodes in the (possibly newer) working tree by clean page references.
//!
//! Reads and writes load clean nodes through a [`PageSource`] (the page file behind the
//! buffer pool).

mod cursor;
pub mod node;
pub mod pin;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

pub use cursor::Cursor;
pub use node::{Child, Delta, Interior, Leaf, Node, Ptr, Seps, TreeLimits, Val, ValRef};
pub use pin::{PinBudget, Pins};

use crate::error::Result;

/// Where clean nodes and overflow values come from.
#[async_trait]
pub trait PageSource: Send + Sync {
    /// Loads the node stored at `page`.
    async fn node(&self, page: u64) -> Result<Arc<Node>>;
    /// The node stored at `page` if it is at hand without I/O (a buffer pool hit): lets
    /// reads skip the boxed future of [`PageSource::node`].
    fn cached(&self, _page: u64) -> Option<Arc<Node>> {
        None
    }
    /// The budget that pinned children are charged against (see [`pin`]); `None` pins
    /// nothing.
    fn pin_budget(&self) -> Option<&Arc<PinBudget>> {
        None
    }
    /// Reads an overflow value of `len` bytes starting at `first_page`.
    async fn overflow(&self, first_page: u64, len: u64) -> Result<Bytes>;
    /// The size limits of the tree's pages.
    fn limits(&self) -> &TreeLimits;
}

/// Resolves a child pointer to its node (a [`Delta`] is merged with its base page into a
/// leaf of its own).
pub async fn load(src: &dyn PageSource, ptr: &Ptr) -> Result<Arc<Node>> {
    match ptr {
        Ptr::Dirty(n) => Ok(n.clone()),
        Ptr::Clean(page) => load_clean(src, *page).await,
        Ptr::Delta(d) => Ok(Arc::new(Node::Leaf(merge_delta(src, d).await?))),
    }
}

/// The node stored at `page` (a buffer pool hit without a boxed future).
async fn load_clean(src: &dyn PageSource, page: u64) -> Result<Arc<Node>> {
    match src.cached(page) {
        Some(n) => Ok(n),
        None => src.node(page).await,
    }
}

/// The leaf a delta's base page holds.
async fn delta_base(src: &dyn PageSource, page: u64) -> Result<Arc<Node>> {
    let node = load_clean(src, page).await?;
    if !matches!(&*node, Node::Leaf(_)) {
        return Err(broken(
            Some(page),
            "a leaf's changes refer to a page that is not a leaf".into(),
        ));
    }
    Ok(node)
}

/// The whole leaf a delta stands for.
async fn merge_delta(src: &dyn PageSource, d: &Delta) -> Result<Leaf> {
    let base = delta_base(src, d.base()).await?;
    let Node::Leaf(b) = &*base else {
        unreachable!("delta_base checks the kind")
    };
    Ok(d.merge(b, src.limits()))
}

/// Reads a value's bytes (loading overflow pages if needed).
pub async fn value_bytes(src: &dyn PageSource, val: &Val) -> Result<Bytes> {
    match val {
        Val::Inline(b) => Ok(b.clone()),
        Val::Overflow { len, first_page } => src.overflow(*first_page, *len).await,
    }
}

/// The state a write carries: where to load from, and what it freed.
pub struct WriteCtx<'a> {
    /// Source of clean nodes.
    pub src: &'a dyn PageSource,
    /// Page runs `(first, count)` no longer referenced by the working tree.
    pub freed: Vec<(u64, u64)>,
    /// Nodes that became dirty (for the dirty-bytes estimate).
    pub dirtied: u64,
    /// Whether puts into clean leaves may be kept as [`Delta`]s (off for bulk writes, whose
    /// sorted puts fill each leaf they touch).
    pub deltas: bool,
    /// What new or grown deltas (see `delta_charge`) and interior nodes made dirty (their
    /// memory beyond the page `dirtied` counts, see [`Dirty`]) count against the dirty
    /// budget, in bytes.
    pub charged_bytes: u64,
    /// Base pages of deltas that left the working tree (made whole). Two deltas can share
    /// a base page (a split), so the page is free only once no delta of the working tree
    /// uses it: the owner of the tree checks that (see [`delta_bases`]) before freeing.
    pub released: Vec<u64>,
}

impl<'a> WriteCtx<'a> {
    /// A context reading from `src`.
    pub fn new(src: &'a dyn PageSource) -> Self {
        WriteCtx {
            src,
            freed: Vec::new(),
            dirtied: 0,
            deltas: true,
            charged_bytes: 0,
            released: Vec::new(),
        }
    }

    fn free_val(&mut self, val: &Val) {
        if let Val::Overflow { len, first_page } = val {
            let n = self.src.limits().overflow_pages(*len);
            self.freed.push((*first_page, n));
        }
    }
}

/// Index of the child of `int` that holds `key`.
fn child_index(int: &Interior, key: &[u8]) -> usize {
    int.child_for(key)
}

/// Makes `child` dirty and returns its node for changing (copied if a snapshot shares it).
/// A [`Delta`] becomes a whole leaf, and its base page is freed.
async fn make_dirty<'c>(ctx: &mut WriteCtx<'_>, child: &'c mut Child) -> Result<&'c mut Node> {
    let loaded = match &child.ptr {
        Ptr::Clean(page) => {
            let page = *page;
            let node = ctx.src.node(page).await?;
            ctx.freed.push((page, 1));
            ctx.dirtied += 1;
            child.ptr = Ptr::Dirty(node);
            true
        }
        Ptr::Delta(d) => {
            let leaf = merge_delta(ctx.src, d).await?;
            ctx.released.push(d.base());
            ctx.dirtied += 1;
            child.ptr = Ptr::Dirty(Arc::new(Node::Leaf(leaf)));
            false
        }
        Ptr::Dirty(_) => false,
    };
    let Ptr::Dirty(arc) = &mut child.ptr else {
        unreachable!("made dirty above")
    };
    let node = Arc::make_mut(arc);
    node.changed();
    if loaded && let Node::Interior(int) = node {
        // Its memory (without the search prefixes `changed` dropped) beyond the page
        // `dirtied` counts (see [`Dirty`]).
        let page = ctx.src.limits().page_size;
        ctx.charged_bytes += int.memory().saturating_sub(page) as u64;
    }
    Ok(node)
}

/// What a delta counts against the dirty budget: its memory, but at least a quarter page,
/// because the checkpoint that cleans it writes a whole page. So the budget also bounds how
/// many pages one checkpoint writes, and so how long it competes with the log for the disk
/// (compare, 32 writers after 100 transactions of 1,000 random inserts: with deltas counted
/// by memory alone, checkpoints of ~30,000 pages ran for half a second and often covered
/// the whole phase; at a quarter page the phase made 33-61k commits/s, at an eighth 20-54k).
fn delta_charge(d: &Delta, page_size: usize) -> u64 {
    (d.memory() as u64).max(page_size as u64 / 4)
}

/// Most puts a [`Delta`] holds; the next put into its leaf makes the leaf whole.
pub const DELTA_MAX_PUTS: usize = 8;

/// Puts `key` = `val` into the leaf at `child` as a [`Delta`] if it is one already or a
/// clean leaf, the value is inline, and the delta stays small (at most [`DELTA_MAX_PUTS`]
/// puts and a quarter page of their bytes); a put that overfills the leaf splits it into
/// two deltas over the same base page. Returns `None` when that does not apply (nothing
/// changed).
async fn delta_insert(
    ctx: &mut WriteCtx<'_>,
    child: &mut Child,
    key: &[u8],
    val: &[u8],
) -> Result<Option<Inserted>> {
    let limits = *ctx.src.limits();
    let entry = 7 + key.len() + val.len();
    let grows = 6 + key.len() + val.len();
    if grows > limits.capacity / 4 {
        return Ok(None);
    }
    let (page, prev) = match &child.ptr {
        Ptr::Dirty(_) => return Ok(None),
        Ptr::Clean(p) => (*p, None),
        Ptr::Delta(d) => {
            if d.puts() >= DELTA_MAX_PUTS || d.data_len() + grows > limits.capacity / 4 {
                return Ok(None);
            }
            (d.base(), Some(d.clone()))
        }
    };
    let node = match &prev {
        Some(d) => {
            if !d.covers(key) {
                return Err(broken(
                    Some(page),
                    "a key outside the range of the leaf its parent leads to".into(),
                ));
            }
            delta_base(ctx.src, page).await?
        }
        None => load_clean(ctx.src, page).await?,
    };
    let Node::Leaf(b) = &*node else {
        return Ok(None);
    };
    let mut d = match prev {
        Some(d) => d,
        None => Arc::new(Delta::new(page, b)),
    };
    // The old value (a put's, else the base's) and the merged leaf after the put.
    let at = d.find(key);
    let (old, count, len) = match at {
        Ok(i) => {
            let old = d.entry(i).1;
            let len = d.encoded_len() - (7 + key.len() + old.len()) + entry;
            let old = Val::Inline(Bytes::copy_from_slice(old));
            (Some(old), d.len(), len)
        }
        Err(_) => match b.find(key) {
            Ok(j) => {
                if !matches!(b.value(j), ValRef::Inline(_)) {
                    return Ok(None);
                }
                let len = d.encoded_len() - b.entry_len(j) + entry;
                (Some(b.val(j)), d.len(), len)
            }
            Err(_) => (None, d.len() + 1, d.encoded_len() + entry),
        },
    };
    let fresh = matches!(child.ptr, Ptr::Clean(_));

    if len <= limits.capacity {
        if !fresh {
            // Drop our reference, so `make_mut` copies only if a snapshot shares it.
            drop(d);
            let Ptr::Delta(held) = &mut child.ptr else {
                unreachable!("matched above")
            };
            let before = delta_charge(held, limits.page_size);
            let m = Arc::make_mut(held);
            m.put(at, key, val, count, len);
            ctx.charged_bytes += delta_charge(m, limits.page_size).saturating_sub(before);
        } else {
            Arc::make_mut(&mut d).put(at, key, val, count, len);
            ctx.charged_bytes += delta_charge(&d, limits.page_size);
            child.ptr = Ptr::Delta(d);
        }
        return Ok(Some(Inserted { old, split: None }));
    }
    // Overfull: split the merged leaf (with the put) into two deltas over the same page.
    let mut with = (*d).clone();
    with.put(at, key, val, count, len);
    let (sizes, hint) = with.merged_sizes(b, key);
    let n = sizes.len();
    if n < 2 {
        return Ok(None);
    }
    let k = leaf_split_point(&sizes, hint.unwrap_or(n / 2));
    let (left, sep, right) = with.split_at(b, k);
    if left.encoded_len() > limits.capacity || right.encoded_len() > limits.capacity {
        return Ok(None);
    }
    ctx.charged_bytes +=
        delta_charge(&left, limits.page_size) + delta_charge(&right, limits.page_size);
    let right_count = right.len() as u64;
    child.ptr = Ptr::Delta(Arc::new(left));
    Ok(Some(Inserted {
        old,
        split: Some((
            sep,
            Child {
                ptr: Ptr::Delta(Arc::new(right)),
                count: right_count,
            },
        )),
    }))
}

/// What [`load_for_key`] found.
enum ForKey<'p> {
    /// The node to search.
    Node(Arc<Node>),
    /// The key's value (a delta's put).
    Value(&'p [u8]),
    /// The key is not there.
    Absent,
}

/// The node to search for `key` at `ptr`: a [`Delta`] answers from its puts, or else from
/// its base page if the key is in the delta's range.
async fn load_for_key<'p>(src: &dyn PageSource, ptr: &'p Ptr, key: &[u8]) -> Result<ForKey<'p>> {
    Ok(match ptr {
        Ptr::Dirty(n) => ForKey::Node(n.clone()),
        Ptr::Clean(page) => ForKey::Node(load_clean(src, *page).await?),
        Ptr::Delta(d) => match d.get(key) {
            Some(v) => ForKey::Value(v),
            None if !d.covers(key) => ForKey::Absent,
            None => ForKey::Node(delta_base(src, d.base()).await?),
        },
    })
}

/// Child `i` of `int` as far as it is at hand without I/O.
enum Now<'a> {
    /// Borrowed from `int`: a dirty child, or a pinned one.
    Borrowed(&'a Arc<Node>),
    /// A buffer pool hit.
    Hit(Arc<Node>),
    /// Needs [`load_for_key`] (a read, or a delta).
    Load(&'a Ptr),
}

/// Child `i` of `int` without I/O: a dirty or pinned child is borrowed, a clean one comes
/// from the pool (and is pinned if `int` keeps pins and it is an interior node).
#[inline]
fn child_now<'a>(src: &dyn PageSource, int: &'a Interior, i: usize) -> Now<'a> {
    let ptr = &int.children[i].ptr;
    match ptr {
        Ptr::Dirty(n) => Now::Borrowed(n),
        Ptr::Clean(page) => {
            let page = *page;
            if let Some(n) = int.pinned(i, page) {
                return Now::Borrowed(n);
            }
            match src.cached(page) {
                Some(n) => match src.pin_budget().and_then(|b| int.pin(i, page, &n, b)) {
                    Some(pinned) => Now::Borrowed(pinned),
                    None => Now::Hit(n),
                },
                None => Now::Load(ptr),
            }
        }
        Ptr::Delta(_) => Now::Load(ptr),
    }
}

/// Child `i` of `int`, loaded if it is not at hand (a pinned child is not looked up in the
/// pool; a pool hit of an interior child is pinned).
pub(crate) async fn load_child(
    src: &dyn PageSource,
    int: &Interior,
    i: usize,
) -> Result<Arc<Node>> {
    match child_now(src, int, i) {
        Now::Borrowed(n) => Ok(n.clone()),
        Now::Hit(n) => Ok(n),
        Now::Load(ptr) => load(src, ptr).await,
    }
}

/// Where [`find_now`] found a key.
pub enum Located<'a> {
    /// The key is not there.
    Absent,
    /// The value, in a node borrowed from the root.
    Here(ValRef<'a>),
    /// The value is entry `.1` of this leaf (a buffer pool hit).
    InLeaf(Arc<Node>, usize),
    /// The walk needs a page that is not at hand: it may resume from this pointer (with
    /// [`find_with`], while the version walked stays alive), or, if `None`, must start again
    /// from the root.
    Miss(Option<Ptr>),
}

/// [`find_with`] without I/O and without a reference count above the leaf: walks from
/// `root` through dirty, pinned and cached nodes only. [`Located::Miss`] when a page is
/// not at hand (the caller then reads through [`find_with`], from where this walk stopped).
pub fn find_now<'a>(src: &dyn PageSource, root: &'a Ptr, key: &[u8]) -> Located<'a> {
    let mut node: &'a Node = match root {
        Ptr::Dirty(n) => n,
        other => return Located::Miss(Some(other.clone())),
    };
    // Down the nodes borrowed from the root.
    let mut held = loop {
        match node {
            Node::Leaf(l) => {
                return match l.find(key) {
                    Ok(i) => Located::Here(l.value(i)),
                    Err(_) => Located::Absent,
                };
            }
            Node::Interior(int) => match child_now(src, int, child_index(int, key)) {
                Now::Borrowed(n) => node = n,
                Now::Hit(n) => break n,
                Now::Load(Ptr::Delta(d)) => {
                    if let Some(v) = d.get(key) {
                        return Located::Here(ValRef::Inline(v));
                    }
                    if !d.covers(key) {
                        return Located::Absent;
                    }
                    match src.cached(d.base()) {
                        Some(n) if matches!(&*n, Node::Leaf(_)) => break n,
                        _ => return Located::Miss(Some(Ptr::Delta(d.clone()))),
                    }
                }
                Now::Load(p) => return Located::Miss(Some(p.clone())),
            },
        }
    };
    // Down from a pool hit (a clean node: every child below it is clean).
    loop {
        let mut node: &Node = &held;
        let next = loop {
            match node {
                Node::Leaf(l) => {
                    let found = l.find(key);
                    // Only `held` itself can be a leaf here (leaves are never pinned).
                    let is_held = std::ptr::eq(node, &*held);
                    return match found {
                        Ok(i) if is_held => Located::InLeaf(held, i),
                        Ok(_) => Located::Miss(None),
                        Err(_) => Located::Absent,
                    };
                }
                Node::Interior(int) => match child_now(src, int, child_index(int, key)) {
                    Now::Borrowed(n) => node = n,
                    Now::Hit(n) => break n,
                    Now::Load(p) => return Located::Miss(Some(p.clone())),
                },
            }
        };
        held = next;
    }
}

/// Looks `key` up.
pub async fn get(src: &dyn PageSource, root: &Child, key: &[u8]) -> Result<Option<Val>> {
    find_with(src, root, key, |v| match v {
        ValRef::Inline(b) => Val::Inline(Bytes::copy_from_slice(b)),
        ValRef::Overflow { len, first_page } => Val::Overflow { len, first_page },
    })
    .await
}

/// True if `key` is present (its value is neither copied nor read).
pub async fn contains(src: &dyn PageSource, root: &Child, key: &[u8]) -> Result<bool> {
    Ok(find_with(src, root, key, |_| ()).await?.is_some())
}

/// Looks `key` up and hands its value's bytes to `f` without copying them (an overflow
/// value is read first).
pub async fn get_with<R>(
    src: &dyn PageSource,
    root: &Child,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R + Send,
) -> Result<Option<R>> {
    let mut f = Some(f);
    let found = find_with(src, root, key, |v| match v {
        ValRef::Inline(b) => Ok(f.take().map(|f| f(b))),
        ValRef::Overflow { len, first_page } => Err((first_page, len)),
    })
    .await?;
    match found {
        None => Ok(None),
        Some(Ok(r)) => Ok(r),
        Some(Err((first_page, len))) => {
            let bytes = src.overflow(first_page, len).await?;
            Ok(f.take().map(|f| f(&bytes)))
        }
    }
}

/// Looks `key` up and hands its value, as it lies in its leaf, to `f` (an overflow value is
/// not read). `root` may also be a node below the root on `key`'s path (a lookup resuming
/// where [`find_now`] stopped); only its pointer is used.
///
/// From each node it loads, the walk goes down as far as it can without I/O, borrowing
/// dirty and pinned children from the node it holds ([`child_now`]): a lookup whose upper
/// levels are pinned takes no lock and no reference count above the leaf.
pub async fn find_with<R>(
    src: &dyn PageSource,
    root: &Child,
    key: &[u8],
    f: impl FnOnce(ValRef<'_>) -> R + Send,
) -> Result<Option<R>> {
    /// Where the walk without I/O stopped.
    enum Stop {
        Hop(Arc<Node>),
        Load(Ptr),
    }
    let mut next = root.ptr.clone();
    loop {
        let mut held = match load_for_key(src, &next, key).await? {
            ForKey::Node(n) => n,
            ForKey::Value(v) => return Ok(Some(f(ValRef::Inline(v)))),
            ForKey::Absent => return Ok(None),
        };
        next = loop {
            let mut node: &Node = &held;
            let stop = loop {
                match node {
                    Node::Leaf(l) => {
                        return Ok(match l.find(key) {
                            Ok(i) => Some(f(l.value(i))),
                            Err(_) => None,
                        });
                    }
                    Node::Interior(int) => match child_now(src, int, child_index(int, key)) {
                        Now::Borrowed(n) => node = n,
                        Now::Hit(n) => break Stop::Hop(n),
                        Now::Load(p) => break Stop::Load(p.clone()),
                    },
                }
            };
            match stop {
                Stop::Hop(n) => held = n,
                Stop::Load(p) => break p,
            }
        };
    }
}

/// The entry at position `index` (0-based, in key order).
pub async fn nth(
    src: &dyn PageSource,
    root: &Child,
    mut index: u64,
) -> Result<Option<(Bytes, Val)>> {
    if index >= root.count {
        return Ok(None);
    }
    let mut node = load(src, &root.ptr).await?;
    loop {
        let next = match &*node {
            Node::Leaf(l) => {
                let i = index as usize;
                return Ok((i < l.len()).then(|| (l.key_bytes(i), l.val(i))));
            }
            Node::Interior(int) => {
                let mut found = None;
                for c in &int.children {
                    if index < c.count {
                        found = Some(c.ptr.clone());
                        break;
                    }
                    index -= c.count;
                }
                match found {
                    Some(p) => p,
                    None => return Ok(None),
                }
            }
        };
        node = load(src, &next).await?;
    }
}

/// Number of keys strictly less than `key`.
pub async fn rank(src: &dyn PageSource, root: &Child, key: &[u8]) -> Result<u64> {
    let mut node = load(src, &root.ptr).await?;
    let mut before = 0u64;
    loop {
        let next = match &*node {
            Node::Leaf(l) => {
                return Ok(before + l.rank(key, false) as u64);
            }
            Node::Interior(int) => {
                let i = child_index(int, key);
                before += int.children[..i].iter().map(|c| c.count).sum::<u64>();
                int.children[i].ptr.clone()
            }
        };
        node = load(src, &next).await?;
    }
}

/// The index that splits items of the given sizes into two non-empty halves with the
/// smallest larger half.
fn best_split(sizes: &[usize], min_side: usize) -> usize {
    debug_assert!(sizes.len() >= 2);
    let min_side = if sizes.len() >= 2 * min_side {
        min_side
    } else {
        1
    };
    let total: usize = sizes.iter().sum();
    let mut left = 0usize;
    let mut best = (usize::MAX, min_side);
    for (k, s) in sizes.iter().enumerate().take(sizes.len() - 1) {
        left += s;
        let k = k + 1;
        let worst = left.max(total - left);
        if k >= min_side && sizes.len() - k >= min_side && worst < best.0 {
            best = (worst, k);
        }
    }
    best.1
}

/// Where an overfull leaf of entries of `sizes` splits (the right side starts there); `hint`
/// is the index just inserted. Appending (or prepending), the full side keeps about 90% of
/// the entries, so a few later inserts fit without splitting it again.
fn leaf_split_point(sizes: &[usize], hint: usize) -> usize {
    let n = sizes.len();
    if hint + 1 == n {
        (n - 1).min((n * 9).div_ceil(10)).max(1)
    } else if hint == 0 {
        (n / 10).max(1)
    } else {
        best_split(sizes, 1)
    }
}

/// Splits an overfull node in two; `hint` is the index that was just inserted (so
/// ascending or descending inserts leave full nodes behind). Returns the separator and
/// the new right node.
fn split(node: &mut Node, hint: usize) -> (Bytes, Node) {
    match node {
        Node::Leaf(l) => {
            let sizes: Vec<usize> = (0..l.len()).map(|i| l.entry_len(i)).collect();
            let k = leaf_split_point(&sizes, hint);
            let right = l.split_off(k);
            (right.key_bytes(0), Node::Leaf(right))
        }
        Node::Interior(int) => {
            // Each half keeps at least two children.
            let m = int.children.len();
            let k = if hint + 1 >= m && m >= 4 {
                m - 2
            } else if hint == 0 && m >= 4 {
                2
            } else {
                let sizes: Vec<usize> = (0..m)
                    .map(|i| {
                        16 + if i == 0 {
                            0
                        } else {
                            2 + int.seps.get(i - 1).len()
                        }
                    })
                    .collect();
                best_split(&sizes, 2)
            };
            let right_children = int.children.split_off(k);
            int.children.shrink_to_fit();
            let mut right_seps = int.seps.split_off(k - 1);
            let sep = right_seps.remove(0);
            (
                sep,
                Node::Interior(Interior {
                    children: right_children,
                    seps: right_seps,
                    prefix: None,
                    pins: Pins::default(),
                }),
            )
        }
    }
}

/// What an insert below a node did.
struct Inserted {
    old: Option<Val>,
    split: Option<(Bytes, Child)>,
}

fn insert_rec<'a>(
    ctx: &'a mut WriteCtx<'_>,
    child: &'a mut Child,
    key: Bytes,
    val: Val,
) -> BoxFuture<'a, Result<Inserted>> {
    Box::pin(async move {
        let limits = *ctx.src.limits();
        if ctx.deltas
            && let Val::Inline(v) = &val
            && v.len() <= limits.inline_max
            && let Some(done) = delta_insert(ctx, child, &key, v).await?
        {
            return Ok(done);
        }
        let node = make_dirty(ctx, child).await?;
        let (old, hint) = match node {
            Node::Leaf(l) => match l.find(&key) {
                Ok(i) => {
                    let old = l.replace(i, val, &limits);
                    ctx.free_val(&old);
                    (Some(old), i)
                }
                Err(i) => {
                    l.insert(i, &key, val, &limits);
                    (None, i)
                }
            },
            Node::Interior(int) => {
                let i = child_index(int, &key);
                let below = insert_rec(ctx, &mut int.children[i], key, val).await?;
                if below.old.is_none() {
                    int.children[i].count += 1;
                }
                if let Some((sep, right)) = below.split {
                    let before = int.memory();
                    int.children[i].count -= right.count;
                    int.children.reserve_exact(1);
                    int.children.insert(i + 1, right);
                    int.seps.insert(i, &sep);
                    // A dirty interior node counts its memory (see [`Dirty`]).
                    ctx.charged_bytes += int.memory().saturating_sub(before) as u64;
                }
                (below.old, i)
            }
        };
        let split = if node.encoded_len() > limits.capacity {
            let (sep, right) = split(node, hint);
            ctx.dirtied += 1;
            let count = right.count();
            Some((
                sep,
                Child {
                    ptr: Ptr::Dirty(Arc::new(right)),
                    count,
                },
            ))
        } else {
            None
        };
        Ok(Inserted { old, split })
    })
}

/// Inserts or replaces `key`; returns the old value.
pub async fn insert(
    ctx: &mut WriteCtx<'_>,
    root: &mut Child,
    key: Bytes,
    val: Val,
) -> Result<Option<Val>> {
    let done = insert_rec(ctx, root, key, val).await?;
    if done.old.is_none() {
        root.count += 1;
    }
    if let Some((sep, right)) = done.split {
        let total = root.count;
        let left = std::mem::replace(root, Child::empty());
        *root = Child {
            ptr: Ptr::Dirty(Arc::new(Node::Interior(Interior {
                children: vec![
                    Child {
                        ptr: left.ptr,
                        count: total - right.count,
                    },
                    right,
                ],
                seps: Seps::from_slices(&[&sep]),
                prefix: None,
                pins: Pins::default(),
            }))),
            count: total,
        };
        ctx.dirtied += 1;
    }
    Ok(done.old)
}

fn remove_rec<'a>(
    ctx: &'a mut WriteCtx<'_>,
    child: &'a mut Child,
    key: &'a [u8],
) -> BoxFuture<'a, Result<Option<Val>>> {
    Box::pin(async move {
        let limits = *ctx.src.limits();
        let node = make_dirty(ctx, child).await?;
        let old = match node {
            Node::Leaf(l) => match l.find(key) {
                Ok(i) => {
                    let old = l.remove(i);
                    ctx.free_val(&old);
                    Some(old)
                }
                Err(_) => None,
            },
            Node::Interior(int) => {
                let i = child_index(int, key);
                let old = remove_rec(ctx, &mut int.children[i], key).await?;
                if old.is_some() {
                    rebalance(ctx, int, i, &limits).await?;
                }
                old
            }
        };
        if old.is_some() {
            child.count -= 1;
        }
        Ok(old)
    })
}

/// Fixes an underfull child `i` of `int` by merging it with a neighbour, or by sharing
/// entries with it when both do not fit one node.
async fn rebalance(
    ctx: &mut WriteCtx<'_>,
    int: &mut Interior,
    i: usize,
    limits: &TreeLimits,
) -> Result<()> {
    if int.children.len() < 2 {
        return Ok(());
    }
    let size = load(ctx.src, &int.children[i].ptr).await?.encoded_len();
    if size >= limits.capacity / 2 {
        return Ok(());
    }
    // Under half full, the node merges with a neighbour (the right one, else the left) if
    // both fit in seven eighths of a page (so the merged node takes some inserts before it
    // splits again, and random removals, which leave neighbours under half full alike,
    // still merge them); under a quarter, it merges with its right neighbour (the left for
    // the last child), or shares entries with it, whatever the neighbour holds.
    let pairs = [
        (i + 1 < int.children.len()).then(|| (i, i + 1)),
        (i > 0).then(|| (i - 1, i)),
    ];
    let mut chosen = None;
    if size < limits.capacity / 4 {
        chosen = pairs.iter().flatten().next().copied();
    } else {
        for (l, r) in pairs.into_iter().flatten() {
            let other = if l == i { r } else { l };
            let other_size = load(ctx.src, &int.children[other].ptr).await?.encoded_len();
            if size + other_size <= limits.capacity / 8 * 7 {
                chosen = Some((l, r));
                break;
            }
        }
    }
    let Some((l, r)) = chosen else {
        return Ok(());
    };
    let mut right_child = int.children.remove(r);
    let sep = int.seps.remove(l);
    let right_node = make_dirty(ctx, &mut right_child).await?.clone();
    let left = make_dirty(ctx, &mut int.children[l]).await?;
    match (left, right_node) {
        (Node::Leaf(a), Node::Leaf(b)) => a.append(&b),
        (Node::Interior(a), Node::Interior(b)) => {
            a.seps.push(&sep);
            a.seps.append(&b.seps);
            a.children.extend(b.children);
            a.children.shrink_to_fit();
            a.seps.shrink_to_fit();
        }
        _ => {
            return Err(crate::Error::Corruption {
                file: "data.px".into(),
                offset: 0,
                what: "siblings of different kinds in a tree".into(),
            });
        }
    }
    let left = make_dirty(ctx, &mut int.children[l]).await?;
    if left.encoded_len() > limits.capacity {
        let n = match left {
            Node::Leaf(x) => x.len(),
            Node::Interior(x) => x.children.len(),
        };
        // Re-split at the best point (the hint in the middle selects it).
        let (sep, right) = split(left, n / 2);
        let rc = right.count();
        let lc = left.count();
        int.children[l].count = lc;
        int.children.insert(
            l + 1,
            Child {
                ptr: Ptr::Dirty(Arc::new(right)),
                count: rc,
            },
        );
        int.seps.insert(l, &sep);
        ctx.dirtied += 1;
    } else {
        int.children[l].count = left.count();
    }
    Ok(())
}

/// Removes `key`; returns its value.
pub async fn remove(ctx: &mut WriteCtx<'_>, root: &mut Child, key: &[u8]) -> Result<Option<Val>> {
    // Look first: a miss must not copy the path.
    if !contains(ctx.src, root, key).await? {
        return Ok(None);
    }
    let old = remove_rec(ctx, root, key).await?;
    // Collapse a root with one child.
    loop {
        let only = match &root.ptr {
            Ptr::Dirty(n) => match &**n {
                Node::Interior(int) if int.children.len() == 1 => Some(int.children[0].clone()),
                _ => None,
            },
            Ptr::Clean(_) | Ptr::Delta(_) => None,
        };
        match only {
            Some(c) => *root = c,
            None => break,
        }
    }
    Ok(old)
}

/// Makes dirty the nodes stored at page `above` or later (and the paths to them), until
/// `ctx.dirtied` reaches `budget`: the next checkpoint writes them to free pages lower in
/// the file (it allocates the lowest first), so the end of the file becomes free and can be
/// cut off. With `values`, also the leaves holding overflow values stored at `above` or
/// later, whose values are read back into memory to be written anew (each page of them
/// counts against the budget); that reads every leaf. `height` is the number of levels (1
/// for a lone leaf).
pub fn relocate<'a>(
    ctx: &'a mut WriteCtx<'_>,
    child: &'a mut Child,
    height: u32,
    above: u64,
    values: bool,
    budget: u64,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let src = ctx.src;
        if ctx.dirtied >= budget || !holds_page_from(src, &child.ptr, height, above, values).await?
        {
            return Ok(());
        }
        let limits = *src.limits();
        match make_dirty(ctx, child).await? {
            Node::Interior(int) => {
                for c in &mut int.children {
                    relocate(ctx, c, height - 1, above, values, budget).await?;
                }
            }
            Node::Leaf(l) if values => {
                for j in 0..l.len() {
                    if let ValRef::Overflow { len, first_page } = l.value(j)
                        && first_page >= above
                    {
                        let bytes = src.overflow(first_page, len).await?;
                        let old = l.replace(j, Val::Inline(bytes), &limits);
                        ctx.free_val(&old);
                        ctx.dirtied += limits.overflow_pages(len);
                    }
                }
            }
            Node::Leaf(_) => {}
        }
        Ok(())
    })
}

/// Leaves a repack fills to this fraction of a page (room for a few inserts each).
const REPACK_FILL: usize = 90;

/// Rewrites the leaves under a parent of leaves as fewer, fuller ones (filled to 90% of a
/// page) where that takes at most 4/5 as many pages; the leaves of one parent at a time,
/// until `ctx.dirtied` reaches `budget`. After random removals every leaf is left part full
/// (a merge needs two neighbours that fit in one page); this gives the space back.
/// `height` is the number of levels below and including `child` (1 for a lone leaf).
/// Whether a parent is worth it is judged from its children's entry counts and the entry
/// size of its first leaf, so only that leaf is read for a parent that is not repacked.
/// Adds the number of leaves it saved to `saved`.
pub fn repack<'a>(
    ctx: &'a mut WriteCtx<'_>,
    child: &'a mut Child,
    height: u32,
    budget: u64,
    saved: &'a mut u64,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if height < 2
            || ctx.dirtied >= budget
            || !worth_repacking(ctx.src, &child.ptr, height).await?
        {
            return Ok(());
        }
        if height > 2 {
            let Node::Interior(int) = make_dirty(ctx, child).await? else {
                return Err(broken(None, "a leaf above the leaf level".into()));
            };
            for c in &mut int.children {
                repack(ctx, c, height - 1, budget, saved).await?;
            }
            return Ok(());
        }
        let src = ctx.src;
        let limits = *src.limits();
        let target = limits.capacity * REPACK_FILL / 100;
        // The parent's leaves, in order.
        let mut leaves = Vec::new();
        {
            let node = load(src, &child.ptr).await?;
            let Node::Interior(int) = &*node else {
                return Err(broken(None, "a leaf above the leaf level".into()));
            };
            for c in &int.children {
                let leaf = load(src, &c.ptr).await?;
                if !matches!(&*leaf, Node::Leaf(_)) {
                    return Err(broken(None, "an interior node at the leaf level".into()));
                }
                leaves.push(leaf);
            }
        }
        let mut new: Vec<Leaf> = Vec::new();
        let mut cur = Leaf::with_capacity(target);
        for n in &leaves {
            let Node::Leaf(l) = &**n else { continue };
            for j in 0..l.len() {
                if !cur.is_empty() && cur.encoded_len() + l.entry_len(j) > target {
                    new.push(std::mem::replace(&mut cur, Leaf::with_capacity(target)));
                }
                cur.push_entry(l, j);
            }
        }
        if !cur.is_empty() {
            new.push(cur);
        }
        // A parent keeps two children at least (one that fits in a leaf is left to merges).
        if new.len() < 2 || new.len() * 5 > leaves.len() * 4 {
            return Ok(());
        }
        let Node::Interior(int) = make_dirty(ctx, child).await? else {
            return Err(broken(None, "a leaf above the leaf level".into()));
        };
        for c in &int.children {
            match &c.ptr {
                Ptr::Clean(p) => ctx.freed.push((*p, 1)),
                Ptr::Delta(d) => ctx.released.push(d.base()),
                Ptr::Dirty(_) => {}
            }
        }
        ctx.dirtied += new.len() as u64;
        *saved += (leaves.len() - new.len()) as u64;
        int.seps = new.iter().skip(1).map(|l| l.key(0)).collect();
        int.children = new
            .into_iter()
            .map(|l| Child {
                count: l.len() as u64,
                ptr: Ptr::Dirty(Arc::new(Node::Leaf(l))),
            })
            .collect();
        Ok(())
    })
}

/// True if some parent of leaves in the subtree at `ptr` (of `height` levels) looks worth
/// repacking: its entries, at the size of its first leaf's entries, fit in at most 4/5 of
/// its leaves filled to 90%.
fn worth_repacking<'a>(
    src: &'a dyn PageSource,
    ptr: &'a Ptr,
    height: u32,
) -> BoxFuture<'a, Result<bool>> {
    Box::pin(async move {
        if height < 2 {
            return Ok(false);
        }
        let node = load(src, ptr).await?;
        let Node::Interior(int) = &*node else {
            return Ok(false);
        };
        if height > 2 {
            for c in &int.children {
                if worth_repacking(src, &c.ptr, height - 1).await? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        if int.children.len() < 2 {
            return Ok(false);
        }
        let first = load(src, &int.children[0].ptr).await?;
        let Node::Leaf(l) = &*first else {
            return Ok(false);
        };
        if l.is_empty() {
            return Ok(true);
        }
        let per_entry = (l.encoded_len() - 4) as f64 / l.len() as f64;
        let entries: u64 = int.children.iter().map(|c| c.count).sum();
        let target = (src.limits().capacity * REPACK_FILL / 100 - 4) as f64;
        let pages = (entries as f64 * per_entry / target).ceil() as usize;
        Ok(pages * 5 <= int.children.len() * 4)
    })
}

/// True if the subtree at `ptr` (of `height` levels) has a node stored at page `above` or
/// later, or (with `values`) an overflow value that starts there. Without `values` it reads
/// interior nodes only: a leaf's page is in its parent.
fn holds_page_from<'a>(
    src: &'a dyn PageSource,
    ptr: &'a Ptr,
    height: u32,
    above: u64,
    values: bool,
) -> BoxFuture<'a, Result<bool>> {
    Box::pin(async move {
        // A delta's base page counts: the relocation makes the leaf whole, freeing it.
        let page = match ptr {
            Ptr::Clean(p) => Some(*p),
            Ptr::Delta(d) => Some(d.base()),
            Ptr::Dirty(_) => None,
        };
        if page.is_some_and(|p| p >= above) {
            return Ok(true);
        }
        if height <= 1 && !values {
            return Ok(false);
        }
        let node = load(src, ptr).await?;
        match &*node {
            Node::Leaf(l) => Ok((0..l.len()).any(|j| {
                matches!(l.value(j), ValRef::Overflow { first_page, .. } if first_page >= above)
            })),
            Node::Interior(int) => {
                for c in &int.children {
                    if holds_page_from(src, &c.ptr, height - 1, above, values).await? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    })
}

/// Levels of the tree below and including `root` (1 for a lone leaf).
pub async fn height(src: &dyn PageSource, root: &Child) -> Result<u32> {
    let mut h = 1;
    let mut node = load(src, &root.ptr).await?;
    loop {
        let next = match &*node {
            Node::Leaf(_) => return Ok(h),
            Node::Interior(int) => int.children[0].ptr.clone(),
        };
        h += 1;
        node = load(src, &next).await?;
    }
}

/// Builds a tree from entries sorted by strictly increasing key, filling nodes to `fill`
/// (a fraction of a page). The result is all dirty.
pub fn bulk_build(
    entries: impl IntoIterator<Item = (Bytes, Val)>,
    limits: &TreeLimits,
    fill: f64,
) -> Child {
    let target = ((limits.capacity as f64) * fill) as usize;
    let mut level: Vec<(Bytes, Child)> = Vec::new();
    let mut leaf = Leaf::default();
    let mut size = 4;
    let mut first: Option<Bytes> = None;
    for (k, v) in entries {
        let len = limits.leaf_entry_len(&k, &v);
        if !leaf.is_empty() && size + len > target {
            let count = leaf.len() as u64;
            level.push((
                first.take().unwrap_or_default(),
                Child {
                    ptr: Ptr::Dirty(Arc::new(Node::Leaf(std::mem::take(&mut leaf)))),
                    count,
                },
            ));
            size = 4;
        }
        if leaf.is_empty() {
            first = Some(k.clone());
        }
        size += len;
        leaf.push(&k, v, limits);
    }
    if !leaf.is_empty() || level.is_empty() {
        let count = leaf.len() as u64;
        level.push((
            first.unwrap_or_default(),
            Child {
                ptr: Ptr::Dirty(Arc::new(Node::Leaf(leaf))),
                count,
            },
        ));
    }
    while level.len() > 1 {
        let mut up: Vec<(Bytes, Child)> = Vec::new();
        let mut int = Interior::default();
        let mut size = 4;
        let mut first: Option<Bytes> = None;
        for (low, c) in level {
            let len = 16
                + if int.children.is_empty() {
                    0
                } else {
                    2 + low.len()
                };
            if int.children.len() >= 2 && size + len > target {
                let count = int.children.iter().map(|c| c.count).sum();
                up.push((
                    first.take().unwrap_or_default(),
                    Child {
                        ptr: Ptr::Dirty(Arc::new(Node::Interior(std::mem::take(&mut int)))),
                        count,
                    },
                ));
                size = 4;
            }
            if int.children.is_empty() {
                first = Some(low);
                size += 16;
            } else {
                size += 16 + 2 + low.len();
                int.seps.push(&low);
            }
            int.children.push(c);
        }
        let count = int.children.iter().map(|c| c.count).sum();
        up.push((
            first.unwrap_or_default(),
            Child {
                ptr: Ptr::Dirty(Arc::new(Node::Interior(int))),
                count,
            },
        ));
        level = up;
    }
    level.pop().map(|(_, c)| c).unwrap_or_else(Child::empty)
}

/// Identity of a dirty node (its address, valid while the snapshot that holds it lives).
pub fn node_id(node: &Arc<Node>) -> usize {
    Arc::as_ptr(node) as usize
}

/// Identity of a delta (like [`node_id`]; the two never collide, being live allocations).
pub fn delta_id(delta: &Arc<Delta>) -> usize {
    Arc::as_ptr(delta) as usize
}

/// Identity of a dirty node or delta; `None` for a clean page.
pub fn ptr_id(ptr: &Ptr) -> Option<usize> {
    match ptr {
        Ptr::Clean(_) => None,
        Ptr::Dirty(n) => Some(node_id(n)),
        Ptr::Delta(d) => Some(delta_id(d)),
    }
}

/// A page a checkpoint writes: page id, page kind, payload.
#[derive(Debug)]
pub struct PageWrite {
    /// Where it goes.
    pub page: u64,
    /// The page kind (leaf, interior, overflow).
    pub kind: u8,
    /// The payload after the page header.
    pub payload: Bytes,
}

/// The dirty nodes a checkpoint (or a bulk write's spill) writes: pages assigned by
/// [`assign`], encoded a few MiB at a time by [`encode_some`], so that the encoded copies of
/// the pages never all exist at once.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Dirty node identity -> where it goes.
    pub map: WrittenMap,
    /// The dirty nodes and deltas in the order their pages were assigned (children before
    /// parents).
    order: Vec<Ptr>,
    /// How many of `order` are encoded.
    encoded: usize,
}

/// One node a checkpoint wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The page it went to.
    pub page: u64,
    /// The clean form of an interior node (children as pages), for [`unreached`] (every
    /// clean node also goes to the buffer pool as [`encode_some`] hands it out).
    pub node: Option<Arc<Node>>,
    /// Overflow runs this flush created for its values, in the leaf's key order.
    pub new_runs: Vec<(u64, u64)>,
}

/// Dirty node identity -> what [`assign`] did with it.
pub type WrittenMap = HashMap<usize, Written>;

/// The page runs of written nodes that no node in `hit` (or below one) reaches: pages a
/// checkpoint wrote that the working tree stopped using before it was swizzled.
pub fn unreached(map: &WrittenMap, hit: &std::collections::HashSet<usize>) -> Vec<(u64, u64)> {
    let by_page: HashMap<u64, &Written> = map.values().map(|w| (w.page, w)).collect();
    let mut reached: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut stack: Vec<u64> = hit
        .iter()
        .filter_map(|id| map.get(id).map(|w| w.page))
        .collect();
    while let Some(p) = stack.pop() {
        if !reached.insert(p) {
            continue;
        }
        if let Some(w) = by_page.get(&p)
            && let Some(Node::Interior(int)) = w.node.as_deref()
        {
            for c in &int.children {
                if let Ptr::Clean(q) = c.ptr
                    && by_page.contains_key(&q)
                {
                    stack.push(q);
                }
            }
        }
    }
    let mut out = Vec::new();
    for w in map.values() {
        if !reached.contains(&w.page) {
            out.push((w.page, 1));
            out.extend(w.new_runs.iter().copied());
        }
    }
    out
}

/// Assigns pages to every dirty node and delta below `root` (children before parents;
/// overflow values of leaves to runs of pages) without encoding anything. `alloc(n)`
/// returns the first page of `n` consecutive free pages. Returns the root's page.
pub fn assign(
    root: &Child,
    limits: &TreeLimits,
    alloc: &mut dyn FnMut(u64) -> u64,
    out: &mut Flushed,
) -> u64 {
    match &root.ptr {
        Ptr::Clean(p) => *p,
        Ptr::Delta(d) => {
            if let Some(w) = out.map.get(&delta_id(d)) {
                return w.page;
            }
            let page = alloc(1);
            out.map.insert(
                delta_id(d),
                Written {
                    page,
                    node: None,
                    new_runs: Vec::new(),
                },
            );
            out.order.push(root.ptr.clone());
            page
        }
        Ptr::Dirty(arc) => {
            if let Some(w) = out.map.get(&node_id(arc)) {
                return w.page;
            }
            let mut new_runs = Vec::new();
            match &**arc {
                Node::Leaf(l) => {
                    for len in l.pending_lens() {
                        let n = limits.overflow_pages(len as u64);
                        new_runs.push((alloc(n), n));
                    }
                }
                Node::Interior(int) => {
                    for c in &int.children {
                        assign(c, limits, alloc, out);
                    }
                }
            }
            let page = alloc(1);
            out.map.insert(
                node_id(arc),
                Written {
                    page,
                    node: None,
                    new_runs,
                },
            );
            out.order.push(root.ptr.clone());
            page
        }
    }
}

/// Encodes the next assigned nodes, about `max_bytes` of pages (at least one node); a
/// delta is merged with its base page (read through `src`) first. Returns the pages to
/// write (none once every node is encoded) and the clean nodes, by page, for the buffer
/// pool; clean interior nodes are also kept in the map.
pub async fn encode_some(
    out: &mut Flushed,
    src: &dyn PageSource,
    max_bytes: usize,
) -> Result<(Vec<PageWrite>, Vec<(u64, Arc<Node>)>)> {
    let limits = *src.limits();
    let limits = &limits;
    let mut writes = Vec::new();
    let mut clean_nodes = Vec::new();
    let mut bytes = 0;
    while out.encoded < out.order.len() && (writes.is_empty() || bytes < max_bytes) {
        let ptr = out.order[out.encoded].clone();
        out.encoded += 1;
        let Some(id) = ptr_id(&ptr) else { continue };
        let (page, runs) = match out.map.get(&id) {
            Some(w) => (w.page, w.new_runs.clone()),
            None => continue,
        };
        let arc = load(src, &ptr).await?;
        match &*arc {
            Node::Leaf(l) => {
                // Values too long for the leaf go to the runs assigned to them, in order.
                let mut runs = runs.into_iter();
                let mut overflow = |b: &Bytes| {
                    let (first, n) = runs.next().expect("a run assigned per pending value");
                    debug_assert_eq!(n, limits.overflow_pages(b.len() as u64));
                    for (j, chunk) in b.chunks(limits.overflow_chunk).enumerate() {
                        let j = j as u64;
                        let next = if j + 1 < n { first + j + 1 } else { 0 };
                        let mut payload = Vec::with_capacity(8 + chunk.len());
                        persistx_io::format::node::encode_overflow(next, chunk, &mut payload);
                        bytes += payload.len();
                        writes.push(PageWrite {
                            page: first + j,
                            kind: persistx_io::format::node::KIND_OVERFLOW,
                            payload: Bytes::from(payload),
                        });
                    }
                    first
                };
                // The clean leaf the buffer pool keeps shares the payload.
                let (payload, clean) = l.encode(&mut overflow);
                let mut clean = Node::Leaf(clean);
                clean.index();
                bytes += payload.len();
                writes.push(PageWrite {
                    page,
                    kind: persistx_io::format::node::KIND_LEAF,
                    payload,
                });
                clean_nodes.push((page, Arc::new(clean)));
            }
            Node::Interior(int) => {
                let children = int
                    .children
                    .iter()
                    .map(|c| Child {
                        ptr: Ptr::Clean(match &c.ptr {
                            Ptr::Clean(p) => *p,
                            Ptr::Dirty(n) => out.map[&node_id(n)].page,
                            Ptr::Delta(d) => out.map[&delta_id(d)].page,
                        }),
                        count: c.count,
                    })
                    .collect();
                let mut clean = Node::Interior(Interior {
                    children,
                    seps: int.seps.clone(),
                    prefix: None,
                    pins: Pins::default(),
                });
                let mut payload = Vec::with_capacity(limits.capacity);
                let kind = node::encode_node(&clean, &mut payload);
                let len = payload.len();
                let payload = Bytes::from(payload);
                clean.index();
                bytes += len;
                writes.push(PageWrite {
                    page,
                    kind,
                    payload,
                });
                let clean = Arc::new(clean);
                if let Some(w) = out.map.get_mut(&id) {
                    w.node = Some(clean.clone());
                }
                clean_nodes.push((page, clean));
            }
        }
    }
    Ok((writes, clean_nodes))
}

/// Replaces dirty nodes of the working tree that a checkpoint wrote by their pages.
/// Records in `hit` the identities it replaced, and in `released` the base pages of the
/// deltas it replaced (see [`WriteCtx::released`]); nodes created after the checkpoint's
/// snapshot are kept dirty (copied if a snapshot shares them) and searched below.
pub fn swizzle(
    child: &mut Child,
    map: &WrittenMap,
    hit: &mut std::collections::HashSet<usize>,
    released: &mut Vec<u64>,
) {
    if let Ptr::Delta(d) = &child.ptr {
        if let Some(w) = map.get(&delta_id(d)) {
            hit.insert(delta_id(d));
            released.push(d.base());
            child.ptr = Ptr::Clean(w.page);
        }
        return;
    }
    let Ptr::Dirty(arc) = &mut child.ptr else {
        return;
    };
    if let Some(w) = map.get(&node_id(arc)) {
        hit.insert(node_id(arc));
        // The checkpoint wrote the whole subtree: the deltas in it too.
        delta_bases(child, released);
        child.ptr = Ptr::Clean(w.page);
        return;
    }
    let needs = match &**arc {
        Node::Interior(int) => int.children.iter().any(|c| match &c.ptr {
            Ptr::Dirty(n) => map.contains_key(&node_id(n)) || matches!(&**n, Node::Interior(_)),
            Ptr::Delta(d) => map.contains_key(&delta_id(d)),
            Ptr::Clean(_) => false,
        }),
        Node::Leaf(_) => false,
    };
    if needs && let Node::Interior(int) = Arc::make_mut(arc) {
        for c in &mut int.children {
            swizzle(c, map, hit, released);
        }
    }
}

/// Adds the base pages of the deltas below (and including) `root` to `out` (a page twice
/// if two deltas share it).
pub fn delta_bases(root: &Child, out: &mut Vec<u64>) {
    match &root.ptr {
        Ptr::Clean(_) => {}
        Ptr::Delta(d) => out.push(d.base()),
        Ptr::Dirty(n) => {
            if let Node::Interior(int) = &**n {
                for c in &int.children {
                    delta_bases(c, out);
                }
            }
        }
    }
}

/// Dirty memory below (and including) `root`, in pages of `page_size` (see [`Dirty`]).
pub fn dirty_nodes(root: &Child, page_size: usize) -> u64 {
    dirty_parts(root, page_size).pages(page_size)
}

/// What the dirty part of a tree holds, as the dirty budget counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Dirty leaves: a page each (their memory, about a page).
    pub leaves: u64,
    /// Dirty interior nodes.
    pub interiors: u64,
    /// What they count: an interior node holds a page's worth of keys plus, for each
    /// child, its pointer and count (1.1-1.4 pages for 8-byte keys), so it counts its
    /// memory, but at least a page.
    pub interior_bytes: u64,
    /// What the deltas count (see `delta_charge`).
    pub delta_bytes: u64,
}

impl Dirty {
    /// The whole, in pages of `page_size` (rounded up).
    pub fn pages(&self, page_size: usize) -> u64 {
        self.leaves + (self.interior_bytes + self.delta_bytes).div_ceil(page_size as u64)
    }
}

/// What the dirty part below (and including) `root` holds.
pub fn dirty_parts(root: &Child, page_size: usize) -> Dirty {
    let mut d = Dirty::default();
    add_dirty_parts(root, page_size, &mut d);
    d
}

fn add_dirty_parts(root: &Child, page_size: usize, d: &mut Dirty) {
    match &root.ptr {
        Ptr::Clean(_) => {}
        Ptr::Delta(delta) => d.delta_bytes += delta_charge(delta, page_size),
        Ptr::Dirty(n) => match &**n {
            Node::Interior(int) => {
                d.interiors += 1;
                d.interior_bytes += int.memory().max(page_size) as u64;
                for c in &int.children {
                    add_dirty_parts(c, page_size, d);
                }
            }
            Node::Leaf(_) => d.leaves += 1,
        },
    }
}

/// What [`verify`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Entries.
    pub entries: u64,
    /// Leaf nodes.
    pub leaves: u64,
    /// Interior nodes.
    pub interiors: u64,
    /// Overflow pages referenced.
    pub overflow_pages: u64,
    /// Levels (1 for a lone leaf).
    pub depth: u32,
    /// Payload bytes the nodes use (for the fill ratio).
    pub used_bytes: u64,
    /// Clean pages reached (nodes and overflow pages), for the free-space check.
    pub pages: Vec<(u64, u64)>,
    /// Base pages of the deltas reached (each once).
    pub delta_bases: Vec<u64>,
}

/// A broken tree invariant, found by [`verify`].
fn broken(page: Option<u64>, what: String) -> crate::Error {
    crate::Error::Corruption {
        file: "data.px".into(),
        offset: page.unwrap_or(0),
        what: match page {
            Some(p) => format!("tree page {p}: {what}"),
            None => format!("tree node in memory: {what}"),
        },
    }
}

/// Checks every invariant of the tree below `root`: keys strictly increasing and inside
/// their parent's separators, subtree counts exact, every node within a page, no empty
/// non-root node, all leaves at one depth. Reads every clean node (so every checksum).
pub async fn verify(src: &dyn PageSource, root: &Child) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    let limits = *src.limits();
    // (pointer, lower bound, upper bound, expected count, depth, is_root)
    type Visit = (Ptr, Option<Bytes>, Option<Bytes>, u64, u32, bool);
    let mut stack: Vec<Visit> = vec![(root.ptr.clone(), None, None, root.count, 1, true)];
    let mut leaf_depth: Option<u32> = None;
    while let Some((ptr, lo, hi, count, depth, is_root)) = stack.pop() {
        let page = match ptr {
            Ptr::Clean(p) => Some(p),
            Ptr::Dirty(_) | Ptr::Delta(_) => None,
        };
        if let Some(p) = page {
            stats.pages.push((p, 1));
        }
        let node = load(src, &ptr).await?;
        if let Ptr::Delta(d) = &ptr {
            // Its base page is in use until the delta is written or made whole.
            stats.delta_bases.push(d.base());
            let Node::Leaf(merged) = &*node else {
                unreachable!("a delta merges into a leaf")
            };
            if !d.agrees_with(merged) {
                return Err(broken(
                    Some(d.base()),
                    "a leaf's changes in memory disagree with the leaf they make".into(),
                ));
            }
        }
        let len = node.encoded_len();
        if len > limits.capacity {
            return Err(broken(
                page,
                format!("node of {len} bytes over the page capacity"),
            ));
        }
        stats.used_bytes += len as u64;
        if node.count() != count {
            return Err(broken(
                page,
                format!(
                    "subtree count {count} in the parent, {} in the node",
                    node.count()
                ),
            ));
        }
        let in_bounds = |k: &[u8]| {
            lo.as_ref().is_none_or(|l| k >= l.as_ref())
                && hi.as_ref().is_none_or(|h| k < h.as_ref())
        };
        match &*node {
            Node::Leaf(l) => {
                if l.is_empty() && !is_root {
                    return Err(broken(page, "empty non-root leaf".into()));
                }
                for j in 0..l.len() {
                    let k = l.key(j);
                    if j > 0 && l.key(j - 1) >= k {
                        return Err(broken(page, "leaf keys out of order".into()));
                    }
                    if !in_bounds(k) {
                        return Err(broken(
                            page,
                            "leaf key outside its parent's separators".into(),
                        ));
                    }
                    if k.len() > limits.max_key {
                        return Err(broken(
                            page,
                            format!("key of {} bytes over the limit", k.len()),
                        ));
                    }
                }
                for j in 0..l.len() {
                    if let ValRef::Overflow { len, first_page } = l.value(j) {
                        let n = limits.overflow_pages(len);
                        stats.overflow_pages += n;
                        stats.pages.push((first_page, n));
                        // Check the chain's pages decode (checksums, lengths): also under
                        // leaves in memory, whose overflow values are still on disk.
                        let bytes = src.overflow(first_page, len).await?;
                        if bytes.len() as u64 != len {
                            return Err(broken(page, "overflow value of the wrong length".into()));
                        }
                    }
                }
                stats.entries += l.len() as u64;
                stats.leaves += 1;
                match leaf_depth {
                    None => leaf_depth = Some(depth),
                    Some(d) if d != depth => {
                        return Err(broken(
                            page,
                            format!("leaf at depth {depth}, others at {d}"),
                        ));
                    }
                    Some(_) => {}
                }
            }
            Node::Interior(int) => {
                if int.children.len() < 2 && !is_root {
                    return Err(broken(page, "interior node with one child".into()));
                }
                if int.children.is_empty() || int.seps.len() + 1 != int.children.len() {
                    return Err(broken(
                        page,
                        "separator count does not match children".into(),
                    ));
                }
                for (j, s) in int.seps.iter().enumerate() {
                    if j > 0 && int.seps.get(j - 1) >= s {
                        return Err(broken(page, "separators out of order".into()));
                    }
                    if !in_bounds(s) {
                        return Err(broken(page, "separator outside its parent's range".into()));
                    }
                }
                stats.interiors += 1;
                for (j, c) in int.children.iter().enumerate() {
                    let clo = if j == 0 {
                        lo.clone()
                    } else {
                        Some(Bytes::copy_from_slice(int.seps.get(j - 1)))
                    };
                    let chi = if j + 1 == int.children.len() {
                        hi.clone()
                    } else {
                        Some(Bytes::copy_from_slice(int.seps.get(j)))
                    };
                    stack.push((c.ptr.clone(), clo, chi, c.count, depth + 1, false));
                }
            }
        }
    }
    stats.depth = leaf_depth.unwrap_or(1);
    stats.delta_bases.sort_unstable();
    stats.delta_bases.dedup();
    Ok(stats)
}
