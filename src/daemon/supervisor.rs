//! The supervisor: the one thread that owns every instance's state.
//!
//! Theory of operation. Events arrive on one channel: child exits (from SIGCHLD), Redis
//! probe results (from the prober thread), SHUTDOWN outcomes (from short-lived worker
//! threads), control requests and signals. `handle` updates state; `step` then does what
//! the state asks for now: start waiting instances that the upstream and the sync gate
//! admit, escalate stops past their deadline, and advance the head operation (a list of
//! `plan::Step`s from a control request). The loop sleeps until the next deadline or event;
//! nothing is polled on a timer except Redis health, at `health_interval`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tracing::{error, info, warn};

use super::Event;
use super::claim::{self, ClaimHandle};
use super::prober::ProbeTargets;
use crate::backoff::{self, CrashHistory};
use crate::config::{Group, Instance};
use crate::control::{Request, Response};
use crate::info::Info;
use crate::plan::{self, Step};
use crate::process::{self, Launch, OutputTail, RunAs};
use crate::redis_io::{Endpoint, ShutdownError};
use crate::render::{self, Secrets};
use crate::server::Server;
use crate::status::InstanceStatus;
use crate::{files, gate};

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running and not wanted.
    Stopped,
    /// Wanted, not started yet: waiting for its upstream, the sync gate or its port.
    Waiting { reason: String, not_before: Instant },
    /// Spawned; not yet answering PING with its data loaded.
    Starting { pid: u32, deadline: Instant },
    /// A replica that answers but is not yet in sync with its upstream.
    Syncing {
        pid: u32,
        since: Instant,
        deadline: Instant,
    },
    /// Up (and, for a replica, in sync when it got here).
    Running { pid: u32 },
    /// Being shut down.
    Stopping {
        pid: u32,
        phase: StopPhase,
        deadline: Instant,
        force: bool,
    },
    /// Crashed; restarts after `until`.
    Backoff { until: Instant },
    /// Left stopped until an operator starts it.
    Failed { reason: String },
}

/// How far a stop has escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPhase {
    Shutdown,
    Term,
    Kill,
}

