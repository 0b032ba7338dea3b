//! Regression test for the review finding: a segment's header proves every LSN below its first LSN was synced (the old tail
//! is synced before the next segment is created). Recovery ignores that proof: when the
//! next segment holds no record yet (crash right after rotation), damage to the last record
//! of the previous segment is trimmed as a torn write, and the (empty) next segment deleted,
//! although the record had been acknowledged at Immediate and nothing was torn.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use persistx_actors::{Error, Wal, WalOptions};
use persistx_io::Vfs;
use persistx_io::format::wal::decode_record;
use persistx_io::sim::SimDisk;

const DIR: &str = "/db/wal";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn seg(n: u64) -> PathBuf {
    Path::new(DIR).join(format!("{n:020}.wal"))
}

#[test]
fn damage_to_a_record_below_the_next_segments_first_lsn_is_corruption() {
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
        while wal.stats().await.expect("stats").segments < 2 {
            wal.append(Bytes::from(vec![b'p'; 300]))
                .await
                .expect("append");
        }
        wal.close().await.expect("close");
    });
    // As if the crash came right after segment 2 was created: no record in it yet.
    let mut two = disk.file_bytes(&seg(2)).expect("segment 2");
    two[64..].fill(0);
    disk.set_file_bytes(&seg(2), two);
    // Bit rot in the last record of segment 1, which segment 2's header proves was synced.
    let mut one = disk.file_bytes(&seg(1)).expect("segment 1");
    let (mut off, mut last) = (64usize, 0usize);
    while let Ok((h, _)) = decode_record(&one[off..], 1) {
        last = off;
        off += h.frame_len() as usize;
    }
    one[last + 40] ^= 0x04;
    disk.set_file_bytes(&seg(1), one);

    let r = rt().block_on(async {
        let (wal, report, records) = Wal::open(vfs.clone(), DIR, opts.clone()).await?;
        wal.close().await?;
        Ok::<_, Error>((report, records.len()))
    });
    let seg2_left = disk.file_bytes(&seg(2)).is_some();
    match r {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!((file, offset), (seg(1), last as u64))
        }
        other => panic!(
            "synced record silently trimmed (segment 2 still present: {seg2_left}): {other:?}"
        ),
    }
}
