//! Byte-level scans of a snapshot as `futures::Stream`s that own their snapshot.

use std::ops::Bound;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use persistx_actors::engine::Snapshot;
use persistx_actors::tree::Cursor;

use crate::error::Result;

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v),
        Bound::Excluded(v) => Bound::Excluded(v),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn below_hi(k: &[u8], hi: &Bound<Vec<u8>>) -> bool {
    match hi {
        Bound::Included(h) => k <= h.as_slice(),
        Bound::Excluded(h) => k < h.as_slice(),
        Bound::Unbounded => true,
    }
}

fn above_lo(k: &[u8], lo: &Bound<Vec<u8>>) -> bool {
    match lo {
        Bound::Included(l) => k >= l.as_slice(),
        Bound::Excluded(l) => k > l.as_slice(),
        Bound::Unbounded => true,
    }
}

struct State {
    snap: Snapshot,
    cursor: Option<Cursor>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    forward: bool,
}

/// Entries of `snap` with keys in `(lo, hi)`, ascending (or descending if `!forward`).
pub(crate) fn range(
    snap: Snapshot,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    forward: bool,
) -> impl Stream<Item = Result<(Bytes, Bytes)>> + Send + Unpin + 'static {
    let state = State::new(snap, lo, hi, forward);
    // Boxed, so the stream is `Unpin` (see `range_with`).
    futures::stream::try_unfold(state, |mut st| async move {
        st.open().await?;
        let Some(cursor) = st.cursor.as_mut() else {
            return Ok(None);
        };
        match st.snap.step(cursor, st.forward).await? {
            Some((k, v)) if inside(&k, st.forward, &st.lo, &st.hi) => Ok(Some(((k, v), st))),
            _ => Ok(None),
        }
    })
    .boxed()
}

impl State {
    fn new(snap: Snapshot, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, forward: bool) -> Self {
        State {
            snap,
            cursor: None,
            lo,
            hi,
            forward,
        }
    }

    /// Places the cursor at the scan's start, the first time.
    async fn open(&mut self) -> Result<()> {
        if self.cursor.is_none() {
            let start = if self.forward {
                as_ref(&self.lo)
            } else {
                as_ref(&self.hi)
            };
            self.cursor = Some(self.snap.cursor(start, self.forward).await?);
        }
        Ok(())
    }
}

/// True if `k`, met scanning forward (or backward), is still inside the scan's far bound.
fn inside(k: &[u8], forward: bool, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    if forward {
        below_hi(k, hi)
    } else {
        above_lo(k, lo)
    }
}

/// Entries of `snap` with keys in `(lo, hi)` as `decode` makes them from the stored bytes,
/// ascending (or descending if `!forward`). `decode` reads each entry where it lies in its
/// page: nothing is copied or reference counted on the way. Without `values`, values are
/// not read (`decode` gets an empty one). A failed read ends the stream after its error; a
/// failed decode is an error item and the scan goes on.
pub(crate) fn range_with<T, D>(
    snap: Snapshot,
    (lo, hi): (Bound<Vec<u8>>, Bound<Vec<u8>>),
    forward: bool,
    values: bool,
    decode: D,
) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static
where
    T: Send + 'static,
    D: Fn(&[u8], &[u8]) -> Result<T> + Send + Sync + 'static,
{
    let state = State::new(snap, lo, hi, forward);
    // Boxed, so the stream is `Unpin`: a caller can `stream.next().await` without pinning
    // it first (one allocation per scan).
    futures::stream::unfold(Some((state, decode)), move |st| async move {
        let (mut st, decode) = st?;
        match next_with(&mut st, values, &decode).await {
            Ok(Some(item)) => Some((item, Some((st, decode)))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// The next entry of a [`range_with`] scan, decoded; `None` past the end.
async fn next_with<T, D>(st: &mut State, values: bool, decode: &D) -> Result<Option<Result<T>>>
where
    D: Fn(&[u8], &[u8]) -> Result<T> + Sync,
{
    st.open().await?;
    let State {
        snap,
        cursor,
        lo,
        hi,
        forward,
    } = st;
    let Some(cursor) = cursor.as_mut() else {
        return Ok(None);
    };
    let forward = *forward;
    let inside = |k: &[u8]| inside(k, forward, lo, hi);
    let got = if values {
        snap.step_with(cursor, forward, inside, |k, v| decode(k, v))
            .await?
    } else {
        snap.step_key_with(cursor, forward, |k| inside(k).then(|| decode(k, &[])))
            .await?
    };
    Ok(got.flatten())
}

/// Encodes typed range bounds with `enc`.
pub(crate) fn bounds<K>(
    range: &impl std::ops::RangeBounds<K>,
    enc: impl Fn(&K) -> Vec<u8>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let map = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included(enc(k)),
        Bound::Excluded(k) => Bound::Excluded(enc(k)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (map(range.start_bound()), map(range.end_bound()))
}
