//! The page file `data.px`: superblock slots, node pages through the buffer pool, overflow
//! runs, batched page writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use persistx_io::format::page::{PageHeader, decode_page, encode_page_into};
use persistx_io::format::superblock::{SUPERBLOCK_LEN, Superblock};
use persistx_io::format::{FormatError, node as fmt};
use persistx_io::{BufferPool, File, PoolStats};

use crate::error::{Error, Result};
use crate::tree::{self, Node, PageSource, PageWrite, PinBudget, TreeLimits};

/// Bytes of pages a checkpoint (or a bulk write's spill) encodes before writing them: the
/// encoded copies of dirty nodes exist a chunk at a time, not all at once.
const WRITE_CHUNK: usize = 1 << 20;

/// The page file of a database.
pub struct PageFile {
    file: Arc<dyn File>,
    path: PathBuf,
    limits: TreeLimits,
    pool: BufferPool<Node>,
    /// What interior nodes pinned by their parents may take (see [`crate::tree::pin`]), on
    /// top of the pool.
    pins: Arc<PinBudget>,
    /// Pages the file holds according to the superblock in force plus what checkpoints
    /// allocated since; a page id at or past it is damage.
    pub(crate) end: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl std::fmt::Debug for PageFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn corrupt(path: &Path, offset: u64, e: FormatError) -> Error {
    Error::from(e.at(path, offset))
}

impl PageFile {
    /// Wraps an open page file.
    ///
    /// The pool starts with `pool_budget` (see [`PageFile::set_pool_budget`]); pinned interior
    /// nodes may take `pin_budget` beside it.
    pub fn new(
        file: Arc<dyn File>,
        path: PathBuf,
        page_size: usize,
        pool_budget: usize,
        pin_budget: usize,
    ) -> Self {
        PageFile {
            file,
            path,
            limits: TreeLimits::new(page_size),
            pool: BufferPool::new(pool_budget),
            pins: Arc::new(PinBudget::new(pin_budget)),
            end: AtomicU64::new(2),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// Raises the page count that references are checked against.
    pub fn bump_end(&self, end: u64) {
        self.end.fetch_max(end, Ordering::AcqRel);
    }

    /// Sets the number of pages (a checkpoint cut free pages off the end).
    pub fn set_end(&self, end: u64) {
        self.end.store(end, Ordering::Release);
    }

    /// Cuts the file to `end` pages if it is longer (the pages past them are free and no
    /// superblock in force counts them).
    pub async fn truncate(&self, end: u64) -> Result<()> {
        let len = end * self.limits.page_size as u64;
        if self.file.len().await? > len {
            self.file.set_len(len).await?;
        }
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.limits.page_size
    }

    /// Buffer pool counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Changes the buffer pool's budget (a smaller one evicts at once).
    pub fn set_pool_budget(&self, bytes: usize) {
        self.pool.set_budget(bytes);
    }

    /// Bytes that pinned interior nodes take, and the most they may take.
    pub fn pinned_bytes(&self) -> (usize, usize) {
        (self.pins.used(), self.pins.cap())
    }

    /// Pages read from and written to the file so far.
    pub fn io_counts(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }

    /// Writes a superblock to its slot and syncs the file.
    pub async fn write_superblock(&self, slot: u32, sb: &Superblock) -> Result<()> {
        let mut page = vec![0u8; self.limits.page_size];
        page[..SUPERBLOCK_LEN].copy_from_slice(&sb.encode(slot));
        self.file
            .write_and_sync(
                u64::from(slot) * self.limits.page_size as u64,
                Bytes::from(page),
            )
            .await?;
        Ok(())
    }

    /// Reads and checks one page; returns the buffer and the payload's position in it.
    async fn read_page(&self, page: u64) -> Result<(PageHeader, Bytes, usize)> {
        let ps = self.limits.page_size as u64;
        let offset = page * ps;
        if page < 2 || page >= self.end.load(Ordering::Acquire) {
            return Err(Error::Corruption {
                file: self.path.clone(),
                offset,
                what: format!("reference to page {page}, outside the file's pages"),
            });
        }
        let buf = match self.file.try_read_cached(offset, ps as usize) {
            Some(b) => b,
            None => self.file.read_at(offset, ps as usize).await?,
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        let (h, payload) = decode_page(&buf, page).map_err(|e| corrupt(&self.path, offset, e))?;
        let at = payload.as_ptr() as usize - buf.as_ptr() as usize;
        Ok((h, buf, at))
    }

    /// Reads a page of an expected kind and returns its payload (catalog, free list).
    pub async fn read_payload(&self, page: u64, kind: u8) -> Result<Bytes> {
        let (h, buf, at) = self.read_page(page).await?;
        if h.kind != kind {
            return Err(corrupt(
                &self.path,
                page * self.limits.page_size as u64,
                FormatError::Mismatch {
                    field: "page kind",
                    expected: kind.into(),
                    found: h.kind.into(),
                },
            ));
        }
        Ok(buf.slice(at..at + h.payload_len as usize))
    }

    /// Reads `n` consecutive scratch pages from `first` in one read; returns their payloads.
    pub async fn read_scratch(&self, first: u64, n: u64) -> Result<Vec<Bytes>> {
        let ps = self.limits.page_size;
        let offset = first * ps as u64;
        if first < 2 || first + n > self.end.load(Ordering::Acquire) {
            return Err(Error::Corruption {
                file: self.path.clone(),
                offset,
                what: format!("scratch pages {first}+{n} outside the file's pages"),
            });
        }
        let buf = self.file.read_at(offset, n as usize * ps).await?;
        self.reads.fetch_add(n, Ordering::Relaxed);
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let at = i as usize * ps;
            let page = buf.slice(at..at + ps);
            let (h, payload) = decode_page(&page, first + i)
                .map_err(|e| corrupt(&self.path, offset + at as u64, e))?;
            if h.kind != fmt::KIND_SCRATCH {
                return Err(corrupt(
                    &self.path,
                    offset + at as u64,
                    FormatError::Mismatch {
                        field: "page kind",
                        expected: fmt::KIND_SCRATCH.into(),
                        found: h.kind.into(),
                    },
                ));
            }
            let start = payload.as_ptr() as usize - page.as_ptr() as usize;
            out.push(page.slice(start..start + h.payload_len as usize));
        }
        Ok(out)
    }

    /// Writes pages (not synced) stamped with `lsn`.
    pub async fn write_pages(&self, pages: &[PageWrite], lsn: u64) -> Result<()> {
        if pages.is_empty() {
            return Ok(());
        }
        let ps = self.limits.page_size;
        let mut sorted: Vec<&PageWrite> = pages.iter().collect();
        sorted.sort_by_key(|w| w.page);
        // Coalesce consecutive pages into one write each, and hand the writes to the file
        // in batches of a few MiB: a checkpoint's copies of its pages never all exist at once.
        const BATCH: usize = 4 << 20;
        let mut writes: Vec<(u64, Bytes)> = Vec::new();
        let mut batched = 0usize;
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        let mut run_next = 0u64;
        for w in sorted {
            if batched >= BATCH {
                self.file.write_batch(std::mem::take(&mut writes)).await?;
                batched = 0;
            }
            let header = PageHeader {
                kind: w.kind,
                flags: 0,
                page_id: w.page,
                lsn,
                payload_len: w.payload.len() as u32,
            };
            if !run.is_empty() && (w.page != run_next || run.len() >= 1 << 20) {
                batched += run.len();
                writes.push((run_start * ps as u64, Bytes::from(std::mem::take(&mut run))));
            }
            if run.is_empty() {
                run_start = w.page;
            }
            // Encoded straight into the run: one copy of each page, not two.
            encode_page_into(&header, &w.payload, ps, &mut run);
            run_next = w.page + 1;
        }
        if !run.is_empty() {
            writes.push((run_start * ps as u64, Bytes::from(run)));
        }
        self.writes.fetch_add(pages.len() as u64, Ordering::Relaxed);
        self.file.write_batch(writes).await?;
        Ok(())
    }

    /// Encodes and writes the nodes [`tree::assign`] gave pages, [`WRITE_CHUNK`] at a time,
    /// stamped with `lsn`; each written node goes to the buffer pool at once (it keeps what
    /// fits). With `writeback` (a checkpoint), writing a chunk to the disk starts at once,
    /// so that the sync that follows has little left to do. Returns the pages written.
    pub async fn write_flushed(
        &self,
        out: &mut tree::Flushed,
        lsn: u64,
        writeback: bool,
    ) -> Result<usize> {
        let mut pages = 0;
        loop {
            let (writes, clean) = tree::encode_some(out, self, WRITE_CHUNK).await?;
            if writes.is_empty() {
                return Ok(pages);
            }
            pages += writes.len();
            self.write_pages(&writes, lsn).await?;
            if writeback {
                self.file.start_writeback().await?;
            }
            for (page, node) in clean {
                self.cache(page, node);
            }
        }
    }

    /// Makes every page written so far durable.
    pub async fn sync(&self) -> Result<()> {
        self.file.sync_data().await?;
        Ok(())
    }

    /// Puts a clean node into the buffer pool (after a checkpoint wrote it).
    pub fn cache(&self, page: u64, node: Arc<Node>) {
        let charge = node.memory_charge(&self.limits);
        self.pool.insert(page, node, charge);
    }

    /// Drops a page from the buffer pool (it was freed).
    pub fn uncache(&self, page: u64) {
        self.pool.remove(page);
    }
}

#[async_trait]
impl PageSource for PageFile {
    fn cached(&self, page: u64) -> Option<Arc<Node>> {
        self.pool.get_hit(page)
    }

    fn pin_budget(&self) -> Option<&Arc<PinBudget>> {
        Some(&self.pins)
    }

    async fn node(&self, page: u64) -> Result<Arc<Node>> {
        if let Some(n) = self.pool.get(page) {
            return Ok(n);
        }
        let (h, buf, at) = self.read_page(page).await?;
        let offset = page * self.limits.page_size as u64;
        let mut node = crate::tree::node::decode_node(h.kind, &buf, at, h.payload_len as usize)
            .map_err(|e| corrupt(&self.path, offset, e))?;
        node.index();
        let node = Arc::new(node);
        self.cache(page, node.clone());
        Ok(node)
    }

    async fn overflow(&self, first_page: u64, len: u64) -> Result<Bytes> {
        let n = self.limits.overflow_pages(len);
        let ps = self.limits.page_size as u64;
        let end = self.end.load(Ordering::Acquire);
        if first_page < 2 || first_page.checked_add(n).is_none_or(|e| e > end) {
            return Err(Error::Corruption {
                file: self.path.clone(),
                offset: first_page.saturating_mul(ps),
                what: format!(
                    "overflow value of {len} bytes at page {first_page} runs past the file's pages"
                ),
            });
        }
        let buf = self
            .file
            .read_at(first_page * ps, (n * ps) as usize)
            .await?;
        self.reads.fetch_add(n, Ordering::Relaxed);
        let mut out = Vec::with_capacity(len as usize);
        for i in 0..n {
            let page = first_page + i;
            let offset = page * ps;
            let start = (i * ps) as usize;
            let chunk = buf.get(start..start + ps as usize).unwrap_or(&[]);
            let (h, payload) =
                decode_page(chunk, page).map_err(|e| corrupt(&self.path, offset, e))?;
            let bad = |what: &str| Error::Corruption {
                file: self.path.clone(),
                offset,
                what: what.to_string(),
            };
            if h.kind != fmt::KIND_OVERFLOW {
                return Err(bad("expected an overflow page"));
            }
            let (next, data) =
                fmt::decode_overflow(payload).map_err(|e| corrupt(&self.path, offset, e))?;
            let want_next = if i + 1 < n { page + 1 } else { 0 };
            if next != want_next {
                return Err(bad("overflow chain link does not match the value's length"));
            }
            out.extend_from_slice(data);
        }
        if out.len() as u64 != len {
            return Err(Error::Corruption {
                file: self.path.clone(),
                offset: first_page * ps,
                what: format!(
                    "overflow value holds {} bytes, the leaf says {len}",
                    out.len()
                ),
            });
        }
        Ok(Bytes::from(out))
    }

    fn limits(&self) -> &TreeLimits {
        &self.limits
    }
}
