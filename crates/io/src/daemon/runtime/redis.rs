//! Effects carried out by talking to an instance, each in a worker thread that sends the
//! machine's answering input back: SHUTDOWN, sync-gate claims, password, config changes
//! in place, AOF back on, failovers and promotions, dropping a demoted master's clients.
//! The commands themselves are in [`crate::redis_io`].

use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tracing::{info, warn};

use super::Runtime;
use crate::daemon::Event;
use crate::daemon::claim;
use crate::files;
use crate::process::RunAs;
use crate::redis_io::{
    Client as _, ConfigSetError, Endpoint, config_set_many_on, config_set_on, replicaof_on,
};
use redisrepd_core::acl::{AclOp, AuthChange};
use redisrepd_core::config::{MaxSyncs, Secret};
use redisrepd_core::info::{Replication, RepointVerdict};
use redisrepd_core::machine::{Input, LiveFailure};
use redisrepd_core::plan::TLS_FILE_KEYS;
use redisrepd_core::plan::{LiveChange, Upstream};

/// Runs `work` in a thread of its own named `name`; a thread that cannot be started is
/// logged (its effect then never answers, as if the instance never did).
pub(super) fn spawn_worker(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
    {
        warn!("cannot start thread {name}: {e}");
    }
}

/// Runs `work` in a worker named `thread` and hands the input it makes to the machine.
pub(super) fn answer_in_worker(
    events: &Sender<Event>,
    thread: &str,
    work: impl FnOnce() -> Input + Send + 'static,
) {
    let events = events.clone();
    spawn_worker(thread, move || {
        let _ = events.send(Event::Machine(work()));
    });
}

/// An `Effect::ApplyLive`: a change to apply to a running instance, where it was in
/// replication when the change was decided, and the redis.conf to write after.
pub(super) struct LiveEffect {
    pub name: String,
    pub endpoint: Endpoint,
    pub change: LiveChange,
    pub was: Option<Replication>,
    pub target: Option<(Endpoint, Replication)>,
    pub conf: Secret,
    pub conf_path: std::path::PathBuf,
}

/// An `Effect::SetPassword`: the change, the endpoints before and after it, and the
/// redis.conf to write after.
pub(super) struct AuthEffect {
    pub name: String,
    /// What the instance accepted until now, and what it accepts after the change (tried
    /// when the first is refused: a change already applied by an earlier attempt).
    pub endpoints: (Endpoint, Endpoint),
    pub change: AuthChange,
    pub conf: Secret,
    pub conf_path: std::path::PathBuf,
}

impl Runtime {
    /// `SHUTDOWN` of `pid`, answered with `ShutdownDone`.
    pub(super) fn shutdown(
        &self,
        name: String,
        pid: u32,
        endpoint: Endpoint,
        (nosave, timeout): (bool, Duration),
    ) {
        answer_in_worker(&self.events, &format!("shutdown-{name}"), move || {
            let result = endpoint.shutdown(nosave, timeout);
            Input::ShutdownDone { name, pid, result }
        });
    }

    /// Asks `upstream` for a place in its sync gate for `replica`; the claim is held
    /// until [`Runtime::release`].
    pub(super) fn claim(
        &mut self,
        name: String,
        (upstream, replica): (Endpoint, String),
        (max_concurrent_syncs, upstream_local): (MaxSyncs, bool),
        timeout: Duration,
    ) {
        let handle = claim::request(
            self.events.clone(),
            name.clone(),
            upstream,
            replica,
            (max_concurrent_syncs, upstream_local),
            timeout,
        );
        self.claims.insert(name, handle);
    }

    /// Gives the place in the gate back (closing the claim's connection).
    pub(super) fn release(&mut self, name: &str) {
        self.claims.remove(name);
    }

    /// Passwords and ACL users changed in place, answered with `PasswordSet`.
    pub(super) fn set_password(&self, auth: AuthEffect) {
        let run_as = self.run_as.clone();
        let name = auth.name.clone();
        answer_in_worker(&self.events, &format!("password-{name}"), move || {
            let result = set_auth(&auth, run_as.as_ref());
            if let Err(e) = &result {
                warn!(instance = %name, "passwords and users not changed in place: {e}");
            }
            Input::PasswordSet { name, result }
        });
    }

