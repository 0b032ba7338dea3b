//! The side-by-side comparison of embedded engines run by the `compare` binary.
//!
//! Map of the module:
//!
//! * [`engine`]: the [`Engine`](engine::Engine) and [`Session`](engine::Session) traits
//!   every compared engine implements.
//! * [`dataset`]: the seeded random pairs and their key order, the expected answers.
//! * [`workload`]: the phases, timed and checked, generic over the engine.
//! * [`report`]: the metrics, their JSON line (child to parent) and the Markdown table.
//! * [`proc_stats`]: peak RSS from `/proc/self/status` and the size of a directory.
//! * one module per engine: [`redb_engine`], [`fjall_engine`], [`sled_engine`],
//!   [`sqlite_engine`]; each says how its durability is configured.
//!
//! To add an engine (PersistX): implement [`engine::Engine`] in a module of its own, add its
//! arm to [`run_engine`] (the `persistx` arm is waiting) and, once it runs, its name to
//! [`DEFAULT_ENGINES`].

pub mod dataset;
pub mod engine;
pub mod fjall_engine;
pub mod persistx_engine;
pub mod proc_stats;
pub mod redb_engine;
pub mod report;
pub mod sled_engine;
pub mod sqlite_engine;
pub mod workload;

use std::path::Path;

use crate::Result;

/// The engine whose numbers are compared with the best peer.
pub const SUBJECT: &str = "persistx";

/// Every engine name the binary accepts.
pub const ENGINE_NAMES: &[&str] = &[SUBJECT, "redb", "fjall", "sled", "sqlite"];

/// The engines run when `--engines` is not given, in table order.
pub const DEFAULT_ENGINES: &[&str] = &[SUBJECT, "redb", "fjall", "sled", "sqlite"];

/// Runs the whole workload on engine `name` in `dir` (an empty directory) and returns what
/// it measured. Errors include every wrong answer.
pub fn run_engine(
    name: &str,
    workload: &workload::Workload,
    dir: &Path,
) -> Result<report::EngineReport> {
    match name {
        "redb" => workload::run::<redb_engine::RedbEngine>(workload, dir),
        "fjall" => workload::run::<fjall_engine::FjallEngine>(workload, dir),
        "sled" => workload::run::<sled_engine::SledEngine>(workload, dir),
        "sqlite" => workload::run::<sqlite_engine::SqliteEngine>(workload, dir),
        SUBJECT => workload::run::<persistx_engine::PersistxEngine>(workload, dir),
        other => Err(format!(
            "unknown engine {other:?}; known engines: {}",
            ENGINE_NAMES.join(", ")
        )
        .into()),
    }
}
