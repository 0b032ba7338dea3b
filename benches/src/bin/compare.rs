//! Side-by-side comparison of PersistX with peer embedded engines (redb, fjall, sled,
//! SQLite) on one checked workload.
//!
//! The parent runs each engine in a child process of its own (this binary again, with
//! `--engine NAME --dir D`), so the peak RSS of one engine is not mixed with another's. A
//! child runs the whole workload, checks every answer, and prints one JSON line of results on
//! stdout; the parent collects the lines and prints a Markdown table.
//!
//! Run with `cargo run --release -p persistx-benches --bin compare -- --help`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Parser;
use persistx_benches::Result;
use persistx_benches::compare::persistx_engine;
use persistx_benches::compare::report::{self, EngineReport};
use persistx_benches::compare::workload::Workload;
use persistx_benches::compare::{DEFAULT_ENGINES, ENGINE_NAMES, SUBJECT, run_engine};

/// Runs one checked workload on several embedded engines, each in its own process, and
/// prints a Markdown table of the results.
#[derive(Debug, Parser)]
#[command(name = "compare")]
struct Args {
    /// Engines to run, comma separated, in table order (known: persistx, redb, fjall, sled,
    /// sqlite; default: all wired engines).
    #[arg(long, value_delimiter = ',')]
    engines: Option<Vec<String>>,
    /// Parent: directory in which a fresh temporary directory is made for all engines
    /// (default: `./target` if it exists, else `.`; it must be on the disk you want to
    /// measure, not a tmpfs). Child: the engine's own, empty directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the engines' directories (their path is printed).
    #[arg(long)]
    keep: bool,
    /// A fast sanity run: 100,000 items and fewer reads and durable commits (any size flag
    /// given explicitly still wins).
    #[arg(long)]
    quick: bool,
    /// Seed of the data and of every random choice.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Pairs of the bulk load [default: 1,000,000; quick: 100,000].
    #[arg(long)]
    items: Option<usize>,
    /// Bytes per key.
    #[arg(long, default_value_t = 24)]
    key_len: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 150)]
    value_len: usize,
    /// Durable single-insert transactions of phase 2 [default: 1,000; quick: 200].
    #[arg(long)]
    single_commits: Option<usize>,
    /// Durable batch transactions of phase 3 [default: 100; quick: 20].
    #[arg(long)]
    batch_txns: Option<usize>,
    /// Inserts per batch transaction of phase 3.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Concurrent writer threads of phase 4.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Durable single-insert transactions per writer in phase 4 [default: 200; quick: 50].
    #[arg(long)]
    writer_commits: Option<usize>,
    /// Random point reads of phase 5, for each thread count [default: 1,000,000; quick:
    /// 100,000].
    #[arg(long)]
    reads: Option<usize>,
    /// Thread counts of phase 5, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 2, 4])]
    read_threads: Vec<usize>,
    /// Range reads of phase 6 [default: 200,000; quick: 20,000].
    #[arg(long)]
    ranges: Option<usize>,
    /// Entries per range read.
    #[arg(long, default_value_t = 10)]
    range_len: usize,
    /// Loaded keys removed in phase 7 [default: half of --items].
    #[arg(long)]
    removes: Option<usize>,
    /// Removed and kept keys checked after phase 7, each.
    #[arg(long, default_value_t = 1000)]
    remove_checks: usize,
    /// Memory budget of the PersistX database in MiB [default: PersistX's own, 64 MiB]. A
    /// larger one lets PersistX keep more of the tree in its buffer pool, as redb's default
    /// 1 GiB cache does: for comparing at equal memory. The table's title says when it is set.
    #[arg(long)]
    persistx_cache_mib: Option<usize>,
    /// Child mode (used by the parent): run only this engine in --dir and print one JSON
    /// line.
    #[arg(long)]
    engine: Option<String>,
}

