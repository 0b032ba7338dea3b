//! PersistX: one `PersistentMap<Vec<u8>, Vec<u8>>` (byte keys are stored as they are; byte
//! values carry a one-byte header) in a database with the default options: 64 MiB cache
//! (another with the parent's `--persistx-cache-mib`, see [`CACHE_ENV`]),
//! `Durability::Immediate`, io_uring where available. Reads pass the key as `&[u8]`.
//!
//! Durability: every write returns after the write-ahead log's record is durable
//! (`O_DIRECT | O_DSYNC` tail-block write, or write + `fdatasync`); a write too large for
//! one log record (the bulk load) returns after a checkpoint synced the page file and the
//! superblock. Concurrent writers share log writes (group commit).
//!
//! The engine is async: the workload's plain threads block on a tokio runtime the engine
//! owns (two worker threads); a writer's sequence of single commits runs as a task on it
//! (see [`Session::insert_each_durable`]).

use std::path::Path;

use futures::StreamExt;
use persistx::{Database, PersistentMap};

use crate::Result;
use crate::compare::engine::{Engine, OwnedPair, Pair, Session};

/// Environment variable through which the parent's `--persistx-cache-mib` reaches the
/// child: the database's memory budget in MiB (unset: PersistX's default).
pub const CACHE_ENV: &str = "PERSISTX_COMPARE_CACHE_MIB";

/// An open PersistX database and its map.
#[derive(Debug)]
pub struct PersistxEngine {
    rt: tokio::runtime::Runtime,
    db: Database,
    map: PersistentMap<Vec<u8>, Vec<u8>>,
}

impl Engine for PersistxEngine {
    const NAME: &'static str = "persistx";

    type Session<'e> = PersistxSession<'e>;

    fn open(dir: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let cache_mib = match std::env::var(CACHE_ENV) {
            Ok(v) => Some(
                v.parse::<usize>()
                    .map_err(|e| format!("{CACHE_ENV}={v:?} is not a number of MiB: {e}"))?,
            ),
            Err(_) => None,
        };
        let (db, map) = rt.block_on(async {
            let mut builder = Database::builder();
            if let Some(mib) = cache_mib {
                builder = builder.cache_size(mib << 20);
            }
            let db = builder.open(dir.join("db")).await?;
            let map = db.map::<Vec<u8>, Vec<u8>>("kv").await?;
            Ok::<_, persistx::Error>((db, map))
        })?;
        Ok(PersistxEngine { rt, db, map })
    }

    fn session(&self) -> Result<PersistxSession<'_>> {
        Ok(PersistxSession { e: self })
    }

    fn close(self) -> Result<()> {
        self.rt.block_on(self.db.close())?;
        Ok(())
    }
}

/// One thread's use of a [`PersistxEngine`].
pub struct PersistxSession<'e> {
    e: &'e PersistxEngine,
}

impl Session for PersistxSession<'_> {
    fn insert_one_durable(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.e
            .rt
            .block_on(self.e.map.insert(key.to_vec(), value.to_vec()))?;
        Ok(())
    }

    /// The loop runs as a task on the engine's runtime, as a tokio program's writer would
    /// (each insert is awaited, so durable, before the next starts); the calling thread
    /// only waits for the task. The pairs are copied before the loop.
    fn insert_each_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        let owned: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let map = self.e.map.clone();
        let task = self.e.rt.spawn(async move {
            for (k, v) in owned {
                map.insert(k, v).await?;
            }
            Ok::<_, persistx::Error>(())
        });
        self.e
            .rt
            .block_on(task)
            .map_err(|e| format!("persistx writer task: {e}"))??;
        Ok(())
    }

    fn insert_batch_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        let owned = pairs.iter().map(|(k, v)| (k.to_vec(), v.to_vec()));
        self.e.rt.block_on(self.e.map.insert_many(owned))?;
        Ok(())
    }

    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.e.rt.block_on(self.e.map.get(key))? {
            Some(v) => {
                *value = v;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The lookups run as a tokio program's reader would: one async block on the calling
    /// thread awaits each lookup in turn (one `block_on` for the whole loop, not one per
    /// lookup).
    fn get_each<'k>(
        &mut self,
        keys: &mut dyn Iterator<Item = &'k [u8]>,
        check: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let map = &self.e.map;
        self.e.rt.block_on(async {
            for key in keys {
                let found = map.get(key).await?;
                check(found.as_deref())?;
            }
            Ok(())
        })
    }

    /// As [`PersistxSession::get_each`]: one async block awaits each range in turn.
    fn range_each<'k>(
        &mut self,
        starts: &mut dyn Iterator<Item = &'k [u8]>,
        limit: usize,
        check: &mut dyn FnMut(&[OwnedPair]) -> Result<()>,
    ) -> Result<()> {
        let map = &self.e.map;
        self.e.rt.block_on(async {
            let mut out = Vec::with_capacity(limit);
            for start in starts {
                out.clear();
                let mut stream = map.range(start.to_vec()..).take(limit);
                while let Some(entry) = stream.next().await {
                    out.push(entry?);
                }
                check(&out)?;
            }
            Ok(())
        })
    }

    fn range(
        &mut self,
        start: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        out.clear();
        let stream = self.e.map.range(start.to_vec()..).take(limit);
        let got: Vec<persistx::Result<(Vec<u8>, Vec<u8>)>> = self.e.rt.block_on(stream.collect());
        for r in got {
            out.push(r?);
        }
        Ok(())
    }

    fn remove_batch_durable(&mut self, keys: &[&[u8]]) -> Result<()> {
        // Each key is copied as the map takes it (a window at a time), not all up front.
        let owned = keys.iter().map(|k| k.to_vec());
        self.e.rt.block_on(self.e.map.remove_many(owned))?;
        Ok(())
    }
}
