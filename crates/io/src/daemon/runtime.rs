//! The supervisor's runtime: carries out the machine's effects and turns what happens in
//! the world into its inputs. It decides nothing.
//!
//! It owns what the pure machine must not: the children and their output tails, the
//! threads that talk to Redis (SHUTDOWN, claims, password and AOF changes), the prober's
//! target list, the clients waiting for replies, sd_notify. An OS fact becomes a domain
//! input here: "SIGCHLD" becomes `Exited { name, pid, how }` for each child that exited;
//! a launch's port check, file writes and spawn become `Launched` or `LaunchFailed`.

use crate::redis_io::Client as _;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tracing::{error, info, warn};

use super::Event;
use super::claim::{self, ClaimHandle};
use super::prober::ProbeTargets;
use crate::files;
use crate::process::{self, OutputTail, RunAs};
use crate::redis_io::Endpoint;
use redisrepd_core::config::{Group, Secret};
use redisrepd_core::control::{Request, Response};
use redisrepd_core::machine::{
    Effect, Input, Kind, LaunchSpec, LiveFailure, Loaded, Machine, Notify, Probe, RequestId, Sig,
};
use redisrepd_core::server::Server;

/// A running instance's process: our child, or one an earlier daemon started.
struct Proc {
    pid: u32,
    /// `None` when adopted: its exit is reported by a pidfd watcher.
    child: Option<Child>,
    tail: OutputTail,
    pid_path: PathBuf,
    /// Its address, to name who holds the port when it could not bind.
    bind: IpAddr,
    port: u16,
    /// Our child's pid file as written at launch, until it is rewritten with what /proc
    /// says once the server first answers (see [`process::PidRecord`]).
    unconfirmed: Option<process::PidRecord>,
}

/// The runtime and the machine it serves. Owned by the supervisor thread.
pub struct Runtime {
    machine: Machine,
    host: String,
    config_path: PathBuf,
    run_as: Option<RunAs>,
    events: Sender<Event>,
    probe_targets: ProbeTargets,
    wake_prober: Sender<()>,
    view: super::SharedView,
    doctor: Arc<std::sync::Mutex<Vec<(String, i64)>>>,
    http: Option<crate::http_server::SharedListenState>,
    procs: HashMap<String, Proc>,
    claims: HashMap<String, ClaimHandle>,
    replies: HashMap<RequestId, Sender<Response>>,
    next_request: RequestId,
    /// Records changes of master and runs the hook, off this thread (`None`: it could
    /// not be started, said in the log).
    recorder: Option<super::recorder::Recorder>,
    /// systemd listens (NOTIFY_SOCKET is set).
    notify: bool,
    /// Backups and restores on this host (`[backup]`), in workers.
    backups: super::backup::Backups,
    /// Set by the machine's `Exit`: the daemon's exit status.
    pub exit_code: Option<u8>,
}

/// What the runtime needs besides the group.
pub struct Setup {
    pub config_path: PathBuf,
    pub host: String,
    pub redis_server: PathBuf,
    pub server: Server,
    pub run_as: Option<RunAs>,
    pub events: Sender<Event>,
    pub probe_targets: ProbeTargets,
    pub wake_prober: Sender<()>,
    /// Where the view for the health endpoints is published.
    pub view: super::SharedView,
    /// The HTTP listener's state, for `status`; `None` without one.
    pub http: Option<crate::http_server::SharedListenState>,
    /// `doctor`'s checks of this host, refreshed by their own thread, for the metrics.
    pub doctor: Arc<std::sync::Mutex<Vec<(String, i64)>>>,
}

