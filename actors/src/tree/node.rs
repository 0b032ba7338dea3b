//! The in-memory form of B+tree nodes, and their conversion to and from pages.

use std::sync::Arc;

use bytes::Bytes;
use persistx_io::format::FormatError;
use persistx_io::format::node as fmt;
use persistx_io::format::page::PAGE_HEADER_LEN;

use super::pin::{PinBudget, Pins};

/// A value in a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// The bytes themselves. A value longer than [`TreeLimits::inline_max`] is written to
    /// overflow pages at the next checkpoint; until then it lives in memory.
    Inline(Bytes),
    /// A value on disk in a run of consecutive overflow pages.
    Overflow {
        /// Total length of the value.
        len: u64,
        /// The first page of the run.
        first_page: u64,
    },
}

impl Val {
    /// Length of the value in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Val::Inline(b) => b.len() as u64,
            Val::Overflow { len, .. } => *len,
        }
    }

    /// True for an empty value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reference from a parent to a child node.
#[derive(Debug, Clone)]
pub enum Ptr {
    /// The node is on disk at this page (the buffer pool may hold a decoded copy).
    Clean(u64),
    /// The node changed since the last checkpoint and lives only in memory.
    Dirty(Arc<Node>),
    /// A leaf that changed since the last checkpoint by a few puts: the page it was read
    /// from plus the new entries (see [`Delta`]). Reading it merges the two.
    Delta(Arc<Delta>),
}

/// A child of an interior node (also used for the root): where it is, and how many entries
/// its subtree holds.
#[derive(Debug, Clone)]
pub struct Child {
    /// Where the node is.
    pub ptr: Ptr,
    /// Entries in the subtree.
    pub count: u64,
}

impl Child {
    /// The root of an empty tree: an empty dirty leaf.
    pub fn empty() -> Child {
        Child {
            ptr: Ptr::Dirty(Arc::new(Node::Leaf(Leaf::default()))),
            count: 0,
        }
    }
}

/// A leaf changed by a few puts since the last checkpoint, kept as the page it was read from
/// (`base`) and the new entries, instead of as a copy of the whole leaf. A dirty leaf then
/// takes a few hundred bytes instead of a page, so the dirty budget holds many more changes
/// between checkpoints. Only puts of inline values are kept this way; a put that overfills
/// the leaf splits it into two deltas over the same base page, each owning the base's
/// entries in its key range (`lo <= key < hi`). Any other change, or more than a few puts,
/// makes the leaf whole.
///
/// The base page stays allocated while a delta of the working tree uses it (see
/// `tree::WriteCtx::released`).
#[derive(Debug, Clone)]
pub struct Delta {
    base: u64,
    /// The base entries this leaf owns: `lo <= key < hi` (`None`: unbounded).
    lo: Option<Bytes>,
    hi: Option<Bytes>,
    /// Entries of the merged leaf.
    count: u32,
    /// Payload bytes of the merged leaf.
    merged_len: u32,
    /// The puts, each `key length (u16 LE) | value length (u32 LE) | key | value`; a
    /// replaced put's bytes stay until the delta is merged.
    data: Vec<u8>,
    /// Where each live put starts in `data`, in key order.
    index: Vec<u32>,
}

/// Where an entry of a delta's merged leaf comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// Entry `j` of the base leaf.
    Base(usize),
    /// Put `i`.
    Put(usize),
}

impl Delta {
    /// A delta over the leaf `base_leaf` stored at page `base`, with no puts yet.
    pub fn new(base: u64, base_leaf: &Leaf) -> Delta {
        Delta {
            base,
            lo: None,
            hi: None,
            count: base_leaf.len() as u32,
            merged_len: base_leaf.encoded_len() as u32,
            data: Vec::new(),
            index: Vec::new(),
        }
    }

    /// The page the leaf was read from.
    #[inline]
    pub fn base(&self) -> u64 {
        self.base
    }

    /// True if `key` is in the key range whose base entries this delta owns.
    #[inline]
    pub fn covers(&self, key: &[u8]) -> bool {
        self.lo.as_ref().is_none_or(|l| key >= &l[..])
            && self.hi.as_ref().is_none_or(|h| key < &h[..])
    }

    /// The base entries this delta owns: indexes `start..end` of `base_leaf`.
    fn base_range(&self, base_leaf: &Leaf) -> (usize, usize) {
        let start = self.lo.as_ref().map_or(0, |l| base_leaf.rank(l, false));
        let end = self
            .hi
            .as_ref()
            .map_or(base_leaf.len(), |h| base_leaf.rank(h, false));
        (start, end.max(start))
    }

