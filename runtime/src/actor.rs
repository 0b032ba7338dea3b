//! The [`Actor`] trait, its configuration, and [`spawn`].

use std::sync::Arc;
use std::time::Duration;

use crate::handle::ActorRef;
use crate::shared::Shared;
use crate::task::{self, Task};
use crate::telemetry::Telemetry;

/// State owned by one task, changed only by the messages it handles.
///
/// The runtime calls the methods one at a time, never concurrently: a batch is handled to
/// completion before the next batch or tick starts. See `docs/actor-semantics.md` for the
/// full contract (ordering, shutdown, panics, backpressure).
///
/// Implement it with [`macro@crate::async_trait`]:
///
/// ```
/// use persistx_runtime::{async_trait, Actor};
///
/// struct Counter(u64);
///
/// #[async_trait]
/// impl Actor for Counter {
///     type Msg = u64;
///     async fn handle(&mut self, msg: u64) {
///         self.0 += msg;
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Actor: Send + 'static {
    /// The message type. Usually a private enum whose request variants carry a
    /// [`crate::Reply`].
    type Msg: Send + 'static;

    /// Handles a batch drained from the mailbox: `1..=max_batch` messages, in arrival
    /// order.
    ///
    /// Override it to amortise work over a batch (the log actor writes a whole batch and
    /// syncs once). The default calls [`Actor::handle`] for each message in order.
    async fn handle_batch(&mut self, batch: Vec<Self::Msg>) {
        for msg in batch {
            self.handle(msg).await;
        }
    }

    /// Handles one message.
    async fn handle(&mut self, msg: Self::Msg);

    /// Called once after a graceful stop has drained the mailbox, before the state is
    /// dropped. Not called after a panic.
    async fn on_stop(&mut self) {}

    /// The period of [`Actor::on_tick`], read once at spawn. `None` (the default) or a zero
    /// duration means no tick.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Called every [`Actor::tick_interval`] while the actor is running, between batches.
    /// Missed ticks are delayed, not bunched up. There are no ticks while stopping.
    async fn on_tick(&mut self) {}
}

/// How to run an actor. Build it with [`ActorConfig::new`] and adjust the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorConfig {
    /// The actor's name, used in errors, logs, spans and the `actor` metrics label.
    pub name: String,
    /// How many messages the mailbox holds before senders wait. Default 64; `0` is treated
    /// as `1`.
    pub mailbox_capacity: usize,
    /// The largest batch passed to [`Actor::handle_batch`]. Default 256; `0` is treated as
    /// `1`.
    pub max_batch: usize,
}

impl ActorConfig {
    /// Default mailbox capacity, as in kameo: small enough that backpressure reaches a
    /// runaway producer quickly.
    pub const DEFAULT_MAILBOX_CAPACITY: usize = 64;
    /// Default largest batch.
    pub const DEFAULT_MAX_BATCH: usize = 256;

    /// A configuration with the given name and the default capacity and batch size.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            mailbox_capacity: Self::DEFAULT_MAILBOX_CAPACITY,
            max_batch: Self::DEFAULT_MAX_BATCH,
        }
    }
}

impl Default for ActorConfig {
    /// Named `"actor"`, with the default capacity and batch size.
    fn default() -> Self {
        Self::new("actor")
    }
}

/// Starts `actor` on its own tokio task and returns the first handle to it.
///
/// The actor runs until [`ActorRef::shutdown`] is called, every handle is dropped (it then
/// drains its mailbox and runs `on_stop`), or a handler panics.
///
/// # Panics
///
/// Panics if called outside a tokio runtime (it uses [`tokio::spawn`]).
pub fn spawn<A: Actor>(actor: A, config: ActorConfig) -> ActorRef<A::Msg> {
    let ActorConfig {
        name,
        mailbox_capacity,
        max_batch,
    } = config;
    let (tx, rx) = flume::bounded(mailbox_capacity.max(1));
    let shared = Arc::new(Shared::new(name));
    let telemetry = Telemetry::register(&shared.name);
    let task = Task::new(rx, Arc::clone(&shared), max_batch.max(1), telemetry);
    // Detached: the task reports through `Shared::status`, and its drop guard marks the
    // actor failed if the runtime drops the task early.
    drop(tokio::spawn(task::run(actor, task)));
    ActorRef::new(tx, shared)
}