impl State {
    fn label(&self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Waiting { .. } | State::Starting { .. } => "starting",
            State::Syncing { .. } => "syncing",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::Failed { .. } => "failed",
        }
    }
    fn pid(&self) -> Option<u32> {
        match self {
            State::Starting { pid, .. }
            | State::Syncing { pid, .. }
            | State::Running { pid }
            | State::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// One local instance.
struct Slot {
    state: State,
    /// What the operator wants: running or not.
    wanted: bool,
    /// The running process, if any.
    process: Option<Proc>,
    /// How to reach it, with the password it was started with (a password file changed
    /// on disk must not lock us out of stopping it).
    endpoint: Endpoint,
    tail: OutputTail,
    crashes: CrashHistory,
    restarts: u32,
    last_error: Option<String>,
    last_sync: Option<String>,
    sync_timeouts: u32,
    /// The upstream's `sync_full` when this replica was released through the gate.
    sync_full_before: Option<i64>,
    /// This replica's place in its upstream's sync gate, asked for or held.
    claim: Option<GateClaim>,
    /// A password change in place, from a reload.
    password_change: PasswordChange,
    /// The next launch follows a crash, so it counts as a restart.
    after_crash: bool,
    /// Starts in a row that failed before the process ran (port taken, cannot write).
    failed_starts: u32,
    /// When the current process was spawned.
    launched_at: Option<Instant>,
    /// Recent (time, master_repl_offset) samples, for the write rate.
    offsets: VecDeque<(Instant, i64)>,
    /// Started with `appendonly no` to resume from its RDB: switch AOF back on once in
    /// sync.
    aof_to_restore: bool,
}

/// Where a password change in place stands.
enum PasswordChange {
    Pending,
    Done(Result<(), String>),
}

struct GateClaim {
    _handle: ClaimHandle,
    granted: bool,
}

/// An instance's process: our child, or one an earlier daemon started and we adopted.
enum Proc {
    Child(Child),
    /// Its exit is reported by a pidfd watcher as `Event::AdoptedExited`.
    Adopted(u32),
}

/// An operation from a control request: steps run one after another.
struct Operation {
    steps: VecDeque<Step>,
    current: Option<(Step, Instant)>,
    reply: Option<Sender<Response>>,
    lines: Vec<String>,
    ok: bool,
    /// Daemon shutdown: a stop that fails does not abandon the others.
    keep_going: bool,
}

/// The supervisor's state. Owned by one thread.
pub struct Supervisor {
    pub group: Group,
    config_path: PathBuf,
    host: String,
    redis_server: PathBuf,
    /// What `redis_server` is (asked at start and at each reload): rendering follows it.
    server: Server,
    run_as: Option<RunAs>,
    slots: BTreeMap<String, Slot>,
    infos: HashMap<String, (Instant, Result<Info, String>)>,
    ops: VecDeque<Operation>,
    events: Sender<Event>,
    probe_targets: ProbeTargets,
    shutting_down: bool,
    pub exit_code: Option<u8>,
    ready_sent: bool,
    last_status_line: String,
}

impl Supervisor {
    /// A supervisor for `host` with every local instance wanted, run by the `redis_server`
    /// binary found and what it is.
    pub fn new(
        group: Group,
        config_path: PathBuf,
        host: String,
        (redis_server, server): (PathBuf, Server),
        run_as: Option<RunAs>,
        events: Sender<Event>,
        probe_targets: ProbeTargets,
    ) -> Self {
        let mut sup = Supervisor {
            group,
            config_path,
            host,
            redis_server,
            server,
            run_as,
            slots: BTreeMap::new(),
            infos: HashMap::new(),
            ops: VecDeque::new(),
            events,
            probe_targets,
            shutting_down: false,
            exit_code: None,
            ready_sent: false,
            last_status_line: String::new(),
        };
        let now = Instant::now();
        let names: Vec<String> = sup
            .group
            .start_order(&sup.host)
            .iter()
            .map(|i| i.name.clone())
            .collect();
        for name in names {
            sup.add_slot(&name, now);
            sup.adopt(&name, now);
        }
        sup.update_probe_targets();
        sup
    }

    fn add_slot(&mut self, name: &str, now: Instant) {
        let Some(inst) = self.group.instance(name) else {
            return;
        };
        let slot = Slot {
            state: State::Waiting {
                reason: "starting".to_owned(),
                not_before: now,
            },
            wanted: true,
            process: None,
            endpoint: Endpoint::of(&self.group, inst),
            tail: Default::default(),
            crashes: CrashHistory::default(),
            restarts: 0,
            last_error: None,
            last_sync: None,
            sync_timeouts: 0,
            sync_full_before: None,
            claim: None,
            aof_to_restore: false,
            launched_at: None,
            offsets: VecDeque::new(),
            after_crash: false,
            failed_starts: 0,
            password_change: PasswordChange::Done(Ok(())),
        };
        self.slots.insert(name.to_owned(), slot);
    }

    /// Takes over an instance that an earlier daemon started and that still runs, so a
    /// daemon restart (crash, upgrade) never bounces Redis; removes a stale pid file.
    fn adopt(&mut self, name: &str, now: Instant) {
        let Some(inst) = self.group.instance(name).cloned() else {
            return;
        };
        let pid_path = self.group.pid_path(&inst);
        if !pid_path.exists() {
            return;
        }
        let Some(pid) = process::adoptable(&pid_path, &inst.address()) else {
            info!(instance = %name, pid_file = %pid_path.display(), "removing a stale pid file");
            let _ = std::fs::remove_file(&pid_path);
            return;
        };
        let events = self.events.clone();
        let watched_name = name.to_owned();
        let watch = process::watch_exit(pid, move || {
            let _ = events.send(Event::AdoptedExited {
                name: watched_name,
                pid,
            });
        });
        if let Err(e) = watch {
            warn!(instance = %name, pid, "cannot watch the running instance ({e}); not adopting it");
            return;
        }
        info!(instance = %name, pid, "adopted the running instance");
        let deadline = now + self.group.supervise.start_timeout;
        if let Some(slot) = self.slots.get_mut(name) {
            slot.process = Some(Proc::Adopted(pid));
            slot.state = State::Starting { pid, deadline };
        }
    }

    /// Local instances plus every upstream of a local replica (possibly on other hosts).
    fn update_probe_targets(&self) {
        let mut targets: Vec<(String, Endpoint)> = Vec::new();
        for (name, slot) in &self.slots {
            targets.push((name.clone(), slot.endpoint.clone()));
            if let Some(up) = self
                .group
                .instance(name)
                .and_then(|i| self.group.upstream(i))
                && !self.slots.contains_key(&up.name)
                && !targets.iter().any(|(n, _)| n == &up.name)
            {
                targets.push((up.name.clone(), Endpoint::of(&self.group, up)));
            }
        }
        if let Ok(mut t) = self.probe_targets.lock() {
            *t = targets;
        }
    }

    /// The earliest moment `step` has something to do.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut next = now + Duration::from_secs(5);
        for slot in self.slots.values() {
            let t = match &slot.state {
                State::Waiting { not_before, .. } if *not_before > now => Some(*not_before),
                State::Waiting { .. } => Some(now + self.group.supervise.health_interval),
                State::Starting { deadline, .. }
                | State::Syncing { deadline, .. }
                | State::Stopping { deadline, .. } => Some(*deadline),
                State::Backoff { until } => Some(*until),
                _ => None,
            };
            if let Some(t) = t {
                next = next.min(t);
            }
        }
        if self.ops.front().is_some_and(|o| o.current.is_some()) {
            next = next.min(now + Duration::from_secs(1));
        }
        next
    }

    /// Reacts to one event.
    pub fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::ChildExited => self.reap(now),
            Event::AdoptedExited { name, pid } => self.on_adopted_exit(&name, pid, now),
            Event::Probe { name, result } => self.on_probe(&name, result, now),
            Event::ShutdownDone { name, pid, result } => {
                self.on_shutdown_done(&name, pid, result, now)
            }
            Event::Control { request, reply } => self.on_request(request, reply, now),
            Event::Terminate => self.begin_daemon_shutdown(now),
            Event::Reload => self.reload(None, now),
            Event::ClaimResult {
                name,
                granted,
                detail,
            } => self.on_claim(&name, granted, detail, now),
            Event::PasswordSet { name, result } => {
                if let Some(slot) = self.slots.get_mut(&name) {
                    slot.password_change = PasswordChange::Done(result.map(|new| {
                        slot.endpoint.password = new;
                    }));
                }
                self.update_probe_targets();
            }
            Event::AofRestored { name, result } => {
                if let Some(slot) = self.slots.get_mut(&name) {
                    match result {
                        Ok(()) => info!(instance = %name, "AOF switched back on"),
                        Err(e) => {
                            let why = format!(
                                "AOF could not be switched back on ({e}): run `CONFIG SET appendonly yes` on it"
                            );
                            error!(instance = %name, "{why}");
                            slot.last_error = Some(why);
                        }
                    }
                }
            }
        }
    }

    // ----- child exits -------------------------------------------------------------------

    /// SIGCHLDs coalesce, so every child is checked on each one.
    fn reap(&mut self, now: Instant) {
        let mut exited = Vec::new();
        for (name, slot) in &mut self.slots {
            if let Some(Proc::Child(child)) = &mut slot.process
                && let Ok(Some(status)) = child.try_wait()
            {
                slot.process = None;
                exited.push((name.clone(), Some(status)));
            }
        }
        for (name, status) in exited {
            self.on_exit(&name, status, now);
        }
    }

    fn on_adopted_exit(&mut self, name: &str, pid: u32, now: Instant) {
        let ours = self
            .slots
            .get(name)
            .is_some_and(|s| matches!(s.process, Some(Proc::Adopted(p)) if p == pid));
        if ours {
            if let Some(slot) = self.slots.get_mut(name) {
                slot.process = None;
            }
            self.on_exit(name, None, now);
        }
    }

    fn on_exit(&mut self, name: &str, status: Option<ExitStatus>, now: Instant) {
        let Some(inst) = self.group.instance(name).cloned() else {
            // Removed by a reload and now stopped.
            if let Some(slot) = self.slots.get_mut(name) {
                slot.state = State::Stopped;
            }
            return;
        };
        let pid_path = self.group.pid_path(&inst);
        let _ = std::fs::remove_file(&pid_path);
        let persists = self.group.persists(&inst);
        let has_replicas = self.group.replicas_of(name).next().is_some();
        let sup = self.group.supervise.clone();
        let shutting_down = self.shutting_down;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if matches!(slot.state, State::Stopping { .. }) {
            info!(instance = %name, status = %describe_exit(status), "stopped");
            slot.state = State::Stopped;
            return;
        }
        let how = describe_exit(status);
        let tail: Vec<String> = slot
            .tail
            .lock()
            .map(|t| t.lines.iter().rev().take(3).rev().cloned().collect())
            .unwrap_or_default();
        let mut reason = format!("exited unexpectedly ({how})");
        if !tail.is_empty() {
            reason.push_str(&format!("; last output: {}", tail.join(" | ")));
        }
        if tail.iter().any(|l| l.contains("Address already in use")) {
            let holder = process::port_holder(inst.bind, inst.port)
                .unwrap_or_else(|| "another process".into());
            reason = format!("port {} is held by {holder}", inst.address());
        }
        if shutting_down || !slot.wanted {
            slot.state = State::Stopped;
            return;
        }
        error!(instance = %name, "{reason}");
        slot.last_error = Some(reason.clone());
        let crashes = slot.crashes.record(now, sup.crash_loop_window);
        if inst.is_master() && !persists && has_replicas {
            let why = format!(
                "{reason}; not restarted: this master has no persistence, so it would come back \
                 empty and its replicas would copy the empty data set; recover the data, then \
                 `redisrepd start {name}`"
            );
            error!(instance = %name, "{why}");
            slot.state = State::Failed { reason: why };
        } else if crashes >= sup.crash_loop_limit as usize {
            let why = format!(
                "crashed {crashes} times within {}: {reason}; left stopped: fix the cause, then \
                 `redisrepd start {name}`",
                jiff_like(sup.crash_loop_window)
            );
            error!(instance = %name, "{why}");
            slot.state = State::Failed { reason: why };
        } else {
            let delay = backoff::restart_delay(crashes, sup.restart_delay, sup.restart_delay_max);
            info!(instance = %name, delay_ms = delay.as_millis() as u64, "restarting after backoff");
            slot.after_crash = true;
            slot.state = State::Backoff { until: now + delay };
        }
    }

    // ----- probes ------------------------------------------------------------------------

    fn on_probe(&mut self, name: &str, result: Result<Info, String>, now: Instant) {
        self.infos.insert(name.to_owned(), (now, result));
        let Some(inst) = self.group.instance(name).cloned() else {
            return;
        };
        let Some((_, Ok(info))) = self.infos.get(name) else {
            return;
        };
        if let (Some(offset), Some(slot)) = (info.repl_offset(), self.slots.get_mut(name)) {
            slot.offsets.push_back((now, offset));
            while slot
                .offsets
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                slot.offsets.pop_front();
            }
        }
        let upstream_info = inst
            .replica_of
            .as_ref()
            .and_then(|u| self.fresh_info(u, now));
        let in_sync = upstream_info.is_some_and(|up| info.in_sync_with(up, inst.bind, inst.port));
        let sync_full_now = upstream_info.map(Info::sync_full);
        let owner_pid = info.process_id();
        let sync_timeout = self.group.supervise.sync_timeout;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        match slot.state.clone() {
            State::Starting { pid, .. } if owner_pid == Some(pid) && !info.loading() => {
                if inst.is_master() {
                    info!(instance = %name, pid, "running");
                    slot.state = State::Running { pid };
                } else {
                    info!(instance = %name, pid, "answering; syncing with its upstream");
                    slot.state = State::Syncing {
                        pid,
                        since: now,
                        deadline: now + sync_timeout,
                    };
                }
            }
            State::Syncing { pid, since, .. } if in_sync => {
                // The replica's own log says which it was; the upstream's counter is the
                // fallback (when it logs to a file), ambiguous if others synced meanwhile.
                let logged = slot.tail.lock().ok().and_then(|t| t.sync_kind);
                let kind = match (logged, slot.sync_full_before, sync_full_now) {
                    (Some(kind), _, _) => kind.label(),
                    (None, Some(before), Some(after)) if after > before => "full sync",
                    (None, Some(_), Some(_)) => "partial resync",
                    _ => "sync",
                };
                if slot.aof_to_restore {
                    slot.aof_to_restore = false;
                    spawn_aof_restore(self.events.clone(), name.to_owned(), slot.endpoint.clone());
                }
                let took = now
                    .duration_since(slot.launched_at.unwrap_or(since))
                    .as_secs_f64();
                let line = format!("{kind}, in sync {took:.1}s after start");
                if slot.launched_at.is_none() {
                    // Adopted: we did not see this process start or sync.
                    slot.state = State::Running { pid };
                    return;
                }
                info!(instance = %name, pid, "in sync: {line}");
                slot.last_sync = Some(line);
                slot.state = State::Running { pid };
            }
            _ => {}
        }
    }

    /// The last successful probe of `name`, if recent enough to act on.
    fn fresh_info(&self, name: &str, now: Instant) -> Option<&Info> {
        let max_age = self.group.supervise.health_interval * 3 + Duration::from_secs(2);
        match self.infos.get(name) {
            Some((at, Ok(info))) if now.duration_since(*at) <= max_age => Some(info),
            _ => None,
        }
    }

    // ----- stopping ----------------------------------------------------------------------

    /// Begins an authenticated SHUTDOWN SAVE of `name`; its outcome arrives as an event.
    fn begin_stop(&mut self, name: &str, force: bool, now: Instant) {
        let timeout = self.group.supervise.shutdown_timeout;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.wanted = false;
        let Some(pid) = slot.state.pid().filter(|_| slot.process.is_some()) else {
            slot.state = State::Stopped;
            return;
        };
        if matches!(slot.state, State::Stopping { .. }) {
            return;
        }
        info!(instance = %name, pid, "stopping: SHUTDOWN SAVE");
        slot.state = State::Stopping {
            pid,
            phase: StopPhase::Shutdown,
            deadline: now + timeout,
            force,
        };
        spawn_shutdown(
            self.events.clone(),
            name.to_owned(),
            pid,
            slot.endpoint.clone(),
            false,
            timeout,
        );
    }

    fn on_shutdown_done(
        &mut self,
        name: &str,
        pid: u32,
        result: Result<(), ShutdownError>,
        now: Instant,
    ) {
        let timeout = self.group.supervise.shutdown_timeout;
        let events = self.events.clone();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let State::Stopping {
            pid: stopping_pid,
            force,
            ..
        } = slot.state.clone()
        else {
            return;
        };
        if stopping_pid != pid {
            return;
        }
        match result {
            Ok(()) => {} // the exit arrives by SIGCHLD
            Err(ShutdownError::Refused(msg)) if force => {
                warn!(instance = %name, pid, "final save failed ({msg}); --force: SHUTDOWN NOSAVE, unsaved writes are lost");
                spawn_shutdown(
                    events,
                    name.to_owned(),
                    pid,
                    slot.endpoint.clone(),
                    true,
                    timeout,
                );
            }
            Err(ShutdownError::Refused(msg)) => {
                let why = format!(
                    "stop failed, left running (nothing lost): {msg} (its final save failed: \
                     check its data dir and disk); fix the cause and stop again, or \
                     `redisrepd stop --force {name}` to stop it without saving"
                );
                error!(instance = %name, pid, "{why}");
                slot.last_error = Some(why);
                slot.wanted = true;
                slot.state = State::Running { pid };
            }
            Err(e) => {
                // Unreachable or silent: SIGTERM makes Redis save and exit just as SHUTDOWN.
                warn!(instance = %name, pid, "SHUTDOWN did not complete ({e}); sending SIGTERM");
                let _ = process::send_signal(pid, Signal::SIGTERM);
                slot.state = State::Stopping {
                    pid,
                    phase: StopPhase::Term,
                    deadline: now + timeout,
                    force,
                };
            }
        }
    }

    // ----- the periodic step -------------------------------------------------------------

    /// Does what the current state asks for at `now`.
    pub fn step(&mut self, now: Instant) {
        self.escalate_and_expire(now);
        self.forget_removed();
        // A replica holds its gate place from before its start until it is in sync.
        for slot in self.slots.values_mut() {
            if !matches!(
                slot.state,
                State::Waiting { .. } | State::Starting { .. } | State::Syncing { .. }
            ) {
                slot.claim = None;
            }
        }
        if !self.shutting_down {
            self.start_waiting(now);
        }
        self.advance_ops(now);
        self.notify_systemd();
    }

    /// Drops the slots of instances a reload removed, once their process is gone.
    fn forget_removed(&mut self) {
        let before = self.slots.len();
        let group = &self.group;
        self.slots.retain(|name, slot| {
            slot.process.is_some()
                || group
                    .start_order(&self.host)
                    .iter()
                    .any(|i| &i.name == name)
        });
        if self.slots.len() != before {
            self.update_probe_targets();
        }
    }

    fn escalate_and_expire(&mut self, now: Instant) {
        let timeout = self.group.supervise.shutdown_timeout;
        let mut start_timeouts = Vec::new();
        for (name, slot) in &mut self.slots {
            match slot.state.clone() {
                State::Stopping {
                    pid,
                    phase,
                    deadline,
                    force,
                } if now >= deadline => {
                    let (sig, next) = match phase {
                        StopPhase::Shutdown => (Signal::SIGTERM, StopPhase::Term),
                        _ => (Signal::SIGKILL, StopPhase::Kill),
                    };
                    if sig == Signal::SIGKILL {
                        error!(instance = %name, pid, "still running {}s after SIGTERM: SIGKILL (unsaved writes are lost)", timeout.as_secs());
                    } else {
                        warn!(instance = %name, pid, "no exit within shutdown_timeout: SIGTERM");
                    }
                    let _ = process::send_signal(pid, sig);
                    slot.state = State::Stopping {
                        pid,
                        phase: next,
                        deadline: now + timeout,
                        force,
                    };
                }
                State::Starting { pid, deadline } if now >= deadline => {
                    start_timeouts.push((name.clone(), pid));
                }
                State::Syncing { pid, deadline, .. } if now >= deadline => {
                    warn!(instance = %name, pid, "not in sync within sync_timeout; releasing its place in the sync gate");
                    slot.sync_timeouts += 1;
                    slot.last_error = Some("did not come in sync within sync_timeout".to_owned());
                    slot.state = State::Running { pid };
                }
                State::Backoff { until } if now >= until => {
                    let reason = if slot.after_crash {
                        "restarting after a crash"
                    } else {
                        "retrying the start"
                    };
                    slot.state = State::Waiting {
                        reason: reason.to_owned(),
                        not_before: now,
                    };
                }
                _ => {}
            }
        }
        for (name, pid) in start_timeouts {
            error!(instance = %name, pid, "did not answer PING within start_timeout: killing it");
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.last_error = Some("did not answer PING within start_timeout".to_owned());
                // Its exit (SIGCHLD) ends this state; do not kill it again meanwhile.
                slot.state = State::Starting {
                    pid,
                    deadline: now + self.group.supervise.shutdown_timeout,
                };
            }
            let _ = process::send_signal(pid, Signal::SIGKILL);
        }
    }

    /// Starts the waiting instances whose upstream answers and whose gate admits them.
    fn start_waiting(&mut self, now: Instant) {
        let order: Vec<Instance> = self
            .group
            .start_order(&self.host)
            .into_iter()
            .cloned()
            .collect();
        for inst in order {
            let Some(slot) = self.slots.get(&inst.name) else {
                continue;
            };
            let State::Waiting { not_before, .. } = slot.state else {
                continue;
            };
            if now < not_before {
                continue;
            }
            let hold = match self.start_blocker(&inst, now) {
                Some(reason) => reason,
                None => match self.gate_place(&inst) {
                    Some(reason) => reason,
                    None => match self.launch(&inst, now) {
                        Ok(()) => continue,
                        Err(reason) => reason,
                    },
                },
            };
            if let Some(slot) = self.slots.get_mut(&inst.name)
                && let State::Waiting { reason, .. } = &mut slot.state
                && *reason != hold
            {
                info!(instance = %inst.name, "waiting: {hold}");
                *reason = hold;
            }
        }
    }

    /// For a replica: asks its upstream for a place in the gate, or says it is asking.
    /// `None` once the place is granted (or for a master, which needs none).
    fn gate_place(&mut self, inst: &Instance) -> Option<String> {
        let up = self.group.upstream(inst)?.clone();
        let max = self.group.supervise.max_concurrent_syncs;
        let timeout = self
            .group
            .supervise
            .start_timeout
            .min(Duration::from_secs(5));
        let events = self.events.clone();
        let endpoint = self
            .slots
            .get(&up.name)
            .map(|s| s.endpoint.clone())
            .unwrap_or_else(|| Endpoint::of(&self.group, &up));
        let slot = self.slots.get_mut(&inst.name)?;
        match &slot.claim {
            Some(c) if c.granted => None,
            Some(_) => Some(format!("asking `{}` for a place in its sync gate", up.name)),
            None => {
                slot.claim = Some(GateClaim {
                    _handle: claim::request(
                        events,
                        inst.name.clone(),
                        endpoint,
                        inst.address(),
                        max,
                        timeout,
                    ),
                    granted: false,
                });
                Some(format!("asking `{}` for a place in its sync gate", up.name))
            }
        }
    }

    fn on_claim(&mut self, name: &str, granted: bool, detail: String, now: Instant) {
        let up = self
            .group
            .instance(name)
            .and_then(|i| i.replica_of.clone())
            .unwrap_or_default();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let Some(claim) = slot.claim.as_mut() else {
            return;
        };
        if granted {
            claim.granted = true;
            return;
        }
        slot.claim = None;
        if let State::Waiting { reason, not_before } = &mut slot.state {
            // Jitter, so that daemons on different hosts do not ask again in lockstep.
            *not_before = now + Duration::from_millis(rand::random_range(100..400));
            *reason = format!("waiting in the sync gate of `{up}`: {detail}");
        }
    }

    /// Why `inst` may not start now, if anything holds it back.
    fn start_blocker(&self, inst: &Instance, now: Instant) -> Option<String> {
        let up = self.group.upstream(inst)?;
        let up_ready = match self.slots.get(&up.name) {
            Some(s) => matches!(s.state, State::Running { .. } | State::Syncing { .. }),
            None => self.fresh_info(&up.name, now).is_some(),
        };
        if !up_ready {
            let why = match self.infos.get(&up.name) {
                Some((_, Err(e))) => e.clone(),
                _ => "not running yet".to_owned(),
            };
            return Some(format!(
                "waiting for upstream `{}` at {}: {why}",
                up.name,
                up.address()
            ));
        }
        let ours: Vec<&Instance> = self
            .group
            .replicas_of(&up.name)
            .filter(|r| {
                self.slots.get(&r.name).is_some_and(|s| {
                    matches!(s.state, State::Starting { .. } | State::Syncing { .. })
                })
            })
            .collect();
        let syncing = gate::syncing(ours.len(), self.fresh_info(&up.name, now), |line| {
            ours.iter().any(|r| line.is(r.bind, r.port))
        });
        let max = self.group.supervise.max_concurrent_syncs;
        if !gate::admits(syncing, max) {
            return Some(format!(
                "waiting in the sync gate of `{}`: {syncing} replica(s) syncing, max_concurrent_syncs = {max}",
                up.name
            ));
        }
        None
    }

    /// Writes the config and spawns the instance.
    fn launch(&mut self, inst: &Instance, now: Instant) -> Result<(), String> {
        if process::port_in_use(inst.bind, inst.port) {
            let holder = process::port_holder(inst.bind, inst.port)
                .unwrap_or_else(|| "another process".into());
            let reason = format!("port {} is held by {holder}", inst.address());
            self.fail_attempt(&inst.name, reason.clone(), now);
            return Ok(());
        }
        let conf = self.group.conf_path(inst);
        let data = self.group.data_path(inst);
        let resume_from_rdb = self.resumes_from_rdb(inst);
        let mut conf_text = render::render(&self.group, inst, &self.server, Secrets::Show);
        if resume_from_rdb {
            conf_text.push_str(RESUME_FROM_RDB);
        }
        let prepared = (|| -> std::io::Result<()> {
            files::ensure_dir(&data, 0o750)?;
            files::write_atomic(&conf, conf_text.as_bytes(), 0o600)?;
            if let Some(run_as) = &self.run_as {
                let own = |path: &std::path::Path| {
                    std::os::unix::fs::chown(
                        path,
                        Some(run_as.uid.as_raw()),
                        Some(run_as.gid.as_raw()),
                    )
                };
                own(&data)?;
                own(&conf)?;
                if let Some(log) = self.group.log_path(inst) {
                    if !log.exists() {
                        files::write_atomic(&log, b"", 0o640)?;
                    }
                    own(&log)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = prepared {
            let reason = format!(
                "cannot prepare {} / {}: {e}",
                conf.display(),
                data.display()
            );
            self.fail_attempt(&inst.name, reason, now);
            return Ok(());
        }
        let sync_full_before = self
            .group
            .upstream(inst)
            .and_then(|u| self.fresh_info(&u.name, now))
            .map(Info::sync_full);
        let Some(slot) = self.slots.get_mut(&inst.name) else {
            return Ok(());
        };
        if let Ok(mut t) = slot.tail.lock() {
            t.sync_kind = None;
        }
        slot.aof_to_restore = resume_from_rdb;
        slot.launched_at = Some(now);
        slot.failed_starts = 0;
        if std::mem::take(&mut slot.after_crash) {
            slot.restarts += 1;
        }
        let launch = Launch {
            name: &inst.name,
            redis_server: &self.redis_server,
            conf: &conf,
            run_as: self.run_as.as_ref(),
        };
        match process::spawn(&launch, &slot.tail) {
            Ok(child) => {
                let pid = child.id();
                let _ = files::write_atomic(
                    &self.group.pid_path(inst),
                    process::pid_file_contents(pid).as_bytes(),
                    0o644,
                );
                info!(instance = %inst.name, pid, address = %inst.address(), "started");
                slot.process = Some(Proc::Child(child));
                slot.endpoint = Endpoint::of(&self.group, inst);
                slot.sync_full_before = sync_full_before;
                slot.state = State::Starting {
                    pid,
                    deadline: now + self.group.supervise.start_timeout,
                };
                self.update_probe_targets();
                Ok(())
            }
            Err(e) => {
                let reason = format!("cannot run {}: {e}", self.redis_server.display());
                self.fail_attempt(&inst.name, reason, now);
                Ok(())
            }
        }
    }

    /// Redis 7.0 resumes replication (a partial resync) only when it loaded an RDB: a
    /// replica that loads its AOF asks for a full copy (measured). So a replica with AOF
    /// whose RDB is at least as new as its AOF (as after a graceful `SHUTDOWN SAVE`)
    /// starts with AOF off, loads the RDB, and gets AOF back once in sync. Masters are
    /// not treated so: until AOF is back on, their new writes would not be durable.
    fn resumes_from_rdb(&self, inst: &Instance) -> bool {
        let aof = self
            .group
            .directive(inst, "appendonly")
            .is_some_and(|v| v.iter().any(|s| s.eq_ignore_ascii_case("yes")));
        if inst.is_master() || !aof {
            return false;
        }
        let first = |key: &str, default: &str| {
            self.group
                .directive(inst, key)
                .and_then(|v| v.first().cloned())
                .unwrap_or_else(|| default.to_owned())
        };
        let data = self.group.data_path(inst);
        files::rdb_at_least_as_new_as_aof(
            &data.join(first("dbfilename", "dump.rdb")),
            &data.join(first("appenddirname", "appendonlydir")),
        )
    }

    /// A start that failed before the process ran: retried with backoff, like a crash.
    fn fail_attempt(&mut self, name: &str, reason: String, now: Instant) {
        let sup = self.group.supervise.clone();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        error!(instance = %name, "{reason}");
        // Not a crash (nothing ran): retried for as long as it takes, never `failed`.
        slot.failed_starts += 1;
        let delay = backoff::restart_delay(
            slot.failed_starts as usize,
            sup.restart_delay,
            sup.restart_delay_max,
        );
        slot.last_error = Some(format!("{reason}; retrying in {}", jiff_like(delay)));
        slot.state = State::Backoff { until: now + delay };
    }

    // ----- control requests and operations -----------------------------------------------

    fn on_request(&mut self, request: Request, reply: Sender<Response>, now: Instant) {
        if self.shutting_down && request != Request::Status {
            let _ = reply.send(Response::Error {
                message: "the daemon is shutting down".to_owned(),
            });
            return;
        }
        let local: Vec<String> = self
            .group
            .start_order(&self.host)
            .iter()
            .map(|i| i.name.clone())
            .collect();
        let pick = |names: Vec<String>| -> Result<Vec<String>, String> {
            if names.is_empty() {
                return Ok(local.clone());
            }
            for n in &names {
                if !local.contains(n) {
                    return Err(format!(
                        "instance `{n}` is not run by this daemon (host `{}`)",
                        self.host
                    ));
                }
            }
            Ok(names)
        };
        let steps = match request {
            Request::Status => {
                let _ = reply.send(Response::Status {
                    host: self.host.clone(),
                    instances: self.status(now),
                });
                return;
            }
            Request::Reload => {
                self.reload(Some(reply), now);
                return;
            }
            Request::Start { instances } => pick(instances).map(|n| plan::start(&self.group, &n)),
            Request::Stop { instances, force } => {
                pick(instances).map(|n| plan::stop(&self.group, &n, force))
            }
            Request::Restart { instances, force } => pick(instances).and_then(|n| {
                // An instance still running another server (adopted after `redis_server`
                // changed) must be able to load its own dump on the configured one.
                let diff = plan::ReloadDiff {
                    changed: n.clone(),
                    ..Default::default()
                };
                let running = |name: &str| match self.infos.get(name) {
                    Some((_, Ok(info))) => Server::from_info(info),
                    _ => None,
                };
                plan::check_servers(
                    &self.group,
                    &self.host,
                    &diff,
                    &self.server,
                    &self.server,
                    &running,
                )
                .map_err(|e| format!("restart refused, nothing changed: {e}"))?;
                Ok(plan::restart(&self.group, &n, force))
            }),
        };
        match steps {
            Ok(steps) => self.ops.push_back(Operation {
                steps: steps.into(),
                current: None,
                reply: Some(reply),
                lines: Vec::new(),
                ok: true,
                keep_going: false,
            }),
            Err(message) => {
                let _ = reply.send(Response::Error { message });
            }
        }
        self.step(now);
    }

    fn reload(&mut self, reply: Option<Sender<Response>>, now: Instant) {
        // Not before start-up is over: READY=1 would end systemd's wait for it early.
        let notify = self.ready_sent;
        if notify {
            // MONOTONIC_USEC lets systemd tell this reload from an earlier one.
            let mut states = vec![sd_notify::NotifyState::Reloading];
            states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
            let _ = sd_notify::notify(&states);
        }
        let result = crate::config::load(&self.config_path);
        if notify {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
        let checked = match result {
            Ok(c) => c,
            Err(e) => {
                let message = format!("reload refused, nothing changed: {e}");
                error!("{message}");
                if let Some(r) = reply {
                    let _ = r.send(Response::Error { message });
                }
                return;
            }
        };
        for w in &checked.warnings {
            warn!("{}: {w}", self.config_path.display());
        }
        let new = checked.group;
        let (new_path, new_server) = match crate::server::configured(&new, &self.config_path) {
            Ok(found) => found,
            Err(e) => {
                let message = format!("reload refused, nothing changed: {e}");
                error!("{message}");
                if let Some(r) = reply {
                    let _ = r.send(Response::Error { message });
                }
                return;
            }
        };
        let diff = plan::reload_diff(&self.group, &new, &self.host, &self.server, &new_server);
        // Replicas on other hosts are not probed: ask the ones under a changing instance
        // now (a short timeout each; a reload is rare) what they run.
        let remote: HashMap<String, Server> = if new_server == self.server {
            HashMap::new()
        } else {
            diff.changed
                .iter()
                .flat_map(|n| new.replicas_of(n))
                .filter(|r| r.host != self.host)
                .filter_map(|r| {
                    let info = Endpoint::of(&new, r)
                        .info(Duration::from_millis(500))
                        .ok()?;
                    Some((r.name.clone(), Server::from_info(&info)?))
                })
                .collect()
        };
        let running = |name: &str| match self.infos.get(name) {
            Some((_, Ok(info))) => Server::from_info(info),
            _ => remote.get(name).copied(),
        };
        let checked_servers =
            plan::check_servers(&new, &self.host, &diff, &self.server, &new_server, &running);
        if let Err(e) = checked_servers {
            let message = format!("reload refused, nothing changed: {e}");
            error!("{message}");
            if let Some(r) = reply {
                let _ = r.send(Response::Error { message });
            }
            return;
        }
        let server_change =
            (new_server != self.server || new_path != self.redis_server).then(|| {
                format!(
                    "server: {} -> {new_server} ({}): replicas first, the master last",
                    self.server,
                    new_path.display()
                )
            });
        if let Some(change) = &server_change {
            info!("reload: {change}");
        }
        self.redis_server = new_path;
        self.server = new_server;
        let steps = plan::reload(&self.group, &new, &diff);
        info!(added = ?diff.added, removed = ?diff.removed, changed = ?diff.changed, "reload");
        self.group = new;
        // Removed instances keep their slot (and old endpoint) until they have stopped;
        // `step` then forgets them.
        for name in &diff.added {
            self.add_slot(name, now);
            if let Some(s) = self.slots.get_mut(name) {
                s.wanted = false;
                s.state = State::Stopped;
            }
        }
        self.update_probe_targets();
        let mut lines = vec![format!(
            "reload: {} added, {} removed, {} changed, {} unchanged",
            diff.added.len(),
            diff.removed.len(),
            diff.changed.len(),
            diff.unchanged.len()
        )];
        lines.extend(server_change);
        if steps.is_empty() {
            lines.push("nothing to do".to_owned());
        }
        self.ops.push_back(Operation {
            steps: steps.into(),
            current: None,
            reply,
            lines,
            ok: true,
            keep_going: false,
        });
    }

    fn begin_daemon_shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            // Second signal: stop everything still up at once (each still saves).
            info!("second stop signal: shutting down every remaining instance at once");
            let names: Vec<String> = self.slots.keys().cloned().collect();
            for name in names {
                self.begin_stop(&name, false, now);
            }
            return;
        }
        info!("stop signal: shutting down every instance, replicas first");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.shutting_down = true;
        for op in self.ops.drain(..) {
            if let Some(r) = op.reply {
                let _ = r.send(Response::Error {
                    message: "the daemon is shutting down".to_owned(),
                });
            }
        }
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for slot in self.slots.values_mut() {
            slot.wanted = false;
            if matches!(slot.state, State::Waiting { .. } | State::Backoff { .. }) {
                slot.state = State::Stopped;
            }
        }
        let steps = plan::stop(&self.group, &names, false);
        self.ops.push_back(Operation {
            steps: steps.into(),
            current: None,
            reply: None,
            lines: Vec::new(),
            ok: true,
            keep_going: true,
        });
    }

    fn advance_ops(&mut self, now: Instant) {
        while let Some(mut op) = self.ops.pop_front() {
            let finished = self.advance(&mut op, now);
            if !finished {
                self.ops.push_front(op);
                return;
            }
            if let Some(reply) = op.reply.take() {
                let _ = reply.send(Response::Done {
                    ok: op.ok,
                    lines: op.lines,
                });
            }
        }
        if self.shutting_down && self.exit_code.is_none() {
            let left: Vec<String> = self
                .slots
                .iter()
                .filter(|(_, s)| s.process.is_some())
                .map(|(n, s)| format!("{n} (pid {})", s.state.pid().unwrap_or(0)))
                .collect();
            if left.is_empty() {
                info!("every instance stopped");
                self.exit_code = Some(crate::EXIT_OK);
            } else {
                error!(
                    "left running because their final save failed: {}",
                    left.join(", ")
                );
                self.exit_code = Some(crate::EXIT_FAILED);
            }
        }
    }

    /// Runs `op` as far as it can go now; true when it is finished.
    fn advance(&mut self, op: &mut Operation, now: Instant) -> bool {
        loop {
            if op.current.is_none() {
                let Some(step) = op.steps.pop_front() else {
                    return true;
                };
                if let Err(message) = self.begin_step(&step, now) {
                    op.lines.push(message);
                    op.ok = false;
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
                    if let Some(line) = line {
                        op.lines.push(line);
                    }
                    op.current = None;
                }
                Some(Err(message)) => {
                    op.lines.push(message);
                    op.ok = false;
                    op.current = None;
                    if !op.keep_going {
                        op.steps.clear();
                        return true;
                    }
                }
            }
        }
    }

    fn begin_step(&mut self, step: &Step, now: Instant) -> Result<(), String> {
        match step {
            Step::Stop { name, force } => {
                let running = self.slots.get(name).is_some_and(|s| s.process.is_some());
                if running && !force && !self.shutting_down {
                    plan::check_quorum(&self.group, name, self.good_siblings(name, now))?;
                }
                self.begin_stop(name, *force, now);
                Ok(())
            }
            Step::Start { name } => {
                let Some(slot) = self.slots.get_mut(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                slot.wanted = true;
                if matches!(
                    slot.state,
                    State::Stopped | State::Failed { .. } | State::Backoff { .. }
                ) {
                    slot.crashes.clear();
                    slot.last_error = None;
                    slot.state = State::Waiting {
                        reason: "starting".to_owned(),
                        not_before: now,
                    };
                }
                self.start_waiting(now);
                Ok(())
            }
            Step::AwaitReady { .. } => Ok(()),
            Step::SetPassword { name } => {
                let new = self.group.password().cloned();
                let Some(slot) = self.slots.get_mut(name) else {
                    return Err(format!("`{name}` is not run by this daemon"));
                };
                if slot.process.is_none() {
                    // Not running: it gets the new password from its config at start.
                    slot.endpoint.password = new;
                    slot.password_change = PasswordChange::Done(Ok(()));
                    return Ok(());
                }
                slot.password_change = PasswordChange::Pending;
                spawn_set_password(
                    self.events.clone(),
                    name.clone(),
                    slot.endpoint.clone(),
                    new,
                );
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
            Step::SetPassword { name } => match &self.slots.get(name)?.password_change {
                PasswordChange::Pending => None,
                PasswordChange::Done(Ok(())) => {
                    Some(Ok(Some(format!("{name}: password changed in place"))))
                }
                PasswordChange::Done(Err(e)) => Some(Err(format!(
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
                        Some(Ok(Some(line)))
                    }
                    State::Failed { reason } => Some(Err(format!("{name}: failed: {reason}"))),
                    State::Backoff { .. } => Some(Err(format!(
                        "{name}: did not start: {}; retrying with backoff",
                        slot.last_error.clone().unwrap_or_default()
                    ))),
                    State::Stopped => Some(Err(format!("{name}: stopped before it came up"))),
                    _ if now.duration_since(started) > limit => {
                        Some(Err(format!("{name}: not up after {}", jiff_like(limit))))
                    }
                    _ => None,
                }
            }
        }
    }

    fn is_replica(&self, name: &str) -> bool {
        self.group.instance(name).is_some_and(|i| !i.is_master())
    }

    /// The other replicas of `name`'s upstream that are online now, per the upstream.
    fn good_siblings(&self, name: &str, now: Instant) -> usize {
        let Some(inst) = self.group.instance(name) else {
            return 0;
        };
        let Some(up) = self.group.upstream(inst) else {
            return 0;
        };
        match self.fresh_info(&up.name, now) {
            Some(info) => info
                .replicas
                .iter()
                .filter(|l| l.is_online() && !l.is(inst.bind, inst.port))
                .count(),
            None => 0,
        }
    }

    // ----- status and systemd ------------------------------------------------------------

    /// Every local instance as `status` shows it.
    pub fn status(&self, now: Instant) -> Vec<InstanceStatus> {
        let mut out = Vec::new();
        for inst in self.group.start_order(&self.host) {
            let Some(slot) = self.slots.get(&inst.name) else {
                continue;
            };
            let mut s = InstanceStatus::from_config(inst);
            s.state = slot.state.label().to_owned();
            s.pid = slot.state.pid();
            s.restarts = slot.restarts;
            s.last_sync = slot.last_sync.clone();
            s.sync_timeouts = slot.sync_timeouts;
            s.last_error = match &slot.state {
                State::Failed { reason } => Some(reason.clone()),
                State::Waiting { reason, .. } if reason != "starting" => Some(reason.clone()),
                _ => slot.last_error.clone(),
            };
            if slot.process.is_some()
                && let Some(info) = self.fresh_info(&inst.name, now)
            {
                let upstream = inst
                    .replica_of
                    .as_ref()
                    .and_then(|u| self.fresh_info(u, now));
                s.apply_info(info, upstream);
                if let (Some(backlog), Some(rate)) =
                    (info.backlog_size(), write_rate(&slot.offsets))
                {
                    s.warnings.extend(crate::status::backlog_warning(
                        &self.group,
                        inst,
                        Some((backlog, rate)),
                    ));
                }
            }
            if let (State::Running { .. } | State::Syncing { .. }, Some((_, Err(e)))) =
                (&slot.state, self.infos.get(&inst.name))
            {
                s.note_unanswered(e);
            }
            out.push(s);
        }
        out
    }

    fn notify_systemd(&mut self) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        let local = self.group.start_order(&self.host);
        let mut online = 0;
        let mut notes = Vec::new();
        let mut masters_up = true;
        let mut replicas_started = true;
        for inst in &local {
            let Some(slot) = self.slots.get(&inst.name) else {
                continue;
            };
            match &slot.state {
                State::Running { .. } => online += 1,
                other => notes.push(format!("{} {}", inst.name, other.label())),
            }
            // Start-up is over once each master answers (or was given up on) and each
            // replica was started, except one that waits for an upstream on another host
            // that is down: that may take any time and must not hold systemd's start job.
            if inst.is_master()
                && !matches!(slot.state, State::Running { .. } | State::Failed { .. })
            {
                masters_up = false;
            }
            let waits_for_remote = inst.replica_of.as_ref().is_some_and(|up| {
                !self.slots.contains_key(up) && self.fresh_info(up, Instant::now()).is_none()
            });
            if !inst.is_master() && matches!(slot.state, State::Waiting { .. }) && !waits_for_remote
            {
                replicas_started = false;
            }
        }
        let mut line = format!("{online}/{} online", local.len());
        if !notes.is_empty() {
            line.push_str("; ");
            line.push_str(&notes.join(", "));
        }
        if line != self.last_status_line {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
            self.last_status_line = line;
        }
        if !self.ready_sent && masters_up && replicas_started && !self.shutting_down {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            self.ready_sent = true;
        }
    }
}

/// How far back the write rate of an instance is measured.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Bytes per second written to the replication stream over the samples, once they span at
/// least a few seconds.
fn write_rate(samples: &VecDeque<(Instant, i64)>) -> Option<f64> {
    let (t0, o0) = samples.front()?;
    let (t1, o1) = samples.back()?;
    let dt = t1.duration_since(*t0).as_secs_f64();
    (dt >= 5.0 && o1 >= o0).then(|| (o1 - o0) as f64 / dt)
}

/// Appended to a replica's redis.conf when it resumes from its RDB.
const RESUME_FROM_RDB: &str = "# redisrepd: this start loads the RDB written by the graceful stop, \
because Redis 7.0 resumes replication only from an RDB; AOF is switched back on with \
CONFIG SET once the replica is in sync.\nappendonly no\n";

/// `CONFIG SET masterauth` then `requirepass`, over a connection made with the old
/// password; the answer comes back as `Event::PasswordSet`.
fn spawn_set_password(
    events: Sender<Event>,
    name: String,
    endpoint: Endpoint,
    new: Option<crate::config::Secret>,
) {
    let _ = std::thread::Builder::new()
        .name(format!("password-{name}"))
        .spawn(move || {
            let value = new
                .as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default();
            let result = endpoint
                .connect(Duration::from_secs(5))
                .and_then(|mut c| {
                    for key in ["masterauth", "requirepass"] {
                        redis::cmd("CONFIG")
                            .arg("SET")
                            .arg(key)
                            .arg(&value)
                            .query::<()>(&mut c)?;
                    }
                    Ok(())
                })
                .map(|()| new)
                .map_err(|e| e.to_string());
            let _ = events.send(Event::PasswordSet { name, result });
        });
}

fn spawn_aof_restore(events: Sender<Event>, name: String, endpoint: Endpoint) {
    let _ = std::thread::Builder::new()
        .name(format!("aof-{name}"))
        .spawn(move || {
            let result = endpoint
                .connect(Duration::from_secs(5))
                .and_then(|mut c| {
                    redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("appendonly")
                        .arg("yes")
                        .query::<()>(&mut c)
                })
                .map_err(|e| e.to_string());
            let _ = events.send(Event::AofRestored { name, result });
        });
}

fn spawn_shutdown(
    events: Sender<Event>,
    name: String,
    pid: u32,
    endpoint: Endpoint,
    nosave: bool,
    timeout: Duration,
) {
    let _ = std::thread::Builder::new()
        .name(format!("shutdown-{name}"))
        .spawn(move || {
            let result = endpoint.shutdown(nosave, timeout);
            let _ = events.send(Event::ShutdownDone { name, pid, result });
        });
}

/// "exit code 1" or "killed by SIGKILL".
fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    let Some(status) = status else {
        return "exit status unknown: it was adopted from an earlier daemon".to_owned();
    };
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        let name = Signal::try_from(sig)
            .map(|s| s.as_str())
            .unwrap_or("unknown signal");
        format!("killed by {name}")
    } else {
        status.to_string()
    }
}

/// A duration the way the TOML writes them: "1m 30s", "500ms".
fn jiff_like(d: Duration) -> String {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO);
    format!("{span:#}")
}
