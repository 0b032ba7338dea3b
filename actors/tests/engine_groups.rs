//! Write groups absorbed by the next group while the log has not yet taken their records
//! (`collection::OpenGroup`): every caller is answered only once its write is durable and
//! published, answers are right, nothing is answered Ok when the log fails, and a reopen
//! finds every acknowledged write.
//!
//! The log's writes and syncs go through a gate the test holds shut, so that it can queue
//! writes behind a sync in flight in a known order.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use persistx_actors::engine::{Collection, Engine, EngineOptions, Kind, Op, OpResult};
use persistx_io::memory::MemoryVfs;
use persistx_io::vfs::LockGuard;
use persistx_io::{File, OpenMode, Result, Vfs};
use tokio::sync::Notify;

/// Holds the log's writes and syncs while shut; fails them while `fail` is set.
#[derive(Debug, Default)]
struct Gate {
    shut: AtomicBool,
    fail: AtomicBool,
    /// Calls waiting at the gate now.
    waiting: AtomicUsize,
    opened: Notify,
}

impl Gate {
    async fn pass(&self, path: &Path) -> Result<()> {
        while self.shut.load(Ordering::Acquire) {
            let opened = self.opened.notified();
            self.waiting.fetch_add(1, Ordering::AcqRel);
            if self.shut.load(Ordering::Acquire) {
                opened.await;
            }
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        if self.fail.load(Ordering::Acquire) {
            return Err(persistx_io::Error::io(
                "fdatasync",
                path,
                None,
                std::io::Error::other("injected by the test"),
            ));
        }
        Ok(())
    }

    fn open(&self) {
        self.shut.store(false, Ordering::Release);
        self.opened.notify_waiters();
    }

    /// Waits until a call is held at the gate.
    async fn until_held(&self) {
        while self.waiting.load(Ordering::Acquire) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[derive(Debug)]
struct GatedVfs {
    inner: Arc<dyn Vfs>,
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn File>,
    /// A log segment: its writes and syncs pass the gate.
    log: bool,
    gate: Arc<Gate>,
}

#[async_trait]
impl Vfs for GatedVfs {
    fn name(&self) -> &'static str {
        "gated"
    }
    async fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn File>> {
        let inner = self.inner.open(path, mode).await?;
        let log = path.extension().is_some_and(|e| e == "wal");
        Ok(Arc::new(GatedFile {
            inner,
            log,
            gate: self.gate.clone(),
        }))
    }
    async fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.inner.create_dir_all(path).await
    }
    async fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.inner.list_dir(path).await
    }
    async fn remove_file(&self, path: &Path) -> Result<()> {
        self.inner.remove_file(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to).await
    }
    async fn sync_dir(&self, path: &Path) -> Result<()> {
        self.inner.sync_dir(path).await
    }
    async fn exists(&self, path: &Path) -> Result<bool> {
        self.inner.exists(path).await
    }
    async fn lock(&self, path: &Path) -> Result<LockGuard> {
        self.inner.lock(path).await
    }
}

#[async_trait]
impl File for GatedFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        self.inner.read_at(offset, len).await
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        if self.log {
            self.gate.pass(self.inner.path()).await?;
        }
        self.inner.write_at(offset, data).await
    }
    async fn write_and_sync(&self, offset: u64, data: Bytes) -> Result<()> {
        self.write_at(offset, data).await?;
        self.inner.sync_data().await
    }
    async fn sync_data(&self) -> Result<()> {
        if self.log {
            self.gate.pass(self.inner.path()).await?;
        }
        self.inner.sync_data().await
    }
    async fn sync_all(&self) -> Result<()> {
        if self.log {
            self.gate.pass(self.inner.path()).await?;
        }
        self.inner.sync_all().await
    }
    async fn len(&self) -> Result<u64> {
        self.inner.len().await
    }
    async fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len).await
    }
}

fn key(i: u32) -> Bytes {
    Bytes::from(format!("key-{i:06}"))
}

fn val(i: u32) -> Bytes {
    Bytes::from(format!("value-{i}").repeat(3))
}

async fn open(vfs: &Arc<dyn Vfs>) -> (Engine, Collection) {
    let options = EngineOptions {
        auto_checkpoint: false,
        ..EngineOptions::default()
    };
    let db = Engine::open(vfs.clone(), "/db", options).await.unwrap();
    let c = db
        .collection("things", Kind::Map, "String", "Vec<u8>")
        .await
        .unwrap();
    (db, c)
}

/// A database on a gated memory disk holding key 0, with the gate shut.
async fn gated() -> (Arc<Gate>, Arc<dyn Vfs>, Engine, Collection) {
    let gate = Arc::new(Gate::default());
    let vfs: Arc<dyn Vfs> = Arc::new(GatedVfs {
        inner: Arc::new(MemoryVfs::new()),
        gate: gate.clone(),
    });
    let (db, c) = open(&vfs).await;
    c.write(vec![Op::Put(key(0), val(0))]).await.unwrap();
    gate.shut.store(true, Ordering::Release);
    (gate, vfs, db, c)
}

