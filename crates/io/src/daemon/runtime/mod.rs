//! The supervisor's runtime: carries out the machine's effects and turns what happens in
//! the world into its inputs. It decides nothing.
//!
//! It owns what the pure machine must not: the children and their output tails, the
//! threads that talk to Redis (SHUTDOWN, claims, password and AOF changes), the prober's
//! target list, the clients waiting for replies, sd_notify. An OS fact becomes a domain
//! input here: "SIGCHLD" becomes `Exited { name, pid, how }` for each child that exited;
//! a launch's port check, file writes and spawn become `Launched` or `LaunchFailed`.
//!
//! [`Runtime::perform`] dispatches each effect to its family: [`process`] (launch,
//! signals, reaping, the RDB's history), [`redis`] (commands to an instance, in
//! workers), [`sentinel`], [`files`] (what is kept across restarts), [`record`] (changes
//! of master, the hook), [`control`] (replies, systemd), [`reload`]; [`snapshot`] builds
//! the metrics.

mod control;
mod files;
mod process;
mod record;
mod redis;
mod reload;
mod sentinel;
mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use tracing::{error, info, warn};

use super::Event;
use super::claim::ClaimHandle;
use super::prober::ProbeTargets;
use crate::process::RunAs;
use process::Proc;
use redisrepd_core::config::Group;
use redisrepd_core::control::Response;
use redisrepd_core::machine::{Effect, Input, Machine, Probe, RequestId};
use redisrepd_core::server::Server;

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
        let (procs, adopted) =
            process::adopt_all(&group, &setup.host, &setup.redis_server, &setup.events);
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
        let pause = machine.group().pause_path(&setup.host);
        if let Some(remaining) = files::read_pause(&pause) {
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
            Event::Machine(input) => self.feed(input, now),
            Event::ChildExited => {
                for input in self.reap() {
                    self.feed(input, now);
                }
            }
            Event::AdoptedExited { name, pid } => {
                if let Some(input) = self.adopted_exited(name, pid) {
                    self.feed(input, now);
                }
            }
            Event::Probes(answers) => self.feed_probes(answers, now),
            Event::Control { request, reply } => self.request(request, reply, now),
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

    /// Carries out one effect, by family; the input it answers with at once, if any (a
    /// worker's answer comes later, as [`Event::Machine`]).
    fn perform(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            // Processes.
            Effect::Launch(spec) => return Some(self.launch(&spec)),
            Effect::ReadHistory { name, rdb, aof_dir } => {
                return Some(process::read_history(name, &rdb, aof_dir.as_deref()));
            }
            Effect::Signal { name, pid, sig } => process::signal(&name, pid, sig),
            // Commands to an instance, in workers.
            Effect::Shutdown {
                name,
                pid,
                endpoint,
                nosave,
                timeout,
            } => self.shutdown(name, pid, endpoint, (nosave, timeout)),
            Effect::Claim {
                name,
                upstream,
                replica,
                max_concurrent_syncs,
                upstream_local,
                timeout,
            } => self.claim(
                name,
                (upstream, replica),
                (max_concurrent_syncs, upstream_local),
                timeout,
            ),
            Effect::Release { name } => self.release(&name),
            Effect::SetPassword {
                name,
                endpoint,
                new_endpoint,
                change,
                conf,
                conf_path,
            } => self.set_password(redis::AuthEffect {
                name,
                endpoints: (endpoint, new_endpoint),
                change,
                conf,
                conf_path,
            }),
            Effect::ApplyLive {
                name,
                endpoint,
                change,
                was,
                target,
                conf,
                conf_path,
            } => self.apply_live(redis::LiveEffect {
                name,
                endpoint,
                change,
                was,
                target,
                conf,
                conf_path,
            }),
            Effect::RestoreAof { name, endpoint } => self.restore_aof(name, endpoint),
            Effect::Failover {
                name,
                master,
                target,
                others,
                force,
                timeout,
            } => self.failover(name, (master, target), others, force, timeout),
            Effect::MakeMaster { name, endpoint } => self.make_master(name, endpoint),
            Effect::DropClients { name, endpoint } => redis::drop_clients(name, endpoint),
            // Sentinel.
            Effect::SentinelFailover {
                master,
                sentinels,
                master_name,
            } => self.sentinel_failover(master, sentinels, master_name),
            Effect::SentinelReconfigure {
                name,
                endpoint,
                sets,
                password,
            } => self.sentinel_reconfigure(name, endpoint, sets, password),
            // Kept on disk; changes of master.
            Effect::SaveTopology { .. } | Effect::SaveHistory => self.save_topology(),
            Effect::SavePause { remaining } => self.save_pause(remaining),
            Effect::MasterChanged(change) => self.record(change),
            Effect::LoadConfig { id, current } => {
                let result = self.load_config(current).map(Box::new);
                return Some(Input::ConfigLoaded { id, result });
            }
            // The prober.
            Effect::ProbeTargets(targets) => {
                if let Ok(mut t) = self.probe_targets.lock() {
                    *t = targets;
                }
            }
            Effect::ProbeNow => {
                let _ = self.wake_prober.send(());
            }
            // Callers and systemd.
            Effect::Reply { id, response } => self.reply(id, response),
            Effect::ReplyHistory { id } => self.reply_history(id),
            Effect::Notify(what) => self.notify(&what),
            Effect::Exit(code) => self.exit_code = Some(code),
        }
        None
    }
}
