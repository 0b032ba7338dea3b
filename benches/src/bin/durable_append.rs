//! Durable append throughput and latency of the write-ahead log, next to the disk's physical
//! limit.
//!
//! All three are measured in interleaved slices (`--rounds`), so a drifting disk affects them
//! alike.
//!
//! 1. Raw limit: one std thread doing `pwrite` of one record frame (132 bytes by default) at
//!    increasing offsets of a preallocated file + `fdatasync`, on the same disk.
//! 2. Backend floor: the same loop through the backend's `File::write_and_sync`, from a tokio
//!    task (what one group commit of the log actor costs at the I/O layer).
//! 3. The WAL: for each backend and writer count, that many tokio tasks append records at
//!    `Durability::Immediate` in a loop; after each cell the WAL is closed, reopened and every
//!    acknowledged record is checked byte for byte.
//!
//! Run with `cargo run --release -p persistx-benches --bin durable_append -- --help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use persistx_actors::{Wal, WalOptions};
use persistx_benches::payload::{self, RecordId};
use persistx_benches::{BoxError, Result, latency, raw, table};
use persistx_io::format::wal::{RECORD_HEADER_LEN, frame_len};
use persistx_io::{Backend, File, OpenMode, Vfs};
use tokio::task::JoinSet;

/// Durable (fdatasync'ed) WAL append benchmark against the raw fsync loop of the same disk.
#[derive(Debug, Parser)]
#[command(name = "durable_append")]
struct Args {
    /// Directory in which a fresh temporary directory is made for all files (default:
    /// `./target` if it exists, else `.`; it must be on the disk you want to measure).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds per measurement (raw loop, backend floor, each WAL cell), over all rounds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Instead of a duration, append this many records per WAL cell (split evenly across the
    /// rounds and writers, rounded up) and do this many raw-loop and backend-floor iterations.
    #[arg(long)]
    count: Option<u64>,
    /// Writer counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8, 64, 256])]
    writers: Vec<usize>,
    /// Backends to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![BackendArg::IoUring, BackendArg::Portable])]
    backends: Vec<BackendArg>,
    /// Payload bytes per record (at least 16: the payload encodes writer and sequence).
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Worker threads of the tokio runtime.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
    /// Rounds: every measurement is split into this many slices, and the slices of the raw
    /// loop, the backend floors and every WAL cell are interleaved round by round, so a disk
    /// whose speed drifts (a shared VM disk) affects all of them alike.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Skip the backend-floor measurement.
    #[arg(long)]
    no_floor: bool,
    /// Keep the temporary directory (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Exit non-zero when a target is missed (verification failures always do).
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    #[value(name = "io_uring")]
    IoUring,
    #[value(name = "portable")]
    Portable,
}

impl std::fmt::Display for BackendArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl BackendArg {
    fn name(self) -> &'static str {
        match self {
            BackendArg::IoUring => "io_uring",
            BackendArg::Portable => "portable",
        }
    }
    fn backend(self) -> Backend {
        match self {
            BackendArg::IoUring => Backend::IoUring,
            BackendArg::Portable => Backend::Portable,
        }
    }
}

/// The target ratios from the issue.
const TARGET_ONE_WRITER_VS_RAW: f64 = 0.8;
const TARGET_64_VS_ONE: f64 = 30.0;

/// Size of the preallocated files of the raw loop and backend floor in duration mode.
const LOOP_FILE_SIZE: u64 = 64 << 20;

/// What one WAL cell (backend x writer count) measured, over all its slices.
struct Cell {
    writers: usize,
    appends: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    syncs: u64,
    batches: u64,
    reopen: Duration,
    slice_rates: Vec<f64>,
}

impl Cell {
    fn rate(&self) -> f64 {
        self.appends as f64 / self.elapsed.as_secs_f64()
    }
}