    /// Entries of the merged leaf.
    #[inline]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True if the merged leaf has no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Payload bytes of the merged leaf.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        self.merged_len as usize
    }

    /// Number of puts held.
    #[inline]
    pub fn puts(&self) -> usize {
        self.index.len()
    }

    /// Bytes of puts held (replaced ones included).
    #[inline]
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Bytes of memory the delta takes (for the dirty budget).
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Delta>()
            + 32
            + self.data.capacity()
            + 4 * self.index.capacity()
            + self.lo.as_ref().map_or(0, |b| b.len() + 32)
            + self.hi.as_ref().map_or(0, |b| b.len() + 32)
    }

    /// Put `i`'s key and value.
    #[inline]
    pub fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let at = self.index[i] as usize;
        let klen = rd16(&self.data, at);
        let vlen = rd32(&self.data, at + 2);
        let k = at + 6;
        (
            &self.data[k..k + klen],
            &self.data[k + klen..k + klen + vlen],
        )
    }

    /// `Ok(i)` if put `i` has `key`, else `Err(i)`: where it would go.
    pub fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.index.binary_search_by(|&at| {
            let at = at as usize;
            let klen = rd16(&self.data, at);
            self.data[at + 6..at + 6 + klen].cmp(key)
        })
    }

    /// The value a put gave `key`, if one did.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find(key).ok().map(|i| self.entry(i).1)
    }

    /// Records a put of `key` at `at` (the answer of [`Delta::find`]); the merged leaf then
    /// has `count` entries and takes `merged_len` bytes (the caller computed both against
    /// the base leaf).
    pub fn put(
        &mut self,
        at: Result<usize, usize>,
        key: &[u8],
        val: &[u8],
        count: usize,
        merged_len: usize,
    ) {
        let start = self.push_data(key, val);
        match at {
            Ok(i) => self.index[i] = start,
            Err(i) => self.index.insert(i, start),
        }
        self.count = count as u32;
        self.merged_len = merged_len as u32;
    }

    fn push_data(&mut self, key: &[u8], val: &[u8]) -> u32 {
        let start = self.data.len() as u32;
        self.data.reserve_exact(6 + key.len() + val.len());
        self.data
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.data
            .extend_from_slice(&(val.len() as u32).to_le_bytes());
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(val);
        start
    }

    /// The merged leaf's entries in key order: where each comes from, its key and its
    /// size on a page.
    fn merged<'a>(&'a self, base_leaf: &'a Leaf) -> Vec<(Source, &'a [u8], usize)> {
        let (start, end) = self.base_range(base_leaf);
        let mut out = Vec::with_capacity(end - start + self.index.len());
        let mut j = start;
        for i in 0..self.index.len() {
            let (k, v) = self.entry(i);
            while j < end && base_leaf.key(j) < k {
                out.push((Source::Base(j), base_leaf.key(j), base_leaf.entry_len(j)));
                j += 1;
            }
            if j < end && base_leaf.key(j) == k {
                j += 1;
            }
            out.push((Source::Put(i), k, 7 + k.len() + v.len()));
        }
        for j in j..end {
            out.push((Source::Base(j), base_leaf.key(j), base_leaf.entry_len(j)));
        }
        out
    }

    /// The sizes on a page of the merged leaf's entries, in key order, and the position
    /// of `key` among them (if present).
    pub fn merged_sizes(&self, base_leaf: &Leaf, key: &[u8]) -> (Vec<usize>, Option<usize>) {
        let m = self.merged(base_leaf);
        let at = m.iter().position(|(_, k, _)| *k == key);
        (m.into_iter().map(|(_, _, s)| s).collect(), at)
    }

    /// Splits the merged leaf before its entry `k` (`0 < k < len`) into two deltas over the
    /// same base page; returns them and the separator (the right one's first key).
    pub fn split_at(&self, base_leaf: &Leaf, k: usize) -> (Delta, Bytes, Delta) {
        let m = self.merged(base_leaf);
        debug_assert!(k > 0 && k < m.len());
        let sep = Bytes::copy_from_slice(m[k].1);
        let half = |part: &[(Source, &[u8], usize)], lo: Option<Bytes>, hi: Option<Bytes>| {
            let mut d = Delta {
                base: self.base,
                lo,
                hi,
                count: part.len() as u32,
                merged_len: (4 + part.iter().map(|e| e.2).sum::<usize>()) as u32,
                data: Vec::new(),
                index: Vec::new(),
            };
            for (from, _, _) in part {
                if let Source::Put(i) = from {
                    let (key, val) = self.entry(*i);
                    let at = d.push_data(key, val);
                    d.index.push(at);
                }
            }
            d
        };
        let left = half(&m[..k], self.lo.clone(), Some(sep.clone()));
        let right = half(&m[k..], Some(sep.clone()), self.hi.clone());
        (left, sep, right)
    }

    /// The whole leaf: the entries this delta owns of `base_leaf` (the leaf stored at
    /// [`Delta::base`]) with the puts applied.
    pub fn merge(&self, base_leaf: &Leaf, limits: &TreeLimits) -> Leaf {
        if self.lo.is_none() && self.hi.is_none() {
            let mut l = base_leaf.clone();
            for i in 0..self.index.len() {
                let (k, v) = self.entry(i);
                let val = Val::Inline(Bytes::copy_from_slice(v));
                match l.find(k) {
                    Ok(j) => {
                        l.replace(j, val, limits);
                    }
                    Err(j) => l.insert(j, k, val, limits),
                }
            }
            return l;
        }
        let mut l = Leaf::with_capacity(self.merged_len as usize + SLACK);
        for (from, k, _) in self.merged(base_leaf) {
            match from {
                Source::Base(j) => l.push_entry(base_leaf, j),
                Source::Put(i) => {
                    let v = self.entry(i).1;
                    l.push(k, Val::Inline(Bytes::copy_from_slice(v)), limits);
                }
            }
        }
        l
    }

    /// Checks the puts are in strictly increasing key order inside the delta's range and
    /// agree with `merged`, the result of [`Delta::merge`]: for `verify`.
    pub fn agrees_with(&self, merged: &Leaf) -> bool {
        (1..self.index.len()).all(|i| self.entry(i - 1).0 < self.entry(i).0)
            && (0..self.index.len()).all(|i| self.covers(self.entry(i).0))
            && (0..merged.len()).all(|j| self.covers(merged.key(j)))
            && merged.len() == self.len()
            && merged.encoded_len() == self.encoded_len()
            && (0..self.index.len()).all(|i| {
                let (k, v) = self.entry(i);
                matches!(merged.find(k), Ok(j) if merged.value(j) == ValRef::Inline(v))
            })
    }
}

/// Value kinds of a leaf entry in memory: the page format's two (inline, overflow), and one
/// that exists only in memory: a value longer than a leaf holds, kept in [`Leaf`]'s side
/// table until a checkpoint writes it to overflow pages.
const KIND_INLINE: u8 = 0;
const KIND_OVERFLOW: u8 = 1;
const KIND_PENDING: u8 = 2;

/// Spare bytes a leaf's own buffer gets when it is (re)built, so a few inserts fit without
/// growing it.
const SLACK: usize = 512;

/// Where an entry of a leaf starts in its buffer, and the first 8 bytes of its key as a
/// big-endian number (so searches touch few cache lines).
#[derive(Debug, Clone, Copy)]
struct Slot {
    prefix: u64,
    at: u32,
}

