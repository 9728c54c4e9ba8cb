//! Sentinel mode (`[sentinel]`): this host's sentinel nodes supervised like instances
//! (started at once, restarted with backoff after a crash, adopted after a daemon restart,
//! stopped with SHUTDOWN last), and the group's master taken from what the sentinels say.
//!
//! Sentinel owns the roles: the master the answering sentinels name (their INFO's
//! `master0:...,address=IP:PORT`) is the actual master, and an instance started here
//! replicates from it. With no sentinel answering, the last known master holds. A master
//! that crashed with replicas ahead of its files is not restarted as master while the
//! sentinels still name it: they fail over first (for at most `down_after` +
//! `failover_timeout`), and it rejoins as a replica.

use std::time::Instant;

use tracing::{error, info, warn};

use super::roles::Asked;
use super::{Blocker, Effect, LaunchSpec, Machine, Slot, State};
use crate::backoff;
use crate::config::Secret;
use crate::endpoint::Endpoint;
use crate::info::Info;
use crate::topology;

impl Machine {
    /// Whether `name` is a sentinel node of the group (any host).
    pub(super) fn is_sentinel(&self, name: &str) -> bool {
        self.group.sentinel_node(name).is_some()
    }

    /// This host's sentinel nodes.
    pub(super) fn local_sentinels(&self) -> Vec<String> {
        self.group
            .sentinel_nodes_on(&self.host)
            .map(|n| n.name.clone())
            .collect()
    }

    /// A slot for a sentinel node, wanted and waiting to start.
    pub(super) fn add_sentinel_slot(&mut self, name: &str, now: Instant) {
        let Some(node) = self.group.sentinel_node(name) else {
            return;
        };
        let endpoint = crate::sentinel::endpoint(&self.group, node);
        let slot = Slot::new(endpoint, now);
        self.slots.insert(name.to_owned(), slot);
    }

    /// Starts the waiting sentinels: they wait for nothing.
    pub(super) fn start_sentinels(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        for name in self.local_sentinels() {
            let Some(State::Waiting {
                not_before,
                after_crash,
                ..
            }) = self.slots.get(&name).map(|s| s.state.clone())
            else {
                continue;
            };
            if now < not_before || !self.slots.get(&name).is_some_and(|s| s.wanted) {
                continue;
            }
            let Some(node) = self.group.sentinel_node(&name).cloned() else {
                continue;
            };
            let g = &self.group;
            let spec = LaunchSpec {
                name: name.clone(),
                binary: self.binary.clone(),
                endpoint: crate::sentinel::endpoint(g, &node),
                // Rendered by the runtime, which reads what Sentinel last wrote.
                conf: Secret::new(""),
                conf_path: g.sentinel_conf_path(&node),
                data_path: g.sentinel_dir(&node),
                log_path: g.sentinel_log_path(&node),
                pid_path: g.sentinel_pid_path(&node),
                resume: None,
                sentinel: true,
            };
            let launch = super::Launch {
                at: None,
                aof_to_restore: false,
                sync_full_before: None,
                holds_place: false,
                predicted_partial: false,
            };
            self.set_state(
                &name,
                State::Launching {
                    launch,
                    after_crash,
                },
                fx,
            );
            fx.push(Effect::Launch(spec));
        }
    }

    /// A sentinel's process exited.
    pub(super) fn on_sentinel_exit(
        &mut self,
        name: &str,
        how: &str,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let sup = self.group.supervise.clone();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if slot.state.stopping() || !slot.wanted || self.life.shutting_down {
            info!(instance = %name, status = %how, "sentinel stopped");
            self.set_state(name, State::Stopped, fx);
            return;
        }
        let reason = format!("sentinel exited unexpectedly ({how})");
        error!(instance = %name, "{reason}");
        slot.last_error = Some(reason.clone());
        let crashes = slot.crashes.record(now, sup.crash_loop_window);
        let next = if crashes >= sup.crash_loop_limit as usize {
            State::Failed {
                reason: format!(
                    "crashed {crashes} times: {reason}; fix the cause, then `redisrepd start {name}`"
                ),
            }
        } else {
            State::Backoff {
                until: now
                    + backoff::restart_delay(crashes, sup.restart_delay, sup.restart_delay_max),
                after_crash: true,
            }
        };
        self.set_state(name, next, fx);
    }

    /// A local sentinel that answers INFO from its own pid runs.
    pub(super) fn sentinel_readiness(&mut self, name: &str, now: Instant, fx: &mut Vec<Effect>) {
        let owner = self.fresh_info(name, now).and_then(Info::process_id);
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if let State::Starting { pid, launch, .. } = &slot.state
            && owner == Some(*pid)
        {
            let pid = *pid;
            if launch.at.is_some() {
                slot.failed_starts = 0;
            }
            info!(instance = %name, pid, "sentinel running");
            self.set_state(name, State::Running { pid }, fx);
            self.hold_new_sentinel(name, now, fx);
        }
    }

