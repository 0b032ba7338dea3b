//! [`PersistentSet`]: an ordered, durable set of typed keys.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use persistx_actors::engine::{Collection, Kind, Op, OpResult, Snapshot};

use crate::db::{Database, DatabaseSnapshot, key_err};
use crate::error::Result;
use crate::key::{self, Key, KeyRef};
use crate::scan;

/// An ordered set stored in a [`Database`]. `Clone + Send + Sync`. Reads use the newest
/// published snapshot; writes return once durable. Cancel safety as for
/// [`crate::PersistentMap`].
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use futures::TryStreamExt;
/// let db = persistx_collections::Database::in_memory().await?;
/// let a: persistx_collections::PersistentSet<u32> = db.set("a").await?;
/// let b: persistx_collections::PersistentSet<u32> = db.set("b").await?;
/// for i in [1, 2, 3] { a.insert(i).await?; }
/// for i in [2, 3, 4] { b.insert(i).await?; }
/// let both: Vec<u32> = a.intersection(&b).try_collect().await?;
/// assert_eq!(both, vec![2, 3]);
/// # Ok::<(), persistx_collections::Error>(()) }).unwrap();
/// ```
pub struct PersistentSet<T> {
    coll: Collection,
    _types: PhantomData<fn() -> T>,
}

impl<T> Clone for PersistentSet<T> {
    fn clone(&self) -> Self {
        PersistentSet {
            coll: self.coll.clone(),
            _types: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for PersistentSet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentSet")
            .field("name", &self.coll.info().name)
            .finish()
    }
}

/// A read-only view of a set at one version.
pub struct SetSnapshot<T> {
    snap: Snapshot,
    name: String,
    _types: PhantomData<fn() -> T>,
}

impl<T> Clone for SetSnapshot<T> {
    fn clone(&self) -> Self {
        SetSnapshot {
            snap: self.snap.clone(),
            name: self.name.clone(),
            _types: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for SetSnapshot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSnapshot")
            .field("name", &self.name)
            .finish()
    }
}

impl<T: Key> SetSnapshot<T> {
    /// Members.
    pub fn len(&self) -> u64 {
        self.snap.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.snap.is_empty()
    }

    /// True if `item` (or a borrowed form of it, see [`KeyRef`]) is a member.
    pub async fn contains<Q>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        Ok(self.snap.contains(&key::encode(item)).await?)
    }

    /// Members in `range`, ascending; the stream owns the snapshot.
    pub fn range<R: RangeBounds<T>>(
        &self,
        range: R,
    ) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T, R>
    where
        T: Send + 'static,
    {
        let (lo, hi) = scan::bounds(&range, key::encode);
        raw_members(self.snap.clone(), lo, hi, self.name.clone())
    }

    /// Every member, ascending.
    pub fn iter(&self) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T>
    where
        T: Send + 'static,
    {
        self.range(..)
    }
}

fn raw_members<T: Key + Send + 'static>(
    snap: Snapshot,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    name: String,
) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static {
    scan::range_with(snap, (lo, hi), true, false, move |k, _| {
        key::decode::<T>(k).map_err(|e| key_err(&name, e))
    })
}

#[derive(Clone, Copy)]
enum SetOp {
    Union,
    Intersection,
    Difference,
}

impl SetOp {
    /// Whether a key only in the first set, only in the second, or in both belongs to the
    /// result.
    fn keeps(self, first: bool, second: bool) -> bool {
        match self {
            SetOp::Union => true,
            SetOp::Intersection => first && second,
            SetOp::Difference => first && !second,
        }
    }
}

/// Merges two ascending byte-key scans.
fn merge<T: Key + Send + 'static>(
    a: Snapshot,
    b: Snapshot,
    op: SetOp,
    name: String,
) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static {
    type Side = std::pin::Pin<Box<dyn Stream<Item = Result<(Bytes, Bytes)>> + Send>>;
    let side = |s: Snapshot| -> Side {
        Box::pin(scan::range(s, Bound::Unbounded, Bound::Unbounded, true))
    };
    // The two scans and their current heads (`None` before the first read, and at the end).
    let st = (side(a), side(b), None::<Bytes>, None::<Bytes>, false);
    futures::stream::try_unfold(st, move |(mut sa, mut sb, mut ha, mut hb, started)| {
        let name = name.clone();
        async move {
            use futures::TryStreamExt;
            if !started {
                ha = sa.try_next().await?.map(|e| e.0);
                hb = sb.try_next().await?.map(|e| e.0);
            }
            loop {
                let (in_a, in_b) = match (&ha, &hb) {
                    (None, None) => return Ok(None),
                    (Some(_), None) => (true, false),
                    (None, Some(_)) => (false, true),
                    (Some(x), Some(y)) => (x <= y, y <= x),
                };
                // One side is done and nothing from the other can enter the result.
                if (ha.is_none() || hb.is_none()) && !op.keeps(in_a, in_b) {
                    return Ok(None);
                }
                let k = if in_a { ha.clone() } else { hb.clone() };
                if in_a {
                    ha = sa.try_next().await?.map(|e| e.0);
                }
                if in_b {
                    hb = sb.try_next().await?.map(|e| e.0);
                }
                if let Some(k) = k.filter(|_| op.keeps(in_a, in_b)) {
                    let item = key::decode::<T>(&k).map_err(|e| key_err(&name, e))?;
                    return Ok(Some((item, (sa, sb, ha, hb, true))));
                }
            }
        }
    })
    .boxed()
}