/// The backend floor: `write_and_sync` of one frame at increasing offsets of a preallocated
/// file, from one tokio task.
struct Floor {
    file: Arc<dyn File>,
    size: u64,
    offset: u64,
    record: Bytes,
    ops: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    slice_rates: Vec<f64>,
}

/// Everything measured on one backend.
struct BackendRun {
    name: &'static str,
    vfs: Arc<dyn Vfs>,
    wal_dir: PathBuf,
    wal: Option<Wal>,
    /// The raw loop, run in the slice just before this backend's cells in every round.
    raw: raw::RawLoop,
    /// Every acknowledged record of this backend's WAL so far, in LSN order.
    acked: Vec<(u64, RecordId)>,
    floor: Option<Floor>,
    cells: Vec<Cell>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(Outcome::AllPass) => ExitCode::SUCCESS,
        Ok(Outcome::TargetsMissed) => {
            if args.strict {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("durable_append: FAILED: {e}");
            ExitCode::from(2)
        }
    }
}

enum Outcome {
    AllPass,
    TargetsMissed,
}

fn run(args: &Args) -> Result<Outcome> {
    if args.record_size < payload::HEADER_LEN {
        return Err(format!("--record-size must be at least {}", payload::HEADER_LEN).into());
    }
    if args.seconds <= 0.0 && args.count.is_none() {
        return Err("--seconds must be positive".into());
    }
    let rounds = args.rounds.max(1);
    let slice = Duration::from_secs_f64(args.seconds.max(0.0) / f64::from(rounds));
    let slice_count = args.count.map(|n| n.div_ceil(u64::from(rounds)));
    let base = match &args.dir {
        Some(d) => d.clone(),
        None if Path::new("target").is_dir() => PathBuf::from("target"),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new()
        .prefix("durable_append-")
        .tempdir_in(&base)?;
    let root = std::fs::canonicalize(tmp.path())?;
    let raw_len = RECORD_HEADER_LEN + args.record_size;
    let wal_frame = frame_len(args.record_size);
    let writers: Vec<usize> = args.writers.iter().copied().filter(|&w| w > 0).collect();

    println!("# durable_append");
    println!();
    println!("- directory: {}", root.display());
    match args.count {
        Some(n) => println!(
            "- mode: fixed count, {n} appends per cell / iterations per loop, in {rounds} rounds"
        ),
        None => println!(
            "- mode: fixed duration, {:.1} s per measurement in {rounds} interleaved rounds of {:.2} s",
            args.seconds,
            slice.as_secs_f64()
        ),
    }
    println!(
        "- record: {} payload bytes ({} bytes raw write = header + payload; WAL frame {} bytes)",
        args.record_size, raw_len, wal_frame
    );
    println!(
        "- tokio: multi-thread runtime, {} workers; WAL durability Immediate",
        args.worker_threads
    );
    println!();

    let loop_size = args
        .count
        .map_or(LOOP_FILE_SIZE, |n| n * wal_frame as u64 + 4096);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()?;

    let mut runs: Vec<BackendRun> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for &b in &args.backends {
        let name = b.name();
        let vfs = match rt.block_on(async { persistx_io::open_backend(b.backend()) }) {
            Ok(v) => v,
            Err(e) => {
                let note = format!("{name}: skipped, open_backend failed: {e}");
                println!("NOTE: {note}");
                println!();
                skipped.push(note);
                continue;
            }
        };
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let floor = if args.no_floor {
            None
        } else {
            Some(rt.block_on(rt.spawn(create_floor(
                vfs.clone(),
                dir.join("floor.dat"),
                loop_size,
                wal_frame,
            )))??)
        };
        let wal_dir = dir.join("wal");
        let (wal, report, recovered) =
            rt.block_on(Wal::open(vfs.clone(), &wal_dir, WalOptions::default()))?;
        if report.records != 0 || !recovered.is_empty() {
            return Err(
                format!("{name}: a fresh WAL recovered {} records", recovered.len()).into(),
            );
        }
        let cells = writers
            .iter()
            .map(|&w| Cell {
                writers: w,
                appends: 0,
                elapsed: Duration::ZERO,
                latency: latency::histogram(),
                syncs: 0,
                batches: 0,
                reopen: Duration::ZERO,
                slice_rates: Vec::new(),
            })
            .collect();
        let raw = raw::RawLoop::create(&dir.join("raw-loop.dat"), loop_size, raw_len)?;
        runs.push(BackendRun {
            name,
            vfs,
            wal_dir,
            wal: Some(wal),
            raw,
            acked: Vec::new(),
            floor,
            cells,
        });
    }

    for round in 0..rounds {
        for run in &mut runs {
            run.raw.run(slice, slice_count)?;
            eprintln!(
                "round {round}: raw loop {:.0} ops/s (before {})",
                run.raw.slice_rates.last().copied().unwrap_or(0.0),
                run.name
            );
            for ci in 0..run.cells.len() {
                let cell_id = u32::try_from(round as usize * writers.len() + ci)?;
                rt.block_on(wal_slice(
                    run,
                    ci,
                    cell_id,
                    args.record_size,
                    slice,
                    slice_count,
                ))?;
            }
            if let Some(floor) = run.floor.take() {
                let floor = rt.block_on(rt.spawn(floor_slice(floor, slice, slice_count)))??;
                run.floor = Some(floor);
            }
        }
    }
    for run in &mut runs {
        if let Some(wal) = run.wal.take() {
            rt.block_on(wal.close())?;
        }
    }
    let outcome = report(&runs, &skipped, raw_len, wal_frame, args, tmp);
    // Files and backends are dropped while the runtime still exists.
    drop(runs);
    drop(rt);
    outcome
}

/// Prints the tables and target checks.
fn report(
    runs: &[BackendRun],
    skipped: &[String],
    raw_len: usize,
    wal_frame: usize,
    args: &Args,
    tmp: tempfile::TempDir,
) -> Result<Outcome> {
    let raw_rate = |run: &BackendRun| run.raw.total.ops_per_sec();
    println!("## Raw limit: pwrite {raw_len} B + fdatasync, one std thread");
    println!();
    println!(
        "Run in slices interleaved with each backend's measurements; each backend's ratios use its own row."
    );
    println!();
    let raw_rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let r = &run.raw.total;
            let s = latency::summary(&r.latency);
            vec![
                format!("next to {}", run.name),
                r.ops.to_string(),
                format!("{:.0}", r.ops_per_sec()),
                format!("{:.1}", s.p50_us),
                format!("{:.1}", s.p99_us),
                format!("{:.1}", s.max_us),
                format!("{:.1}", per_op_us(r.write_time, r.ops)),
                format!("{:.1}", per_op_us(r.sync_time, r.ops)),
                range(&run.raw.slice_rates),
            ]
        })
        .collect();
    print!(
        "{}",
        table::markdown(
            &[
                "raw loop",
                "ops",
                "ops/s",
                "p50 us",
                "p99 us",
                "max us",
                "pwrite us/op",
                "fdatasync us/op",
                "slice ops/s (min-max)",
            ],
            &raw_rows,
        )
    );
    println!();

    let floors: Vec<(&BackendRun, &Floor)> = runs
        .iter()
        .filter_map(|r| r.floor.as_ref().map(|f| (r, f)))
        .collect();
    if !floors.is_empty() {
        println!(
            "## Backend floor: File::write_and_sync of one {wal_frame} B frame, one tokio task"
        );
        println!();
        let rows: Vec<Vec<String>> = floors
            .iter()
            .map(|(run, f)| {
                let s = latency::summary(&f.latency);
                let rate = f.ops as f64 / f.elapsed.as_secs_f64();
                vec![
                    run.name.to_string(),
                    format!("{rate:.0}"),
                    format!("{:.1}", s.p50_us),
                    format!("{:.1}", s.p99_us),
                    format!("{:.2}x", rate / raw_rate(run)),
                    range(&f.slice_rates),
                ]
            })
            .collect();
        print!(
            "{}",
            table::markdown(
                &[
                    "backend",
                    "ops/s",
                    "p50 us",
                    "p99 us",
                    "ratio to raw fsync loop",
                    "slice ops/s (min-max)"
                ],
                &rows
            )
        );
        println!();
    }

    println!("## WAL durable appends (every acknowledged record verified after close + reopen)");
    println!();
    let one_writer_rate =
        |run: &BackendRun| run.cells.iter().find(|c| c.writers == 1).map(Cell::rate);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for run in runs {
        for c in &run.cells {
            let s = latency::summary(&c.latency);
            let rate = c.rate();
            rows.push(vec![
                run.name.to_string(),
                c.writers.to_string(),
                format!("{rate:.0}"),
                format!("{:.1}", s.p50_us),
                format!("{:.1}", s.p99_us),
                if c.syncs == 0 {
                    "n/a".into()
                } else {
                    format!("{:.1}", c.appends as f64 / c.syncs as f64)
                },
                format!("{:.2}x", rate / raw_rate(run)),
                one_writer_rate(run).map_or("n/a".into(), |one| format!("{:.1}x", rate / one)),
            ]);
        }
    }
    print!(
        "{}",
        table::markdown(
            &[
                "backend",
                "writers",
                "appends/s",
                "p50 us",
                "p99 us",
                "avg batch",
                "ratio to raw fsync loop",
                "ratio to 1-writer rate",
            ],
            &rows,
        )
    );
    println!();
    println!("Details:");
    println!();
    for run in runs {
        for c in &run.cells {
            let s = latency::summary(&c.latency);
            println!(
                "- {} x{}: {} appends in {:.2} s, {} syncs, {} write batches, latency mean {:.1} us, \
                 p99.9 {:.1} us, max {:.1} us; slice appends/s {}; close+reopen+verify {:.2} s",
                run.name,
                c.writers,
                c.appends,
                c.elapsed.as_secs_f64(),
                c.syncs,
                c.batches,
                s.mean_us,
                s.p999_us,
                s.max_us,
                range(&c.slice_rates),
                c.reopen.as_secs_f64()
            );
        }
        println!(
            "- {}: {} acknowledged records verified after the last reopen",
            run.name,
            run.acked.len()
        );
    }
    println!();

    println!("## Targets");
    println!();
    let mut missed = false;
    for run in runs {
        let b = run.name;
        let raw_rate = raw_rate(run);
        let one = one_writer_rate(run);
        let sixty_four = run.cells.iter().find(|c| c.writers == 64).map(Cell::rate);
        match one {
            Some(one) => {
                let ratio = one / raw_rate;
                let ok = ratio >= TARGET_ONE_WRITER_VS_RAW;
                missed |= !ok;
                println!(
                    "- {b}: 1 writer at >= {TARGET_ONE_WRITER_VS_RAW}x the raw loop: {one:.0} / {raw_rate:.0} = \
                     {ratio:.2}x **{}**",
                    pass(ok)
                );
            }
            None => println!(
                "- {b}: 1 writer at >= {TARGET_ONE_WRITER_VS_RAW}x the raw loop: n/a (not measured)"
            ),
        }
        match (one, sixty_four) {
            (Some(one), Some(s)) => {
                let ratio = s / one;
                let ok = ratio >= TARGET_64_VS_ONE;
                missed |= !ok;
                println!(
                    "- {b}: 64 writers at >= {TARGET_64_VS_ONE}x the 1-writer rate: {s:.0} / {one:.0} = {ratio:.1}x **{}**",
                    pass(ok)
                );
            }
            _ => println!(
                "- {b}: 64 writers at >= {TARGET_64_VS_ONE}x the 1-writer rate: n/a (not measured)"
            ),
        }
    }
    for note in skipped {
        println!("- {note}");
    }
    println!();

    if args.keep {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    Ok(if missed {
        Outcome::TargetsMissed
    } else {
        Outcome::AllPass
    })
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn per_op_us(total: Duration, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        total.as_secs_f64() * 1e6 / ops as f64
    }
}

