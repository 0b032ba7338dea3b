//! The `persistx` command line.
//!
//! `persistx demo` is the project's main job: producers append durable records through the
//! group-commit log, then the log is reopened and every record verified.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use persistx::{Backend, Durability, Wal, WalOptions, open_backend};

#[derive(Parser)]
#[command(
    name = "persistx",
    version,
    about = "PersistX: an embedded, async-first storage engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest items from concurrent producers durably, reopen, and verify every one.
    Demo {
        /// How many items to write.
        #[arg(long, default_value_t = 100_000)]
        items: u64,
        /// Concurrent producer tasks (they share fsyncs through group commit).
        #[arg(long, default_value_t = 64)]
        producers: u64,
        /// Where the data goes.
        #[arg(long, default_value = "./persistx-data")]
        dir: PathBuf,
        /// I/O backend: auto, io_uring or portable.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
}

fn item(producer: u64, i: u64) -> Bytes {
    Bytes::from(format!(
        "producer={producer:04} item={i:010} payload={}",
        "p".repeat(40)
    ))
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    match s {
        "auto" => Ok(Backend::Auto),
        "io_uring" | "uring" => Ok(Backend::IoUring),
        "portable" => Ok(Backend::Portable),
        other => Err(format!(
            "unknown backend {other:?}: use auto, io_uring or portable"
        )),
    }
}

async fn demo(items: u64, producers: u64, dir: PathBuf, backend: Backend) -> Result<(), String> {
    if producers == 0 {
        return Err("--producers must be at least 1".into());
    }
    let wal_dir = dir.join("wal");
    if wal_dir.exists() {
        std::fs::remove_dir_all(&wal_dir)
            .map_err(|e| format!("cannot clear {}: {e}", wal_dir.display()))?;
    }
    let vfs = open_backend(backend).map_err(|e| e.to_string())?;
    println!("PersistX demo: {items} items from {producers} producers at Durability::Immediate");
    println!("data: {} (backend: {})", wal_dir.display(), vfs.name());
    let (wal, _, _) = Wal::open(vfs.clone(), &wal_dir, WalOptions::default())
        .await
        .map_err(|e| e.to_string())?;

    let bar = ProgressBar::new(items);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} items  {per_sec}  eta {eta}")
            .map_err(|e| e.to_string())?,
    );
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let wal = wal.clone();
        let bar = bar.clone();
        let done = done.clone();
        let share = items / producers + u64::from(p < items % producers);
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::with_capacity(share as usize);
            for i in 0..share {
                let lsn = wal.append_with(item(p, i), Durability::Immediate).await?;
                acked.push((lsn, p, i));
                if done.fetch_add(1, Ordering::Relaxed).is_multiple_of(256) {
                    bar.set_position(done.load(Ordering::Relaxed));
                }
            }
            Ok::<_, persistx::Error>(acked)
        }));
    }
    let mut acked = Vec::with_capacity(items as usize);
    for t in tasks {
        acked.extend(
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let stats = wal.stats().await.map_err(|e| e.to_string())?;
    println!(
        "wrote {items} durable items in {secs:.2} s: {:.0} items/s, {} fsyncs ({:.1} items per fsync)",
        items as f64 / secs,
        stats.syncs,
        items as f64 / stats.syncs.max(1) as f64
    );
    wal.close().await.map_err(|e| e.to_string())?;

    let started = Instant::now();
    let (wal, report, records) = Wal::open(vfs, &wal_dir, WalOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    wal.close().await.map_err(|e| e.to_string())?;
    let mut bad = 0u64;
    for (lsn, p, i) in &acked {
        let idx = lsn.checked_sub(report.first_lsn).map(|x| x as usize);
        match idx.and_then(|k| records.get(k)) {
            Some((l, bytes)) if l == lsn && *bytes == item(*p, *i) => {}
            _ => bad += 1,
        }
    }
    if bad > 0 || records.len() as u64 != items {
        return Err(format!(
            "verification FAILED: {bad} items missing or wrong, {} records found",
            records.len()
        ));
    }
    println!(
        "reopened and verified all {items} items in {:.2} s; data left in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Demo {
            items,
            producers,
            dir,
            backend,
        } => match parse_backend(&backend) {
            Ok(b) => rt.block_on(demo(items, producers, dir, b)),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
