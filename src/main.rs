//! The `persistx` command line.
//!
//! * `persistx demo` is the project's main job: producer tasks ingest items into a durable
//!   map through group commit, then the database is closed, reopened and every item
//!   verified.
//! * `persistx stats PATH`, `verify PATH`, `dump PATH COLLECTION`, `compact PATH`: tools for
//!   a database directory.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use persistx::engine::{Engine, EngineOptions, Op};
use persistx::{Backend, Database, PersistentMap, open_backend};

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
    /// Ingest items into a durable map from concurrent producers, reopen, verify every one.
    Demo {
        /// How many items to write.
        #[arg(long, default_value_t = 100_000)]
        items: u64,
        /// Concurrent producer tasks (they share fsyncs through group commit).
        #[arg(long, default_value_t = 64)]
        producers: u64,
        /// Where the database goes (replaced if it holds an earlier demo).
        #[arg(long, default_value = "./persistx-data")]
        dir: PathBuf,
        /// I/O backend: auto, io_uring or portable.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Collections, counts, bytes, pages, fill, fragmentation, log size, cache hit ratio.
    Stats {
        /// The database directory.
        path: PathBuf,
    },
    /// Read every page, check every checksum and tree invariant; exit 1 on damage.
    Verify {
        /// The database directory.
        path: PathBuf,
    },
    /// Print a collection as JSON lines.
    Dump {
        /// The database directory.
        path: PathBuf,
        /// The collection.
        collection: String,
    },
    /// Rewrite the database into fresh, densely packed pages.
    Compact {
        /// The database directory.
        path: PathBuf,
    },
}

fn payload(producer: u64, i: u64) -> Vec<u8> {
    format!(
        "producer={producer:04} item={i:010} payload={}",
        "p".repeat(40)
    )
    .into_bytes()
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

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}"
    )) {
        bar.set_style(style);
    }
    bar
}

/// Removes an earlier database from `dir` (only PersistX's own files), so the demo starts
/// empty; refuses a folder that holds anything else.
fn clear_demo_dir(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if let Some(other) = names
        .iter()
        .find(|n| !matches!(n.as_str(), "data.px" | "wal" | "LOCK"))
    {
        return Err(format!(
            "{} holds {other:?}, which is not PersistX's; pass another --dir",
            dir.display()
        ));
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))
}

async fn demo(items: u64, producers: u64, dir: PathBuf, backend: Backend) -> Result<(), String> {
    if producers == 0 {
        return Err("--producers must be at least 1".into());
    }
    clear_demo_dir(&dir)?;
    let db = Database::builder()
        .backend(backend)
        .open(&dir)
        .await
        .map_err(|e| e.to_string())?;
    let map: PersistentMap<(u64, u64), Vec<u8>> =
        db.map("demo").await.map_err(|e| e.to_string())?;
    println!(
        "PersistX demo: {items} items from {producers} producers into a durable map (Durability::Immediate)"
    );
    println!("database: {}", dir.display());
    let progress = bar(items, "items");
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let map = map.clone();
        let progress = progress.clone();
        let done = done.clone();
        let share = items / producers + u64::from(p < items % producers);
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                map.insert((p, i), payload(p, i)).await?;
                if done.fetch_add(1, Ordering::Relaxed).is_multiple_of(256) {
                    progress.set_position(done.load(Ordering::Relaxed));
                }
            }
            Ok::<_, persistx::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let stats = db.stats().await.map_err(|e| e.to_string())?;
    println!(
        "wrote {items} durable items in {secs:.2} s: {:.0} items/s, {} log writes ({:.1} items per write)",
        items as f64 / secs,
        stats.wal.batches,
        items as f64 / stats.wal.batches.max(1) as f64
    );
    db.close().await.map_err(|e| e.to_string())?;

    let started = Instant::now();
    let db = Database::builder()
        .backend(backend)
        .open(&dir)
        .await
        .map_err(|e| e.to_string())?;
    let map: PersistentMap<(u64, u64), Vec<u8>> =
        db.map("demo").await.map_err(|e| e.to_string())?;
    if map.len() != items {
        return Err(format!(
            "verification FAILED: {} items after reopen, expected {items}",
            map.len()
        ));
    }
    let check = bar(items, "verified");
    let mut seen = 0u64;
    let mut next = vec![0u64; producers as usize];
    let mut entries = std::pin::pin!(map.iter());
    while let Some(((p, i), v)) = entries.try_next().await.map_err(|e| e.to_string())? {
        let ok = p < producers && next[p as usize] == i && v == payload(p, i);
        if !ok {
            return Err(format!("verification FAILED at item ({p}, {i})"));
        }
        next[p as usize] += 1;
        seen += 1;
        if seen.is_multiple_of(1024) {
            check.set_position(seen);
        }
    }
    check.finish_and_clear();
    let report = db.verify().await.map_err(|e| e.to_string())?;
    db.close().await.map_err(|e| e.to_string())?;
    println!(
        "reopened and verified all {seen} items in {:.2} s ({} pages checked); data left in {}",
        started.elapsed().as_secs_f64(),
        report.pages,
        dir.display()
    );
    Ok(())
}

