//! Unit tests of the runtime, driven through the public API (plus a peek at the gate).
//!
//! `tokio::time::timeout` appears only as a safety bound (`bounded`), so a bug shows up as a
//! failed test instead of a hung one; no assertion depends on timing.

mod basics;
mod probe;
mod shutdown;
mod supervision;