impl Runtime {
    /// Adopts the instances an earlier daemon left running, then builds the machine and
    /// carries out its first step.
    pub fn start(group: Group, setup: Setup, now: Instant) -> Runtime {
        let mut procs = HashMap::new();
        let mut adopted = Vec::new();
        // /proc/PID/exe names the file with symlinks resolved.
        let configured = std::fs::canonicalize(&setup.redis_server)
            .unwrap_or_else(|_| setup.redis_server.clone());
        // Read only if there is a pid file to judge: it takes a while on a busy host.
        let listeners: std::cell::LazyCell<process::Listeners> =
            std::cell::LazyCell::new(process::Listeners::read);
        let adopt = |name: &str, pid_path: &Path, bind: IpAddr, port: u16| {
            adopt(
                name,
                pid_path,
                (bind, port),
                (&configured, &listeners),
                &setup.events,
            )
        };
        for inst in group.start_order(&setup.host) {
            let pid_path = group.pid_path(inst);
            if let Some(pid) = adopt(&inst.name, &pid_path, inst.bind, inst.port) {
                adopted.push((inst.name.clone(), pid));
                procs.insert(
                    inst.name.clone(),
                    Proc {
                        pid,
                        child: None,
                        tail: OutputTail::default(),
                        pid_path,
                        bind: inst.bind,
                        port: inst.port,
                        unconfirmed: None,
                    },
                );
            }
        }
        for node in group.sentinel_nodes_on(&setup.host) {
            let pid_path = group.sentinel_pid_path(node);
            if let Some(pid) = adopt(&node.name, &pid_path, node.bind, node.port) {
                adopted.push((node.name.clone(), pid));
                procs.insert(
                    node.name.clone(),
                    Proc {
                        pid,
                        child: None,
                        tail: OutputTail::default(),
                        pid_path,
                        bind: node.bind,
                        port: node.port,
                        unconfirmed: None,
                    },
                );
            }
        }
        let topology = group.topology_path(&setup.host);
        let kept_text = std::fs::read_to_string(&topology).ok();
        let kept = match &kept_text {
            Some(text) => match redisrepd_core::topology::parse_file(text, &group) {
                Ok(master) => Some(master),
                Err(e) => {
                    warn!(
                        "{}: {e}; ignored (the group's INFO says who the master is)",
                        topology.display()
                    );
                    None
                }
            },
            None => None,
        };
        let binary = setup.redis_server.clone();
        let mut machine = Machine::new(
            group,
            setup.host.clone(),
            (setup.redis_server, setup.server),
            &adopted,
            now,
        );
        if let Some(master) = kept {
            info!(
                "the group's master is `{master}`, as kept in {}",
                topology.display()
            );
            machine.restore_topology(&master);
        }
        if let Some(text) = &kept_text {
            let (last_ids, lineage) = redisrepd_core::topology::parse_history(text);
            machine.restore_history(last_ids, lineage);
        }
        let pause = group_pause_path(&machine, &setup.host);
        if let Some(remaining) = read_pause(&pause) {
            info!(
                "the group is paused for {} more, as kept in {}",
                jiff::SignedDuration::try_from(remaining).unwrap_or_default(),
                pause.display()
            );
            machine.restore_pause(now + remaining);
        }
        let backups = super::backup::Backups::new(machine.group(), &setup.host, now)
            .with_server(binary, machine.server());
        let mut rt = Runtime {
            backups,
            machine,
            host: setup.host,
            config_path: setup.config_path,
            run_as: setup.run_as,
            events: setup.events,
            probe_targets: setup.probe_targets,
            wake_prober: setup.wake_prober,
            view: setup.view,
            http: setup.http,
            doctor: setup.doctor,
            procs,
            claims: HashMap::new(),
            replies: HashMap::new(),
            next_request: 0,
            recorder: super::recorder::Recorder::spawn()
                .inspect_err(|e| {
                    error!("cannot start the recorder thread ({e}): changes of master are not recorded and no hook runs")
                })
                .ok(),
            notify: std::env::var_os("NOTIFY_SOCKET").is_some(),
            exit_code: None,
        };
        rt.feed(Input::Tick, now);
        rt
    }