    /// The master the sentinels name, by instance: the address a majority of all the nodes
    /// give (in their INFO, asked after the last change); `None` when no majority answers
    /// alike.
    pub(super) fn sentinels_master(&self, now: Instant) -> Option<String> {
        let sentinel = self.group.sentinel.as_ref()?;
        let mut votes: Vec<(String, usize)> = Vec::new();
        for node in &sentinel.nodes {
            let Some(probed) = self.seen.infos.get(&node.name) else {
                continue;
            };
            if self.roles.changed_at.is_some_and(|at| probed.asked_at < at) {
                continue;
            }
            let Some(info) = self.fresh_info(&node.name, now) else {
                continue;
            };
            let Some(name) = named_master(&self.group, info) else {
                continue;
            };
            match votes.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => *v += 1,
                None => votes.push((name, 1)),
            }
        }
        // A majority of all the nodes, as Sentinel itself needs to elect a leader: the
        // views of single sentinels right after a failover lag behind, and must not flip
        // the roles back and forth.
        votes
            .into_iter()
            .find(|(_, v)| v * 2 > sentinel.nodes.len())
            .map(|(name, _)| name)
    }

    /// In Sentinel mode, after a probe: follow the master the sentinels name.
    pub(super) fn obey_sentinels(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Some(named) = self.sentinels_master(now) else {
            return;
        };
        if named == self.roles.actual {
            return;
        }
        // Also while the daemon stops: its failover step waits for this. Nothing is
        // re-pointed then; everything here is on its way down.
        let steps = self.set_actual(&named, crate::changes::Reason::Sentinel, now, fx);
        if !self.life.shutting_down && !self.paused(now) {
            self.push_steps(steps);
        }
    }

    /// In Sentinel mode, before an instance starts as master: only when the sentinels (a
    /// majority of all nodes) name it, or none answers (then the last known roles hold);
    /// while they disagree, it waits (for at most `down_after` + `failover_timeout`).
    pub(super) fn sentinel_start_hold(
        &self,
        name: &str,
        since: Instant,
        now: Instant,
    ) -> Option<Blocker> {
        let s = self.group.sentinel.as_ref()?;
        let answering = s
            .nodes
            .iter()
            .filter(|n| self.fresh_info(&n.name, now).is_some())
            .count();
        if answering == 0 {
            warn!(instance = %name, "no sentinel answers: starting it as master, as the last known roles say");
            return None;
        }
        if self.sentinels_master(now).as_deref() == Some(name) {
            return None;
        }
        if now >= since + s.down_after + s.failover_timeout {
            warn!(instance = %name, "the sentinels did not agree on a master within down_after + failover_timeout: starting it as the last known master");
            return None;
        }
        Some(Blocker::SentinelsDisagree)
    }

    /// In Sentinel mode, before a master that crashed with replicas ahead of its files
    /// starts again: wait for the sentinels to fail over (they then name another master,
    /// and it starts as that one's replica), for at most `down_after` +
    /// `failover_timeout` since it went down.
    pub(super) fn await_sentinel_failover(
        &self,
        waiting_since: Instant,
        now: Instant,
    ) -> Option<Blocker> {
        let s = self.group.sentinel.as_ref()?;
        let limit = s.down_after + s.failover_timeout;
        if now >= waiting_since + limit {
            warn!(
                "the sentinels did not fail over within down_after + failover_timeout: starting the master from its own files"
            );
            return None;
        }
        Some(Blocker::SentinelFailover)
    }

    /// Begins `SENTINEL FAILOVER` away from `master`.
    pub(super) fn begin_sentinel_failover(
        &mut self,
        master: &str,
        fx: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let Some(s) = &self.group.sentinel else {
            return Err("no [sentinel] in the file".to_owned());
        };
        if self.roles.actual != master {
            return Ok(()); // moved already
        }
        let sentinels = s
            .nodes
            .iter()
            .map(|n| crate::sentinel::endpoint(&self.group, n))
            .collect();
        let Some(endpoint) = self.endpoint_of(master) else {
            return Err(format!("no instance `{master}`"));
        };
        info!(master = %master, "asking the sentinels to fail over (writes paused meanwhile, SENTINEL FAILOVER)");
        self.roles.sentinel_failover = Asked::UnderWay;
        fx.push(Effect::SentinelFailover {
            master: endpoint,
            sentinels,
            master_name: self.group.cluster.name.clone(),
        });
        Ok(())
    }

    /// The outcome of a `SentinelFailover` step begun at `started`.
    pub(super) fn sentinel_failover_outcome(
        &self,
        master: &str,
        started: Instant,
        now: Instant,
    ) -> Option<Result<Option<String>, String>> {
        if self.roles.actual != master {
            return Some(Ok(Some(format!(
                "{}: master now (SENTINEL FAILOVER away from {master})",
                self.roles.actual
            ))));
        }
        if let Asked::Ended(Err(e)) = &self.roles.sentinel_failover {
            return Some(Err(format!("the sentinels did not fail over: {e}")));
        }
        let limit = self.group.sentinel.as_ref()?.failover_timeout;
        (now >= started + limit).then(|| {
            Err(format!(
                "the sentinels still name `{master}` as master after failover_timeout ({})",
                super::human(limit)
            ))
        })
    }

    /// After a reload: sentinels added to this host start, removed ones stop (after the
    /// instances' steps), running ones restart one at a time when `[tls]` or its files
    /// changed, and the running ones get the changed settings and password live
    /// (`SENTINEL SET`), which keeps everything they learned. Returns the reply's lines
    /// and the steps (stops, restarts).
    pub(super) fn reload_sentinels(
        &mut self,
        old: &crate::config::Group,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> (Vec<String>, Vec<crate::plan::Step>) {
        let mut lines = Vec::new();
        let mut stops = Vec::new();
        let local = self.local_sentinels();
        for name in &local {
            if !self.slots.contains_key(name) {
                self.add_sentinel_slot(name, now);
                lines.push(format!("{name}: sentinel added, starting"));
            }
        }
        let removed: Vec<String> = self
            .slots
            .keys()
            .filter(|n| old.sentinel_node(n).is_some() && !local.contains(n))
            .cloned()
            .collect();
        for name in removed {
            lines.push(format!("{name}: sentinel removed, stopping"));
            stops.push(crate::plan::Step::Stop { name, force: false });
        }
        // Sentinel cannot load certificates again (no CONFIG SET of tls-* in sentinel
        // mode): a rotated or moved certificate means a restart. One at a time, each back
        // up before the next, so this host never takes more than one sentinel from the
        // quorum; what they learned is kept (their file is rendered from it).
        if old.tls != self.group.tls {
            for name in &local {
                let running = self
                    .slots
                    .get(name)
                    .is_some_and(|s| s.state.pid().is_some() && !s.state.stopping());
                if !running || old.sentinel_node(name).is_none() {
                    continue;
                }
                lines.push(format!(
                    "{name}: sentinel restarting: its [tls] files changed"
                ));
                stops.push(crate::plan::Step::Stop {
                    name: name.clone(),
                    force: false,
                });
                stops.push(crate::plan::Step::Start { name: name.clone() });
                stops.push(crate::plan::Step::AwaitReady { name: name.clone() });
            }
        }
        let sets = crate::render::sentinel::live_changes(old, &self.group);
        let password =
            (old.passwords() != self.group.passwords()).then(|| crate::sentinel::SentinelAuth {
                accepted: self.group.passwords().into_iter().cloned().collect(),
                first_changed: old.password() != self.group.password(),
            });
        if sets.is_empty() && password.is_none() {
            return (lines, stops);
        }
        for name in &local {
            let Some(slot) = self.slots.get(name) else {
                continue;
            };
            if slot.state.pid().is_none() || slot.state.stopping() {
                continue; // it renders the new settings when it starts
            }
            let what: Vec<&str> = sets.iter().map(|s| s.option).collect();
            let mut parts = Vec::new();
            if !what.is_empty() {
                parts.push(format!("SENTINEL SET {}", what.join(", ")));
            }
            if password.is_some() {
                parts.push("password changed".to_owned());
            }
            lines.push(format!("{name}: {} live", parts.join(", ")));
            fx.push(Effect::SentinelReconfigure {
                name: name.clone(),
                endpoint: slot.endpoint.clone(),
                sets: sets.clone(),
                password: password.clone(),
            });
        }
        (lines, stops)
    }

    /// The answer to `SentinelReconfigure`.
    pub(super) fn on_sentinel_reconfigured(&mut self, name: &str, result: Result<(), String>) {
        let endpoint = self
            .group
            .sentinel_node(name)
            .map(|n| crate::sentinel::endpoint(&self.group, n));
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        match result {
            Ok(()) => {
                info!(instance = %name, "sentinel reconfigured live");
                if let Some(ep) = endpoint {
                    slot.endpoint = ep; // its new password
                }
            }
            Err(e) => {
                let why = format!(
                    "the reloaded [sentinel] could not be applied live ({e}); restart it to apply it: `redisrepd restart {name}`"
                );
                error!(instance = %name, "{why}");
                slot.last_error = Some(why);
            }
        }
    }

    /// How to reach a sentinel of any host.
    pub(super) fn sentinel_endpoints(&self) -> Vec<(String, Endpoint)> {
        self.group
            .sentinel
            .iter()
            .flat_map(|s| s.nodes.iter())
            .map(|n| (n.name.clone(), crate::sentinel::endpoint(&self.group, n)))
            .collect()
    }
}

/// The instance a sentinel names as master: `sentinel_master_addr` (what the prober adds
/// from `SENTINEL GET-MASTER-ADDR-BY-NAME`), else INFO's `master0:...,address=IP:PORT`.
pub(super) fn named_master(group: &crate::config::Group, info: &Info) -> Option<String> {
    let address = match info.get("sentinel_master_addr") {
        Some(a) => a,
        None => info
            .get("master0")?
            .split(',')
            .find_map(|kv| kv.strip_prefix("address="))?,
    };
    let (host, port) = address.rsplit_once(':')?;
    let inst = topology::instance_at(group, host, port.parse().ok()?)?;
    Some(inst.name.clone())
}
