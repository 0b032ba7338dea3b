//! # persistx-collections: the handles users hold
//!
//! The typed collections (`PersistentMap`, `PersistentSet`, `PersistentList`, queues and
//! streams) arrive with the storage engine. Today this crate re-exports the foundation the
//! collections stand on: the write-ahead log with group commit ([`Wal`]), its durability
//! levels ([`Durability`]) and the I/O backends ([`Backend`]), and the first piece of the
//! typed layer: the order-preserving key encoding ([`key`]) and the value codecs ([`value`]).

#![forbid(unsafe_code)]

pub mod key;
pub mod value;

pub use persistx_actors::{Durability, Error, RecoveryReport, Result, Wal, WalOptions, WalStats};
pub use persistx_io::{Backend, open_backend};

/// The I/O layer: storage trait, backends (including the simulated disk) and formats.
pub mod io {
    pub use persistx_io::*;
}
