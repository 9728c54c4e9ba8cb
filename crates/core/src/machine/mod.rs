//! The supervisor's decisions, as a pure state machine: domain inputs and the time in,
//! effects out as values.
//!
//! Theory of operation. The runtime (`daemon::runtime`) turns what happens in the world
//! into [`Input`]s — an instance exited with a status, a probe answered, a SHUTDOWN ended,
//! a claim on a gate place was answered, a request arrived, time passed — and hands each to
//! [`Machine::handle`] with the current time. The machine updates its state and returns the
//! [`Effect`]s to carry out: launch, signal, SHUTDOWN, claim or release a gate place,
//! probe, notify systemd, reply, exit. Some effects answer with an input of their own
//! (a launch with `Launched` or `LaunchFailed`; a SHUTDOWN with `ShutdownDone`).
//!
//! The machine holds no channel, child, file, socket, environment or random source, and
//! never reads the clock, so every behaviour is unit-tested (`tests/`) on scripted inputs
//! and a fake clock. Every change of an instance's state goes through `set_state`, checked
//! against the table in `state.rs`.
//!
//! After each input the machine takes one `step`: escalate stops and expire waits past
//! their deadline, start the waiting instances that their upstream and the sync gate
//! admit, advance the head operation (the steps of a control request), answer status
//! requests whose probes are in, tell systemd. [`Machine::next_deadline`] says when the
//! next step is due if nothing happens before.
//!
//! The state, by part: each local instance's `Slot` (`slot.rs`: its [`State`], with
//! [`Blocker`] saying why a waiting one has not started), the group's roles and the
//! changes of role under way (`roles/`), what the probes said (`seen.rs`), the operations
//! of control requests (`ops.rs`, their steps in `steps.rs`), the maintenance pause
//! (`pause.rs`) and the daemon's own life (`life.rs`). The methods that decide live by
//! topic: `start.rs`, `probe.rs`, `stop.rs`, `exit.rs`, `sentinel.rs`, `report.rs`,
//! `view.rs`.

mod blocker;
mod exit;
mod life;
mod ops;
mod pause;
mod probe;
mod report;
mod roles;
mod seen;
mod sentinel;
mod slot;
mod start;
mod state;
mod steps;
mod stop;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{error, info};

use crate::config::{Group, Secret};
use crate::control::{Request, Response};
use crate::endpoint::{Endpoint, ShutdownError};
use crate::info::{Info, SyncKind};
use crate::rdb::ReplPosition;
use crate::server::Server;

pub use blocker::Blocker;
use ops::Operation;
use roles::Asked;
pub use slot::Counters;
use slot::{InPlace, Slot};
pub use state::{AofWait, Gate, History, Kind, Launch, State, diagram};

/// Names a control request, so its reply can find the client.
pub type RequestId = u64;

