//! [`Database`]: opening, the builder, collections, snapshots, checkpoints, closing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use persistx_actors::engine::{
    Collection, CollectionInfo, Engine, EngineOptions, EngineStats, Kind, Snapshot, VerifyReport,
};
use persistx_io::{Backend, Vfs};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::list::PersistentList;
use crate::map::PersistentMap;
use crate::set::PersistentSet;
use crate::value::Codec;
use crate::{Durability, WalOptions};

/// How values of a database are encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueFormat {
    pub(crate) codec: Codec,
    pub(crate) version: u16,
}

/// A database: a directory holding a page file and a write-ahead log, or a memory image.
///
/// Cheap to clone (`Clone + Send + Sync`); every clone is the same database. Call
/// [`Database::close`] to checkpoint and release the directory; dropping the last handle
/// inside a tokio runtime closes it in the background (acknowledged writes are in the log
/// either way).
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use persistx_collections::{Database, PersistentMap};
/// let db = Database::in_memory().await?;
/// let users: PersistentMap<u64, String> = db.map("users").await?;
/// users.insert(7, "ada".to_string()).await?; // durable when it returns
/// assert_eq!(users.get(&7).await?, Some("ada".to_string()));
/// db.close().await?;
/// # Ok::<(), persistx_collections::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Database {
    engine: Engine,
    format: ValueFormat,
}

/// Options for opening a [`Database`]; start with [`Database::builder`].
#[derive(Debug, Clone)]
pub struct DatabaseBuilder {
    options: EngineOptions,
    backend: Backend,
    memory: bool,
    format: ValueFormat,
}

impl Default for DatabaseBuilder {
    fn default() -> Self {
        DatabaseBuilder {
            options: EngineOptions::default(),
            backend: Backend::Auto,
            memory: false,
            format: ValueFormat {
                codec: Codec::default(),
                version: 0,
            },
        }
    }
}

impl DatabaseBuilder {
    /// Memory budget in bytes (default 64 MiB): the buffer pool of clean pages and the dirty
    /// pages waiting for a checkpoint (one starts at a quarter; writers wait over a half)
    /// share three quarters of it, the pool taking what dirty pages leave but never less
    /// than a quarter; the rest is room for a checkpoint's pages in flight and for interior
    /// nodes kept decoded for lookups (a sixteenth).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.options.cache_bytes = bytes;
        self
    }

    /// Durability of writes (default [`Durability::Immediate`]: acknowledged after fsync).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.options.durability = durability;
        self
    }

    /// Page size of a new database (4 KiB default; a power of two up to 64 KiB). An
    /// existing database keeps its own.
    pub fn page_size(mut self, bytes: usize) -> Self {
        self.options.page_size = bytes;
        self
    }

    /// The I/O backend (default [`Backend::Auto`]: io_uring where available).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The codec for values written from now on, and the schema version recorded with
    /// each (default JSON, version 0). Stored values always record how they were written.
    pub fn codec(mut self, codec: Codec, schema_version: u16) -> Self {
        self.format = ValueFormat {
            codec,
            version: schema_version,
        };
        self
    }

    /// Start checkpoints on their own when dirty pages or the log pass their thresholds
    /// (default true), and make writers wait while dirty pages are over half the budget.
    /// With it off, dirty pages and the log grow until [`Database::checkpoint`] or `close`.
    pub fn auto_checkpoint(mut self, on: bool) -> Self {
        self.options.auto_checkpoint = on;
        self
    }

    /// Options of the write-ahead log.
    pub fn wal_options(mut self, wal: WalOptions) -> Self {
        self.options.wal = wal;
        self
    }

    /// Keep everything in memory (nothing is written to disk).
    pub fn in_memory(mut self) -> Self {
        self.memory = true;
        self
    }

    /// Opens (creating if needed) the database at `path` (ignored for [`Self::in_memory`]).
    pub async fn open(self, path: impl AsRef<Path>) -> Result<Database> {
        let (vfs, dir): (Arc<dyn Vfs>, PathBuf) = if self.memory {
            (
                Arc::new(persistx_io::memory::MemoryVfs::new()),
                PathBuf::from("/persistx-memory"),
            )
        } else {
            (
                persistx_io::open_backend(self.backend).map_err(persistx_actors::Error::from)?,
                path.as_ref().to_path_buf(),
            )
        };
        self.open_on(vfs, dir).await
    }

    /// Opens the database on a given file system (the simulated disk in tests).
    pub async fn open_on(self, vfs: Arc<dyn Vfs>, dir: impl Into<PathBuf>) -> Result<Database> {
        let engine = Engine::open(vfs, dir, self.options).await?;
        Ok(Database {
            engine,
            format: self.format,
        })
    }
}

/// A snapshot of every collection of a database at one point of the log: see
/// [`Database::snapshot`].
#[derive(Debug, Clone)]
pub struct DatabaseSnapshot {
    parts: Vec<(CollectionInfo, Snapshot)>,
}

impl DatabaseSnapshot {
    /// The snapshot of one collection, by id.
    pub(crate) fn part(&self, id: u32) -> Option<Snapshot> {
        self.parts
            .iter()
            .find(|(i, _)| i.id == id)
            .map(|(_, s)| s.clone())
    }