    /// A config change applied in place, answered with `LiveApplied`.
    pub(super) fn apply_live(&self, live: LiveEffect) {
        let run_as = self.run_as.clone();
        answer_in_worker(&self.events, &format!("live-{}", live.name), move || {
            let result = apply_live(&live, run_as.as_ref());
            Input::LiveApplied {
                name: live.name,
                result,
            }
        });
    }

    /// AOF switched back on after a resume from the RDB, answered with `AofRestored`.
    pub(super) fn restore_aof(&self, name: String, endpoint: Endpoint) {
        answer_in_worker(&self.events, &format!("aof-{name}"), move || {
            let result = endpoint
                .config_set("appendonly", "yes", Duration::from_secs(5))
                .map_err(|e| e.to_string());
            Input::AofRestored { name, result }
        });
    }

    /// A failover from `master` to `target` (ours, or Redis's `FAILOVER ... FORCE`),
    /// answered with `RoleChanged`.
    pub(super) fn failover(
        &self,
        name: String,
        (master, target): (Endpoint, Endpoint),
        others: Vec<Endpoint>,
        force: bool,
        timeout: Duration,
    ) {
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
        answer_in_worker(&self.events, &format!("failover-{name}"), move || {
            let result = if force {
                master.failover(&target, true, timeout)
            } else {
                master.switchover(&target, &others, timeout).map(|t| {
                    info!(instance = %name, "switchover done: {}", t.describe());
                })
            };
            Input::RoleChanged { name, result }
        });
    }

    /// `REPLICAOF NO ONE`, answered with `RoleChanged`.
    pub(super) fn make_master(&self, name: String, endpoint: Endpoint) {
        info!(instance = %name, "REPLICAOF NO ONE: making it master");
        answer_in_worker(&self.events, &format!("promote-{name}"), move || {
            let result = endpoint.replicaof(None, Duration::from_secs(5));
            Input::RoleChanged { name, result }
        });
    }
}

/// Closes the client connections of an instance that is no master any more, so pooled
/// clients reconnect (to the new master, through whatever finds it) instead of meeting
/// READONLY for as long as their connections live (`Endpoint::drop_clients`). Nothing
/// answers it.
pub(super) fn drop_clients(name: String, endpoint: Endpoint) {
    spawn_worker(&format!("drop-clients-{name}"), move || {
        match endpoint.drop_clients(Duration::from_secs(2)) {
            Ok(n) => info!(instance = %name, "demoted: closed {n} client connection(s)"),
            Err(e) => {
                warn!(instance = %name, "demoted, but its client connections could not be closed: {e}")
            }
        }
    });
}

/// The machine's name for what `CONFIG SET` made of a setting.
fn live_failure(e: ConfigSetError) -> LiveFailure {
    match e {
        ConfigSetError::Refused { .. } => LiveFailure::Refused(e.to_string()),
        ConfigSetError::Failed { .. } => LiveFailure::Failed(e.to_string()),
    }
}

/// Applies passwords and ACL users to a running instance, then writes its new redis.conf
/// (so that a restart agrees).
fn set_auth(auth: &AuthEffect, run_as: Option<&RunAs>) -> Result<(), String> {
    let timeout = Duration::from_secs(5);
    let (old, new) = &auth.endpoints;
    let mut c = match old.connect(timeout) {
        Ok(c) => c,
        Err(e) if e.kind() == redis::ErrorKind::AuthenticationFailed => new
            .connect(timeout)
            .map_err(|e| format!("cannot reach it: {}", crate::redis_io::describe(e)))?,
        Err(e) => {
            return Err(format!("cannot reach it: {}", crate::redis_io::describe(e)));
        }
    };
    crate::redis_io::auth_change_on(&mut c, &auth.change)?;
    let kills: Vec<&AclOp> = (auth.change.last.iter())
        .filter(|op| matches!(op, AclOp::KillClients { .. }))
        .collect();
    if !kills.is_empty() {
        let mut c = new.connect(timeout).map_err(|e| {
            format!(
                "cannot reach it as its new user: {}",
                crate::redis_io::describe(e)
            )
        })?;
        for op in kills {
            crate::redis_io::auth_op_on(&mut c, op)?;
        }
    }
    write_conf(&auth.conf_path, &auth.conf, run_as)
}

