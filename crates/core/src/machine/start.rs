//! Starting: which waiting instance may start now (its upstream answers, the sync gate
//! admits it), asking the upstream for a gate place, and what a launch carries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::{
    Blocker, Effect, Gate, History, Launch, LaunchSpec, Machine, ResumeFromRdb, State, human,
};
use crate::backoff;
use crate::config::{Instance, MaxSyncs, Secret};
use crate::endpoint::Endpoint;
use crate::gate::{self, Prediction};
use crate::info::Info;
use crate::rdb::ReplPosition;

use crate::render::{self, Secrets};

impl Machine {
    pub(super) fn on_launched(
        &mut self,
        name: &str,
        pid: u32,
        resumed_from_rdb: bool,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let start_timeout = self.group.supervise.start_timeout;
        let shutting_down = self.life.shutting_down;
        let endpoint = match self.group.instance(name) {
            Some(inst) => Some(Endpoint::of(&self.group, inst)),
            None => self
                .group
                .sentinel_node(name)
                .map(|node| crate::sentinel::endpoint(&self.group, node)),
        };
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let State::Launching {
            mut launch,
            after_crash,
        } = slot.state.clone()
        else {
            return;
        };
        info!(instance = %name, pid, "started");
        if self.roles.no_catch_up.as_deref() == Some(name) {
            self.roles.no_catch_up = None;
        }
        launch.at = Some(now);
        launch.aof_to_restore = resumed_from_rdb;
        slot.failed_starts = 0;
        slot.logged_sync = None;
        // A new process has no clients of the old one's to drop.
        slot.seen_as_master = false;
        if after_crash {
            slot.restarts += 1;
        }
        let unwanted = !slot.wanted || shutting_down || endpoint.is_none();
        if let Some(endpoint) = endpoint {
            slot.endpoint = endpoint;
        }
        self.set_state(
            name,
            State::Starting {
                pid,
                deadline: now + start_timeout,
                launch,
                killed: false,
            },
            fx,
        );
        if unwanted {
            // Stopped (or removed, or the daemon told to stop) while its launch was under
            // way: it runs now, so it is stopped like any running instance, saving.
            self.begin_stop(name, false, now, fx);
            return;
        }
        // Readiness should not wait a whole health interval.
        fx.push(Effect::ProbeNow);
    }

    /// A start that failed before the process ran: retried with backoff, like a crash, but
    /// for as long as it takes (nothing ran, so it never becomes `failed`).
    pub(super) fn fail_attempt(
        &mut self,
        name: &str,
        reason: String,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let sup = self.group.supervise.clone();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let after_crash = match &slot.state {
            State::Launching { after_crash, .. } => *after_crash,
            _ => return,
        };
        if !slot.wanted || self.life.shutting_down {
            // Stopped meanwhile: nothing ran, nothing to retry.
            slot.last_error = Some(reason);
            self.set_state(name, State::Stopped, fx);
            return;
        }
        error!(instance = %name, "{reason}");
        slot.failed_starts += 1;
        let delay = backoff::restart_delay(
            slot.failed_starts as usize,
            sup.restart_delay,
            sup.restart_delay_max,
        );
        let note = format!("{reason}; retrying in {}", human(delay));
        slot.clears_when_up = Some(note.clone());
        slot.last_error = Some(note);
        self.set_state(
            name,
            State::Backoff {
                until: now + delay,
                after_crash,
            },
            fx,
        );
    }

    /// Starts the waiting instances whose upstream answers and whose gate admits them.
    pub(super) fn start_waiting(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        for name in self.local_names() {
            let Some(State::Waiting {
                not_before,
                gate,
                history,
                ..
            }) = self.slots.get(&name).map(|s| &s.state)
            else {
                continue;
            };
            if now < *not_before {
                continue;
            }
            // Paused: a crashed instance waits for `resume` (or an operator's `start`).
            if self.held(&name, now) {
                if let Some(slot) = self.slots.get_mut(&name)
                    && let State::Waiting { reason, .. } = &mut slot.state
                    && *reason != Blocker::Paused
                {
                    *reason = Blocker::Paused;
                }
                continue;
            }
            let (gate, history) = (*gate, history.clone());
            let Some(inst) = self.group.instance(&name).cloned() else {
                continue;
            };
            let hold = match gate {
                Gate::Asking => Some(self.asking(&inst)),
                Gate::Granted => {
                    self.launch(&inst, now, false, fx);
                    None
                }
                Gate::NotAsked => self.admit(&inst, &history, now, fx),
            };
            if let Some(hold) = hold
                && let Some(slot) = self.slots.get_mut(&name)
                && let State::Waiting { reason, .. } = &mut slot.state
                && *reason != hold
            {
                info!(instance = %name, "waiting: {hold}");
                *reason = hold;
            }
        }
    }

