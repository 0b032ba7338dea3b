//! B+tree node payloads: what follows the [page header](super::page) of a tree page.
//!
//! All integers little-endian. Keys in a node are strictly increasing (byte order); the
//! decoders check it, so a damaged or misordered node is an error, never a wrong answer.
//!
//! Leaf (page kind [`KIND_LEAF`]):
//! ```text
//! u16 entry count n, u16 reserved (0)
//! n times:
//!   u16 key length, u8 value kind (0 inline, 1 overflow)
//!   inline:   u32 value length, key bytes, value bytes
//!   overflow: u64 value length, u64 first overflow page id, key bytes
//! ```
//! Interior (page kind [`KIND_INTERIOR`]):
//! ```text
//! u16 child count m (>= 1), u16 reserved (0)
//! m times: u64 child page id, u64 entries in the child's subtree
//! m - 1 times: u16 separator length, separator bytes   (child i holds keys < separator i)
//! ```
//! Overflow (page kind [`KIND_OVERFLOW`]): `u64 next page id (0 = last)`, then value bytes.

use super::FormatError;

/// Page kind of a leaf node.
pub const KIND_LEAF: u8 = 1;
/// Page kind of an interior node.
pub const KIND_INTERIOR: u8 = 2;
/// Page kind of an overflow page.
pub const KIND_OVERFLOW: u8 = 3;
/// Page kind of a scratch page: a sorted run of a bulk write in progress, referenced by
/// nothing on disk (a crash leaves it as free space).
pub const KIND_SCRATCH: u8 = 6;
/// The longest key a node can hold.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// A leaf value: inline bytes, or a chain of overflow pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafValue<'a> {
    /// Stored in the leaf.
    Inline(&'a [u8]),
    /// Stored in overflow pages starting at `first_page`.
    Overflow {
        /// Total length of the value.
        len: u64,
        /// The first overflow page.
        first_page: u64,
    },
}

/// One entry of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafEntry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: LeafValue<'a>,
}

/// A child reference of an interior node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    /// The child's page.
    pub page: u64,
    /// Entries in the child's subtree (for positional access and O(1) length).
    pub count: u64,
}

/// Bytes a leaf entry takes.
pub fn leaf_entry_len(entry: &LeafEntry<'_>) -> usize {
    3 + entry.key.len()
        + match entry.value {
            LeafValue::Inline(v) => 4 + v.len(),
            LeafValue::Overflow { .. } => 16,
        }
}

