//! The simulated disk: a [`Vfs`] for crash and fault tests.
//!
//! It keeps two images of every file: the *live* one (what reads see, like the OS page
//! cache) and the *durable* one (what survives power loss), plus the list of writes made
//! since the last sync. The namespace has the same split: creations, renames and removals
//! become durable only when their directory is synced.
//!
//! Every operation (open-with-create, read, write, sync, set_len, rename, remove, directory
//! sync) counts as one I/O *operation*; [`SimDisk::ops`] tells how many ran. A test can:
//!
//! * fail operation N once or forever ([`SimDisk::fail_at`]) with an `EIO`-like error;
//! * crash at operation N ([`SimDisk::crash_at`]): operation N and all later ones fail, as if
//!   the process died, and [`SimDisk::crash_image`] then builds the disk a restarted process
//!   would find, in one of the [`CrashImage`] flavours;
//! * run out of space ([`SimDisk::set_capacity`]).
//!
//! Everything random comes from a seed, so every failure replays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::memory::{children, read_from, write_into};
use crate::vfs::{File, LockGuard, LockRegistry, OpenMode, Vfs, check_direct, parent_dir};

/// The disk image a crash leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashImage {
    /// Only synced data and synced directory entries survive.
    DurableOnly,
    /// Synced data plus a random subset of the unsynced writes (each kept or lost on its
    /// own, so later writes may survive where earlier ones did not); directory entries as
    /// they were live.
    SomeUnsynced,
    /// Synced data plus every unsynced write but the last, whose tail is lost after a
    /// random multiple of 512 bytes (a torn write); directory entries as they were live.
    TornLast,
    /// All writes reached the disk, but file creations and renames whose directory was never
    /// synced are reverted.
    RevertNames,
}

impl CrashImage {
    /// Every flavour, for tests that try each.
    pub const ALL: [CrashImage; 4] = [
        CrashImage::DurableOnly,
        CrashImage::SomeUnsynced,
        CrashImage::TornLast,
        CrashImage::RevertNames,
    ];
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Bytes },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Content {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last sync, oldest first.
    pending: Vec<Pending>,
}

impl Content {
    fn apply(image: &mut Vec<u8>, p: &Pending) {
        match p {
            Pending::Write { offset, data } => write_into(image, *offset, data),
            Pending::SetLen(len) => image.resize(*len as usize, 0),
        }
    }

    fn sync(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            Content::apply(&mut self.durable, &p);
        }
        debug_assert_eq!(self.durable, self.live);
    }
}

type FileId = u64;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Once(u64),
    From(u64),
}

#[derive(Debug, Default)]
struct State {
    live_names: BTreeMap<PathBuf, FileId>,
    durable_names: BTreeMap<PathBuf, FileId>,
    contents: HashMap<FileId, Content>,
    dirs: BTreeSet<PathBuf>,
    next_id: FileId,
    ops: u64,
    fault: Option<Fault>,
    crash_at: Option<u64>,
    crashed: bool,
    capacity: Option<u64>,
    /// The file and index in its pending list of the most recent write, for torn images.
    last_write: Option<(FileId, usize)>,
}

impl State {
    /// Counts one operation and decides whether it fails.
    fn op(&mut self, op: &'static str, path: &Path) -> Result<()> {
        self.ops += 1;
        let n = self.ops;
        if self.crashed {
            return Err(injected(op, path, n, "the simulated machine has crashed"));
        }
        if self.crash_at == Some(n) {
            self.crashed = true;
            return Err(injected(op, path, n, "simulated crash"));
        }
        match self.fault {
            Some(Fault::Once(at)) if at == n => Err(injected(op, path, n, "injected fault")),
            Some(Fault::From(at)) if n >= at => {
                Err(injected(op, path, n, "injected persistent fault"))
            }
            _ => Ok(()),
        }
    }

    fn used_bytes(&self) -> u64 {
        self.contents.values().map(|c| c.live.len() as u64).sum()
    }

    fn content(&mut self, id: FileId) -> &mut Content {
        self.contents.entry(id).or_default()
    }

