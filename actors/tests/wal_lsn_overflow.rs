//! Regression test for the review finding: LSN arithmetic overflowed on a (checksum-valid) segment header whose first LSN is
//! u64::MAX. Recovery panics (`expected += 1`) instead of returning `Error::Corruption`, and
//! an open log at the top of the LSN space makes the log actor panic on its next append.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use persistx_actors::{Error, Wal, WalOptions};
use persistx_io::Vfs;
use persistx_io::format::segment::SegmentHeader;
use persistx_io::format::wal::encode_record;
use persistx_io::sim::SimDisk;

const DIR: &str = "/db/wal";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn segment(first_lsn: u64, records: &[(u64, &[u8])]) -> Vec<u8> {
    let h = SegmentHeader {
        seq: 1,
        first_lsn,
        segment_size: 8192,
    };
    let mut bytes = h.encode().to_vec();
    for (lsn, p) in records {
        encode_record(&mut bytes, 1, *lsn, 0, p);
    }
    bytes.resize(8192, 0);
    bytes
}

fn disk_with(bytes: Vec<u8>) -> SimDisk {
    let disk = SimDisk::new();
    rt().block_on(async {
        disk.create_dir_all(Path::new(DIR)).await.expect("mkdir");
    });
    disk.set_file_bytes(&Path::new(DIR).join(format!("{:020}.wal", 1)), bytes);
    disk
}

#[test]
fn recovery_of_a_record_at_u64_max_does_not_panic() {
    let disk = disk_with(segment(u64::MAX, &[(u64::MAX, b"top")]));
    let vfs: Arc<dyn Vfs> = Arc::new(disk);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt().block_on(async {
            Wal::open(vfs, DIR, WalOptions::default())
                .await
                .map(|(_, report, records)| (report, records.len()))
        })
    }));
    match r {
        Err(_) => panic!("recovery panicked on a hostile first LSN (G3: never a panic)"),
        Ok(Err(Error::Corruption { .. })) => {}
        Ok(other) => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn append_at_the_top_of_the_lsn_space_fails_cleanly() {
    let disk = disk_with(segment(u64::MAX, &[]));
    let vfs: Arc<dyn Vfs> = Arc::new(disk);
    rt().block_on(async {
        let opened = Wal::open(vfs, DIR, WalOptions::default()).await;
        let Ok((wal, _, _)) = opened else {
            return; // refusing such a header at open is a fine fix
        };
        let r = wal.append(Bytes::from_static(b"x")).await;
        assert!(
            !matches!(r, Err(Error::Actor(_))),
            "the log actor died (panic) instead of refusing: {r:?}"
        );
    });
}
