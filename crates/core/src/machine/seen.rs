//! What the probes said: each instance's last INFO (and the last good one), the server
//! each runs, what is probed, and when the instances on their way up were last probed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::info::Info;
use crate::server::Server;

/// The machine's memory of its probes.
#[derive(Default)]
pub(super) struct Seen {
    /// The last probe of each instance (and sentinel).
    pub(super) infos: HashMap<String, Probed>,
    /// The server each instance last reported in INFO, with the `process_id` it reported:
    /// kept when a probe fails (a busy machine), since only a new process runs another
    /// server. See [`super::Machine::running_server`].
    pub(super) servers: HashMap<String, (Option<u32>, Server)>,
    /// What the runtime probes every `health_interval`.
    pub(super) targets: Vec<(String, Endpoint)>,
    /// When the last probe round for an instance on its way up was asked for.
    pub(super) last_fast_probe: Option<Instant>,
}

/// The last probe of one instance.
pub(super) struct Probed {
    pub(super) asked_at: Instant,
    pub(super) at: Instant,
    /// Shared, not copied: the health endpoints' view is rebuilt after every event and
    /// holds every instance's INFO, and a copy of each per event cost O(N²) per probe
    /// round (the daemon's main idle cost with dozens of instances).
    pub(super) result: Result<Arc<Info>, String>,
    /// When `result` is an error: the last answer before it, and when it came.
    pub(super) last_ok: Option<(Instant, Arc<Info>)>,
}

impl Seen {
    /// Whether `name` was probed (with any answer) at or after `since`.
    pub(super) fn asked_since(&self, name: &str, since: Instant) -> bool {
        self.infos.get(name).is_some_and(|p| p.asked_at >= since)
    }

    /// The INFO of `name`'s last probe, when it answered.
    pub(super) fn info(&self, name: &str) -> Option<&Info> {
        self.infos.get(name)?.result.as_deref().ok()
    }

    /// When the next fast probe round is due for instances on their way up, every
    /// `period` (now when none was asked yet).
    pub(super) fn next_fast_probe(&self, now: Instant, period: Duration) -> Instant {
        self.last_fast_probe.map_or(now, |t| t + period)
    }
}
