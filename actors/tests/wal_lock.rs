//! One log actor per WAL directory: a second open fails with `Error::Locked` (it would
//! otherwise hand out the same LSNs and overwrite acknowledged records), and the lock is
//! released only once the first actor has written, synced and dropped everything.
//! Regression tests for the review finding "second open of a live log loses acknowledged
//! records".

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use persistx_actors::{Durability, Error, Wal, WalOptions};
use persistx_io::sim::SimDisk;
use persistx_io::{Backend, Vfs, open_backend};

async fn second_open_is_refused(vfs: Arc<dyn Vfs>, dir: std::path::PathBuf) {
    let (a, _, _) = Wal::open(vfs.clone(), &dir, WalOptions::default())
        .await
        .expect("open a");
    assert_eq!(a.append(Bytes::from_static(b"a1")).await.expect("a1"), 1);
    match Wal::open(vfs.clone(), &dir, WalOptions::default()).await {
        Err(Error::Locked { .. }) => {}
        other => panic!("second open must be refused, got {:?}", other.map(|r| r.1)),
    }
    assert_eq!(
        a.append(Bytes::from_static(b"a2")).await.expect("a2"),
        2,
        "the first is untouched"
    );
    a.close().await.expect("close a");
    let (b, report, records) = Wal::open(vfs, &dir, WalOptions::default())
        .await
        .expect("open after close");
    assert_eq!((report.last_lsn, records.len()), (2, 2));
    b.close().await.expect("close b");
}

#[tokio::test]
async fn second_open_is_refused_on_the_simulated_disk() {
    second_open_is_refused(Arc::new(SimDisk::new()), "/db/wal".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_is_refused_on_real_files() {
    for backend in [Backend::Portable, Backend::IoUring] {
        let Ok(vfs) = open_backend(backend) else {
            eprintln!("{backend:?} unavailable, skipping");
            continue;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        second_open_is_refused(vfs, dir.path().join("wal")).await;
    }
}

/// "Drop the handle, reopen": the reopen waits (retrying on `Locked`) until the old actor
/// has flushed what it acknowledged at `None`; nothing is lost or overwritten.
#[tokio::test]
async fn reopen_after_drop_sees_what_the_old_actor_flushed() {
    let vfs: Arc<dyn Vfs> = Arc::new(SimDisk::new());
    let (a, _, _) = Wal::open(vfs.clone(), "/db/wal", WalOptions::default())
        .await
        .expect("open");
    a.append(Bytes::from_static(b"one")).await.expect("1");
    let l2 = a
        .append_with(Bytes::from_static(b"two-none"), Durability::None)
        .await
        .expect("2");
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (b, _, records) = loop {
        match Wal::open(vfs.clone(), "/db/wal", WalOptions::default()).await {
            Ok(opened) => break opened,
            Err(Error::Locked { .. }) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the old actor never released the lock"
                );
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    };
    assert_eq!(
        records.last().map(|r| (r.0, r.1.clone())),
        Some((l2, Bytes::from_static(b"two-none")))
    );
    assert_eq!(b.append(Bytes::from_static(b"three")).await.expect("3"), 3);
    b.close().await.expect("close");
}