/// A leaf's entry bytes.
#[derive(Debug)]
enum Buf {
    /// A page payload (entry count first), shared with the buffer it was read or encoded in.
    Shared(Bytes),
    /// Entries this node owns: it changed since it was read. Holds dead entries too, until
    /// the leaf is compacted.
    Owned(Vec<u8>),
}

impl Buf {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Buf::Shared(b) => b,
            Buf::Owned(v) => v,
        }
    }
}

#[inline]
fn rd16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

#[inline]
fn rd32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

#[inline]
fn rd64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Start and end of the key of the entry at `at`.
#[inline]
fn key_range(b: &[u8], at: usize) -> (usize, usize) {
    let start = at + if b[at + 2] == KIND_OVERFLOW { 19 } else { 7 };
    (start, start + rd16(b, at))
}

/// Bytes the entry at `at` takes in memory.
#[inline]
fn mem_len(b: &[u8], at: usize) -> usize {
    let (_, end) = key_range(b, at);
    end - at
        + if b[at + 2] == KIND_INLINE {
            rd32(b, at + 3)
        } else {
            0
        }
}

/// Bytes the entry at `at` takes on a page.
#[inline]
fn page_len(b: &[u8], at: usize) -> usize {
    let klen = rd16(b, at);
    klen + if b[at + 2] == KIND_INLINE {
        7 + rd32(b, at + 3)
    } else {
        19
    }
}

/// Appends the entry at `at` of `src` to `dst` (a pending value's bytes move to `dst_big`);
/// returns where it starts in `dst`.
fn copy_entry(
    dst: &mut Vec<u8>,
    dst_big: &mut Vec<Bytes>,
    src: &[u8],
    src_big: &[Bytes],
    at: usize,
) -> usize {
    let new_at = dst.len();
    dst.extend_from_slice(&src[at..at + mem_len(src, at)]);
    if src[at + 2] == KIND_PENDING {
        let j = dst_big.len() as u32;
        dst_big.push(src_big[rd32(src, at + 3)].clone());
        dst[new_at + 3..new_at + 7].copy_from_slice(&j.to_le_bytes());
    }
    new_at
}

/// Appends to a buffer of known size.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
}

/// A value in a leaf, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValRef<'a> {
    /// The bytes (held in the leaf, or in memory until a checkpoint moves them to overflow
    /// pages).
    Inline(&'a [u8]),
    /// A value on disk in a run of consecutive overflow pages.
    Overflow {
        /// Total length of the value.
        len: u64,
        /// The first page of the run.
        first_page: u64,
    },
}

/// A leaf: its entries, encoded as on a page, in one buffer (shared with the page it was
/// read from until it changes), and their positions in key order. One allocation for the
/// entries whatever their number, so decoding a page and copying a leaf are cheap and its
/// memory is what its page takes.
#[derive(Debug)]
pub struct Leaf {
    buf: Buf,
    /// In key order (strictly increasing keys).
    slots: Vec<Slot>,
    /// Bytes the live entries take on a page.
    live: usize,
    /// Values longer than [`TreeLimits::inline_max`] until a checkpoint writes them to
    /// overflow pages; a pending entry holds its index here.
    big: Vec<Bytes>,
    /// Live pending entries (the dead ones' values stay in `big` until a compaction).
    pending: usize,
}

impl Default for Leaf {
    fn default() -> Leaf {
        Leaf {
            buf: Buf::Owned(Vec::new()),
            slots: Vec::new(),
            live: 0,
            big: Vec::new(),
            pending: 0,
        }
    }
}

impl Clone for Leaf {
    fn clone(&self) -> Leaf {
        let buf = match &self.buf {
            Buf::Shared(b) => Buf::Shared(b.clone()),
            Buf::Owned(v) => {
                let mut c = Vec::with_capacity(v.len() + SLACK);
                c.extend_from_slice(v);
                Buf::Owned(c)
            }
        };
        Leaf {
            buf,
            slots: self.slots.clone(),
            live: self.live,
            big: self.big.clone(),
            pending: self.pending,
        }
    }
}

impl Leaf {
    /// Decodes a leaf page's payload (entry count first); the leaf shares its buffer.
    pub fn from_payload(payload: Bytes) -> Result<Leaf, FormatError> {
        let mut slots = Vec::new();
        let mut live = 0;
        fmt::visit_leaf(&payload, |n, at, e| {
            if slots.is_empty() {
                slots.reserve_exact(n);
            }
            slots.push(Slot {
                prefix: key_prefix(e.key),
                at: at as u32,
            });
            live += fmt::leaf_entry_len(&e);
        })?;
        Ok(Leaf {
            buf: Buf::Shared(payload),
            slots,
            live,
            big: Vec::new(),
            pending: 0,
        })
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True without entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The key of entry `i`.
    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        let b = self.buf.bytes();
        let (s, e) = key_range(b, self.slots[i].at as usize);
        &b[s..e]
    }

    /// The key of entry `i` as shared bytes (copied if the leaf owns its buffer).
    pub fn key_bytes(&self, i: usize) -> Bytes {
        let (s, e) = key_range(self.buf.bytes(), self.slots[i].at as usize);
        match &self.buf {
            Buf::Shared(b) => b.slice(s..e),
            Buf::Owned(v) => Bytes::copy_from_slice(&v[s..e]),
        }
    }