/// Bytes of a leaf holding `entries`.
pub fn leaf_len(entries: &[LeafEntry<'_>]) -> usize {
    4 + entries.iter().map(leaf_entry_len).sum::<usize>()
}

/// Appends a leaf payload.
///
/// # Panics
/// If there are more than `u16::MAX` entries, a key is longer than [`MAX_KEY_LEN`], an inline
/// value is 4 GiB or more, or keys are not strictly increasing: the tree sizes and orders
/// nodes before encoding them, so these are programming errors.
pub fn encode_leaf(entries: &[LeafEntry<'_>], out: &mut Vec<u8>) {
    let n = u16::try_from(entries.len()).expect("leaf entry count fits u16");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    for (i, e) in entries.iter().enumerate() {
        assert!(
            i == 0 || entries[i - 1].key < e.key,
            "leaf keys must be strictly increasing"
        );
        let klen = u16::try_from(e.key.len()).expect("key length fits u16");
        out.extend_from_slice(&klen.to_le_bytes());
        match e.value {
            LeafValue::Inline(v) => {
                out.push(0);
                let vlen = u32::try_from(v.len()).expect("inline value fits u32");
                out.extend_from_slice(&vlen.to_le_bytes());
                out.extend_from_slice(e.key);
                out.extend_from_slice(v);
            }
            LeafValue::Overflow { len, first_page } => {
                out.push(1);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&first_page.to_le_bytes());
                out.extend_from_slice(e.key);
            }
        }
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(FormatError::Truncated {
                needed: (self.pos as u64).saturating_add(n as u64),
                available: self.buf.len() as u64,
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, FormatError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, FormatError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, FormatError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn reserved(r: &mut Reader<'_>) -> Result<(), FormatError> {
    let v = r.u16()?;
    if v != 0 {
        return Err(FormatError::InvalidField {
            field: "node reserved bytes",
            value: v.into(),
        });
    }
    Ok(())
}

/// The first 8 bytes of `key` as a big-endian number, zero padded: a smaller number means a
/// smaller key; equal numbers need the full comparison.
#[inline]
fn prefix8(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(b) => u64::from_be_bytes(*b),
        None => {
            let mut b = [0u8; 8];
            b[..key.len()].copy_from_slice(key);
            u64::from_be_bytes(b)
        }
    }
}

#[inline]
fn ordered(prev: Option<&[u8]>, key: &[u8]) -> Result<(), FormatError> {
    // Most keys differ in their first 8 bytes: compare those as one number first.
    if prev.is_some_and(|p| {
        let (a, b) = (prefix8(p), prefix8(key));
        a > b || (a == b && p >= key)
    }) {
        return Err(FormatError::InvalidField {
            field: "key order",
            value: key.len() as u64,
        });
    }
    Ok(())
}

/// Decodes a leaf payload (bytes after the entries, e.g. page padding, are ignored).
pub fn decode_leaf(payload: &[u8]) -> Result<Vec<LeafEntry<'_>>, FormatError> {
    let mut out = Vec::new();
    visit_leaf(payload, |n, _, e| {
        if out.is_empty() {
            out.reserve_exact(n);
        }
        out.push(e)
    })?;
    Ok(out)
}

/// Checks a leaf payload and hands each entry to `entry` in key order, with the number of
/// entries and the offset in `payload` where the entry starts. The checks are
/// [`decode_leaf`]'s (it is built on this).
pub fn visit_leaf<'a>(
    payload: &'a [u8],
    mut entry: impl FnMut(usize, usize, LeafEntry<'a>),
) -> Result<(), FormatError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let n = r.u16()? as usize;
    reserved(&mut r)?;
    // Each entry takes at least 7 bytes: refuse counts the payload cannot hold before
    // allocating for them.
    if n > payload.len() / 7 {
        return Err(FormatError::InvalidField {
            field: "leaf entry count",
            value: n as u64,
        });
    }
    let mut prev: Option<&[u8]> = None;
    for _ in 0..n {
        let at = r.pos;
        let klen = r.u16()? as usize;
        let (key, value) = match r.u8()? {
            0 => {
                let vlen = r.u32()? as usize;
                let key = r.take(klen)?;
                (key, LeafValue::Inline(r.take(vlen)?))
            }
            1 => {
                let len = r.u64()?;
                let first_page = r.u64()?;
                if first_page < 2 {
                    return Err(FormatError::InvalidField {
                        field: "overflow page id",
                        value: first_page,
                    });
                }
                (r.take(klen)?, LeafValue::Overflow { len, first_page })
            }
            k => {
                return Err(FormatError::InvalidField {
                    field: "leaf value kind",
                    value: k.into(),
                });
            }
        };
        ordered(prev, key)?;
        prev = Some(key);
        entry(n, at, LeafEntry { key, value });
    }
    Ok(())
}

/// Bytes of an interior node with these children and separators.
pub fn interior_len(children: &[Child], separators: &[&[u8]]) -> usize {
    4 + 16 * children.len() + separators.iter().map(|s| 2 + s.len()).sum::<usize>()
}

/// Appends an interior payload.
///
/// # Panics
/// If there is not exactly one separator fewer than children, no child, more than
/// `u16::MAX` children, a separator too long, or separators not strictly increasing
/// (programming errors).
pub fn encode_interior(children: &[Child], separators: &[&[u8]], out: &mut Vec<u8>) {
    assert!(
        !children.is_empty() && separators.len() + 1 == children.len(),
        "m children need m - 1 separators"
    );
    let m = u16::try_from(children.len()).expect("child count fits u16");
    out.extend_from_slice(&m.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    for c in children {
        out.extend_from_slice(&c.page.to_le_bytes());
        out.extend_from_slice(&c.count.to_le_bytes());
    }
    for (i, s) in separators.iter().enumerate() {
        assert!(
            i == 0 || separators[i - 1] < *s,
            "separators must be strictly increasing"
        );
        let len = u16::try_from(s.len()).expect("separator length fits u16");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(s);
    }
}

/// Decodes an interior payload.
pub fn decode_interior(payload: &[u8]) -> Result<(Vec<Child>, Vec<&[u8]>), FormatError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let m = r.u16()? as usize;
    reserved(&mut r)?;
    if m == 0 || m > payload.len() / 16 {
        return Err(FormatError::InvalidField {
            field: "interior child count",
            value: m as u64,
        });
    }
    let mut children = Vec::with_capacity(m);
    for _ in 0..m {
        let page = r.u64()?;
        if page < 2 {
            return Err(FormatError::InvalidField {
                field: "child page id",
                value: page,
            });
        }
        children.push(Child {
            page,
            count: r.u64()?,
        });
    }
    let mut seps = Vec::with_capacity(m - 1);
    let mut prev: Option<&[u8]> = None;
    for _ in 1..m {
        let len = r.u16()? as usize;
        let s = r.take(len)?;
        ordered(prev, s)?;
        prev = Some(s);
        seps.push(s);
    }
    Ok((children, seps))
}

/// Appends an overflow page payload.
pub fn encode_overflow(next_page: u64, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&next_page.to_le_bytes());
    out.extend_from_slice(data);
}

/// Decodes an overflow payload: the next page (0 = last) and this page's bytes.
pub fn decode_overflow(payload: &[u8]) -> Result<(u64, &[u8]), FormatError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let next = r.u64()?;
    if next == 1 {
        return Err(FormatError::InvalidField {
            field: "overflow next page id",
            value: next,
        });
    }
    Ok((next, &payload[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted_keys() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::btree_set(proptest::collection::vec(any::<u8>(), 0..20), 0..30)
            .prop_map(|s| s.into_iter().collect())
    }

    /// Keys over a two-letter alphabet, so that many share their first bytes.
    fn close_key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..2, 0..12)
    }

    proptest! {
        #[test]
        fn order_check_agrees_with_slice_order(a in close_key(), b in close_key()) {
            prop_assert_eq!(ordered(Some(&a), &b).is_ok(), a < b);
            prop_assert!(ordered(None, &b).is_ok());
        }

        #[test]
        fn leaf_round_trips(keys in sorted_keys(), vals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 30), ovf in any::<u64>()) {
            let entries: Vec<LeafEntry<'_>> = keys.iter().zip(vals.iter()).enumerate().map(|(i, (k, v))| LeafEntry {
                key: k,
                value: if i % 3 == 2 { LeafValue::Overflow { len: ovf, first_page: 2 + i as u64 } } else { LeafValue::Inline(v) },
            }).collect();
            let mut buf = Vec::new();
            encode_leaf(&entries, &mut buf);
            prop_assert_eq!(buf.len(), leaf_len(&entries));
            buf.extend_from_slice(&[0u8; 17]); // page padding is ignored
            prop_assert_eq!(decode_leaf(&buf).expect("decode"), entries);
        }

        #[test]
        fn interior_round_trips(keys in sorted_keys(), counts in proptest::collection::vec(any::<u64>(), 31)) {
            let children: Vec<Child> = (0..=keys.len()).map(|i| Child { page: 2 + i as u64, count: counts[i] }).collect();
            let seps: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let mut buf = Vec::new();
            encode_interior(&children, &seps, &mut buf);
            prop_assert_eq!(buf.len(), interior_len(&children, &seps));
            let (c, s) = decode_interior(&buf).expect("decode");
            prop_assert_eq!(c, children);
            prop_assert_eq!(s, seps);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_leaf(&bytes);
            let _ = decode_interior(&bytes);
            let _ = decode_overflow(&bytes);
        }
    }

    #[test]
    fn misordered_and_bogus_nodes_are_errors() {
        // Two entries with equal keys, hand-built.
        let mut buf = vec![2, 0, 0, 0];
        for _ in 0..2 {
            buf.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, b'k', b'v']);
        }
        assert!(decode_leaf(&buf).is_err());
        assert!(
            decode_leaf(&[0xFF, 0xFF, 0, 0]).is_err(),
            "count the payload cannot hold"
        );
        assert!(decode_interior(&[0, 0, 0, 0]).is_err(), "no child");
        let mut one = Vec::new();
        encode_interior(&[Child { page: 1, count: 0 }], &[], &mut one);
        assert!(
            decode_interior(&one).is_err(),
            "child page 1 is a superblock slot"
        );
        assert_eq!(decode_overflow(&[0; 8]), Ok((0, &[][..])));
    }
}
