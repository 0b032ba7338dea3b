//! # persistx-actors: the actors of the PersistX engine
//!
//! A map of the crate:
//!
//! * [`wal`]: the write-ahead log. Segment files ([`wal`]'s `segment`), recovery
//!   ([`wal::recovery`]), the group-commit bookkeeping ([`wal::commit`]) and the log actor
//!   behind the [`Wal`] handle.
//! * [`error`]: the crate's [`Error`].
//!
//! Later: the checkpointer, collection and index actors, the transaction coordinator.

#![forbid(unsafe_code)]

pub mod engine;
pub mod error;
pub mod tree;
pub mod wal;

pub use error::{Error, Result};
pub use wal::{Durability, RecoveryReport, Wal, WalOptions, WalStats};