    /// A read-only view of `map` as of this snapshot.
    pub fn map<K: Key, V: Serialize + DeserializeOwned + 'static>(
        &self,
        map: &PersistentMap<K, V>,
    ) -> crate::map::MapSnapshot<K, V> {
        map.at(self)
    }

    /// A read-only view of `set` as of this snapshot.
    pub fn set<T: Key>(&self, set: &PersistentSet<T>) -> crate::set::SetSnapshot<T> {
        set.at(self)
    }

    /// A read-only view of `list` as of this snapshot.
    pub fn list<T: Serialize + DeserializeOwned + 'static>(
        &self,
        list: &PersistentList<T>,
    ) -> crate::list::ListSnapshot<T> {
        list.at(self)
    }
}

impl Database {
    /// Opens (creating if needed) the database in directory `path`, with the defaults:
    /// 64 MiB cache, [`Durability::Immediate`], io_uring where available.
    ///
    /// # Errors
    /// `Locked` if another process (or handle) has it open; `NotADatabase` if the folder
    /// holds other files; `NewerFormat`; `Corruption` naming file and offset.
    pub async fn open(path: impl AsRef<Path>) -> Result<Database> {
        DatabaseBuilder::default().open(path).await
    }

    /// A database that lives in memory only.
    pub async fn in_memory() -> Result<Database> {
        DatabaseBuilder::default().in_memory().open("").await
    }

    /// Options for opening a database.
    pub fn builder() -> DatabaseBuilder {
        DatabaseBuilder::default()
    }

    pub(crate) async fn collection(
        &self,
        name: &str,
        kind: Kind,
        key: &str,
        value: &str,
    ) -> Result<Collection> {
        Ok(self.engine.collection(name, kind, key, value).await?)
    }

    pub(crate) fn format(&self) -> ValueFormat {
        self.format
    }

    /// Opens the map `name`, creating it if needed. Keys are any [`Key`] (integers,
    /// strings, byte strings, tuples...), values any serde type.
    ///
    /// # Errors
    /// `WrongCollectionType` if `name` exists with another kind, key or value type;
    /// `InvalidArgument` for an empty, overlong or reserved (`__` prefix) name.
    pub async fn map<K: Key, V: Serialize + DeserializeOwned + 'static>(
        &self,
        name: &str,
    ) -> Result<PersistentMap<K, V>> {
        PersistentMap::open(self, name).await
    }

    /// Opens the set `name`, creating it if needed.
    pub async fn set<T: Key>(&self, name: &str) -> Result<PersistentSet<T>> {
        PersistentSet::open(self, name).await
    }

    /// Opens the list `name`, creating it if needed.
    pub async fn list<T: Serialize + DeserializeOwned + 'static>(
        &self,
        name: &str,
    ) -> Result<PersistentList<T>> {
        PersistentList::open(self, name).await
    }

    /// A snapshot of every collection at one common point of the log: writes to several
    /// collections are either all in it or (for those after the point) all out. Briefly
    /// holds writers while each collection publishes what it logged.
    ///
    /// # Cancel safety
    /// Safe to drop.
    pub async fn snapshot(&self) -> Result<DatabaseSnapshot> {
        Ok(DatabaseSnapshot {
            parts: self.engine.snapshot_all().await?,
        })
    }

    /// Writes every change to the page file now and trims the log.
    ///
    /// # Cancel safety
    /// Safe to drop: the checkpoint either completes or leaves the previous one in force.
    pub async fn checkpoint(&self) -> Result<()> {
        Ok(self.engine.checkpoint().await?)
    }

    /// Counters: collections, pages, free space, cache, log.
    pub async fn stats(&self) -> Result<EngineStats> {
        Ok(self.engine.stats().await?)
    }

    /// Reads every page and checks every checksum and tree invariant.
    ///
    /// # Errors
    /// `Corruption` naming the file and offset of the first damage found.
    pub async fn verify(&self) -> Result<VerifyReport> {
        Ok(self.engine.verify().await?)
    }

    /// Shrinks the file after large removals: moves what lies near its end into free pages
    /// lower down and cuts the free end off, while over a quarter of the file is free.
    /// Returns the pages cut off. This also happens on its own while the database is idle
    /// and when it closes (for files of 1 MiB or more); call it to shrink the file at once.
    ///
    /// ```no_run
    /// # async fn example() -> persistx_collections::Result<()> {
    /// # let db = persistx_collections::Database::open("./data").await?;
    /// let logs: persistx_collections::PersistentMap<u64, String> = db.map("logs").await?;
    /// logs.retain(|k, _| *k > 1_000_000).await?;
    /// let pages = db.vacuum().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Safe to drop: each round ends with a checkpoint; the database is consistent between
    /// rounds, and a checkpoint cut short is recovered like a crash.
    pub async fn vacuum(&self) -> Result<u64> {
        Ok(self.engine.vacuum().await?)
    }

    /// Waits for acknowledged writes, checkpoints, stops the actors and the log, and
    /// releases the directory. Idempotent.
    ///
    /// # Cancel safety
    /// Safe to drop; the close goes on, and a half-done close loses nothing acknowledged.
    pub async fn close(&self) -> Result<()> {
        Ok(self.engine.close().await?)
    }

    /// The engine underneath (byte-level collections), for tools.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

pub(crate) fn value_err(name: &str, e: crate::value::ValueError) -> Error {
    Error::Value {
        collection: name.to_string(),
        source: e,
    }
}

pub(crate) fn key_err(name: &str, e: crate::key::KeyError) -> Error {
    Error::Key {
        collection: name.to_string(),
        source: e,
    }
}
