//! Control requests and the operations they become: a list of `plan::Step`s carried out
//! one after another (start, stop, rolling restart, reload, the daemon's own shutdown),
//! with the reply sent when the last step is done. The steps themselves are carried out in
//! `steps.rs`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::{Effect, Kind, Loaded, Machine, Notify, PendingStatus, RequestId, State};
use crate::control::{Request, Response};
use crate::plan::{self, Step};

/// An operation from a control request: steps run one after another.
pub(super) struct Operation {
    pub(super) steps: VecDeque<Step>,
    pub(super) current: Option<(Step, Instant)>,
    pub(super) reply: Option<RequestId>,
    pub(super) lines: Vec<String>,
    /// The indices of the `lines` that say what failed.
    pub(super) failed: Vec<usize>,
    pub(super) ok: bool,
    /// Daemon shutdown: a stop that fails does not abandon the others.
    pub(super) keep_going: bool,
    /// The change of roles its re-points were planned for (`Machine::generation`): once
    /// the group's master changes again, they are stale and dropped, never sent.
    pub(super) generation: Option<u64>,
    /// The instances this operation takes down and leaves down (a `stop`): the
    /// `min_replicas_to_write` guard counts them as gone before the first of them stops.
    pub(super) stopping: Vec<String>,
    /// A planned master restart moved the role away to this instance: it is handed back
    /// only if the group's master is still this one when the restarted master is back.
    pub(super) role_moved_to: Option<String>,
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
            role_moved_to: None,
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
    pub(super) fn fail(&mut self, line: String) {
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
            return refuse(fx, &e.to_string());
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
                        // The runtime knows its HTTP listener and reads the
                        // certificates; it fills these in.
                        http: None,
                        tls_cert_expiry: Vec::new(),
                    },
                });
            } else {
                self.pending_status.push(p);
            }
        }
    }
}
