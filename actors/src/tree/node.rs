//! The in-memory form of B+tree nodes, and their conversion to and from pages.

use std::sync::Arc;

use bytes::Bytes;
use persistx_io::format::FormatError;
use persistx_io::format::node::{self as fmt, LeafEntry, LeafValue};
use persistx_io::format::page::PAGE_HEADER_LEN;

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

/// A leaf: sorted keys and their values.
#[derive(Debug, Clone, Default)]
pub struct Leaf {
    /// Strictly increasing keys.
    pub keys: Vec<Bytes>,
    /// One value per key.
    pub vals: Vec<Val>,
    /// The first 8 bytes of each key as a big-endian number, for searches that touch few
    /// cache lines; built for nodes read from disk, dropped when the node is changed
    /// ([`Node::changed`]).
    pub prefix: Option<Box<[u64]>>,
}

/// An interior node: children and the separators between them. Child `i` holds the keys
/// `k` with `seps[i - 1] <= k < seps[i]`.
#[derive(Debug, Clone, Default)]
pub struct Interior {
    /// At least one child (two except transiently and at the root).
    pub children: Vec<Child>,
    /// `children.len() - 1` strictly increasing separators.
    pub seps: Vec<Bytes>,
    /// Separator prefixes, as [`Leaf::prefix`].
    pub prefix: Option<Box<[u64]>>,
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

fn prefixes(keys: &[Bytes]) -> Box<[u64]> {
    keys.iter().map(|k| key_prefix(k)).collect()
}

/// Number of `keys` that are `< key` (`inclusive`: `<= key`), using `prefix` when present.
#[inline]
fn count_below(keys: &[Bytes], prefix: Option<&[u64]>, key: &[u8], inclusive: bool) -> usize {
    let below = |k: &Bytes| {
        if inclusive {
            k.as_ref() <= key
        } else {
            k.as_ref() < key
        }
    };
    match prefix {
        Some(p) if p.len() == keys.len() => {
            let kp = key_prefix(key);
            let lo = p.partition_point(|x| *x < kp);
            let hi = lo + p[lo..].partition_point(|x| *x == kp);
            lo + keys[lo..hi].partition_point(below)
        }
        _ => keys.partition_point(below),
    }
}

impl Leaf {
    /// `Ok(i)` if `keys[i] == key`, else `Err(i)`: where it would go.
    #[inline]
    pub fn find(&self, key: &[u8]) -> Result<usize, usize> {
        let i = count_below(&self.keys, self.prefix.as_deref(), key, false);
        if self.keys.get(i).is_some_and(|k| k.as_ref() == key) {
            Ok(i)
        } else {
            Err(i)
        }
    }

    /// Number of keys `< key` (or `<= key` if `inclusive`).
    #[inline]
    pub fn rank(&self, key: &[u8], inclusive: bool) -> usize {
        count_below(&self.keys, self.prefix.as_deref(), key, inclusive)
    }
}

impl Interior {
    /// Index of the child whose range holds `key`.
    #[inline]
    pub fn child_for(&self, key: &[u8]) -> usize {
        count_below(&self.seps, self.prefix.as_deref(), key, true)
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
    /// Drops the search prefixes: called whenever the node is about to change.
    #[inline]
    pub fn changed(&mut self) {
        match self {
            Node::Leaf(l) => l.prefix = None,
            Node::Interior(i) => i.prefix = None,
        }
    }

    /// Builds the search prefixes (for a node that will not change: read from disk, or
    /// written by a checkpoint).
    pub fn index(&mut self) {
        match self {
            Node::Leaf(l) => l.prefix = Some(prefixes(&l.keys)),
            Node::Interior(i) => i.prefix = Some(prefixes(&i.seps)),
        }
    }

    /// Entries in this node's subtree.
    pub fn count(&self) -> u64 {
        match self {
            Node::Leaf(l) => l.keys.len() as u64,
            Node::Interior(i) => i.children.iter().map(|c| c.count).sum(),
        }
    }

    /// Encoded payload size under `limits`.
    pub fn encoded_len(&self, limits: &TreeLimits) -> usize {
        match self {
            Node::Leaf(l) => {
                4 + l
                    .keys
                    .iter()
                    .zip(&l.vals)
                    .map(|(k, v)| limits.leaf_entry_len(k, v))
                    .sum::<usize>()
            }
            Node::Interior(i) => {
                4 + 16 * i.children.len() + i.seps.iter().map(|s| 2 + s.len()).sum::<usize>()
            }
        }
    }

    /// Rough bytes of memory the decoded node takes (for the buffer pool's budget).
    pub fn memory_charge(&self, limits: &TreeLimits) -> usize {
        // The decoded node shares the page buffer; its vectors add a little.
        limits.page_size
            + match self {
                Node::Leaf(l) => l.keys.len() * 64,
                Node::Interior(i) => i.children.len() * 64,
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

/// Decodes a node page's payload (after the page header) into a node whose keys and values
/// share `page`'s buffer.
pub fn decode_node(
    kind: u8,
    page: &Bytes,
    payload_at: usize,
    payload_len: usize,
) -> Result<Node, FormatError> {
    let payload = page.slice(payload_at..payload_at + payload_len);
    let base = payload.as_ptr() as usize;
    let slice_of = |s: &[u8]| {
        let at = s.as_ptr() as usize - base;
        payload.slice(at..at + s.len())
    };
    match kind {
        fmt::KIND_LEAF => {
            let entries = fmt::decode_leaf(&payload)?;
            let mut leaf = Leaf {
                keys: Vec::with_capacity(entries.len()),
                vals: Vec::with_capacity(entries.len()),
                prefix: None,
            };
            for e in entries {
                leaf.keys.push(slice_of(e.key));
                leaf.vals.push(match e.value {
                    LeafValue::Inline(v) => Val::Inline(slice_of(v)),
                    LeafValue::Overflow { len, first_page } => {
                        if first_page < 2 {
                            return Err(FormatError::InvalidField {
                                field: "overflow first page",
                                value: first_page,
                            });
                        }
                        Val::Overflow { len, first_page }
                    }
                });
            }
            Ok(Node::Leaf(leaf))
        }
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
                seps: seps.into_iter().map(slice_of).collect(),
                prefix: None,
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
            let entries: Vec<LeafEntry<'_>> = l
                .keys
                .iter()
                .zip(&l.vals)
                .map(|(k, v)| LeafEntry {
                    key: k,
                    value: match v {
                        Val::Inline(b) => LeafValue::Inline(b),
                        Val::Overflow { len, first_page } => LeafValue::Overflow {
                            len: *len,
                            first_page: *first_page,
                        },
                    },
                })
                .collect();
            fmt::encode_leaf(&entries, out);
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
                    Ptr::Dirty(_) => panic!("encode_node: dirty child"),
                })
                .collect();
            let seps: Vec<&[u8]> = i.seps.iter().map(|s| &s[..]).collect();
            fmt::encode_interior(&children, &seps, out);
            fmt::KIND_INTERIOR
        }
    }
}