    /// The value of entry `i`.
    #[inline]
    pub fn value(&self, i: usize) -> ValRef<'_> {
        let b = self.buf.bytes();
        let at = self.slots[i].at as usize;
        match b[at + 2] {
            KIND_INLINE => {
                let (_, e) = key_range(b, at);
                ValRef::Inline(&b[e..e + rd32(b, at + 3)])
            }
            KIND_OVERFLOW => ValRef::Overflow {
                len: rd64(b, at + 3),
                first_page: rd64(b, at + 11),
            },
            _ => ValRef::Inline(&self.big[rd32(b, at + 3)]),
        }
    }

    /// The value of entry `i`, owned (its bytes shared with the leaf's buffer, or copied if
    /// the leaf owns it).
    pub fn val(&self, i: usize) -> Val {
        let b = self.buf.bytes();
        let at = self.slots[i].at as usize;
        match b[at + 2] {
            KIND_INLINE => {
                let (_, e) = key_range(b, at);
                let end = e + rd32(b, at + 3);
                Val::Inline(match &self.buf {
                    Buf::Shared(s) => s.slice(e..end),
                    Buf::Owned(v) => Bytes::copy_from_slice(&v[e..end]),
                })
            }
            KIND_OVERFLOW => Val::Overflow {
                len: rd64(b, at + 3),
                first_page: rd64(b, at + 11),
            },
            _ => Val::Inline(self.big[rd32(b, at + 3)].clone()),
        }
    }

    /// Bytes entry `i` takes on a page.
    pub fn entry_len(&self, i: usize) -> usize {
        page_len(self.buf.bytes(), self.slots[i].at as usize)
    }

    /// `Ok(i)` if key `i` equals `key`, else `Err(i)`: where it would go.
    #[inline]
    pub fn find(&self, key: &[u8]) -> Result<usize, usize> {
        let i = self.rank(key, false);
        if i < self.slots.len() && self.key(i) == key {
            Ok(i)
        } else {
            Err(i)
        }
    }

    /// Number of keys `< key` (or `<= key` if `inclusive`).
    #[inline]
    pub fn rank(&self, key: &[u8], inclusive: bool) -> usize {
        let b = self.buf.bytes();
        let kp = key_prefix(key);
        let lo = self.slots.partition_point(|s| s.prefix < kp);
        let hi = lo + self.slots[lo..].partition_point(|s| s.prefix == kp);
        lo + self.slots[lo..hi].partition_point(|s| {
            let (ks, ke) = key_range(b, s.at as usize);
            let k = &b[ks..ke];
            if inclusive { k <= key } else { k < key }
        })
    }

    /// Rebuilds the buffer with only the live entries, in key order, and `extra` spare
    /// bytes.
    fn compact(&mut self, extra: usize) {
        let mut v = Vec::with_capacity(self.live + extra);
        let mut big = Vec::with_capacity(self.pending);
        let src = self.buf.bytes();
        for s in &mut self.slots {
            s.at = copy_entry(&mut v, &mut big, src, &self.big, s.at as usize) as u32;
        }
        self.buf = Buf::Owned(v);
        self.big = big;
    }

    /// Makes the buffer the leaf's own with room for `need` more bytes.
    fn reserve(&mut self, need: usize) {
        match &mut self.buf {
            Buf::Owned(v) => {
                if v.capacity() - v.len() < need {
                    v.reserve_exact(need.max(SLACK));
                }
            }
            Buf::Shared(_) => self.compact(need.max(SLACK)),
        }
    }

    /// Compacts once dead entries take as much as live ones.
    fn tidy(&mut self) {
        let used = self.buf.bytes().len();
        if used > 2 * self.live + 1024 || self.big.len() > 2 * self.pending + 8 {
            self.compact(SLACK);
        }
    }

    /// Appends an entry for `val` whose key is `key` (or, if `None`, the key of the entry at
    /// `from`); returns where it starts.
    fn put(&mut self, key: Option<&[u8]>, from: usize, val: &Val, limits: &TreeLimits) -> usize {
        let klen = match key {
            Some(k) => k.len(),
            None => rd16(self.buf.bytes(), from),
        };
        self.reserve(19 + klen + if let Val::Inline(b) = val { b.len() } else { 0 });
        let Buf::Owned(v) = &mut self.buf else {
            unreachable!("reserve makes the buffer owned")
        };
        let at = v.len();
        v.extend_from_slice(&(klen as u16).to_le_bytes());
        let inline = match val {
            Val::Inline(b) if b.len() <= limits.inline_max => {
                v.push(KIND_INLINE);
                v.extend_from_slice(&(b.len() as u32).to_le_bytes());
                Some(b)
            }
            Val::Inline(b) => {
                v.push(KIND_PENDING);
                v.extend_from_slice(&(self.big.len() as u32).to_le_bytes());
                self.big.push(b.clone());
                self.pending += 1;
                None
            }
            Val::Overflow { len, first_page } => {
                v.push(KIND_OVERFLOW);
                v.extend_from_slice(&len.to_le_bytes());
                v.extend_from_slice(&first_page.to_le_bytes());
                None
            }
        };
        match key {
            Some(k) => v.extend_from_slice(k),
            None => {
                let (s, e) = key_range(v, from);
                v.extend_from_within(s..e);
            }
        }
        if let Some(b) = inline {
            v.extend_from_slice(b);
        }
        self.live += page_len(v, at);
        at
    }

    /// Forgets entry `i`'s bytes (its slot is reused or removed by the caller).
    fn drop_entry(&mut self, i: usize) {
        let b = self.buf.bytes();
        let at = self.slots[i].at as usize;
        self.live -= page_len(b, at);
        if b[at + 2] == KIND_PENDING {
            self.pending -= 1;
        }
    }

    /// Inserts `key` (which must belong at position `i`) with `val`.
    pub fn insert(&mut self, i: usize, key: &[u8], val: Val, limits: &TreeLimits) {
        debug_assert!(i == 0 || self.key(i - 1) < key);
        debug_assert!(i == self.len() || key < self.key(i));
        let at = self.put(Some(key), 0, &val, limits);
        self.slots.insert(
            i,
            Slot {
                prefix: key_prefix(key),
                at: at as u32,
            },
        );
        self.tidy();
    }

    /// Appends `key`, greater than every key held, with `val`.
    pub fn push(&mut self, key: &[u8], val: Val, limits: &TreeLimits) {
        self.insert(self.len(), key, val, limits);
    }

    /// Replaces the value of entry `i`; returns the old one.
    pub fn replace(&mut self, i: usize, val: Val, limits: &TreeLimits) -> Val {
        let old = self.val(i);
        // Own the buffer first: `put` copies the key from it.
        self.reserve(0);
        let from = self.slots[i].at as usize;
        self.drop_entry(i);
        let at = self.put(None, from, &val, limits);
        self.slots[i].at = at as u32;
        self.tidy();
        old
    }

    /// Removes entry `i`; returns its value.
    pub fn remove(&mut self, i: usize) -> Val {
        let old = self.val(i);
        self.drop_entry(i);
        self.slots.remove(i);
        self.tidy();
        old
    }

    /// Moves the entries from `k` on into a new leaf.
    pub fn split_off(&mut self, k: usize) -> Leaf {
        let moved = self.slots.split_off(k);
        let mut right = Leaf::default();
        let mut v = Vec::with_capacity(self.live / 2 + SLACK);
        let src = self.buf.bytes();
        for s in moved {
            let at = copy_entry(&mut v, &mut right.big, src, &self.big, s.at as usize);
            right.live += page_len(&v, at);
            right.slots.push(Slot {
                prefix: s.prefix,
                at: at as u32,
            });
        }
        right.pending = right.big.len();
        right.buf = Buf::Owned(v);
        self.live -= right.live;
        self.pending -= right.pending;
        self.compact(SLACK);
        right
    }

    /// Appends every entry of `other` (whose keys are all greater).
    pub fn append(&mut self, other: &Leaf) {
        debug_assert!(
            self.is_empty() || other.is_empty() || self.key(self.len() - 1) < other.key(0)
        );
        self.reserve(other.live);
        let Buf::Owned(v) = &mut self.buf else {
            unreachable!("reserve makes the buffer owned")
        };
        let src = other.buf.bytes();
        for s in &other.slots {
            let at = copy_entry(v, &mut self.big, src, &other.big, s.at as usize);
            self.slots.push(Slot {
                prefix: s.prefix,
                at: at as u32,
            });
        }
        self.live += other.live;
        self.pending += other.pending;
    }

    /// An empty leaf with room for `bytes` of entries.
    pub fn with_capacity(bytes: usize) -> Leaf {
        Leaf {
            buf: Buf::Owned(Vec::with_capacity(bytes)),
            ..Leaf::default()
        }
    }

    /// Appends a copy of entry `j` of `other`, whose key is greater than every key here.
    pub fn push_entry(&mut self, other: &Leaf, j: usize) {
        debug_assert!(self.is_empty() || self.key(self.len() - 1) < other.key(j));
        let s = &other.slots[j];
        let src = other.buf.bytes();
        let at = s.at as usize;
        self.reserve(mem_len(src, at));
        let Buf::Owned(v) = &mut self.buf else {
            unreachable!("reserve makes the buffer owned")
        };
        let new_at = copy_entry(v, &mut self.big, src, &other.big, at);
        self.live += page_len(v, new_at);
        if v[new_at + 2] == KIND_PENDING {
            self.pending += 1;
        }
        self.slots.push(Slot {
            prefix: s.prefix,
            at: new_at as u32,
        });
    }

    /// Bytes the leaf takes on a page (payload).
    pub fn encoded_len(&self) -> usize {
        4 + self.live
    }

    /// Bytes of memory the leaf holds (its buffer counted whole even when shared).
    pub fn memory(&self, page_size: usize) -> usize {
        let buf = match &self.buf {
            Buf::Shared(_) => page_size,
            Buf::Owned(v) => v.capacity(),
        };
        64 + buf
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.big.iter().map(|b| b.len()).sum::<usize>()
    }

    /// The lengths of the values waiting for overflow pages, in key order: the order in
    /// which [`Leaf::encode`] hands them to its `overflow` callback.
    pub fn pending_lens(&self) -> impl Iterator<Item = usize> + '_ {
        let src = self.buf.bytes();
        self.slots.iter().filter_map(move |s| {
            let at = s.at as usize;
            (src[at + 2] == KIND_PENDING).then(|| self.big[rd32(src, at + 3)].len())
        })
    }

    /// Encodes the leaf as a page payload; each value waiting for overflow pages is handed
    /// to `overflow`, which writes it and returns the first page of its run. Returns the
    /// payload and the clean leaf that shares it.
    pub fn encode(&self, overflow: &mut dyn FnMut(&Bytes) -> u64) -> (Bytes, Leaf) {
        // A recycled page-sized buffer (see `persistx_io::bufs`): the clean leaf the buffer
        // pool keeps shares it, and another thread frees it.
        let len = 4 + self.live;
        let mut buf = persistx_io::bufs::take(len.div_ceil(4096) * 4096);
        let mut out = Writer {
            buf: &mut buf,
            at: 0,
        };
        out.put(&(self.slots.len() as u16).to_le_bytes());
        out.put(&[0, 0]);
        let src = self.buf.bytes();
        let mut slots = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let at = s.at as usize;
            let new_at = out.at;
            if src[at + 2] == KIND_PENDING {
                let b = &self.big[rd32(src, at + 3)];
                let first = overflow(b);
                let (ks, ke) = key_range(src, at);
                out.put(&src[at..at + 2]);
                out.put(&[KIND_OVERFLOW]);
                out.put(&(b.len() as u64).to_le_bytes());
                out.put(&first.to_le_bytes());
                out.put(&src[ks..ke]);
            } else {
                out.put(&src[at..at + mem_len(src, at)]);
            }
            slots.push(Slot {
                prefix: s.prefix,
                at: new_at as u32,
            });
        }
        debug_assert_eq!(out.at, len);
        let bytes = persistx_io::bufs::into_bytes(buf).slice(..len);
        let clean = Leaf {
            buf: Buf::Shared(bytes.clone()),
            slots,
            live: self.live,
            big: Vec::new(),
            pending: 0,
        };
        (bytes, clean)
    }
}