/// Writes a redis.conf (mode 0600, owned by the instances' user).
fn write_conf(conf_path: &Path, conf: &Secret, run_as: Option<&RunAs>) -> Result<(), String> {
    files::write_atomic(conf_path, conf.expose().as_bytes(), 0o600)
        .and_then(|()| match run_as {
            Some(r) => {
                std::os::unix::fs::chown(conf_path, Some(r.uid.as_raw()), Some(r.gid.as_raw()))
            }
            None => Ok(()),
        })
        .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))
}

/// Applies a config change to a running instance: `CONFIG SET` each setting (the first
/// one refused ends it: the machine restarts the instance instead), then the new
/// redis.conf on disk (so a later start agrees).
fn apply_live(live: &LiveEffect, run_as: Option<&RunAs>) -> Result<(), LiveFailure> {
    let (endpoint, change) = (&live.endpoint, &live.change);
    let mut c = endpoint
        .connect(Duration::from_secs(5))
        .map_err(|e| LiveFailure::Failed(format!("cannot reach it: {e}")))?;
    // The certificate files go together (one CONFIG SET re-reads them all): a new
    // certificate set alone would be checked against the old key and refused.
    let (tls, others): (Vec<_>, Vec<_>) = change
        .set
        .iter()
        .partition(|(k, _)| TLS_FILE_KEYS.contains(&k.as_str()));
    for (key, value) in others {
        config_set_on(&mut c, key, value.expose()).map_err(live_failure)?;
    }
    if !tls.is_empty() {
        let pairs: Vec<(&str, &str)> = tls.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        config_set_many_on(&mut c, &pairs).map_err(live_failure)?;
    }
    if let Some(repoint) = &change.repoint {
        repoint_checked(&mut c, live, repoint.as_ref())?;
    }
    write_conf(&live.conf_path, &live.conf, run_as).map_err(LiveFailure::Failed)
}

/// `REPLICAOF` on an instance, sent only while it is where it was when the re-point was
/// decided: another daemon (or an operator) may have changed its role since — a failover
/// back, most often — and a stale `REPLICAOF` then makes two instances replicas of each
/// other. Nothing is sent when it is already where it should go. Logged either way.
fn repoint_checked(
    c: &mut redis::Connection,
    live: &LiveEffect,
    to: Option<&Upstream>,
) -> Result<(), LiveFailure> {
    let name = &live.name;
    let now = crate::redis_io::replication_on(c)
        .map_err(|e| LiveFailure::Failed(format!("INFO before REPLICAOF: {e}")))?;
    let goal_place = match to {
        Some(u) => Replication::ReplicaOf {
            host: u.host.clone(),
            port: u.port,
        },
        None => Replication::Master,
    };
    let goal = to.map_or_else(|| "master".to_owned(), |u| format!("`{}`", u.name));
    let target = live.target.as_ref().map(|(ep, was)| {
        let now = ep
            .replication(Duration::from_secs(2))
            .map_err(|e| e.to_string());
        (was, now)
    });
    let verdict =
        redisrepd_core::info::repoint_verdict(&goal_place, live.was.as_ref(), now.as_ref(), target);
    match verdict {
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
    replicaof_on(c, to.map(|u| (u.host.as_str(), u.port)))
        .map_err(|e| LiveFailure::Failed(format!("REPLICAOF: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_setting_restarts_and_a_failed_one_does_not() {
        let refused = ConfigSetError::Refused {
            key: "maxmemory".into(),
            why: "argument must be a memory value".into(),
        };
        assert_eq!(
            live_failure(refused),
            LiveFailure::Refused("`maxmemory`: argument must be a memory value".into())
        );
        let failed = ConfigSetError::Failed {
            key: "maxmemory".into(),
            why: "broken pipe".into(),
        };
        assert_eq!(
            live_failure(failed),
            LiveFailure::Failed("`maxmemory`: broken pipe".into())
        );
    }
}
