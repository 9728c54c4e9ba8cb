//! Probes: what INFO says about an instance, and when it makes a starting instance
//! running or a syncing replica in sync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::seen::Probed;
use super::{Effect, Machine, Probe, RATE_WINDOW, State};
use crate::config::Instance;
use crate::endpoint::Endpoint;
use crate::info::{Info, SyncKind};

impl Machine {
    /// Takes in one probe, and what it says of that instance alone. Returns the name of
    /// an instance (not a sentinel) whose probe [`Machine::after_probes`] must still
    /// weigh with the rest of the group.
    pub(super) fn on_probe(
        &mut self,
        probe: Probe,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Option<String> {
        let Probe {
            name,
            asked_at,
            result,
            logged_sync,
        } = probe;
        let name = name.as_str();
        if let (Ok(info), Some(slot)) = (&result, self.slots.get_mut(name))
            && let Some(offset) = info.repl_offset()
        {
            slot.offsets.push_back((now, offset));
            while slot
                .offsets
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                slot.offsets.pop_front();
            }
        }
        if let Ok(info) = &result
            && let Some(server) = crate::server::Server::from_info(info)
        {
            self.seen
                .servers
                .insert(name.to_owned(), (info.process_id(), server));
        }
        let result = result.map(Arc::new);
        // A failed probe keeps the last answer beside it: one reset connection must not
        // pass for an instance that no longer says where it replicates from.
        let last_ok = match &result {
            Ok(info) => Some((now, info.clone())),
            Err(_) => self.seen.infos.get(name).and_then(|p| match &p.result {
                Ok(info) => Some((p.at, info.clone())),
                Err(_) => p.last_ok.clone(),
            }),
        };
        self.seen.infos.insert(
            name.to_owned(),
            Probed {
                asked_at,
                at: now,
                result,
                last_ok,
            },
        );
        // What the replica's own log said of its sync is kept until its next launch: the
        // upstream's probe may be the one that completes the sync.
        let full_sync_now = logged_sync == Some(SyncKind::Full);
        if let (Some(kind), Some(slot)) = (logged_sync, self.slots.get_mut(name)) {
            slot.logged_sync = Some(kind);
            if full_sync_now {
                slot.aof_incomplete = true;
            }
        }
        // The INFO that came with a full sync's log line may predate the AOF rewrite that
        // follows it: only a later one can say it is over.
        if let (false, Some(Ok(info)), Some(slot)) = (
            full_sync_now,
            self.seen.infos.get(name).map(|p| &p.result),
            self.slots.get_mut(name),
        ) {
            let rewriting = info.int("aof_rewrite_in_progress") == Some(1)
                || info.int("aof_rewrite_scheduled") == Some(1);
            if rewriting || info.sync_in_progress() {
                slot.aof_incomplete = true;
            } else if info.int("aof_rewrite_in_progress") == Some(0) {
                slot.aof_incomplete = false;
            }
        }
        if self.is_sentinel(name) {
            self.sentinel_readiness(name, now, fx);
            self.obey_sentinels(now, fx);
            return None;
        }
        self.note_history(name, fx);
        self.note_demotion(name, fx);
        self.update_readiness(name, now, fx);
        Some(name.to_owned())
    }

    /// After the probes of `names` (instances, in the order they came): who the group's
    /// master is now, learned once from every instance's INFO, then the readiness of the
    /// local replicas of each (an upstream's probe may be the one that shows them in sync).
    pub(super) fn after_probes(&mut self, names: &[String], now: Instant, fx: &mut Vec<Effect>) {
        if names.is_empty() {
            return;
        }
        // With Sentinel the sentinels say who the master is; without, the instances.
        if self.group.sentinel.is_none() {
            self.learn_topology(now, fx);
        }
        // Each local replica's upstream in the group, and the one its INFO says it
        // follows when that differs (the group moved on while it started: see
        // `sync_judged_by`), looked up once for the whole batch.
        let local: Vec<(String, Option<String>, Option<String>)> = self
            .group
            .instances
            .iter()
            .filter(|r| r.replica_of.is_some() && self.slots.contains_key(&r.name))
            .map(|r| {
                let follows = self
                    .seen
                    .info(&r.name)
                    .and_then(|info| crate::topology::upstream_of(&self.group, info))
                    .map(|u| u.name.clone())
                    .filter(|u| Some(u) != r.replica_of.as_ref());
                (r.name.clone(), r.replica_of.clone(), follows)
            })
            .collect();
        for name in names {
            let replicas: Vec<String> = local
                .iter()
                .filter(|(_, up, follows)| {
                    up.as_ref() == Some(name) || follows.as_ref() == Some(name)
                })
                .map(|(r, _, _)| r.clone())
                .collect();
            for r in replicas {
                self.update_readiness(&r, now, fx);
            }
        }
    }

