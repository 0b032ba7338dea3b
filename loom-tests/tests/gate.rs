//! loom models of the admission gate (`runtime/src/gate.rs`).
//!
//! Each model runs two sender threads and a closer (the main model thread), the way an
//! actor's graceful stop runs against concurrent `tell`s:
//!
//! * a sender calls `enter`; if admitted it pushes into the mailbox (or abandons the send,
//!   like a cancelled `tell`), then calls `leave`, waking the closer if told to;
//! * the closer calls `close`, waits until `inside() == 0` (sleeping on a `Condvar` with a
//!   stored permit, like `tokio::sync::Notify`), then drains the mailbox.
//!
//! Checked: every admitted message is drained; nothing is pushed after the drain; rejected
//! senders never push; and the closer's wake-up is never lost (a lost wake-up leaves every
//! thread blocked, which loom reports as a deadlock).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p persistx-loom-tests --release`.
//!
//! **Preemption bound:** every model runs with at most 3 preemptions per execution unless
//! `LOOM_MAX_PREEMPTIONS` says otherwise. With the bound the whole file takes about a
//! second; unbounded, the `Condvar` models take many minutes each. Three preemptions are
//! enough to interleave each sender's enter/push/leave with the close and the drain (the
//! bugs these models exist for need one or two); set `LOOM_MAX_PREEMPTIONS` higher for a
//! deeper, slower search.

#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use persistx_loom_tests::gate::Gate;

/// Runs `f` under loom with the preemption bound described in the module docs.
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A `tokio::sync::Notify` stand-in: one stored permit.
#[derive(Default)]
struct Wake {
    permit: Mutex<bool>,
    signal: Condvar,
}

impl Wake {
    fn notify_one(&self) {
        *self.permit.lock().expect("no poisoning in the model") = true;
        self.signal.notify_one();
    }

    fn wait(&self) {
        let mut permit = self.permit.lock().expect("no poisoning in the model");
        while !*permit {
            permit = self.signal.wait(permit).expect("no poisoning in the model");
        }
        *permit = false;
    }
}

/// What a sender does once admitted.
#[derive(Clone, Copy)]
enum Then {
    /// Push its message.
    Push,
    /// Leave without pushing (a cancelled `tell`, a `try_tell` that found the mailbox full).
    Abandon,
}

struct World {
    gate: Gate,
    wake: Wake,
    mailbox: Mutex<Vec<usize>>,
}

/// One sender: returns whether it was admitted.
fn sender(world: &World, id: usize, send: Then) -> bool {
    match world.gate.enter() {
        Ok(()) => {
            if let Then::Push = send {
                world.mailbox.lock().expect("no poisoning").push(id);
            }
            if world.gate.leave() {
                world.wake.notify_one();
            }
            true
        }
        Err(closed) => {
            if closed.wake_closer {
                world.wake.notify_one();
            }
            false
        }
    }
}

/// Runs two senders against a closer; checks the gate's promises.
fn model(sends: [Then; 2]) {
    check(move || {
        let world = Arc::new(World {
            gate: Gate::new(),
            wake: Wake::default(),
            mailbox: Mutex::new(Vec::new()),
        });
        let senders: Vec<_> = sends
            .iter()
            .enumerate()
            .map(|(id, &send)| {
                let world = Arc::clone(&world);
                thread::spawn(move || sender(&world, id, send))
            })
            .collect();

        // The closer.
        world.gate.close();
        assert!(world.gate.is_closed());
        while world.gate.inside() != 0 {
            world.wake.wait();
        }
        let drained: Vec<usize> = std::mem::take(&mut *world.mailbox.lock().expect("no poisoning"));

        let admitted: Vec<bool> = senders
            .into_iter()
            .map(|handle| handle.join().expect("sender did not panic"))
            .collect();
        for (id, (&was_admitted, &send)) in admitted.iter().zip(sends.iter()).enumerate() {
            let pushed = matches!(send, Then::Push) && was_admitted;
            assert_eq!(
                drained.contains(&id),
                pushed,
                "sender {id}: admitted={was_admitted}, drained={drained:?}"
            );
        }
        assert!(
            world.mailbox.lock().expect("no poisoning").is_empty(),
            "a message was pushed after the closer finished draining"
        );
        assert_eq!(world.gate.inside(), 0);
    });
}

#[test]
fn two_pushing_senders_and_a_closer() {
    model([Then::Push, Then::Push]);
}

#[test]
fn a_pushing_and_an_abandoning_sender_and_a_closer() {
    model([Then::Push, Then::Abandon]);
}

/// The memory orderings on their own: the mailbox is a pair of relaxed flags, so only the
/// gate's Release (`leave`) / Acquire (`inside`) pairing can make a push visible to the
/// closer. A too-weak ordering in `gate.rs` fails this model.
#[test]
fn orderings_make_pushes_visible_to_the_closer() {
    check(|| {
        let gate = Arc::new(Gate::new());
        let slots = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let senders: Vec<_> = (0..2)
            .map(|id| {
                let gate = Arc::clone(&gate);
                let slots = Arc::clone(&slots);
                thread::spawn(move || {
                    if gate.enter().is_err() {
                        return false;
                    }
                    slots[id].store(true, Ordering::Relaxed);
                    // The closer spins here instead of sleeping, so the wake flag is unused.
                    let _wake = gate.leave();
                    true
                })
            })
            .collect();

        gate.close();
        while gate.inside() != 0 {
            thread::yield_now();
        }
        let seen = [
            slots[0].load(Ordering::Relaxed),
            slots[1].load(Ordering::Relaxed),
        ];

        for (id, handle) in senders.into_iter().enumerate() {
            let admitted = handle.join().expect("sender did not panic");
            assert_eq!(seen[id], admitted, "sender {id}: admitted={admitted}");
        }
    });
}

/// Closing twice is harmless and `close` reports who was inside.
#[test]
fn close_is_idempotent_and_counts_the_inside() {
    check(|| {
        let gate = Arc::new(Gate::new());
        let inside_at_close = Arc::new(loom::sync::atomic::AtomicU64::new(u64::MAX));
        let closer = {
            let gate = Arc::clone(&gate);
            let inside_at_close = Arc::clone(&inside_at_close);
            thread::spawn(move || {
                inside_at_close.store(gate.close(), Ordering::Relaxed);
                gate.close();
            })
        };
        let admitted = gate.enter().is_ok();
        closer.join().expect("closer did not panic");
        let counted = inside_at_close.load(Ordering::Relaxed);
        assert!(counted <= 1);
        if admitted {
            assert_eq!(
                counted, 1,
                "an admitted sender that has not left is counted"
            );
            assert!(
                gate.leave(),
                "the last sender leaving a closed gate is told to wake the closer"
            );
        } else {
            assert_eq!(counted, 0, "a rejected sender is never counted at close");
        }
        assert!(gate.is_closed());
        assert_eq!(gate.inside(), 0);
    });
}