    /// When the machine next has something to do.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let machine = self.machine.next_deadline(now);
        self.backups
            .next_deadline()
            .map_or(machine, |b| machine.min(b))
    }

    /// Turns one event into inputs and carries out what the machine makes of them.
    pub fn handle(&mut self, event: Event, now: Instant) {
        // Probes arrive more often than the loop times out: a due backup starts here too.
        let paused = self.machine.paused_for(now).is_some();
        self.backups
            .tick(self.machine.group(), &self.host, paused, now);
        match event {
            Event::ChildExited => {
                for input in self.reap() {
                    self.feed(input, now);
                }
            }
            Event::AdoptedExited { name, pid } => {
                let ours = self
                    .procs
                    .get(&name)
                    .is_some_and(|p| p.pid == pid && p.child.is_none());
                if ours && let Some(p) = self.procs.remove(&name) {
                    let _ = std::fs::remove_file(&p.pid_path);
                    let how = "exit status unknown: it was adopted from an earlier daemon";
                    self.feed(exited(name, &p, how.to_owned()), now);
                }
            }
            Event::Probes(answers) => self.feed_probes(answers, now),
            Event::ShutdownDone { name, pid, result } => {
                self.feed(Input::ShutdownDone { name, pid, result }, now)
            }
            Event::ClaimResult {
                name,
                granted,
                detail,
            } => {
                // Jitter, so that daemons on different hosts do not ask again in lockstep.
                let retry_after = Duration::from_millis(rand::random_range(100..400));
                let input = Input::ClaimResult {
                    name,
                    granted,
                    detail,
                    retry_after,
                };
                self.feed(input, now);
            }
            Event::PasswordSet { name, result } => {
                self.feed(Input::PasswordSet { name, result }, now)
            }
            Event::AofRestored { name, result } => {
                self.feed(Input::AofRestored { name, result }, now)
            }
            Event::LiveApplied { name, result } => {
                self.feed(Input::LiveApplied { name, result }, now)
            }
            Event::RoleChanged { name, result } => {
                self.feed(Input::RoleChanged { name, result }, now)
            }
            Event::SentinelAsked { result } => self.feed(Input::SentinelAsked { result }, now),
            Event::SentinelReconfigured { name, result } => {
                self.feed(Input::SentinelReconfigured { name, result }, now)
            }
            Event::Control { request, reply } => {
                // Backups and restores are file work in workers, not supervision: the
                // machine never sees them.
                let request = match request {
                    Request::Backup { instance, to } => {
                        let group = self.machine.group();
                        return self.backups.manual(group, &self.host, &instance, to, reply);
                    }
                    Request::BackupStatus => {
                        let status = self.backups.status();
                        let _ = reply.send(Response::Backup { status });
                        return;
                    }
                    Request::Restore { file, master } => {
                        let stopped = |name: &str| {
                            !self.procs.contains_key(name)
                                && self.machine.state(name).is_none_or(|s| {
                                    matches!(s.kind(), Kind::Stopped | Kind::Failed)
                                })
                        };
                        self.backups.restore(
                            self.machine.group(),
                            super::backup::Here {
                                host: &self.host,
                                server: self.machine.server(),
                                run_as: self.run_as.clone(),
                            },
                            (file, master),
                            stopped,
                            reply,
                        );
                        return;
                    }
                    other => other,
                };
                let id = self.next_request;
                self.next_request += 1;
                self.replies.insert(id, reply);
                self.feed(Input::Request { id, request }, now);
            }
            Event::Metrics { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Event::Reload => self.feed(Input::ReloadRequested { id: None }, now),
            Event::Terminate => self.feed(Input::Terminate, now),
        }
    }

    /// Probe answers that came together: handed to the machine as one batch (one step
    /// over the group for all of them, not one each), the effects carried out.
    fn feed_probes(&mut self, answers: Vec<super::ProbeAnswer>, now: Instant) {
        let probes = answers
            .into_iter()
            .map(|a| {
                if a.result.is_ok() {
                    self.confirm_pid_file(&a.name);
                }
                let logged_sync = self
                    .procs
                    .get(&a.name)
                    .and_then(|p| p.tail.lock().ok().and_then(|t| t.sync_kind));
                Probe {
                    name: a.name,
                    asked_at: a.asked_at,
                    result: a.result,
                    logged_sync,
                }
            })
            .collect();
        let fx = self.machine.handle_probes(probes, now);
        self.carry_out(fx, now);
    }

    /// The metrics of this host's instances, from the machine's report.
    fn snapshot(&self) -> crate::metrics::Snapshot {
        use crate::metrics::{GateMetrics, InstanceMetrics, Snapshot, StopCounts};
        let report = self.machine.report();
        let group = self.machine.group();
        let mut gates: Vec<GateMetrics> = Vec::new();
        for r in &report {
            let Some(up) = group.instance(&r.name).and_then(|i| i.replica_of.clone()) else {
                continue;
            };
            let waiting = u64::from(r.waiting_in_gate_of.is_some());
            match gates.iter_mut().find(|g| g.upstream == up) {
                Some(g) => g.waiting += waiting,
                None => gates.push(GateMetrics {
                    upstream: up,
                    waiting,
                }),
            }
        }
        Snapshot {
            host: self.host.clone(),
            instances: report
                .into_iter()
                .map(|r| InstanceMetrics {
                    name: r.name,
                    up: r.up,
                    restarts: u64::from(r.restarts),
                    full_syncs: r.counters.full_syncs,
                    partial_syncs: r.counters.partial_syncs,
                    mispredicted_syncs: r.counters.mispredicted_syncs,
                    stops: StopCounts {
                        saved: r.counters.stops_saved,
                        forced: r.counters.stops_nosave,
                        failed: r.counters.stops_refused,
                        killed: r.counters.stops_killed,
                    },
                    server: r.server.map(|s| crate::metrics::Server {
                        name: s.kind.name().to_owned(),
                        version: s.version.to_string(),
                    }),
                })
                .collect(),
            gates,
            pause_remaining_s: self.machine.paused_for(Instant::now()).map(|d| d.as_secs()),
            doctor: self.doctor.lock().map(|d| d.clone()).unwrap_or_default(),
            hook_runs: self
                .recorder
                .as_ref()
                .and_then(|r| r.counts.lock().ok().map(|n| [n.ok, n.failed, n.timeout]))
                .unwrap_or_default(),
            backup: self.backups.status(),
        }
    }

    /// Time passed: lets the machine act on its deadlines.
    pub fn tick(&mut self, now: Instant) {
        let paused = self.machine.paused_for(now).is_some();
        self.backups
            .tick(self.machine.group(), &self.host, paused, now);
        self.feed(Input::Tick, now);
    }

    /// Hands `input` to the machine and carries out its effects, feeding the inputs they
    /// answer with back in, in order.
    fn feed(&mut self, input: Input, now: Instant) {
        let fx = self.machine.handle(input, now);
        self.carry_out(fx, now);
    }

    /// Carries out `fx`, feeding the inputs they answer with back in, in order; then
    /// publishes the view.
    fn carry_out(&mut self, fx: Vec<Effect>, now: Instant) {
        let mut queue: VecDeque<Input> = fx.into_iter().filter_map(|e| self.perform(e)).collect();
        while let Some(input) = queue.pop_front() {
            for effect in self.machine.handle(input, now) {
                queue.extend(self.perform(effect));
            }
        }
        self.publish_view(now);
    }

    /// Hands the health endpoints what the machine knows now (they never ask the loop).
    fn publish_view(&self, now: Instant) {
        let view = Arc::new(self.machine.endpoint_view(now));
        if let Ok(mut shared) = self.view.write() {
            *shared = Some(view);
        }
    }

    /// SIGCHLDs coalesce, so every child is checked on each one.
    fn reap(&mut self) -> Vec<Input> {
        let mut exited_names = Vec::new();
        for (name, p) in &mut self.procs {
            if let Some(child) = &mut p.child
                && let Ok(Some(status)) = child.try_wait()
            {
                exited_names.push((name.clone(), status));
            }
        }
        let mut inputs = Vec::new();
        for (name, status) in exited_names {
            if let Some(p) = self.procs.remove(&name) {
                let _ = std::fs::remove_file(&p.pid_path);
                inputs.push(exited(name, &p, describe_exit(status)));
            }
        }
        inputs
    }

    fn perform(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::Launch(spec) => Some(self.launch(&spec)),
            Effect::ReadHistory { name, rdb, aof_dir } => {
                // A replica with AOF loads the AOF when it is newer than the RDB, and no
                // server resumes replication from an AOF.
                let loads_rdb = aof_dir
                    .as_ref()
                    .is_none_or(|aof| files::rdb_at_least_as_new_as_aof(&rdb, aof));
                let position = loads_rdb
                    .then(|| read_head(&rdb, redisrepd_core::rdb::HEAD_BYTES))
                    .flatten()
                    .and_then(|head| redisrepd_core::rdb::repl_position(&head));
                Some(Input::HistoryRead { name, position })
            }
            Effect::Signal { name, pid, sig } => {
                let signal = match sig {
                    Sig::Term => Signal::SIGTERM,
                    Sig::Kill => Signal::SIGKILL,
                };
                if let Err(e) = process::send_signal(pid, signal) {
                    warn!(instance = %name, pid, "cannot send {signal}: {e}");
                }
                None
            }
            Effect::Shutdown {
                name,
                pid,
                endpoint,
                nosave,
                timeout,
            } => {
                let events = self.events.clone();
                spawn_worker(&format!("shutdown-{name}"), move || {
                    let result = endpoint.shutdown(nosave, timeout);
                    let _ = events.send(Event::ShutdownDone { name, pid, result });
                });
                None
            }
            Effect::Claim {
                name,
                upstream,
                replica,
                max_concurrent_syncs,
                upstream_local,
                timeout,
            } => {
                let handle = claim::request(
                    self.events.clone(),
                    name.clone(),
                    upstream,
                    replica,
                    (max_concurrent_syncs, upstream_local),
                    timeout,
                );
                self.claims.insert(name, handle);
                None
            }
            Effect::Release { name } => {
                self.claims.remove(&name);
                None
            }
            Effect::SetPassword {
                name,
                endpoint,
                new,
            } => {
                let events = self.events.clone();
                spawn_worker(&format!("password-{name}"), move || {
                    let result = set_password(&endpoint, new.as_ref())
                        .map(|()| new)
                        .map_err(|e| e.to_string());
                    let _ = events.send(Event::PasswordSet { name, result });
                });
                None
            }
            Effect::ApplyLive {
                name,
                endpoint,
                change,
                was,
                target,
                conf,
                conf_path,
            } => {
                let events = self.events.clone();
                let run_as = self.run_as.clone();
                spawn_worker(&format!("live-{name}"), move || {
                    let live = Live {
                        name: &name,
                        endpoint: &endpoint,
                        change: &change,
                        was: was.as_ref(),
                        target: target.as_ref(),
                    };
                    let result = apply_live(&live, &conf, &conf_path, run_as.as_ref());
                    let _ = events.send(Event::LiveApplied { name, result });
                });
                None
            }
            Effect::Failover {
                name,
                master,
                target,
                force,
                timeout,
            } => {
                let (to, from) = (
                    format!("{}:{}", target.bind, target.port),
                    format!("{}:{}", master.bind, master.port),
                );
                // Ours unless forced: a target out of sync would never catch up, and
                // Redis's FAILOVER FORCE promotes it after its timeout all the same.
                if force {
                    info!(instance = %name, "FAILOVER TO {to} FORCE on the master {from}");
                } else {
                    info!(instance = %name, "switchover to {to}: CLIENT PAUSE WRITE on the master {from}, catch-up, REPLICAOF");
                }
                let events = self.events.clone();
                spawn_worker(&format!("failover-{name}"), move || {
                    let result = if force {
                        master.failover(&target, true, timeout)
                    } else {
                        master.switchover(&target, timeout).map(|t| {
                            info!(instance = %name, "switchover done: {}", t.describe());
                        })
                    };
                    let _ = events.send(Event::RoleChanged { name, result });
                });
                None
            }
            Effect::MakeMaster { name, endpoint } => {
                info!(instance = %name, "REPLICAOF NO ONE: making it master");
                let events = self.events.clone();
                spawn_worker(&format!("promote-{name}"), move || {
                    let result = endpoint.replicaof(None, Duration::from_secs(5));
                    let _ = events.send(Event::RoleChanged { name, result });
                });
                None
            }
            Effect::SentinelFailover {
                master,
                sentinels,
                master_name,
            } => {
                let events = self.events.clone();
                spawn_worker("sentinel-failover", move || {
                    let result = sentinel_switchover(&master, &sentinels, &master_name);
                    let _ = events.send(Event::SentinelAsked { result });
                });
                None
            }
            Effect::SentinelReconfigure {
                name,
                endpoint,
                sets,
                password,
            } => {
                let events = self.events.clone();
                let cluster = self.machine.group().cluster.name.clone();
                spawn_worker(&format!("sentinel-set-{name}"), move || {
                    let t = Duration::from_secs(5);
                    let result = crate::sentinel_client::set(&endpoint, &cluster, &sets, t)
                        .and_then(|()| match &password {
                            Some(new) => crate::sentinel_client::change_password(
                                &endpoint,
                                &cluster,
                                new.as_ref(),
                                t,
                            ),
                            None => Ok(()),
                        });
                    let _ = events.send(Event::SentinelReconfigured { name, result });
                });
                None
            }
            Effect::SaveTopology { .. } | Effect::SaveHistory => {
                let path = self.machine.group().topology_path(&self.host);
                let text = redisrepd_core::topology::format_file(&self.machine.kept());
                if let Err(e) = files::write_atomic(&path, text.as_bytes(), 0o644) {
                    // The roles hold while this daemon runs; after a restart it learns
                    // them again from the group, if it can reach it.
                    error!("cannot keep the topology in {}: {e}", path.display());
                }
                None
            }
            Effect::SavePause { remaining } => {
                let path = group_pause_path(&self.machine, &self.host);
                let result = match remaining {
                    Some(d) => jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default())
                        .map_err(std::io::Error::other)
                        .and_then(|until| {
                            files::write_atomic(&path, format!("{until}\n").as_bytes(), 0o644)
                        }),
                    None => match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    },
                };
                if let Err(e) = result {
                    // The pause holds while this daemon runs; a restarted one would not
                    // know of it.
                    error!("cannot keep the pause in {}: {e}", path.display());
                }
                None
            }
            Effect::RestoreAof { name, endpoint } => {
                let events = self.events.clone();
                spawn_worker(&format!("aof-{name}"), move || {
                    let result =
                        config_set(&endpoint, "appendonly", "yes").map_err(|e| e.to_string());
                    let _ = events.send(Event::AofRestored { name, result });
                });
                None
            }
            Effect::ProbeTargets(targets) => {
                if let Ok(mut t) = self.probe_targets.lock() {
                    *t = targets;
                }
                None
            }
            Effect::ProbeNow => {
                let _ = self.wake_prober.send(());
                None
            }
            Effect::Reply { id, mut response } => {
                if let (Response::Status { http, .. }, Some(state)) = (&mut response, &self.http)
                    && let Ok(state) = state.lock()
                {
                    *http = Some(redisrepd_core::status::HttpEndpoint {
                        host: self.host.clone(),
                        address: state.address.to_string(),
                        error: state.error.clone(),
                    });
                }
                if let Some(reply) = self.replies.remove(&id) {
                    let _ = reply.send(response);
                }
                None
            }
            Effect::ReplyHistory { id } => {
                let path = self.machine.group().history_path(&self.host);
                let response = match super::recorder::read(&path) {
                    Ok(changes) => Response::History {
                        host: self.host.clone(),
                        changes,
                    },
                    Err(message) => Response::Error { message },
                };
                if let Some(reply) = self.replies.remove(&id) {
                    let _ = reply.send(response);
                }
                None
            }
            Effect::MasterChanged(change) => {
                self.record(change);
                None
            }
            Effect::DropClients { name, endpoint } => {
                spawn_worker(&format!("drop-clients-{name}"), move || {
                    drop_clients(&name, &endpoint)
                });
                None
            }
            Effect::LoadConfig { id, current } => {
                let result = self.load_config(current).map(Box::new);
                Some(Input::ConfigLoaded { id, result })
            }
            Effect::Notify(what) => {
                if self.notify {
                    notify(&what);
                }
                None
            }
            Effect::Exit(code) => {
                self.exit_code = Some(code);
                None
            }
        }
    }

    /// Hands a change of master to the recorder: its time in UTC, the hook's environment.
    fn record(&self, change: redisrepd_core::machine::MasterChange) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let group = self.machine.group();
        let ago = Instant::now().saturating_duration_since(change.at);
        let time = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::try_from(ago).unwrap_or_default())
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let (addr, master_host) = group
            .instance(&change.new)
            .map(|i| (i.address(), i.host.clone()))
            .unwrap_or_default();
        let env = vec![
            ("REDISREPD_CLUSTER", group.cluster.name.clone()),
            ("REDISREPD_MASTER", change.new.clone()),
            ("REDISREPD_MASTER_ADDR", addr),
            ("REDISREPD_MASTER_HOST", master_host),
            ("REDISREPD_OLD_MASTER", change.old.clone()),
            ("REDISREPD_REASON", change.reason.to_string()),
            ("REDISREPD_HOST", self.host.clone()),
        ];
        recorder.send(super::recorder::Job {
            change: redisrepd_core::changes::Change {
                time,
                old_master: change.old,
                new_master: change.new,
                reason: change.reason,
                repl_id: change.repl_id,
                seen_by: vec![self.host.clone()],
            },
            endpoint: change.endpoint,
            history: group.history_path(&self.host),
            hooks: group.hooks.clone(),
            env,
        });
    }

    /// Reads the TOML again, asks its `redis_server` what it is and whether it accepts the
    /// file's directives (the whole of `check`), and when the server is not
    /// `current` (a rolling upgrade), asks the instances on other hosts what they run.
    fn load_config(&self, current: Server) -> Result<Loaded, String> {
        let checked = crate::config_file::load(&self.config_path).map_err(|e| e.to_string())?;
        crate::config_file::check_hooks(&checked.group, &self.config_path)
            .map_err(|e| e.to_string())?;
        for w in &checked.warnings {
            warn!("{}: {w}", self.config_path.display());
        }
        let group = checked.group;
        let (binary, server) = crate::server_detect::configured(&group, &self.config_path)?;
        // The server's own verdict on the [redis] directives, as `check` asks it, before
        // anything is touched: a directive it rejects would otherwise be tried live, then
        // written into a config the instance cannot start with.
        match crate::server_check::ask_server(&group, &binary) {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                return Err(redisrepd_core::config::ConfigError {
                    file: self.config_path.clone(),
                    problems: problems.iter().map(ToString::to_string).collect(),
                }
                .to_string());
            }
            // As `check`: the file's own checks passed; say what was not asked.
            Err(why) => warn!(
                "{}: the [redis] directives are not checked against `{}`: {why}",
                self.config_path.display(),
                binary.display()
            ),
        }
        let mut remote_servers = HashMap::new();
        if server != current {
            // A short timeout each: a reload is rare, and a host that is down is unknown.
            for inst in group.instances.iter().filter(|i| i.host != self.host) {
                let info = Endpoint::of(&group, inst).info(Duration::from_millis(500));
                if let Some(s) = info.ok().as_ref().and_then(Server::from_info) {
                    remote_servers.insert(inst.name.clone(), s);
                }
            }
        }
        Ok(Loaded {
            group,
            binary,
            server,
            remote_servers,
        })
    }

    /// Checks the port, writes the config and data dir (owned by `user`), spawns the
    /// instance and writes its pid file.
    fn launch(&mut self, spec: &LaunchSpec) -> Input {
        let name = spec.name.clone();
        let (bind, port) = (spec.endpoint.bind, spec.endpoint.port);
        if process::port_in_use(bind, port) {
            let holder =
                process::port_holder(bind, port).unwrap_or_else(|| "another process".into());
            let reason = format!("port {bind}:{port} is held by {holder}");
            return Input::LaunchFailed { name, reason };
        }
        let resumed_from_rdb = spec
            .resume
            .as_ref()
            .is_some_and(|r| files::rdb_at_least_as_new_as_aof(&r.rdb, &r.aof_dir));
        let mut conf = spec.conf.expose().to_owned();
        if resumed_from_rdb {
            conf.push_str(RESUME_FROM_RDB);
        }
        if spec.sentinel {
            // What Sentinel learned (its id, epochs, the current master) is in the file it
            // last wrote: kept, with our settings rendered fresh around it.
            let group = self.machine.group();
            let Some(node) = group.sentinel_node(&name) else {
                let reason = "not a sentinel node of the file any more".to_owned();
                return Input::LaunchFailed { name, reason };
            };
            let existing = std::fs::read_to_string(&spec.conf_path).ok();
            conf = redisrepd_core::render::sentinel::render_sentinel(
                group,
                node,
                existing.as_deref(),
                redisrepd_core::render::Secrets::Show,
            );
        }
        if let Err(e) = self.prepare(spec, &conf) {
            let reason = format!(
                "cannot prepare {} / {}: {e}",
                spec.conf_path.display(),
                spec.data_path.display()
            );
            return Input::LaunchFailed { name, reason };
        }
        let tail = OutputTail::default();
        let launch = process::Launch {
            name: &spec.name,
            redis_server: &spec.binary,
            conf: &spec.conf_path,
            run_as: self.run_as.as_ref(),
            sentinel: spec.sentinel,
        };
        match process::spawn(&launch, &tail) {
            Ok(child) => {
                let pid = child.id();
                let record = process::PidRecord::launched(pid, &spec.binary);
                if let Err(e) = files::write_atomic(&spec.pid_path, &record.render(), 0o644) {
                    warn!(instance = %name, pid, "cannot write {}: {e}", spec.pid_path.display());
                }
                self.procs.insert(
                    name.clone(),
                    Proc {
                        pid,
                        child: Some(child),
                        tail,
                        pid_path: spec.pid_path.clone(),
                        bind,
                        port,
                        unconfirmed: Some(record),
                    },
                );
                Input::Launched {
                    name,
                    pid,
                    resumed_from_rdb,
                }
            }
            Err(e) => Input::LaunchFailed {
                name,
                reason: format!("cannot run {}: {e}", spec.binary.display()),
            },
        }
    }

    /// Once our child answers, its pid file records the executable and name it has then
    /// (past any wrapper's `exec`), which a later daemon adopts it by.
    fn confirm_pid_file(&mut self, name: &str) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        let Some(launched) = p.unconfirmed.take() else {
            return;
        };
        let record = launched.observed();
        if record != launched
            && let Err(e) = files::write_atomic(&p.pid_path, &record.render(), 0o644)
        {
            warn!(instance = %name, pid = p.pid, "cannot write {}: {e}", p.pid_path.display());
        }
    }

    fn prepare(&self, spec: &LaunchSpec, conf: &str) -> std::io::Result<()> {
        // Sentinel rewrites its file with the umask's mode (0644), password inside: only
        // its own directory, 0700, keeps that from the group and others.
        let dir_mode = if spec.sentinel { 0o700 } else { 0o750 };
        files::ensure_dir(&spec.data_path, dir_mode)?;
        files::write_atomic(&spec.conf_path, conf.as_bytes(), 0o600)?;
        if let Some(run_as) = &self.run_as {
            let own = |path: &Path| {
                std::os::unix::fs::chown(path, Some(run_as.uid.as_raw()), Some(run_as.gid.as_raw()))
            };
            own(&spec.data_path)?;
            own(&spec.conf_path)?;
            if let Some(log) = &spec.log_path {
                if !log.exists() {
                    files::write_atomic(log, b"", 0o640)?;
                }
                own(log)?;
            }
        }
        Ok(())
    }
}

