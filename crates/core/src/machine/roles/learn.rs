//! Learning the group's roles: the actual master (set here, recorded, kept), what the
//! instances' INFO says of it and of replication history, and the repairs when the group
//! drifts (a replica under another upstream, no master at all).

use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::machine::{Effect, Kind, Machine, MasterChange, human};

use crate::changes::Reason;
use crate::config::Instance;
use crate::plan::{self, Step};
use crate::topology::{self, Seen};

/// How long a group may have no master, every instance answering, before the daemon
/// running the most advanced one makes it master.
const NO_MASTER_REPAIR: Duration = Duration::from_secs(5);

/// How long a local replica may replicate from another instance than the group puts it
/// under, with nothing under way, before it is re-pointed.
const DRIFT_REPAIR: Duration = Duration::from_secs(2);

impl Machine {
    /// Makes `name` the group's actual master in the machine's view: the effective group
    /// follows it, it is saved, and the steps that bring the local instances in line
    /// (re-pointing live) are returned for the caller to run.
    ///
    /// This is the one place a daemon learns a new master, so it is also where the change
    /// is recorded: [`Effect::MasterChanged`] (history and hook) with `why`.
    pub(in crate::machine) fn set_actual(
        &mut self,
        name: &str,
        why: Reason,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Vec<Step> {
        if name == self.roles.actual || self.configured.instance(name).is_none() {
            return Vec::new();
        }
        let old_master = self.roles.actual.clone();
        self.record_change(&old_master, name, why, now, fx);
        self.roles.changed_at = Some(now);
        self.roles.generation += 1;
        info!(master = %name, generation = self.roles.generation, "the group's master is now `{name}` ({})", describe(why));
        let old = std::mem::replace(
            &mut self.group,
            topology::effective(&self.configured, Some(name)),
        );
        self.roles.actual = name.to_owned();
        fx.push(Effect::SaveTopology {
            master: name.to_owned(),
        });
        let mut diff = plan::reload_diff(&old, &self.group, &self.host, &self.server, &self.server);
        // Only what runs with the old config is brought in line; the others render the
        // new one when they start.
        let runs_old = |slots: &std::collections::BTreeMap<String, crate::machine::Slot>,
                        n: &str| {
            slots
                .get(n)
                .is_some_and(|s| s.state.pid().is_some() || s.state.kind() == Kind::Launching)
        };
        diff.live.retain(|(n, _)| runs_old(&self.slots, n));
        diff.changed.retain(|n| runs_old(&self.slots, n));
        let mut steps = Vec::new();
        if !diff.live.is_empty() || !diff.changed.is_empty() {
            // A re-point is live only when its resync is sure to be partial, judged on
            // INFO asked after the change.
            steps.push(Step::AwaitProbes {
                name: name.to_owned(),
            });
        }
        steps.extend(plan::reload(&old, &self.group, &diff));
        steps
    }

    /// Emits the record of a change of master from `old` to `new`: with the new master's
    /// replication id when an INFO asked since the last change shows it master.
    pub(in crate::machine) fn record_change(
        &self,
        old: &str,
        new: &str,
        why: Reason,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let Some(endpoint) = self.endpoint_of(new) else {
            return;
        };
        let repl_id = self
            .seen
            .infos
            .get(new)
            .filter(|p| self.roles.changed_at.is_none_or(|at| p.asked_at >= at))
            .and_then(|p| p.result.as_ref().ok())
            .filter(|info| info.role() == Some("master"))
            .and_then(|info| info.get("master_replid"))
            .map(str::to_owned);
        fx.push(Effect::MasterChanged(MasterChange {
            at: now,
            old: old.to_owned(),
            new: new.to_owned(),
            reason: why,
            repl_id,
            endpoint,
        }));
    }

    /// After a probe: whether the group now says another instance is its master (a
    /// failover or promotion made by another daemon, by hand, or by Sentinel).
    pub(in crate::machine) fn learn_topology(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let busy = self.roles.busy();
        if busy || self.life.shutting_down {
            return;
        }
        // Right after a change, INFO asked before it still shows the old roles: wait
        // until every instance was asked again.
        if let Some(at) = self.roles.changed_at
            && self
                .group
                .instances
                .iter()
                .any(|i| self.seen.infos.get(&i.name).is_none_or(|p| p.asked_at < at))
        {
            return;
        }
        let seen: Vec<Seen> = self
            .group
            .instances
            .iter()
            .map(|i| Seen {
                name: &i.name,
                info: self.fresh_info(&i.name, now),
            })
            .collect();
        let paused = self.paused(now);
        if let Some(nm) = topology::no_master(&self.group, &seen) {
            if paused {
                self.roles.no_master_since = None;
            } else {
                self.repair_no_master(&nm, now, fx);
            }
            return;
        }
        let new = topology::learn(&self.group, &self.roles.actual, &seen);
        self.roles.no_master_since = None;
        let Some(new) = new else {
            if paused {
                self.roles.drift_since = None;
            } else {
                self.repair_drift(now);
            }
            return;
        };
        // Paused, the view follows the group (status, endpoints) but no local instance is
        // re-pointed: the drift repair does that after `resume`.
        let steps = self.set_actual(&new, Reason::Learned, now, fx);
        if !paused {
            self.push_steps(steps);
        }
    }

    /// A local replica that runs settled but replicates from another instance than the
    /// group puts it under — re-points that a daemon killed meanwhile never sent (the new
    /// daemon adopts it as it is), or a `REPLICAOF` by hand — is re-pointed, live when its
    /// resync is sure to be partial (else restarted through the gate), once it has been so
    /// for `DRIFT_REPAIR` with nothing else under way.
    fn repair_drift(&mut self, now: Instant) {
        if !self.ops.is_empty() {
            self.roles.drift_since = None;
            return;
        }
        let drifted: Vec<(String, Instance, String)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.wanted && s.state.kind() == Kind::Running)
            .filter_map(|(name, _)| {
                let inst = self.group.instance(name)?;
                let want = self.group.instance(inst.replica_of.as_deref()?)?;
                let info = self.fresh_info(name, now)?;
                let actual = topology::upstream_of(&self.group, info)?;
                (actual.name != want.name)
                    .then(|| (name.clone(), want.clone(), actual.name.clone()))
            })
            .collect();
        if drifted.is_empty() {
            self.roles.drift_since = None;
            return;
        }
        let since = *self.roles.drift_since.get_or_insert(now);
        if now < since + DRIFT_REPAIR {
            return;
        }
        self.roles.drift_since = None;
        let steps: Vec<Step> = drifted
            .into_iter()
            .map(|(name, want, actual)| {
                warn!(instance = %name, "replicates from `{actual}`, but the group puts it under `{}`: re-pointing it", want.name);
                Step::ApplyLive {
                    name,
                    change: plan::LiveChange {
                        set: Vec::new(),
                        repoint: Some(Some(plan::Upstream {
                            name: want.name.clone(),
                            host: want.bind.to_string(),
                            port: want.port,
                        })),
                    },
                }
            })
            .collect();
        self.push_steps(steps);
    }

