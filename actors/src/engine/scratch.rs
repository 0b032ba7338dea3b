//! Sorted runs of a bulk write, spilled to scratch pages of the page file (an external
//! merge sort): [`super::BulkWrite::stage`] sorts each part and writes it as a run; the
//! commit merges the runs in key order into the tree, so a bulk load larger than memory
//! touches every leaf once and holds only a page batch per run.
//!
//! A run is a byte stream of records cut into page payloads (a record may cross pages):
//!
//! ```text
//! u8 op (0 put, 1 delete, 2 set, 3 unset) | u32 key length | u32 value length | key | value
//! ```
//!
//! Scratch pages are allocated from the free space like any page, referenced by nothing on
//! disk (a crash leaves them free), and released as soon as the merge has read them, so the
//! tree's new pages reuse them.

use bytes::{Bytes, BytesMut};

use super::EngineInner;
use super::collection::Op;
use crate::error::{Error, Result};
use crate::tree::PageSource;

/// Pages read at once from a run.
const READ_BATCH: u64 = 32;

const HEADER: usize = 9;

/// The key of a key op (the only ops a run holds).
pub(crate) fn op_key(op: &Op) -> Option<&Bytes> {
    match op {
        Op::Put(k, _) | Op::Delete(k) | Op::Set(k, _) | Op::Unset(k) => Some(k),
        _ => None,
    }
}

/// Encodes sorted key ops as a run: page payloads of at most `capacity` bytes.
pub(crate) fn encode_run(ops: &[Op], capacity: usize) -> Vec<Bytes> {
    let mut pages = Vec::new();
    let mut cur = BytesMut::with_capacity(capacity);
    let mut put = |bytes: &[u8], cur: &mut BytesMut| {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = rest.len().min(capacity - cur.len());
            cur.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if cur.len() == capacity {
                pages.push(cur.split().freeze());
                cur.reserve(capacity);
            }
        }
    };
    for op in ops {
        let (tag, k, v): (u8, &[u8], &[u8]) = match op {
            Op::Put(k, v) => (0, k, v),
            Op::Delete(k) => (1, k, &[]),
            Op::Set(k, v) => (2, k, v),
            Op::Unset(k) => (3, k, &[]),
            _ => unreachable!("runs hold key ops only (checked by the caller)"),
        };
        let mut h = [0u8; HEADER];
        h[0] = tag;
        h[1..5].copy_from_slice(&(k.len() as u32).to_le_bytes());
        h[5..9].copy_from_slice(&(v.len() as u32).to_le_bytes());
        put(&h, &mut cur);
        put(k, &mut cur);
        put(v, &mut cur);
    }
    if !cur.is_empty() {
        pages.push(cur.freeze());
    }
    pages
}

/// One sorted input of the merge.
pub(crate) enum Source {
    /// The last staged part, still in memory.
    Memory(std::vec::IntoIter<Op>),
    /// A run on scratch pages `next..end`; `buf[pos..]` holds bytes read but not parsed.
    Pages {
        next: u64,
        end: u64,
        buf: Bytes,
        pos: usize,
    },
}

impl Source {
    /// A run on pages `first..first + n`.
    pub(crate) fn pages(first: u64, n: u64) -> Source {
        Source::Pages {
            next: first,
            end: first + n,
            buf: Bytes::new(),
            pos: 0,
        }
    }

    /// The pages this source still holds (released by the caller on failure).
    pub(crate) fn held(&self) -> Option<(u64, u64)> {
        match self {
            Source::Pages { next, end, .. } if next < end => Some((*next, end - next)),
            _ => None,
        }
    }

    /// The next op, reading pages as needed; pages read are released to the allocator at
    /// once (their bytes are in memory now).
    pub(crate) async fn next(&mut self, engine: &EngineInner) -> Result<Option<Op>> {
        let (next, end, buf, pos) = match self {
            Source::Memory(ops) => return Ok(ops.next()),
            Source::Pages {
                next,
                end,
                buf,
                pos,
            } => (next, end, buf, pos),
        };
        loop {
            let avail = &buf[*pos..];
            if avail.len() >= HEADER {
                let klen = u32::from_le_bytes(avail[1..5].try_into().expect("4 bytes")) as usize;
                let vlen = u32::from_le_bytes(avail[5..9].try_into().expect("4 bytes")) as usize;
                let len = HEADER + klen + vlen;
                if avail.len() >= len {
                    let at = *pos + HEADER;
                    let k = buf.slice(at..at + klen);
                    let v = buf.slice(at + klen..at + klen + vlen);
                    let op = match avail[0] {
                        0 => Op::Put(k, v),
                        1 => Op::Delete(k),
                        2 => Op::Set(k, v),
                        3 => Op::Unset(k),
                        t => return Err(bad_run(engine, *next, format!("op tag {t}"))),
                    };
                    *pos += len;
                    return Ok(Some(op));
                }
            }
            if *next >= *end {
                if avail.is_empty() {
                    return Ok(None);
                }
                return Err(bad_run(engine, *next, "a record cut off at its end".into()));
            }
            // Read enough pages for the record in progress (at least a batch).
            let want = if avail.len() >= HEADER {
                let klen = u32::from_le_bytes(avail[1..5].try_into().expect("4 bytes")) as u64;
                let vlen = u32::from_le_bytes(avail[5..9].try_into().expect("4 bytes")) as u64;
                (HEADER as u64 + klen + vlen).div_ceil(engine.pages.limits().capacity as u64)
            } else {
                1
            };
            let n = want.max(READ_BATCH).min(*end - *next);
            let pages = engine.pages.read_scratch(*next, n).await?;
            engine.lock_alloc().release(*next, n);
            *next += n;
            let mut joined =
                BytesMut::with_capacity(avail.len() + pages.iter().map(Bytes::len).sum::<usize>());
            joined.extend_from_slice(avail);
            for p in &pages {
                joined.extend_from_slice(p);
            }
            *buf = joined.freeze();
            *pos = 0;
        }
    }
}

fn bad_run(engine: &EngineInner, page: u64, what: String) -> Error {
    Error::Corruption {
        file: engine.pages.path().to_path_buf(),
        offset: page * engine.pages.page_size() as u64,
        what: format!("scratch run of a bulk write: {what}"),
    }
}