/// The first `n` bytes of a file (fewer if it is shorter); `None` if it cannot be read.
fn read_head(path: &Path, n: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(n);
    std::fs::File::open(path)
        .ok()?
        .take(n as u64)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

/// Takes over an instance that an earlier daemon started and that still runs, so a
/// daemon restart (crash, upgrade) never bounces Redis; removes a stale pid file, saying
/// why it is stale. `configured` is the `redis_server` binary, symlinks resolved;
/// `listeners` the host's listening sockets.
fn adopt(
    name: &str,
    pid_path: &Path,
    (bind, port): (IpAddr, u16),
    (configured, listeners): (&Path, &std::cell::LazyCell<process::Listeners>),
    events: &Sender<Event>,
) -> Option<u32> {
    let record = process::read_pid_file(pid_path);
    let Some(record) = record else {
        if pid_path.exists() {
            info!(instance = %name, pid_file = %pid_path.display(), "removing an unreadable pid file");
            let _ = std::fs::remove_file(pid_path);
        }
        return None;
    };
    let pid = record.pid;
    let address = std::net::SocketAddr::new(bind, port).to_string();
    let facts = process::proc_facts(pid, (bind, port), listeners);
    match process::judge_adoption(&record, facts.as_ref(), &address, configured) {
        process::Adoption::Refuse(why) => {
            info!(instance = %name, pid_file = %pid_path.display(), "removing a stale pid file: {why}");
            let _ = std::fs::remove_file(pid_path);
            return None;
        }
        process::Adoption::Adopt { note: Some(note) } => {
            warn!(instance = %name, pid, "{note}");
        }
        process::Adoption::Adopt { note: None } => {}
    }
    let events = events.clone();
    let watched = name.to_owned();
    let watch = process::watch_exit(pid, move || {
        let _ = events.send(Event::AdoptedExited { name: watched, pid });
    });
    if let Err(e) = watch {
        warn!(instance = %name, pid, "cannot watch the running instance ({e}); not adopting it");
        return None;
    }
    info!(instance = %name, pid, "adopted the running instance");
    Some(pid)
}

/// The `Exited` input for a process, with its last output lines and, when they say its
/// address was in use, who holds the port now.
fn exited(name: String, p: &Proc, how: String) -> Input {
    let last_output: Vec<String> = p
        .tail
        .lock()
        .map(|t| t.lines.iter().cloned().collect())
        .unwrap_or_default();
    let port_holder = last_output
        .iter()
        .any(|l| l.contains("Address already in use"))
        .then(|| process::port_holder(p.bind, p.port))
        .flatten();
    Input::Exited {
        name,
        pid: p.pid,
        how,
        last_output,
        port_holder,
    }
}

fn notify(what: &Notify) {
    use sd_notify::NotifyState;
    let _ = match what {
        Notify::Ready => sd_notify::notify(&[NotifyState::Ready]),
        Notify::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
        Notify::Status(line) => sd_notify::notify(&[NotifyState::Status(line)]),
        Notify::Reloading => {
            // MONOTONIC_USEC lets systemd tell this reload from an earlier one.
            let mut states = vec![NotifyState::Reloading];
            states.extend(NotifyState::monotonic_usec_now().ok());
            sd_notify::notify(&states)
        }
    };
}

/// Appended to a replica's redis.conf when it resumes from its RDB.
const RESUME_FROM_RDB: &str = "# redisrepd: this start loads the RDB written by the graceful stop, \
because Redis resumes replication only from an RDB; AOF is switched back on with \
CONFIG SET once the replica is in sync.\nappendonly no\n";

fn config_set(endpoint: &Endpoint, key: &str, value: &str) -> redis::RedisResult<()> {
    let mut c = endpoint.connect(Duration::from_secs(5))?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query::<()>(&mut c)
}

/// A change to apply to a running instance, and where it was in replication when the
/// change was decided.
struct Live<'a> {
    name: &'a str,
    endpoint: &'a Endpoint,
    change: &'a redisrepd_core::plan::LiveChange,
    was: Option<&'a redisrepd_core::info::Replication>,
    target: Option<&'a (Endpoint, redisrepd_core::info::Replication)>,
}

