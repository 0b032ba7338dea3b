//! # PersistX
//!
//! An embedded, async-first storage engine for Rust services. Every collection, index and the
//! write-ahead-log writer is an actor that owns its state; a group-commit log actor makes
//! writes durable with one `fdatasync` for many writers.
//!
//! This release carries the foundation: the write-ahead log with group commit and crash
//! recovery, over io_uring, portable, in-memory and simulated-disk backends.
//!
//! ```
//! # tokio_test_block_on(async {
//! use persistx::{open_backend, Backend, Wal, WalOptions};
//! let dir = std::env::temp_dir().join(format!("persistx-doc-{}", std::process::id()));
//! let vfs = open_backend(Backend::Auto)?;
//! let (wal, _report, _records) = Wal::open(vfs, &dir, WalOptions::default()).await?;
//! let lsn = wal.append(bytes::Bytes::from_static(b"hello")).await?; // durable when it returns
//! assert_eq!(lsn, 1);
//! wal.close().await?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), persistx::Error>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

#![forbid(unsafe_code)]

pub use persistx_collections::*;