/// `min-max` of slice rates.
fn range(rates: &[f64]) -> String {
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    if rates.is_empty() {
        "n/a".into()
    } else {
        format!("{min:.0}-{max:.0}")
    }
}

/// Creates and preallocates (writes zeros over) the backend-floor file, and syncs it.
async fn create_floor(vfs: Arc<dyn Vfs>, path: PathBuf, size: u64, frame: usize) -> Result<Floor> {
    let file = vfs.open(&path, OpenMode::CreateNew).await?;
    let zeros = Bytes::from(vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(zeros.len() as u64) as usize;
        file.write_at(offset, zeros.slice(..n)).await?;
        offset += n as u64;
    }
    file.sync_all().await?;
    vfs.sync_dir(persistx_io::vfs::parent_dir(&path).as_path())
        .await?;
    let record = Bytes::from(
        (0..frame)
            .map(|i| (i as u8).wrapping_mul(31) | 1)
            .collect::<Vec<u8>>(),
    );
    Ok(Floor {
        file,
        size,
        offset: 0,
        record,
        ops: 0,
        elapsed: Duration::ZERO,
        latency: latency::histogram(),
        slice_rates: Vec::new(),
    })
}

/// One slice of the backend floor.
async fn floor_slice(mut f: Floor, duration: Duration, count: Option<u64>) -> Result<Floor> {
    let len = f.record.len() as u64;
    let mut ops = 0u64;
    let start = Instant::now();
    let deadline = start + duration;
    loop {
        if count.is_some_and(|m| ops >= m) || f.offset + len > f.size {
            break;
        }
        let t0 = Instant::now();
        if count.is_none() && t0 >= deadline {
            break;
        }
        f.file.write_and_sync(f.offset, f.record.clone()).await?;
        latency::record(&mut f.latency, t0.elapsed());
        f.offset += len;
        ops += 1;
    }
    let elapsed = start.elapsed();
    f.ops += ops;
    f.elapsed += elapsed;
    f.slice_rates.push(ops as f64 / elapsed.as_secs_f64());
    Ok(f)
}