/// Applies a config change to a running instance: `CONFIG SET` each setting (the first
/// one refused ends it: the machine restarts the instance instead), then the new
/// redis.conf on disk (so a later start agrees).
fn apply_live(
    live: &Live<'_>,
    conf: &Secret,
    conf_path: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), LiveFailure> {
    let (endpoint, change) = (live.endpoint, live.change);
    let mut c = endpoint
        .connect(Duration::from_secs(5))
        .map_err(|e| LiveFailure::Failed(format!("cannot reach it: {e}")))?;
    for (key, value) in &change.set {
        let set = redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value.expose())
            .query::<()>(&mut c);
        match set {
            Ok(()) => {}
            // An error reply: the server will not take it at runtime.
            Err(e) if e.code().is_some() => {
                let why = e.detail().unwrap_or("refused");
                return Err(LiveFailure::Refused(format!("`{key}`: {why}")));
            }
            Err(e) => return Err(LiveFailure::Failed(format!("`{key}`: {e}"))),
        }
    }
    if let Some(repoint) = &change.repoint {
        repoint_checked(&mut c, live, repoint.as_ref())?;
    }
    files::write_atomic(conf_path, conf.expose().as_bytes(), 0o600)
        .and_then(|()| match run_as {
            Some(r) => {
                std::os::unix::fs::chown(conf_path, Some(r.uid.as_raw()), Some(r.gid.as_raw()))
            }
            None => Ok(()),
        })
        .map_err(|e| LiveFailure::Failed(format!("cannot write {}: {e}", conf_path.display())))
}

