//! [`PersistentList`]: a durable sequence with O(log n) access by position.

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use persistx_actors::engine::{Collection, Kind, Op, OpResult, Snapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{Database, DatabaseSnapshot, ValueFormat, value_err};
use crate::error::{Error, Result};
use crate::scan;
use crate::value;

/// A list stored in a [`Database`]: push and pop at both ends, read, replace, insert and
/// remove at any position, all O(log n) (interior nodes count their entries). Positions
/// are kept by generated order-preserving keys, so an insert never renumbers anything.
/// `Clone + Send + Sync`; cancel safety as for [`crate::PersistentMap`].
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let db = persistx_collections::Database::in_memory().await?;
/// let l: persistx_collections::PersistentList<String> = db.list("todo").await?;
/// l.push_back("b".into()).await?;
/// l.push_front("a".into()).await?;
/// l.insert(1, "between".into()).await?;
/// assert_eq!(l.get(1).await?, Some("between".to_string()));
/// assert_eq!(l.pop_back().await?, Some("b".to_string()));
/// assert_eq!(l.len(), 2);
/// # Ok::<(), persistx_collections::Error>(()) }).unwrap();
/// ```
pub struct PersistentList<T> {
    coll: Collection,
    format: ValueFormat,
    _types: PhantomData<fn() -> T>,
}

impl<T> Clone for PersistentList<T> {
    fn clone(&self) -> Self {
        PersistentList {
            coll: self.coll.clone(),
            format: self.format,
            _types: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for PersistentList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentList")
            .field("name", &self.coll.info().name)
            .finish()
    }
}

/// A read-only view of a list at one version.
pub struct ListSnapshot<T> {
    snap: Snapshot,
    name: String,
    _types: PhantomData<fn() -> T>,
}

impl<T> Clone for ListSnapshot<T> {
    fn clone(&self) -> Self {
        ListSnapshot {
            snap: self.snap.clone(),
            name: self.name.clone(),
            _types: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for ListSnapshot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListSnapshot")
            .field("name", &self.name)
            .finish()
    }
}

/// The element at `index` of `snap`, decoded (`name` names the list in errors).
async fn get_at<T: DeserializeOwned + 'static>(
    snap: &Snapshot,
    name: &str,
    index: u64,
) -> Result<Option<T>> {
    match snap.nth(index).await? {
        Some((_, v)) => Ok(Some(decode(name, &v)?)),
        None => Ok(None),
    }
}

fn decode<T: DeserializeOwned + 'static>(name: &str, b: &[u8]) -> Result<T> {
    Ok(value::decode::<T>(b).map_err(|e| value_err(name, e))?.0)
}

impl<T: DeserializeOwned + 'static> ListSnapshot<T> {
    /// Elements.
    pub fn len(&self) -> u64 {
        self.snap.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.snap.is_empty()
    }

    /// The element at `index`.
    pub async fn get(&self, index: u64) -> Result<Option<T>> {
        get_at(&self.snap, &self.name, index).await
    }

    /// The elements at positions in `range`, in order; the stream owns the snapshot.
    pub fn range<R: RangeBounds<u64>>(
        &self,
        range: R,
    ) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T, R>
    where
        T: Send + 'static,
    {
        let len = self.snap.len();
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .min(len);
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => len,
        }
        .min(len);
        let count = end.saturating_sub(start) as usize;
        let snap = self.snap.clone();
        let name = self.name.clone();
        futures::stream::once(async move {
            // An empty range reads nothing. A start the snapshot lacks (only a damaged count
            // could make one) gives nothing either, rather than elements from elsewhere.
            let lo = if count == 0 {
                None
            } else {
                snap.key_at(start).await?
            };
            let Some(lo) = lo else {
                return Ok::<_, Error>(futures::stream::empty().boxed());
            };
            let element = move |_: &[u8], v: &[u8]| decode(&name, v);
            let bounds = (Bound::Included(lo.to_vec()), Bound::Unbounded);
            Ok(scan::range_with(snap, bounds, true, true, element)
                .take(count)
                .boxed())
        })
        .map(|r| match r {
            Ok(s) => s,
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    /// Every element in order.
    pub fn iter(&self) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T>
    where
        T: Send + 'static,
    {
        self.range(..)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> PersistentList<T> {
    pub(crate) async fn open(db: &Database, name: &str) -> Result<Self> {
        let coll = db
            .collection(name, Kind::List, "u64", std::any::type_name::<T>())
            .await?;
        Ok(PersistentList {
            coll,
            format: db.format(),
            _types: PhantomData,
        })
    }

    fn name(&self) -> &str {
        &self.coll.info().name
    }

    fn enc(&self, v: &T) -> Result<Bytes> {
        value::encode(v, self.format.codec, self.format.version)
            .map(Bytes::from)
            .map_err(|e| value_err(self.name(), e))
    }

    async fn one(&self, op: Op) -> Result<OpResult> {
        Ok(self
            .coll
            .write(vec![op])
            .await?
            .into_iter()
            .next()
            .unwrap_or(OpResult::Done))
    }

    fn old(&self, r: OpResult) -> Result<Option<T>> {
        match r {
            OpResult::Old(Some(b)) | OpResult::Popped(Some((_, b))) => {
                Ok(Some(decode(self.name(), &b)?))
            }
            _ => Ok(None),
        }
    }

    /// A read-only view of the newest published version. Lock-free.
    pub fn snapshot(&self) -> ListSnapshot<T> {
        ListSnapshot {
            snap: self.coll.snapshot(),
            name: self.name().to_string(),
            _types: PhantomData,
        }
    }

    pub(crate) fn at(&self, db: &DatabaseSnapshot) -> ListSnapshot<T> {
        ListSnapshot {
            snap: db
                .part(self.coll.info().id)
                .unwrap_or_else(|| self.coll.snapshot()),
            name: self.name().to_string(),
            _types: PhantomData,
        }
    }

    /// Elements (O(1)).
    pub fn len(&self) -> u64 {
        self.coll.snapshot().len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `value`. Durable when it returns.
    pub async fn push_back(&self, value: T) -> Result<()> {
        self.one(Op::PushBack(self.enc(&value)?)).await.map(|_| ())
    }

    /// Prepends `value`.
    pub async fn push_front(&self, value: T) -> Result<()> {
        self.one(Op::PushFront(self.enc(&value)?)).await.map(|_| ())
    }

    /// Removes and returns the last element.
    pub async fn pop_back(&self) -> Result<Option<T>> {
        let r = self.one(Op::PopLast).await?;
        self.old(r)
    }

    /// Removes and returns the first element.
    pub async fn pop_front(&self) -> Result<Option<T>> {
        let r = self.one(Op::PopFirst).await?;
        self.old(r)
    }

    /// The element at `index`.
    pub async fn get(&self, index: u64) -> Result<Option<T>> {
        // Straight from the collection's snapshot: a `ListSnapshot` would copy the name.
        get_at(&self.coll.snapshot(), self.name(), index).await
    }

    /// Replaces the element at `index`; returns the old one.
    ///
    /// # Errors
    /// `InvalidArgument` if `index >= len`; nothing changes.
    pub async fn set(&self, index: u64, value: T) -> Result<T> {
        let r = self.one(Op::SetAt(index, self.enc(&value)?)).await?;
        self.old(r)?.ok_or_else(|| {
            Error::Engine(persistx_actors::Error::InvalidArgument(format!(
                "list position {index} is empty"
            )))
        })
    }

    /// Inserts `value` so that it is at `index` (`0..=len`).
    ///
    /// # Errors
    /// `InvalidArgument` if `index > len`; nothing changes.
    pub async fn insert(&self, index: u64, value: T) -> Result<()> {
        self.one(Op::InsertAt(index, self.enc(&value)?))
            .await
            .map(|_| ())
    }

    /// Removes and returns the element at `index` (`None` if there is none).
    pub async fn remove(&self, index: u64) -> Result<Option<T>> {
        let r = self.one(Op::RemoveAt(index)).await?;
        self.old(r)
    }

    /// Keeps the first `len` elements (one atomic commit).
    pub async fn truncate(&self, len: u64) -> Result<()> {
        self.one(Op::Truncate(len)).await.map(|_| ())
    }

    /// Appends every value in one atomic commit.
    pub async fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let mut ops = Vec::new();
        for v in values {
            ops.push(Op::PushBack(self.enc(&v)?));
        }
        if !ops.is_empty() {
            self.coll.write(ops).await?;
        }
        Ok(())
    }

    /// Removes every element.
    pub async fn clear(&self) -> Result<()> {
        self.one(Op::Clear).await.map(|_| ())
    }

    /// Elements at positions in `range`, in order.
    pub fn range<R: RangeBounds<u64>>(
        &self,
        range: R,
    ) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T, R>
    where
        T: Send + 'static,
    {
        self.snapshot().range(range)
    }

    /// Every element in order.
    pub fn iter(&self) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static + use<T>
    where
        T: Send + 'static,
    {
        self.snapshot().iter()
    }
}
