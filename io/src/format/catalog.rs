//! The catalog and free-list pages of the page file, and the payload of the WAL records
//! that collections write.
//!
//! All integers little-endian. Catalog and free-list pages form chains: each payload starts
//! with the next page of the chain (0 = last).
//!
//! Catalog page (page kind [`KIND_CATALOG`]):
//! ```text
//! u64 next page, u32 entry count n
//! n times:
//!   u32 collection id, u8 kind, u64 root page, u64 entry count, u64 checkpoint LSN,
//!   u16 name length, name (UTF-8), u16 key type length, key type, u16 value type length,
//!   value type
//! ```
//! Free-list page (page kind [`KIND_FREELIST`]):
//! ```text
//! u64 next page, u32 run count n, n times: u64 first page, u64 page count
//! ```
//! Runs are sorted and disjoint: each starts at or after the end of the one before (and at
//! page 2 or later).
//! Collection record (the payload of a WAL record):
//! ```text
//! u8 tag 1 (create): u32 id, u8 kind, then name, key type, value type as above
//! u8 tag 2 (write):  u32 id, u32 op count n, n ops:
//!                      u8 1 (put):    u32 key length, key, u32 value length, value
//!                      u8 2 (delete): u32 key length, key
//!                      u8 3 (clear)
//! ```
//! Decoders check every length against the buffer and return [`FormatError`], never panic.

use super::FormatError;
use super::node::Reader;

/// Page kind of a catalog page.
pub const KIND_CATALOG: u8 = 4;
/// Page kind of a free-list page.
pub const KIND_FREELIST: u8 = 5;
/// Longest collection name, key type or value type name in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// One collection in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Collection id (never reused).
    pub id: u32,
    /// What the collection is (map, set, list...).
    pub kind: u8,
    /// Root page of its tree.
    pub root: u64,
    /// Entries in the tree.
    pub count: u64,
    /// Every WAL record of this collection up to this LSN is in the tree.
    pub checkpoint_lsn: u64,
    /// The collection's name.
    pub name: String,
    /// The key type it was created with.
    pub key_type: String,
    /// The value type it was created with.
    pub value_type: String,
}

/// Writes a name, cut to [`MAX_NAME_LEN`] bytes at a character boundary (callers check
/// names first; the cut keeps the bytes valid UTF-8 whatever they pass).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn get_str(r: &mut Reader<'_>) -> Result<String, FormatError> {
    let len = r.u16()? as usize;
    if len > MAX_NAME_LEN {
        return Err(FormatError::InvalidField {
            field: "name length",
            value: len as u64,
        });
    }
    let b = r.take(len)?;
    String::from_utf8(b.to_vec()).map_err(|_| FormatError::InvalidField {
        field: "name encoding",
        value: len as u64,
    })
}

impl CatalogEntry {
    /// Bytes the entry takes in a catalog page.
    pub fn encoded_len(&self) -> usize {
        4 + 1 + 24 + 6 + self.name.len() + self.key_type.len() + self.value_type.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(self.kind);
        out.extend_from_slice(&self.root.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.checkpoint_lsn.to_le_bytes());
        put_str(out, &self.name);
        put_str(out, &self.key_type);
        put_str(out, &self.value_type);
    }

    fn decode(r: &mut Reader<'_>) -> Result<CatalogEntry, FormatError> {
        let id = r.u32()?;
        let kind = r.u8()?;
        let root = r.u64()?;
        if root < 2 {
            return Err(FormatError::InvalidField {
                field: "collection root page",
                value: root,
            });
        }
        Ok(CatalogEntry {
            id,
            kind,
            root,
            count: r.u64()?,
            checkpoint_lsn: r.u64()?,
            name: get_str(r)?,
            key_type: get_str(r)?,
            value_type: get_str(r)?,
        })
    }
}