/// Everything the machine reacts to.
#[derive(Debug)]
pub enum Input {
    /// Nothing happened, but time passed (a deadline may be due).
    Tick,
    /// The process of `name` with `pid` exited. `how` describes the status ("exit code
    /// 1", "killed by SIGKILL"); `last_output` are its last lines; `port_holder` names who
    /// holds its port when its output says the address was in use.
    Exited {
        name: String,
        pid: u32,
        how: String,
        last_output: Vec<String>,
        port_holder: Option<String>,
    },
    /// The answer to [`Effect::Launch`]: spawned, as `pid`; `resumed_from_rdb` when its
    /// config was given `appendonly no` to resume from the RDB.
    Launched {
        name: String,
        pid: u32,
        resumed_from_rdb: bool,
    },
    /// The answer to [`Effect::Launch`]: nothing was started, for `reason`.
    LaunchFailed { name: String, reason: String },
    /// An INFO probe.
    Probe(Probe),
    /// The answer to [`Effect::ReadHistory`]: where the replica's RDB resumes, or `None`.
    HistoryRead {
        name: String,
        position: Option<ReplPosition>,
    },
    /// The outcome of [`Effect::Shutdown`] for `pid`.
    ShutdownDone {
        name: String,
        pid: u32,
        result: Result<(), ShutdownError>,
    },
    /// The upstream's answer to [`Effect::Claim`]; when refused, ask again after
    /// `retry_after` (the runtime's jitter, so daemons do not ask in lockstep).
    ClaimResult {
        name: String,
        granted: bool,
        detail: String,
        retry_after: Duration,
    },
    /// The outcome of [`Effect::SetPassword`]: done (the new endpoint applies), or why not.
    PasswordSet {
        name: String,
        result: Result<(), String>,
    },
    /// The outcome of [`Effect::ApplyLive`]: done, or why not.
    LiveApplied {
        name: String,
        result: Result<(), LiveFailure>,
    },
    /// The outcome of [`Effect::RestoreAof`].
    AofRestored {
        name: String,
        result: Result<(), String>,
    },
    /// The outcome of [`Effect::Failover`] or [`Effect::MakeMaster`]: `name` is the
    /// master now, or why not.
    RoleChanged {
        name: String,
        result: Result<(), String>,
    },
    /// The answer to [`Effect::SentinelReconfigure`].
    SentinelReconfigured {
        name: String,
        result: Result<(), String>,
    },
    /// The answer to [`Effect::SentinelFailover`]: a sentinel started the failover, or
    /// why none did.
    SentinelAsked { result: Result<(), String> },
    /// A control request; answer with [`Effect::Reply`] for `id`.
    Request { id: RequestId, request: Request },
    /// SIGHUP (`id` None) or a `reload` request: re-read the TOML.
    ReloadRequested { id: Option<RequestId> },
    /// The answer to [`Effect::LoadConfig`]: the new, checked group and its server, or
    /// why it is refused.
    ConfigLoaded {
        id: Option<RequestId>,
        result: Result<Box<Loaded>, String>,
    },
    /// SIGTERM or SIGINT.
    Terminate,
}

/// An INFO probe of `name`, asked at `asked_at`; for a local instance, the sync its own
/// log last named.
#[derive(Debug)]
pub struct Probe {
    pub name: String,
    pub asked_at: Instant,
    pub result: Result<Info, String>,
    pub logged_sync: Option<SyncKind>,
}

/// A file read again by [`Effect::LoadConfig`], with what its `redis_server` is.
#[derive(Debug)]
pub struct Loaded {
    pub group: Group,
    /// The `redis_server` binary found, and what it is (`--version`).
    pub binary: PathBuf,
    pub server: Server,
    /// When the server changes: what the instances on other hosts run now (their INFO),
    /// for the RDB-version check of a rolling upgrade.
    pub remote_servers: HashMap<String, Server>,
}

/// Why a change in place did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveFailure {
    /// The server answered that it cannot take this setting at runtime: a restart applies
    /// it.
    Refused(String),
    /// It could not be asked (unreachable, timed out): nothing is decided from that.
    Failed(String),
}

/// A signal the machine may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

/// What to tell systemd, when it is listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    Ready,
    Reloading,
    Stopping,
    Status(String),
}