/// One slice of WAL cell `ci`: its writers append for `duration` (or `count` appends split
/// across them), then the WAL is closed, reopened and every acknowledged record checked.
async fn wal_slice(
    run: &mut BackendRun,
    ci: usize,
    cell_id: u32,
    record_size: usize,
    duration: Duration,
    count: Option<u64>,
) -> Result<()> {
    let backend = run.name;
    let wal = run.wal.take().ok_or("the WAL is not open")?;
    let cell = &mut run.cells[ci];
    let writers = cell.writers;
    let before = wal.stats().await?;
    let start = Instant::now();
    let deadline = start + duration;
    let per_writer = count.map(|n| n.div_ceil(writers as u64));
    let mut set = JoinSet::new();
    for w in 0..writers {
        let wal = wal.clone();
        let writer = u32::try_from(w)?;
        set.spawn(async move {
            let mut hist = latency::histogram();
            let mut mine = Vec::new();
            let mut seq = 0u64;
            loop {
                match per_writer {
                    Some(n) if seq >= n => break,
                    None if Instant::now() >= deadline => break,
                    _ => {}
                }
                let id = RecordId {
                    cell: cell_id,
                    writer,
                    seq,
                };
                let data = payload::encode(id, record_size);
                let t0 = Instant::now();
                let lsn = wal.append(data).await?;
                latency::record(&mut hist, t0.elapsed());
                mine.push((lsn, id));
                seq += 1;
            }
            Ok::<_, BoxError>((hist, mine))
        });
    }
    let mut acked = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (h, mut mine) = joined??;
        cell.latency.add(&h)?;
        acked.append(&mut mine);
    }
    let elapsed = start.elapsed();
    let after = wal.stats().await?;
    let appends = acked.len() as u64;
    cell.appends += appends;
    cell.elapsed += elapsed;
    cell.syncs += after.syncs - before.syncs;
    cell.batches += after.batches - before.batches;
    cell.slice_rates
        .push(appends as f64 / elapsed.as_secs_f64());

    // Check answers: close, reopen, compare every acknowledged record so far.
    let t_reopen = Instant::now();
    acked.sort_unstable_by_key(|&(lsn, _)| lsn);
    run.acked.append(&mut acked);
    wal.close().await?;
    drop(wal);
    let (reopened, report, recovered) =
        Wal::open(run.vfs.clone(), &run.wal_dir, WalOptions::default()).await?;
    verify(backend, writers, &run.acked, &recovered, record_size)?;
    if report.records != run.acked.len() as u64 {
        return Err(format!(
            "{backend} x{writers}: recovery reported {} records, {} were acknowledged",
            report.records,
            run.acked.len()
        )
        .into());
    }
    run.wal = Some(reopened);
    cell.reopen += t_reopen.elapsed();
    eprintln!(
        "{backend} x{writers}: {appends} appends in {:.2} s; {} records verified after reopen",
        elapsed.as_secs_f64(),
        run.acked.len()
    );
    Ok(())
}