/// `REPLICAOF` on an instance, sent only while it is where it was when the re-point was
/// decided: another daemon (or an operator) may have changed its role since — a failover
/// back, most often — and a stale `REPLICAOF` then makes two instances replicas of each
/// other. Nothing is sent when it is already where it should go. Logged either way.
fn repoint_checked(
    c: &mut redis::Connection,
    live: &Live<'_>,
    to: Option<&redisrepd_core::plan::Upstream>,
) -> Result<(), LiveFailure> {
    use redisrepd_core::info::{Info, Replication, RepointVerdict};
    let name = live.name;
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query(c)
        .map_err(|e| LiveFailure::Failed(format!("INFO before REPLICAOF: {e}")))?;
    let now = Info::parse(&text).replication();
    let goal_place = match to {
        Some(u) => Replication::ReplicaOf {
            host: u.host.clone(),
            port: u.port,
        },
        None => Replication::Master,
    };
    let goal = to.map_or_else(|| "master".to_owned(), |u| format!("`{}`", u.name));
    let target = live.target.map(|(ep, was)| {
        let now = ep
            .connect(Duration::from_secs(2))
            .and_then(|mut t| {
                redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut t)
            })
            .map(|text| Info::parse(&text).replication())
            .map_err(|e| e.to_string());
        (was, now)
    });
    match redisrepd_core::info::repoint_verdict(&goal_place, live.was, now.as_ref(), target) {
        RepointVerdict::AlreadyThere => {
            info!(instance = %name, "already follows {goal}: no REPLICAOF needed");
            return Ok(());
        }
        RepointVerdict::MovedOn(why) => {
            warn!(instance = %name, "REPLICAOF {goal} not sent: {why} (the group moved on)");
            return Err(LiveFailure::Failed(format!(
                "not re-pointed to {goal}: {why}"
            )));
        }
        RepointVerdict::Send => {}
    }
    info!(instance = %name, "REPLICAOF: re-pointing it to {goal}");
    // A refusal here is of the moment (a failover under way), not a setting only a restart
    // applies: it fails the step, nothing is restarted.
    crate::redis_io::replicaof_cmd(to.map(|u| (u.host.as_str(), u.port)))
        .query::<()>(c)
        .map_err(|e| LiveFailure::Failed(format!("REPLICAOF: {e}")))
}

