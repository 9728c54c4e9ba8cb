//! The recorder thread: for each change of master the machine emits, in the order it
//! emits them, fills in the new master's replication id when the machine did not know it,
//! adds the change to `run_dir/<host>.history`, and runs the `[hooks] on_role_change`
//! program with a timeout. It decides nothing, and the supervisor never waits for it: a
//! hook that hangs delays only the next change's hook, until its timeout kills it.
//!
//! A hook runs without a shell, in its own process group (a timeout kills the whole
//! group, so a `sleep` it started dies too), with a clean environment: `PATH` and the
//! `REDISREPD_*` variables only, never the password. Each line it prints goes to the
//! daemon's log; how it ended is logged and counted ([`HookCounts`], for metrics).

use crate::redis_io::Client as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::redis_io::Endpoint;
use redisrepd_core::changes::Change;
use redisrepd_core::config::Hooks;

/// The PATH a hook gets when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long the new master is given to say its replication id.
const ID_TIMEOUT: Duration = Duration::from_secs(1);

/// How a hook's runs ended since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCounts {
    /// Exited 0.
    pub ok: u64,
    /// Could not start, or exited non-zero, or was killed by a signal.
    pub failed: u64,
    /// Ran past `[hooks] timeout` and was killed.
    pub timeout: u64,
}

/// One change to record.
pub struct Job {
    /// The change, with this host in `seen_by`; `repl_id` filled in here when `None`.
    pub change: Change,
    /// The new master, asked for its replication id.
    pub endpoint: Endpoint,
    /// Where the history is kept.
    pub history: PathBuf,
    /// The hooks as the file said when the change was made (a reload applies to the next).
    pub hooks: Hooks,
    /// The hook's environment besides PATH.
    pub env: Vec<(&'static str, String)>,
}

/// The handle the runtime keeps: where to send jobs, and the counts.
pub struct Recorder {
    jobs: Sender<Job>,
    pub counts: Arc<Mutex<HookCounts>>,
}

impl Recorder {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<Recorder> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let counts = Arc::new(Mutex::new(HookCounts::default()));
        let shared = counts.clone();
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                for job in rx {
                    record(job, &shared);
                }
            })?;
        Ok(Recorder { jobs, counts })
    }

    /// Queues a change.
    pub fn send(&self, job: Job) {
        if self.jobs.send(job).is_err() {
            error!("the recorder thread is gone: a change of master is not recorded");
        }
    }
}

fn record(mut job: Job, counts: &Mutex<HookCounts>) {
    let c = &mut job.change;
    if c.repl_id.is_none() && c.reason != redisrepd_core::changes::Reason::Start {
        c.repl_id = job
            .endpoint
            .info(ID_TIMEOUT)
            .ok()
            .filter(|info| info.role() == Some("master"))
            .and_then(|info| info.get("master_replid").map(str::to_owned));
    }
    // A start is no change: the hook runs, the history keeps nothing.
    if job.change.reason != redisrepd_core::changes::Reason::Start
        && let Err(e) = append(&job.history, job.change.clone())
    {
        error!(
            "cannot add the change of master to {}: {e}",
            job.history.display()
        );
    }
    let Some(hook) = &job.hooks.on_role_change else {
        return;
    };
    let outcome = run(hook, job.hooks.timeout, &job.env);
    if let Ok(mut n) = counts.lock() {
        match outcome {
            Outcome::Ok => n.ok += 1,
            Outcome::Failed => n.failed += 1,
            Outcome::TimedOut => n.timeout += 1,
        }
    }
}