/// Checks that `recovered` holds exactly the acknowledged records (`acked`, sorted by LSN),
/// each with the payload its writer appended.
fn verify(
    backend: &str,
    writers: usize,
    acked: &[(u64, RecordId)],
    recovered: &[(u64, Bytes)],
    record_size: usize,
) -> Result<()> {
    let mut problems: Vec<String> = Vec::new();
    let mut missing = 0u64;
    let mut mismatched = 0u64;
    let mut extra = 0u64;
    if let Some(w) = acked.windows(2).find(|w| w[0].0 >= w[1].0) {
        problems.push(format!(
            "LSN {} was acknowledged twice or out of order",
            w[1].0
        ));
    }
    if let Some(w) = recovered.windows(2).find(|w| w[0].0 >= w[1].0) {
        problems.push(format!("recovery returned LSN {} after {}", w[1].0, w[0].0));
    }
    let (mut i, mut j) = (0, 0);
    while i < acked.len() || j < recovered.len() {
        match (acked.get(i), recovered.get(j)) {
            (Some(&(lsn, id)), Some((rlsn, data))) if lsn == *rlsn => {
                if data[..] != payload::encode(id, record_size)[..] {
                    mismatched += 1;
                    if mismatched <= 5 {
                        problems.push(format!(
                            "LSN {lsn}: payload differs (expected {id:?}, found {:?}, {} bytes)",
                            payload::decode_id(data),
                            data.len()
                        ));
                    }
                }
                i += 1;
                j += 1;
            }
            (Some(&(lsn, id)), r) if r.is_none_or(|(rlsn, _)| lsn < *rlsn) => {
                missing += 1;
                if missing <= 5 {
                    problems.push(format!(
                        "LSN {lsn} ({id:?}) was acknowledged but is missing"
                    ));
                }
                i += 1;
            }
            (_, Some((rlsn, _))) => {
                extra += 1;
                if extra <= 5 {
                    problems.push(format!("LSN {rlsn} was recovered but never acknowledged"));
                }
                j += 1;
            }
            (_, None) => break,
        }
    }
    if recovered.len() != acked.len() {
        problems.push(format!(
            "recovered {} records, acknowledged {}",
            recovered.len(),
            acked.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{backend} x{writers}: verification failed ({missing} missing, {mismatched} mismatched, {extra} \
             unacknowledged):\n  {}",
            problems.join("\n  ")
        )
        .into())
    }
}