/// Splits entries into catalog page payloads of at most `capacity` bytes each; the caller
/// fills in the next-page links with [`set_next`].
pub fn encode_catalog(entries: &[CatalogEntry], capacity: usize) -> Vec<Vec<u8>> {
    let mut pages = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut n = 0u32;
    let start = |v: &mut Vec<u8>| {
        v.clear();
        v.extend_from_slice(&[0; 12]);
    };
    start(&mut cur);
    for e in entries {
        if n > 0 && cur.len() + e.encoded_len() > capacity {
            cur[8..12].copy_from_slice(&n.to_le_bytes());
            pages.push(std::mem::take(&mut cur));
            start(&mut cur);
            n = 0;
        }
        e.encode(&mut cur);
        n += 1;
    }
    cur[8..12].copy_from_slice(&n.to_le_bytes());
    pages.push(cur);
    pages
}

/// Sets the next-page link of a catalog or free-list payload.
pub fn set_next(payload: &mut [u8], next: u64) {
    payload[..8].copy_from_slice(&next.to_le_bytes());
}

/// Decodes a catalog page payload: the next page (0 = last) and its entries.
pub fn decode_catalog(payload: &[u8]) -> Result<(u64, Vec<CatalogEntry>), FormatError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let next = chain_next(&mut r)?;
    let n = r.u32()? as usize;
    if n > payload.len() / 35 {
        return Err(FormatError::InvalidField {
            field: "catalog entry count",
            value: n as u64,
        });
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(CatalogEntry::decode(&mut r)?);
    }
    Ok((next, out))
}

fn chain_next(r: &mut Reader<'_>) -> Result<u64, FormatError> {
    let next = r.u64()?;
    if next == 1 {
        return Err(FormatError::InvalidField {
            field: "next page id",
            value: next,
        });
    }
    Ok(next)
}

/// Splits free runs `(first page, count)` into free-list page payloads of at most
/// `capacity` bytes; the caller fills in the links with [`set_next`].
pub fn encode_freelist(runs: &[(u64, u64)], capacity: usize) -> Vec<Vec<u8>> {
    let per_page = ((capacity - 12) / 16).max(1);
    let mut pages = Vec::new();
    for chunk in runs.chunks(per_page) {
        let mut p = vec![0u8; 8];
        p.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        for (first, count) in chunk {
            p.extend_from_slice(&first.to_le_bytes());
            p.extend_from_slice(&count.to_le_bytes());
        }
        pages.push(p);
    }
    if pages.is_empty() {
        pages.push(vec![0u8; 12]);
    }
    pages
}

/// Pages a free list of `runs` runs takes.
pub fn freelist_pages(runs: usize, capacity: usize) -> usize {
    runs.div_ceil(((capacity - 12) / 16).max(1)).max(1)
}

/// Decodes a free-list page payload: the next page and its runs.
pub fn decode_freelist(payload: &[u8]) -> Result<(u64, Vec<(u64, u64)>), FormatError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let next = chain_next(&mut r)?;
    let n = r.u32()? as usize;
    if n > payload.len() / 16 {
        return Err(FormatError::InvalidField {
            field: "free run count",
            value: n as u64,
        });
    }
    let mut runs = Vec::with_capacity(n);
    // One past the previous run: runs are sorted and disjoint (the allocator's free map),
    // so a page whose runs overlap never hands out a page twice.
    let mut prev_end = 2u64;
    for _ in 0..n {
        let first = r.u64()?;
        let count = r.u64()?;
        if first < prev_end || count == 0 || first.checked_add(count).is_none() {
            return Err(FormatError::InvalidField {
                field: "free run",
                value: first,
            });
        }
        prev_end = first + count;
        runs.push((first, count));
    }
    Ok((next, runs))
}

/// One change inside a write record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOp<'a> {
    /// Insert or replace.
    Put(&'a [u8], &'a [u8]),
    /// Remove.
    Delete(&'a [u8]),
    /// Remove everything.
    Clear,
}

