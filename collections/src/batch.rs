//! Large batches of key ops in bounded memory, shared by the map and the set.

use bytes::BytesMut;
use persistx_actors::engine::{Collection, Op, OpResult};

use crate::error::Result;

/// Bytes of encoded ops sent at a time: a batch that fits is one logged write; a larger
/// one becomes a bulk write staged in windows of this size (sorted runs on scratch pages,
/// merged into the tree at commit).
const WINDOW_BYTES: usize = 16 << 20;
/// Ops sent at a time (bounds the per-op overhead of a window of small ops).
const WINDOW_OPS: usize = 1 << 16;

/// One key op, encoded: a value sets the key, `None` removes it.
pub(crate) type Encoded = (Vec<u8>, Option<Vec<u8>>);

/// Applies every encoded op in one atomic commit (for one key the last op wins); returns
/// how many found their key present. Memory holds one window at a time, whatever the
/// batch's size.
pub(crate) async fn write_encoded(
    coll: &Collection,
    ops: impl Iterator<Item = Result<Encoded>>,
) -> Result<u64> {
    let mut ops = ops;
    let Some((first, more)) = window(&mut ops)? else {
        return Ok(0);
    };
    if !more {
        let results = coll.write(first).await?;
        return Ok(results
            .iter()
            .filter(|r| matches!(r, OpResult::Existed(true)))
            .count() as u64);
    }
    let mut bulk = coll.bulk().await?;
    bulk.stage(first).await?;
    while let Some((part, _)) = window(&mut ops)? {
        bulk.stage(part).await?;
    }
    Ok(bulk.commit().await?)
}

/// Packs ops until a window is full; `None` when there are none left, else the ops and
/// whether more remain. Keys and values go into shared 64 KiB buffers (two allocations per
/// op would fragment the heap of a large load).
fn window(ops: &mut impl Iterator<Item = Result<Encoded>>) -> Result<Option<(Vec<Op>, bool)>> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut size = 0usize;
    let mut more = false;
    for op in ops.by_ref() {
        let (key, val) = op?;
        let len = key.len() + val.as_ref().map_or(0, Vec::len);
        if buf.capacity() - buf.len() < len {
            buf.reserve(len.max(64 << 10));
        }
        size += len + 64;
        buf.extend_from_slice(&key);
        let kb = buf.split().freeze();
        out.push(match val {
            Some(val) => {
                buf.extend_from_slice(&val);
                Op::Set(kb, buf.split().freeze())
            }
            None => Op::Unset(kb),
        });
        if size >= WINDOW_BYTES || out.len() >= WINDOW_OPS {
            more = true;
            break;
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some((out, more)))
}
