//! The guard before an instance starts as master (the group is asked who the master is),
//! and the catch-up of a crashed master from a replica that has writes its files lack.

use std::time::Instant;

use tracing::{info, warn};

use super::{CatchUp, FAILOVER_TIMEOUT, HAND_BACK_RETRY, Phase};
use crate::machine::{Blocker, Effect, History, Kind, Machine, State};

use crate::changes::Reason;
use crate::config::Instance;
use crate::rdb::ReplPosition;
use crate::topology;

/// How often a failed hand-back is tried again.
const HAND_BACK_TRIES: u32 = 3;

impl Machine {
    /// Before an instance starts as the group's master: the other instances are asked who
    /// the master is (a promotion may have happened while it was down: it must not come
    /// back as a second master), and when a replica has writes its files lack, the
    /// catch-up begins. `None` when it may start as master now.
    pub(in crate::machine) fn before_master_start(
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
                .is_none_or(|t| now >= t + crate::machine::FAST_PROBE)
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
    pub(in crate::machine) fn advance_catch_up(&mut self, now: Instant, fx: &mut Vec<Effect>) {
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
        let others = self.online_followers(&source, &master);
        fx.push(Effect::Failover {
            name: master,
            master: from,
            target: to,
            others,
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
}
