//! fjall 2: one keyspace with one partition `kv`.
//!
//! Durability: every write is a keyspace `Batch` committed with
//! `durability(Some(PersistMode::SyncAll))`, so `commit` returns after the journal has been
//! written and `fsync`'ed: survives power loss. (The keyspace is opened with
//! `manual_journal_persist(true)`, so nothing relies on the background fsync thread, which
//! is off by default anyway.) Commits serialize on the journal writer lock, fsync included.

use std::path::Path;

use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use crate::Result;
use crate::compare::engine::{Engine, Pair, Session};

/// An open fjall keyspace and its partition.
pub struct FjallEngine {
    keyspace: Keyspace,
    part: PartitionHandle,
}

impl FjallEngine {
    fn batch(&self) -> fjall::Batch {
        self.keyspace.batch().durability(Some(PersistMode::SyncAll))
    }
}

impl Engine for FjallEngine {
    const NAME: &'static str = "fjall";

    type Session<'e> = FjallSession<'e>;

    fn open(dir: &Path) -> Result<Self> {
        let keyspace = Config::new(dir).manual_journal_persist(true).open()?;
        let part = keyspace.open_partition("kv", PartitionCreateOptions::default())?;
        Ok(FjallEngine { keyspace, part })
    }

    fn session(&self) -> Result<FjallSession<'_>> {
        Ok(FjallSession { engine: self })
    }

    fn close(self) -> Result<()> {
        // Dropping the keyspace persists its journal; do it explicitly to see the error.
        self.keyspace.persist(PersistMode::SyncAll)?;
        drop(self.part);
        drop(self.keyspace);
        Ok(())
    }
}

/// One thread's use of a [`FjallEngine`].
pub struct FjallSession<'e> {
    engine: &'e FjallEngine,
}

impl Session for FjallSession<'_> {
    fn insert_one_durable(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = self.engine.batch();
        batch.insert(&self.engine.part, key, value);
        batch.commit()?;
        Ok(())
    }

    fn insert_batch_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        let mut batch = self.engine.batch();
        for &(k, v) in pairs {
            batch.insert(&self.engine.part, k, v);
        }
        batch.commit()?;
        Ok(())
    }

    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.engine.part.get(key)? {
            Some(v) => {
                value.clear();
                value.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn range(
        &mut self,
        start: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        out.clear();
        for entry in self.engine.part.range(start..).take(limit) {
            let (k, v) = entry?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(())
    }

    fn remove_batch_durable(&mut self, keys: &[&[u8]]) -> Result<()> {
        let mut batch = self.engine.batch();
        for &k in keys {
            batch.remove(&self.engine.part, k);
        }
        batch.commit()?;
        Ok(())
    }
}
