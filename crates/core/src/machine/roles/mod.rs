//! Roles that change: the group's actual master (learned from the instances' INFO, kept
//! across daemon restarts), the switchover (`failover`), the promotion of a replica when
//! the master is gone (`promote`), the guard that never starts a second master while the
//! group can be reached, and the catch-up of a crashed master from a replica that has
//! writes its files lack.
//!
//! The catch-up is a promotion and a switchover in a row: the most advanced replica is made
//! master (`REPLICAOF NO ONE`: it keeps the old history as its second replication id), the
//! crashed master starts as its replica and resyncs (partially when the backlog covers the
//! gap), and once in sync it gets the role back with `FAILOVER`, so no write a replica
//! acknowledged is lost. Every daemon follows each change by what the instances say.

use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::ops::Operation;
use super::{Blocker, Effect, History, Kind, Machine, MasterChange, State, human};
use crate::changes::Reason;
use crate::config::Instance;
use crate::endpoint::Endpoint;
use crate::plan::{self, Step};
use crate::rdb::ReplPosition;
use crate::topology::{self, Seen};

/// How long `FAILOVER` may wait for its target to catch up before Redis aborts it (writes
/// then resume on the old master).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a group may have no master, every instance answering, before the daemon
/// running the most advanced one makes it master.
const NO_MASTER_REPAIR: Duration = Duration::from_secs(5);

/// How long a local replica may replicate from another instance than the group puts it
/// under, with nothing under way, before it is re-pointed.
const DRIFT_REPAIR: Duration = Duration::from_secs(2);

/// How long a failed hand-back waits before it is tried again, and how often.
const HAND_BACK_RETRY: Duration = Duration::from_secs(5);
const HAND_BACK_TRIES: u32 = 3;

/// A role change the machine asked for (a `FAILOVER`, `REPLICAOF NO ONE`, `SENTINEL
/// FAILOVER`): under way, or how the last one ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Asked {
    /// None asked since the daemon started.
    Never,
    /// Asked; the answer is pending.
    UnderWay,
    /// How the last one ended.
    Ended(Result<(), String>),
}

/// The group's roles as this daemon knows them: the actual master, the replication history
/// seen, and the changes of role under way (a failover, a promotion, a catch-up, a
/// repair).
pub(super) struct Roles {
    /// The group's actual master.
    pub(super) actual: String,
    /// A failover or promotion under way, or how the last one ended.
    pub(super) change: Asked,
    /// What the role change under way is, for the history: failover, promote or repair.
    pub(super) change_why: Reason,
    /// The master a `FAILOVER` under way demotes: once it is done, a local one drops its
    /// clients at once (its INFO would say so only at the next probe).
    pub(super) failover_from: Option<String>,
    /// Sentinel mode: how the last `SENTINEL FAILOVER` request went.
    pub(super) sentinel_failover: Asked,
    /// A crashed master catching up from a replica that is ahead of it.
    pub(super) catch_up: Option<CatchUp>,
    /// A master whose catch-up could not begin: it starts from its own files this time.
    pub(super) no_catch_up: Option<String>,
    /// When the actual master last changed: INFO asked before says nothing of the new
    /// roles.
    pub(super) changed_at: Option<Instant>,
    /// Counts the changes of the group's master this daemon made or followed: every
    /// re-point carries the one it was planned for.
    pub(super) generation: u64,
    /// The changes of replication id seen in any instance's INFO (and kept across
    /// restarts): a crashed master's RDB is placed on its replicas' histories through them.
    pub(super) lineage: crate::history::Lineage,
    /// Each local master's last replication id, as its INFO or the topology file said.
    pub(super) last_ids: std::collections::BTreeMap<String, String>,
    /// Since when every instance answers and none is master (a loop, most likely).
    pub(super) no_master_since: Option<Instant>,
    /// Since when a local replica runs under another upstream than the group's.
    pub(super) drift_since: Option<Instant>,
}

impl Roles {
    /// The roles of a new machine: `actual` is master, nothing under way, no history.
    pub(super) fn new(actual: String) -> Roles {
        Roles {
            actual,
            change: Asked::Never,
            change_why: Reason::Failover,
            failover_from: None,
            sentinel_failover: Asked::Never,
            catch_up: None,
            no_catch_up: None,
            changed_at: None,
            generation: 0,
            lineage: crate::history::Lineage::default(),
            last_ids: std::collections::BTreeMap::new(),
            no_master_since: None,
            drift_since: None,
        }
    }

    /// A failover, promotion or repair was asked for `why`; its answer is pending.
    pub(super) fn begin_change(&mut self, why: Reason) {
        self.change = Asked::UnderWay;
        self.change_why = why;
    }

    /// Whether a role change or a catch-up is under way.
    pub(super) fn busy(&self) -> bool {
        self.change == Asked::UnderWay || self.catch_up.is_some()
    }