/// What the runtime must do. Carried out in order.
#[derive(Debug)]
pub enum Effect {
    /// Write `conf` to `conf_path` (0600) and start the instance, unless its port is
    /// taken. With `resume`, append `appendonly no` when the RDB is at least as new as the
    /// AOF. Answer with `Launched` or `LaunchFailed`.
    Launch(LaunchSpec),
    /// Read the replication id and offset from the head of `rdb`; `None` if it has none,
    /// or when `aof_dir` (AOF on) holds a file newer than it (the replica will load the
    /// AOF). Answer with `HistoryRead`.
    ReadHistory {
        name: String,
        rdb: PathBuf,
        aof_dir: Option<PathBuf>,
    },
    /// Send `sig` to `pid`.
    Signal { name: String, pid: u32, sig: Sig },
    /// Authenticated `SHUTDOWN SAVE` (`NOSAVE` when `nosave`); answer with `ShutdownDone`.
    Shutdown {
        name: String,
        pid: u32,
        endpoint: Endpoint,
        nosave: bool,
        timeout: Duration,
    },
    /// Ask `upstream` for a place in its sync gate for the replica at `replica`
    /// (`ip:port`); answer with `ClaimResult`; hold the place until `Release`.
    Claim {
        name: String,
        upstream: Endpoint,
        replica: String,
        max_concurrent_syncs: crate::config::MaxSyncs,
        /// The upstream runs on this daemon's host: `auto` may read the host's memory.
        upstream_local: bool,
        timeout: Duration,
    },
    /// Give up `name`'s place in the sync gate (asked for or held).
    Release { name: String },
    /// Apply `change` (ACL users, `masterauth`, `requirepass` ...) over a connection made
    /// with `endpoint` (what the instance accepted so far; `new_endpoint` if it refuses
    /// that, as after an earlier attempt), then write `conf` to `conf_path`; answer with
    /// `PasswordSet`.
    SetPassword {
        name: String,
        endpoint: Endpoint,
        new_endpoint: Endpoint,
        change: crate::acl::AuthChange,
        conf: Secret,
        conf_path: PathBuf,
    },
    /// `CONFIG SET` each of `change.set`, then `REPLICAOF` per `change.repoint`, then
    /// write `conf` (the new redis.conf) to `conf_path`; answer with `LiveApplied`. The
    /// `REPLICAOF` is sent only while the instance is still `was` (as INFO showed it when
    /// this was decided; `None`: unknown) and its target is still `target`, and not when
    /// it is already where it is asked to go.
    ApplyLive {
        name: String,
        endpoint: Endpoint,
        change: crate::plan::LiveChange,
        was: Option<crate::info::Replication>,
        /// The new upstream and where it was in replication when this was decided: the
        /// `REPLICAOF` is sent only while it still is (a master that became a replica
        /// since would close a loop).
        target: Option<(Endpoint, crate::info::Replication)>,
        conf: Secret,
        conf_path: PathBuf,
    },
    /// `CONFIG SET appendonly yes`; answer with `AofRestored`.
    RestoreAof { name: String, endpoint: Endpoint },
    /// Coordinated switchover: `FAILOVER TO <target> TIMEOUT <timeout>` (`FORCE` with
    /// `force`) on `master`, then wait until `target` reports itself master; answer with
    /// `RoleChanged` for `name`.
    Failover {
        name: String,
        master: Endpoint,
        target: Endpoint,
        /// The master's other replicas online: the switchover re-points them to `target`
        /// while writes are paused, before the master turns replica (best effort: their
        /// daemons re-point any it missed).
        others: Vec<Endpoint>,
        force: bool,
        timeout: Duration,
    },
    /// `REPLICAOF NO ONE` on `name`; answer with `RoleChanged`.
    MakeMaster { name: String, endpoint: Endpoint },
    /// Move the master role away from `master` through Sentinel without losing a write:
    /// pause writes on it, wait for a replica to have everything, `SENTINEL FAILOVER
    /// <master_name>` (to each of `sentinels` in turn until one starts it), then make the
    /// old master a replica of the new one and unpause it; answer with `SentinelAsked`.
    SentinelFailover {
        master: Endpoint,
        sentinels: Vec<Endpoint>,
        master_name: String,
    },
    /// Apply a reloaded `[sentinel]` to a running sentinel: `SENTINEL SET` each of `sets`,
    /// then, when `password` is `Some`, the new group passwords, the one used first (none: no
    /// AUTH) (`sentinel::change_password`);
    /// answer with `SentinelReconfigured`.
    SentinelReconfigure {
        name: String,
        endpoint: Endpoint,
        sets: Vec<crate::render::sentinel::SentinelSet>,
        password: Option<crate::sentinel::SentinelAuth>,
    },
    /// Keep `master` as the group's actual master across daemon restarts
    /// (`run_dir/<host>.topology`).
    SaveTopology { master: String },
    /// Keep the maintenance pause across daemon restarts: it ends `remaining` from now
    /// (`run_dir/<host>.pause`); `None`: not paused (remove the file).
    SavePause { remaining: Option<Duration> },
    /// The group's master changed in this daemon's view (made here or learned): add it to
    /// the history (`run_dir/<host>.history`) and run the `[hooks]` program, in order,
    /// never holding the supervisor up.
    MasterChanged(MasterChange),
    /// The local instance `name` stopped being master: close its normal and pub/sub
    /// client connections (`CLIENT KILL TYPE ...`), so pooled clients reconnect to the new
    /// master instead of meeting READONLY. Replication links are left alone.
    DropClients { name: String, endpoint: Endpoint },
    /// Keep the replication history seen (a local master's new id, a change of id seen
    /// in any INFO) in the same file: [`Machine::kept`] says what to write.
    SaveHistory,
    /// From now on probe these instances every `health_interval`.
    ProbeTargets(Vec<(String, Endpoint)>),
    /// Probe every target now, without waiting for the interval.
    ProbeNow,
    /// Answer the request `id`.
    Reply { id: RequestId, response: Response },
    /// Answer the request `id` with this daemon's history of changes of master (the
    /// records in `run_dir/<host>.history`).
    ReplyHistory { id: RequestId },
    /// Read the TOML again and ask its `redis_server` what it is; when that is not
    /// `current`, ask the instances on other hosts what they run. Answer with
    /// `ConfigLoaded`.
    LoadConfig {
        id: Option<RequestId>,
        current: Server,
    },
    /// Tell systemd.
    Notify(Notify),
    /// Everything is done: exit the daemon with this status.
    Exit(u8),
}

