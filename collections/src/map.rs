//! [`PersistentMap`]: an ordered, durable map from typed keys to serde values.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::RangeBounds;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use persistx_actors::engine::{Collection, Kind, Op, OpResult, Snapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{Database, DatabaseSnapshot, ValueFormat, key_err, value_err};
use crate::error::Result;
use crate::key::{self, Key, KeyRef};
use crate::scan;
use crate::value;

/// An ordered map stored in a [`Database`], keyed by `K` (byte order of the encoded key is
/// `K`'s `Ord`), with serde values `V`.
///
/// `Clone + Send + Sync`: clones are handles to the same map. Writes go to the map's actor
/// and return once durable (at the database's durability level); reads use the newest
/// published snapshot without waiting for writers.
///
/// Every async method is cancel safe in this sense: dropping a read's future has no effect;
/// dropping a write's future after it was sent does not withdraw the write (it is applied
/// and logged; only the answer is lost), so treat a dropped write as "maybe applied".
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use futures::TryStreamExt;
/// let db = persistx_collections::Database::in_memory().await?;
/// let m: persistx_collections::PersistentMap<(String, u32), Vec<u8>> = db.map("files").await?;
/// m.insert(("a".into(), 1), vec![1, 2, 3]).await?;
/// m.insert(("a".into(), 2), vec![4]).await?;
/// m.insert(("b".into(), 1), vec![]).await?;
/// let a: Vec<_> = m.range(("a".to_string(), 0)..("b".to_string(), 0)).try_collect().await?;
/// assert_eq!(a.len(), 2);
/// # Ok::<(), persistx_collections::Error>(()) }).unwrap();
/// ```
pub struct PersistentMap<K, V> {
    coll: Collection,
    format: ValueFormat,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for PersistentMap<K, V> {
    fn clone(&self) -> Self {
        PersistentMap {
            coll: self.coll.clone(),
            format: self.format,
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for PersistentMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentMap")
            .field("name", &self.coll.info().name)
            .finish()
    }
}

/// A read-only view of a map at one version: see [`PersistentMap::snapshot`].
pub struct MapSnapshot<K, V> {
    snap: Snapshot,
    name: String,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for MapSnapshot<K, V> {
    fn clone(&self) -> Self {
        MapSnapshot {
            snap: self.snap.clone(),
            name: self.name.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for MapSnapshot<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapSnapshot")
            .field("name", &self.name)
            .field("snapshot", &self.snap)
            .finish()
    }
}

/// The value of the encoded `key` in `snap`, decoded (`name` names the map in errors).
async fn get_in<V: DeserializeOwned + 'static>(
    snap: &Snapshot,
    name: &str,
    key: &[u8],
) -> Result<Option<V>> {
    match snap.get_with(key, |b| decode_value::<V>(name, b)).await? {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

/// A stored value of the map `name`, decoded.
fn decode_value<V: DeserializeOwned + 'static>(name: &str, b: &[u8]) -> Result<V> {
    Ok(value::decode::<V>(b).map_err(|e| value_err(name, e))?.0)
}

pub(crate) fn decode_entry<K: Key, V: DeserializeOwned + 'static>(
    name: &str,
    k: &[u8],
    v: &[u8],
) -> Result<(K, V)> {
    let key = key::decode::<K>(k).map_err(|e| key_err(name, e))?;
    let (val, _) = value::decode::<V>(v).map_err(|e| value_err(name, e))?;
    Ok((key, val))
}

impl<K: Key, V: DeserializeOwned + 'static> MapSnapshot<K, V> {
    /// Entries.
    pub fn len(&self) -> u64 {
        self.snap.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.snap.is_empty()
    }

    /// The value of `key` (the key or a borrowed form of it, such as `&str` for a `String`
    /// key or `&[u8]` for a `Vec<u8>` one: see [`KeyRef`]).
    pub async fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        get_in(&self.snap, &self.name, &key::encode(key)).await
    }

    /// True if `key` is present (the key or a borrowed form of it, see [`KeyRef`]).
    pub async fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        Ok(self.snap.contains(&key::encode(key)).await?)
    }

