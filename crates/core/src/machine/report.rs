//! What the machine tells the outside about its instances: `status` records and systemd's
//! READY/STATUS lines.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Blocker, Counters, Effect, Gate, Kind, Machine, Notify, State};
use crate::server::Server;
use crate::status::InstanceStatus;

/// One local instance as metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceReport {
    pub name: String,
    /// Running and, for a replica, in sync.
    pub up: bool,
    /// Restarts after crashes.
    pub restarts: u32,
    pub counters: Counters,
    /// For a replica waiting in its upstream's sync gate: that upstream.
    pub waiting_in_gate_of: Option<String>,
    /// The server it runs, as its last INFO said.
    pub server: Option<Server>,
}

impl Machine {
    /// What only the supervisor knows about each local instance, for metrics.
    pub fn report(&self) -> Vec<InstanceReport> {
        self.slots
            .iter()
            .filter(|(name, _)| !self.is_sentinel(name))
            .map(|(name, slot)| {
                let upstream = self.group.instance(name).and_then(|i| i.replica_of.clone());
                let in_gate = match &slot.state {
                    State::Waiting { gate, reason, .. } => {
                        *gate == Gate::Asking || reason.in_gate()
                    }
                    _ => false,
                };
                InstanceReport {
                    name: name.clone(),
                    up: slot.state.kind() == Kind::Running,
                    restarts: slot.restarts,
                    counters: slot.counters.clone(),
                    waiting_in_gate_of: upstream.filter(|_| in_gate),
                    server: self.running_server(name),
                }
            })
            .collect()
    }

    /// Every local instance as `status` shows it.
    pub fn status(&self, now: Instant) -> Vec<InstanceStatus> {
        let mut out = Vec::new();
        for inst in self.group.start_order(&self.host) {
            let Some(slot) = self.slots.get(&inst.name) else {
                continue;
            };
            // Configured role and upstream from the file; what it runs as from INFO.
            let mut s =
                InstanceStatus::from_config(self.configured.instance(&inst.name).unwrap_or(inst));
            s.state = slot.state.kind().label();
            s.pid = slot.state.pid();
            s.restarts = slot.restarts;
            s.last_sync = slot.last_sync.clone();
            s.sync_timeouts = slot.sync_timeouts;
            s.sync_mispredictions = slot.counters.mispredicted_syncs;
            // What holds a waiting instance back (its upstream, the gate) is news; a step
            // on its way (asking for a place, reading its RDB) is not, and must not hide
            // why its last attempt failed (a port still taken).
            s.last_error = match &slot.state {
                State::Failed { reason } => Some(reason.clone()),
                State::Waiting { reason, .. } if reason.is_news() => Some(reason.to_string()),
                State::Waiting { reason, .. } if *reason != Blocker::Starting => {
                    slot.last_error.clone().or_else(|| Some(reason.to_string()))
                }
                _ => slot.last_error.clone(),
            };
            if slot.state.pid().is_some()
                && let Some(info) = self.fresh_info(&inst.name, now)
            {
                let upstream = inst
                    .replica_of
                    .as_ref()
                    .and_then(|u| self.fresh_info(u, now));
                s.apply_info(info, upstream);
                s.upstream = crate::status::upstream_name(&self.group, info);
                if let (Some(backlog), Some(rate)) =
                    (info.backlog_size(), write_rate(&slot.offsets))
                {
                    s.warnings.extend(crate::status::backlog_warning(
                        &self.group,
                        inst,
                        Some((backlog, rate)),
                    ));
                }
            }
            // A probe that did not answer (a busy machine) does not hide what it runs.
            if s.server.is_none() {
                s.server = self.running_server(&inst.name).map(|v| v.to_string());
            }
            if matches!(slot.state.kind(), Kind::Running | Kind::Syncing)
                && let Some(Err(e)) = self.seen.infos.get(&inst.name).map(|p| &p.result)
            {
                s.note_unanswered(e);
            }
            out.push(s);
        }
        out
    }

    /// STATUS= when the line changes; READY=1 once start-up is over.
    pub(super) fn notify_systemd(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let local = self.group.start_order(&self.host);
        let mut online = 0;
        let mut notes = Vec::new();
        let mut masters_up = true;
        let mut replicas_started = true;
        for inst in &local {
            let Some(slot) = self.slots.get(&inst.name) else {
                continue;
            };
            match slot.state.kind() {
                Kind::Running => online += 1,
                other => notes.push(format!("{} {}", inst.name, other.label().as_str())),
            }
            // Start-up is over once each master answers (or was given up on) and each
            // replica was started, except one that waits for an upstream on another host
            // that is down: that may take any time and must not hold systemd's start job.
            if inst.is_master() && !matches!(slot.state.kind(), Kind::Running | Kind::Failed) {
                masters_up = false;
            }
            let waits_for_remote = inst.replica_of.as_ref().is_some_and(|up| {
                !self.slots.contains_key(up) && self.fresh_info(up, now).is_none()
            });
            if !inst.is_master() && slot.state.kind() == Kind::Waiting && !waits_for_remote {
                replicas_started = false;
            }
        }
        let mut line = format!("{online}/{} online", local.len());
        if !notes.is_empty() {
            line.push_str("; ");
            line.push_str(&notes.join(", "));
        }
        if self.life.status_line_changed(&line) {
            fx.push(Effect::Notify(Notify::Status(line)));
        }
        if !self.life.ready_sent && masters_up && replicas_started && !self.life.shutting_down {
            fx.push(Effect::Notify(Notify::Ready));
            self.life.ready_sent = true;
            // The hook runs once now (no history entry): what it keeps in place with the
            // master (a virtual IP) is put there after a reboot too.
            let master = self.roles.actual.clone();
            self.record_change(&master, &master, crate::changes::Reason::Start, now, fx);
        }
    }
}

/// Bytes per second written to the replication stream over the samples, once they span at
/// least a few seconds.
fn write_rate(samples: &VecDeque<(Instant, i64)>) -> Option<f64> {
    let (t0, o0) = samples.front()?;
    let (t1, o1) = samples.back()?;
    let dt = t1.duration_since(*t0).as_secs_f64();
    (dt >= 5.0 && o1 >= o0).then(|| (o1 - o0) as f64 / dt)
}
