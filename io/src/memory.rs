//! The memory backend: files are byte vectors behind a lock. For in-memory databases and
//! fast tests. Syncs are no-ops; nothing survives the process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::vfs::{File, LockGuard, LockRegistry, OpenMode, Vfs, check_direct};

type Data = Arc<Mutex<Vec<u8>>>;

#[derive(Debug, Default)]
struct Tree {
    files: BTreeMap<PathBuf, Data>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

/// An in-memory file system. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct MemoryVfs {
    tree: Arc<Mutex<Tree>>,
    locks: LockRegistry,
}

impl MemoryVfs {
    /// An empty file system.
    pub fn new() -> MemoryVfs {
        MemoryVfs::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tree) -> T) -> T {
        f(&mut self.tree.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn not_found(op: &'static str, path: &Path) -> Error {
    Error::io(
        op,
        path,
        None,
        std::io::Error::from(std::io::ErrorKind::NotFound),
    )
}

#[async_trait]
impl Vfs for MemoryVfs {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn File>> {
        let data = self.with(|t| match (t.files.get(path), mode) {
            (Some(_), OpenMode::CreateNew) => Err(Error::io(
                "open",
                path,
                None,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            )),
            (Some(d), _) => Ok(d.clone()),
            (None, m) if m.creates() => {
                let d = Data::default();
                t.files.insert(path.to_path_buf(), d.clone());
                Ok(d)
            }
            (None, _) => Err(not_found("open", path)),
        })?;
        Ok(Arc::new(MemoryFile {
            path: path.to_path_buf(),
            data,
            direct: mode == OpenMode::DirectDurable,
        }))
    }

    async fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.with(|t| {
            for a in path.ancestors() {
                t.dirs.insert(a.to_path_buf());
            }
        });
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        Ok(self.with(|t| children(t.files.keys().chain(t.dirs.iter()), path)))
    }

    async fn remove_file(&self, path: &Path) -> Result<()> {
        self.with(|t| {
            t.files
                .remove(path)
                .map(|_| ())
                .ok_or_else(|| not_found("remove_file", path))
        })
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.with(|t| {
            let d = t
                .files
                .remove(from)
                .ok_or_else(|| not_found("rename", from))?;
            t.files.insert(to.to_path_buf(), d);
            Ok(())
        })
    }

    async fn sync_dir(&self, _path: &Path) -> Result<()> {
        Ok(())
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        Ok(self.with(|t| t.files.contains_key(path) || t.dirs.contains(path)))
    }

    async fn lock(&self, path: &Path) -> Result<LockGuard> {
        self.locks.lock(path)
    }
}

/// A file of the memory backend.
#[derive(Debug)]
pub struct MemoryFile {
    path: PathBuf,
    data: Data,
    /// Opened as [`OpenMode::DirectDurable`]: writes must be aligned.
    direct: bool,
}

impl MemoryFile {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
        f(&mut self.data.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The sorted, distinct names of the entries among `paths` whose parent is `dir`.
pub(crate) fn children<'a>(paths: impl Iterator<Item = &'a PathBuf>, dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = paths
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Copies `data` into `buf` at `offset`, growing it with zeros as needed.
pub(crate) fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return; // like pwrite(2) of zero bytes: the file does not grow
    }
    let start = offset as usize;
    let end = start + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
}

/// Reads up to `len` bytes of `buf` at `offset`.
pub(crate) fn read_from(buf: &[u8], offset: u64, len: usize) -> Bytes {
    let start = (offset as usize).min(buf.len());
    let end = start.saturating_add(len).min(buf.len());
    Bytes::copy_from_slice(&buf[start..end])
}

#[async_trait]
impl File for MemoryFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        Ok(self.with(|b| read_from(b, offset, len)))
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        if self.direct {
            check_direct(&self.path, offset, data.len())?;
        }
        self.with(|b| write_into(b, offset, &data));
        Ok(())
    }

    async fn sync_data(&self) -> Result<()> {
        Ok(())
    }

    async fn sync_all(&self) -> Result<()> {
        Ok(())
    }

    async fn len(&self) -> Result<u64> {
        Ok(self.with(|b| b.len() as u64))
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        self.with(|b| b.resize(len as usize, 0));
        Ok(())
    }
}
