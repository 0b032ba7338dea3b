//! Large batches of inserts in bounded memory, shared by the map and the set.

use bytes::BytesMut;
use persistx_actors::engine::{Collection, Op};

use crate::error::Result;

/// Bytes of encoded pairs sent at a time: a batch that fits is one logged write; a larger
/// one becomes a bulk write staged in windows of this size (sorted runs on scratch pages,
/// merged into the tree at commit).
const INSERT_WINDOW: usize = 16 << 20;

/// Inserts every encoded `(key, value)` pair in one atomic commit (the last pair of a key
/// wins). Memory holds one window of pairs at a time, whatever the batch's size.
pub(crate) async fn insert_encoded(
    coll: &Collection,
    pairs: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
) -> Result<()> {
    let mut pairs = pairs;
    let Some((ops, more)) = encode_window(&mut pairs)? else {
        return Ok(());
    };
    if !more {
        coll.write(ops).await?;
        return Ok(());
    }
    let mut bulk = coll.bulk().await?;
    bulk.stage(ops).await?;
    while let Some((ops, _)) = encode_window(&mut pairs)? {
        bulk.stage(ops).await?;
    }
    bulk.commit().await?;
    Ok(())
}

/// Packs pairs until [`INSERT_WINDOW`] bytes; `None` when there are none left, else the ops
/// and whether pairs remain. Keys and values go into shared 64 KiB buffers (two allocations
/// per pair would fragment the heap of a large load).
fn encode_window(
    pairs: &mut impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
) -> Result<Option<(Vec<Op>, bool)>> {
    let mut ops = Vec::new();
    let mut buf = BytesMut::new();
    let mut size = 0usize;
    let mut more = false;
    for pair in pairs.by_ref() {
        let (key, val) = pair?;
        if buf.capacity() - buf.len() < key.len() + val.len() {
            buf.reserve((key.len() + val.len()).max(64 << 10));
        }
        size += key.len() + val.len() + 64;
        buf.extend_from_slice(&key);
        let kb = buf.split().freeze();
        buf.extend_from_slice(&val);
        let vb = buf.split().freeze();
        ops.push(Op::Set(kb, vb));
        if size >= INSERT_WINDOW {
            more = true;
            break;
        }
    }
    if ops.is_empty() {
        return Ok(None);
    }
    Ok(Some((ops, more)))
}
