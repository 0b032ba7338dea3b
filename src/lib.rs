//! # PersistX
//!
//! An embedded, async-first storage engine for Rust services: typed persistent collections
//! that a tokio program awaits like any other handle. Every collection and the
//! write-ahead-log writer is an actor that owns its state; a group-commit log actor makes
//! writes durable with one `fdatasync` for many writers; readers walk immutable snapshots
//! without locks.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use futures::TryStreamExt;
//! use persistx::{Database, PersistentList, PersistentMap};
//!
//! let dir = std::env::temp_dir().join(format!("persistx-doc-{}", std::process::id()));
//! let db = Database::open(&dir).await?;
//! let users: PersistentMap<u64, String> = db.map("users").await?;
//! users.insert(7, "ada".to_string()).await?; // durable when it returns
//! assert_eq!(users.get(&7).await?, Some("ada".to_string()));
//! let all: Vec<(u64, String)> = users.iter().try_collect().await?;
//! assert_eq!(all.len(), 1);
//!
//! let jobs: PersistentList<Vec<u8>> = db.list("jobs").await?;
//! jobs.push_back(b"blob".to_vec()).await?;
//! assert_eq!(jobs.pop_front().await?, Some(b"blob".to_vec()));
//! db.close().await?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), persistx::Error>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]

pub use persistx_collections::*;
