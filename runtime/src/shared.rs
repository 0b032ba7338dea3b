//! State shared between an actor's handles and its task.

use tokio::sync::{Notify, watch};

use crate::error::Error;
use crate::gate::Gate;
use crate::status::ActorStatus;

/// Everything the handles and the actor task share, behind one `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The actor's name, used in errors, metrics labels and spans.
    pub(crate) name: String,
    /// Admission gate: which sends may still enter the mailbox.
    pub(crate) gate: Gate,
    /// Wakes the actor task: on a stop request, and when the last sender inside a closed
    /// gate leaves. `notify_one` stores a permit, so a wake-up sent while the task is busy
    /// is not lost.
    pub(crate) wake: Notify,
    /// The lifecycle state; `shutdown` waits on it.
    pub(crate) status: watch::Sender<ActorStatus>,
}

impl Shared {
    /// Creates the shared state of a running actor.
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            gate: Gate::new(),
            wake: Notify::new(),
            status: watch::Sender::new(ActorStatus::Running),
        }
    }

    /// Enters the gate for one send. The returned guard leaves it when dropped, including
    /// when the send future is cancelled.
    pub(crate) fn admit(&self) -> Result<Admission<'_>, Error> {
        match self.gate.enter() {
            Ok(()) => Ok(Admission { shared: self }),
            Err(closed) => {
                if closed.wake_closer {
                    self.wake.notify_one();
                }
                Err(self.not_delivered())
            }
        }
    }

    /// The error for a message that could not enter the mailbox: `Failed` if the actor
    /// failed, `Stopped` otherwise.
    pub(crate) fn not_delivered(&self) -> Error {
        match &*self.status.borrow() {
            ActorStatus::Failed { reason } => Error::Failed {
                actor: self.name.clone(),
                reason: reason.clone(),
            },
            _ => Error::Stopped {
                actor: self.name.clone(),
            },
        }
    }

    /// The error for an accepted message whose reply never came.
    pub(crate) fn outcome_unknown(&self) -> Error {
        let reason = match &*self.status.borrow() {
            ActorStatus::Failed { reason } => format!("the actor failed: {reason}"),
            _ => "the handler dropped the reply without answering".to_owned(),
        };
        Error::OutcomeUnknown {
            actor: self.name.clone(),
            reason,
        }
    }

    /// Asks the actor to stop: `Running -> Stopping`, close the gate, wake the task.
    /// Idempotent; does nothing once the actor is stopping, stopped or failed.
    pub(crate) fn request_stop(&self) {
        let changed = self.status.send_if_modified(|status| {
            if *status == ActorStatus::Running {
                *status = ActorStatus::Stopping;
                true
            } else {
                false
            }
        });
        if changed {
            // Status first, then the gate: a sender rejected by the closed gate reads the
            // status to choose its error.
            self.gate.close();
            self.wake.notify_one();
        }
    }

    /// Marks the actor failed (unless it already reached a final state) and closes the
    /// gate. Called by the actor task itself, which is the closer, so nobody is woken.
    pub(crate) fn fail(&self, reason: String) {
        let changed = self.status.send_if_modified(|status| {
            if status.is_terminal() {
                false
            } else {
                *status = ActorStatus::Failed {
                    reason: reason.clone(),
                };
                true
            }
        });
        if changed {
            tracing::error!(
                actor = %self.name,
                %reason,
                "actor failed; it will not be restarted and its queued messages are dropped"
            );
        }
        self.gate.close();
    }

    /// Marks a graceful stop as finished, unless the actor failed meanwhile.
    pub(crate) fn finish_stop(&self) {
        self.status.send_if_modified(|status| {
            if status.is_terminal() {
                false
            } else {
                *status = ActorStatus::Stopped;
                true
            }
        });
    }
}

/// One sender's stay inside the gate; leaves the gate on drop.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    shared: &'a Shared,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.shared.gate.leave() {
            self.shared.wake.notify_one();
        }
    }
}