/// A collection record of the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// A collection was created.
    Create {
        /// Its id.
        id: u32,
        /// Its kind.
        kind: u8,
        /// Its name.
        name: String,
        /// Its key type.
        key_type: String,
        /// Its value type.
        value_type: String,
    },
    /// Changes to one collection, applied atomically.
    Write {
        /// The collection.
        id: u32,
        /// The changes, in order.
        ops: Vec<RecordOp<'a>>,
    },
}

/// Tag of a create record.
pub const RECORD_CREATE: u8 = 1;
/// Tag of a write record.
pub const RECORD_WRITE: u8 = 2;

/// Encodes a create record.
pub fn encode_create(id: u32, kind: u8, name: &str, key_type: &str, value_type: &str) -> Vec<u8> {
    let mut out = vec![RECORD_CREATE];
    out.extend_from_slice(&id.to_le_bytes());
    out.push(kind);
    put_str(&mut out, name);
    put_str(&mut out, key_type);
    put_str(&mut out, value_type);
    out
}

/// Bytes an op takes in a write record.
pub fn op_len(op: &RecordOp<'_>) -> usize {
    match op {
        RecordOp::Put(k, v) => 9 + k.len() + v.len(),
        RecordOp::Delete(k) => 5 + k.len(),
        RecordOp::Clear => 1,
    }
}

/// Encodes a write record.
///
/// # Panics
/// If a key or value is 4 GiB or longer (the caller checks the documented limits first).
pub fn encode_write(id: u32, ops: &[RecordOp<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + ops.iter().map(op_len).sum::<usize>());
    out.push(RECORD_WRITE);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    let len32 = |n: usize| {
        u32::try_from(n)
            .expect("key or value under 4 GiB")
            .to_le_bytes()
    };
    for op in ops {
        match op {
            RecordOp::Put(k, v) => {
                out.push(1);
                out.extend_from_slice(&len32(k.len()));
                out.extend_from_slice(k);
                out.extend_from_slice(&len32(v.len()));
                out.extend_from_slice(v);
            }
            RecordOp::Delete(k) => {
                out.push(2);
                out.extend_from_slice(&len32(k.len()));
                out.extend_from_slice(k);
            }
            RecordOp::Clear => out.push(3),
        }
    }
    out
}

/// Decodes a collection record.
pub fn decode_record(buf: &[u8]) -> Result<Record<'_>, FormatError> {
    let mut r = Reader { buf, pos: 0 };
    match r.u8()? {
        RECORD_CREATE => {
            let rec = Record::Create {
                id: r.u32()?,
                kind: r.u8()?,
                name: get_str(&mut r)?,
                key_type: get_str(&mut r)?,
                value_type: get_str(&mut r)?,
            };
            trailing(&r)?;
            Ok(rec)
        }
        RECORD_WRITE => {
            let id = r.u32()?;
            let n = r.u32()? as usize;
            if n > buf.len() {
                return Err(FormatError::InvalidField {
                    field: "op count",
                    value: n as u64,
                });
            }
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(match r.u8()? {
                    1 => {
                        let kl = r.u32()? as usize;
                        let k = r.take(kl)?;
                        let vl = r.u32()? as usize;
                        RecordOp::Put(k, r.take(vl)?)
                    }
                    2 => {
                        let kl = r.u32()? as usize;
                        RecordOp::Delete(r.take(kl)?)
                    }
                    3 => RecordOp::Clear,
                    other => {
                        return Err(FormatError::InvalidField {
                            field: "op tag",
                            value: other.into(),
                        });
                    }
                });
            }
            trailing(&r)?;
            Ok(Record::Write { id, ops })
        }
        other => Err(FormatError::InvalidField {
            field: "record tag",
            value: other.into(),
        }),
    }
}

