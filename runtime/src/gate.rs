//! The admission gate: which sends may still enter an actor's mailbox.
//!
//! # Why
//!
//! Graceful shutdown must not lose a message that a sender was told it may send, and must
//! not wait forever for senders that arrive later. A bounded channel alone cannot say "no
//! new sends, but let the ones already under way finish": a sender blocked on a full
//! mailbox is invisible to the receiver. The gate makes those senders visible by counting
//! them.
//!
//! # Protocol
//!
//! Every send is bracketed: [`Gate::enter`], then the mailbox push (which may block on
//! backpressure, or be abandoned), then [`Gate::leave`]. The closer calls [`Gate::close`]
//! once, then keeps draining the mailbox until [`Gate::inside`] is `0` *and* the mailbox is
//! empty, checked in that order. Whoever brings the count to zero after the close (a
//! leaving sender, or a rejected one undoing its increment) is told so and must wake the
//! closer, so the closer can sleep instead of spinning.
//!
//! # State word
//!
//! One `AtomicU64`: bit 63 is the closed flag, bits 0..63 count the senders currently
//! inside. Every operation is a single read-modify-write of that word, so all of them sit in
//! one total modification order, and "entered before the close" versus "entered after the
//! close" is decided by that order alone, whatever the memory orderings.
//!
//! # Invariants
//!
//! 1. No send starts after the close: an `enter` ordered after the `close` sees the closed
//!    bit and fails (after undoing its increment), so it never touches the mailbox.
//! 2. Every sender admitted before the close finishes its push before the closer stops
//!    draining: the closer only stops once it has seen the count at zero, which is after
//!    every admitted sender's `leave`.
//! 3. The closer's wake-up is never lost: every read-modify-write that brings the count to
//!    zero while the closed bit is set (a `leave`, or a rejected `enter` undoing its
//!    increment) reports it to its caller, who wakes the closer. Rejected senders can make
//!    the count cross zero more than once; each crossing wakes the closer, which is
//!    harmless because the closer re-checks.
//!
//! # Memory orderings
//!
//! * `leave` is `Release` (written as `AcqRel`): the push into the mailbox happens before
//!   the decrement, so a closer that reads the decremented value with `Acquire` also sees
//!   the pushed message. Later RMWs by other senders continue the release sequence, so the
//!   closer synchronises with every sender that left before the value it read.
//! * `close` is `AcqRel` and `inside`/`is_closed` are `Acquire`, for the same reason from
//!   the closer's side: after observing a count it sees every push of the senders that
//!   already left.
//! * `enter` is `AcqRel`; admission itself only needs the modification order (any ordering
//!   would do), and the failure path is a `leave`.
//!
//! The loom models in `loom-tests/tests/gate.rs` check these claims with relaxed stand-ins
//! for the mailbox, so a too-weak ordering here makes them fail.
//!
//! This file uses only `crate::sync` and `core`, and no tokio: it is compiled as-is by the
//! loom-tests crate.

use crate::sync::atomic::{AtomicU64, Ordering};

/// Bit 63 of the state word: set once the gate is closed, never cleared.
const CLOSED_BIT: u64 = 1 << 63;

/// Bits 0..63 of the state word: the number of senders inside.
const COUNT_MASK: u64 = CLOSED_BIT - 1;

/// An admission gate: a closed flag plus the number of senders currently inside.
///
/// See the module docs for the protocol, invariants and memory orderings.
#[derive(Debug)]
pub struct Gate {
    /// Closed flag (bit 63) and inside count (bits 0..63).
    state: AtomicU64,
}

/// [`Gate::enter`] failed: the gate is closed and the caller must not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// `true` if undoing this caller's increment brought the count to zero, so the caller
    /// must wake the closer exactly as a `true` from [`Gate::leave`] would require.
    pub wake_closer: bool,
}

impl Gate {
    /// Creates an open gate with nobody inside.
    pub fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
        }
    }

    /// Tries to enter: on success the caller is counted inside and must call
    /// [`Gate::leave`] exactly once when its send has finished (or was abandoned).
    ///
    /// On failure the gate was closed; the caller is not inside and must not send. If
    /// [`Closed::wake_closer`] is set it must wake the closer.
    pub fn enter(&self) -> Result<(), Closed> {
        let prev = self.state.fetch_add(1, Ordering::AcqRel);
        assert!(
            prev & COUNT_MASK < COUNT_MASK,
            "gate inside-count overflow: more than 2^63 - 1 concurrent senders"
        );
        if prev & CLOSED_BIT != 0 {
            // Ordered after the close: undo our increment. We may be the one who brings
            // the count back to zero, in which case the closer is waiting on us.
            return Err(Closed {
                wake_closer: self.leave(),
            });
        }
        Ok(())
    }

    /// Leaves the gate after a successful [`Gate::enter`].
    ///
    /// Returns `true` if the gate is closed and this caller was the last one inside, in
    /// which case the caller must wake the closer.
    pub fn leave(&self) -> bool {
        let prev = self.state.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(
            prev & COUNT_MASK != 0,
            "gate leave without a matching enter"
        );
        prev == CLOSED_BIT | 1
    }

    /// Closes the gate; from now on every [`Gate::enter`] fails. Idempotent.
    ///
    /// Returns the number of senders inside at the moment of the close. They will still
    /// complete (or abandon) their sends; the closer must keep draining until
    /// [`Gate::inside`] is `0`.
    pub fn close(&self) -> u64 {
        let prev = self.state.fetch_or(CLOSED_BIT, Ordering::AcqRel);
        prev & COUNT_MASK
    }

    /// The number of senders currently inside (including rejected senders that have not
    /// yet undone their increment).
    pub fn inside(&self) -> u64 {
        self.state.load(Ordering::Acquire) & COUNT_MASK
    }

    /// `true` once [`Gate::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED_BIT != 0
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}