impl<T: Key> PersistentSet<T> {
    pub(crate) async fn open(db: &Database, name: &str) -> Result<Self> {
        let coll = db
            .collection(name, Kind::Set, std::any::type_name::<T>(), "()")
            .await?;
        Ok(PersistentSet {
            coll,
            _types: PhantomData,
        })
    }

    fn name(&self) -> &str {
        &self.coll.info().name
    }

    /// A read-only view of the newest published version. Lock-free.
    pub fn snapshot(&self) -> SetSnapshot<T> {
        SetSnapshot {
            snap: self.coll.snapshot(),
            name: self.name().to_string(),
            _types: PhantomData,
        }
    }

    pub(crate) fn at(&self, db: &DatabaseSnapshot) -> SetSnapshot<T> {
        SetSnapshot {
            snap: db
                .part(self.coll.info().id)
                .unwrap_or_else(|| self.coll.snapshot()),
            name: self.name().to_string(),
            _types: PhantomData,
        }
    }

    /// Adds `item`; true if it was not a member. Durable when it returns.
    pub async fn insert(&self, item: T) -> Result<bool> {
        let r = self
            .coll
            .write(vec![Op::Set(Bytes::from(key::encode(&item)), Bytes::new())])
            .await?;
        Ok(matches!(r.first(), Some(OpResult::Existed(false))))
    }

    /// Removes `item` (or a borrowed form of it, see [`KeyRef`]); true if it was a member.
    pub async fn remove<Q>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        let r = self
            .coll
            .write(vec![Op::Unset(Bytes::from(key::encode(item)))])
            .await?;
        Ok(matches!(r.first(), Some(OpResult::Existed(true))))
    }

    /// Adds every item in one atomic commit, in bounded memory however many there are (as
    /// [`crate::PersistentMap::insert_many`]).
    pub async fn insert_many(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let pairs = items
            .into_iter()
            .map(|i| Ok((key::encode(&i), Some(Vec::new()))));
        crate::batch::write_encoded(&self.coll, pairs).await?;
        Ok(())
    }

    /// True if `item` (or a borrowed form of it, see [`KeyRef`]) is a member.
    pub async fn contains<Q>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        Ok(self.coll.contains(&key::encode(item)).await?)
    }

    /// Members (O(1)).
    pub fn len(&self) -> u64 {
        self.coll.snapshot().len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Members in `range`, ascending.
    pub fn range<R: RangeBounds<T>>(
        &self,
        range: R,
    ) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T, R>
    where
        T: Send + 'static,
    {
        self.snapshot().range(range)
    }

    /// Every member, ascending.
    pub fn iter(&self) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T>
    where
        T: Send + 'static,
    {
        self.snapshot().iter()
    }

    /// Members of either set, ascending, from snapshots of both taken now.
    pub fn union(
        &self,
        other: &PersistentSet<T>,
    ) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T>
    where
        T: Send + 'static,
    {
        merge(
            self.coll.snapshot(),
            other.coll.snapshot(),
            SetOp::Union,
            self.name().to_string(),
        )
    }

    /// Members of both sets, ascending.
    pub fn intersection(
        &self,
        other: &PersistentSet<T>,
    ) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T>
    where
        T: Send + 'static,
    {
        merge(
            self.coll.snapshot(),
            other.coll.snapshot(),
            SetOp::Intersection,
            self.name().to_string(),
        )
    }

    /// Members of this set that are not in `other`, ascending.
    pub fn difference(
        &self,
        other: &PersistentSet<T>,
    ) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T>
    where
        T: Send + 'static,
    {
        merge(
            self.coll.snapshot(),
            other.coll.snapshot(),
            SetOp::Difference,
            self.name().to_string(),
        )
    }

    /// Removes every member.
    pub async fn clear(&self) -> Result<()> {
        self.coll.write(vec![Op::Clear]).await?;
        Ok(())
    }
}
