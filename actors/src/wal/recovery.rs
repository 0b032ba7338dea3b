//! Recovery: find the valid prefix of the log, hand its records to the caller, and cut off
//! what a crash left half-written.
//!
//! The log is read segment by segment. Within a segment, records are taken while they
//! decode under the segment's sequence number and carry the next LSN. Where that stops, the
//! rest of the segment and every later segment are searched for valid records of the same
//! log life. Each carries a *durable watermark*: every LSN up to it was synced before the
//! record was written. Then:
//!
//! * if some later record's watermark covers the first missing LSN, that LSN had been
//!   synced and is now unreadable: [`Error::Corruption`] naming the file and offset;
//! * otherwise the missing part was never synced (a torn or lost tail): the log is trimmed
//!   there. Valid records beyond the cut are zeroed and later segments are deleted, so they
//!   can never be mistaken for part of the log after new records are appended.
//!
//! Trimming only removes data past the cut, so a crash during recovery followed by another
//! recovery reaches the same cut: recovery is idempotent.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use persistx_io::format::segment::{SEGMENT_HEADER_LEN, SegmentHeader};
use persistx_io::format::wal::{
    RECORD_ALIGN, RECORD_HEADER_LEN, decode_record, peek_record_header,
};
use persistx_io::{File, OpenMode, format::FormatError};

use super::segment::{Segment, SegmentDir, is_spare_name, is_temp_name, parse_segment_name};
use crate::error::{Error, Result};

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// LSN of the first record the log holds or will hold (1 for a new log).
    pub first_lsn: u64,
    /// The LSN the log ends at: its last record, or the LSN just below the first segment's
    /// first LSN when no record is left (all earlier ones were released). New records
    /// continue after it.
    pub last_lsn: u64,
    /// Records handed to the caller.
    pub records: u64,
    /// Live segments kept.
    pub segments: u64,
    /// True if recovery cut records off the end (a torn last write, or unsynced records
    /// past a gap).
    pub trimmed: bool,
    /// Offset in the tail segment where new records will be written.
    pub tail_offset: u64,
}

/// The state the log actor resumes from.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Live segments, oldest first: (sequence number, first LSN, path). The last is `tail`.
    pub(crate) segments: Vec<(u64, u64, PathBuf)>,
    pub(crate) tail: Segment,
    pub(crate) report: RecoveryReport,
}

/// A live segment whose header was checked. Its body is read when it is scanned, one
/// segment at a time, so recovery's memory is one segment, not the whole log.
struct Loaded {
    seq: u64,
    header: SegmentHeader,
    path: PathBuf,
    file: Arc<dyn File>,
}

impl Loaded {
    async fn read(&self) -> Result<Bytes> {
        let bytes = self
            .file
            .read_at(0, self.header.segment_size as usize)
            .await?;
        if bytes.len() as u64 != self.header.segment_size {
            return Err(corrupt(
                &self.path,
                bytes.len() as u64,
                format!(
                    "segment file ends before its size of {} bytes",
                    self.header.segment_size
                ),
            ));
        }
        Ok(bytes)
    }
}

/// A valid record found past the end of the log's valid prefix.
struct Stray {
    offset: u64,
    frame_len: u64,
    durable_lsn: u64,
}