fn trailing(r: &Reader<'_>) -> Result<(), FormatError> {
    if r.pos != r.buf.len() {
        return Err(FormatError::InvalidField {
            field: "trailing bytes after the record",
            value: (r.buf.len() - r.pos) as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = CatalogEntry> {
        (
            any::<u32>(),
            any::<u8>(),
            2u64..,
            any::<u64>(),
            any::<u64>(),
            "[a-z]{0,40}",
            ".{0,20}",
            ".{0,20}",
        )
            .prop_map(
                |(id, kind, root, count, checkpoint_lsn, name, key_type, value_type)| {
                    CatalogEntry {
                        id,
                        kind,
                        root,
                        count,
                        checkpoint_lsn,
                        name,
                        key_type,
                        value_type,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn catalog_round_trips(entries in prop::collection::vec(entry(), 0..200)) {
            let pages = encode_catalog(&entries, 4064);
            let mut got = Vec::new();
            for p in &pages {
                prop_assert!(p.len() <= 4064);
                let (next, e) = decode_catalog(p).expect("valid catalog");
                prop_assert_eq!(next, 0);
                got.extend(e);
            }
            prop_assert_eq!(got, entries);
        }

        #[test]
        fn freelist_round_trips(gaps in prop::collection::vec((0u64..1 << 30, 1u64..1000), 0..1000)) {
            // Sorted, disjoint runs, as the allocator keeps them.
            let mut end = 2;
            let runs: Vec<(u64, u64)> = gaps.iter().map(|&(gap, count)| {
                let first = end + gap;
                end = first + count;
                (first, count)
            }).collect();
            let pages = encode_freelist(&runs, 4064);
            prop_assert_eq!(pages.len(), freelist_pages(runs.len(), 4064));
            let mut got = Vec::new();
            for p in &pages {
                prop_assert!(p.len() <= 4064);
                got.extend(decode_freelist(p).expect("valid free list").1);
            }
            prop_assert_eq!(got, runs);
        }

        #[test]
        fn write_record_round_trips(ops in prop::collection::vec(
            prop_oneof![
                (prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec(any::<u8>(), 0..100)).prop_map(|(k, v)| (1u8, k, v)),
                prop::collection::vec(any::<u8>(), 0..40).prop_map(|k| (2u8, k, vec![])),
                Just((3u8, vec![], vec![])),
            ], 0..50), id in any::<u32>()) {
            let ops: Vec<RecordOp<'_>> = ops.iter().map(|(t, k, v)| match t {
                1 => RecordOp::Put(k, v),
                2 => RecordOp::Delete(k),
                _ => RecordOp::Clear,
            }).collect();
            let buf = encode_write(id, &ops);
            prop_assert_eq!(decode_record(&buf).expect("valid record"), Record::Write { id, ops: ops.clone() });
        }

        #[test]
        fn decoders_never_panic(buf in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_record(&buf);
            let _ = decode_catalog(&buf);
            let _ = decode_freelist(&buf);
        }
    }

    /// Overlapping or unsorted runs were accepted, and the allocator built from them at open
    /// could hand out one page twice (or trip its double-free assertion).
    #[test]
    fn overlapping_free_runs_are_rejected() {
        let page = |runs: &[(u64, u64)]| {
            let mut p = vec![0u8; 8];
            p.extend_from_slice(&(runs.len() as u32).to_le_bytes());
            for (first, count) in runs {
                p.extend_from_slice(&first.to_le_bytes());
                p.extend_from_slice(&count.to_le_bytes());
            }
            p
        };
        assert!(decode_freelist(&page(&[(5, 3), (8, 1), (20, 2)])).is_ok());
        for bad in [&[(5, 3), (7, 1)][..], &[(9, 1), (5, 2)], &[(5, 1), (5, 1)]] {
            assert!(
                matches!(
                    decode_freelist(&page(bad)),
                    Err(FormatError::InvalidField {
                        field: "free run",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn create_record_round_trips() {
        let buf = encode_create(7, 1, "users", "u64", "User");
        assert_eq!(
            decode_record(&buf).expect("valid record"),
            Record::Create {
                id: 7,
                kind: 1,
                name: "users".into(),
                key_type: "u64".into(),
                value_type: "User".into()
            }
        );
        assert!(decode_record(&buf[..buf.len() - 1]).is_err());
    }
}