/// A switchover through Sentinel (`sentinel::switchover`: writes paused on the old
/// master until a replica has everything, then `SENTINEL FAILOVER`), after which the old
/// master follows the new one and takes writes no more (they get READONLY, never an
/// acknowledgement that Sentinel's later conversion would throw away), and is unpaused.
fn sentinel_switchover(
    master: &Endpoint,
    sentinels: &[Endpoint],
    name: &str,
) -> Result<(), String> {
    let pause = Duration::from_secs(30);
    let (ip, port) = crate::sentinel_client::switchover(master, sentinels, name, pause, pause / 2)?;
    let mut c = master
        .connect(Duration::from_secs(5))
        .map_err(|e| format!("the old master after the failover: {e}"))?;
    crate::redis_io::replicaof_cmd(Some((&ip.to_string(), port)))
        .query::<()>(&mut c)
        .map_err(|e| format!("REPLICAOF on the old master: {e}"))?;
    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query::<()>(&mut c)
        .map_err(|e| format!("CLIENT UNPAUSE on the old master: {e}"))
}

/// Closes the client connections of an instance that is no master any more, so pooled
/// clients reconnect (to the new master, through whatever finds it) instead of meeting
/// READONLY for as long as their connections live (`Endpoint::drop_clients`).
fn drop_clients(name: &str, endpoint: &Endpoint) {
    match endpoint.drop_clients(Duration::from_secs(2)) {
        Ok(n) => info!(instance = %name, "demoted: closed {n} client connection(s)"),
        Err(e) => {
            warn!(instance = %name, "demoted, but its client connections could not be closed: {e}")
        }
    }
}

