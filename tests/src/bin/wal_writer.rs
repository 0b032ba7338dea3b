//! Child process of the kill -9 test: appends records at `Immediate` from several tasks and
//! prints `<lsn> <writer> <index>` for each acknowledged append, flushing stdout after each
//! line, until it is killed.
//!
//! Usage: `wal_writer DIR BACKEND` with BACKEND one of `auto`, `io_uring`, `portable`.

use std::io::Write;

use persistx::{Backend, Wal, WalOptions, open_backend};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: wal_writer DIR BACKEND");
    let backend = match args.next().as_deref() {
        Some("io_uring") => Backend::IoUring,
        Some("portable") => Backend::Portable,
        _ => Backend::Auto,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let vfs = open_backend(backend).expect("backend");
        let options = WalOptions {
            segment_size: 64 << 10,
            ..WalOptions::default()
        };
        let (wal, _, _) = Wal::open(vfs, dir, options).await.expect("open");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            for line in rx {
                if out
                    .write_all(line.as_bytes())
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let wal = wal.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let payload = persistx_tests::payload(42, w as usize, i as usize, 100);
                    let lsn = wal.append(payload).await.expect("append");
                    if tx.send(format!("{lsn} {w} {i}\n")).is_err() {
                        return;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}
