//! The lifecycle of an actor as seen through its handles.

use std::fmt;

/// Where an actor is in its lifecycle. Returned by [`crate::ActorRef::status`].
///
/// Transitions only go forward:
/// `Running -> Stopping -> Stopped`, and from `Running` or `Stopping` to `Failed`.
/// `Stopped` and `Failed` are final; an actor is never restarted.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorStatus {
    /// Accepting and handling messages.
    Running,
    /// A shutdown was requested (or every handle was dropped): no new messages are accepted,
    /// the queued ones are still being handled.
    Stopping,
    /// The mailbox was drained, `on_stop` ran and the actor's state was dropped.
    Stopped,
    /// A handler panicked (or the actor's task was dropped). The actor's state and every
    /// queued message were dropped without being handled.
    Failed {
        /// Why the actor failed, usually the panic message.
        reason: String,
    },
}

impl ActorStatus {
    /// `true` for the final states, [`ActorStatus::Stopped`] and [`ActorStatus::Failed`].
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Stopped | Self::Failed { .. })
    }
}

impl fmt::Display for ActorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Stopping => f.write_str("stopping (draining its mailbox)"),
            Self::Stopped => f.write_str("stopped"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}
