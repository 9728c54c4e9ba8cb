//! Stopping: SHUTDOWN SAVE, its outcome, and the escalation to SIGTERM and SIGKILL on
//! their deadlines; the other deadlines (start, sync, backoff) expire here too.

use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::{AofWait, Effect, Kind, Machine, Sig, State};
use crate::endpoint::ShutdownError;

/// How soon SHUTDOWN is asked again while Redis rewrites its AOF.
const AOF_RETRY: Duration = Duration::from_millis(200);

/// `1.5s`, for the log.
pub(super) fn human_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Machine {
    /// Begins an authenticated SHUTDOWN SAVE of `name`; its outcome arrives as an input.
    pub(super) fn begin_stop(
        &mut self,
        name: &str,
        force: bool,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let timeout = self.group.supervise.shutdown_timeout;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.wanted = false;
        // A launch under way is answered before long; `on_launched` stops what it started.
        if slot.state.stopping() || slot.state.kind() == Kind::Launching {
            return;
        }
        let Some(pid) = slot.state.pid() else {
            if slot.state.kind() != Kind::Failed {
                self.set_state(name, State::Stopped, fx);
            }
            return;
        };
        info!(instance = %name, pid, "stopping: SHUTDOWN SAVE");
        fx.push(Effect::Shutdown {
            name: name.to_owned(),
            pid,
            endpoint: slot.endpoint.clone(),
            nosave: false,
            timeout,
        });
        self.set_state(
            name,
            State::ShuttingDown {
                pid,
                deadline: now + timeout,
                force,
                nosave: false,
                aof_wait: None,
            },
            fx,
        );
    }

    pub(super) fn on_shutdown_done(
        &mut self,
        name: &str,
        pid: u32,
        result: Result<(), ShutdownError>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let timeout = self.group.supervise.shutdown_timeout;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let State::ShuttingDown {
            pid: stopping_pid,
            force,
            deadline,
            nosave,
            aof_wait,
        } = slot.state
        else {
            return;
        };
        if stopping_pid != pid {
            return; // about a process that is gone
        }
        match result {
            Ok(()) => {} // the exit arrives as its own input (and may come first)
            Err(ShutdownError::RewritingAof(msg)) if now < deadline => {
                // Not a failed save: Redis exits once the rewrite is written. Ask again
                // shortly, within shutdown_timeout.
                if aof_wait.is_none() {
                    info!(instance = %name, pid, "SHUTDOWN refused while it rewrites its AOF ({msg}; after a full sync Redis writes its initial AOF and cannot exit before): asking again until it is done, within shutdown_timeout ({})", human_secs(timeout));
                }
                let wait = AofWait {
                    since: aof_wait.map_or(now, |w| w.since),
                    retry: Some((now + AOF_RETRY).min(deadline)),
                };
                let waiting = State::ShuttingDown {
                    pid,
                    deadline,
                    force,
                    nosave,
                    aof_wait: Some(wait),
                };
                self.set_state(name, waiting, fx);
            }
            Err(ShutdownError::RewritingAof(msg)) => {
                self.aof_wait_expired(name, pid, force, &msg, now, fx);
            }
            Err(ShutdownError::Refused(msg)) if force && !nosave => {
                warn!(instance = %name, pid, "final save failed ({msg}); --force: SHUTDOWN NOSAVE, unsaved writes are lost");
                fx.push(Effect::Shutdown {
                    name: name.to_owned(),
                    pid,
                    endpoint: slot.endpoint.clone(),
                    nosave: true,
                    timeout,
                });
                let nosave = State::ShuttingDown {
                    pid,
                    deadline,
                    force,
                    nosave: true,
                    aof_wait: None,
                };
                self.set_state(name, nosave, fx);
            }
            Err(ShutdownError::Refused(msg)) if !force => {
                let why = format!(
                    "stop failed, left running (nothing lost): {msg} (its final save failed: \
                     check its data dir and disk); fix the cause and stop again, or \
                     `redisrepd stop --force {name}` to stop it without saving"
                );
                error!(instance = %name, pid, "{why}");
                slot.last_error = Some(why);
                slot.wanted = true;
                slot.counters.stops_refused += 1;
                self.set_state(name, State::Running { pid }, fx);
            }
            Err(e) => {
                // Unreachable or silent, or SHUTDOWN NOSAVE refused too: SIGTERM makes
                // Redis save and exit just as SHUTDOWN, and SIGKILL follows.
                warn!(instance = %name, pid, "SHUTDOWN did not complete ({e}); sending SIGTERM");
                fx.push(Effect::Signal {
                    name: name.to_owned(),
                    pid,
                    sig: Sig::Term,
                });
                self.set_state(
                    name,
                    State::Terminating {
                        pid,
                        deadline: now + timeout,
                    },
                    fx,
                );
            }
        }
    }

    /// `shutdown_timeout` is over and Redis still rewrites its AOF. Without `--force` the
    /// stop fails and it is left running (SIGTERM is refused alike, and SIGKILL would lose
    /// what the AOF does not hold yet); with it, the usual SIGTERM, then SIGKILL.
    fn aof_wait_expired(
        &mut self,
        name: &str,
        pid: u32,
        force: bool,
        msg: &str,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let timeout = self.group.supervise.shutdown_timeout;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if force {
            warn!(instance = %name, pid, "still rewriting its AOF after shutdown_timeout ({}): --force: SIGTERM, then SIGKILL", human_secs(timeout));
            fx.push(Effect::Signal {
                name: name.to_owned(),
                pid,
                sig: Sig::Term,
            });
            let terminating = State::Terminating {
                pid,
                deadline: now + timeout,
            };
            self.set_state(name, terminating, fx);
            return;
        }
        let why = format!(
            "stop failed, left running (nothing lost): still rewriting its AOF after \
             shutdown_timeout ({}) ({msg}; after a full sync Redis cannot exit before its \
             initial AOF is written); stop it again once INFO persistence shows \
             aof_rewrite_in_progress:0, raise shutdown_timeout, or `redisrepd stop --force \
             {name}`",
            human_secs(timeout)
        );
        error!(instance = %name, pid, "{why}");
        slot.last_error = Some(why);
        slot.wanted = true;
        slot.counters.stops_refused += 1;
        self.set_state(name, State::Running { pid }, fx);
    }

    /// Moves every state whose deadline has passed.
    pub(super) fn escalate_and_expire(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let sup = self.group.supervise.clone();
        let timeout = sup.shutdown_timeout;
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            let pid = slot.state.pid().unwrap_or_default();
            let signal = |sig| Effect::Signal {
                name: name.clone(),
                pid,
                sig,
            };
            let next = match slot.state.clone() {
                State::ShuttingDown {
                    pid,
                    deadline,
                    force,
                    nosave,
                    aof_wait: Some(wait),
                } => {
                    match wait.retry {
                        // No SHUTDOWN under way, and the time is up.
                        Some(_) if now >= deadline => {
                            let msg = "SHUTDOWN refused until then";
                            self.aof_wait_expired(&name, pid, force, msg, now, fx);
                            continue;
                        }
                        Some(at) if now >= at => {
                            fx.push(Effect::Shutdown {
                                name: name.clone(),
                                pid,
                                endpoint: slot.endpoint.clone(),
                                nosave,
                                // Accepted, it still saves: that gets its own timeout.
                                timeout,
                            });
                            State::ShuttingDown {
                                pid,
                                deadline,
                                force,
                                nosave,
                                aof_wait: Some(AofWait {
                                    retry: None,
                                    ..wait
                                }),
                            }
                        }
                        // One under way answers within its own timeout, sent before the
                        // deadline; should it not, the usual SIGTERM.
                        None if now >= deadline + timeout => {
                            warn!(instance = %name, pid, "no answer to SHUTDOWN within shutdown_timeout: SIGTERM");
                            fx.push(signal(Sig::Term));
                            State::Terminating {
                                pid,
                                deadline: now + timeout,
                            }
                        }
                        _ => continue,
                    }
                }
                State::ShuttingDown { pid, deadline, .. } if now >= deadline => {
                    warn!(instance = %name, pid, "no exit within shutdown_timeout: SIGTERM");
                    fx.push(signal(Sig::Term));
                    State::Terminating {
                        pid,
                        deadline: now + timeout,
                    }
                }
                State::Terminating { pid, deadline } | State::Killing { pid, deadline }
                    if now >= deadline =>
                {
                    error!(instance = %name, pid, "still running {}s after SIGTERM: SIGKILL (unsaved writes are lost)", timeout.as_secs());
                    fx.push(signal(Sig::Kill));
                    State::Killing {
                        pid,
                        deadline: now + timeout,
                    }
                }
                State::Starting {
                    pid,
                    deadline,
                    launch,
                    killed,
                } if now >= deadline && launch.at.is_none() => {
                    // Adopted: it was serving before this daemon came; it may be busy, or
                    // our password may differ from the one it was started with. Killing it
                    // would lose what it has not saved: report it and leave it alone.
                    let why = "adopted from an earlier daemon, but not answering PING with \
                               AUTH within start_timeout; left running"
                        .to_owned();
                    if slot.last_error.as_ref() != Some(&why) {
                        error!(instance = %name, pid, "{why}");
                        slot.last_error = Some(why);
                    }
                    State::Starting {
                        pid,
                        deadline: now + sup.start_timeout,
                        launch,
                        killed,
                    }
                }
                State::Starting {
                    pid,
                    deadline,
                    launch,
                    killed,
                } if now >= deadline => {
                    if !killed {
                        error!(instance = %name, pid, "did not answer PING within start_timeout: killing it");
                        slot.last_error =
                            Some("did not answer PING within start_timeout".to_owned());
                    }
                    fx.push(signal(Sig::Kill));
                    // Its exit ends this state (as a crash); do not kill it again meanwhile.
                    State::Starting {
                        pid,
                        deadline: now + timeout,
                        launch,
                        killed: true,
                    }
                }
                State::Syncing {
                    pid,
                    deadline,
                    launch,
                    ..
                } if now >= deadline => {
                    warn!(instance = %name, pid, "not in sync within sync_timeout; releasing its place in the sync gate");
                    if launch.aof_to_restore {
                        // It must not stay without AOF because its sync is slow.
                        fx.push(Effect::RestoreAof {
                            name: name.clone(),
                            endpoint: slot.endpoint.clone(),
                        });
                    }
                    slot.sync_timeouts += 1;
                    slot.last_error = Some("did not come in sync within sync_timeout".to_owned());
                    State::Running { pid }
                }
                State::Backoff { until, after_crash } if now >= until => {
                    let reason = if after_crash {
                        super::Blocker::RestartingAfterCrash
                    } else {
                        super::Blocker::RetryingStart
                    };
                    State::waiting(reason, now, after_crash)
                }
                _ => continue,
            };
            self.set_state(&name, next, fx);
        }
    }
}