fn corrupt(path: &std::path::Path, offset: u64, what: impl Into<String>) -> Error {
    Error::Corruption {
        file: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

fn format_err(path: &std::path::Path, offset: u64, e: FormatError) -> Error {
    Error::from(e.at(path, offset))
}

/// Searches `bytes` (a whole segment numbered `seq`, whose first LSN is `seg_first_lsn`)
/// from `from` for records that validate with an LSN of at least `min_lsn`.
///
/// Most of what it reads is zeros or stale bytes of a recycled file, so each 8-byte offset
/// is first filtered by fields a record of this segment must have (no checksum work): its LSN
/// fits among the records the segment can hold, its watermark is at least the LSN before
/// the segment (the previous segment was synced before this one existed), its frame fits.
fn find_strays(bytes: &[u8], seq: u64, seg_first_lsn: u64, from: u64, min_lsn: u64) -> Vec<Stray> {
    let mut out = Vec::new();
    let max_lsn = seg_first_lsn.saturating_add((bytes.len() / RECORD_HEADER_LEN) as u64);
    let mut off = (from as usize).next_multiple_of(RECORD_ALIGN);
    while off + RECORD_HEADER_LEN <= bytes.len() {
        let window = &bytes[off..];
        let plausible = peek_record_header(window).is_some_and(|h| {
            h.lsn >= min_lsn.max(seg_first_lsn)
                && h.lsn <= max_lsn
                && h.durable_lsn + 1 >= seg_first_lsn
                && h.frame_len() <= window.len() as u64
        });
        if plausible && let Ok((h, _)) = decode_record(window, seq) {
            out.push(Stray {
                offset: off as u64,
                frame_len: h.frame_len(),
                durable_lsn: h.durable_lsn,
            });
            off += h.frame_len() as usize;
            continue;
        }
        off += RECORD_ALIGN;
    }
    out
}

/// Recovers the log in `segdir`, calling `on_record(lsn, payload)` for every record of the
/// valid prefix in LSN order.
pub(crate) async fn recover(
    segdir: &mut SegmentDir,
    on_record: &mut (dyn FnMut(u64, &[u8]) -> Result<()> + Send),
) -> Result<Recovered> {
    let vfs = segdir.vfs.clone();
    let dir = segdir.dir.clone();
    if !vfs.exists(&dir).await? {
        vfs.create_dir_all(&dir).await?;
        vfs.sync_dir(&persistx_io::vfs::parent_dir(&dir)).await?;
    }
    let mut live = Vec::new();
    for name in vfs.list_dir(&dir).await? {
        if let Some(seq) = parse_segment_name(&name) {
            live.push((seq, dir.join(&name)));
        } else if is_spare_name(&name) {
            segdir.spares.push(dir.join(&name));
            let n = name
                .trim_start_matches("spare-")
                .trim_end_matches(".wal")
                .parse::<u64>()
                .unwrap_or(0);
            segdir.next_spare = segdir.next_spare.max(n);
        } else if name == super::LOCK_FILE {
            // The directory lock, held by this open.
        } else if is_temp_name(&name) {
            vfs.remove_file(&dir.join(&name)).await?;
        } else {
            tracing::warn!(file = %dir.join(&name).display(), "ignoring unknown file in the WAL directory");
        }
    }
    live.sort();

    if live.is_empty() {
        let tail = segdir.create(1, 1, 0).await?;
        let report = RecoveryReport {
            first_lsn: 1,
            tail_offset: SEGMENT_HEADER_LEN as u64,
            ..RecoveryReport::default()
        };
        return Ok(Recovered {
            segments: vec![(1, 1, tail.path.clone())],
            tail,
            report,
        });
    }

    // Load and check every segment header.
    let mut loaded: Vec<Loaded> = Vec::with_capacity(live.len());
    for (seq, path) in live {
        let file = vfs.open(&path, OpenMode::ReadWrite).await?;
        let len = file.len().await?;
        let head = file.read_at(0, SEGMENT_HEADER_LEN).await?;
        let header = SegmentHeader::decode(&head).map_err(|e| format_err(&path, 0, e))?;
        // A live segment is always exactly as long as its header says (it is preallocated
        // before it gets its name): anything else is a truncated or damaged file.
        if len != header.segment_size {
            return Err(corrupt(
                &path,
                len.min(header.segment_size),
                format!(
                    "segment file is {len} bytes but its header says {}",
                    header.segment_size
                ),
            ));
        }
        if header.seq != seq {
            return Err(corrupt(
                &path,
                16,
                format!(
                    "segment header says sequence {}, file name says {seq}",
                    header.seq
                ),
            ));
        }
        if let Some(prev) = loaded.last()
            && seq != prev.seq + 1
        {
            return Err(corrupt(
                &path,
                0,
                format!("segment {} is missing before segment {seq}", prev.seq + 1),
            ));
        }
        loaded.push(Loaded {
            seq,
            header,
            path,
            file,
        });
    }

    // Records read back from the newest segment may be in the OS cache only (written at
    // `Eventual` before a process crash). Sync it before its body is read, so every record
    // handed to `on_record` is durable. (Older segments were synced before their successor
    // existed; a cut syncs what it zeroes.)
    if let Some(newest) = loaded.last() {
        newest.file.sync_data().await?;
    }

    let mut report = RecoveryReport {
        first_lsn: loaded[0].header.first_lsn,
        last_lsn: loaded[0].header.first_lsn - 1,
        ..RecoveryReport::default()
    };
    let mut expected = loaded[0].header.first_lsn;
    let mut kept: Vec<(u64, u64, PathBuf)> = Vec::new();
    let mut tail_offset = SEGMENT_HEADER_LEN as u64;
    // True if the scanned segment's prefix ends at the header of the next record whose frame
    // is incomplete or damaged: a torn last write.
    let mut torn = false;

    for i in 0..loaded.len() {
        let seg = &loaded[i];
        if seg.header.first_lsn != expected {
            // The previous segment lost records at its end; decide as for damage there.
            return cut(
                segdir,
                &loaded,
                i - 1,
                tail_offset,
                expected,
                Vec::new(),
                report,
                kept,
            )
            .await;
        }
        kept.push((seg.seq, seg.header.first_lsn, seg.path.clone()));
        let bytes = seg.read().await?;
        // Walk the valid prefix.
        let mut off = SEGMENT_HEADER_LEN;
        loop {
            if off + RECORD_HEADER_LEN > bytes.len() {
                break;
            }
            match decode_record(&bytes[off..], seg.seq) {
                Ok((h, payload)) if h.lsn == expected => {
                    on_record(h.lsn, payload)?;
                    report.records += 1;
                    report.last_lsn = h.lsn;
                    expected += 1;
                    off += h.frame_len() as usize;
                }
                _ => break,
            }
        }
        tail_offset = off as u64;
        torn =
            peek_record_header(&bytes[off.min(bytes.len())..]).is_some_and(|h| h.lsn == expected);
        let strays = find_strays(&bytes, seg.seq, seg.header.first_lsn, off as u64, expected);
        if !strays.is_empty() {
            return cut(
                segdir,
                &loaded,
                i,
                tail_offset,
                expected,
                strays,
                report,
                kept,
            )
            .await;
        }
    }

    finish(&loaded[loaded.len() - 1], tail_offset, report, kept, torn)
}

/// The valid prefix ends in segment `at` at `offset`; `expected` is the first missing LSN.
/// Decides between corruption and a trimmable tail.
#[allow(clippy::too_many_arguments)]
async fn cut(
    segdir: &mut SegmentDir,
    loaded: &[Loaded],
    at: usize,
    offset: u64,
    expected: u64,
    strays: Vec<Stray>,
    report: RecoveryReport,
    kept: Vec<(u64, u64, PathBuf)>,
) -> Result<Recovered> {
    let path = loaded[at].path.clone();
    let mut watermark = strays.iter().map(|s| s.durable_lsn).max().unwrap_or(0);
    // The next segment exists only once this one was synced to its end: its first LSN - 1
    // is durable too.
    if let Some(next) = loaded.get(at + 1) {
        watermark = watermark.max(next.header.first_lsn - 1);
    }
    for l in &loaded[at + 1..] {
        let bytes = l.read().await?;
        for s in find_strays(
            &bytes,
            l.seq,
            l.header.first_lsn,
            SEGMENT_HEADER_LEN as u64,
            0,
        ) {
            watermark = watermark.max(s.durable_lsn);
        }
    }
    if watermark >= expected {
        return Err(corrupt(
            &path,
            offset,
            format!(
                "WAL record {expected} is unreadable although later records say it was synced (up to LSN {watermark})"
            ),
        ));
    }
    // Zero valid records beyond the cut in this segment, then drop later segments.
    let seg = &loaded[at];
    if !strays.is_empty() {
        let file = &seg.file;
        let end = strays
            .iter()
            .map(|s| s.offset + s.frame_len)
            .max()
            .unwrap_or(offset);
        let zeros = Bytes::from(vec![0u8; (end - offset) as usize]);
        file.write_and_sync(offset, zeros).await?;
    }
    let mut removed = false;
    for l in &loaded[at + 1..] {
        segdir.vfs.remove_file(&l.path).await?;
        removed = true;
    }
    if removed {
        segdir.vfs.sync_dir(&segdir.dir).await?;
    }
    let mut kept = kept;
    kept.truncate(at + 1);
    finish(seg, offset, report, kept, true)
}

/// The recovered state: the log continues in `tail_seg` at `offset`.
fn finish(
    tail_seg: &Loaded,
    offset: u64,
    mut report: RecoveryReport,
    kept: Vec<(u64, u64, PathBuf)>,
    trimmed: bool,
) -> Result<Recovered> {
    report.trimmed = trimmed;
    report.segments = kept.len() as u64;
    report.tail_offset = offset;
    let tail = Segment {
        header: tail_seg.header,
        file: tail_seg.file.clone(),
        path: tail_seg.path.clone(),
    };
    Ok(Recovered {
        segments: kept,
        tail,
        report,
    })
}
