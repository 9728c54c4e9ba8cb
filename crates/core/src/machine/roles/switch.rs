//! Switchover (`failover`) and promotion (`promote`) by request: the steps, the refusals,
//! the outcome; and re-pointing replicas live when their resync is sure to be partial.

use std::time::Instant;

use tracing::{error, info, warn};

use super::{Asked, FAILOVER_TIMEOUT, HAND_BACK_RETRY, Phase};
use crate::machine::ops::Operation;
use crate::machine::{Effect, Machine};

use crate::changes::Reason;
use crate::config::Instance;
use crate::endpoint::Endpoint;
use crate::plan::{self, Step};
use crate::rdb::ReplPosition;
use crate::topology;

impl Machine {
    /// The answer to `Failover` or `MakeMaster`.
    pub(in crate::machine) fn on_role_changed(
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
    pub(in crate::machine) fn drop_clients(&mut self, name: &str, fx: &mut Vec<Effect>) {
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
    pub(in crate::machine) fn note_demotion(&mut self, name: &str, fx: &mut Vec<Effect>) {
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
    pub(in crate::machine) fn push_steps(&mut self, steps: Vec<Step>) {
        if !steps.is_empty() {
            self.ops
                .push_back(Operation::for_generation(steps, self.roles.generation));
        }
    }

    /// How to reach an instance: a local one with the password it started with.
    pub(in crate::machine) fn endpoint_of(&self, name: &str) -> Option<Endpoint> {
        if let Some(slot) = self.slots.get(name) {
            return Some(slot.endpoint.clone());
        }
        let inst = self.group.instance(name)?;
        Some(Endpoint::of(&self.group, inst))
    }

    /// The steps of `failover [--to REPLICA]`.
    pub(in crate::machine) fn failover_steps(
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
    pub(in crate::machine) fn promote_steps(
        &self,
        name: String,
        force: bool,
    ) -> Result<Vec<Step>, String> {
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
    pub(in crate::machine) fn restart_master_away(
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

    pub(in crate::machine) fn sentinel_first(&self, mut steps: Vec<Step>) -> Vec<Step> {
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
    pub(in crate::machine) fn begin_failover(
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
        let others = self.online_followers(&master, &target.name);
        self.roles.begin_change(Reason::Failover);
        self.roles.failover_from = Some(master.clone());
        fx.push(Effect::Failover {
            name: target.name.clone(),
            master: from,
            target: to_ep,
            others,
            force,
            timeout: FAILOVER_TIMEOUT,
        });
        Ok(())
    }

    /// The replicas of `master` but `except` that its last INFO lists online, to reach: a
    /// switchover re-points them to the new master itself, before the old master turns
    /// replica. Redis 6.2 drops a master's replicas when it turns replica, and one that
    /// reconnects while it is still in its own handshake can read a broken PSYNC reply
    /// ("Reading from master: Operation now in progress") and discard its cached master:
    /// its next sync, wherever, is full.
    pub(in crate::machine) fn online_followers(&self, master: &str, except: &str) -> Vec<Endpoint> {
        let Some(Ok(info)) = self.seen.infos.get(master).map(|p| &p.result) else {
            return Vec::new();
        };
        self.group
            .replicas_of(master)
            .filter(|r| r.name != except)
            .filter(|r| info.replica(r.bind, r.port).is_some_and(|l| l.is_online()))
            .filter_map(|r| self.endpoint_of(&r.name))
            .collect()
    }

    /// Begins a promotion: refused while the master answers, and when another replica is
    /// ahead (unless `force`).
    pub(in crate::machine) fn begin_promote(
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
    pub(in crate::machine) fn role_change_outcome(
        &self,
        what: &str,
    ) -> Option<Result<Option<String>, String>> {
        match &self.roles.change {
            Asked::Ended(Ok(())) => Some(Ok(Some(format!(
                "{}: master now ({what})",
                self.roles.actual
            )))),
            Asked::Ended(Err(e)) => Some(Err(format!("{what} failed: {e}"))),
            _ => None,
        }
    }

    /// Why `name` may not be re-pointed to `up` live: its resync there may be full (then it
    /// is restarted through the sync gate instead). `None` when it already follows `up` or
    /// its `PSYNC` there is sure to be accepted, by INFO of both.
    pub(in crate::machine) fn repoint_blocker(
        &self,
        name: &str,
        up: &str,
        now: Instant,
    ) -> Option<String> {
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
    pub(in crate::machine) fn repoint_done(
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
}

/// Whether a `FAILOVER` already runs on the master (`master_failover_state` other than
/// `no-failover`): another daemon's, or a crashed master's catch-up handing the role
/// back. Redis refuses a second one (`FAILOVER already in progress`) and the first ends
/// within its timeout, so a failover asked meanwhile is refused with "try again". Judged
/// on the master's INFO asked after the request.
pub(in crate::machine) fn failover_running(
    master: &str,
    master_info: &crate::info::Info,
) -> Option<String> {
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
pub(in crate::machine) fn target_reconnecting(
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
