//! Child processes: a guard that kills on drop, running a command to completion with a
//! deadline, signals, and the Redis servers working under a directory.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::wait::wait_for;

/// A child process that is killed (SIGKILL) and reaped when the guard is dropped, also
/// when the test panics.
pub struct ProcGuard {
    what: String,
    /// The process.
    pub child: Child,
}

impl ProcGuard {
    /// Spawns `cmd`; `what` names it in messages.
    #[track_caller]
    pub fn spawn(what: &str, cmd: &mut Command) -> ProcGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        ProcGuard {
            what: what.to_owned(),
            child,
        }
    }

    /// What the process is, as given to [`ProcGuard::spawn`].
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. SIGTERM for a graceful stop); an exited child is not an error.
    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        match nix::sys::signal::kill(pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => panic!("kill -{signal} {} ({}): {e}", self.pid(), self.what),
        }
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what))
    }

    /// Waits for the child to exit; panics if it is still running after `within`.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.what);
        wait_for(within, &what, || self.exited().ok_or("still running"))
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid`; panics naming both if that fails.
pub fn kill(pid: u32, sig: Signal) {
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(target, sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// Sends `sig` to `pid` if it still exists; a process already gone is no error (cleanup).
pub fn kill_quietly(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// What a finished command did.
pub struct Run {
    /// How it ended.
    pub status: ExitStatus,
    /// All it printed on stdout.
    pub stdout: String,
    /// All it printed on stderr.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything the command printed if it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit status\n{self}"
        );
        self
    }

    /// Asserts that neither stdout nor stderr contains `secret`.
    #[track_caller]
    pub fn expect_hidden(&self, secret: &str) -> &Run {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the output shows the password\n{self}"
        );
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout:\n{}--- stderr:\n{}---",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs a command to completion with stdin closed, capturing its output; kills it and
/// panics if it takes longer than `within`.
#[track_caller]
pub fn run(cmd: &mut Command, within: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = ProcGuard::spawn(&format!("{cmd:?}"), cmd);
    let stdout = drain(proc.child.stdout.take().expect("piped stdout"));
    let stderr = drain(proc.child.stderr.take().expect("piped stderr"));
    let status = proc.wait_exit(within);
    Run {
        status,
        stdout: stdout.join().expect("reading stdout"),
        stderr: stderr.join().expect("reading stderr"),
    }
}

/// Reads a pipe to its end on a thread of its own, so that a full pipe never blocks the
/// child while the caller waits for it.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Whether a process name (`/proc/PID/comm`) is a server's.
pub fn is_server_comm(comm: &str) -> bool {
    // Also builds kept under their own names (`redis-server-6.2`, shown as 15 bytes).
    let comm = comm.trim();
    comm.starts_with("redis-server") || comm.starts_with("valkey-server")
}

/// Pids of redis-server (or valkey-server) instances working under `dir`, not their
/// forks. Redis rewrites its command line (to "redis-server ip:port") but runs in its data
/// dir, so the cwd tells whose it is.
pub fn redis_under(dir: &Path) -> Vec<u32> {
    servers_under(dir, false)
}

/// [`redis_under`] and also their forks (a BGSAVE, an AOF rewrite): what must be gone
/// before a dir can be removed.
pub fn redis_and_forks_under(dir: &Path) -> Vec<u32> {
    servers_under(dir, true)
}

fn servers_under(dir: &Path, forks: bool) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !is_server_comm(&comm) {
            continue;
        }
        // A fork of an instance has the same name and directory: it is not an instance.
        if !forks && parent_is_server(&e.path()) {
            continue;
        }
        if std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            pids.push(pid);
        }
    }
    pids
}

fn parent_is_server(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("status"))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(|p| p.trim().to_owned())
        })
        .and_then(|ppid| std::fs::read_to_string(format!("/proc/{ppid}/comm")).ok())
        .is_some_and(|c| is_server_comm(&c))
}
