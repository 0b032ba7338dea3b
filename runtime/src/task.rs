//! The actor task: the handler loop, graceful stop, and supervision.
//!
//! # Phases
//!
//! 1. **Running.** Wait for a message, a tick or a stop request. On a message, take up to
//!    `max_batch - 1` more that are already queued and call `handle_batch`.
//! 2. **Draining** (after a stop request, or when every handle is gone). The gate is closed,
//!    so no new send starts; keep handling batches until nobody is inside the gate *and* the
//!    mailbox is empty (see [`crate::gate`] for why that order of checks is enough).
//! 3. **Stopping.** Run `on_stop`, drop the state, publish `Stopped`.
//!
//! # Supervision
//!
//! Every call into the actor runs under `catch_unwind`. On a panic the actor is marked
//! `Failed` and its gate closed *before* the panicking future (and the replies it holds) is
//! dropped, so an asker woken by its dropped reply already sees the failure. Then the state
//! is dropped and the mailbox is drained the same way as in phase 2, but every message is
//! dropped unhandled, which drops its reply. Nothing is restarted.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tracing::Instrument as _;

use crate::actor::Actor;
use crate::shared::Shared;
use crate::telemetry::Telemetry;

/// A handler panicked; the actor has been marked failed.
struct Panicked;

/// What the running phase woke up for.
enum Event<M> {
    /// A message arrived.
    Message(M),
    /// The tick interval elapsed.
    Tick,
    /// A stop was requested (or a stale wake-up: the loop re-checks the gate).
    Wake,
    /// Every handle was dropped and the mailbox is empty.
    Disconnected,
}

/// The actor task's own resources. Its drop guard makes a task that is dropped early (the
/// runtime shut down) fail loudly instead of leaving handles waiting forever.
pub(crate) struct Task<M> {
    rx: flume::Receiver<M>,
    shared: Arc<Shared>,
    max_batch: usize,
    telemetry: Telemetry,
}

impl<M> Task<M> {
    /// Bundles what the task needs. `max_batch` must be at least 1.
    pub(crate) fn new(
        rx: flume::Receiver<M>,
        shared: Arc<Shared>,
        max_batch: usize,
        telemetry: Telemetry,
    ) -> Self {
        debug_assert!(max_batch >= 1, "max_batch must be at least 1");
        Self {
            rx,
            shared,
            max_batch,
            telemetry,
        }
    }

    /// Takes `first` plus up to `max_batch - 1` messages that are already queued.
    fn collect_batch(&self, first: M) -> Vec<M> {
        let mut batch = Vec::with_capacity(self.max_batch.min(self.rx.len().saturating_add(1)));
        batch.push(first);
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        batch
    }

    /// The next batch once the gate is closed, or `None` when nobody is inside the gate
    /// and the mailbox is empty, i.e. no message can ever arrive again.
    async fn next_closed_batch(&self) -> Option<Vec<M>> {
        debug_assert!(self.shared.gate.is_closed());
        loop {
            if let Ok(first) = self.rx.try_recv() {
                return Some(self.collect_batch(first));
            }
            // Count first, then emptiness: a sender pushes before it leaves, and the
            // Acquire in `inside` pairs with the Release in `leave`, so seeing the count
            // at zero means seeing every push of the senders that were inside.
            if self.shared.gate.inside() == 0 && self.rx.is_empty() {
                return None;
            }
            // Someone is still inside: wait for their message, or for the last one to
            // leave without sending (a cancelled `tell`, a full `try_tell`).
            tokio::select! {
                biased;
                received = self.rx.recv_async() => match received {
                    Ok(first) => return Some(self.collect_batch(first)),
                    // No handle left, so nobody can be inside, and the mailbox is empty.
                    Err(flume::RecvError::Disconnected) => return None,
                },
                () = self.shared.wake.notified() => {}
            }
        }
    }
}

impl<M> Drop for Task<M> {
    fn drop(&mut self) {
        let finished = self.shared.status.borrow().is_terminal();
        if !finished {
            self.shared.fail(
                "the actor task was dropped before it stopped (was its tokio runtime shut down?)"
                    .to_owned(),
            );
        }
        // Drop what is still queued so that askers get an error rather than wait.
        self.rx.drain().for_each(drop);
        self.telemetry.mailbox_depth.set(0.0);
    }
}

