//! Exits: a process that ended — the end of a stop, or a crash, which is restarted after a
//! backoff, or left failed (a crash loop; a master without persistence, which would come
//! back empty) — and the slots of instances a reload removed, once their process is gone.

use std::time::Instant;

use tracing::{error, info};

use super::{Effect, Kind, Machine, State, human, stop};
use crate::backoff;

impl Machine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_exit(
        &mut self,
        name: &str,
        pid: u32,
        how: &str,
        last_output: &[String],
        port_holder: Option<String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        if slot.state.pid() != Some(pid) {
            return; // not the process this state is about (already handled)
        }
        if self.is_sentinel(name) {
            return self.on_sentinel_exit(name, how, now, fx);
        }
        let Some(inst) = self.group.instance(name).cloned() else {
            // Removed by a reload and now stopped.
            self.set_state(name, State::Stopped, fx);
            return;
        };
        if slot.state.stopping() {
            if let State::ShuttingDown {
                aof_wait: Some(wait),
                ..
            } = &slot.state
            {
                let waited = stop::human_secs(now.duration_since(wait.since));
                info!(instance = %name, "stopped once its AOF rewrite was done (waited {waited})");
            }
            info!(instance = %name, status = %how, "stopped");
            let killed = slot.state.kind() == Kind::Killing;
            let nosave = matches!(slot.state, State::ShuttingDown { nosave: true, .. });
            if let Some(slot) = self.slots.get_mut(name) {
                let c = &mut slot.counters;
                match (killed, nosave) {
                    (true, _) => c.stops_killed += 1,
                    (false, true) => c.stops_nosave += 1,
                    (false, false) => c.stops_saved += 1,
                }
            }
            self.set_state(name, State::Stopped, fx);
            return;
        }
        if self.life.shutting_down || !slot.wanted {
            self.set_state(name, State::Stopped, fx);
            return;
        }
        let mut reason = format!("exited unexpectedly ({how})");
        if let Some(tail) = last_output.len().checked_sub(3).map(|s| &last_output[s..]) {
            reason.push_str(&format!("; last output: {}", tail.join(" | ")));
        } else if !last_output.is_empty() {
            reason.push_str(&format!("; last output: {}", last_output.join(" | ")));
        }
        if last_output
            .iter()
            .any(|l| l.contains("Address already in use"))
        {
            let holder = port_holder.unwrap_or_else(|| "another process".into());
            reason = format!("port {} is held by {holder}", inst.address());
        }
        error!(instance = %name, "{reason}");
        let sup = self.group.supervise.clone();
        let persists = self.group.persists(&inst);
        let has_replicas = self.group.replicas_of(name).next().is_some();
        let paused = self.paused(now);
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.last_error = Some(reason.clone());
        slot.clears_when_up = Some(reason.clone());
        let crashes = slot.crashes.record(now, sup.crash_loop_window);
        let next = if inst.is_master() && !persists && has_replicas {
            let why = format!(
                "{reason}; not restarted: this master has no persistence, so it would come back \
                 empty and its replicas would copy the empty data set; recover the data, then \
                 `redisrepd start {name}`"
            );
            error!(instance = %name, "{why}");
            State::Failed { reason: why }
        } else if crashes >= sup.crash_loop_limit as usize {
            let why = format!(
                "crashed {crashes} times within {}: {reason}; left stopped: fix the cause, then \
                 `redisrepd start {name}`",
                human(sup.crash_loop_window)
            );
            error!(instance = %name, "{why}");
            State::Failed { reason: why }
        } else {
            let delay = backoff::restart_delay(crashes, sup.restart_delay, sup.restart_delay_max);
            if paused {
                info!(instance = %name, "the group is paused: not restarted until `redisrepd resume` (or `redisrepd start {name}`)");
            } else {
                info!(instance = %name, delay_ms = delay.as_millis() as u64, "restarting after backoff");
            }
            State::Backoff {
                until: now + delay,
                after_crash: true,
            }
        };
        self.set_state(name, next, fx);
    }

    /// Drops the slots of instances a reload removed, once their process is gone.
    pub(super) fn forget_removed(&mut self, fx: &mut Vec<Effect>) {
        let mut local = self.local_names();
        local.extend(self.local_sentinels());
        let gone: Vec<String> = self
            .slots
            .iter()
            .filter(|(name, slot)| {
                !local.contains(name)
                    && slot.state.pid().is_none()
                    && slot.state.kind() != Kind::Launching
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(slot) = self.slots.remove(&name)
                && slot.state.holds_gate_place()
            {
                fx.push(Effect::Release { name });
            }
        }
    }
}
