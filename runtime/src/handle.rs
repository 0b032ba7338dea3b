//! [`ActorRef`], the cloneable handle to a running actor, and [`Reply`].

use std::fmt;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::error::{Error, TrySendError};
use crate::shared::Shared;
use crate::status::ActorStatus;

/// A cloneable handle to an actor: sends it messages, asks it questions, stops it.
///
/// Every clone feeds the same bounded mailbox. When the last handle is dropped the actor
/// handles what is already queued, runs `on_stop` and ends: dropping handles never loses an
/// accepted message. (A handle stored inside the actor itself keeps it alive; use
/// [`ActorRef::shutdown`] then.)
pub struct ActorRef<M> {
    tx: flume::Sender<M>,
    shared: Arc<Shared>,
}

impl<M> Clone for ActorRef<M> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> fmt::Debug for ActorRef<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("name", &self.shared.name)
            .field("status", &*self.shared.status.borrow())
            .field("mailbox_len", &self.tx.len())
            .finish()
    }
}

impl<M> ActorRef<M> {
    /// Wraps the sender and shared state of a freshly spawned actor.
    pub(crate) fn new(tx: flume::Sender<M>, shared: Arc<Shared>) -> Self {
        Self { tx, shared }
    }

    /// The name given in [`crate::ActorConfig::name`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The actor's current lifecycle state.
    pub fn status(&self) -> ActorStatus {
        self.shared.status.borrow().clone()
    }

    /// The number of messages queued in the mailbox right now (not counting the batch being
    /// handled).
    pub fn mailbox_len(&self) -> usize {
        self.tx.len()
    }

    /// Asks the actor to stop without waiting for it: new sends fail with
    /// [`Error::Stopped`], queued messages are still handled. Idempotent.
    ///
    /// Unlike [`ActorRef::shutdown`] this is safe to call from the actor's own handler.
    pub fn request_stop(&self) {
        self.shared.request_stop();
    }
}

