//! Carrying out an operation's steps: beginning each (with the checks that keep the
//! group safe: quorum, min-replicas, a replica's only good sibling), and judging when it
//! is done (in sync, replicas back, roles settled) or failed.

use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::ops::Operation;
use super::slot::InPlace;
use super::{Effect, Kind, LiveFailure, Machine, State, human};
use crate::config::Secret;
use crate::control::Response;
use crate::endpoint::Endpoint;
use crate::plan::{self, Step};
use crate::render::{self, Secrets};

impl Machine {
    pub(super) fn advance_ops(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        while let Some(mut op) = self.ops.pop_front() {
            let finished = self.advance(&mut op, now, fx);
            if !finished {
                self.ops.push_front(op);
                return;
            }
            if let Some(id) = op.reply.take() {
                fx.push(Effect::Reply {
                    id,
                    response: Response::Done {
                        ok: op.ok,
                        lines: op.lines,
                        failed: op.failed,
                    },
                });
            }
        }
        if self.life.shutting_down && !self.life.exited {
            let left: Vec<String> = self
                .slots
                .iter()
                .filter_map(|(n, s)| s.state.pid().map(|pid| format!("{n} (pid {pid})")))
                .collect();
            let code = if left.is_empty() {
                info!("every instance stopped");
                crate::EXIT_OK
            } else {
                error!(
                    "left running because they refused to stop (a failed final save, or an AOF \
                     rewrite still running after shutdown_timeout; see above): {}",
                    left.join(", ")
                );
                crate::EXIT_FAILED
            };
            self.life.exited = true;
            fx.push(Effect::Exit(code));
        }
    }

    /// Runs `op` as far as it can go now; true when it is finished.
    fn advance(&mut self, op: &mut Operation, now: Instant, fx: &mut Vec<Effect>) -> bool {
        loop {
            if op.current.is_none() {
                let Some(step) = op.steps.pop_front() else {
                    return true;
                };
                if let Some(g) = op.generation.filter(|g| *g != self.roles.generation)
                    && let Step::ApplyLive { name, change } = &step
                    && change.repoint.is_some()
                {
                    // Planned for an earlier master: sending it now would point the
                    // instance back at a group that moved on (a replication loop).
                    warn!(
                        instance = %name,
                        "re-point dropped: planned for change of roles {g}, the group's master \
                         changed since (now {}, `{}`)",
                        self.roles.generation, self.roles.actual
                    );
                    op.lines.push(format!(
                        "{name}: not re-pointed: the group's master changed meanwhile"
                    ));
                    continue;
                }
                if let Some(line) = self.overtaken_role_move(op, &step) {
                    info!("{line}");
                    op.lines.push(line);
                    continue;
                }
                if let Err(message) = self.begin_step(&step, &op.stopping, now, fx) {
                    op.fail(message);
                    if !op.keep_going {
                        op.steps.clear();
                        return true;
                    }
                    continue;
                }
                op.current = Some((step, now));
            }
            let Some((step, started)) = op.current.clone() else {
                return true;
            };
            match self.step_outcome(&step, started, now) {
                None => return false,
                Some(Ok(line)) => {
                    op.lines.extend(line);
                    op.current = None;
                    // The move away of a planned master restart is done: remember where
                    // the role went, for the move back.
                    if matches!(&step, Step::AwaitTopology { name } if name.is_empty())
                        && matches!(op.steps.front(), Some(Step::Stop { .. }))
                    {
                        op.role_moved_to = Some(self.roles.actual.clone());
                    }
                }
                Some(Err(why)) if self.refused_live(&step) => {
                    // The server refused a setting at runtime: restart it with the new
                    // config instead (rolling, through the gate, like any change) — unless
                    // it would come back empty and empty its replicas.
                    let name = step.name().to_owned();
                    op.current = None;
                    if let Some(hazard) = self.restart_hazard(&name) {
                        op.fail(format!(
                            "{name}: the server refused the change live ({why}), and it is not \
                             restarted: {hazard}"
                        ));
                        continue;
                    }
                    info!(instance = %name, "restarting: not applied live: {why}");
                    op.lines
                        .push(format!("{name}: restarted: not applied live ({why})"));
                    for s in plan::restart(&self.group, std::slice::from_ref(&name), false)
                        .into_iter()
                        .rev()
                    {
                        op.steps.push_front(s);
                    }
                }
                Some(Err(message)) => {
                    if op.reply.is_none() {
                        // Nobody reads this operation's lines (the daemon's own shutdown,
                        // a learned change): the log must say it.
                        error!("{message}");
                    }
                    op.fail(message);
                    op.current = None;
                    if !op.keep_going {
                        op.steps.clear();
                        return true;
                    }
                }
            }
        }
    }

