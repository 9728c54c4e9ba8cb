//! Processes: adopting what an earlier daemon left running, launching (port check, files,
//! spawn, pid file), signals, reaping, and reading where a replica's RDB resumes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::Sender;

use nix::sys::signal::Signal;
use tracing::{info, warn};

use super::Runtime;
use crate::daemon::Event;
use crate::files;
use crate::process::{self, OutputTail};
use redisrepd_core::config::Group;
use redisrepd_core::machine::{Input, LaunchSpec, Sig};

/// A running instance's process: our child, or one an earlier daemon started.
pub(super) struct Proc {
    pub(super) pid: u32,
    /// `None` when adopted: its exit is reported by a pidfd watcher.
    pub(super) child: Option<Child>,
    pub(super) tail: OutputTail,
    pid_path: PathBuf,
    /// Its address, to name who holds the port when it could not bind.
    bind: IpAddr,
    port: u16,
    /// Our child's pid file as written at launch, until it is rewritten with what /proc
    /// says once the server first answers (see [`process::PidRecord`]).
    unconfirmed: Option<process::PidRecord>,
}

impl Proc {
    fn adopted(pid: u32, pid_path: PathBuf, bind: IpAddr, port: u16) -> Proc {
        Proc {
            pid,
            child: None,
            tail: OutputTail::default(),
            pid_path,
            bind,
            port,
            unconfirmed: None,
        }
    }
}

/// Appended to a replica's redis.conf when it resumes from its RDB.
const RESUME_FROM_RDB: &str = "# redisrepd: this start loads the RDB written by the graceful stop, \
because Redis resumes replication only from an RDB; AOF is switched back on with \
CONFIG SET once the replica is in sync.\nappendonly no\n";

/// The instances and sentinels of `host` that an earlier daemon started and that still
/// run, taken over (their exits reported as [`Event::AdoptedExited`]); with the
/// `(name, pid)` list the machine starts from.
pub(super) fn adopt_all(
    group: &Group,
    host: &str,
    redis_server: &Path,
    events: &Sender<Event>,
) -> (HashMap<String, Proc>, Vec<(String, u32)>) {
    let mut procs = HashMap::new();
    let mut adopted = Vec::new();
    // /proc/PID/exe names the file with symlinks resolved.
    let configured =
        std::fs::canonicalize(redis_server).unwrap_or_else(|_| redis_server.to_owned());
    // Read only if there is a pid file to judge: it takes a while on a busy host.
    let listeners: std::cell::LazyCell<process::Listeners> =
        std::cell::LazyCell::new(process::Listeners::read);
    let places = group
        .start_order(host)
        .into_iter()
        .map(|i| (&i.name, group.pid_path(i), i.bind, i.port))
        .chain(
            group
                .sentinel_nodes_on(host)
                .map(|n| (&n.name, group.sentinel_pid_path(n), n.bind, n.port)),
        );
    for (name, pid_path, bind, port) in places {
        let how = (&*configured, &listeners);
        if let Some(pid) = adopt(name, &pid_path, (bind, port), how, events) {
            adopted.push((name.clone(), pid));
            procs.insert(name.clone(), Proc::adopted(pid, pid_path, bind, port));
        }
    }
    (procs, adopted)
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

impl Runtime {
    /// SIGCHLDs coalesce, so every child is checked on each one.
    pub(super) fn reap(&mut self) -> Vec<Input> {
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

    /// The `Exited` input for an adopted process `pid` of `name` that ended, unless it is
    /// not (or no longer) the one this runtime holds.
    pub(super) fn adopted_exited(&mut self, name: String, pid: u32) -> Option<Input> {
        let ours = self
            .procs
            .get(&name)
            .is_some_and(|p| p.pid == pid && p.child.is_none());
        if !ours {
            return None;
        }
        let p = self.procs.remove(&name)?;
        let _ = std::fs::remove_file(&p.pid_path);
        let how = "exit status unknown: it was adopted from an earlier daemon";
        Some(exited(name, &p, how.to_owned()))
    }

    /// Checks the port, writes the config and data dir (owned by `user`), spawns the
    /// instance and writes its pid file.
    pub(super) fn launch(&mut self, spec: &LaunchSpec) -> Input {
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
    pub(super) fn confirm_pid_file(&mut self, name: &str) {
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

/// The answer to `ReadHistory`: where the replica's RDB resumes replication. A replica
/// with AOF loads the AOF when it is newer than the RDB, and no server resumes
/// replication from an AOF.
pub(super) fn read_history(name: String, rdb: &Path, aof_dir: Option<&Path>) -> Input {
    let loads_rdb = aof_dir.is_none_or(|aof| files::rdb_at_least_as_new_as_aof(rdb, aof));
    let position = loads_rdb
        .then(|| read_head(rdb, redisrepd_core::rdb::HEAD_BYTES))
        .flatten()
        .and_then(|head| redisrepd_core::rdb::repl_position(&head));
    Input::HistoryRead { name, position }
}

/// Sends `sig` to the process `pid` of `name`; a failure is logged.
pub(super) fn signal(name: &str, pid: u32, sig: Sig) {
    let signal = match sig {
        Sig::Term => Signal::SIGTERM,
        Sig::Kill => Signal::SIGKILL,
    };
    if let Err(e) = process::send_signal(pid, signal) {
        warn!(instance = %name, pid, "cannot send {signal}: {e}");
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

/// The `Exited` input for a process, with its last output lines and, when they say its
/// address was in use, who holds the port now.
fn exited(name: String, p: &Proc, how: String) -> Input {
    let last_output: Vec<String> = p
        .tail
        .lock()
        .map(|t| t.lines.iter().cloned().collect())
        .unwrap_or_default();
    let port_holder = address_in_use(&last_output)
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

/// Whether a server's last lines say it could not bind its address.
fn address_in_use(last_output: &[String]) -> bool {
    last_output
        .iter()
        .any(|l| l.contains("Address already in use"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn an_exit_is_described_by_its_code_or_its_signal() {
        // The raw wait status: the code in the high byte, a signal in the low bits.
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit code 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(0)), "exit code 0");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by SIGKILL");
        assert_eq!(describe_exit(ExitStatus::from_raw(15)), "killed by SIGTERM");
    }

    #[test]
    fn only_a_failed_bind_asks_who_holds_the_port() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(address_in_use(&lines(&[
            "# Warning: Could not create server TCP listening socket 127.0.0.1:7000: bind: Address already in use",
            "# Failed listening on port 7000 (tcp), aborting.",
        ])));
        assert!(!address_in_use(&lines(&["# User requested shutdown..."])));
        assert!(!address_in_use(&[]));
    }

    #[test]
    fn a_missing_rdb_has_no_position() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let input = read_history("r1".into(), &dir.path().join("dump.rdb"), None);
        assert!(matches!(
            input,
            Input::HistoryRead { name, position: None } if name == "r1"
        ));
    }
}