    /// What the topology file keeps: the actual master and the replication history seen.
    pub(super) fn kept(&self) -> crate::topology::Kept {
        crate::topology::Kept {
            master: self.actual.clone(),
            last_ids: self.last_ids.clone(),
            lineage: self.lineage.clone(),
        }
    }
}

/// A crashed master catching up from the replica that is ahead of it.
pub(super) struct CatchUp {
    /// The crashed master.
    master: String,
    /// The replica it catches up from (master for the moment).
    source: String,
    phase: Phase,
    /// Hand-backs that failed.
    retries: u32,
    /// When it began: INFO asked before says nothing about it.
    began: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `REPLICAOF NO ONE` sent to the source.
    Promoting,
    /// The master runs as the source's replica, until in sync and the other replicas
    /// follow the source too (since then), so that all share the history the master will
    /// hand on: none needs a full sync after the hand-back.
    Following(Instant),
    /// `FAILOVER TO master` sent to the source.
    HandingBack,
    /// A hand-back failed: try again then.
    Retry(Instant),
}

impl Machine {
    /// Makes `name` the group's actual master in the machine's view: the effective group
    /// follows it, it is saved, and the steps that bring the local instances in line
    /// (re-pointing live) are returned for the caller to run.
    ///
    /// This is the one place a daemon learns a new master, so it is also where the change
    /// is recorded: [`Effect::MasterChanged`] (history and hook) with `why`.
    pub(super) fn set_actual(
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
        let runs_old = |slots: &std::collections::BTreeMap<String, super::Slot>, n: &str| {
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
    pub(super) fn record_change(
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
    pub(super) fn learn_topology(&mut self, now: Instant, fx: &mut Vec<Effect>) {
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

    /// Before an instance starts as the group's master: the other instances are asked who
    /// the master is (a promotion may have happened while it was down: it must not come
    /// back as a second master), and when a replica has writes its files lack, the
    /// catch-up begins. `None` when it may start as master now.
    pub(super) fn before_master_start(
        &mut self,
        inst: &Instance,
        history: &History,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Option<Blocker> {
        if self.roles.catch_up.is_some() {
            return Some(Blocker::CatchingUp);
        }
        let Some(State::Waiting {
            not_before,
            after_crash,
            ..
        }) = self.slots.get(&inst.name).map(|s| &s.state)
        else {
            return None;
        };
        let (since, after_crash) = (*not_before, *after_crash);
        // A local instance that does not run is no master; any other may be. With
        // Sentinel, the sentinels that may run are asked too: they name the master.
        let stale = self
            .group
            .instances
            .iter()
            .filter(|i| i.name != inst.name)
            .filter(|i| {
                self.slots
                    .get(&i.name)
                    .is_none_or(|s| s.state.pid().is_some())
            })
            .map(|i| i.name.clone())
            .chain(
                self.sentinel_endpoints()
                    .into_iter()
                    .map(|(n, _)| n)
                    .filter(|n| self.slots.get(n).is_none_or(|s| s.state.pid().is_some())),
            )
            .any(|n| self.seen.infos.get(&n).is_none_or(|p| p.asked_at < since));
        if stale {
            if self
                .seen
                .last_fast_probe
                .is_none_or(|t| now >= t + super::FAST_PROBE)
            {
                fx.push(Effect::ProbeNow);
                self.seen.last_fast_probe = Some(now);
            }
            return Some(Blocker::AskingWhoIsMaster);
        }
        if self.group.sentinel.is_some()
            && let Some(hold) = self.sentinel_start_hold(&inst.name, since, now)
        {
            return Some(hold);
        }
        let position = match history {
            History::NotRead => {
                let (rdb, aof_dir) = self.rdb_paths(inst);
                fx.push(Effect::ReadHistory {
                    name: inst.name.clone(),
                    rdb,
                    aof_dir,
                });
                return Some(Blocker::ReadingHistory);
            }
            History::Read(position) => position.clone(),
        };
        if self.roles.no_catch_up.as_deref() == Some(inst.name.as_str()) {
            return None;
        }
        let source = self.catch_up_source(inst, position.as_ref(), after_crash, now)?;
        if self.group.sentinel.is_some() {
            // Sentinel decides: it fails over, and this one then starts as a replica.
            return self.await_sentinel_failover(since, now);
        }
        let endpoint = self.endpoint_of(&source)?;
        warn!(
            instance = %inst.name,
            "replica `{source}` has writes this master's files lack: it becomes master for the \
             moment, `{}` starts as its replica and takes the role back once in sync",
            inst.name
        );
        self.roles.catch_up = Some(CatchUp {
            master: inst.name.clone(),
            source: source.clone(),
            phase: Phase::Promoting,
            retries: 0,
            began: now,
        });
        fx.push(Effect::MakeMaster {
            name: source.clone(),
            endpoint,
        });
        Some(Blocker::CatchUpBegins { source })
    }

    /// The replica that is furthest ahead of what `master` will load from its RDB, on the
    /// same history: the RDB's replication id and offset, or — after a crash, when the RDB
    /// has no replication id — the history the master's last INFO reported. "Same history"
    /// is judged as PSYNC judges it (`history::judge`): the replica's main id, its second
    /// id up to where it ended, or a chain of changes of id seen earlier (kept across
    /// daemon restarts). When nothing relates the RDB's history to a replica's, but the
    /// replica holds the history the master last served (its last INFO, or the topology
    /// file), the replica's data is kept: a catch-up costs a resync, a wrong start loses
    /// writes. Every decision is logged with what decided it.
    ///
    /// A master that loads an AOF written with `appendfsync always` needs none: Redis
    /// writes and fsyncs it before it replies. With `everysec` (the default) or `no` it
    /// does: Redis postpones the AOF write, for up to 2 s, while the previous fsync is
    /// slow, and replies meanwhile — measured: a SIGKILL on a loaded machine lost 391 of
    /// 2,000 writes both replicas had acknowledged. A stop on purpose flushes the AOF, so
    /// only a crash is judged; and so is a crash while Redis rewrote the AOF after a full
    /// sync, whatever the fsync policy.
    fn catch_up_source(
        &self,
        master: &Instance,
        position: Option<&ReplPosition>,
        after_crash: bool,
        now: Instant,
    ) -> Option<String> {
        use crate::history::{self, Ids, Verdict};
        let aof = self
            .group
            .directive(master, "appendonly")
            .is_some_and(|v| v.iter().any(|s| s.eq_ignore_ascii_case("yes")));
        let name = &master.name;
        let mut position = position;
        if aof {
            let always = self
                .group
                .directive(master, "appendfsync")
                .is_some_and(|v| v.iter().any(|s| s.eq_ignore_ascii_case("always")));
            let incomplete = self.slots.get(name).is_some_and(|s| s.aof_incomplete);
            if incomplete {
                warn!(instance = %name, "its AOF was being rewritten (after a full sync) when it went down: it may lack acknowledged writes, so its replicas are compared with its history");
            } else if always || !after_crash {
                // `always` writes and fsyncs before it replies; a stop on purpose
                // (SHUTDOWN, SIGTERM) flushes the AOF before the process exits.
                return None;
            } else {
                info!(instance = %name, "it crashed with appendfsync everysec or no: Redis may have acknowledged writes it had not yet written to its AOF (it postpones the write while an fsync is slow), so its replicas are compared with its last history");
            }
            // The AOF, not an RDB, is what it loads: judge by its last history.
            position = None;
        }
        let last = self.slots.get(name)?.last_history.clone();
        // The history the master served last: its INFO since this daemon started, else
        // what the topology file kept.
        let (last_id, last_from) = match (&last, self.roles.last_ids.get(name)) {
            (Some((id, _)), _) => (Some(id.clone()), "its last INFO"),
            (None, Some(id)) => (Some(id.clone()), "the topology file"),
            (None, None) => (None, ""),
        };
        let (base, from) = match (position, &last) {
            (Some(p), _) => (p.clone(), "its RDB"),
            (None, Some((id, _))) if after_crash || aof => (
                ReplPosition {
                    repl_id: id.clone(),
                    offset: 0,
                },
                if aof {
                    "its last INFO (its AOF names no replication position)"
                } else {
                    "its last INFO (its RDB has no replication id)"
                },
            ),
            _ => {
                info!(instance = %name, "starts from its own files: its RDB names no replication history to compare its replicas with");
                return None;
            }
        };
        let mut best: Option<(String, i64, String)> = None;
        for r in self.group.instances.iter().filter(|r| r.name != *name) {
            let Some(info) = self.fresh_info(&r.name, now) else {
                continue;
            };
            if topology::upstream_of(&self.group, info).is_none_or(|u| u.name != *name) {
                continue;
            }
            let Some(ids) = Ids::of(info) else {
                continue;
            };
            let why = match history::judge(&base, &ids, &self.roles.lineage) {
                Verdict::Ahead(why) => format!("{from}: {why}"),
                Verdict::NotAhead(why) => {
                    info!(instance = %name, "replica `{}` has nothing its RDB lacks ({from}: {why})", r.name);
                    continue;
                }
                Verdict::Unrelated => {
                    let holds_last = last_id.as_ref().is_some_and(|id| {
                        let last_pos = ReplPosition {
                            repl_id: id.clone(),
                            offset: 0,
                        };
                        *id != base.repl_id
                            && matches!(
                                history::judge(&last_pos, &ids, &self.roles.lineage),
                                Verdict::Ahead(_)
                            )
                    });
                    if !holds_last {
                        warn!(
                            instance = %name,
                            "replica `{}` is on a history ({}) that nothing relates to its RDB's ({}): \
                             its RDB is loaded",
                            r.name,
                            history::short(&ids.id),
                            history::short(&base.repl_id)
                        );
                        continue;
                    }
                    format!(
                        "nothing relates its RDB's history {} to the replica's, but the replica \
                         holds the history the master last served ({last_from}: {}); its data \
                         is kept",
                        history::short(&base.repl_id),
                        last_id.as_deref().map(history::short).unwrap_or_default()
                    )
                }
            };
            if best.as_ref().is_none_or(|(_, o, _)| ids.offset > *o) {
                best = Some((r.name.clone(), ids.offset, why));
            }
        }
        let (source, _, why) = best?;
        info!(instance = %name, "replica `{source}` is ahead of its files: {why}");
        Some(source)
    }

    /// The catch-up's next move: hand the role back once the master runs in sync.
    pub(super) fn advance_catch_up(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Some(cu) = &self.roles.catch_up else {
            return;
        };
        let (master, source, phase, began) =
            (cu.master.clone(), cu.source.clone(), cu.phase, cu.began);
        let running = self
            .slots
            .get(&master)
            .is_some_and(|s| s.state.kind() == Kind::Running);
        let due = match phase {
            Phase::Following(since) => {
                let limit = self.group.supervise.sync_timeout;
                running && (self.all_follow(&source, &master, now) || now >= since + limit)
            }
            Phase::Retry(at) => running && now >= at,
            Phase::Promoting | Phase::HandingBack => false,
        };
        let failed = self
            .slots
            .get(&master)
            .is_none_or(|s| !s.wanted || s.state.kind() == Kind::Failed);
        if self.life.shutting_down || failed {
            // Stopped (or given up on) meanwhile: the source stays master; the group
            // follows it.
            info!(instance = %master, "catch-up ended: `{source}` stays master");
            self.roles.catch_up = None;
            return;
        }
        // The group moved on without us (the source went away, someone failed over, the
        // master is master already): end it, and learn the roles from the group again.
        let answers_as_master = |name: &str, since: Instant| {
            self.seen
                .infos
                .get(name)
                .filter(|p| p.asked_at > since)
                .map(|p| match &p.result {
                    Ok(info) => info.role() == Some("master"),
                    Err(_) => false,
                })
        };
        if matches!(phase, Phase::Following(_) | Phase::Retry(_))
            && answers_as_master(&master, began) == Some(true)
        {
            let steps = self.set_actual(&master, Reason::CatchUp, now, fx);
            self.push_steps(steps);
            self.roles.catch_up = None;
            return;
        }
        // After a failed hand-back: is the source master still?
        if let Phase::Retry(at) = phase
            && answers_as_master(&source, at - HAND_BACK_RETRY) == Some(false)
        {
            warn!(instance = %master, "catch-up ended: `{source}` is no master any more; following the group");
            self.roles.catch_up = None;
            return;
        }
        if let Phase::Retry(_) = phase
            && self
                .roles
                .catch_up
                .as_ref()
                .is_some_and(|c| c.retries >= HAND_BACK_TRIES)
        {
            warn!(instance = %master, "catch-up ended: `{source}` stays master (the role could not be handed back; `redisrepd failover --to {master}` moves it)");
            self.roles.catch_up = None;
            return;
        }
        if !due {
            return;
        }
        let (Some(from), Some(to)) = (self.endpoint_of(&source), self.endpoint_of(&master)) else {
            self.roles.catch_up = None;
            return;
        };
        info!(instance = %master, "in sync with `{source}`: taking the master role back (switchover)");
        if let Some(cu) = &mut self.roles.catch_up {
            cu.phase = Phase::HandingBack;
        }
        self.roles.failover_from = Some(source.clone());
        fx.push(Effect::Failover {
            name: master,
            master: from,
            target: to,
            force: false,
            timeout: FAILOVER_TIMEOUT,
        });
    }

    /// Whether every replica of `source` but `except` says it follows `source`, linked.
    fn all_follow(&self, source: &str, except: &str, now: Instant) -> bool {
        self.group
            .replicas_of(source)
            .filter(|r| r.name != except)
            .all(|r| {
                self.fresh_info(&r.name, now).is_some_and(|info| {
                    topology::upstream_of(&self.group, info).is_some_and(|u| u.name == source)
                        && info.master_link_up() == Some(true)
                })
            })
    }

    /// The answer to `Failover` or `MakeMaster`.
    pub(super) fn on_role_changed(
        &mut self,
        name: &str,
        result: Result<(), String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        // A FAILOVER that returned made the old master a replica already: a local one
        // drops its clients now, not at its next probe.
        if let (Some(from), Ok(())) = (self.roles.failover_from.take(), &result) {
            self.drop_clients(&from, fx);
        }
        if let Some(cu) = &self.roles.catch_up {
            let (master, source, phase) = (cu.master.clone(), cu.source.clone(), cu.phase);
            match (phase, &result) {
                (Phase::Promoting, Ok(())) if name == source => {
                    let steps = self.set_actual(&source, Reason::CatchUp, now, fx);
                    self.push_steps(steps);
                    if let Some(cu) = &mut self.roles.catch_up {
                        cu.phase = Phase::Following(now);
                    }
                    return;
                }
                (Phase::Promoting, Err(e)) if name == source => {
                    // Nothing changed: the master starts from its own files (not asked
                    // again for this start).
                    error!(instance = %master, "cannot make `{source}` master for the catch-up ({e}); starting from its own files");
                    self.roles.catch_up = None;
                    self.roles.no_catch_up = Some(master);
                    return;
                }
                (Phase::HandingBack, Ok(())) if name == master => {
                    let steps = self.set_actual(&master, Reason::CatchUp, now, fx);
                    self.push_steps(steps);
                    info!(instance = %master, "caught up and master again");
                    self.roles.catch_up = None;
                    return;
                }
                (Phase::HandingBack, Err(e)) if name == master => {
                    warn!(instance = %master, "taking the role back from `{source}` failed ({e}); trying again");
                    if let Some(cu) = &mut self.roles.catch_up {
                        cu.phase = Phase::Retry(now + HAND_BACK_RETRY);
                        cu.retries += 1;
                    }
                    return;
                }
                _ => {}
            }
        }
        // A failover or promotion of a control request: its operation re-points the local
        // instances next (never during the daemon's shutdown: all is on its way down).
        if let Ok(()) = &result {
            let steps = self.set_actual(name, self.roles.change_why, now, fx);
            if !self.life.shutting_down {
                match self.ops.front_mut() {
                    Some(op) if op.changes_roles() => op.splice(steps, self.roles.generation),
                    _ => self.push_steps(steps),
                }
            }
        }
        self.roles.change = Asked::Ended(result);
    }

    /// Closes the client connections of the local instance `name`, which is no master any
    /// more (once per demotion: its probes no longer count it as master).
    pub(super) fn drop_clients(&mut self, name: &str, fx: &mut Vec<Effect>) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.seen_as_master = false;
        let endpoint = slot.endpoint.clone();
        info!(instance = %name, "no master any more: closing its client connections so they reconnect to the master");
        fx.push(Effect::DropClients {
            name: name.to_owned(),
            endpoint,
        });
    }

    /// After a probe of a local instance: one that said `role:master` and now says replica
    /// was demoted (a failover, a promotion elsewhere, Sentinel, a re-point of a master
    /// back from a partition), so its clients are dropped; never while it is master.
    pub(super) fn note_demotion(&mut self, name: &str, fx: &mut Vec<Effect>) {
        let Some(role) = self
            .seen
            .infos
            .get(name)
            .and_then(|p| p.result.as_ref().ok())
            .and_then(|info| info.role())
        else {
            return;
        };
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let was_master = slot.seen_as_master;
        slot.seen_as_master = role == "master";
        if was_master && role == "replica" {
            self.drop_clients(name, fx);
        }
    }

    /// Queues the steps that bring this host's instances in line with the latest change
    /// of roles; they are dropped if the master changes again before they run.
    pub(super) fn push_steps(&mut self, steps: Vec<Step>) {
        if !steps.is_empty() {
            self.ops
                .push_back(Operation::for_generation(steps, self.roles.generation));
        }
    }

    /// How to reach an instance: a local one with the password it started with.
    pub(super) fn endpoint_of(&self, name: &str) -> Option<Endpoint> {
        if let Some(slot) = self.slots.get(name) {
            return Some(slot.endpoint.clone());
        }
        let inst = self.group.instance(name)?;
        Some(Endpoint::of(&self.group, inst))
    }

    /// The steps of `failover [--to REPLICA]`.
    pub(super) fn failover_steps(
        &self,
        to: Option<String>,
        force: bool,
    ) -> Result<Vec<Step>, String> {
        if self.group.sentinel.is_some() {
            if let Some(t) = to {
                return Err(format!(
                    "with [sentinel], Sentinel picks the new master: run `redisrepd failover` \
                     without --to (steer it with `replica-priority`; `{t}` is not chosen here)"
                ));
            }
            return Ok(vec![
                Step::SentinelFailover {
                    name: self.roles.actual.clone(),
                    force: false,
                },
                Step::AwaitTopology {
                    name: String::new(),
                },
            ]);
        }
        if let Some(t) = &to
            && self.group.instance(t).is_none()
        {
            return Err(format!(
                "no instance `{t}` in {}",
                self.configured.source.display()
            ));
        }
        self.refuse_when_busy()?;
        let name = to.unwrap_or_default();
        Ok(vec![
            Step::AwaitProbes { name: name.clone() },
            Step::Failover {
                name: name.clone(),
                force,
            },
            Step::AwaitTopology { name },
        ])
    }

    /// The steps of `promote REPLICA`.
    pub(super) fn promote_steps(&self, name: String, force: bool) -> Result<Vec<Step>, String> {
        if self.group.sentinel.is_some() {
            return Err(
                "promote refused: with [sentinel], Sentinel decides which replica becomes \
                 master; it fails over by itself when the master is down"
                    .to_owned(),
            );
        }
        if self.group.instance(&name).is_none() {
            return Err(format!(
                "no instance `{name}` in {}",
                self.configured.source.display()
            ));
        }
        self.refuse_when_busy()?;
        Ok(vec![
            Step::AwaitProbes { name: name.clone() },
            Step::Promote {
                name: name.clone(),
                force,
            },
            Step::AwaitTopology { name },
        ])
    }

    /// With Sentinel: a stop (or restart) of the actual master asks the sentinels to fail
    /// over first, so writes move before it goes down; with `--force` it goes down even
    /// when they cannot (no replica in sync, no sentinel answering).
    /// Without Sentinel: a planned restart of the actual master moves the role away and
    /// back around it (`plan::restart_master_away`) when its INFO lists a replica online to
    /// take it; else it restarts in place. Returns the steps and a line saying which.
    pub(super) fn restart_master_away(
        &self,
        steps: Vec<Step>,
        now: Instant,
    ) -> (Vec<Step>, Option<String>) {
        let master = &self.roles.actual;
        let restarts = steps
            .iter()
            .any(|s| matches!(s, Step::Stop { name, force: false } if name == master));
        if self.group.sentinel.is_some() || !restarts {
            return (steps, None);
        }
        let online = self.fresh_info(master, now).is_some_and(|info| {
            self.group
                .replicas_of(master)
                .any(|r| info.replica(r.bind, r.port).is_some_and(|l| l.is_online()))
        });
        if !online {
            return (
                steps,
                Some(format!(
                    "{master}: restarts in place, no replica is online to take the role meanwhile \
                     (writes are refused while it saves and loads)"
                )),
            );
        }
        (
            plan::restart_master_away(steps, master),
            Some(format!(
                "{master}: the role moves to its most up-to-date replica while it restarts, and back"
            )),
        )
    }

    pub(super) fn sentinel_first(&self, mut steps: Vec<Step>) -> Vec<Step> {
        if self.group.sentinel.is_none()
            || self.group.replicas_of(&self.roles.actual).next().is_none()
        {
            return steps;
        }
        let stop = steps.iter().enumerate().find_map(|(i, s)| match s {
            Step::Stop { name, force } if *name == self.roles.actual => Some((i, *force)),
            _ => None,
        });
        if let Some((i, force)) = stop {
            steps.insert(
                i,
                Step::SentinelFailover {
                    name: self.roles.actual.clone(),
                    force,
                },
            );
        }
        steps
    }

    /// As [`Self::refuse_when_busy`], when the step begins (a request queued behind
    /// another may find a catch-up under way by then).
    fn refuse_when_busy_now(&self) -> Result<(), String> {
        match &self.roles.catch_up {
            Some(cu) => Err(format!(
                "`{}` is catching up from `{}` after a crash; try again once it is master again",
                cu.master, cu.source
            )),
            None => Ok(()),
        }
    }

    fn refuse_when_busy(&self) -> Result<(), String> {
        if matches!(self.roles.change, Asked::UnderWay) {
            return Err("a failover or promotion is under way".to_owned());
        }
        if let Some(cu) = &self.roles.catch_up {
            return Err(format!(
                "`{}` is catching up from `{}` after a crash; try again once it is master again",
                cu.master, cu.source
            ));
        }
        Ok(())
    }

    /// Begins `FAILOVER`: checks the target and the refusals of cli.md on INFO asked
    /// after the request.
    pub(super) fn begin_failover(
        &mut self,
        to: &str,
        force: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), String> {
        self.refuse_when_busy_now()?;
        let master = self.roles.actual.clone();
        let master_info = match self.seen.infos.get(&master).map(|p| &p.result) {
            Some(Ok(info)) if info.role() == Some("master") => info,
            _ => {
                return Err(format!(
                    "failover refused: the master `{master}` does not answer as master; when it \
                     is gone, use `redisrepd promote REPLICA`"
                ));
            }
        };
        if let Some(why) = failover_running(&master, master_info) {
            return Err(format!("failover refused: {why}; try again in a moment"));
        }
        let replicas: Vec<&Instance> = self.group.replicas_of(&master).collect();
        let target = if to.is_empty() {
            // The most up-to-date replica the master lists online.
            replicas
                .iter()
                .filter_map(|r| {
                    let line = master_info.replica(r.bind, r.port)?;
                    line.is_online().then_some((r, line.offset))
                })
                .max_by_key(|(_, offset)| *offset)
                .map(|(r, _)| (*r).clone())
                .ok_or_else(|| format!("failover refused: no replica of `{master}` is online"))?
        } else {
            self.group
                .instance(to)
                .cloned()
                .ok_or_else(|| format!("no instance `{to}`"))?
        };
        if target.name == master {
            return Err(format!("`{master}` is the master already"));
        }
        if target.replica_of.as_deref() != Some(master.as_str()) {
            return Err(format!(
                "failover refused: `{}` is not a replica of the current master `{master}`",
                target.name
            ));
        }
        let target_info = match self.seen.infos.get(&target.name).map(|p| &p.result) {
            Some(Ok(info)) => Some(&**info),
            _ => None,
        };
        if let Some(master_inst) = self.group.instance(&master)
            && let Some(why) = target_reconnecting(master_inst, master_info, &target, target_info)
        {
            return Err(format!("failover refused: {why}; try again in a moment"));
        }
        let line = master_info.replica(target.bind, target.port);
        let lag = line.map(|l| master_info.repl_offset().unwrap_or(0) - l.offset);
        let in_sync = line.is_some_and(|l| l.is_online());
        if !in_sync && !force {
            return Err(format!(
                "failover refused: `{}` is not in sync with `{master}` ({}); wait for it, or use \
                 --force",
                target.name,
                match (line, lag) {
                    (Some(l), _) => format!("its link is {}", l.state),
                    _ => "the master does not list it".to_owned(),
                }
            ));
        }
        // After the switch the new master's replicas are the old master and the others
        // that are online now.
        let after = topology::effective(&self.configured, Some(&target.name));
        let need = after
            .instance(&target.name)
            .and_then(|i| i.min_replicas_to_write)
            .unwrap_or(0) as usize;
        let have = 1 + replicas
            .iter()
            .filter(|r| r.name != target.name)
            .filter(|r| {
                master_info
                    .replica(r.bind, r.port)
                    .is_some_and(|l| l.is_online())
            })
            .count();
        if have < need {
            return Err(format!(
                "failover refused: `{}` would have {have} replica(s) online, fewer than \
                 min_replicas_to_write = {need}: writes would be refused",
                target.name
            ));
        }
        let (Some(from), Some(to_ep)) = (self.endpoint_of(&master), self.endpoint_of(&target.name))
        else {
            return Err("cannot reach the instances".to_owned());
        };
        info!(master = %master, target = %target.name, "failover: FAILOVER TO {}", target.address());
        self.roles.begin_change(Reason::Failover);
        self.roles.failover_from = Some(master.clone());
        fx.push(Effect::Failover {
            name: target.name.clone(),
            master: from,
            target: to_ep,
            force,
            timeout: FAILOVER_TIMEOUT,
        });
        Ok(())
    }

    /// Begins a promotion: refused while the master answers, and when another replica is
    /// ahead (unless `force`).
    pub(super) fn begin_promote(
        &mut self,
        name: &str,
        force: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), String> {
        self.refuse_when_busy_now()?;
        let master = self.roles.actual.clone();
        if name == master {
            return Err(format!("`{name}` is the master already"));
        }
        let latest = |n: &str| match self.seen.infos.get(n).map(|p| &p.result) {
            Some(Ok(info)) => Some(info),
            _ => None,
        };
        if latest(&master).is_some_and(|i| i.role() == Some("master")) {
            return Err(format!(
                "promote refused: the master `{master}` answers; use `redisrepd failover --to \
                 {name}` for a switchover that loses nothing"
            ));
        }
        let Some(target) = latest(name).filter(|i| i.role() == Some("replica")) else {
            return Err(format!(
                "promote refused: `{name}` does not answer as a replica"
            ));
        };
        let mine = target.repl_offset().unwrap_or(0);
        if !force {
            let ahead: Vec<String> = self
                .group
                .instances
                .iter()
                .filter(|i| i.name != name && i.name != master)
                .filter_map(|i| {
                    let o = latest(&i.name)?.repl_offset()?;
                    (o > mine).then(|| format!("`{}` ({o} > {mine})", i.name))
                })
                .collect();
            if !ahead.is_empty() {
                return Err(format!(
                    "promote refused: {} has a higher replication offset than `{name}`: \
                     promoting it would lose those writes; promote that one, or use --force",
                    ahead.join(", ")
                ));
            }
        }
        let endpoint = self
            .endpoint_of(name)
            .ok_or_else(|| format!("cannot reach `{name}`"))?;
        info!(instance = %name, "promote: REPLICAOF NO ONE (the master `{master}` does not answer)");
        self.roles.begin_change(Reason::Promote);
        fx.push(Effect::MakeMaster {
            name: name.to_owned(),
            endpoint,
        });
        Ok(())
    }

    /// The outcome of a failover or promotion step.
    pub(super) fn role_change_outcome(&self, what: &str) -> Option<Result<Option<String>, String>> {
        match &self.roles.change {
            Asked::Ended(Ok(())) => Some(Ok(Some(format!(
                "{}: master now ({what})",
                self.roles.actual
            )))),
            Asked::Ended(Err(e)) => Some(Err(format!("{what} failed: {e}"))),
            _ => None,
        }
    }

    /// Whether every instance that answers follows the actual topology: lines saying who
    /// follows whom when it does, `None` while not yet.
    pub(super) fn topology_settled(&self, started: Instant) -> Option<Vec<String>> {
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

    /// Why `name` may not be re-pointed to `up` live: its resync there may be full (then it
    /// is restarted through the sync gate instead). `None` when it already follows `up` or
    /// its `PSYNC` there is sure to be accepted, by INFO of both.
    pub(super) fn repoint_blocker(&self, name: &str, up: &str, now: Instant) -> Option<String> {
        // The last answer, also when the newest probe timed out (a busy machine): a
        // restart is not the answer to one slow INFO.
        let latest = |n: &str| self.last_answer(n, now);
        let Some(mine) = latest(name) else {
            return Some(format!(
                "it did not answer INFO; its resync with `{up}` may be full"
            ));
        };
        if topology::upstream_of(&self.group, mine).is_some_and(|u| u.name == up) {
            return None;
        }
        let position = mine
            .get("master_replid")
            .zip(mine.repl_offset())
            .map(|(id, offset)| ReplPosition {
                repl_id: id.to_owned(),
                offset,
            });
        let sure = match (position.as_ref(), latest(up)) {
            (Some(position), Some(upstream)) => {
                crate::gate::predict_repoint(position, upstream)
                    == crate::gate::Prediction::SurePartial
            }
            _ => false,
        };
        (!sure).then(|| {
            format!("its resync with `{up}` may be full, so it waits its turn in the sync gate")
        })
    }

    /// Whether `name`'s INFO shows the re-point done: it follows that upstream already, or
    /// is master already.
    pub(super) fn repoint_done(
        &self,
        name: &str,
        repoint: Option<&Option<plan::Upstream>>,
    ) -> bool {
        let Some(info) = self.seen.info(name) else {
            return false;
        };
        match repoint {
            Some(None) => info.role() == Some("master"),
            Some(Some(up)) => {
                topology::upstream_of(&self.group, info).is_some_and(|u| u.name == up.name)
            }
            None => false,
        }
    }

    /// Records what an INFO says of replication history: a change of id any instance
    /// shows (the lineage), and a local master's id and offset. What is new is kept in the
    /// topology file, for the judgement of a crashed master's RDB after a daemon restart.
    pub(super) fn note_history(&mut self, name: &str, fx: &mut Vec<Effect>) {
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

/// Whether a `FAILOVER` already runs on the master (`master_failover_state` other than
/// `no-failover`): another daemon's, or a crashed master's catch-up handing the role
/// back. Redis refuses a second one (`FAILOVER already in progress`) and the first ends
/// within its timeout, so a failover asked meanwhile is refused with "try again". Judged
/// on the master's INFO asked after the request.
pub(super) fn failover_running(master: &str, master_info: &crate::info::Info) -> Option<String> {
    let state = master_info
        .get("master_failover_state")
        .unwrap_or("no-failover");
    (state != "no-failover").then(|| {
        format!(
            "`{master}` is in a FAILOVER already ({state}): another failover, or a crashed \
             master's catch-up handing the role back"
        )
    })
}

/// Whether `target` has just reconnected to `master`: it replicates from it with its link
/// up, while the master does not list it online (yet): after a restart or a role swap the
/// master lists it once its resync is through (seen on Redis 6.2). That clears by itself,
/// so a failover to it is refused with "try again", not "wait for it, or use --force".
/// Judged on both INFOs asked after the request.
pub(super) fn target_reconnecting(
    master: &Instance,
    master_info: &crate::info::Info,
    target: &Instance,
    target_info: Option<&crate::info::Info>,
) -> Option<String> {
    let listed_online = master_info
        .replica(target.bind, target.port)
        .is_some_and(|l| l.is_online());
    let follows = target_info.is_some_and(|t| {
        t.role() == Some("replica")
            && t.get("master_host").and_then(|h| h.parse().ok()) == Some(master.bind)
            && t.int("master_port") == Some(i64::from(master.port))
            && t.master_link_up() == Some(true)
    });
    (!listed_online && follows).then(|| {
        format!(
            "`{}` has its link to `{}` up, but `{}` does not list it online yet (it has just \
             reconnected)",
            target.name, master.name, master.name
        )
    })
}
