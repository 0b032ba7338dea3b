//! Graceful shutdown, dropped handles, and cancelled sends.

use super::probe::{Msg, block, bounded, config, spawn_probe, yield_until};
use crate::{ActorStatus, Error, TrySendError};

#[tokio::test]
async fn shutdown_drains_queued_messages_then_refuses() {
    let (actor, report) = spawn_probe(config("drain", 16));
    let release = block(&actor).await;
    for value in 1..=5 {
        actor
            .try_tell(Msg::Record(value))
            .expect("mailbox has space");
    }
    actor.request_stop();
    assert_eq!(actor.status(), ActorStatus::Stopping);

    // Refused while stopping: not delivered.
    let refused = actor.tell(Msg::Record(100)).await;
    assert!(matches!(refused, Err(Error::Stopped { .. })), "{refused:?}");
    match actor.try_tell(Msg::Record(101)) {
        Err(TrySendError::Closed(Error::Stopped { .. }, Msg::Record(101))) => {}
        other => panic!("expected Closed(Stopped, Record(101)), got {other:?}"),
    }

    release.send(()).expect("actor waits");
    bounded(actor.shutdown()).await.expect("graceful");
    assert_eq!(actor.status(), ActorStatus::Stopped);
    let handled = bounded(report).await.expect("on_stop ran");
    assert_eq!(
        handled,
        vec![1, 2, 3, 4, 5],
        "every queued message before on_stop"
    );

    // Later calls fail as not applied, and shutdown is idempotent.
    let later = actor.ask(Msg::Log).await;
    assert!(matches!(later, Err(Error::Stopped { .. })), "{later:?}");
    bounded(actor.shutdown()).await.expect("idempotent");
}

#[tokio::test]
async fn shutdown_waits_for_senders_blocked_on_a_full_mailbox() {
    let (actor, report) = spawn_probe(config("blocked-sender", 1));
    let release = block(&actor).await;
    actor.try_tell(Msg::Record(1)).expect("mailbox has space");
    let sender = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.tell(Msg::Record(2)).await })
    };
    // The sender is inside the gate, waiting for space.
    yield_until(|| actor.shared().gate.inside() == 1).await;
    actor.request_stop();
    release.send(()).expect("actor waits");
    bounded(actor.shutdown()).await.expect("graceful");
    bounded(sender)
        .await
        .expect("sender did not panic")
        .expect("admitted before the stop, so delivered");
    let handled = bounded(report).await.expect("on_stop ran");
    assert_eq!(handled, vec![1, 2]);
}

#[tokio::test]
async fn dropping_every_handle_drains_and_stops() {
    let (actor, report) = spawn_probe(config("dropped", 16));
    let release = block(&actor).await;
    let clone = actor.clone();
    for value in 1..=5 {
        clone
            .try_tell(Msg::Record(value))
            .expect("mailbox has space");
    }
    drop(actor);
    drop(clone);
    release.send(()).expect("actor waits");
    let handled = bounded(report).await.expect("on_stop ran");
    assert_eq!(handled, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn cancelled_tell_does_not_leak_a_gate_count() {
    let (actor, report) = spawn_probe(config("cancelled", 1));
    let release = block(&actor).await;
    actor.try_tell(Msg::Record(1)).expect("mailbox has space");

    let cancelled = Box::pin(actor.tell(Msg::Record(2)));
    let mut cancelled = Some(cancelled);
    if let Some(pending) = cancelled.as_mut() {
        assert!(futures::poll!(pending.as_mut()).is_pending());
    }
    assert_eq!(actor.shared().gate.inside(), 1);
    drop(cancelled.take());
    assert_eq!(
        actor.shared().gate.inside(),
        0,
        "the dropped tell left the gate"
    );

    release.send(()).expect("actor waits");
    bounded(actor.shutdown()).await.expect("graceful");
    let handled = bounded(report).await.expect("on_stop ran");
    assert_eq!(handled, vec![1], "the cancelled message was never accepted");
}

#[tokio::test]
async fn last_sender_leaving_a_closed_gate_wakes_the_actor() {
    // The actor ends up draining with an empty mailbox while a sender is still inside the
    // gate; only that sender's leave can wake it.
    let (actor, report) = spawn_probe(config("last-leave", 1));
    let release = block(&actor).await;
    actor.try_tell(Msg::Record(1)).expect("mailbox has space");
    let mut stuck = Box::pin(actor.tell(Msg::Record(2)));
    assert!(futures::poll!(stuck.as_mut()).is_pending());

    actor.request_stop();
    release.send(()).expect("actor waits");
    // Let the actor drain; taking Record(1) moves Record(2) from the waiting sender into
    // the mailbox, so it is accepted even though `stuck` is never polled again.
    yield_until(|| actor.mailbox_len() == 0).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(actor.shared().gate.inside(), 1);
    drop(stuck);

    bounded(actor.shutdown()).await.expect("graceful");
    let handled = bounded(report).await.expect("on_stop ran");
    assert_eq!(handled, vec![1, 2]);
}
