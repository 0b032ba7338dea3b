//! Corruption sweep of the WAL (TESTING.md G3): damaged bytes give a corruption error naming
//! the file and offset, never a panic and never wrong data; a torn tail is trimmed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use persistx_actors::{Error, Wal, WalOptions};
use persistx_io::Vfs;
use persistx_io::sim::SimDisk;
use rand::{Rng, SeedableRng};

const DIR: &str = "/db/wal";

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 8192,
        ..WalOptions::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!(
        "record {i:04} {}",
        "z".repeat((i * 7 % 90) as usize)
    ))
}

/// A disk holding a synced log of `n` records over several segments; returns the segment
/// paths and, per record, (path, offset).
fn written(n: u64) -> (SimDisk, Vec<PathBuf>, Vec<(PathBuf, u64)>) {
    let disk = SimDisk::new();
    rt().block_on(async {
        let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
        let (wal, _, _) = Wal::open(vfs, DIR, opts()).await.expect("open");
        for i in 1..=n {
            assert_eq!(wal.append(payload(i)).await.expect("append"), i);
        }
        wal.close().await.expect("close");
    });
    let mut segs: Vec<PathBuf> = (1..100)
        .map(|s| Path::new(DIR).join(format!("{s:020}.wal")))
        .filter(|p| disk.file_bytes(p).is_some())
        .collect();
    segs.sort();
    // Locate records by walking the frames of each segment.
    let mut at = Vec::new();
    for (k, p) in segs.iter().enumerate() {
        let bytes = disk.file_bytes(p).expect("segment");
        let mut off = 64usize;
        while let Ok((h, _)) = persistx_io::format::wal::decode_record(&bytes[off..], k as u64 + 1)
        {
            at.push((p.clone(), off as u64));
            off += h.frame_len() as usize;
        }
    }
    assert_eq!(at.len() as u64, n);
    (disk, segs, at)
}

fn recover(disk: &SimDisk) -> persistx_actors::Result<Vec<(u64, Bytes)>> {
    rt().block_on(async {
        let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
        let (wal, _, records) = Wal::open(vfs, DIR, opts()).await?;
        wal.close().await?;
        Ok(records)
    })
}

fn damage(disk: &SimDisk, path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = disk.file_bytes(path).expect("file");
    f(&mut b);
    disk.set_file_bytes(path, b);
}

#[test]
fn a_flip_in_any_record_but_the_last_is_reported_with_file_and_offset() {
    let (_, _, at) = written(120);
    for (k, (path, offset)) in at.iter().enumerate() {
        let (disk, _, _) = written(120);
        damage(&disk, path, |b| b[*offset as usize + 40] ^= 0x10);
        match recover(&disk) {
            Err(Error::Corruption {
                file, offset: o, ..
            }) => {
                assert_eq!((&file, o), (path, *offset), "record {}", k + 1);
            }
            Ok(records) if k + 1 == at.len() => {
                // The very last record: indistinguishable from a torn write, trimmed.
                assert_eq!(records.len(), at.len() - 1);
            }
            other => panic!(
                "record {}: expected corruption, got {:?}",
                k + 1,
                other.map(|r| r.len())
            ),
        }
    }
}

#[test]
fn a_zeroed_sector_mid_log_is_corruption() {
    let (disk, segs, _) = written(120);
    damage(&disk, &segs[0], |b| b[512..1024].fill(0));
    assert!(matches!(recover(&disk), Err(Error::Corruption { file, .. }) if file == segs[0]));
}

#[test]
fn a_missing_or_bad_segment_is_corruption() {
    let (disk, segs, _) = written(300);
    assert!(segs.len() >= 3, "need several segments");
    let gone = disk.file_bytes(&segs[1]).expect("segment");
    disk.set_file_bytes(&segs[1], Vec::new());
    assert!(
        matches!(recover(&disk), Err(Error::Corruption { .. })),
        "emptied segment"
    );
    disk.set_file_bytes(&segs[1], gone);
    damage(&disk, &segs[1], |b| b[20] ^= 1);
    assert!(
        matches!(recover(&disk), Err(Error::Corruption { file, offset: 0, .. }) if file == segs[1])
    );
}

#[test]
fn a_torn_tail_is_trimmed_and_the_log_continues() {
    let (disk, segs, at) = written(120);
    let (last_path, last_off) = at.last().expect("records").clone();
    assert_eq!(&last_path, segs.last().expect("segments"));
    damage(&disk, &last_path, |b| {
        b[last_off as usize + 33..].fill(0xAB)
    });
    let records = recover(&disk).expect("trimmed");
    assert_eq!(records.len(), 119);
    rt().block_on(async {
        let vfs: Arc<dyn Vfs> = Arc::new(disk.clone());
        let (wal, report, _) = Wal::open(vfs, DIR, opts()).await.expect("open");
        assert_eq!(report.last_lsn, 119);
        assert_eq!(wal.append(payload(500)).await.expect("append"), 120);
        wal.close().await.expect("close");
    });
    let records = recover(&disk).expect("reopen");
    assert_eq!(records.last().map(|r| r.1.clone()), Some(payload(500)));
}

/// Random damage anywhere: never a panic, and whatever is returned is exactly what was
/// written (a prefix).
#[test]
fn random_damage_never_panics_nor_returns_wrong_data() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let (_, segs, _) = written(120);
    for round in 0..500 {
        let (disk, _, _) = written(120);
        let path = &segs[rng.random_range(0..segs.len())];
        damage(&disk, path, |b| match rng.random_range(0..4) {
            0 => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let s = rng.random_range(0..b.len() / 512) * 512;
                b[s..s + 512].fill(0);
            }
            2 => b.truncate(rng.random_range(0..b.len())),
            _ => {
                let i = rng.random_range(0..b.len());
                let n = rng.random_range(1..64).min(b.len() - i);
                rng.fill(&mut b[i..i + n]);
            }
        });
        match recover(&disk) {
            Ok(records) => {
                for (k, (lsn, p)) in records.iter().enumerate() {
                    assert_eq!(*lsn, k as u64 + 1, "round {round}");
                    assert_eq!(
                        *p,
                        payload(*lsn),
                        "round {round}: wrong bytes returned for LSN {lsn}"
                    );
                }
            }
            Err(Error::Corruption { .. }) => {}
            Err(e) => panic!("round {round}: unexpected error {e}"),
        }
    }
}
