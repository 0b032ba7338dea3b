//! One conformance suite for every real backend: each check is an async function taking the
//! backend and a base directory, run for the portable, io_uring and memory backends.
//!
//! If io_uring cannot run here, the io_uring tests print `io_uring unavailable: ..., skipping`
//! and pass.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use persistx_io::{File, OpenMode, Vfs, memory, portable, uring};

/// Builds a backend and a base directory (kept alive by the returned guard).
type Setup = fn() -> Option<(Arc<dyn Vfs>, PathBuf, Option<tempfile::TempDir>)>;

fn portable_setup() -> Option<(Arc<dyn Vfs>, PathBuf, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let vfs: Arc<dyn Vfs> =
        Arc::new(portable::PortableVfs::start(1).expect("portable backend starts"));
    Some((vfs, dir.path().to_path_buf(), Some(dir)))
}

fn uring_setup() -> Option<(Arc<dyn Vfs>, PathBuf, Option<tempfile::TempDir>)> {
    match uring::start() {
        Ok(vfs) => {
            assert_eq!(vfs.name(), "io_uring");
            let dir = tempfile::tempdir().expect("tempdir");
            Some((vfs, dir.path().to_path_buf(), Some(dir)))
        }
        Err(e) => {
            println!("io_uring unavailable: {e}, skipping");
            None
        }
    }
}

fn memory_setup() -> Option<(Arc<dyn Vfs>, PathBuf, Option<tempfile::TempDir>)> {
    let vfs: Arc<dyn Vfs> = Arc::new(memory::MemoryVfs::new());
    Some((vfs, PathBuf::from("/mem/db"), None))
}

/// Runs one check against one backend, in a fresh base directory.
async fn run<F, Fut>(setup: Setup, check: F)
where
    F: FnOnce(Arc<dyn Vfs>, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some((vfs, base, _guard)) = setup() else {
        return;
    };
    vfs.create_dir_all(&base).await.expect("create base dir");
    check(vfs, base).await;
}

