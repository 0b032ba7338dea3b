//! redb 2: one table `kv` of `&[u8] -> &[u8]` in one file.
//!
//! Durability: every write transaction commits at redb's default `Durability::Immediate`
//! (set explicitly), so `commit` returns after `fdatasync` of the file: survives power loss.
//! redb allows one write transaction at a time; concurrent writers block in `begin_write`.
//!
//! Reads: a session keeps one read transaction (and its open table) for a run of reads and
//! drops it before its next write, so a read phase pays `begin_read` once per thread, not
//! per read, as a read-heavy redb program would.

use std::path::Path;

use redb::{Database, Durability, ReadOnlyTable, TableDefinition};

use crate::Result;
use crate::compare::engine::{Engine, Pair, Session};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// An open redb database.
#[derive(Debug)]
pub struct RedbEngine {
    db: Database,
}

impl Engine for RedbEngine {
    const NAME: &'static str = "redb";

    type Session<'e> = RedbSession<'e>;

    fn open(dir: &Path) -> Result<Self> {
        let db = Database::create(dir.join("kv.redb"))?;
        // Create the table, so reads before any write find it.
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate);
        tx.open_table(TABLE)?;
        tx.commit()?;
        Ok(RedbEngine { db })
    }

    fn session(&self) -> Result<RedbSession<'_>> {
        Ok(RedbSession {
            db: &self.db,
            read: None,
        })
    }
}

/// One thread's use of a [`RedbEngine`].
pub struct RedbSession<'e> {
    db: &'e Database,
    read: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl RedbSession<'_> {
    fn write<F>(&mut self, f: F) -> Result<()>
    where
        F: FnOnce(&mut redb::Table<'_, &'static [u8], &'static [u8]>) -> Result<()>,
    {
        // A read snapshot left open would pin old pages and grow the file.
        self.read = None;
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate);
        {
            let mut table = tx.open_table(TABLE)?;
            f(&mut table)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn table(&mut self) -> Result<&ReadOnlyTable<&'static [u8], &'static [u8]>> {
        if self.read.is_none() {
            self.read = Some(self.db.begin_read()?.open_table(TABLE)?);
        }
        self.read
            .as_ref()
            .ok_or_else(|| "redb: read table missing right after opening it".into())
    }
}

impl Session for RedbSession<'_> {
    fn insert_one_durable(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(|t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn insert_batch_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        self.write(|t| {
            for &(k, v) in pairs {
                t.insert(k, v)?;
            }
            Ok(())
        })
    }

    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        match self.table()?.get(key)? {
            Some(v) => {
                value.clear();
                value.extend_from_slice(v.value());
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
        for entry in self.table()?.range(start..)?.take(limit) {
            let (k, v) = entry?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(())
    }

    fn remove_batch_durable(&mut self, keys: &[&[u8]]) -> Result<()> {
        self.write(|t| {
            for &k in keys {
                if t.remove(k)?.is_none() {
                    return Err(format!(
                        "redb: removing key {} that should be present: not found",
                        crate::compare::dataset::hex_prefix(k)
                    )
                    .into());
                }
            }
            Ok(())
        })
    }
}