    /// Decides for a waiting instance that has not asked for a gate place: launch it (a
    /// master; a replica whose resync is sure to be partial), read its RDB's history
    /// first, ask for a place, or hold it (and why).
    fn admit(
        &mut self,
        inst: &Instance,
        history: &History,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) -> Option<Blocker> {
        let Some(up) = self.group.upstream(inst).cloned() else {
            if let Some(hold) = self.before_master_start(inst, history, now, fx) {
                return Some(hold);
            }
            // The group may have named another master meanwhile: then it is a replica.
            if self.group.upstream(inst).is_none() {
                self.launch(inst, now, false, fx);
            }
            return None;
        };
        if let Some(why) = self.upstream_blocker(&up, now) {
            return Some(why);
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
            History::Read(position) => position.as_ref(),
        };
        let prediction = match self.steady_upstream_info(&up, now) {
            Some(info) => gate::predict(position, info),
            None => Prediction::MaybeFull,
        };
        if prediction == Prediction::SurePartial {
            info!(instance = %inst.name, "its resync will be partial: admitted without a place in the sync gate");
            self.launch(inst, now, true, fx);
            return None;
        }
        if let Some(why) = self.gate_blocker(inst, &up, now) {
            return Some(why);
        }
        self.ask_gate(inst, fx)
    }

    /// The answer to `ReadHistory`.
    pub(super) fn on_history(&mut self, name: &str, position: Option<ReplPosition>) {
        if let Some(slot) = self.slots.get_mut(name)
            && let State::Waiting { history, .. } = &mut slot.state
        {
            *history = History::Read(position);
        }
    }

    pub(super) fn asking(&self, inst: &Instance) -> Blocker {
        Blocker::AskingGate {
            upstream: inst.replica_of.clone().unwrap_or_default(),
        }
    }

    /// For a replica: asks its upstream for a place in the gate. `None` for a master,
    /// which needs none.
    pub(super) fn ask_gate(&mut self, inst: &Instance, fx: &mut Vec<Effect>) -> Option<Blocker> {
        let up = self.group.upstream(inst)?.clone();
        let upstream = self
            .slots
            .get(&up.name)
            .map(|s| s.endpoint.clone())
            .unwrap_or_else(|| Endpoint::of(&self.group, &up));
        let sup = &self.group.supervise;
        fx.push(Effect::Claim {
            name: inst.name.clone(),
            upstream,
            replica: inst.address(),
            max_concurrent_syncs: sup.max_concurrent_syncs,
            upstream_local: up.host == self.host,
            timeout: sup.start_timeout.min(Duration::from_secs(5)),
        });
        if let Some(slot) = self.slots.get_mut(&inst.name)
            && let State::Waiting { gate, .. } = &mut slot.state
        {
            *gate = Gate::Asking;
        }
        Some(self.asking(inst))
    }

    pub(super) fn on_claim(
        &mut self,
        name: &str,
        granted: bool,
        detail: String,
        retry_at: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let up = self
            .group
            .instance(name)
            .and_then(|i| i.replica_of.clone())
            .unwrap_or_default();
        let Some(State::Waiting {
            gate: Gate::Asking,
            after_crash,
            not_before,
            history,
            ..
        }) = self.slots.get(name).map(|s| s.state.clone())
        else {
            return; // no longer asking (stopped meanwhile): the release was sent
        };
        let next = if granted {
            // Why it was let in (with `auto`, the cost figures) is worth a line: the
            // waiting ones say why they wait.
            info!(instance = %name, "granted a place in the sync gate of `{up}`: {detail}");
            State::Waiting {
                reason: Blocker::Granted { upstream: up },
                not_before,
                gate: Gate::Granted,
                after_crash,
                history,
            }
        } else {
            State::Waiting {
                reason: Blocker::GateRefused {
                    upstream: up,
                    detail,
                },
                not_before: retry_at,
                gate: Gate::NotAsked,
                after_crash,
                history,
            }
        };
        self.set_state(name, next, fx);
    }

    /// The upstream's INFO to predict from: recent (the backlog moves on with every write),
    /// and from an upstream that is steady — running, and if it is a replica itself, linked
    /// and not syncing (a replica drops its backlog when it completes a full sync).
    fn steady_upstream_info(&self, up: &Instance, now: Instant) -> Option<&Info> {
        let probed = self.seen.infos.get(&up.name)?;
        let recent = now.saturating_duration_since(probed.asked_at)
            <= self.group.supervise.health_interval + Duration::from_millis(500);
        let info = probed.result.as_ref().ok()?;
        let running = match self.slots.get(&up.name) {
            Some(slot) => slot.state.kind() == super::Kind::Running,
            None => true,
        };
        let linked = up.replica_of.is_none()
            || (info.master_link_up() == Some(true) && !info.sync_in_progress());
        (recent && running && linked).then_some(info)
    }