/// `n` bytes of a pattern that differs per `seed`, so misplaced writes show.
fn pattern(seed: u64, n: usize) -> Bytes {
    (0..n)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn open_rw(vfs: &Arc<dyn Vfs>, path: &Path) -> Arc<dyn File> {
    vfs.open(path, OpenMode::CreateOrOpen)
        .await
        .expect("open CreateOrOpen")
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

async fn open_modes(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let missing = base.join("missing");
    let e = vfs
        .open(&missing, OpenMode::Read)
        .await
        .expect_err("Read of a missing file fails");
    assert!(e.is_not_found(), "expected not found, got {e}");
    let e = vfs
        .open(&missing, OpenMode::ReadWrite)
        .await
        .expect_err("ReadWrite of a missing file fails");
    assert!(e.is_not_found(), "expected not found, got {e}");
    assert!(!vfs.exists(&missing).await.expect("exists"));

    let path = base.join("a");
    let f = vfs
        .open(&path, OpenMode::CreateNew)
        .await
        .expect("CreateNew of a new file");
    assert_eq!(f.path(), path.as_path());
    f.write_at(0, Bytes::from_static(b"hello"))
        .await
        .expect("write");
    drop(f);
    assert!(
        vfs.open(&path, OpenMode::CreateNew).await.is_err(),
        "CreateNew of an existing file fails"
    );

    // CreateOrOpen keeps the contents; Read and ReadWrite open the existing file.
    let f = vfs
        .open(&path, OpenMode::CreateOrOpen)
        .await
        .expect("CreateOrOpen existing");
    assert_eq!(f.read_at(0, 5).await.expect("read"), &b"hello"[..]);
    let r = vfs
        .open(&path, OpenMode::Read)
        .await
        .expect("Read existing");
    assert_eq!(r.read_at(0, 5).await.expect("read"), &b"hello"[..]);
    let rw = vfs
        .open(&path, OpenMode::ReadWrite)
        .await
        .expect("ReadWrite existing");
    rw.write_at(0, Bytes::from_static(b"J"))
        .await
        .expect("write");
    assert_eq!(
        r.read_at(0, 5).await.expect("read"),
        &b"Jello"[..],
        "handles share the file"
    );

    let created = base.join("b");
    let f = vfs
        .open(&created, OpenMode::CreateOrOpen)
        .await
        .expect("CreateOrOpen of a new file");
    assert_eq!(f.len().await.expect("len"), 0);
    assert!(vfs.exists(&created).await.expect("exists"));
}

async fn read_write_round_trip(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let f = open_rw(&vfs, &base.join("rw")).await;
    assert_eq!(f.len().await.expect("len"), 0);
    assert!(
        f.read_at(0, 10)
            .await
            .expect("read of an empty file")
            .is_empty()
    );

    let a = pattern(1, 4096);
    f.write_at(0, a.clone()).await.expect("write at 0");
    assert_eq!(f.read_at(0, 4096).await.expect("read"), a);
    assert_eq!(f.len().await.expect("len"), 4096);

    // Overwrite in the middle, at an odd offset.
    let b = pattern(2, 100);
    f.write_at(1000, b.clone()).await.expect("write at 1000");
    assert_eq!(f.read_at(1000, 100).await.expect("read"), b);
    assert_eq!(f.read_at(999, 1).await.expect("read"), a.slice(999..1000));
    assert_eq!(
        f.read_at(1100, 10).await.expect("read"),
        a.slice(1100..1110)
    );

    // Past the end: the file grows and the gap reads as zeros.
    let c = pattern(3, 512);
    f.write_at(10_000, c.clone()).await.expect("write past end");
    assert_eq!(f.len().await.expect("len"), 10_512);
    let gap = f.read_at(4096, 10_000 - 4096).await.expect("read gap");
    assert_eq!(gap.len(), 10_000 - 4096);
    assert!(gap.iter().all(|&b| b == 0), "the gap is zero-filled");
    assert_eq!(f.read_at(10_000, 512).await.expect("read"), c);

    // Short read at the end of file, and reads starting past it.
    let tail = f.read_at(10_500, 100).await.expect("read across EOF");
    assert_eq!(tail, c.slice(500..512));
    assert!(f.read_at(10_512, 10).await.expect("read at EOF").is_empty());
    assert!(
        f.read_at(1 << 30, 10)
            .await
            .expect("read far past EOF")
            .is_empty()
    );
    assert!(f.read_at(0, 0).await.expect("zero-length read").is_empty());

    // A large read and write (several MiB, more than one kernel call may move).
    let big = pattern(4, 3 << 20);
    f.write_at(5, big.clone()).await.expect("big write");
    assert_eq!(f.read_at(5, big.len()).await.expect("big read"), big);
}

/// A zero-length write past the end of the file does not extend it (`pwrite` of 0 bytes).
async fn empty_write_past_eof(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let f = open_rw(&vfs, &base.join("empty")).await;
    f.write_at(0, Bytes::from_static(b"abc"))
        .await
        .expect("write");
    f.write_at(20_000, Bytes::new()).await.expect("empty write");
    assert_eq!(
        f.len().await.expect("len"),
        3,
        "an empty write past EOF must not extend the file"
    );
    f.write_batch(vec![(30_000, Bytes::new())])
        .await
        .expect("batch of one empty write");
    assert_eq!(f.len().await.expect("len"), 3);
}

async fn write_batch_scattered(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let f = open_rw(&vfs, &base.join("batch")).await;
    // 100 writes of 300 bytes at scattered, non-overlapping, unordered offsets.
    let writes: Vec<(u64, Bytes)> = (0..100u64)
        .map(|i| ((i * 37 % 100) * 1000 + i, pattern(i, 300)))
        .collect();
    f.write_batch(writes.clone()).await.expect("write_batch");
    let max_end = writes
        .iter()
        .map(|(o, d)| o + d.len() as u64)
        .max()
        .expect("non-empty");
    assert_eq!(f.len().await.expect("len"), max_end);
    for (offset, data) in &writes {
        assert_eq!(
            &f.read_at(*offset, data.len()).await.expect("read back"),
            data,
            "write at {offset}"
        );
    }
    f.write_batch(Vec::new()).await.expect("empty batch");
    f.write_batch(vec![(0, Bytes::new()), (7, Bytes::from_static(b"x"))])
        .await
        .expect("batch with an empty write");
    assert_eq!(f.read_at(7, 1).await.expect("read"), &b"x"[..]);
}

async fn write_and_sync(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let path = base.join("wal");
    let f = open_rw(&vfs, &path).await;
    let mut offset = 0u64;
    for i in 0..10u64 {
        let rec = pattern(i, 200 + i as usize);
        f.write_and_sync(offset, rec.clone())
            .await
            .expect("write_and_sync");
        assert_eq!(f.read_at(offset, rec.len()).await.expect("read"), rec);
        offset += rec.len() as u64;
    }
    assert_eq!(f.len().await.expect("len"), offset);
    // Starting writeback changes no byte.
    f.write_at(offset, pattern(99, 5000)).await.expect("write");
    f.start_writeback().await.expect("start_writeback");
    assert_eq!(
        f.read_at(offset, 5000).await.expect("read"),
        pattern(99, 5000)
    );
    offset += 5000;
    f.sync_data().await.expect("sync_data");
    f.sync_all().await.expect("sync_all");
    drop(f);
    // A fresh handle sees the same bytes.
    let r = vfs.open(&path, OpenMode::Read).await.expect("reopen");
    assert_eq!(r.len().await.expect("len"), offset);
    assert_eq!(r.read_at(0, 200).await.expect("read"), pattern(0, 200));
}

async fn cached_reads_are_exact_or_absent(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let path = base.join("cached");
    let f = open_rw(&vfs, &path).await;
    let data = pattern(7, 3 * 4096);
    f.write_and_sync(0, data.clone()).await.expect("write");
    let mut served = 0;
    for (offset, len) in [(0u64, 4096usize), (4096, 4096), (100, 5000), (8192, 4096)] {
        // Exactly the bytes, or nothing (then read_at serves it).
        if let Some(b) = f.try_read_cached(offset, len) {
            assert_eq!(b, data.slice(offset as usize..offset as usize + len));
            served += 1;
        }
        assert_eq!(
            f.read_at(offset, len).await.expect("read"),
            data.slice(offset as usize..offset as usize + len)
        );
    }
    // Past the end: never a short answer.
    assert!(f.try_read_cached(3 * 4096 - 10, 4096).is_none());
    if vfs.name() != "memory" {
        assert!(served > 0, "just-written pages are in the page cache");
    }
}

async fn direct_durable_writes(vfs: Arc<dyn Vfs>, base: PathBuf) {
    use persistx_io::vfs::DIRECT_ALIGN;
    let path = base.join("direct");
    let f = open_rw(&vfs, &path).await;
    f.write_at(0, Bytes::from(vec![0u8; 4 * DIRECT_ALIGN]))
        .await
        .expect("preallocate");
    f.sync_data().await.expect("sync");
    let d = vfs
        .open(&path, OpenMode::DirectDurable)
        .await
        .expect("open direct");
    let block = pattern(5, DIRECT_ALIGN);
    d.write_at(DIRECT_ALIGN as u64, block.clone())
        .await
        .expect("aligned direct write");
    let two = pattern(6, 2 * DIRECT_ALIGN);
    d.write_at(2 * DIRECT_ALIGN as u64, two.clone())
        .await
        .expect("two blocks");
    // Seen through another handle (a direct handle is write-only).
    assert_eq!(
        f.read_at(DIRECT_ALIGN as u64, DIRECT_ALIGN)
            .await
            .expect("read"),
        block
    );
    assert_eq!(
        f.read_at(2 * DIRECT_ALIGN as u64, 2 * DIRECT_ALIGN)
            .await
            .expect("read"),
        two
    );
    // Misaligned offset or length is refused and writes nothing.
    assert!(d.write_at(100, pattern(7, DIRECT_ALIGN)).await.is_err());
    assert!(d.write_at(0, pattern(7, 100)).await.is_err());
    assert_eq!(
        f.read_at(0, 200).await.expect("read"),
        Bytes::from(vec![0u8; 200])
    );
}

async fn set_len_and_len(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let f = open_rw(&vfs, &base.join("len")).await;
    let data = pattern(9, 1000);
    f.write_at(0, data.clone()).await.expect("write");
    assert_eq!(f.len().await.expect("len"), 1000);

    f.set_len(5000).await.expect("grow");
    assert_eq!(f.len().await.expect("len"), 5000);
    assert_eq!(
        f.read_at(0, 1000).await.expect("read"),
        data,
        "growing keeps the contents"
    );
    let grown = f.read_at(1000, 4000).await.expect("read grown part");
    assert_eq!(grown.len(), 4000);
    assert!(grown.iter().all(|&b| b == 0), "the grown part is zeros");

    f.set_len(300).await.expect("shrink");
    assert_eq!(f.len().await.expect("len"), 300);
    assert_eq!(
        f.read_at(0, 1000).await.expect("read after shrink"),
        data.slice(..300)
    );

    // Grow again after a shrink: the cut bytes do not come back.
    f.set_len(600).await.expect("regrow");
    let regrown = f.read_at(300, 300).await.expect("read");
    assert!(
        regrown.iter().all(|&b| b == 0),
        "bytes cut by a shrink do not come back"
    );

    f.set_len(0).await.expect("truncate to zero");
    assert_eq!(f.len().await.expect("len"), 0);
    assert!(f.read_at(0, 10).await.expect("read").is_empty());
}

async fn directory_ops(vfs: Arc<dyn Vfs>, base: PathBuf) {
    let dir = base.join("d").join("e");
    vfs.create_dir_all(&dir).await.expect("create_dir_all");
    vfs.create_dir_all(&dir)
        .await
        .expect("create_dir_all is idempotent");
    assert!(vfs.exists(&dir).await.expect("exists dir"));
    assert!(vfs.list_dir(&dir).await.expect("list empty dir").is_empty());

    for name in ["c.log", "a.page", "b.tmp", "10", "2"] {
        let f = open_rw(&vfs, &dir.join(name)).await;
        f.write_at(0, Bytes::copy_from_slice(name.as_bytes()))
            .await
            .expect("write");
    }
    assert_eq!(
        vfs.list_dir(&dir).await.expect("list_dir"),
        ["10", "2", "a.page", "b.tmp", "c.log"]
    );

    // Rename replaces the target.
    vfs.rename(&dir.join("b.tmp"), &dir.join("a.page"))
        .await
        .expect("rename over existing");
    assert_eq!(
        vfs.list_dir(&dir).await.expect("list_dir"),
        ["10", "2", "a.page", "c.log"]
    );
    let f = vfs
        .open(&dir.join("a.page"), OpenMode::Read)
        .await
        .expect("open renamed");
    assert_eq!(f.read_at(0, 100).await.expect("read"), &b"b.tmp"[..]);
    assert!(!vfs.exists(&dir.join("b.tmp")).await.expect("exists"));

    // Rename to a new name.
    vfs.rename(&dir.join("c.log"), &dir.join("d.log"))
        .await
        .expect("rename");
    assert!(vfs.exists(&dir.join("d.log")).await.expect("exists"));
    assert!(!vfs.exists(&dir.join("c.log")).await.expect("exists"));
    let e = vfs
        .rename(&dir.join("nope"), &dir.join("x"))
        .await
        .expect_err("rename of a missing file");
    assert!(e.is_not_found(), "expected not found, got {e}");

    // Remove.
    vfs.remove_file(&dir.join("10")).await.expect("remove_file");
    assert!(!vfs.exists(&dir.join("10")).await.expect("exists"));
    let e = vfs
        .remove_file(&dir.join("10"))
        .await
        .expect_err("remove of a missing file");
    assert!(e.is_not_found(), "expected not found, got {e}");
    assert_eq!(
        vfs.list_dir(&dir).await.expect("list_dir"),
        ["2", "a.page", "d.log"]
    );

    vfs.sync_dir(&dir).await.expect("sync_dir");
    vfs.sync_dir(&base).await.expect("sync_dir of the base");
    assert_eq!(
        vfs.list_dir(&base.join("d")).await.expect("list parent"),
        ["e"]
    );
}

async fn concurrent_writers(vfs: Arc<dyn Vfs>, base: PathBuf) {
    const TASKS: u64 = 64;
    const SIZE: usize = 4096;
    let f = open_rw(&vfs, &base.join("concurrent")).await;
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            // Each task writes its page in two halves, so requests interleave.
            let page = pattern(i, SIZE);
            let offset = i * SIZE as u64;
            f.write_at(offset + (SIZE / 2) as u64, page.slice(SIZE / 2..))
                .await
                .expect("write second half");
            f.write_at(offset, page.slice(..SIZE / 2))
                .await
                .expect("write first half");
            f.read_at(offset, SIZE).await.expect("read own page") == page
        }));
    }
    for h in handles {
        assert!(h.await.expect("task"), "a task read back its own page");
    }
    assert_eq!(f.len().await.expect("len"), TASKS * SIZE as u64);
    for i in 0..TASKS {
        assert_eq!(
            f.read_at(i * SIZE as u64, SIZE).await.expect("read"),
            pattern(i, SIZE),
            "page {i}"
        );
    }
    // Concurrent readers of one file.
    let mut readers = Vec::new();
    for i in 0..TASKS {
        let f = f.clone();
        readers.push(tokio::spawn(async move {
            f.read_at(i * SIZE as u64, SIZE).await.expect("read") == pattern(i, SIZE)
        }));
    }
    for r in readers {
        assert!(r.await.expect("task"));
    }
}

