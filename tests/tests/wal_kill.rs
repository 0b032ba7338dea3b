//! kill -9 of a real writer process at a random moment. The child appends at `Immediate`
//! from eight tasks and reports each acknowledged LSN over a pipe; the parent kills it and
//! checks, after reopening, that every acknowledged record is there with its bytes.
//!
//! A killed process keeps the OS page cache, so this tests process crashes, not power loss
//! (the simulated disk covers that). CI runs 10 rounds per backend; more:
//! `PERSISTX_KILL_ROUNDS=1000 cargo test --release -p persistx-tests --test wal_kill`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use persistx::{Backend, Wal, WalOptions, open_backend};
use rand::{Rng, SeedableRng};

fn rounds(backend: &str) {
    let n: u64 = std::env::var("PERSISTX_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let dir = tempfile::tempdir().expect("tempdir");
    let wal_dir = dir.path().join("wal");
    let mut acked: std::collections::BTreeMap<u64, (usize, usize)> = Default::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for round in 0..n {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal_writer"))
            .arg(&wal_dir)
            .arg(backend)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Vec<u64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
                if v.len() == 3 && tx.send((v[0], v[1] as usize, v[2] as usize)).is_err() {
                    return;
                }
            }
        });
        // Let it run until it acknowledged something, then a random moment more.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child acknowledged nothing");
        acked.insert(first.0, (first.1, first.2));
        let until = Instant::now() + Duration::from_millis(rng.random_range(5..300));
        while Instant::now() < until {
            if let Ok((lsn, w, i)) = rx.recv_timeout(Duration::from_millis(1)) {
                acked.insert(lsn, (w, i));
            }
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap child");
        reader.join().expect("reader thread");
        // Lines the child flushed before it died were acknowledged too.
        while let Ok((lsn, w, i)) = rx.try_recv() {
            acked.insert(lsn, (w, i));
        }
        let records = rt.block_on(async {
            let vfs = open_backend(Backend::Portable).expect("portable");
            let opts = WalOptions {
                segment_size: 64 << 10,
                ..WalOptions::default()
            };
            let (wal, _, records) = Wal::open(vfs, &wal_dir, opts)
                .await
                .expect("recover after kill");
            wal.close().await.expect("close");
            records
        });
        let by_lsn: std::collections::HashMap<u64, &bytes::Bytes> =
            records.iter().map(|(l, p)| (*l, p)).collect();
        for (lsn, (w, i)) in &acked {
            let want = persistx_tests::payload(42, *w, *i, 100);
            assert_eq!(
                by_lsn.get(lsn).copied(),
                Some(&want),
                "round {round}: acknowledged LSN {lsn} lost or changed"
            );
        }
        for (k, (lsn, _)) in records.iter().enumerate() {
            assert_eq!(*lsn, k as u64 + 1, "round {round}: the log has a gap");
        }
    }
    assert!(
        acked.len() > n as usize,
        "the children acknowledged too little to prove anything"
    );
}

#[test]
fn kill_9_portable() {
    rounds("portable");
}

#[test]
fn kill_9_io_uring() {
    if let Err(e) = open_backend(Backend::IoUring) {
        eprintln!("io_uring unavailable: {e}; skipping");
        return;
    }
    rounds("io_uring");
}

#[allow(dead_code)]
fn _assert_wal_is_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Wal>();
}