impl<M: Send + 'static> ActorRef<M> {
    /// Puts `msg` in the mailbox, waiting for space if it is full (backpressure; a message
    /// is never dropped for lack of space).
    ///
    /// `Ok` means the message was accepted: it will be handled unless the actor fails
    /// first. It does not mean it has been handled; use [`ActorRef::ask`] for that.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] or [`Error::Failed`] if the actor no longer accepts messages; the
    /// message was not delivered.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes either leaves the message unsent or leaves it
    /// accepted, and the caller cannot tell which. If that matters, use `ask`, or
    /// `try_tell` which never waits.
    pub async fn tell(&self, msg: M) -> Result<(), Error> {
        // The guard leaves the gate when this future completes or is dropped, so a
        // cancelled send never keeps a graceful stop waiting.
        let _admission = self.shared.admit()?;
        self.tx
            .send_async(msg)
            .await
            .map_err(|_disconnected| self.shared.not_delivered())
    }

    /// Puts `msg` in the mailbox if there is space right now, without waiting.
    ///
    /// # Errors
    ///
    /// Hands the message back: [`TrySendError::Full`] if the mailbox is at capacity,
    /// [`TrySendError::Closed`] if the actor no longer accepts messages.
    pub fn try_tell(&self, msg: M) -> Result<(), TrySendError<M>> {
        let _admission = match self.shared.admit() {
            Ok(admission) => admission,
            Err(error) => return Err(TrySendError::Closed(error, msg)),
        };
        self.tx.try_send(msg).map_err(|error| match error {
            flume::TrySendError::Full(msg) => TrySendError::Full(msg),
            flume::TrySendError::Disconnected(msg) => {
                TrySendError::Closed(self.shared.not_delivered(), msg)
            }
        })
    }

    /// Sends the message built by `make` around a fresh [`Reply`] and waits for the answer.
    ///
    /// ```
    /// # use persistx_runtime::{async_trait, spawn, Actor, ActorConfig, Reply};
    /// enum Msg { Get(Reply<u64>) }
    /// struct Answer;
    /// #[async_trait]
    /// impl Actor for Answer {
    ///     type Msg = Msg;
    ///     async fn handle(&mut self, msg: Msg) {
    ///         match msg { Msg::Get(reply) => reply.send(42) }
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), persistx_runtime::Error> {
    /// let actor = spawn(Answer, ActorConfig::new("answer"));
    /// assert_eq!(actor.ask(Msg::Get).await?, 42);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// * [`Error::Stopped`] or [`Error::Failed`]: the message was not delivered.
    /// * [`Error::OutcomeUnknown`]: the message was accepted but the reply was dropped (the
    ///   actor failed, or the handler did not answer); it may or may not have been applied.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for mailbox space means the message was not sent.
    /// Dropping it after the message was accepted does not withdraw it: the actor still
    /// handles it and the reply is discarded. The two cases cannot be told apart from
    /// outside, so treat a dropped `ask` as "outcome unknown".
    pub async fn ask<R: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<R>) -> M,
    ) -> Result<R, Error> {
        let (tx, rx) = oneshot::channel();
        self.tell(make(Reply(tx))).await?;
        rx.await.map_err(|_dropped| self.shared.outcome_unknown())
    }

    /// [`ActorRef::ask`] in two steps: returns as soon as the message is in the mailbox, with
    /// an [`Answer`] to await the reply later. Messages sent this way one after another from
    /// one task reach the actor in that order, even if their answers are awaited elsewhere.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] or [`Error::Failed`]: the message was not delivered.
    ///
    /// # Cancel safety
    ///
    /// As [`ActorRef::tell`]: dropping the future while it waits for space leaves the message
    /// unsent; once it returned the message is accepted.
    pub async fn ask_deferred<R: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<R>) -> M,
    ) -> Result<Answer<R>, Error> {
        let (tx, rx) = oneshot::channel();
        self.tell(make(Reply(tx))).await?;
        Ok(Answer {
            rx,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Stops the actor gracefully and waits until it has stopped: new sends fail with
    /// [`Error::Stopped`], every message already accepted (including those of senders still
    /// waiting for space) is handled, `on_stop` runs, and the state is dropped.
    ///
    /// Idempotent: every call waits for the same stop. Do not await it from the actor's own
    /// handler (it would wait for itself); use [`ActorRef::request_stop`] there.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`] if the actor failed, before or during the stop.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops the waiting, not the stop itself, which goes
    /// on in the background.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let mut status = self.shared.status.subscribe();
        self.shared.request_stop();
        let final_status = status
            .wait_for(ActorStatus::is_terminal)
            .await
            .map(|status| status.clone());
        match final_status {
            Ok(ActorStatus::Failed { reason }) => Err(Error::Failed {
                actor: self.shared.name.clone(),
                reason,
            }),
            // Stopped. (`wait_for` cannot fail: the status sender lives in `self.shared`.)
            _ => Ok(()),
        }
    }

    /// The shared state, for in-crate tests.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// The reply to a message sent with [`ActorRef::ask_deferred`].
#[must_use = "an answer does nothing unless awaited with `get`"]
pub struct Answer<R> {
    rx: oneshot::Receiver<R>,
    shared: Arc<Shared>,
}

impl<R> Answer<R> {
    /// Waits for the reply.
    ///
    /// # Errors
    ///
    /// [`Error::OutcomeUnknown`] if the actor dropped the reply (it failed, or the handler
    /// did not answer).
    ///
    /// # Cancel safety
    ///
    /// Dropping it discards the reply; the message is handled anyway.
    pub async fn get(self) -> Result<R, Error> {
        self.rx
            .await
            .map_err(|_dropped| self.shared.outcome_unknown())
    }
}

impl<R> fmt::Debug for Answer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("actor", &self.shared.name)
            .finish()
    }
}

/// The answering half of an [`ActorRef::ask`]: put it in the message, and have the handler
/// call [`Reply::send`].
///
/// Dropping it without sending makes the asker's `ask` fail with
/// [`Error::OutcomeUnknown`].
pub struct Reply<R>(oneshot::Sender<R>);

impl<R> Reply<R> {
    /// A reply slot not tied to an `ask`: for a message sent with `tell` whose handler
    /// expects one; the receiver may be dropped to ignore the answer.
    pub fn detached() -> (Reply<R>, oneshot::Receiver<R>) {
        let (tx, rx) = oneshot::channel();
        (Reply(tx), rx)
    }

    /// Sends the answer. If the asker has gone (its `ask` future was dropped) the value is
    /// dropped silently; the message was still handled.
    pub fn send(self, value: R) {
        // A gone asker is not an error for the actor: see the method docs.
        let _ignored = self.0.send(value);
    }

    /// `true` if the asker has gone, so computing an answer is wasted work (the message
    /// itself should usually still be applied).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl<R> fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("closed", &self.0.is_closed())
            .finish()
    }
}
