//! # persistx-collections: the handles users hold
//!
//! * [`Database`]: open a directory ([`Database::open`]), a memory image
//!   ([`Database::in_memory`]) or configure one ([`Database::builder`]).
//! * [`PersistentMap`], [`PersistentSet`], [`PersistentList`]: typed, durable collections.
//!   Keys use the order-preserving encoding of [`key`]; values the codecs of [`value`].
//! * [`Error`]: the one error type of this crate.
//!
//! The write-ahead log ([`Wal`]) and the I/O backends ([`Backend`]) are re-exported for
//! tools that use them directly.

#![forbid(unsafe_code)]

mod batch;
mod db;
mod error;
pub mod key;
mod list;
mod map;
mod scan;
mod set;
pub mod value;

pub use db::{Database, DatabaseBuilder, DatabaseSnapshot};
pub use error::{Error, Result};
pub use key::{Key, KeyRef};
pub use list::{ListSnapshot, PersistentList};
pub use map::{MapSnapshot, PersistentMap};
pub use set::{PersistentSet, SetSnapshot};
pub use value::Codec;

/// The engine's error (inside [`Error::Engine`]): I/O, corruption, lock, limits...
pub use persistx_actors::Error as EngineError;
pub use persistx_actors::engine::{EngineStats, VerifyReport};
pub use persistx_actors::{Durability, RecoveryReport, Wal, WalOptions, WalStats};
pub use persistx_io::{Backend, open_backend};

/// The engine underneath the typed collections: byte-level collections, snapshots, stats.
pub mod engine {
    pub use persistx_actors::engine::*;
}

/// The I/O layer: storage trait, backends (including the simulated disk) and formats.
pub mod io {
    pub use persistx_io::*;
}