    /// Entries with keys in `range`, ascending. The stream owns the snapshot (`'static`;
    /// it can move to another task).
    pub fn range<R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl Stream<Item = Result<(K, V)>> + Send + Unpin + 'static + use<K, V, R>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let bounds = scan::bounds(&range, key::encode);
        let name = self.name.clone();
        scan::range_with(self.snap.clone(), bounds, true, true, move |k, v| {
            decode_entry(&name, k, v)
        })
    }

    /// Entries with keys in `range`, descending.
    pub fn range_rev<R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl Stream<Item = Result<(K, V)>> + Send + Unpin + 'static + use<K, V, R>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let bounds = scan::bounds(&range, key::encode);
        let name = self.name.clone();
        scan::range_with(self.snap.clone(), bounds, false, true, move |k, v| {
            decode_entry(&name, k, v)
        })
    }

    /// Every entry, ascending.
    pub fn iter(&self) -> impl Stream<Item = Result<(K, V)>> + Send + Unpin + 'static + use<K, V>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.range(..)
    }

    /// Every key, ascending (values are not decoded).
    pub fn keys(&self) -> impl Stream<Item = Result<K>> + Send + Unpin + 'static + use<K, V>
    where
        K: Send + 'static,
    {
        let name = self.name.clone();
        scan::range_with(
            self.snap.clone(),
            (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
            true,
            false,
            move |k, _| key::decode::<K>(k).map_err(|e| key_err(&name, e)),
        )
    }

    /// The first entry.
    pub async fn first(&self) -> Result<Option<(K, V)>> {
        self.entry_at(0).await
    }

    /// The last entry.
    pub async fn last(&self) -> Result<Option<(K, V)>> {
        match self.snap.len() {
            0 => Ok(None),
            n => self.entry_at(n - 1).await,
        }
    }

    /// The entry at position `index` in key order (O(log n)).
    pub async fn entry_at(&self, index: u64) -> Result<Option<(K, V)>> {
        match self.snap.nth(index).await? {
            Some((k, v)) => Ok(Some(decode_entry(&self.name, &k, &v)?)),
            None => Ok(None),
        }
    }
}

fn old_value<V: DeserializeOwned + 'static>(name: &str, r: Option<OpResult>) -> Result<Option<V>> {
    match r {
        Some(OpResult::Old(Some(b))) => Ok(Some(
            value::decode::<V>(&b).map_err(|e| value_err(name, e))?.0,
        )),
        _ => Ok(None),
    }
}