/// Sends a write from a task of its own.
fn spawn_write(
    c: &Collection,
    ops: Vec<Op>,
) -> tokio::task::JoinHandle<persistx_actors::Result<Vec<OpResult>>> {
    let c = c.clone();
    tokio::spawn(async move { c.write(ops).await })
}

/// Lets the collection actor take the writes just sent (they queue behind the held sync).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Behind a held sync: a write is queued (group 1); a write that logs nothing (the removal
/// of a missing key) absorbs it and gives it back; another write absorbs it for good. When
/// the sync is let through, every caller gets its own answer, each write is visible once
/// answered, and a reopen finds them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absorbed_groups_answer_every_caller_once_durable() {
    let (gate, vfs, db, c) = gated().await;
    let w = |ops: Vec<Op>| spawn_write(&c, ops);
    // Taken by the log at once; its sync waits at the gate.
    let first = w(vec![Op::Put(key(1), val(1))]);
    gate.until_held().await;
    // Queued behind it: group 1.
    let second = w(vec![Op::Put(key(2), val(2)), Op::Put(key(0), val(100))]);
    settle().await;
    // Logs nothing: absorbs group 1, then gives it back.
    let miss = w(vec![Op::Delete(key(99))]);
    settle().await;
    // Absorbs group 1 for good.
    let third = w(vec![Op::Put(key(3), val(3)), Op::Delete(key(2))]);
    settle().await;
    for h in [&first, &second, &miss, &third] {
        assert!(!h.is_finished(), "answered before its write was durable");
    }
    // Nothing published before it is durable.
    let snap = c.snapshot();
    assert_eq!(snap.get(&key(0)).await.unwrap(), Some(val(0)));
    for i in 1..=3 {
        assert_eq!(
            snap.get(&key(i)).await.unwrap(),
            None,
            "key {i} published early"
        );
    }
    drop(snap);
    gate.open();

    // Each answer comes with its write visible.
    assert_eq!(first.await.unwrap().unwrap(), vec![OpResult::Old(None)]);
    assert_eq!(c.snapshot().get(&key(1)).await.unwrap(), Some(val(1)));
    assert_eq!(
        second.await.unwrap().unwrap(),
        vec![OpResult::Old(None), OpResult::Old(Some(val(0)))]
    );
    assert_eq!(c.snapshot().get(&key(0)).await.unwrap(), Some(val(100)));
    assert_eq!(miss.await.unwrap().unwrap(), vec![OpResult::Old(None)]);
    assert_eq!(
        third.await.unwrap().unwrap(),
        vec![OpResult::Old(None), OpResult::Old(Some(val(2)))]
    );
    assert_eq!(c.snapshot().get(&key(3)).await.unwrap(), Some(val(3)));
    // The miss gave group 1 back (not counted); the third write absorbed it.
    assert_eq!(db.stats().await.unwrap().groups_absorbed, 1);

    let expect = [
        (0, Some(val(100))),
        (1, Some(val(1))),
        (2, None),
        (3, Some(val(3))),
    ];
    for (i, v) in &expect {
        assert_eq!(c.snapshot().get(&key(*i)).await.unwrap(), *v, "key {i}");
    }
    db.close().await.unwrap();
    let (db, c) = open(&vfs).await;
    for (i, v) in &expect {
        assert_eq!(
            c.snapshot().get(&key(*i)).await.unwrap(),
            *v,
            "key {i} after reopen"
        );
    }
    db.close().await.unwrap();
}

/// Behind a held sync that then fails: the queued group, a miss waiting behind it and the
/// group that absorbed it are all answered with an error, no write is ever visible, and a
/// reopen finds the write acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absorbed_groups_fail_with_the_log() {
    let (gate, vfs, db, c) = gated().await;
    let w = |ops: Vec<Op>| spawn_write(&c, ops);
    let first = w(vec![Op::Put(key(1), val(1))]);
    gate.until_held().await;
    let second = w(vec![Op::Put(key(2), val(2))]);
    settle().await;
    // A miss waits for the pending groups; once they fail it may reflect a lost write.
    let miss = w(vec![Op::Delete(key(99))]);
    settle().await;
    let third = w(vec![Op::Put(key(3), val(3))]);
    settle().await;
    assert!(!third.is_finished());
    gate.fail.store(true, Ordering::Release);
    gate.open();
    for h in [first, second, miss, third] {
        assert!(
            h.await.unwrap().is_err(),
            "answered Ok though the log failed"
        );
    }
    // The third write had absorbed the second's group.
    assert_eq!(db.stats().await.unwrap().groups_absorbed, 1);
    for i in 1..=3 {
        assert_eq!(
            c.snapshot().get(&key(i)).await.unwrap(),
            None,
            "key {i} visible"
        );
    }
    assert_eq!(c.snapshot().get(&key(0)).await.unwrap(), Some(val(0)));
    drop(c);
    let _ = db.close().await;
    // The acknowledged write survives; none of the failed ones was written.
    gate.fail.store(false, Ordering::Release);
    let (db, c) = open(&vfs).await;
    assert_eq!(c.snapshot().get(&key(0)).await.unwrap(), Some(val(0)));
    for i in 1..=3 {
        assert_eq!(c.snapshot().get(&key(i)).await.unwrap(), None, "key {i}");
    }
    db.close().await.unwrap();
}