/// A change of the group's master, as [`Effect::MasterChanged`] carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterChange {
    /// When the machine made or learned it (the runtime turns it into UTC).
    pub at: Instant,
    pub old: String,
    pub new: String,
    pub reason: crate::changes::Reason,
    /// The new master's replication id, when an INFO asked after the change showed it
    /// (else the runtime asks the new master).
    pub repl_id: Option<String>,
    /// How to reach the new master.
    pub endpoint: Endpoint,
}

/// What [`Effect::Launch`] starts.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub name: String,
    /// The server binary to run.
    pub binary: PathBuf,
    pub endpoint: Endpoint,
    /// The generated redis.conf, password included.
    pub conf: Secret,
    pub conf_path: PathBuf,
    pub data_path: PathBuf,
    pub log_path: Option<PathBuf>,
    pub pid_path: PathBuf,
    /// For a replica with AOF: resume from the RDB if it is at least as new as the AOF.
    pub resume: Option<ResumeFromRdb>,
    /// A sentinel node: the runtime renders its config itself (keeping what Sentinel wrote
    /// into the file) and runs the server with `--sentinel`.
    pub sentinel: bool,
}

/// The files compared to decide whether a replica resumes from its RDB.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeFromRdb {
    pub rdb: PathBuf,
    pub aof_dir: PathBuf,
}

/// A status request waiting for probes asked after it.
struct PendingStatus {
    id: RequestId,
    asked_at: Instant,
}

/// How long a status request waits for fresh probes before answering with what it has
/// (an instance that does not answer INFO is reported so, not waited for forever).
const STATUS_WAIT: Duration = Duration::from_secs(3);

/// How often instances on their way up are probed.
const FAST_PROBE: Duration = Duration::from_millis(100);