    /// Why a replica of `up` may not start now: its upstream is not up.
    fn upstream_blocker(&self, up: &Instance, now: Instant) -> Option<Blocker> {
        let up_ready = match self.slots.get(&up.name) {
            Some(s) => matches!(s.state, State::Running { .. } | State::Syncing { .. }),
            None => self.fresh_info(&up.name, now).is_some(),
        };
        if up_ready {
            return None;
        }
        let why = match self.seen.infos.get(&up.name).map(|p| &p.result) {
            Some(Err(e)) => e.clone(),
            _ => "not running yet".to_owned(),
        };
        Some(Blocker::Upstream {
            upstream: up.name.clone(),
            address: up.address(),
            why,
        })
    }

    /// Why a replica that may need a full sync may not start now: its upstream's gate is
    /// full (replicas of ours on their way, and the upstream's other not-online ones).
    /// With `auto` the claim decides alone: its cost check needs the upstream's memory
    /// figures (and the host's), which the claim reads fresh.
    fn gate_blocker(&self, inst: &Instance, up: &Instance, now: Instant) -> Option<Blocker> {
        let MaxSyncs::Fixed(max) = self.group.supervise.max_concurrent_syncs else {
            return None;
        };
        let ours: Vec<&Instance> = self
            .group
            .replicas_of(&up.name)
            .filter(|r| r.name != inst.name)
            .filter(|r| self.slots.get(&r.name).is_some_and(|s| s.state.in_flight()))
            .collect();
        let syncing = gate::syncing(ours.len(), self.fresh_info(&up.name, now), |line| {
            ours.iter().any(|r| line.is(r.bind, r.port)) || line.is(inst.bind, inst.port)
        });
        if !gate::admits(syncing, max) {
            return Some(Blocker::GateFull {
                upstream: up.name.clone(),
                syncing,
                max,
            });
        }
        None
    }

    /// Asks the runtime to write the config and spawn the instance.
    pub(super) fn launch(
        &mut self,
        inst: &Instance,
        now: Instant,
        predicted_partial: bool,
        fx: &mut Vec<Effect>,
    ) {
        let Some(State::Waiting {
            gate, after_crash, ..
        }) = self.slots.get(&inst.name).map(|s| s.state.clone())
        else {
            return;
        };
        let group = &self.group;
        let spec = LaunchSpec {
            name: inst.name.clone(),
            binary: self.binary.clone(),
            endpoint: Endpoint::of(group, inst),
            conf: Secret::new(render::render(group, inst, &self.server, Secrets::Show)),
            conf_path: group.conf_path(inst),
            data_path: group.data_path(inst),
            log_path: group.log_path(inst),
            pid_path: group.pid_path(inst),
            resume: self.resume_candidate(inst),
            sentinel: false,
        };
        let sync_full_before = group
            .upstream(inst)
            .and_then(|u| self.fresh_info(&u.name, now))
            .map(Info::sync_full);
        let launch = Launch {
            at: None,
            aof_to_restore: false,
            sync_full_before,
            holds_place: gate == Gate::Granted,
            predicted_partial,
        };
        self.set_state(
            &inst.name,
            State::Launching {
                launch,
                after_crash,
            },
            fx,
        );
        fx.push(Effect::Launch(spec));
    }

    /// The RDB an instance loads at start, and its AOF directory when AOF is on.
    pub(super) fn rdb_paths(&self, inst: &Instance) -> (PathBuf, Option<PathBuf>) {
        let first = |key: &str, default: &str| {
            self.group
                .directive(inst, key)
                .and_then(|v| v.first().cloned())
                .unwrap_or_else(|| default.to_owned())
        };
        let aof = self
            .group
            .directive(inst, "appendonly")
            .is_some_and(|v| v.iter().any(|s| s.eq_ignore_ascii_case("yes")));
        let data = self.group.data_path(inst);
        (
            data.join(first("dbfilename", "dump.rdb")),
            aof.then(|| data.join(first("appenddirname", "appendonlydir"))),
        )
    }

    /// Redis resumes replication (a partial resync) only when it loaded an RDB: a replica
    /// that loads its AOF asks for a full copy (measured). So a replica with AOF whose RDB
    /// is at least as new as its AOF (as after a graceful `SHUTDOWN SAVE`) starts with AOF
    /// off, loads the RDB, and gets AOF back once in sync. Masters are not treated so:
    /// until AOF is back on, their new writes would not be durable.
    pub(super) fn resume_candidate(&self, inst: &Instance) -> Option<ResumeFromRdb> {
        if inst.is_master() {
            return None;
        }
        let (rdb, aof_dir) = self.rdb_paths(inst);
        Some(ResumeFromRdb {
            rdb,
            aof_dir: aof_dir?,
        })
    }
}