    /// A role move of a planned master restart (`plan::restart_master_away`) that the
    /// group overtook since the plan was made: the instance to restart is not the group's
    /// master any more (both moves are dropped: it restarts as a replica), or, for the
    /// move back, the group's master is no longer the one the move away made (another
    /// change came meanwhile: the role stays). The line that says so, when dropped.
    /// Judged on INFO asked when the turn came (the plan's `AwaitProbes`).
    fn overtaken_role_move(&self, op: &mut Operation, step: &Step) -> Option<String> {
        let Step::Failover { name, force: false } = step else {
            return None;
        };
        let actual = &self.roles.actual;
        if name.is_empty() {
            let master = match (op.steps.front(), op.steps.get(1)) {
                (
                    Some(Step::AwaitTopology { name: t }),
                    Some(Step::Stop {
                        name: m,
                        force: false,
                    }),
                ) if t.is_empty() => m.clone(),
                _ => return None,
            };
            if master == *actual {
                return None;
            }
            op.steps.pop_front();
            let back = op.steps.iter().position(
                |s| matches!(s, Step::Failover { name, force: false } if *name == master),
            );
            if let Some(i) = back {
                op.steps.remove(i);
                if matches!(op.steps.get(i), Some(Step::AwaitTopology { name }) if *name == master)
                {
                    op.steps.remove(i);
                }
            }
            return Some(format!(
                "{master}: not the group's master any more (`{actual}` is): it restarts as a \
                 replica, no role moves"
            ));
        }
        let moved_to = op.role_moved_to.take()?;
        if moved_to == *actual {
            return None;
        }
        if matches!(op.steps.front(), Some(Step::AwaitTopology { name: t }) if t == name) {
            op.steps.pop_front();
        }
        Some(format!(
            "{name}: the role is not handed back: the group's master changed meanwhile \
             (`{actual}`, not `{moved_to}`)"
        ))
    }

