//! Control requests and the operations they become: a list of `plan::Step`s carried out
//! one after another (start, stop, rolling restart, reload, the daemon's own shutdown),
//! with the reply sent when the last step is done.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::{
    Effect, Kind, LiveFailure, Loaded, Machine, Notify, PendingStatus, RequestId, State, human,
};
use crate::config::Secret;
use crate::control::{Request, Response};
use crate::plan::{self, Step};
use crate::render::{self, Secrets};

/// An operation from a control request: steps run one after another.
pub(super) struct Operation {
    steps: VecDeque<Step>,
    current: Option<(Step, Instant)>,
    reply: Option<RequestId>,
    lines: Vec<String>,
    /// The indices of the `lines` that say what failed.
    failed: Vec<usize>,
    ok: bool,
    /// Daemon shutdown: a stop that fails does not abandon the others.
    keep_going: bool,
    /// The change of roles its re-points were planned for (`Machine::generation`): once
    /// the group's master changes again, they are stale and dropped, never sent.
    generation: Option<u64>,
    /// The instances this operation takes down and leaves down (a `stop`): the
    /// `min_replicas_to_write` guard counts them as gone before the first of them stops.
    stopping: Vec<String>,
}

impl Operation {
    pub(super) fn new(steps: Vec<Step>, reply: Option<RequestId>, lines: Vec<String>) -> Operation {
        Operation {
            steps: steps.into(),
            current: None,
            reply,
            lines,
            failed: Vec::new(),
            ok: true,
            keep_going: false,
            generation: None,
            stopping: Vec::new(),
        }
    }

    /// An operation that brings instances in line with the change of roles `generation`.
    pub(super) fn for_generation(steps: Vec<Step>, generation: u64) -> Operation {
        Operation {
            generation: Some(generation),
            ..Operation::new(steps, None, Vec::new())
        }
    }

    /// Whether a step has begun and is waited for.
    pub(super) fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// Whether its current step is a failover or promotion (its re-pointing belongs here).
    pub(super) fn changes_roles(&self) -> bool {
        matches!(
            self.current,
            Some((Step::Failover { .. } | Step::Promote { .. }, _))
        )
    }

    /// Adds `line`, which says what failed: the operation is not ok.
    fn fail(&mut self, line: String) {
        self.failed.push(self.lines.len());
        self.lines.push(line);
        self.ok = false;
    }

    /// Runs `steps` (planned for the change of roles `generation`) next, before the rest
    /// of this operation's.
    pub(super) fn splice(&mut self, steps: Vec<Step>, generation: u64) {
        self.generation = Some(generation);
        for s in steps.into_iter().rev() {
            self.steps.push_front(s);
        }
    }
}

fn error_reply(id: RequestId, message: impl Into<String>) -> Effect {
    Effect::Reply {
        id,
        response: Response::Error {
            message: message.into(),
        },
    }
}

