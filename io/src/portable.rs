//! The portable backend: positioned reads and writes (`pread`/`pwrite`) on dedicated I/O
//! threads, so no tokio worker ever blocks on the disk.
//!
//! Requests are closures sent over a bounded flume channel; each answers on a oneshot
//! channel. The threads end when the last handle (the [`PortableVfs`] and every file opened
//! from it) is dropped.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::vfs::{
    File, LockGuard, OpenMode, Vfs, aligned_copy, check_direct, lock_file_blocking,
    std_open_options,
};

const BACKEND: &str = "portable";
/// Requests queued for the I/O threads before callers wait for room.
const QUEUE_CAPACITY: usize = 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The portable backend. Cloning shares the I/O threads.
#[derive(Debug, Clone)]
pub struct PortableVfs {
    jobs: flume::Sender<Job>,
}

impl PortableVfs {
    /// Starts `threads` I/O threads (at least one).
    pub fn start(threads: usize) -> Result<PortableVfs> {
        let (tx, rx) = flume::bounded::<Job>(QUEUE_CAPACITY);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("persistx-io-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .map_err(|e| Error::io("spawn I/O thread", "", None, e))?;
        }
        Ok(PortableVfs { jobs: tx })
    }

    /// Runs `f` on an I/O thread and awaits its answer.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        run_on(&self.jobs, f).await
    }
}

async fn run_on<T: Send + 'static>(
    jobs: &flume::Sender<Job>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    jobs.send_async(job)
        .await
        .map_err(|_| Error::BackendGone { backend: BACKEND })?;
    rx.await
        .map_err(|_| Error::BackendGone { backend: BACKEND })?
}

#[async_trait]
impl Vfs for PortableVfs {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn File>> {
        let path = path.to_path_buf();
        let p = path.clone();
        let file = self
            .run(move || {
                let o = std_open_options(mode);
                o.open(&p).map_err(|e| Error::io("open", &p, None, e))
            })
            .await?;
        Ok(Arc::new(PortableFile {
            direct: mode == OpenMode::DirectDurable,
            file: Arc::new(file),
            path,
            jobs: self.jobs.clone(),
        }))
    }

    async fn create_dir_all(&self, path: &Path) -> Result<()> {
        let p = path.to_path_buf();
        self.run(move || {
            std::fs::create_dir_all(&p).map_err(|e| Error::io("create_dir_all", &p, None, e))
        })
        .await
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let p = path.to_path_buf();
        self.run(move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&p).map_err(|e| Error::io("read_dir", &p, None, e))? {
                let entry = entry.map_err(|e| Error::io("read_dir", &p, None, e))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn remove_file(&self, path: &Path) -> Result<()> {
        let p = path.to_path_buf();
        self.run(move || {
            std::fs::remove_file(&p).map_err(|e| Error::io("remove_file", &p, None, e))
        })
        .await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (f, t) = (from.to_path_buf(), to.to_path_buf());
        self.run(move || std::fs::rename(&f, &t).map_err(|e| Error::io("rename", &f, None, e)))
            .await
    }

    async fn sync_dir(&self, path: &Path) -> Result<()> {
        let p = path.to_path_buf();
        self.run(move || sync_dir_blocking(&p)).await
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        let p = path.to_path_buf();
        self.run(move || p.try_exists().map_err(|e| Error::io("stat", &p, None, e)))
            .await
    }

    async fn lock(&self, path: &Path) -> Result<LockGuard> {
        let p = path.to_path_buf();
        self.run(move || lock_file_blocking(&p)).await
    }
}

/// `fsync` of a directory, so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir_blocking(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path).map_err(|e| Error::io("open directory", path, None, e))?;
    dir.sync_all()
        .map_err(|e| Error::io("sync directory", path, None, e))
}

/// A file of the portable backend.
#[derive(Debug)]
pub struct PortableFile {
    /// Opened with `O_DIRECT | O_DSYNC`: writes go through an aligned copy.
    direct: bool,
    file: Arc<std::fs::File>,
    path: PathBuf,
    jobs: flume::Sender<Job>,
}

impl PortableFile {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&std::fs::File, &Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let file = self.file.clone();
        let path = self.path.clone();
        run_on(&self.jobs, move || f(&file, &path)).await
    }
}

fn read_full(file: &std::fs::File, path: &Path, offset: u64, len: usize) -> Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, Some(offset), e)),
        }
    }
    buf.truncate(done);
    Ok(Bytes::from(buf))
}

fn write_full(file: &std::fs::File, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
    file.write_all_at(data, offset)
        .map_err(|e| Error::io("write", path, Some(offset), e))
}

fn write_any(
    direct: bool,
    file: &std::fs::File,
    path: &Path,
    offset: u64,
    data: &[u8],
) -> Result<()> {
    if direct {
        write_direct(file, path, offset, data)
    } else {
        write_full(file, path, offset, data)
    }
}

/// A write on an `O_DIRECT | O_DSYNC` file: aligned offset, length and memory.
fn write_direct(file: &std::fs::File, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
    check_direct(path, offset, data.len())?;
    let (buf, start) = aligned_copy(data);
    write_full(file, path, offset, &buf[start..start + data.len()])
}

#[async_trait]
impl File for PortableFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn try_read_cached(&self, offset: u64, len: usize) -> Option<Bytes> {
        crate::vfs::read_nowait(&self.file, offset, len)
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        self.run(move |f, p| read_full(f, p, offset, len)).await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        let direct = self.direct;
        self.run(move |f, p| write_any(direct, f, p, offset, &data))
            .await
    }

    async fn write_batch(&self, writes: Vec<(u64, Bytes)>) -> Result<()> {
        let direct = self.direct;
        self.run(move |f, p| {
            for (offset, data) in &writes {
                write_any(direct, f, p, *offset, data)?;
            }
            Ok(())
        })
        .await
    }

    async fn write_and_sync(&self, offset: u64, data: Bytes) -> Result<()> {
        let direct = self.direct;
        self.run(move |f, p| {
            write_any(direct, f, p, offset, &data)?;
            f.sync_data()
                .map_err(|e| Error::io("sync_data", p, None, e))
        })
        .await
    }

    async fn start_writeback(&self) -> Result<()> {
        if self.direct {
            return Ok(());
        }
        self.run(crate::vfs::start_writeback_blocking).await
    }

    async fn sync_data(&self) -> Result<()> {
        self.run(|f, p| {
            f.sync_data()
                .map_err(|e| Error::io("sync_data", p, None, e))
        })
        .await
    }

    async fn sync_all(&self) -> Result<()> {
        self.run(|f, p| f.sync_all().map_err(|e| Error::io("sync_all", p, None, e)))
            .await
    }

    async fn len(&self) -> Result<u64> {
        self.run(|f, p| {
            Ok(f.metadata()
                .map_err(|e| Error::io("stat", p, None, e))?
                .len())
        })
        .await
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        self.run(move |f, p| {
            f.set_len(len)
                .map_err(|e| Error::io("set_len", p, Some(len), e))
        })
        .await
    }
}