    fn sync_dir(&mut self, dir: &Path) {
        self.durable_names.retain(|p, _| parent_dir(p) != dir);
        for (p, id) in &self.live_names {
            if parent_dir(p) == dir {
                self.durable_names.insert(p.clone(), *id);
            }
        }
    }
}

fn injected(op: &'static str, path: &Path, n: u64, what: &str) -> Error {
    Error::io(
        op,
        path,
        None,
        std::io::Error::other(format!("{what} at I/O operation {n}")),
    )
}

fn not_found(op: &'static str, path: &Path) -> Error {
    Error::io(
        op,
        path,
        None,
        std::io::Error::from(std::io::ErrorKind::NotFound),
    )
}

/// The simulated disk. Cloning shares it.
///
/// Locks ([`Vfs::lock`]) live in a registry of the disk, not in its files, and are not
/// counted as I/O operations; a crash image starts with no lock held.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    locks: LockRegistry,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many I/O operations have run (or been attempted) so far.
    pub fn ops(&self) -> u64 {
        self.with(|s| s.ops)
    }

    /// Fails operation number `n` (counting from 1), once, or for every operation from `n` on
    /// if `persistent`. Replaces an earlier fault.
    pub fn fail_at(&self, n: u64, persistent: bool) {
        self.with(|s| {
            s.fault = Some(if persistent {
                Fault::From(n)
            } else {
                Fault::Once(n)
            })
        });
    }

    /// Removes the injected fault.
    pub fn clear_fault(&self) {
        self.with(|s| s.fault = None);
    }

    /// Crashes the simulated machine at operation `n`: it and every later operation fail.
    pub fn crash_at(&self, n: u64) {
        self.with(|s| s.crash_at = Some(n));
    }

    /// Crashes the machine now: every later operation fails.
    pub fn crash_now(&self) {
        self.with(|s| s.crashed = true);
    }

    /// True once the machine has crashed.
    pub fn has_crashed(&self) -> bool {
        self.with(|s| s.crashed)
    }

    /// Limits the total bytes of all files; writes that would pass it fail with
    /// [`Error::NoSpace`]. `None` removes the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.with(|s| s.capacity = bytes);
    }

    /// The disk a restarted machine finds after a crash now, in the given flavour. The
    /// original disk is left as it is; the image is a new, healthy disk.
    pub fn crash_image(&self, image: CrashImage, seed: u64) -> SimDisk {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.with(|s| {
            let names = match image {
                CrashImage::DurableOnly | CrashImage::RevertNames => s.durable_names.clone(),
                CrashImage::SomeUnsynced | CrashImage::TornLast => s.live_names.clone(),
            };
            let mut contents = HashMap::new();
            for id in names.values() {
                let Some(c) = s.contents.get(id) else {
                    continue;
                };
                let mut img = c.durable.clone();
                for (i, p) in c.pending.iter().enumerate() {
                    match image {
                        CrashImage::DurableOnly => {}
                        CrashImage::RevertNames => Content::apply(&mut img, p),
                        CrashImage::SomeUnsynced => {
                            if rng.random_bool(0.5) {
                                Content::apply(&mut img, p);
                            }
                        }
                        CrashImage::TornLast => {
                            let last = s.last_write == Some((*id, i));
                            match p {
                                Pending::Write { offset, data } if last => {
                                    let sectors = data.len().div_ceil(512);
                                    let keep =
                                        (rng.random_range(0..sectors.max(1)) * 512).min(data.len());
                                    write_into(&mut img, *offset, &data[..keep]);
                                }
                                _ => Content::apply(&mut img, p),
                            }
                        }
                    }
                }
                contents.insert(
                    *id,
                    Content {
                        live: img.clone(),
                        durable: img,
                        pending: Vec::new(),
                    },
                );
            }
            let state = State {
                live_names: names.clone(),
                durable_names: names,
                contents,
                dirs: s.dirs.clone(),
                next_id: s.next_id,
                ..State::default()
            };
            SimDisk {
                state: Arc::new(Mutex::new(state)),
                locks: LockRegistry::default(),
            }
        })
    }

    /// The live bytes of a file, for tests that damage or inspect it.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.with(|s| {
            s.live_names
                .get(path)
                .and_then(|id| s.contents.get(id))
                .map(|c| c.live.clone())
        })
    }

    /// Replaces a file's bytes, live and durable (a test's way to damage a disk).
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        self.with(|s| {
            let id = match s.live_names.get(path) {
                Some(id) => *id,
                None => {
                    s.next_id += 1;
                    let id = s.next_id;
                    s.live_names.insert(path.to_path_buf(), id);
                    s.durable_names.insert(path.to_path_buf(), id);
                    id
                }
            };
            *s.content(id) = Content {
                live: bytes.clone(),
                durable: bytes,
                pending: Vec::new(),
            };
        })
    }
}

