//! The interface every compared engine implements.
//!
//! An [`Engine`] is the open database, shared by reference across threads. A [`Session`] is
//! what one thread uses to talk to it: for engines whose handle is `Sync` (redb, fjall,
//! sled) a session is little more than a reference; for SQLite it is a connection of its
//! own. Every phase of the workload opens one session per thread before the clock starts.
//!
//! The methods are synchronous. An async engine (PersistX) implements them by blocking on
//! its runtime (`tokio::runtime::Handle::block_on` from the plain threads the workload
//! spawns).
//!
//! "Durable" means: when the method returns `Ok`, the write survives a power loss (the
//! engine has fsync'ed, or fdatasync'ed, what it needs). Each engine module says how.

use std::path::Path;

use crate::Result;

/// A key and its value.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// A key and its value, owned (what a range read returns).
pub type OwnedPair = (Vec<u8>, Vec<u8>);

/// An open database of one engine.
pub trait Engine: Sync + Sized {
    /// Name on the command line and in the table.
    const NAME: &'static str;

    /// What one thread uses to read and write.
    type Session<'e>: Session
    where
        Self: 'e;

    /// Creates a new, empty database in `dir` (an existing, empty directory).
    fn open(dir: &Path) -> Result<Self>;

    /// Opens a session for the calling thread.
    fn session(&self) -> Result<Self::Session<'_>>;

    /// Closes the database, flushing whatever the engine flushes on a clean close.
    fn close(self) -> Result<()> {
        drop(self);
        Ok(())
    }
}

/// The operations of the workload, as one thread sees them.
///
/// Visibility: a session sees its own writes, and all writes committed before it was opened.
/// It may keep a read snapshot from its first read until its next write or its end (redb's
/// does), so writes that other sessions commit meanwhile may stay invisible to it. The
/// workload opens a new session for every phase and every check.
pub trait Session {
    /// Inserts all `pairs` in one transaction and commits durably.
    ///
    /// The default is [`Session::insert_batch_durable`]; an engine overrides it only if it
    /// has a faster way to load into an empty database that is still one atomic, durable
    /// commit.
    fn bulk_load(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        self.insert_batch_durable(pairs)
    }

    /// Inserts one pair in its own transaction and commits durably.
    fn insert_one_durable(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Inserts every pair in a transaction of its own, one after the other, each committed
    /// durably before the next starts (phases 2 and 4: one writer's commits).
    ///
    /// The default calls [`Session::insert_one_durable`] in a loop on the calling thread,
    /// the natural use of a synchronous engine. An async engine may run the same loop where
    /// its users' code runs, in a task of its runtime (still one awaited commit at a time).
    fn insert_each_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        for (k, v) in pairs {
            self.insert_one_durable(k, v)?;
        }
        Ok(())
    }

    /// Inserts `pairs` in one transaction and commits durably.
    fn insert_batch_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()>;

    /// Looks `key` up; on a hit, replaces the contents of `value` with its value and returns
    /// `true`.
    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool>;

    /// Looks up every key of `keys`, one after the other, and hands each answer (the value,
    /// or `None` if the key is absent) to `check` before the next lookup starts (phase 5:
    /// one reader's lookups).
    ///
    /// The default calls [`Session::get`] in a loop on the calling thread, the natural use of
    /// a synchronous engine. An async engine may run the same loop as its users' code would,
    /// awaiting each lookup in turn in one async block, instead of bridging every lookup to
    /// its runtime on its own.
    fn get_each<'k>(
        &mut self,
        keys: &mut dyn Iterator<Item = &'k [u8]>,
        check: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut value = Vec::new();
        for key in keys {
            let found = self.get(key, &mut value)?;
            check(found.then_some(value.as_slice()))?;
        }
        Ok(())
    }

    /// Replaces the contents of `out` with the first `limit` entries whose key is `>= start`,
    /// in ascending key order.
    fn range(
        &mut self,
        start: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()>;

    /// Reads the first `limit` entries from each key of `starts` on (as [`Session::range`]),
    /// one range after the other, and hands each range to `check` before the next starts
    /// (phase 6). The default calls [`Session::range`] in a loop; an async engine may await
    /// the ranges in one async block (see [`Session::get_each`]).
    fn range_each<'k>(
        &mut self,
        starts: &mut dyn Iterator<Item = &'k [u8]>,
        limit: usize,
        check: &mut dyn FnMut(&[OwnedPair]) -> Result<()>,
    ) -> Result<()> {
        let mut out = Vec::with_capacity(limit);
        for start in starts {
            self.range(start, limit, &mut out)?;
            check(&out)?;
        }
        Ok(())
    }

    /// Removes `keys` in one transaction and commits durably.
    fn remove_batch_durable(&mut self, keys: &[&[u8]]) -> Result<()>;
}