impl Machine {
    pub(super) fn on_request(
        &mut self,
        id: RequestId,
        request: Request,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if self.life.shutting_down && !matches!(request, Request::Status | Request::History) {
            fx.push(error_reply(id, "the daemon is shutting down"));
            return;
        }
        let local = self.local_names();
        let sentinels = self.local_sentinels();
        // The sentinel nodes named go separately (the plans know only instances); `start`
        // of every instance also brings back a sentinel that is down.
        let mut named_sentinels: Vec<String> = Vec::new();
        let pick = |names: Vec<String>,
                    named_sentinels: &mut Vec<String>|
         -> Result<Vec<String>, String> {
            if names.is_empty() {
                return Ok(local.clone());
            }
            let mut instances = Vec::new();
            for n in names {
                if sentinels.contains(&n) {
                    named_sentinels.push(n);
                } else if local.contains(&n) {
                    instances.push(n);
                } else {
                    return Err(format!(
                        "instance `{n}` is not run by this daemon (host `{}`)",
                        self.host
                    ));
                }
            }
            Ok(instances)
        };
        let mut stopping = Vec::new();
        let mut restart_line = None;
        let steps = match request {
            Request::History => {
                fx.push(Effect::ReplyHistory { id });
                return;
            }
            Request::Status => {
                // Answered once every target was probed after this moment (`answer_status`):
                // a status is never staler than the question.
                self.pending_status
                    .push(PendingStatus { id, asked_at: now });
                fx.push(Effect::ProbeNow);
                return;
            }
            Request::Reload => {
                self.on_reload_requested(Some(id), fx);
                return;
            }
            Request::Pause { for_ms } => {
                self.on_pause(id, Duration::from_millis(for_ms), now, fx);
                return;
            }
            Request::Resume => {
                self.on_resume(Some(id), now, fx);
                return;
            }
            // Carried out by the runtime (file work in a worker), never handed here.
            Request::Backup { .. } | Request::BackupStatus | Request::Restore { .. } => {
                Err("this request is handled by the daemon's runtime".to_owned())
            }
            Request::Failover { to, force } => self.failover_steps(to, force),
            Request::Promote { instance, force } => self.promote_steps(instance, force),
            Request::Start { instances } => {
                let all = instances.is_empty();
                pick(instances, &mut named_sentinels).map(|n| {
                    if all {
                        named_sentinels.extend(self.local_sentinels().into_iter().filter(|s| {
                            self.slots.get(s).is_some_and(|slot| {
                                matches!(slot.state.kind(), Kind::Stopped | Kind::Failed)
                            })
                        }));
                    }
                    let mut steps = plan::start(&self.group, &n);
                    for s in &named_sentinels {
                        steps.push(Step::Start { name: s.clone() });
                        steps.push(Step::AwaitReady { name: s.clone() });
                    }
                    steps
                })
            }
            Request::Stop { instances, force } => pick(instances, &mut named_sentinels).map(|n| {
                let mut steps = plan::stop(&self.group, &n, force);
                // The min-replicas guard decides on the upstream's INFO asked now, not on
                // one from before an earlier stop ended.
                if !force && n.iter().any(|name| self.guarded(name)) {
                    steps.insert(0, Step::AwaitProbes { name: n[0].clone() });
                }
                stopping = n;
                for s in &named_sentinels {
                    steps.push(Step::Stop {
                        name: s.clone(),
                        force,
                    });
                }
                steps
            }),
            Request::Restart { instances, force } => pick(instances, &mut named_sentinels)
                .and_then(|n| {
                    // An instance still running another server (adopted after `redis_server`
                    // changed) must be able to load its own dump on the configured one.
                    let diff = plan::ReloadDiff {
                        changed: n.clone(),
                        ..Default::default()
                    };
                    let running = |name: &str| self.running_server(name);
                    plan::check_servers(
                        &self.group,
                        &self.host,
                        &diff,
                        &self.server,
                        &self.server,
                        &running,
                    )
                    .map_err(|e| format!("restart refused, nothing changed: {e}"))?;
                    let (mut steps, line) =
                        self.restart_master_away(plan::restart(&self.group, &n, force), now);
                    restart_line = line;
                    for s in &named_sentinels {
                        steps.push(Step::Stop {
                            name: s.clone(),
                            force,
                        });
                        steps.push(Step::Start { name: s.clone() });
                        steps.push(Step::AwaitReady { name: s.clone() });
                    }
                    Ok(steps)
                }),
        };
        // With Sentinel, the master's role moves before it goes down.
        let steps = steps.map(|steps| self.sentinel_first(steps));
        match steps {
            Ok(steps) => {
                let mut op = Operation::new(steps, Some(id), restart_line.into_iter().collect());
                op.stopping = stopping;
                self.ops.push_back(op);
            }
            Err(message) => fx.push(error_reply(id, message)),
        }
    }

    pub(super) fn on_reload_requested(&mut self, id: Option<RequestId>, fx: &mut Vec<Effect>) {
        if self.life.shutting_down {
            if let Some(id) = id {
                fx.push(error_reply(id, "the daemon is shutting down"));
            }
            return;
        }
        // Not before start-up is over: READY=1 would end systemd's wait for it early.
        if self.life.ready_sent {
            fx.push(Effect::Notify(Notify::Reloading));
        }
        fx.push(Effect::LoadConfig {
            id,
            current: self.server,
        });
    }

