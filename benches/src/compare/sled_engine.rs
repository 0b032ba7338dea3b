//! sled 0.34: the default tree of one `Db`.
//!
//! Durability: multi-key writes are one atomic `apply_batch`; every durable write is followed
//! by `Db::flush()`, which returns once the log up to that write is on disk. Caveat: on Linux
//! sled 0.34 makes its log stable with `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`,
//! not `fsync`/`fdatasync` (it calls `sync_all` only at segment and snapshot boundaries), so
//! a flush waits for the data to reach the device but does not flush the device's volatile
//! write cache or the file's metadata: it survives a process crash, and power loss only on a
//! device without a volatile cache. Its durable-commit rates are therefore not directly
//! comparable with the engines that fsync. The background flusher (every 500 ms) stays on,
//! as by default.

use std::path::Path;

use sled::{Batch, Db};

use crate::Result;
use crate::compare::engine::{Engine, Pair, Session};

/// An open sled database.
pub struct SledEngine {
    db: Db,
}

impl Engine for SledEngine {
    const NAME: &'static str = "sled";

    type Session<'e> = SledSession<'e>;

    fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir.join("db")).open()?;
        Ok(SledEngine { db })
    }

    fn session(&self) -> Result<SledSession<'_>> {
        Ok(SledSession { db: &self.db })
    }

    fn close(self) -> Result<()> {
        self.db.flush()?;
        drop(self.db);
        Ok(())
    }
}

/// One thread's use of a [`SledEngine`].
pub struct SledSession<'e> {
    db: &'e Db,
}

impl Session for SledSession<'_> {
    fn insert_one_durable(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    fn insert_batch_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        let mut batch = Batch::default();
        for &(k, v) in pairs {
            batch.insert(k, v);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.db.get(key)? {
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
        for entry in self.db.range(start..).take(limit) {
            let (k, v) = entry?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(())
    }

    fn remove_batch_durable(&mut self, keys: &[&[u8]]) -> Result<()> {
        let mut batch = Batch::default();
        for &k in keys {
            batch.remove(k);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
}