/// An interior node: children and the separators between them. Child `i` holds the keys
/// `k` with `seps.get(i - 1) <= k < seps.get(i)`.
#[derive(Debug, Clone, Default)]
pub struct Interior {
    /// At least one child (two except transiently and at the root).
    pub children: Vec<Child>,
    /// `children.len() - 1` strictly increasing separators.
    pub seps: Seps,
    /// Separator prefixes (8 bytes, big-endian), for searches as in leaves. Present only
    /// while the node does not change (see [`Node::index`]).
    pub prefix: Option<Box<[u64]>>,
    /// Children kept decoded for lookups (see [`Pins`]); used only while `prefix` is present.
    pub pins: Pins,
}

/// The first 8 bytes of `key` as a big-endian number (zero padded): `prefix(a) <
/// prefix(b)` implies `a < b`; equal prefixes need the full comparison.
#[inline]
pub fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

fn prefixes(seps: &Seps) -> Box<[u64]> {
    seps.iter().map(key_prefix).collect()
}

/// Number of `seps` that are `< key` (`inclusive`: `<= key`), using `prefix` when present.
#[inline]
fn count_below(seps: &Seps, prefix: Option<&[u64]>, key: &[u8], inclusive: bool) -> usize {
    let (mut lo, mut hi) = match prefix {
        Some(p) if p.len() == seps.len() => {
            let kp = key_prefix(key);
            let lo = p.partition_point(|x| *x < kp);
            (lo, lo + p[lo..].partition_point(|x| *x == kp))
        }
        _ => (0, seps.len()),
    };
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let k = seps.get(mid);
        if if inclusive { k <= key } else { k < key } {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The separator keys of an interior node, packed into one buffer (`ends[i]` is where key
/// `i` ends). A key costs 4 bytes beside its own, and a node read from a page keeps none of
/// the page's buffer: interior nodes stay resident between checkpoints (every random write
/// makes its path dirty), so their size is what the dirty budget mostly holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seps {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Seps {
    /// Number of keys.
    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True without keys.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    #[inline]
    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize }
    }

    /// Key `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i] as usize]
    }

    /// The keys in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Appends `key` (the caller keeps the order).
    pub fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len() as u32);
    }

    /// Inserts `key` as key `i`. Grows the buffers by exactly what it adds: a node changes
    /// by one key at a time, and doubling would leave most dirty nodes half empty.
    pub fn insert(&mut self, i: usize, key: &[u8]) {
        let at = self.start(i);
        let n = key.len();
        self.bytes.reserve_exact(n);
        self.bytes.splice(at..at, key.iter().copied());
        self.ends.reserve_exact(1);
        self.ends.insert(i, (at + n) as u32);
        for e in &mut self.ends[i + 1..] {
            *e += n as u32;
        }
    }

    /// Removes key `i` and returns it.
    pub fn remove(&mut self, i: usize) -> Bytes {
        let (s, e) = (self.start(i), self.ends[i] as usize);
        let key = Bytes::copy_from_slice(&self.bytes[s..e]);
        self.bytes.drain(s..e);
        self.ends.remove(i);
        for x in &mut self.ends[i..] {
            *x -= (e - s) as u32;
        }
        key
    }

    /// Splits off keys `at..` into a new set.
    pub fn split_off(&mut self, at: usize) -> Seps {
        let cut = self.start(at);
        let bytes = self.bytes.split_off(cut);
        let ends = self
            .ends
            .split_off(at)
            .into_iter()
            .map(|e| e - cut as u32)
            .collect();
        self.shrink_to_fit();
        Seps { bytes, ends }
    }

    /// Appends `other`'s keys (the caller keeps the order).
    pub fn append(&mut self, other: &Seps) {
        let base = self.bytes.len() as u32;
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }

    /// Gives back spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// Bytes of memory the keys take.
    pub fn memory(&self) -> usize {
        self.bytes.capacity() + 4 * self.ends.capacity()
    }
}