impl<K: Key, V: Serialize + DeserializeOwned + 'static> PersistentMap<K, V> {
    pub(crate) async fn open(db: &Database, name: &str) -> Result<Self> {
        let coll = db
            .collection(
                name,
                Kind::Map,
                std::any::type_name::<K>(),
                std::any::type_name::<V>(),
            )
            .await?;
        Ok(PersistentMap {
            coll,
            format: db.format(),
            _types: PhantomData,
        })
    }

    fn name(&self) -> &str {
        &self.coll.info().name
    }

    fn encode_value(&self, v: &V) -> Result<Bytes> {
        value::encode(v, self.format.codec, self.format.version)
            .map(Bytes::from)
            .map_err(|e| value_err(self.name(), e))
    }

    /// A read-only view of the newest published version. Lock-free.
    pub fn snapshot(&self) -> MapSnapshot<K, V> {
        MapSnapshot {
            snap: self.coll.snapshot(),
            name: self.name().to_string(),
            _types: PhantomData,
        }
    }

    pub(crate) fn at(&self, db: &DatabaseSnapshot) -> MapSnapshot<K, V> {
        MapSnapshot {
            snap: db
                .part(self.coll.info().id)
                .unwrap_or_else(|| self.coll.snapshot()),
            name: self.name().to_string(),
            _types: PhantomData,
        }
    }

    /// The value of `key` (newest published version). `key` is the key or a borrowed form
    /// of it, such as `&str` for a `String` key or `&[u8]` for a `Vec<u8>` one ([`KeyRef`]).
    pub async fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        // Straight from the collection's published version: a snapshot would take reference
        // counts, a `MapSnapshot` would copy the name.
        let name = self.name();
        match self
            .coll
            .get_with(&key::encode(key), |b| decode_value::<V>(name, b))
            .await?
        {
            Some(r) => Ok(Some(r?)),
            None => Ok(None),
        }
    }

    /// True if `key` is present (the key or a borrowed form of it, see [`KeyRef`]).
    pub async fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        Ok(self.coll.contains(&key::encode(key)).await?)
    }

    /// Entries (O(1)).
    pub fn len(&self) -> u64 {
        self.coll.snapshot().len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts or replaces; returns the old value. Durable when it returns.
    ///
    /// # Errors
    /// `TooLarge` for a key over the page size's limit (1000 bytes with 4 KiB pages) or a
    /// value over 16 MiB; nothing is written then.
    pub async fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let v = self.encode_value(&value)?;
        let r = self
            .coll
            .write(vec![Op::Put(Bytes::from(key::encode(&key)), v)])
            .await?;
        old_value(self.name(), r.into_iter().next())
    }

    /// Removes `key` (the key or a borrowed form of it, see [`KeyRef`]); returns its value.
    pub async fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: KeyRef + ?Sized,
    {
        let r = self
            .coll
            .write(vec![Op::Delete(Bytes::from(key::encode(key)))])
            .await?;
        old_value(self.name(), r.into_iter().next())
    }

    /// Inserts every pair in one atomic commit (all or none survive a crash; for a key given
    /// twice the last pair wins). Batches over 16 MiB are written through a checkpoint
    /// instead of the log, as a bulk write whose sorted runs wait on scratch pages of the
    /// data file: memory stays bounded however large the batch.
    pub async fn insert_many(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let (codec, version) = (self.format.codec, self.format.version);
        let pairs = pairs.into_iter().map(|(k, v)| {
            let val = value::encode(&v, codec, version).map_err(|e| value_err(self.name(), e))?;
            Ok((key::encode(&k), Some(val)))
        });
        crate::batch::write_encoded(&self.coll, pairs).await?;
        Ok(())
    }

    /// Removes every key in one atomic commit; returns how many were present. The keys may
    /// be given by reference (`keys.iter()`) or made one at a time (`raw.iter().map(|k|
    /// k.to_vec())`): they are encoded a window at a time, so memory stays bounded however
    /// many keys (as [`PersistentMap::insert_many`]).
    pub async fn remove_many<Q: Borrow<K>>(
        &self,
        keys: impl IntoIterator<Item = Q>,
    ) -> Result<u64> {
        let ops = keys
            .into_iter()
            .map(|k| Ok((key::encode(k.borrow()), None)));
        crate::batch::write_encoded(&self.coll, ops).await
    }

    /// Removes and returns the first entry (atomically).
    pub async fn pop_first(&self) -> Result<Option<(K, V)>> {
        self.pop(Op::PopFirst).await
    }

    /// Removes and returns the last entry (atomically).
    pub async fn pop_last(&self) -> Result<Option<(K, V)>> {
        self.pop(Op::PopLast).await
    }

    async fn pop(&self, op: Op) -> Result<Option<(K, V)>> {
        match self.coll.write(vec![op]).await?.into_iter().next() {
            Some(OpResult::Popped(Some((k, v)))) => Ok(Some(decode_entry(self.name(), &k, &v)?)),
            _ => Ok(None),
        }
    }

    /// Keeps only the entries for which `keep` returns true: scans a snapshot, then removes
    /// the others in one atomic commit. A key written by someone else between the scan and
    /// the commit is judged by the value the scan saw. Returns how many were removed.
    pub async fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool + Send) -> Result<u64>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let mut doomed = Vec::new();
        let mut s = self.snapshot().iter();
        while let Some((k, v)) = s.try_next().await? {
            if !keep(&k, &v) {
                doomed.push(k);
            }
        }
        self.remove_many(doomed.iter()).await
    }

    /// Removes every entry (one atomic commit).
    pub async fn clear(&self) -> Result<()> {
        self.coll.write(vec![Op::Clear]).await?;
        Ok(())
    }

    /// Entries with keys in `range`, ascending, from the newest published snapshot (the
    /// stream owns it: `'static`, `Send`).
    pub fn range<R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl Stream<Item = Result<(K, V)>> + Send + Unpin + 'static + use<K, V, R>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.snapshot().range(range)
    }

    /// Every entry, ascending.
    pub fn iter(&self) -> impl Stream<Item = Result<(K, V)>> + Send + Unpin + 'static + use<K, V>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.snapshot().iter()
    }

    /// The first entry.
    pub async fn first(&self) -> Result<Option<(K, V)>> {
        self.snapshot().first().await
    }

    /// The last entry.
    pub async fn last(&self) -> Result<Option<(K, V)>> {
        self.snapshot().last().await
    }
}
