//! Panicking handlers: the actor fails, nothing hangs, errors say what happened.

use super::probe::{Msg, Probe, block, bounded, config, spawn_probe, yield_until};
use crate::{ActorConfig, ActorStatus, Error, TrySendError, spawn};

#[tokio::test]
async fn panic_fails_the_actor_and_every_caller_hears_about_it() {
    let (actor, report) = spawn_probe(config("panicky", 16));
    let release = block(&actor).await;

    // Two askers queued behind the block: the one that panics, and an innocent one.
    let panicking = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.ask(Msg::Panic).await })
    };
    let innocent = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.ask(Msg::Log).await })
    };
    yield_until(|| actor.mailbox_len() == 2).await;
    release.send(()).expect("actor waits");

    let panicked = bounded(panicking).await.expect("task did not panic");
    match panicked {
        Err(Error::OutcomeUnknown { actor, reason }) => {
            assert_eq!(actor, "panicky");
            assert!(reason.contains("boom"), "{reason}");
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    let innocent = bounded(innocent).await.expect("task did not panic");
    assert!(
        matches!(innocent, Err(Error::OutcomeUnknown { .. })),
        "{innocent:?}"
    );

    match actor.status() {
        ActorStatus::Failed { reason } => assert!(reason.contains("boom"), "{reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    let later = bounded(actor.ask(Msg::Log)).await;
    assert!(
        matches!(&later, Err(Error::Failed { reason, .. }) if reason.contains("boom")),
        "{later:?}"
    );
    let told = bounded(actor.tell(Msg::Record(1))).await;
    assert!(matches!(told, Err(Error::Failed { .. })), "{told:?}");
    assert!(matches!(
        actor.try_tell(Msg::Record(2)),
        Err(TrySendError::Closed(Error::Failed { .. }, _))
    ));
    let stopped = bounded(actor.shutdown()).await;
    assert!(matches!(stopped, Err(Error::Failed { .. })), "{stopped:?}");
    assert!(
        bounded(report).await.is_err(),
        "on_stop must not run after a panic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_with_blocked_senders_does_not_hang_them() {
    let (actor, _report) = spawn_probe(config("panic-full", 1));
    let release = block(&actor).await;
    let panicking = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.ask(Msg::Panic).await })
    };
    yield_until(|| actor.mailbox_len() == 1).await;
    // Senders waiting for space when the actor dies.
    let mut senders = Vec::new();
    for _ in 0..4 {
        let actor = actor.clone();
        senders.push(tokio::spawn(async move { actor.ask(Msg::Log).await }));
    }
    release.send(()).expect("actor waits");
    let panicked = bounded(panicking).await.expect("task did not panic");
    assert!(
        matches!(panicked, Err(Error::OutcomeUnknown { .. })),
        "{panicked:?}"
    );
    for sender in senders {
        let outcome = bounded(sender).await.expect("task did not panic");
        assert!(
            matches!(
                outcome,
                Err(Error::Failed { .. } | Error::OutcomeUnknown { .. })
            ),
            "{outcome:?}"
        );
    }
    assert!(bounded(actor.shutdown()).await.is_err());
}

#[tokio::test]
async fn panic_in_on_stop_fails_the_shutdown() {
    let probe = Probe {
        panic_on_stop: true,
        ..Probe::default()
    };
    let actor = spawn(probe, ActorConfig::new("bad-stop"));
    actor.tell(Msg::Record(1)).await.expect("running");
    let stopped = bounded(actor.shutdown()).await;
    match stopped {
        Err(Error::Failed { actor, reason }) => {
            assert_eq!(actor, "bad-stop");
            assert!(reason.contains("on_stop exploded"), "{reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn dropped_runtime_marks_the_actor_failed() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime builds");
    let actor = runtime.block_on(async { spawn(Probe::default(), ActorConfig::new("orphan")) });
    drop(runtime);
    assert!(
        matches!(actor.status(), ActorStatus::Failed { .. }),
        "{:?}",
        actor.status()
    );
    match actor.try_tell(Msg::Record(1)) {
        Err(TrySendError::Closed(Error::Failed { reason, .. }, _)) => {
            assert!(reason.contains("runtime"), "{reason}");
        }
        other => panic!("expected Closed(Failed), got {other:?}"),
    }
}