impl Seps {
    /// The keys of `keys`, in buffers of exactly their size.
    pub fn from_slices(keys: &[&[u8]]) -> Seps {
        let mut seps = Seps {
            bytes: Vec::with_capacity(keys.iter().map(|k| k.len()).sum()),
            ends: Vec::with_capacity(keys.len()),
        };
        for k in keys {
            seps.push(k);
        }
        seps
    }
}

impl<'a> FromIterator<&'a [u8]> for Seps {
    /// Collects keys; the buffers are trimmed to their size.
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Seps {
        let mut seps = Seps::default();
        for k in iter {
            seps.push(k);
        }
        seps.shrink_to_fit();
        seps
    }
}

impl Interior {
    /// Bytes of memory the node takes (its vectors, not the nodes below it).
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Node>()
            + self.children.capacity() * std::mem::size_of::<Child>()
            + self.seps.memory()
            + self.prefix.as_ref().map_or(0, |p| p.len() * 8)
    }

    /// Index of the child whose range holds `key`.
    #[inline]
    pub fn child_for(&self, key: &[u8]) -> usize {
        count_below(&self.seps, self.prefix.as_deref(), key, true)
    }

    /// Child `i`, decoded, if this node pinned it from `page`.
    #[inline]
    pub fn pinned(&self, i: usize, page: u64) -> Option<&Arc<Node>> {
        // Only a node that no longer changes (indexed) uses its pins.
        self.prefix.as_ref()?;
        self.pins.get(i, page)
    }

    /// Pins `node`, read from `page`, as child `i` if this node no longer changes (it is
    /// indexed), `node` is an interior node and `budget` has room (see [`Pins::pin`]).
    pub fn pin(
        &self,
        i: usize,
        page: u64,
        node: &Arc<Node>,
        budget: &Arc<PinBudget>,
    ) -> Option<&Arc<Node>> {
        self.prefix.as_ref()?;
        self.pins.pin(i, self.children.len(), page, node, budget)
    }
}

/// A B+tree node.
#[derive(Debug, Clone)]
pub enum Node {
    /// Keys and values.
    Leaf(Leaf),
    /// Children.
    Interior(Interior),
}

impl Node {
    /// Drops the search prefixes and the pins: called whenever the node is about to change.
    #[inline]
    pub fn changed(&mut self) {
        if let Node::Interior(i) = self {
            i.prefix = None;
            i.pins = Pins::default();
        }
    }

    /// Builds the search prefixes (for a node that will not change: read from disk, or
    /// written by a checkpoint).
    pub fn index(&mut self) {
        if let Node::Interior(i) = self {
            i.prefix = Some(prefixes(&i.seps));
        }
    }