/// How far back the write rate of an instance is measured.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The supervisor's state for one host.
pub struct Machine {
    /// The group as the TOML describes it.
    configured: Group,
    /// The group as it runs: `configured` with the actual master's roles
    /// (`topology::effective`). Everything that renders, starts and orders follows it.
    group: Group,
    host: String,
    /// The `redis_server` binary and what it is: launches and rendering follow it.
    binary: PathBuf,
    server: Server,
    slots: BTreeMap<String, Slot>,
    /// The group's roles as this daemon knows them, and the changes under way.
    roles: roles::Roles,
    /// What the probes said.
    seen: seen::Seen,
    ops: VecDeque<Operation>,
    pending_status: Vec<PendingStatus>,
    pause: pause::Pause,
    life: life::Life,
}

impl Machine {
    /// A machine for `host` with every local instance wanted; `adopted` are the instances
    /// an earlier daemon started that still run (name, pid): they are watched, not started.
    pub fn new(
        group: Group,
        host: String,
        (binary, server): (PathBuf, Server),
        adopted: &[(String, u32)],
        now: Instant,
    ) -> Machine {
        let mut m = Machine {
            configured: group.clone(),
            roles: roles::Roles::new(group.master().name.clone()),
            group,
            host,
            binary,
            server,
            slots: BTreeMap::new(),
            seen: seen::Seen::default(),
            ops: VecDeque::new(),
            pending_status: Vec::new(),
            pause: pause::Pause::default(),
            life: life::Life::default(),
        };
        for name in m.local_names() {
            m.add_slot(&name, now);
        }
        for name in m.local_sentinels() {
            m.add_sentinel_slot(&name, now);
        }
        let deadline = now + m.group.supervise.start_timeout;
        for (name, pid) in adopted {
            if let Some(slot) = m.slots.get_mut(name) {
                slot.state = State::Starting {
                    pid: *pid,
                    deadline,
                    launch: Launch {
                        at: None,
                        aof_to_restore: false,
                        sync_full_before: None,
                        holds_place: false,
                        predicted_partial: false,
                    },
                    killed: false,
                };
            }
        }
        m
    }

    /// The group as it runs now (after reloads, with the actual master's roles).
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// The group's actual master.
    pub fn actual_master(&self) -> &str {
        &self.roles.actual
    }

    /// Takes the actual master an earlier daemon kept (`run_dir/<host>.topology`), before
    /// the first input: instances start per the roles the group had, not the TOML's.
    pub fn restore_topology(&mut self, master: &str) {
        if self.configured.instance(master).is_some() {
            self.roles.actual = master.to_owned();
            self.group = crate::topology::effective(&self.configured, Some(master));
        }
    }

    /// Takes the replication history an earlier daemon kept (`run_dir/<host>.topology`).
    pub fn restore_history(
        &mut self,
        last_ids: BTreeMap<String, String>,
        lineage: crate::history::Lineage,
    ) {
        self.roles.last_ids = last_ids;
        self.roles.lineage = lineage;
    }

    /// What the topology file keeps: the actual master and the replication history seen.
    pub fn kept(&self) -> crate::topology::Kept {
        self.roles.kept()
    }

    /// The server the machine runs its instances on now (after reloads).
    pub fn server(&self) -> Server {
        self.server
    }

    /// An instance's state, for tests and diagnostics.
    pub fn state(&self, name: &str) -> Option<&State> {
        self.slots.get(name).map(|s| &s.state)
    }

    fn local_names(&self) -> Vec<String> {
        self.group
            .start_order(&self.host)
            .iter()
            .map(|i| i.name.clone())
            .collect()
    }

    fn add_slot(&mut self, name: &str, now: Instant) {
        let Some(inst) = self.group.instance(name) else {
            return;
        };
        let slot = Slot::new(Endpoint::of(&self.group, inst), now);
        self.slots.insert(name.to_owned(), slot);
    }