    /// Begins `step` of an operation that takes `stopping` down for good.
    fn begin_step(
        &mut self,
        step: &Step,
        stopping: &[String],
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Result<(), String> {
        match step {
            Step::Stop { name, force } => {
                let running = self
                    .slots
                    .get(name)
                    .is_some_and(|s| s.state.pid().is_some());
                // When the same command stops the upstream too, nobody writes to it.
                let upstream_stops = self
                    .group
                    .instance(name)
                    .and_then(|i| i.replica_of.as_ref())
                    .is_some_and(|up| stopping.contains(up));
                if running && !force && !self.life.shutting_down && !upstream_stops {
                    let good = self.good_siblings(name, stopping, now);
                    plan::check_quorum(&self.group, name, good).map_err(|e| {
                        let others: Vec<String> = stopping
                            .iter()
                            .filter(|n| *n != name && self.same_upstream(n, name))
                            .map(|n| format!("`{n}`"))
                            .collect();
                        if others.is_empty() {
                            e
                        } else {
                            format!(
                                "{e} (counting {}, stopped by the same command, as gone)",
                                others.join(", ")
                            )
                        }
                    })?;
                }
                // Its INFO may be older than a stop of one of its replicas that ended since
                // (stops back to back): a replica gone since is not waited for after.
                let asked = self.seen.infos.get(name).map(|p| p.asked_at);
                let before = self.fresh_info(name, now).and_then(|info| {
                    let online = info
                        .replicas
                        .iter()
                        .filter(|l| l.is_online() && !self.gone_since(&l.ip, l.port, asked))
                        .count();
                    let role = info.get("role").unwrap_or_default().to_owned();
                    (online > 0).then_some((online, role))
                });
                if let Some(slot) = self.slots.get_mut(name) {
                    slot.replicas_before_stop = before;
                }
                self.begin_stop(name, *force, now, fx);
                Ok(())
            }
            Step::Start { name } => {
                let Some(slot) = self.slots.get_mut(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                slot.wanted = true;
                // An instance held by a pause starts now: the operator asks.
                let held = std::mem::take(&mut slot.held_by_pause)
                    || matches!(
                        slot.state,
                        State::Waiting {
                            after_crash: true,
                            ..
                        }
                    );
                if held
                    || matches!(
                        slot.state.kind(),
                        Kind::Stopped | Kind::Failed | Kind::Backoff
                    )
                {
                    slot.crashes.clear();
                    slot.last_error = None;
                    let waiting = State::waiting(super::Blocker::Starting, now, false);
                    self.set_state(name, waiting, fx);
                }
                self.start_waiting(now, fx);
                Ok(())
            }
            Step::AwaitReady { .. } => Ok(()),
            Step::AwaitProbes { .. } | Step::AwaitTopology { .. } => {
                fx.push(Effect::ProbeNow);
                Ok(())
            }
            Step::Failover { name, force } => self.begin_failover(name, *force, fx),
            Step::SentinelFailover { name, .. } => self.begin_sentinel_failover(name, fx),
            Step::Promote { name, force } => self.begin_promote(name, *force, fx),
            Step::ApplyLive { name, change } => {
                let Some(inst) = self.group.instance(name).cloned() else {
                    return Err(format!("`{name}` is not in the file any more"));
                };
                let conf = Secret::new(render::render(
                    &self.group,
                    &inst,
                    &self.server,
                    Secrets::Show,
                ));
                let conf_path = self.group.conf_path(&inst);
                let Some(slot) = self.slots.get_mut(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                if slot.state.pid().is_none() || slot.state.stopping() {
                    // Not running: its next start renders the new config.
                    slot.in_place = InPlace::Done(Ok(()));
                    return Ok(());
                }
                // A new upstream by REPLICAOF only when the resync there is sure to be
                // partial; one that may be full waits its turn in the sync gate, as a
                // restart.
                if let Some(Some(up)) = &change.repoint
                    && let Some(why) = self.repoint_blocker(name, &up.name, now)
                {
                    if let Some(slot) = self.slots.get_mut(name) {
                        slot.in_place = InPlace::Done(Err(LiveFailure::Refused(why)));
                    }
                    return Ok(());
                }
                // What INFO shows done already is not asked again (a REPLICAOF during a
                // failover is refused).
                let mut change = change.clone();
                if self.repoint_done(name, change.repoint.as_ref()) {
                    change.repoint = None;
                }
                let Some(slot) = self.slots.get_mut(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                slot.in_place = InPlace::UnderWay;
                let was = self
                    .seen
                    .info(name)
                    .and_then(crate::info::Info::replication);
                let target = match &change.repoint {
                    Some(Some(up)) => self.endpoint_of(&up.name).zip(
                        self.seen
                            .info(&up.name)
                            .and_then(crate::info::Info::replication),
                    ),
                    _ => None,
                };
                let Some(slot) = self.slots.get(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                fx.push(Effect::ApplyLive {
                    name: name.clone(),
                    endpoint: slot.endpoint.clone(),
                    was,
                    target,
                    change,
                    conf,
                    conf_path,
                });
                Ok(())
            }
            Step::SetPassword { name, change } => {
                let Some(inst) = self.group.instance(name).cloned() else {
                    return Err(format!("`{name}` is not in the file any more"));
                };
                let new_endpoint = Endpoint::of(&self.group, &inst);
                let conf = Secret::new(render::render(
                    &self.group,
                    &inst,
                    &self.server,
                    Secrets::Show,
                ));
                let conf_path = self.group.conf_path(&inst);
                let Some(slot) = self.slots.get_mut(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                if slot.state.pid().is_none() {
                    // Not running: it gets the new users and passwords from its config at
                    // start.
                    slot.endpoint = new_endpoint;
                    slot.in_place = InPlace::Done(Ok(()));
                    return Ok(());
                }
                slot.in_place = InPlace::UnderWay;
                fx.push(Effect::SetPassword {
                    name: name.clone(),
                    endpoint: slot.endpoint.clone(),
                    new_endpoint,
                    change: change.clone(),
                    conf,
                    conf_path,
                });
                Ok(())
            }
        }
    }

    /// `None` while the step is in progress; then a line for the reply or an error.
    fn step_outcome(
        &self,
        step: &Step,
        started: Instant,
        now: Instant,
    ) -> Option<Result<Option<String>, String>> {
        match step {
            Step::Stop { name, .. } => {
                let Some(slot) = self.slots.get(name) else {
                    return Some(Ok(Some(format!("{name}: stopped"))));
                };
                match &slot.state {
                    State::Stopped | State::Failed { .. } => {
                        Some(Ok(Some(format!("{name}: stopped"))))
                    }
                    State::Running { .. } if slot.wanted => Some(Err(format!(
                        "{name}: {}",
                        slot.last_error
                            .clone()
                            .unwrap_or_else(|| "stop failed".to_owned())
                    ))),
                    _ => None,
                }
            }
            Step::Start { .. } => Some(Ok(None)),
            Step::AwaitProbes { .. } => {
                let fresh = self
                    .seen
                    .targets
                    .iter()
                    .all(|(n, _)| self.seen.asked_since(n, started));
                (fresh || now >= started + super::STATUS_WAIT).then_some(Ok(None))
            }
            Step::Failover { force, .. } => self.role_change_outcome(if *force {
                "FAILOVER FORCE"
            } else {
                "switchover"
            }),
            Step::SentinelFailover { name, force } => {
                match self.sentinel_failover_outcome(name, started, now)? {
                    Err(e) if *force => Some(Ok(Some(format!(
                        "{name}: {e}; stopping it anyway (--force)"
                    )))),
                    outcome => Some(outcome),
                }
            }
            Step::Promote { .. } => self.role_change_outcome("REPLICAOF NO ONE"),
            Step::AwaitTopology { .. } => {
                let sup = &self.group.supervise;
                let limit = sup.start_timeout + sup.sync_timeout;
                match self.topology_settled(started) {
                    Some(lines) => Some(Ok(Some(lines.join("; ")))),
                    None if now.duration_since(started) > limit => Some(Err(format!(
                        "the group did not settle in its new shape within {}: see `redisrepd status`",
                        human(limit)
                    ))),
                    None => None,
                }
            }
            Step::ApplyLive { name, change } => match &self.slots.get(name)?.in_place {
                InPlace::UnderWay => None,
                InPlace::Done(Ok(())) => Some(Ok(Some(format!("{name}: {}", change.describe())))),
                InPlace::Done(Err(LiveFailure::Failed(e))) => Some(Err(format!(
                    "{name}: cannot apply the change live ({e}); it runs with the old settings \
                     until it is reloaded again or restarted"
                ))),
                // `advance` turns this into a restart.
                InPlace::Done(Err(LiveFailure::Refused(e))) => Some(Err(e.clone())),
            },
            Step::SetPassword { name, change } => match &self.slots.get(name)?.in_place {
                InPlace::UnderWay => None,
                InPlace::Done(Ok(())) if change.users.is_empty() && change.last.is_empty() => {
                    Some(Ok(Some(format!("{name}: password changed in place"))))
                }
                InPlace::Done(Ok(())) => {
                    Some(Ok(Some(format!("{name}: {} in place", change.describe()))))
                }
                InPlace::Done(Err(LiveFailure::Failed(e) | LiveFailure::Refused(e))) => {
                    Some(Err(format!(
                        "{name}: cannot change the password in place ({e}); it keeps the old one \
                     until `redisrepd restart {name}`"
                    )))
                }
            },
            Step::AwaitReady { name } => {
                let slot = self.slots.get(name)?;
                let sup = &self.group.supervise;
                let limit = sup.start_timeout + sup.sync_timeout + sup.restart_delay_max;
                match &slot.state {
                    State::Running { pid } => {
                        let mut line = format!("{name}: running (pid {pid})");
                        if let Some(sync) =
                            slot.last_sync.as_ref().filter(|_| self.is_replica(name))
                        {
                            line.push_str(&format!(", {sync}"));
                        }
                        let Some((before, role)) = &slot.replicas_before_stop else {
                            return Some(Ok(Some(line)));
                        };
                        // No more than the group, as it stands now, puts under it: after a
                        // switchover its old replicas follow the new master.
                        let before = (*before).min(self.group.replicas_of(name).count());
                        if before == 0 {
                            return Some(Ok(Some(line)));
                        }
                        // Its replicas reconnect on their own schedule (up to a second
                        // later, then a resync): asked of INFO probed since this step began,
                        // which the new process answered.
                        let info = self
                            .seen
                            .infos
                            .get(name)
                            .filter(|p| p.asked_at >= started)
                            .and_then(|p| p.result.as_ref().ok());
                        if info.is_some_and(|i| i.get("role").unwrap_or_default() != role) {
                            return Some(Ok(Some(line)));
                        }
                        let back =
                            info.map(|i| i.replicas.iter().filter(|l| l.is_online()).count());
                        let waited = now.duration_since(started);
                        match replicas_back(before, back, waited, limit) {
                            ReplicasBack::Waiting => None,
                            ReplicasBack::Back => {
                                line.push_str(&format!(
                                    ", {before} replica(s) back in {:.1}s",
                                    waited.as_secs_f64()
                                ));
                                Some(Ok(Some(line)))
                            }
                            ReplicasBack::Missing(n) => Some(Err(format!(
                                "{line}, but only {n} of its {before} replica(s) are back after \
                                 {}: see `redisrepd status`",
                                human(limit)
                            ))),
                        }
                    }
                    State::Failed { reason } => Some(Err(format!("{name}: failed: {reason}"))),
                    State::Backoff { .. } => Some(Err(format!(
                        "{name}: did not start: {}; retrying with backoff",
                        slot.last_error.clone().unwrap_or_default()
                    ))),
                    State::Stopped => Some(Err(format!("{name}: stopped before it came up"))),
                    _ if now.duration_since(started) > limit => {
                        Some(Err(format!("{name}: not up after {}", human(limit))))
                    }
                    _ => None,
                }
            }
        }
    }

    /// Whether `step` is a live change the server refused.
    fn refused_live(&self, step: &Step) -> bool {
        matches!(step, Step::ApplyLive { name, .. }
            if self.slots.get(name).is_some_and(|s| matches!(s.in_place, InPlace::Done(Err(LiveFailure::Refused(_))))))
    }

    /// Why restarting `name` on our own initiative could lose data: a master without
    /// persistence that has replicas comes back empty, and they copy the empty data set.
    fn restart_hazard(&self, name: &str) -> Option<String> {
        let inst = self.group.instance(name)?;
        let empties = inst.is_master()
            && !self.group.persists(inst)
            && self.group.replicas_of(name).next().is_some();
        empties.then(|| {
            "this master has no persistence, so it would come back empty and its replicas \
             would copy the empty data set; restart it yourself when that is what you want"
                .to_owned()
        })
    }

    fn is_replica(&self, name: &str) -> bool {
        self.group.instance(name).is_some_and(|i| !i.is_master())
    }

    /// The other replicas of `name`'s upstream that stay good while `name` is away: online
    /// per the upstream's INFO, and not among what this daemon is taking down — `stopping`
    /// (the rest of the same command) and its own instances that are not running (stopping,
    /// stopped, starting again: the upstream's INFO may be older than their stop).
    fn good_siblings(&self, name: &str, stopping: &[String], now: Instant) -> usize {
        let Some(inst) = self.group.instance(name) else {
            return 0;
        };
        let Some(up) = self.group.upstream(inst) else {
            return 0;
        };
        let Some(info) = self.fresh_info(&up.name, now) else {
            return 0;
        };
        let away: Vec<&crate::config::Instance> = self
            .group
            .replicas_of(&up.name)
            .filter(|r| {
                r.name == name
                    || stopping.contains(&r.name)
                    || self
                        .slots
                        .get(&r.name)
                        .is_some_and(|s| s.state.kind() != Kind::Running)
            })
            .collect();
        info.replicas
            .iter()
            .filter(|l| l.is_online() && !away.iter().any(|r| l.is(r.bind, r.port)))
            .count()
    }

    /// Whether stopping `name` is held by its upstream's `min_replicas_to_write`.
    pub(super) fn guarded(&self, name: &str) -> bool {
        self.group
            .instance(name)
            .and_then(|i| self.group.upstream(i))
            .is_some_and(|up| up.min_replicas_to_write.is_some_and(|m| m > 0))
    }

    /// Whether `a` and `b` replicate from the same upstream.
    fn same_upstream(&self, a: &str, b: &str) -> bool {
        let up = |n: &str| {
            self.group
                .instance(n)
                .and_then(|i| self.group.upstream(i))
                .map(|u| u.name.clone())
        };
        up(a).is_some() && up(a) == up(b)
    }
}

/// Where a restarted instance's replicas stand, for its restart to be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplicasBack {
    /// As many are online as before the stop.
    Back,
    /// Not yet; still within the limit.
    Waiting,
    /// The limit passed with this many online.
    Missing(usize),
}

/// Judges a restarted instance's replicas: `before` were online when it was stopped, `back`
/// are online in its INFO asked since (`None`: not probed yet), after `waited` of `limit`.
pub(super) fn replicas_back(
    before: usize,
    back: Option<usize>,
    waited: Duration,
    limit: Duration,
) -> ReplicasBack {
    match back {
        Some(n) if n >= before => ReplicasBack::Back,
        _ if waited <= limit => ReplicasBack::Waiting,
        n => ReplicasBack::Missing(n.unwrap_or(0)),
    }
}
