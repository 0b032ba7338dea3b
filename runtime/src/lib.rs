//! PersistX's actor runtime: bounded mailboxes, `tell`/`ask`, batching, supervision and
//! graceful shutdown, on tokio.
//!
//! Each piece of mutable engine state (the log, a tree) is owned by one actor. Users never
//! see it: they hold typed handles, as in mini-redis's buffered client, and the handles talk
//! to the actor through an [`ActorRef`].
//!
//! # Map of the crate
//!
//! | module | what it holds |
//! | --- | --- |
//! | `actor` | the [`Actor`] trait, [`ActorConfig`] and [`spawn`] |
//! | `handle` | [`ActorRef`] (`tell`, `try_tell`, `ask`, `shutdown`) and [`Reply`] |
//! | `task` | the actor task: handler loop, batching, draining stop, panic supervision |
//! | `gate` | the lock-free admission gate that makes graceful stop lose nothing (loom-checked) |
//! | `shared` | state shared by the handles and the task: gate, wake-up, status |
//! | `status` | [`ActorStatus`], the lifecycle as seen by handles |
//! | `error` | [`Error`] (not applied vs outcome unknown) and [`TrySendError`] |
//! | `telemetry` | metrics handles, registered once per actor |
//! | `sync` | the `std::sync` / `loom::sync` shim for hand-written concurrent code |
//!
//! The semantics (ordering, one message at a time, shutdown, panics, backpressure, cancel
//! safety) are written down in `docs/actor-semantics.md`.
//!
//! # Example
//!
//! ```
//! use persistx_runtime::{async_trait, spawn, Actor, ActorConfig, Reply};
//!
//! enum Msg {
//!     Add(u64),
//!     Total(Reply<u64>),
//! }
//!
//! struct Sum(u64);
//!
//! #[async_trait]
//! impl Actor for Sum {
//!     type Msg = Msg;
//!     async fn handle(&mut self, msg: Msg) {
//!         match msg {
//!             Msg::Add(n) => self.0 += n,
//!             Msg::Total(reply) => reply.send(self.0),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), persistx_runtime::Error> {
//! let sum = spawn(Sum(0), ActorConfig::new("sum"));
//! sum.tell(Msg::Add(2)).await?;
//! sum.tell(Msg::Add(3)).await?;
//! assert_eq!(sum.ask(Msg::Total).await?, 5);
//! sum.shutdown().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod actor;
mod error;
mod gate;
mod handle;
mod shared;
mod status;
mod sync;
mod task;
mod telemetry;

#[cfg(test)]
mod tests;

pub use actor::{Actor, ActorConfig, spawn};
/// Re-export of [`async_trait::async_trait`], needed to implement [`Actor`].
pub use async_trait::async_trait;
pub use error::{Error, TrySendError};
pub use handle::{ActorRef, Answer, Reply};
pub use status::ActorStatus;