    /// Every instance answers and none is master — two replicas of each other after a
    /// stale re-point, say: nobody takes writes, and nothing else would end it. Once it
    /// has lasted `NO_MASTER_REPAIR` (a failover in flight is over long before), the most
    /// advanced instance is made master by the daemon that runs it; the others follow it
    /// as after any promotion. Said in the log (and by `status`) meanwhile.
    fn repair_no_master(&mut self, nm: &topology::NoMaster, now: Instant, fx: &mut Vec<Effect>) {
        let since = *self.roles.no_master_since.get_or_insert_with(|| {
            warn!(
                "{}: `{}` is made master in {} unless the group recovers by itself",
                nm.what,
                nm.choose,
                human(NO_MASTER_REPAIR)
            );
            now
        });
        if now < since + NO_MASTER_REPAIR || !self.slots.contains_key(&nm.choose) {
            return;
        }
        let Some(endpoint) = self.endpoint_of(&nm.choose) else {
            return;
        };
        error!(instance = %nm.choose, "{}: making `{}` master, the most advanced", nm.what, nm.choose);
        self.roles.no_master_since = None;
        self.roles.begin_change(Reason::Repair);
        fx.push(Effect::MakeMaster {
            name: nm.choose.clone(),
            endpoint,
        });
    }

    /// Whether every instance that answers follows the actual topology: lines saying who
    /// follows whom when it does, `None` while not yet.
    pub(in crate::machine) fn topology_settled(&self, started: Instant) -> Option<Vec<String>> {
        let mut lines = Vec::new();
        for inst in self.group.start_order_all() {
            let probed = self.seen.infos.get(&inst.name)?;
            if probed.asked_at < started {
                return None;
            }
            let Ok(info) = &probed.result else {
                lines.push(format!("{}: does not answer", inst.name));
                continue;
            };
            match &inst.replica_of {
                None if info.role() == Some("master") => {}
                None => return None,
                Some(up) => {
                    let follows =
                        topology::upstream_of(&self.group, info).is_some_and(|u| &u.name == up);
                    if !follows || info.master_link_up() != Some(true) || info.sync_in_progress() {
                        return None;
                    }
                    lines.push(format!("{}: replica of {up}", inst.name));
                }
            }
        }
        Some(lines)
    }

    /// Records what an INFO says of replication history: a change of id any instance
    /// shows (the lineage), and a local master's id and offset. What is new is kept in the
    /// topology file, for the judgement of a crashed master's RDB after a daemon restart.
    pub(in crate::machine) fn note_history(&mut self, name: &str, fx: &mut Vec<Effect>) {
        let Some(info) = self.seen.info(name) else {
            return;
        };
        let Some(ids) = crate::history::Ids::of(info) else {
            return;
        };
        let mut changed = self.roles.lineage.learn(&ids);
        if info.role() == Some("master")
            && let Some(slot) = self.slots.get_mut(name)
        {
            slot.last_history = Some((ids.id.clone(), ids.offset));
            if self.roles.last_ids.get(name) != Some(&ids.id) {
                self.roles.last_ids.insert(name.to_owned(), ids.id);
                changed = true;
            }
        }
        if changed {
            fx.push(Effect::SaveHistory);
        }
    }
}

/// Why the master changed, for the log line.
fn describe(why: Reason) -> &'static str {
    match why {
        Reason::Failover => "failover by request",
        Reason::Promote => "promotion by request",
        Reason::CatchUp => "catch-up of a crashed master",
        Reason::Sentinel => "the sentinels say so",
        Reason::Reload => "reload",
        Reason::Repair => "no master: the most advanced made master",
        Reason::Learned => "the group says so",
        Reason::Start => "the daemon started",
    }
}