#[async_trait]
impl Vfs for SimDisk {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn File>> {
        let id = self.with(|s| -> Result<FileId> {
            match (s.live_names.get(path).copied(), mode) {
                (Some(_), OpenMode::CreateNew) => {
                    s.op("open", path)?;
                    Err(Error::io(
                        "open",
                        path,
                        None,
                        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                    ))
                }
                (Some(id), _) => Ok(id),
                (None, m) if m.creates() => {
                    s.op("create", path)?;
                    if !s.dirs.contains(&parent_dir(path)) {
                        return Err(not_found("create", path));
                    }
                    s.next_id += 1;
                    let id = s.next_id;
                    s.live_names.insert(path.to_path_buf(), id);
                    s.contents.insert(id, Content::default());
                    Ok(id)
                }
                (None, _) => Err(not_found("open", path)),
            }
        })?;
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            id,
            path: path.to_path_buf(),
            direct: mode == OpenMode::DirectDurable,
        }))
    }

    async fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.with(|s| {
            s.op("create_dir_all", path)?;
            for a in path.ancestors() {
                s.dirs.insert(a.to_path_buf());
            }
            Ok(())
        })
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.with(|s| {
            s.op("list_dir", path)?;
            if !s.dirs.contains(path) {
                return Err(not_found("list_dir", path));
            }
            Ok(children(s.live_names.keys().chain(s.dirs.iter()), path))
        })
    }

    async fn remove_file(&self, path: &Path) -> Result<()> {
        self.with(|s| {
            s.op("remove_file", path)?;
            s.live_names
                .remove(path)
                .map(|_| ())
                .ok_or_else(|| not_found("remove_file", path))
        })
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.with(|s| {
            s.op("rename", from)?;
            let id = s
                .live_names
                .remove(from)
                .ok_or_else(|| not_found("rename", from))?;
            s.live_names.insert(to.to_path_buf(), id);
            Ok(())
        })
    }

    async fn sync_dir(&self, path: &Path) -> Result<()> {
        self.with(|s| {
            s.op("sync_dir", path)?;
            s.sync_dir(path);
            Ok(())
        })
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        Ok(self.with(|s| s.live_names.contains_key(path) || s.dirs.contains(path)))
    }

    async fn lock(&self, path: &Path) -> Result<LockGuard> {
        self.locks.lock(path)
    }
}

/// A file on the simulated disk.
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    id: FileId,
    path: PathBuf,
    /// Opened as [`OpenMode::DirectDurable`]: each write is checked for alignment and
    /// followed by a sync (two operations, so a crash can fall between them and tear it).
    direct: bool,
}

impl SimFile {
    fn write(&self, s: &mut State, offset: u64, data: &Bytes) -> Result<()> {
        s.op("write", &self.path)?;
        if let Some(cap) = s.capacity {
            let cur = s.content(self.id).live.len() as u64;
            let grow = (offset + data.len() as u64).saturating_sub(cur);
            if s.used_bytes() + grow > cap {
                return Err(Error::NoSpace {
                    path: self.path.clone(),
                    offset,
                });
            }
        }
        let c = s.content(self.id);
        write_into(&mut c.live, offset, data);
        c.pending.push(Pending::Write {
            offset,
            data: data.clone(),
        });
        let idx = c.pending.len() - 1;
        s.last_write = Some((self.id, idx));
        Ok(())
    }

    fn sync(&self, s: &mut State, op: &'static str) -> Result<()> {
        s.op(op, &self.path)?;
        s.content(self.id).sync();
        if s.last_write.map(|(id, _)| id) == Some(self.id) {
            s.last_write = None;
        }
        Ok(())
    }
}

