//! Metrics handles of one actor, registered once at spawn.
//!
//! Recorded through the [`metrics`] facade, so they cost nothing until the application
//! installs a recorder:
//!
//! | name | kind | labels | meaning |
//! | --- | --- | --- | --- |
//! | `persistx_actor_mailbox_depth` | gauge | `actor` | messages queued, sampled at each batch |
//! | `persistx_actor_batch_seconds` | histogram | `actor` | time spent in one `handle_batch` |
//! | `persistx_actor_messages_total` | counter | `actor` | messages handled (or being handled) |

use metrics::{Counter, Gauge, Histogram};

/// The metrics handles of one actor.
#[derive(Debug)]
pub(crate) struct Telemetry {
    /// `persistx_actor_mailbox_depth{actor}`.
    pub(crate) mailbox_depth: Gauge,
    /// `persistx_actor_batch_seconds{actor}`.
    pub(crate) batch_seconds: Histogram,
    /// `persistx_actor_messages_total{actor}`.
    pub(crate) messages_total: Counter,
}

impl Telemetry {
    /// Registers the handles for the actor called `name`.
    pub(crate) fn register(name: &str) -> Self {
        Self {
            mailbox_depth: metrics::gauge!("persistx_actor_mailbox_depth", "actor" => name.to_owned()),
            batch_seconds: metrics::histogram!("persistx_actor_batch_seconds", "actor" => name.to_owned()),
            messages_total: metrics::counter!("persistx_actor_messages_total", "actor" => name.to_owned()),
        }
    }
}