    /// Moves a starting instance on once it answers from its own pid with its data
    /// loaded, and a syncing replica once it is in sync with its upstream.
    pub(super) fn update_readiness(&mut self, name: &str, now: Instant, fx: &mut Vec<Effect>) {
        let Some(inst) = self.group.instance(name).cloned() else {
            return;
        };
        let Some(info) = self.fresh_info(name, now) else {
            return;
        };
        let judged_by = self.sync_judged_by(&inst, info, now);
        let upstream_info = judged_by.and_then(|u| self.fresh_info(u, now));
        let in_sync = upstream_info.is_some_and(|up| info.in_sync_with(up, inst.bind, inst.port));
        // The upstream lists a replica's old connection for a while after it went away:
        // only an upstream INFO asked after this process started can show the new one.
        let upstream_asked = judged_by
            .and_then(|u| self.seen.infos.get(u))
            .map(|p| p.asked_at);
        let sync_full_now = upstream_info.map(Info::sync_full);
        let (owner, loading) = (info.process_id(), info.loading());
        let full_sync_under_way = info.sync_in_progress();
        let answers_as = |pid: u32| owner == Some(pid) && !loading;
        let sync_timeout = self.group.supervise.sync_timeout;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        match slot.state.clone() {
            // Admitted as a sure partial resync, yet copying the whole data set: count the
            // wrong prediction and let it count against the gate from now on.
            State::Syncing {
                pid,
                since,
                deadline,
                mut launch,
            } if launch.predicted_partial && full_sync_under_way => {
                warn!(instance = %name, pid, "predicted a partial resync, but it is full-syncing");
                slot.counters.mispredicted_syncs += 1;
                launch.predicted_partial = false;
                let counted = State::Syncing {
                    pid,
                    since,
                    deadline,
                    launch,
                };
                self.set_state(name, counted, fx);
            }
            State::Starting {
                pid,
                launch,
                killed: false,
                ..
            } if answers_as(pid) => {
                if inst.is_master() {
                    info!(instance = %name, pid, "running");
                    self.set_state(name, State::Running { pid }, fx);
                } else {
                    info!(instance = %name, pid, "answering; syncing with its upstream");
                    self.set_state(
                        name,
                        State::Syncing {
                            pid,
                            since: now,
                            deadline: now + sync_timeout,
                            launch,
                        },
                        fx,
                    );
                    // The same probes may already show it in sync (an adopted replica).
                    self.update_readiness(name, now, fx);
                }
            }
            State::Syncing {
                pid, since, launch, ..
            } if in_sync && launch.at.is_none_or(|at| upstream_asked >= Some(at)) => {
                // The replica's own log says which it was; the upstream's counter is the
                // fallback (when it logs to a file), ambiguous if others synced meanwhile.
                let kind = match (slot.logged_sync, launch.sync_full_before, sync_full_now) {
                    (Some(kind), _, _) => Some(kind),
                    (None, Some(before), Some(after)) if after > before => Some(SyncKind::Full),
                    (None, Some(_), Some(_)) => Some(SyncKind::Partial),
                    _ => None,
                };
                if launch.aof_to_restore {
                    fx.push(Effect::RestoreAof {
                        name: name.to_owned(),
                        endpoint: slot.endpoint.clone(),
                    });
                }
                // Adopted (no launch time): we did not see this process start or sync.
                if let Some(at) = launch.at {
                    if launch.predicted_partial && kind == Some(SyncKind::Full) {
                        warn!(instance = %name, pid, "predicted a partial resync, but it got a full sync");
                        slot.counters.mispredicted_syncs += 1;
                    }
                    match kind {
                        Some(SyncKind::Full) => slot.counters.full_syncs += 1,
                        Some(SyncKind::Partial) => slot.counters.partial_syncs += 1,
                        None => {}
                    }
                    let kind = kind.map_or("sync", SyncKind::label);
                    let took = now.duration_since(at.min(since)).as_secs_f64();
                    let line = format!("{kind}, in sync {took:.1}s after start");
                    info!(instance = %name, pid, "in sync: {line}");
                    slot.last_sync = Some(line);
                }
                self.set_state(name, State::Running { pid }, fx);
            }
            _ => {}
        }
    }