async fn many_files(vfs: Arc<dyn Vfs>, base: PathBuf) {
    // Open, write and drop many files; handles are closed on drop and ids never mix up.
    for round in 0..3u64 {
        let mut files = Vec::new();
        for i in 0..50u64 {
            let f = open_rw(&vfs, &base.join(format!("f{i}"))).await;
            f.write_at(round, pattern(i, 10)).await.expect("write");
            files.push(f);
        }
        for (i, f) in files.iter().enumerate() {
            assert_eq!(
                f.read_at(round, 10).await.expect("read"),
                pattern(i as u64, 10)
            );
        }
    }
    assert_eq!(vfs.list_dir(&base).await.expect("list").len(), 50);
}

// ---------------------------------------------------------------------------------------------
// One test per (backend, check)
// ---------------------------------------------------------------------------------------------

macro_rules! suite {
    ($backend:ident, $setup:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn open_modes() {
                run($setup, super::open_modes).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn read_write_round_trip() {
                run($setup, super::read_write_round_trip).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn write_batch_scattered() {
                run($setup, super::write_batch_scattered).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn write_and_sync() {
                run($setup, super::write_and_sync).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cached_reads_are_exact_or_absent() {
                run($setup, super::cached_reads_are_exact_or_absent).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn direct_durable_writes() {
                run($setup, super::direct_durable_writes).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn set_len_and_len() {
                run($setup, super::set_len_and_len).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn directory_ops() {
                run($setup, super::directory_ops).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers() {
                run($setup, super::concurrent_writers).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_files() {
                run($setup, super::many_files).await;
            }
        }
    };
}

// The memory backend (and the simulated disk, which shares `memory::write_into`) extends the
// file on a zero-length write past EOF, unlike `pwrite` and io_uring; it has its own test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portable_backend_empty_write_past_eof() {
    run(portable_setup, empty_write_past_eof).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uring_backend_empty_write_past_eof() {
    run(uring_setup, empty_write_past_eof).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_empty_write_past_eof() {
    run(memory_setup, empty_write_past_eof).await;
}

suite!(portable_backend, portable_setup);
suite!(uring_backend, uring_setup);
suite!(memory_backend, memory_setup);

// ---------------------------------------------------------------------------------------------
// io_uring specifics
// ---------------------------------------------------------------------------------------------

/// On Linux, where io_uring is not blocked, the backend must start (the suite above must not
/// silently skip). Set `PERSISTX_ALLOW_NO_URING=1` where io_uring is known to be blocked.
#[test]
fn uring_starts_here() {
    match uring::start() {
        Ok(vfs) => assert_eq!(vfs.name(), "io_uring"),
        Err(e) => {
            println!("io_uring unavailable: {e}, skipping");
            let allowed =
                std::env::var_os("PERSISTX_ALLOW_NO_URING").is_some() || !cfg!(target_os = "linux");
            assert!(allowed, "io_uring did not start on Linux: {e}");
            assert!(matches!(
                e,
                persistx_io::Error::Unavailable {
                    backend: "io_uring",
                    ..
                }
            ));
        }
    }
}

/// A file handle outlives the `Vfs` handle, and many backends start and stop in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uring_file_outlives_vfs_and_restarts() {
    for _ in 0..5 {
        let Some((vfs, base, _guard)) = uring_setup() else {
            return;
        };
        let f = open_rw(&vfs, &base.join("x")).await;
        drop(vfs);
        f.write_and_sync(0, Bytes::from_static(b"still here"))
            .await
            .expect("write after the vfs dropped");
        assert_eq!(f.read_at(0, 10).await.expect("read"), &b"still here"[..]);
    }
}

/// Errors carry the path and offset of the failed operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uring_errors_name_the_path() {
    let Some((vfs, base, _guard)) = uring_setup() else {
        return;
    };
    let path = base.join("ro");
    open_rw(&vfs, &path).await;
    let ro = vfs
        .open(&path, OpenMode::Read)
        .await
        .expect("open read-only");
    let e = ro
        .write_at(4096, Bytes::from_static(b"x"))
        .await
        .expect_err("write to a read-only handle");
    let msg = e.to_string();
    assert!(
        msg.contains("write") && msg.contains("ro") && msg.contains("4096"),
        "unhelpful error: {msg}"
    );
}

/// Futures dropped after their request was sent (and files dropped with requests in flight)
/// leave the driver working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uring_cancelled_requests_leave_the_driver_working() {
    let Some((vfs, base, _guard)) = uring_setup() else {
        return;
    };
    for round in 0..5u64 {
        let f = open_rw(&vfs, &base.join(format!("c{round}"))).await;
        let mut tasks = Vec::new();
        for i in 0..100u64 {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                let _ = f
                    .write_batch(vec![
                        (i * 8192, pattern(i, 8192)),
                        (i * 8192 + 4096, pattern(i, 10)),
                    ])
                    .await;
                let _ = f.write_and_sync(i * 8192, pattern(i, 100)).await;
            }));
        }
        drop(f);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    let f = open_rw(&vfs, &base.join("after")).await;
    f.write_and_sync(0, Bytes::from_static(b"ok"))
        .await
        .expect("the driver still works");
    assert_eq!(f.read_at(0, 2).await.expect("read"), &b"ok"[..]);
}