    pub(super) fn on_config_loaded(
        &mut self,
        id: Option<RequestId>,
        result: Result<Box<Loaded>, String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if self.life.ready_sent {
            fx.push(Effect::Notify(Notify::Ready));
        }
        let refuse = |fx: &mut Vec<Effect>, why: &str| {
            let message = format!("reload refused, nothing changed: {why}");
            error!("{message}");
            if let Some(id) = id {
                fx.push(error_reply(id, message));
            }
        };
        let loaded = match result {
            Ok(loaded) => *loaded,
            Err(e) => return refuse(fx, &e),
        };
        let Loaded {
            group: new,
            binary,
            server,
            remote_servers,
        } = loaded;
        // The new file, with the roles the group has now (unless its actual master is gone
        // from the file: then the file's master).
        // Nothing of the machine changes before every check passed: a refused reload leaves
        // the daemon's idea of the group as it was.
        let configured = new;
        let actual = if configured.instance(&self.roles.actual).is_some() {
            self.roles.actual.clone()
        } else {
            configured.master().name.clone()
        };
        let new = crate::topology::effective(&configured, Some(&actual));
        let diff = plan::reload_diff(&self.group, &new, &self.host, &self.server, &server);
        // What each instance runs now: a remote one's answer to the question asked for this
        // reload first (the last probe may be from before its own host's reload restarted
        // it on the new server), else its last probe.
        let running = |name: &str| {
            remote_servers
                .get(name)
                .copied()
                .or_else(|| self.running_server(name))
        };
        if let Err(e) =
            plan::check_servers(&new, &self.host, &diff, &self.server, &server, &running)
        {
            return refuse(fx, &e);
        }
        let server_change = (server != self.server || binary != self.binary).then(|| {
            format!(
                "server: {} -> {server} ({}): replicas first, the master last",
                self.server,
                binary.display()
            )
        });
        if let Some(change) = &server_change {
            info!("reload: {change}");
        }
        let old_actual = std::mem::replace(&mut self.roles.actual, actual);
        self.binary = binary;
        self.server = server;
        let steps = plan::reload(&self.group, &new, &diff);
        let (mut steps, away) = self.restart_master_away(steps, now);
        info!(added = ?diff.added, removed = ?diff.removed, changed = ?diff.changed, "reload");
        let old = std::mem::replace(&mut self.group, new);
        self.configured = configured;
        if old_actual != self.roles.actual {
            // The file no longer has the actual master: its own master takes over.
            let new_actual = self.roles.actual.clone();
            self.record_change(
                &old_actual,
                &new_actual,
                crate::changes::Reason::Reload,
                now,
                fx,
            );
        }
        let (sentinel_lines, sentinel_stops) = self.reload_sentinels(&old, now, fx);
        steps.extend(sentinel_stops);
        // Removed instances keep their slot (and old endpoint) until they have stopped;
        // `forget_removed` then drops them. Added ones start with the reload's steps.
        for name in &diff.added {
            // Removed by an earlier reload and not stopped yet: keep its slot (its process,
            // its gate place); the steps below start or keep it.
            if self.slots.contains_key(name) {
                continue;
            }
            self.add_slot(name, now);
            if let Some(s) = self.slots.get_mut(name) {
                s.wanted = false;
                s.state = State::Stopped; // a new slot: nothing to leave
            }
        }
        let mut lines = vec![diff.summary()];
        lines.extend(server_change);
        for (name, why) in &diff.restart_reasons {
            lines.push(format!("{name}: restarting: {why}"));
        }
        lines.extend(sentinel_lines);
        lines.extend(away);
        if steps.is_empty() && lines.len() == 1 {
            lines.push("nothing to do".to_owned());
        }
        self.ops.push_back(Operation::new(steps, id, lines));
    }