/// Runs `actor` until it stops or fails.
pub(crate) async fn run<A: Actor>(mut actor: A, task: Task<A::Msg>) {
    let mut ticker = actor
        .tick_interval()
        .filter(|period| !period.is_zero())
        .map(new_ticker);

    // Phase 1: running.
    loop {
        if task.shared.gate.is_closed() {
            break;
        }
        let event = tokio::select! {
            biased;
            // Ticks first so that a busy mailbox cannot starve them.
            () = next_tick(&mut ticker) => Event::Tick,
            received = task.rx.recv_async() => match received {
                Ok(msg) => Event::Message(msg),
                Err(flume::RecvError::Disconnected) => Event::Disconnected,
            },
            () = task.shared.wake.notified() => Event::Wake,
        };
        let outcome = match event {
            Event::Message(first) => {
                let batch = task.collect_batch(first);
                handle_batch(&mut actor, batch, &task).await
            }
            Event::Tick => guarded(actor.on_tick(), &task.shared).await,
            Event::Wake => Ok(()),
            Event::Disconnected => {
                // Nobody can send any more; go through the same drain and stop.
                task.shared.request_stop();
                Ok(())
            }
        };
        if let Err(Panicked) = outcome {
            return discard_all(actor, &task).await;
        }
    }

    // Phase 2: draining.
    while let Some(batch) = task.next_closed_batch().await {
        if let Err(Panicked) = handle_batch(&mut actor, batch, &task).await {
            return discard_all(actor, &task).await;
        }
    }
    task.telemetry.mailbox_depth.set(0.0);

    // Phase 3: stopping.
    if let Err(Panicked) = guarded(actor.on_stop(), &task.shared).await {
        return discard_all(actor, &task).await;
    }
    // Drop the state (files, buffers) before `shutdown` callers are told it stopped.
    drop(actor);
    task.shared.finish_stop();
}

/// Handles one batch under supervision, recording metrics and a span.
async fn handle_batch<A: Actor>(
    actor: &mut A,
    batch: Vec<A::Msg>,
    task: &Task<A::Msg>,
) -> Result<(), Panicked> {
    let size = batch.len();
    let telemetry = &task.telemetry;
    telemetry.mailbox_depth.set(task.rx.len() as f64);
    telemetry
        .messages_total
        .increment(u64::try_from(size).unwrap_or(u64::MAX));
    let span = tracing::debug_span!("actor_batch", actor = %task.shared.name, size);
    let started = Instant::now();
    let outcome = guarded(actor.handle_batch(batch).instrument(span), &task.shared).await;
    telemetry
        .batch_seconds
        .record(started.elapsed().as_secs_f64());
    outcome
}

/// Runs one call into the actor, turning a panic into a failed actor.
///
/// On a panic the actor is marked failed *before* the panicking future is dropped, so any
/// `Reply` it still holds is dropped after the status says `Failed`.
async fn guarded<F>(call: F, shared: &Shared) -> Result<(), Panicked>
where
    F: Future<Output = ()> + Unpin,
{
    let mut call = AssertUnwindSafe(call).catch_unwind();
    let outcome = (&mut call).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(payload) => {
            shared.fail(panic_message(payload.as_ref()));
            drop(call);
            Err(Panicked)
        }
    }
}

/// After a failure: drops the state, then every queued message unhandled (which drops
/// their replies), until no sender is inside the closed gate.
async fn discard_all<A: Actor>(actor: A, task: &Task<A::Msg>) {
    debug_assert!(task.shared.gate.is_closed());
    drop(actor);
    while let Some(batch) = task.next_closed_batch().await {
        drop(batch);
    }
    task.telemetry.mailbox_depth.set(0.0);
}

/// The panic message, if the payload is a string (as `panic!` makes it).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        format!("handler panicked: {message}")
    } else if let Some(message) = payload.downcast_ref::<String>() {
        format!("handler panicked: {message}")
    } else {
        "handler panicked with a non-string payload".to_owned()
    }
}

/// A tick timer whose first tick is one period after spawn; late ticks are delayed.
fn new_ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// Waits for the next tick, or forever if the actor has no tick.
async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}
