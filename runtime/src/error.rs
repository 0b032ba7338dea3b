//! Errors returned by actor handles.
//!
//! The variants separate the two things a caller must know apart:
//!
//! * **Not applied, safe to retry elsewhere**: [`Error::Stopped`] and [`Error::Failed`]. The
//!   message never entered the mailbox.
//! * **Outcome unknown**: [`Error::OutcomeUnknown`]. The message entered the mailbox but no
//!   reply came back; the actor may or may not have applied it.

use std::fmt;

/// An error from sending to, asking, or shutting down an actor.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The actor is shutting down or has stopped, so the message was not delivered and was
    /// not applied. Retrying against the same actor will fail the same way.
    #[error(
        "actor `{actor}` is stopped or shutting down; the message was not delivered and was not applied"
    )]
    Stopped {
        /// The actor's name, from [`crate::ActorConfig::name`].
        actor: String,
    },

    /// The actor had already failed (its handler panicked), so the message was not delivered
    /// and was not applied. Actors are never restarted: every later call fails the same way.
    #[error(
        "actor `{actor}` has failed ({reason}); the message was not delivered and was not applied"
    )]
    Failed {
        /// The actor's name, from [`crate::ActorConfig::name`].
        actor: String,
        /// Why the actor failed, usually the panic message.
        reason: String,
    },

    /// The message was accepted into the mailbox, but no reply came back: the actor failed
    /// while or before handling it, or its handler dropped the reply. The message may or may
    /// not have been applied.
    #[error(
        "actor `{actor}` accepted the message but sent no reply ({reason}); it may or may not have been applied"
    )]
    OutcomeUnknown {
        /// The actor's name, from [`crate::ActorConfig::name`].
        actor: String,
        /// Why no reply came, as far as the handle can tell.
        reason: String,
    },
}

impl Error {
    /// `true` if the message was certainly not applied ([`Error::Stopped`] or
    /// [`Error::Failed`]); `false` if its outcome is unknown.
    pub fn is_not_applied(&self) -> bool {
        matches!(self, Self::Stopped { .. } | Self::Failed { .. })
    }

    /// The name of the actor the error came from.
    pub fn actor(&self) -> &str {
        match self {
            Self::Stopped { actor } | Self::Failed { actor, .. } => actor,
            Self::OutcomeUnknown { actor, .. } => actor,
        }
    }
}

/// An error from [`crate::ActorRef::try_tell`]. Both variants hand the message back, so it
/// was certainly not delivered.
pub enum TrySendError<M> {
    /// The mailbox is at capacity. The actor is alive; try again later or use
    /// [`crate::ActorRef::tell`], which waits for space.
    Full(M),
    /// The actor is stopped, stopping or failed: `Error` is [`Error::Stopped`] or
    /// [`Error::Failed`].
    Closed(Error, M),
}

impl<M> TrySendError<M> {
    /// Takes back the message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            Self::Full(msg) | Self::Closed(_, msg) => msg,
        }
    }

    /// `true` if the mailbox was full (the actor is still alive).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
}

// Hand-written so that `M` need not be `Debug` (messages usually hold a `Reply`).
impl<M> fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(error, _) => f.debug_tuple("Closed").field(error).finish_non_exhaustive(),
        }
    }
}

impl<M> fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str(
                "the actor's mailbox is full; the message was not delivered (retry later, or use `tell` to wait for space)",
            ),
            Self::Closed(error, _) => fmt::Display::fmt(error, f),
        }
    }
}

impl<M> std::error::Error for TrySendError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Full(_) => None,
            Self::Closed(error, _) => Some(error),
        }
    }
}
