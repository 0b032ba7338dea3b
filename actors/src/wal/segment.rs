//! WAL segment files: naming, creation with preallocation, recycling.
//!
//! A live segment is `wal/<seq, 20 digits>.wal`. It appears under that name only once its
//! header and preallocated body are synced and the directory is synced: a new segment is
//! built as `<seq>.wal.tmp` and renamed. Segments no longer needed are renamed to
//! `spare-<n>.wal` and reused for a later sequence number instead of being deleted (their old
//! records never validate again, since record checksums bind the sequence number).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use persistx_io::format::segment::{SEGMENT_HEADER_LEN, SegmentHeader};
use persistx_io::{File, OpenMode, Vfs};

use crate::error::Result;

/// Preallocation is written in chunks of this size.
const ZERO_CHUNK: usize = 1 << 20;

/// The file name of segment `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// Parses a live segment's file name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// True for a spare (recyclable) segment's file name.
pub(crate) fn is_spare_name(name: &str) -> bool {
    name.starts_with("spare-") && name.ends_with(".wal")
}

/// True for a segment that was being built when the process stopped.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.ends_with(".wal.tmp")
}

/// An open live segment.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) header: SegmentHeader,
    pub(crate) file: Arc<dyn File>,
    pub(crate) path: PathBuf,
}

/// The segment directory: creates, recycles and retires segment files.
#[derive(Debug)]
pub(crate) struct SegmentDir {
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) dir: PathBuf,
    /// Preallocated size of new segments.
    pub(crate) segment_size: u64,
    /// Spare files ready for reuse.
    pub(crate) spares: Vec<PathBuf>,
    /// A counter for spare names.
    pub(crate) next_spare: u64,
}

impl SegmentDir {
    pub(crate) fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates segment `seq` whose first record will be `first_lsn`, large enough for at
    /// least `min_size` bytes; reuses a spare when one is big enough. Durable (file and
    /// directory synced) when it returns.
    pub(crate) async fn create(
        &mut self,
        seq: u64,
        first_lsn: u64,
        min_size: u64,
    ) -> Result<Segment> {
        // Whole 4 KiB blocks, so direct writes of the last block stay inside the file.
        let size = self.segment_size.max(min_size.next_multiple_of(4096));
        let final_path = self.path_of(&segment_name(seq));
        let tmp_path = self.path_of(&format!("{}.tmp", segment_name(seq)));
        if self.vfs.exists(&tmp_path).await? {
            self.vfs.remove_file(&tmp_path).await?;
        }
        let mut reused = None;
        while let Some(spare) = self.spares.pop() {
            let file = self.vfs.open(&spare, OpenMode::ReadWrite).await?;
            if file.len().await? >= size {
                self.vfs.rename(&spare, &tmp_path).await?;
                reused = Some(file);
                break;
            }
            drop(file);
            self.vfs.remove_file(&spare).await?;
        }
        let (file, size) = match reused {
            Some(file) => {
                let len = file.len().await?;
                (file, len)
            }
            None => {
                let file = self.vfs.open(&tmp_path, OpenMode::CreateNew).await?;
                preallocate(file.as_ref(), size).await?;
                (file, size)
            }
        };
        let header = SegmentHeader {
            seq,
            first_lsn,
            segment_size: size,
        };
        file.write_and_sync(0, Bytes::copy_from_slice(&header.encode()))
            .await?;
        self.vfs.rename(&tmp_path, &final_path).await?;
        self.vfs.sync_dir(&self.dir).await?;
        // The file handle stays valid across the rename; its path is the final one now.
        let file = self.vfs.open(&final_path, OpenMode::ReadWrite).await?;
        Ok(Segment {
            header,
            file,
            path: final_path,
        })
    }

    /// Turns a live segment into a spare (after its records are no longer needed).
    pub(crate) async fn retire(&mut self, path: &Path) -> Result<()> {
        self.next_spare += 1;
        let spare = self.path_of(&format!("spare-{:020}.wal", self.next_spare));
        self.vfs.rename(path, &spare).await?;
        self.spares.push(spare);
        Ok(())
    }
}

/// Writes zeros over the whole file so later appends need no block allocation (which would
/// make every `fdatasync` also commit file-system metadata).
async fn preallocate(file: &dyn File, size: u64) -> Result<()> {
    let mut offset = SEGMENT_HEADER_LEN as u64;
    let zeros = Bytes::from(vec![0u8; ZERO_CHUNK]);
    while offset < size {
        let n = (size - offset).min(ZERO_CHUNK as u64) as usize;
        file.write_at(offset, zeros.slice(..n)).await?;
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert!(is_spare_name("spare-00000000000000000001.wal"));
        assert!(is_temp_name(&format!("{}.tmp", segment_name(3))));
    }
}
