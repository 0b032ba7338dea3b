//! loom models of PersistX's hand-written concurrent primitives.
//!
//! This crate compiles the *real* source files of those primitives (by `#[path]`) against a
//! `sync` module that re-exports `loom::sync`, so the models check the shipped code, not a
//! copy. It depends on neither tokio nor any workspace crate, because `--cfg loom` breaks
//! tokio's build.
//!
//! Without `--cfg loom` the crate is empty. Run the models with:
//!
//! ```text
//! cd /work/main
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p persistx-loom-tests --release
//! ```
//!
//! | module | source | model |
//! | --- | --- | --- |
//! | `gate` | `runtime/src/gate.rs` | `tests/gate.rs` |
//! | `commit` | `actors/src/wal/commit.rs` | `tests/commit.rs` |

/// The loom stand-in for `persistx_runtime`'s `crate::sync` shim.
#[cfg(loom)]
pub(crate) mod sync {
    pub(crate) use loom::sync::*;
}

#[cfg(loom)]
#[path = "../../runtime/src/gate.rs"]
pub mod gate;

#[cfg(loom)]
#[path = "../../actors/src/wal/commit.rs"]
pub mod commit;