impl Args {
    fn workload(&self) -> Workload {
        let q = self.quick;
        let pick = |given: Option<usize>, full: usize, quick: usize| {
            given.unwrap_or(if q { quick } else { full })
        };
        let items = pick(self.items, 1_000_000, 100_000);
        Workload {
            seed: self.seed,
            items,
            key_len: self.key_len,
            value_len: self.value_len,
            single_commits: pick(self.single_commits, 1000, 200),
            batch_txns: pick(self.batch_txns, 100, 20),
            batch_size: self.batch_size,
            writers: self.writers,
            writer_commits: pick(self.writer_commits, 200, 50),
            reads: pick(self.reads, 1_000_000, 100_000),
            read_threads: self.read_threads.clone(),
            ranges: pick(self.ranges, 200_000, 20_000),
            range_len: self.range_len,
            removes: self.removes.unwrap_or(items / 2),
            remove_checks: self.remove_checks,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match &args.engine {
        Some(engine) => child(&args, engine),
        None => parent(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &args.engine {
                Some(engine) => eprintln!("compare --engine {engine}: FAILED: {e}"),
                None => eprintln!("compare: FAILED: {e}"),
            }
            ExitCode::from(2)
        }
    }
}

/// Child: one engine, one JSON line on stdout.
fn child(args: &Args, engine: &str) -> Result<()> {
    let dir = args
        .dir
        .as_ref()
        .ok_or("--engine needs --dir (the engine's own, empty directory)")?;
    std::fs::create_dir_all(dir)?;
    if std::fs::read_dir(dir)?.next().is_some() {
        return Err(format!("--dir {} is not empty", dir.display()).into());
    }
    let report = run_engine(engine, &args.workload(), dir)?;
    println!("{}", report.to_json_line());
    Ok(())
}

/// Parent: every engine in a child process, then the table.
fn parent(args: &Args) -> Result<()> {
    let workload = args.workload();
    workload.validate()?;
    let engines: Vec<String> = match &args.engines {
        Some(list) => list.clone(),
        None => DEFAULT_ENGINES.iter().map(ToString::to_string).collect(),
    };
    for e in &engines {
        if !ENGINE_NAMES.contains(&e.as_str()) {
            return Err(format!(
                "unknown engine {e:?} in --engines; known engines: {}",
                ENGINE_NAMES.join(", ")
            )
            .into());
        }
    }
    let base = match &args.dir {
        Some(d) => d.clone(),
        None if Path::new("target").is_dir() => PathBuf::from("target"),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new()
        .prefix("compare-")
        .tempdir_in(&base)?;
    let root = std::fs::canonicalize(tmp.path())?;
    let exe = std::env::current_exe()?;
    eprintln!(
        "compare: {} pairs in all ({} loaded), engines {}, files in {}",
        workload.total_pairs(),
        workload.items,
        engines.join(", "),
        root.display()
    );

    let mut reports = Vec::new();
    let started = Instant::now();
    for engine in &engines {
        let dir = root.join(engine);
        let t = Instant::now();
        let mut command = Command::new(&exe);
        if let Some(mib) = args.persistx_cache_mib {
            command.env(persistx_engine::CACHE_ENV, mib.to_string());
        }
        let output = command
            .arg("--engine")
            .arg(engine)
            .arg("--dir")
            .arg(&dir)
            .args(workload.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("starting {} for {engine}: {e}", exe.display()))?;
        if !output.status.success() {
            return Err(format!(
                "engine {engine} failed ({}); its message is above. The run is aborted.",
                output.status
            )
            .into());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or_else(|| format!("engine {engine} printed no result line; stdout: {stdout:?}"))?;
        let report = EngineReport::from_json_line(line)?;
        if report.engine != *engine {
            return Err(format!(
                "asked for engine {engine}, the child reported {}",
                report.engine
            )
            .into());
        }
        eprintln!(
            "compare: {engine} done in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        if !args.keep {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("removing {}: {e}", dir.display()))?;
        }
        reports.push(report);
    }

    print_report(
        &workload,
        &engines,
        &reports,
        started.elapsed().as_secs_f64(),
        args.persistx_cache_mib,
    );
    if args.keep {
        let kept = tmp.keep();
        eprintln!("compare: kept {}", kept.display());
    }
    Ok(())
}

fn print_report(
    workload: &Workload,
    engines: &[String],
    reports: &[EngineReport],
    secs: f64,
    persistx_cache_mib: Option<usize>,
) {
    println!("## compare: {}\n", engines.join(", "));
    println!(
        "{} pairs bulk-loaded ({}-byte keys, {}-byte values), seed {:#x}; {} engines in {:.0} s.\n",
        workload.items,
        workload.key_len,
        workload.value_len,
        workload.seed,
        reports.len(),
        secs
    );
    if let Some(mib) = persistx_cache_mib.filter(|_| engines.iter().any(|e| e == SUBJECT)) {
        println!("PersistX's memory budget: {mib} MiB (not its default of 64 MiB).\n");
    }
    print!("{}", report::markdown(workload, reports));
    println!();
    if !engines.iter().any(|e| e == SUBJECT) {
        println!("PersistX / best peer: n/a until the persistx engine is wired and run.");
    }
    println!(
        "Ratio: PersistX divided by the best peer; for throughput above 1 is better, for \
         time, file size and RSS below 1 is better. Peak RSS is the child's VmHWM and includes \
         the harness's data (the row below it)."
    );
}