async fn open_tool(path: &Path) -> Result<Engine, String> {
    if !path.join("data.px").exists() {
        return Err(format!(
            "{} is not a PersistX database (no data.px)",
            path.display()
        ));
    }
    let vfs = open_backend(Backend::Auto).map_err(|e| e.to_string())?;
    let options = EngineOptions {
        auto_checkpoint: false,
        ..EngineOptions::default()
    };
    Engine::open(vfs, path, options)
        .await
        .map_err(|e| e.to_string())
}

async fn stats(path: PathBuf) -> Result<(), String> {
    let engine = open_tool(&path).await?;
    let report = engine.verify().await.map_err(|e| e.to_string())?;
    let s = engine.stats().await.map_err(|e| e.to_string())?;
    let cap = (s.page_size - 32) as f64;
    println!("database {}", path.display());
    println!(
        "page size {} B, {} pages ({:.1} MiB)",
        s.page_size,
        s.pages,
        (s.pages * s.page_size as u64) as f64 / 1048576.0
    );
    println!(
        "free pages {} ({:.1}% of the file: fragmentation), log {:.1} MiB in {} segments",
        report.free_pages,
        100.0 * report.free_pages as f64 / s.pages.max(1) as f64,
        s.wal_bytes as f64 / 1048576.0,
        s.wal.segments + s.wal.spare_segments
    );
    println!("collection\tkind\tentries\tbytes\tpages\tdepth\tfill");
    for (name, t) in &report.collections {
        let info = s
            .collections
            .iter()
            .find(|(i, _)| &i.name == name)
            .map(|(i, _)| i.kind.name())
            .unwrap_or("?");
        let nodes = t.leaves + t.interiors;
        println!(
            "{name}\t{info}\t{}\t{}\t{}\t{}\t{:.1}%",
            t.entries,
            t.used_bytes,
            nodes + t.overflow_pages,
            t.depth,
            100.0 * t.used_bytes as f64 / (nodes.max(1) as f64 * cap)
        );
    }
    let pool = engine.stats().await.map_err(|e| e.to_string())?.pool;
    println!(
        "cache: {} hits, {} misses ({:.1}% hit ratio during this scan), {} bytes of {} budget",
        pool.hits,
        pool.misses,
        100.0 * pool.hit_ratio(),
        pool.bytes,
        pool.budget
    );
    engine.close().await.map_err(|e| e.to_string())
}

async fn verify(path: PathBuf) -> Result<(), String> {
    let engine = open_tool(&path)
        .await
        .map_err(|e| format!("DAMAGED or unreadable: {e}"))?;
    let started = Instant::now();
    let report = engine.verify().await.map_err(|e| format!("DAMAGED: {e}"))?;
    for (name, t) in &report.collections {
        println!(
            "{name}: {} entries, {} leaves, {} interior nodes, depth {}: ok",
            t.entries, t.leaves, t.interiors, t.depth
        );
    }
    println!(
        "verified {} pages in {:.2} s: every checksum and invariant holds ({} free, {} unaccounted)",
        report.pages,
        started.elapsed().as_secs_f64(),
        report.free_pages,
        report.leaked_pages
    );
    engine.close().await.map_err(|e| e.to_string())
}