    /// Entries in this node's subtree.
    pub fn count(&self) -> u64 {
        match self {
            Node::Leaf(l) => l.len() as u64,
            Node::Interior(i) => i.children.iter().map(|c| c.count).sum(),
        }
    }

    /// Encoded payload size under `limits`.
    pub fn encoded_len(&self) -> usize {
        match self {
            Node::Leaf(l) => l.encoded_len(),
            Node::Interior(i) => {
                4 + 16 * i.children.len() + i.seps.iter().map(|s| 2 + s.len()).sum::<usize>()
            }
        }
    }

    /// Rough bytes of memory the decoded node takes (for the buffer pool's budget).
    pub fn memory_charge(&self, limits: &TreeLimits) -> usize {
        match self {
            Node::Leaf(l) => l.memory(limits.page_size),
            Node::Interior(i) => i.memory(),
        }
    }
}

/// Size limits derived from the page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Page size in bytes.
    pub page_size: usize,
    /// Bytes of node payload a page holds.
    pub capacity: usize,
    /// Longest value stored inline in a leaf; longer ones go to overflow pages.
    pub inline_max: usize,
    /// Longest key.
    pub max_key: usize,
    /// Bytes of value each overflow page holds.
    pub overflow_chunk: usize,
}

impl TreeLimits {
    /// Limits for a page size (a power of two from 4 KiB to 64 KiB).
    pub fn new(page_size: usize) -> TreeLimits {
        let capacity = page_size - PAGE_HEADER_LEN;
        // Any entry is at most half a node, so a node split in two always fits.
        let inline_max = capacity / 4;
        TreeLimits {
            page_size,
            capacity,
            inline_max,
            max_key: capacity / 4 - 16,
            overflow_chunk: capacity - 8,
        }
    }

    /// Bytes a leaf entry takes once encoded.
    pub fn leaf_entry_len(&self, key: &[u8], val: &Val) -> usize {
        3 + key.len()
            + match val {
                Val::Inline(b) if b.len() <= self.inline_max => 4 + b.len(),
                _ => 16,
            }
    }

    /// Pages an overflow value of `len` bytes takes.
    pub fn overflow_pages(&self, len: u64) -> u64 {
        len.div_ceil(self.overflow_chunk as u64).max(1)
    }
}

/// Decodes a node page's payload (after the page header) into a node: a leaf's keys and
/// values share `page`'s buffer; an interior node copies its separators (see [`Seps`]).
pub fn decode_node(
    kind: u8,
    page: &Bytes,
    payload_at: usize,
    payload_len: usize,
) -> Result<Node, FormatError> {
    let payload = page.slice(payload_at..payload_at + payload_len);
    match kind {
        fmt::KIND_LEAF => Ok(Node::Leaf(Leaf::from_payload(payload)?)),
        fmt::KIND_INTERIOR => {
            let (children, seps) = fmt::decode_interior(&payload)?;
            Ok(Node::Interior(Interior {
                children: children
                    .into_iter()
                    .map(|c| Child {
                        ptr: Ptr::Clean(c.page),
                        count: c.count,
                    })
                    .collect(),
                seps: Seps::from_slices(&seps),
                prefix: None,
                pins: Pins::default(),
            }))
        }
        other => Err(FormatError::InvalidField {
            field: "tree page kind",
            value: other.into(),
        }),
    }
}

