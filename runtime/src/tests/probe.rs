//! `Probe`, a test actor that records what it handles and can be blocked or made to panic.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::{Actor, ActorConfig, ActorRef, Reply, spawn};

/// Messages understood by [`Probe`].
pub(super) enum Msg {
    /// Append a value to the log.
    Record(u64),
    /// Answer with the log so far.
    Log(Reply<Vec<u64>>),
    /// Answer with the sizes of the batches handled so far.
    Batches(Reply<Vec<usize>>),
    /// Answer with the number of ticks so far.
    Ticks(Reply<u64>),
    /// Signal `started`, then wait for `release` before handling anything else.
    Block {
        started: oneshot::Sender<()>,
        release: oneshot::Receiver<()>,
    },
    /// Panic while holding the reply.
    Panic(Reply<()>),
}

/// Records values, batch sizes and ticks; reports its log from `on_stop`.
#[derive(Default)]
pub(super) struct Probe {
    pub(super) log: Vec<u64>,
    pub(super) batches: Vec<usize>,
    pub(super) ticks: u64,
    /// Receives the log when `on_stop` runs.
    pub(super) on_stop: Option<oneshot::Sender<Vec<u64>>>,
    /// Panic in `on_stop`.
    pub(super) panic_on_stop: bool,
    /// Tick period.
    pub(super) tick: Option<Duration>,
}

#[async_trait::async_trait]
impl Actor for Probe {
    type Msg = Msg;

    async fn handle_batch(&mut self, batch: Vec<Msg>) {
        self.batches.push(batch.len());
        for msg in batch {
            self.handle(msg).await;
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Record(value) => self.log.push(value),
            Msg::Log(reply) => reply.send(self.log.clone()),
            Msg::Batches(reply) => reply.send(self.batches.clone()),
            Msg::Ticks(reply) => reply.send(self.ticks),
            Msg::Block { started, release } => {
                started.send(()).expect("the test waits for `started`");
                // An error means the test dropped `release`: just carry on.
                let _released = release.await;
            }
            Msg::Panic(reply) => {
                let _held = reply;
                panic!("boom");
            }
        }
    }

    async fn on_stop(&mut self) {
        assert!(!self.panic_on_stop, "on_stop exploded");
        if let Some(report) = self.on_stop.take() {
            let _ignored = report.send(self.log.clone());
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.tick
    }

    async fn on_tick(&mut self) {
        self.ticks += 1;
    }
}

/// Spawns a `Probe` with a stop report, returning the handle and the report's receiver.
pub(super) fn spawn_probe(config: ActorConfig) -> (ActorRef<Msg>, oneshot::Receiver<Vec<u64>>) {
    let (report_tx, report_rx) = oneshot::channel();
    let probe = Probe {
        on_stop: Some(report_tx),
        ..Probe::default()
    };
    (spawn(probe, config), report_rx)
}

/// Config with a small mailbox.
pub(super) fn config(name: &str, mailbox_capacity: usize) -> ActorConfig {
    ActorConfig {
        mailbox_capacity,
        ..ActorConfig::new(name)
    }
}

/// Blocks the actor inside a handler; returns once it is blocked, with the release switch.
pub(super) async fn block(actor: &ActorRef<Msg>) -> oneshot::Sender<()> {
    let (started_tx, started_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel();
    actor
        .tell(Msg::Block {
            started: started_tx,
            release: release_rx,
        })
        .await
        .expect("the actor is running");
    bounded(started_rx)
        .await
        .expect("the actor signals `started`");
    release_tx
}

/// Safety bound against hangs; never a timed assertion.
pub(super) async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("safety bound: the future should have completed long ago")
}

/// Yields to the scheduler until `condition` holds (under the [`bounded`] safety bound).
pub(super) async fn yield_until(mut condition: impl FnMut() -> bool) {
    bounded(async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}