    /// The instance whose INFO says whether the local replica `inst` (which said `info`)
    /// is in sync: its upstream in the group, or the instance it still follows when that
    /// one follows its upstream in the group, in sync.
    ///
    /// The second is a change of roles that came while it started (a failover in a rolling
    /// restart): it runs under the upstream it was started with, now a replica of the new
    /// master. Its data is the group's, and the re-point that moves it (live, partial) is
    /// queued behind the very start that waits for it to be in sync: judged against the
    /// new master only, that start would wait out `sync_timeout`.
    fn sync_judged_by<'g>(
        &'g self,
        inst: &'g Instance,
        info: &Info,
        now: Instant,
    ) -> Option<&'g str> {
        let expected = inst.replica_of.as_deref()?;
        let Some(follows) =
            crate::topology::upstream_of(&self.group, info).filter(|f| f.name != expected)
        else {
            return Some(expected);
        };
        let (Some(middle), Some(top)) = (
            self.fresh_info(&follows.name, now),
            self.fresh_info(expected, now),
        ) else {
            return Some(expected);
        };
        let middle_in_line = crate::topology::upstream_of(&self.group, middle)
            .is_some_and(|u| u.name == expected)
            && middle.in_sync_with(top, follows.bind, follows.port);
        Some(if middle_in_line {
            &follows.name
        } else {
            expected
        })
    }

    /// The server `name` runs, as it last said in INFO, however long ago: for a local
    /// instance only what its current process said; for another host's, its last word.
    pub(super) fn running_server(&self, name: &str) -> Option<crate::server::Server> {
        let (reported_by, server) = self.seen.servers.get(name)?;
        match self.slots.get(name) {
            Some(slot) => {
                let pid = slot.state.pid()?;
                (*reported_by == Some(pid)).then_some(*server)
            }
            None => Some(*server),
        }
    }

    /// The last successful probe of `name`, if recent enough to act on.
    /// Whether the instance at `ip:port` is known to be down since `since`: a local one
    /// stopped (or not wanted), or any whose probe asked after `since` failed.
    pub(super) fn gone_since(&self, ip: &str, port: u16, since: Option<Instant>) -> bool {
        let Some(inst) = self
            .group
            .instances
            .iter()
            .find(|i| i.port == port && i.bind.to_string() == ip)
        else {
            return false;
        };
        if let Some(slot) = self.slots.get(&inst.name)
            && (!slot.wanted || slot.state.pid().is_none())
        {
            return true;
        }
        self.seen
            .infos
            .get(&inst.name)
            .is_some_and(|p| p.result.is_err() && since.is_none_or(|s| p.asked_at > s))
    }

    /// The last INFO the instance answered, even when its newest probe failed, if no
    /// older than [`Machine::fresh_info`] allows: for decisions that one failed probe must
    /// not flip (a live re-point is not turned into a restart by one reset connection).
    pub(super) fn last_answer(&self, name: &str, now: Instant) -> Option<&Info> {
        let max_age = self.group.supervise.health_interval * 3 + Duration::from_secs(2);
        let probed = self.seen.infos.get(name)?;
        let (at, info) = match &probed.result {
            Ok(info) => (probed.at, info),
            Err(_) => {
                let (at, info) = probed.last_ok.as_ref()?;
                (*at, info)
            }
        };
        (now.duration_since(at) <= max_age).then_some(info)
    }

    pub(super) fn fresh_info(&self, name: &str, now: Instant) -> Option<&Info> {
        let max_age = self.group.supervise.health_interval * 3 + Duration::from_secs(2);
        match self.seen.infos.get(name) {
            Some(Probed {
                at,
                result: Ok(info),
                ..
            }) if now.duration_since(*at) <= max_age => Some(info),
            _ => None,
        }
    }

    /// Local instances plus every other instance of the group (on other hosts): the
    /// upstreams of local replicas, and everyone who may say who the master is now.
    pub(super) fn update_probe_targets(&mut self, fx: &mut Vec<Effect>) {
        let mut targets: Vec<(String, Endpoint)> = Vec::new();
        for (name, slot) in &self.slots {
            targets.push((name.clone(), slot.endpoint.clone()));
        }
        for inst in self.group.start_order_all() {
            if !self.slots.contains_key(&inst.name) {
                targets.push((inst.name.clone(), Endpoint::of(&self.group, inst)));
            }
        }
        for (name, endpoint) in self.sentinel_endpoints() {
            if !self.slots.contains_key(&name) {
                targets.push((name, endpoint));
            }
        }
        if targets != self.seen.targets {
            self.seen.targets = targets.clone();
            fx.push(Effect::ProbeTargets(targets));
        }
    }
}