/// Adds `change` to the history file (rewritten whole, atomically, fsync-ed).
fn append(path: &std::path::Path, change: Change) -> std::io::Result<()> {
    let kept = match std::fs::read_to_string(path) {
        Ok(text) => {
            let (kept, bad) = redisrepd_core::changes::parse_file(&text);
            for b in bad {
                warn!("{}: {b}; dropped", path.display());
            }
            kept
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let text = redisrepd_core::changes::format_file(&redisrepd_core::changes::append(kept, change));
    crate::files::write_atomic(path, text.as_bytes(), 0o640)
}

/// The records kept in the history file (none when there is no file yet).
pub fn read(path: &std::path::Path) -> Result<Vec<Change>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(redisrepd_core::changes::parse_file(&text).0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

enum Outcome {
    Ok,
    Failed,
    TimedOut,
}

/// Runs the hook to its end or its timeout, its output into the log.
fn run(
    hook: &redisrepd_core::config::Hook,
    timeout: Duration,
    env: &[(&'static str, String)],
) -> Outcome {
    let program = hook.program.display().to_string();
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut cmd = Command::new(&hook.program);
    cmd.args(&hook.args)
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            error!(hook = %program, "on_role_change: cannot run `{program}`: {e}");
            return Outcome::Failed;
        }
    };
    let pid = child.id();
    info!(hook = %program, pid, "on_role_change: started");
    let (lines_done, all_read) = mpsc::channel::<()>();
    let readers = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ];
    let mut n_readers = 0;
    for pipe in readers.into_iter().flatten() {
        n_readers += 1;
        let (program, done) = (program.clone(), lines_done.clone());
        let _ = std::thread::Builder::new()
            .name("hook-output".into())
            .spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    info!(hook = %program, "on_role_change: {line}");
                }
                let _ = done.send(());
            });
    }
    drop(lines_done);
    let (exited, exit) = mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("hook-wait".into())
        .spawn(move || {
            let _ = exited.send(child.wait());
        });
    if let Err(e) = waiter {
        error!(hook = %program, "on_role_change: cannot wait for it: {e}");
        return Outcome::Failed;
    }
    let status = match exit.recv_timeout(timeout) {
        Ok(status) => status,
        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
            // The whole group: what it started dies with it.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = exit.recv_timeout(Duration::from_secs(5));
            error!(
                hook = %program,
                pid,
                "on_role_change: still running after {:#}: killed; the daemon goes on",
                jiff::SignedDuration::try_from(timeout).unwrap_or_default()
            );
            return Outcome::TimedOut;
        }
    };
    // Its last lines first (bounded: a child it left behind may hold the pipes open).
    for _ in 0..n_readers {
        if all_read.recv_timeout(Duration::from_secs(1)).is_err() {
            break;
        }
    }
    match status {
        Ok(s) if s.success() => {
            info!(hook = %program, pid, "on_role_change: done");
            Outcome::Ok
        }
        Ok(s) => {
            error!(hook = %program, pid, "on_role_change: failed ({s}); the daemon goes on");
            Outcome::Failed
        }
        Err(e) => {
            error!(hook = %program, pid, "on_role_change: cannot wait for it: {e}");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redisrepd_core::config::Hook;

    fn sh(script: &str) -> Hook {
        Hook {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
        }
    }

    #[test]
    fn a_hook_gets_only_path_and_its_variables() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!("env > {}", out.display());
        let env = vec![("REDISREPD_MASTER", "r1".to_owned())];
        assert!(matches!(
            run(&sh(&script), Duration::from_secs(10), &env),
            Outcome::Ok
        ));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split('=').next())
            .filter(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n))
            .collect();
        names.sort();
        assert_eq!(names, ["PATH", "REDISREPD_MASTER"], "{text}");
    }

    #[test]
    fn a_failing_and_a_hanging_hook_end() {
        assert!(matches!(
            run(&sh("exit 3"), Duration::from_secs(10), &[]),
            Outcome::Failed
        ));
        let started = std::time::Instant::now();
        assert!(matches!(
            run(&sh("sleep 30; true"), Duration::from_millis(300), &[]),
            Outcome::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        let missing = Hook {
            program: "/nonexistent/hook".into(),
            args: vec![],
        };
        assert!(matches!(
            run(&missing, Duration::from_secs(1), &[]),
            Outcome::Failed
        ));
    }
}
