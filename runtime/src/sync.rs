//! Synchronisation shim for the hand-written concurrent code.
//!
//! Hand-written lock-free code (today: [`crate::gate`]) imports its atomics from
//! `crate::sync` instead of `std::sync`. In this crate the shim is `std::sync`; the
//! `persistx-loom-tests` crate compiles the same source files against its own `sync`
//! module that re-exports `loom::sync`, so the loom models check the real code, not a copy.
//!
//! This crate itself is never built with `--cfg loom` (tokio does not support it); only the
//! loom-tests crate is.

#[cfg(not(loom))]
pub(crate) use std::sync::*;