/// `CONFIG SET masterauth` then `requirepass`, over a connection made with the old
/// password.
fn set_password(endpoint: &Endpoint, new: Option<&Secret>) -> redis::RedisResult<()> {
    let value = new.map(|s| s.expose()).unwrap_or_default();
    let mut c = endpoint.connect(Duration::from_secs(5))?;
    for key in ["masterauth", "requirepass"] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut c)?;
    }
    Ok(())
}

fn spawn_worker(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
    {
        warn!("cannot start thread {name}: {e}");
    }
}

/// "exit code 1" or "killed by SIGKILL".
fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
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

fn group_pause_path(machine: &Machine, host: &str) -> std::path::PathBuf {
    machine.group().pause_path(host)
}

/// How long a kept pause still holds; `None` when there is none, it is over, or the file
/// cannot be read (then the daemon says so and runs unpaused).
fn read_pause(path: &std::path::Path) -> Option<Duration> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(
                "cannot read the pause in {}: {e}; not paused",
                path.display()
            );
            return None;
        }
    };
    let until: jiff::Timestamp = match text.trim().parse() {
        Ok(t) => t,
        Err(e) => {
            warn!("{}: not a time ({e}); not paused", path.display());
            return None;
        }
    };
    let left = until.duration_since(jiff::Timestamp::now());
    Duration::try_from(left).ok().filter(|d| !d.is_zero())
}