    pub(super) fn begin_daemon_shutdown(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.life.shutting_down {
            // Second signal: stop everything still up at once (each still saves).
            info!("second stop signal: shutting down every remaining instance at once");
            let names: Vec<String> = self.slots.keys().cloned().collect();
            for name in names {
                self.begin_stop(&name, false, now, fx);
            }
            return;
        }
        info!("stop signal: shutting down every instance, replicas first");
        fx.push(Effect::Notify(Notify::Stopping));
        self.life.shutting_down = true;
        for op in self.ops.drain(..) {
            if let Some(id) = op.reply {
                fx.push(error_reply(id, "the daemon is shutting down"));
            }
        }
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in &names {
            if let Some(slot) = self.slots.get_mut(name) {
                slot.wanted = false;
                if matches!(slot.state.kind(), Kind::Waiting | Kind::Backoff) {
                    self.set_state(name, State::Stopped, fx);
                }
            }
        }
        // The host is going down, so its replicas are all away either way: the ones that no
        // instance replicates from stop at once, their final saves overlapping instead of
        // queuing (measured: 4 replicas of 218 MB took 14.5 s one by one, ~9 s together).
        // The steps below then wait for them, and stop the others in order, masters last.
        for name in &names {
            let leaf = self.group.instance(name).is_some_and(|i| !i.is_master())
                && self.group.replicas_of(name).next().is_none();
            if leaf {
                self.begin_stop(name, false, now, fx);
            }
        }
        let mut steps = plan::stop(&self.group, &names, false);
        // Instances a reload removed that still run are not in the file: stop them first.
        for name in names
            .iter()
            .filter(|n| self.group.instance(n).is_none() && !self.is_sentinel(n))
        {
            steps.insert(
                0,
                Step::Stop {
                    name: name.clone(),
                    force: false,
                },
            );
        }
        // The sentinels stop last. No failover is asked for first: when this host also
        // carries the sentinels' majority, a failover forced just before they stop left
        // them disagreeing about the master after the restart (measured in the two-host
        // test); Sentinel fails over by itself if the master stays away past down_after.
        for name in self.local_sentinels() {
            steps.push(Step::Stop { name, force: false });
        }
        let mut op = Operation::new(steps, None, Vec::new());
        op.keep_going = true;
        self.ops.push_back(op);
    }

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
                    slot.in_place = Some(Ok(()));
                    return Ok(());
                }
                // A new upstream by REPLICAOF only when the resync there is sure to be
                // partial; one that may be full waits its turn in the sync gate, as a
                // restart.
                if let Some(Some(up)) = &change.repoint
                    && let Some(why) = self.repoint_blocker(name, &up.name, now)
                {
                    if let Some(slot) = self.slots.get_mut(name) {
                        slot.in_place = Some(Err(LiveFailure::Refused(why)));
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
                slot.in_place = None;
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
            Step::SetPassword { name } => {
                let new = self.group.password().cloned();
                let Some(slot) = self.slots.get_mut(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                if slot.state.pid().is_none() {
                    // Not running: it gets the new password from its config at start.
                    slot.endpoint.password = new;
                    slot.in_place = Some(Ok(()));
                    return Ok(());
                }
                slot.in_place = None;
                fx.push(Effect::SetPassword {
                    name: name.clone(),
                    endpoint: slot.endpoint.clone(),
                    new,
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
                None => None,
                Some(Ok(())) => Some(Ok(Some(format!("{name}: {}", change.describe())))),
                Some(Err(LiveFailure::Failed(e))) => Some(Err(format!(
                    "{name}: cannot apply the change live ({e}); it runs with the old settings \
                     until it is reloaded again or restarted"
                ))),
                // `advance` turns this into a restart.
                Some(Err(LiveFailure::Refused(e))) => Some(Err(e.clone())),
            },
            Step::SetPassword { name } => match &self.slots.get(name)?.in_place {
                None => None,
                Some(Ok(())) => Some(Ok(Some(format!("{name}: password changed in place")))),
                Some(Err(LiveFailure::Failed(e) | LiveFailure::Refused(e))) => Some(Err(format!(
                    "{name}: cannot change the password in place ({e}); it keeps the old one \
                     until `redisrepd restart {name}`"
                ))),
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
            if matches!(self.slots.get(name).and_then(|s| s.in_place.as_ref()), Some(Err(LiveFailure::Refused(_)))))
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
    fn guarded(&self, name: &str) -> bool {
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

    /// Answers the status requests whose every probe target has been probed since they
    /// were asked (or that waited [`super::STATUS_WAIT`]).
    pub(super) fn answer_status(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.pending_status.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending_status);
        for p in pending {
            let all_fresh =
                (self.seen.targets.iter()).all(|(name, _)| self.seen.asked_since(name, p.asked_at));
            if all_fresh || now >= p.asked_at + super::STATUS_WAIT {
                fx.push(Effect::Reply {
                    id: p.id,
                    response: Response::Status {
                        host: self.host.clone(),
                        instances: self.status(now),
                        paused_for_ms: self
                            .paused_for(now)
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        // The runtime knows its HTTP listener; it fills this in.
                        http: None,
                    },
                });
            } else {
                self.pending_status.push(p);
            }
        }
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