fn json_bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json_string(s),
        Err(_) => format!(
            "{{\"hex\":\"{}\"}}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

fn serde_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A stored value as JSON: JSON-coded values as they are, others as bytes.
fn json_value(v: &[u8]) -> String {
    match v.split_first() {
        Some((1, rest)) if rest.len() >= 2 && std::str::from_utf8(&rest[2..]).is_ok() => {
            String::from_utf8_lossy(&rest[2..]).into_owned()
        }
        Some((0, raw)) => json_bytes(raw),
        _ => json_bytes(v),
    }
}

async fn dump(path: PathBuf, name: String) -> Result<(), String> {
    use std::io::Write;
    let engine = open_tool(&path).await?;
    let coll = engine
        .existing_collection(&name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no collection {name:?} in {}", path.display()))?;
    let snap = coll.snapshot();
    let mut cursor = snap
        .cursor(std::ops::Bound::Unbounded, true)
        .await
        .map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some((k, v)) = snap
        .step(&mut cursor, true)
        .await
        .map_err(|e| e.to_string())?
    {
        let line = format!(
            "{{\"key\":{},\"value\":{}}}",
            json_bytes(&k),
            json_value(&v)
        );
        if writeln!(out, "{line}").is_err() {
            break; // a closed pipe (e.g. `| head`) ends the dump
        }
    }
    drop(out);
    engine.close().await.map_err(|e| e.to_string())
}

async fn compact(path: PathBuf) -> Result<(), String> {
    let engine = open_tool(&path).await?;
    let before = engine.stats().await.map_err(|e| e.to_string())?;
    let tmp = path.with_extension("compacting");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .map_err(|e| format!("cannot clear {}: {e}", tmp.display()))?;
    }
    let vfs = open_backend(Backend::Auto).map_err(|e| e.to_string())?;
    let target = Engine::open(
        vfs,
        &tmp,
        EngineOptions {
            auto_checkpoint: false,
            page_size: before.page_size,
            ..EngineOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let total: u64 = before.collections.iter().map(|(_, n)| n).sum();
    let progress = bar(total, "entries");
    for (info, _) in &before.collections {
        let src = engine
            .existing_collection(&info.name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("collection vanished")?;
        let dst = target
            .collection(&info.name, info.kind, &info.key_type, &info.value_type)
            .await
            .map_err(|e| e.to_string())?;
        let snap = src.snapshot();
        let mut cursor = snap
            .cursor(std::ops::Bound::Unbounded, true)
            .await
            .map_err(|e| e.to_string())?;
        let mut batch: Vec<Op> = Vec::new();
        let mut bytes = 0usize;
        loop {
            let next = snap
                .step(&mut cursor, true)
                .await
                .map_err(|e| e.to_string())?;
            let flush = next.is_none() || bytes > 64 << 20;
            if let Some((k, v)) = next {
                bytes += k.len() + v.len();
                batch.push(Op::Put(k, v));
            }
            if flush && !batch.is_empty() {
                let n = batch.len() as u64;
                // Sorted input into an empty tree: leaves fill completely.
                dst.write(std::mem::take(&mut batch))
                    .await
                    .map_err(|e| e.to_string())?;
                progress.inc(n);
                bytes = 0;
            }
            if flush {
                break;
            }
        }
    }
    progress.finish_and_clear();
    target.close().await.map_err(|e| e.to_string())?;
    engine.close().await.map_err(|e| e.to_string())?;
    let old = path.with_extension("old");
    std::fs::rename(&path, &old)
        .map_err(|e| format!("cannot move {} aside: {e}", path.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        format!(
            "cannot move the compacted copy into place: {e} (the original is at {})",
            old.display()
        )
    })?;
    std::fs::remove_dir_all(&old)
        .map_err(|e| format!("compacted, but cannot remove {}: {e}", old.display()))?;
    let after = open_tool(&path).await?;
    let s = after.stats().await.map_err(|e| e.to_string())?;
    after.close().await.map_err(|e| e.to_string())?;
    println!(
        "compacted {}: {} pages -> {} pages ({:.1} MiB -> {:.1} MiB)",
        path.display(),
        before.pages,
        s.pages,
        (before.pages * before.page_size as u64) as f64 / 1048576.0,
        (s.pages * s.page_size as u64) as f64 / 1048576.0
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
        Command::Stats { path } => rt.block_on(stats(path)),
        Command::Verify { path } => rt.block_on(verify(path)),
        Command::Dump { path, collection } => rt.block_on(dump(path, collection)),
        Command::Compact { path } => rt.block_on(compact(path)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
