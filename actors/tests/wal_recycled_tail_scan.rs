//! Regression tests for the review finding "recovery's stray-record search is quadratic on a
//! recycled tail": a reused spare is not zeroed, so past the valid prefix of a recycled tail
//! lie stale payloads (user bytes). The search now filters each offset by the fields a record
//! of this segment must have (LSN range, watermark, frame length) before any checksum work.
//! (Its cost is measured, not asserted here: timed assertions do not belong in tests.)

use std::sync::Arc;

use bytes::Bytes;
use persistx_actors::{Wal, WalOptions};
use persistx_io::Vfs;
use persistx_io::sim::SimDisk;

const DIR: &str = "/db/wal";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A payload whose every 8-byte word, read as a record header at that offset, has a
/// non-zero first word and a length field of `len`.
fn crafted(size: usize, len: u32) -> Bytes {
    let mut p = Vec::with_capacity(size);
    while p.len() < size {
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&len.to_le_bytes());
    }
    p.truncate(size);
    Bytes::from(p)
}

fn reopen_recycled(segment_size: u64, len: u32) {
    let disk = SimDisk::new();
    let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
    let opts = WalOptions {
        segment_size,
        ..WalOptions::default()
    };
    rt().block_on(async {
        let (wal, _, _) = Wal::open(vfs.clone(), DIR, opts.clone())
            .await
            .expect("open");
        let rec = (segment_size / 16) as usize;
        // Fill segment 1 and start segment 2.
        let mut last = 0;
        while wal.stats().await.expect("stats").segments < 2 {
            last = wal.append(crafted(rec, len)).await.expect("append");
        }
        // Segment 1 becomes a spare; fill segment 2 so that segment 3 reuses it.
        wal.release_below(last).await.expect("release");
        assert_eq!(wal.stats().await.expect("stats").spare_segments, 1);
        // Append until the next segment is made from the spare: the tail is then the
        // recycled file, stale records of its previous life past its first record.
        while wal.stats().await.expect("stats").spare_segments > 0 {
            wal.append(crafted(rec, len)).await.expect("append");
        }
        assert_eq!(wal.stats().await.expect("stats").segments, 2);
        wal.close().await.expect("close");
        let (wal, report, records) = Wal::open(vfs.clone(), DIR, opts.clone())
            .await
            .expect("reopen");
        wal.close().await.expect("close");
        assert!(!report.trimmed, "{report:?}");
        assert_eq!(records.last().map(|r| r.0), Some(report.last_lsn));
        for (lsn, payload) in &records {
            assert_eq!(*payload, crafted(rec, len), "record {lsn}");
        }
    })
}

#[test]
fn reopen_of_a_recycled_tail_full_of_crafted_payloads() {
    reopen_recycled(1 << 20, u32::MAX);
    reopen_recycled(1 << 20, 128 << 10);
}

/// Minor, same root cause (stale bytes left in a recycled spare): every reopen of a log whose
/// tail is a recycled segment reports `trimmed: true` after a clean close.
#[test]
fn clean_close_of_a_recycled_tail_is_not_reported_as_trimmed() {
    let disk = SimDisk::new();
    let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
    let opts = WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    };
    rt().block_on(async {
        let (wal, _, _) = Wal::open(vfs.clone(), DIR, opts.clone())
            .await
            .expect("open");
        let mut last = 0;
        while wal.stats().await.expect("stats").segments < 2 {
            last = wal
                .append(Bytes::from(vec![7u8; 500]))
                .await
                .expect("append");
        }
        wal.release_below(last).await.expect("release");
        while wal.stats().await.expect("stats").spare_segments > 0 {
            wal.append(Bytes::from(vec![7u8; 500]))
                .await
                .expect("append");
        }
        wal.close().await.expect("clean close");
        let (wal, report, _) = Wal::open(vfs.clone(), DIR, opts.clone())
            .await
            .expect("reopen");
        wal.close().await.expect("close");
        assert!(
            !report.trimmed,
            "clean close reported as a trimmed tail: {report:?}"
        );
    });
}