/// Encodes a clean node's payload: every child must be [`Ptr::Clean`] and every value
/// longer than `inline_max` an [`Val::Overflow`].
///
/// # Panics
/// If a child is dirty or a value is too long to be inline (the checkpoint writes children
/// and overflow values first).
pub fn encode_node(node: &Node, out: &mut Vec<u8>) -> u8 {
    match node {
        Node::Leaf(l) => {
            let (bytes, _) =
                l.encode(&mut |_| panic!("encode_node: a value too long to be inline"));
            out.extend_from_slice(&bytes);
            fmt::KIND_LEAF
        }
        Node::Interior(i) => {
            let children: Vec<fmt::Child> = i
                .children
                .iter()
                .map(|c| match c.ptr {
                    Ptr::Clean(page) => fmt::Child {
                        page,
                        count: c.count,
                    },
                    Ptr::Dirty(_) | Ptr::Delta(_) => panic!("encode_node: dirty child"),
                })
                .collect();
            let seps: Vec<&[u8]> = i.seps.iter().collect();
            fmt::encode_interior(&children, &seps, out);
            fmt::KIND_INTERIOR
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Small pages, so values over `inline_max` (pending in memory) are common.
    fn limits() -> TreeLimits {
        TreeLimits::new(4096)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u16, usize),
        Remove(u16),
        Overflow(u16, u64),
        SplitAppend(usize),
        Clone,
        RoundTrip,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u16..200, prop_oneof![0usize..40, 900usize..2000]).prop_map(|(k, v)| Op::Put(k, v)),
            4 => (0u16..200).prop_map(Op::Remove),
            1 => (0u16..200, 2u64..1000).prop_map(|(k, p)| Op::Overflow(k, p)),
            1 => (0usize..64).prop_map(Op::SplitAppend),
            1 => Just(Op::Clone),
            1 => Just(Op::RoundTrip),
        ]
    }

    fn key(k: u16) -> Vec<u8> {
        // Keys of varying length that share 8-byte prefixes.
        let mut v = b"key-prefix".to_vec();
        v.extend_from_slice(&k.to_be_bytes());
        v.extend(std::iter::repeat_n(b'x', (k % 7) as usize));
        v
    }

    fn value(seed: u16, len: usize) -> Val {
        Val::Inline(Bytes::from(
            (0..len)
                .map(|i| (i as u16 ^ seed) as u8)
                .collect::<Vec<u8>>(),
        ))
    }

    fn check(leaf: &Leaf, model: &BTreeMap<Vec<u8>, Val>, lim: &TreeLimits) {
        assert_eq!(leaf.len(), model.len());
        let mut page = 4;
        for (i, (k, v)) in model.iter().enumerate() {
            assert_eq!(leaf.key(i), &k[..]);
            assert_eq!(leaf.key_bytes(i), &k[..]);
            assert_eq!(&leaf.val(i), v);
            match (leaf.value(i), v) {
                (ValRef::Inline(a), Val::Inline(b)) => assert_eq!(a, &b[..]),
                (
                    ValRef::Overflow { len, first_page },
                    Val::Overflow {
                        len: l,
                        first_page: f,
                    },
                ) => {
                    assert_eq!((len, first_page), (*l, *f))
                }
                other => panic!("value kinds differ: {other:?}"),
            }
            assert_eq!(leaf.find(k), Ok(i));
            assert_eq!(leaf.rank(k, true), i + 1);
            assert_eq!(leaf.entry_len(i), lim.leaf_entry_len(k, v));
            page += lim.leaf_entry_len(k, v);
        }
        assert_eq!(leaf.encoded_len(), page);
        assert!(leaf.find(b"key-prefiy").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A leaf under random inserts, replacements, removals, splits and merges, copies and
        /// encode/decode round trips holds what a BTreeMap holds, and sizes itself as the
        /// page format does.
        #[test]
        fn leaf_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..200)) {
            let lim = limits();
            let mut leaf = Leaf::default();
            let mut model: BTreeMap<Vec<u8>, Val> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, len) => {
                        let (key, val) = (key(k), value(k, len));
                        match leaf.find(&key) {
                            Ok(i) => {
                                let old = leaf.replace(i, val.clone(), &lim);
                                assert_eq!(Some(old), model.insert(key, val));
                            }
                            Err(i) => {
                                leaf.insert(i, &key, val.clone(), &lim);
                                assert!(model.insert(key, val).is_none());
                            }
                        }
                    }
                    Op::Overflow(k, first_page) => {
                        let (key, val) = (key(k), Val::Overflow { len: 5000, first_page });
                        match leaf.find(&key) {
                            Ok(i) => {
                                leaf.replace(i, val.clone(), &lim);
                            }
                            Err(i) => leaf.insert(i, &key, val.clone(), &lim),
                        }
                        model.insert(key, val);
                    }
                    Op::Remove(k) => {
                        let key = key(k);
                        match leaf.find(&key) {
                            Ok(i) => assert_eq!(Some(leaf.remove(i)), model.remove(&key)),
                            Err(_) => assert!(!model.contains_key(&key)),
                        }
                    }
                    Op::SplitAppend(at) => {
                        if !leaf.is_empty() {
                            let at = at % leaf.len();
                            let right = leaf.split_off(at);
                            check(&leaf, &model.iter().take(at).map(|(k, v)| (k.clone(), v.clone())).collect(), &lim);
                            leaf.append(&right);
                        }
                    }
                    Op::Clone => {
                        let copy = leaf.clone();
                        leaf = copy;
                    }
                    Op::RoundTrip => {
                        // Pending values get overflow pages; the model follows.
                        let mut next_page = 10_000u64;
                        let mut written = Vec::new();
                        let (bytes, clean) = leaf.encode(&mut |b: &Bytes| {
                            next_page += 10;
                            written.push((b.clone(), next_page));
                            next_page
                        });
                        for (b, page) in written {
                            let k = model.iter().find(|(_, v)| **v == Val::Inline(b.clone()) && b.len() > lim.inline_max).map(|(k, _)| k.clone()).expect("pending value in the model");
                            model.insert(k, Val::Overflow { len: b.len() as u64, first_page: page });
                        }
                        check(&clean, &model, &lim);
                        let decoded = Leaf::from_payload(bytes).expect("valid payload");
                        check(&decoded, &model, &lim);
                        leaf = decoded;
                    }
                }
                check(&leaf, &model, &lim);
                // Dead entries never take more than about the live ones.
                assert!(leaf.buf.bytes().len() <= 2 * leaf.live + 1024 + 19 + 2000);
            }
        }

        /// Separators under random inserts, removals, splits and appends hold what a vector
        /// of keys holds, and a search (with and without prefixes) counts what a scan counts.
        #[test]
        fn seps_match_a_vector(
            ops in proptest::collection::vec((0u8..4, 0usize..64, proptest::collection::vec(0u8..3, 0..12)), 1..120),
            probe in proptest::collection::vec(0u8..3, 0..12),
        ) {
            let mut seps = Seps::default();
            let mut model: Vec<Vec<u8>> = Vec::new();
            for (op, at, key) in ops {
                match op {
                    0 => {
                        let i = at % (model.len() + 1);
                        seps.insert(i, &key);
                        model.insert(i, key);
                    }
                    1 if !model.is_empty() => {
                        let i = at % model.len();
                        prop_assert_eq!(&seps.remove(i)[..], &model.remove(i)[..]);
                    }
                    2 => {
                        let i = at % (model.len() + 1);
                        let right = seps.split_off(i);
                        let model_right = model.split_off(i);
                        prop_assert_eq!(right.iter().collect::<Vec<_>>(), model_right.iter().map(|k| &k[..]).collect::<Vec<_>>());
                        seps.append(&right);
                        model.extend(model_right);
                    }
                    _ => {
                        seps.push(&key);
                        model.push(key);
                    }
                }
                prop_assert_eq!(seps.len(), model.len());
                prop_assert_eq!(seps.iter().collect::<Vec<_>>(), model.iter().map(|k| &k[..]).collect::<Vec<_>>());
            }
            // Searches need sorted keys.
            model.sort();
            model.dedup();
            let seps: Seps = model.iter().map(|k| &k[..]).collect();
            prop_assert_eq!(&Seps::from_slices(&model.iter().map(|k| &k[..]).collect::<Vec<_>>()), &seps);
            let pre = prefixes(&seps);
            for inclusive in [false, true] {
                let want = model.iter().filter(|k| if inclusive { k[..] <= probe[..] } else { k[..] < probe[..] }).count();
                prop_assert_eq!(count_below(&seps, None, &probe, inclusive), want);
                prop_assert_eq!(count_below(&seps, Some(&pre), &probe, inclusive), want);
            }
        }
    }
}