#[async_trait]
impl File for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        self.disk.with(|s| {
            s.op("read", &self.path)?;
            Ok(read_from(&s.content(self.id).live, offset, len))
        })
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        if self.direct {
            check_direct(&self.path, offset, data.len())?;
            return self.disk.with(|s| {
                self.write(s, offset, &data)?;
                self.sync(s, "direct write (O_DSYNC)")
            });
        }
        self.disk.with(|s| self.write(s, offset, &data))
    }

    async fn write_and_sync(&self, offset: u64, data: Bytes) -> Result<()> {
        self.disk.with(|s| {
            self.write(s, offset, &data)?;
            self.sync(s, "sync_data")
        })
    }

    async fn sync_data(&self) -> Result<()> {
        self.disk.with(|s| self.sync(s, "sync_data"))
    }

    async fn sync_all(&self) -> Result<()> {
        self.disk.with(|s| self.sync(s, "sync_all"))
    }

    async fn len(&self) -> Result<u64> {
        Ok(self.disk.with(|s| s.content(self.id).live.len() as u64))
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        self.disk.with(|s| {
            s.op("set_len", &self.path)?;
            let c = s.content(self.id);
            c.live.resize(len as usize, 0);
            c.pending.push(Pending::SetLen(len));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn unsynced_data_and_names_are_lost_in_durable_image() {
        block_on(async {
            let d = SimDisk::new();
            d.create_dir_all(Path::new("/db")).await.expect("mkdir");
            let f = d
                .open(Path::new("/db/a"), OpenMode::CreateNew)
                .await
                .expect("create");
            f.write_at(0, Bytes::from_static(b"synced"))
                .await
                .expect("write");
            f.sync_data().await.expect("sync");
            d.sync_dir(Path::new("/db")).await.expect("sync dir");
            f.write_at(0, Bytes::from_static(b"UNSYNC"))
                .await
                .expect("write");
            let g = d
                .open(Path::new("/db/b"), OpenMode::CreateNew)
                .await
                .expect("create");
            g.write_and_sync(0, Bytes::from_static(b"b"))
                .await
                .expect("write");

            let img = d.crash_image(CrashImage::DurableOnly, 1);
            assert_eq!(img.file_bytes(Path::new("/db/a")), Some(b"synced".to_vec()));
            assert_eq!(
                img.file_bytes(Path::new("/db/b")),
                None,
                "creation never dir-synced"
            );

            let img = d.crash_image(CrashImage::RevertNames, 1);
            assert_eq!(img.file_bytes(Path::new("/db/a")), Some(b"UNSYNC".to_vec()));
            assert_eq!(img.file_bytes(Path::new("/db/b")), None);
        });
    }

    #[test]
    fn torn_last_write_keeps_a_512_byte_prefix() {
        block_on(async {
            let d = SimDisk::new();
            d.create_dir_all(Path::new("/db")).await.expect("mkdir");
            let f = d
                .open(Path::new("/db/a"), OpenMode::CreateNew)
                .await
                .expect("create");
            f.write_at(0, Bytes::from(vec![1u8; 2048]))
                .await
                .expect("write");
            for seed in 0..20 {
                let img = d.crash_image(CrashImage::TornLast, seed);
                let bytes = img.file_bytes(Path::new("/db/a")).expect("live name kept");
                assert!(
                    bytes.len().is_multiple_of(512) && bytes.len() < 2048,
                    "torn to {}",
                    bytes.len()
                );
            }
        });
    }

    #[test]
    fn faults_and_crashes() {
        block_on(async {
            let d = SimDisk::new();
            d.create_dir_all(Path::new("/db")).await.expect("mkdir");
            let f = d
                .open(Path::new("/db/a"), OpenMode::CreateNew)
                .await
                .expect("create");
            let n = d.ops();
            d.fail_at(n + 1, false);
            assert!(f.write_at(0, Bytes::from_static(b"x")).await.is_err());
            f.write_at(0, Bytes::from_static(b"y"))
                .await
                .expect("fault was once");
            d.crash_at(d.ops() + 1);
            assert!(f.sync_data().await.is_err());
            assert!(
                f.read_at(0, 1).await.is_err(),
                "everything fails after a crash"
            );
            assert!(d.has_crashed());
        });
    }
}