    /// The one door for state changes: checks the transition against the table, and
    /// gives up a gate place the new state no longer holds.
    fn set_state(&mut self, name: &str, new: State, fx: &mut Vec<Effect>) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let (from, to) = (slot.state.kind(), new.kind());
        if !state::allowed(from, to) {
            // A bug, not an operator error: say so loudly, but keep the daemon running.
            error!(instance = %name, "internal: transition {from:?} -> {to:?} is not allowed; ignored");
            debug_assert!(false, "transition {from:?} -> {to:?} for {name}");
            return;
        }
        let released = slot.state.holds_gate_place() && !new.holds_gate_place();
        if to == Kind::Running && matches!(from, Kind::Starting | Kind::Syncing) {
            slot.forget_cleared_note();
        }
        slot.state = new;
        if released {
            fx.push(Effect::Release {
                name: name.to_owned(),
            });
        }
    }

    /// The earliest moment a step has something to do.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut next = now + Duration::from_secs(5);
        for slot in self.slots.values() {
            let t = match &slot.state {
                State::Waiting { not_before, .. } if *not_before > now => Some(*not_before),
                State::Waiting { .. } => Some(now + self.group.supervise.health_interval),
                State::ShuttingDown {
                    aof_wait:
                        Some(AofWait {
                            retry: Some(at), ..
                        }),
                    ..
                } => Some(*at),
                // A SHUTDOWN under way past the deadline answers within its own timeout.
                State::ShuttingDown {
                    aof_wait: Some(AofWait { retry: None, .. }),
                    deadline,
                    ..
                } if *deadline <= now => Some(*deadline + self.group.supervise.shutdown_timeout),
                State::Starting { deadline, .. }
                | State::Syncing { deadline, .. }
                | State::ShuttingDown { deadline, .. }
                | State::Terminating { deadline, .. }
                | State::Killing { deadline, .. } => Some(*deadline),
                State::Backoff { until, .. } => Some(*until),
                _ => None,
            };
            if let Some(t) = t {
                next = next.min(t);
            }
        }
        for p in &self.pending_status {
            next = next.min(p.asked_at + STATUS_WAIT);
        }
        if self.ops.front().is_some_and(|o| o.in_progress()) {
            next = next.min(now + Duration::from_secs(1));
        }
        if let Some(at) = self.next_fast_probe(now) {
            next = next.min(at.max(now));
        }
        if let Some(until) = self.pause.until {
            next = next.min(until.max(now));
        }
        next
    }

    /// While an instance is on its way up (starting, syncing), it is probed every
    /// [`FAST_PROBE`] rather than every `health_interval`: each step of a rolling restart
    /// then ends within a fraction of a second of its real end, not a whole interval
    /// later. `None` when nothing is on its way.
    fn next_fast_probe(&self, now: Instant) -> Option<Instant> {
        let coming_up = self
            .slots
            .values()
            .any(|s| matches!(s.state.kind(), Kind::Starting | Kind::Syncing));
        coming_up.then(|| self.seen.next_fast_probe(now, FAST_PROBE))
    }

    /// Probes that came together (answers of a round that queued up while the
    /// supervisor was busy), at `now`: the same as handing each to [`Machine::handle`] in
    /// turn, but with the work over the whole group done once after the last rather than
    /// after each — learning the topology from every instance's INFO, and the step. Both
    /// are O(N), so a round of N probes costs O(N) instead of O(N²). The probes' own
    /// effects (an instance now running, a demoted master's clients dropped) are the
    /// same; the decisions over the group are taken on the newest answers of all.
    #[must_use]
    pub fn handle_probes(&mut self, probes: Vec<Probe>, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.life.exited {
            return fx;
        }
        let probed: Vec<String> = probes
            .into_iter()
            .filter_map(|p| self.on_probe(p, now, &mut fx))
            .collect();
        self.after_probes(&probed, now, &mut fx);
        self.step(now, &mut fx);
        fx
    }

    /// Reacts to one input at `now`, then takes a step; returns what to do.
    #[must_use]
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.life.exited {
            return fx;
        }
        match input {
            Input::Tick => {}
            Input::Exited {
                name,
                pid,
                how,
                last_output,
                port_holder,
            } => self.on_exit(&name, pid, &how, &last_output, port_holder, now, &mut fx),
            Input::Launched {
                name,
                pid,
                resumed_from_rdb,
            } => self.on_launched(&name, pid, resumed_from_rdb, now, &mut fx),
            Input::LaunchFailed { name, reason } => self.fail_attempt(&name, reason, now, &mut fx),
            Input::Probe(probe) => {
                let probed = self.on_probe(probe, now, &mut fx);
                self.after_probes(probed.as_slice(), now, &mut fx);
            }
            Input::HistoryRead { name, position } => self.on_history(&name, position),
            Input::ShutdownDone { name, pid, result } => {
                self.on_shutdown_done(&name, pid, result, now, &mut fx)
            }
            Input::ClaimResult {
                name,
                granted,
                detail,
                retry_after,
            } => self.on_claim(&name, granted, detail, now + retry_after, &mut fx),
            Input::PasswordSet { name, result } => {
                let endpoint = self
                    .group
                    .instance(&name)
                    .map(|inst| Endpoint::of(&self.group, inst));
                if let Some(slot) = self.slots.get_mut(&name) {
                    if let (Ok(()), Some(endpoint)) = (&result, endpoint) {
                        slot.endpoint = endpoint;
                    }
                    slot.in_place = InPlace::Done(result.map_err(LiveFailure::Failed));
                }
            }
            Input::LiveApplied { name, result } => {
                let endpoint = self
                    .group
                    .instance(&name)
                    .map(|inst| Endpoint::of(&self.group, inst));
                if let Some(slot) = self.slots.get_mut(&name) {
                    if let (Ok(()), Some(endpoint)) = (&result, endpoint) {
                        slot.endpoint = endpoint; // a new password now applies
                    }
                    slot.in_place = InPlace::Done(result);
                }
            }
            Input::AofRestored { name, result } => {
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
            Input::RoleChanged { name, result } => {
                self.on_role_changed(&name, result, now, &mut fx)
            }
            Input::SentinelAsked { result } => self.roles.sentinel_failover = Asked::Ended(result),
            Input::SentinelReconfigured { name, result } => {
                self.on_sentinel_reconfigured(&name, result)
            }
            Input::Request { id, request } => self.on_request(id, request, now, &mut fx),
            Input::ReloadRequested { id } => self.on_reload_requested(id, &mut fx),
            Input::ConfigLoaded { id, result } => self.on_config_loaded(id, result, now, &mut fx),
            Input::Terminate => self.begin_daemon_shutdown(now, &mut fx),
        }
        self.step(now, &mut fx);
        fx
    }

    /// Does what the current state asks for at `now`.
    fn step(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.expire_pause(now, fx);
        self.escalate_and_expire(now, fx);
        self.forget_removed(fx);
        if !self.life.shutting_down {
            self.start_waiting(now, fx);
            self.start_sentinels(now, fx);
        }
        self.advance_catch_up(now, fx);
        self.advance_ops(now, fx);
        self.answer_status(now, fx);
        self.update_probe_targets(fx);
        if self.next_fast_probe(now).is_some_and(|at| at <= now) {
            fx.push(Effect::ProbeNow);
            self.seen.last_fast_probe = Some(now);
        }
        self.notify_systemd(now, fx);
    }
}

/// A duration the way the TOML writes them: "1m 30s", "500ms".
fn human(d: Duration) -> String {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO);
    format!("{span:#}")
}

/// How long one INFO probe may take. At least a second: a busy instance that answers INFO
/// late must not pass for one that is gone (a promotion is refused only while the master
/// answers). Targets are asked in parallel, so one slow answer holds back no other.
pub fn probe_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(2))
}
