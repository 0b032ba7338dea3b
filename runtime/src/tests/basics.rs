//! Round trips, ordering, batching, backpressure, ticks and auto-trait checks.

use std::time::Duration;

use super::probe::{Msg, Probe, block, bounded, config, spawn_probe};
use crate::{ActorConfig, ActorRef, ActorStatus, Error, Reply, TrySendError, spawn};

#[tokio::test]
async fn ask_and_tell_round_trip() {
    let (actor, _report) = spawn_probe(ActorConfig::new("round-trip"));
    assert_eq!(actor.name(), "round-trip");
    assert_eq!(actor.status(), ActorStatus::Running);
    for value in 1..=3 {
        actor.tell(Msg::Record(value)).await.expect("running");
    }
    actor.try_tell(Msg::Record(4)).expect("mailbox has space");
    let log = bounded(actor.ask(Msg::Log)).await.expect("running");
    assert_eq!(log, vec![1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_sender_is_fifo() {
    const SENDERS: u64 = 4;
    const PER_SENDER: u64 = 500;
    let (actor, _report) = spawn_probe(config("fifo", 8));
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let actor = actor.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..PER_SENDER {
                actor
                    .tell(Msg::Record(sender * 1_000_000 + seq))
                    .await
                    .expect("running");
            }
        }));
    }
    for task in tasks {
        bounded(task).await.expect("sender task did not panic");
    }
    let log = bounded(actor.ask(Msg::Log)).await.expect("running");
    assert_eq!(
        log.len(),
        usize::try_from(SENDERS * PER_SENDER).expect("small")
    );
    for sender in 0..SENDERS {
        let seen: Vec<u64> = log
            .iter()
            .filter(|value| **value / 1_000_000 == sender)
            .map(|value| value % 1_000_000)
            .collect();
        let expected: Vec<u64> = (0..PER_SENDER).collect();
        assert_eq!(seen, expected, "sender {sender} was reordered");
    }
}

#[tokio::test]
async fn queued_messages_are_batched() {
    let (actor, _report) = spawn_probe(config("batching", 64));
    let release = block(&actor).await;
    for value in 0..10 {
        actor
            .try_tell(Msg::Record(value))
            .expect("mailbox has space");
    }
    assert_eq!(actor.mailbox_len(), 10);
    release.send(()).expect("actor waits");
    let batches = bounded(actor.ask(Msg::Batches)).await.expect("running");
    assert_eq!(batches[0], 1, "the Block message came alone");
    assert!(
        batches[1] >= 10,
        "the ten queued records should form one batch: {batches:?}"
    );
}

#[tokio::test]
async fn batches_respect_max_batch() {
    let config = ActorConfig {
        max_batch: 4,
        ..ActorConfig::new("max-batch")
    };
    let (actor, _report) = spawn_probe(config);
    let release = block(&actor).await;
    for value in 0..10 {
        actor
            .try_tell(Msg::Record(value))
            .expect("mailbox has space");
    }
    release.send(()).expect("actor waits");
    let batches = bounded(actor.ask(Msg::Batches)).await.expect("running");
    // The fourth batch holds the last two records, and maybe the `Batches` ask itself.
    assert_eq!(&batches[..3], &[1, 4, 4], "{batches:?}");
    assert!(batches.iter().all(|size| (1..=4).contains(size)));
    let log = bounded(actor.ask(Msg::Log)).await.expect("running");
    assert_eq!(log, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn full_mailbox_pushes_back() {
    let (actor, _report) = spawn_probe(config("backpressure", 4));
    let release = block(&actor).await;
    for value in 0..4 {
        actor
            .try_tell(Msg::Record(value))
            .expect("mailbox has space");
    }
    assert_eq!(actor.mailbox_len(), 4);
    match actor.try_tell(Msg::Record(99)) {
        Err(TrySendError::Full(Msg::Record(99))) => {}
        other => panic!("expected Full(Record(99)), got {other:?}"),
    }

    // `tell` waits instead of dropping.
    let waiting = actor.tell(Msg::Record(4));
    tokio::pin!(waiting);
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    release.send(()).expect("actor waits");
    bounded(waiting).await.expect("space frees up");
    let log = bounded(actor.ask(Msg::Log)).await.expect("running");
    assert_eq!(log, vec![0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn ticks_fire_between_batches() {
    let probe = Probe {
        tick: Some(Duration::from_millis(10)),
        ..Probe::default()
    };
    let actor = spawn(probe, ActorConfig::new("ticker"));
    // Paused clock: the sleep advances virtual time deterministically.
    tokio::time::sleep(Duration::from_millis(35)).await;
    let ticks = actor.ask(Msg::Ticks).await.expect("running");
    assert!(
        ticks >= 3,
        "expected at least 3 ticks in 35 ms, got {ticks}"
    );
    actor.shutdown().await.expect("graceful");
}

#[test]
fn handles_and_futures_are_send() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send_type<T: Send>() {}
    fn assert_send<T: Send>(_: &T) {}
    assert_send_sync::<ActorRef<Msg>>();
    assert_send_sync::<Error>();
    assert_send_type::<Reply<Vec<u64>>>();

    // Futures are built, checked and dropped without being polled.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime builds");
    runtime.block_on(async {
        let (actor, _report) = spawn_probe(ActorConfig::new("send-check"));
        assert_send(&actor.ask(Msg::Log));
        assert_send(&actor.tell(Msg::Record(1)));
        assert_send(&actor.shutdown());
    });
}

#[test]
fn errors_say_what_happened() {
    let stopped = Error::Stopped {
        actor: "log".to_owned(),
    };
    assert!(stopped.is_not_applied());
    assert_eq!(stopped.actor(), "log");
    assert!(stopped.to_string().contains("was not applied"), "{stopped}");
    let unknown = Error::OutcomeUnknown {
        actor: "log".to_owned(),
        reason: "the actor failed: handler panicked: boom".to_owned(),
    };
    assert!(!unknown.is_not_applied());
    assert!(unknown.to_string().contains("may or may not"), "{unknown}");
    let full: TrySendError<u8> = TrySendError::Full(7);
    assert!(full.is_full());
    assert!(full.to_string().contains("full"));
    assert_eq!(full.into_inner(), 7);
}
