//! Redis server processes: spawning one in the foreground, forwarding its output,
//! signalling it and watching it exit. No supervision decisions here.
//!
//! - this module: spawning (as another user), output, signals, exit, the binary's path;
//! - [`identity`]: pid files and whether a live process is the instance they name;
//! - [`ports`]: who listens on a port, from /proc.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid};
use tracing::info;

pub use redisrepd_core::info::{SyncKind, sync_kind_of};

pub mod identity;
pub mod ports;

pub use identity::{
    Adoption, Exe, PidRecord, ProcFacts, comm_of, judge_adoption, proc_facts, read_pid_file,
    start_time,
};
pub use ports::{Listeners, port_holder, port_in_use};

/// What the daemon remembers of an instance's output: its last lines (for a failure
/// reason) and how its last replication sync went, as the replica logged it.
#[derive(Debug, Default)]
pub struct Tail {
    pub lines: VecDeque<String>,
    pub sync_kind: Option<SyncKind>,
}

/// Shared between the output-forwarding threads and the supervisor.
pub type OutputTail = Arc<Mutex<Tail>>;

/// How many output lines are kept per instance.
const TAIL_LINES: usize = 20;

/// The user a child runs as (when the daemon runs as root with `user` set).
#[derive(Debug, Clone)]
pub struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
}

/// What to start.
pub struct Launch<'a> {
    pub name: &'a str,
    pub redis_server: &'a Path,
    pub conf: &'a Path,
    pub run_as: Option<&'a RunAs>,
    /// Run it as a sentinel (`--sentinel`).
    pub sentinel: bool,
}

/// Starts `redis-server <conf>` in the foreground, in its own process group (so a Ctrl-C
/// on the daemon's terminal reaches only the daemon), without systemd's variables (or it
/// would try to notify systemd itself), with stdout and stderr forwarded to our log.
pub fn spawn(launch: &Launch<'_>, tail: &OutputTail) -> io::Result<Child> {
    let mut cmd = Command::new(launch.redis_server);
    cmd.arg(launch.conf);
    if launch.sentinel {
        cmd.arg("--sentinel");
    }
    cmd.process_group(0)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_PID")
        .env_remove("WATCHDOG_USEC")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("REDISREPD_CONFIG")
        .stdin(Stdio::null());
    // One pipe for both streams, so one forwarding thread per instance rather than two (a
    // host may run dozens of instances), and the lines keep the order they were written in.
    let (output, writer) = io::pipe()?;
    cmd.stdout(writer.try_clone()?).stderr(writer);
    // Servers rewrite config files with the password in them under their umask: a
    // sentinel its own file as it learns, an instance its redis.conf when Sentinel sends
    // CONFIG REWRITE. 077 keeps those 0600. (umask is async-signal-safe.)
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            Ok(())
        });
    }
    if let Some(run_as) = launch.run_as.cloned() {
        // std's uid()/gid() would drop supplementary groups; set all three ourselves, in
        // the child, using only async-signal-safe syscalls.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setgroups(&run_as.groups)?;
                nix::unistd::setgid(run_as.gid)?;
                nix::unistd::setuid(run_as.uid)?;
                Ok(())
            });
        }
    }
    let child = cmd.spawn()?;
    // `cmd` holds the pipe's write ends: the forwarder sees the end of the output only
    // once they are closed here and the server has exited.
    drop(cmd);
    forward(launch.name, output, tail.clone());
    Ok(child)
}

/// Copies each line of a child's stream into the daemon's log and the tail buffer.
fn forward(name: &str, stream: impl Read + Send + 'static, tail: OutputTail) {
    let name = name.to_owned();
    let _ = std::thread::Builder::new()
        .name(format!("out-{name}"))
        .spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                info!(instance = %name, "{line}");
                if let Ok(mut t) = tail.lock() {
                    if let Some(kind) = sync_kind_of(&line) {
                        t.sync_kind = Some(kind);
                    }
                    if t.lines.len() == TAIL_LINES {
                        t.lines.pop_front();
                    }
                    t.lines.push_back(line);
                }
            }
        });
}

/// Calls `on_exit` once the process `pid` (not our child) has exited, using a pidfd.
pub fn watch_exit(pid: u32, on_exit: impl FnOnce() + Send + 'static) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    use rustix::process::{Pid as RPid, PidfdFlags, pidfd_open};
    let raw = i32::try_from(pid).map_err(io::Error::other)?;
    let rpid = RPid::from_raw(raw).ok_or_else(|| io::Error::other("pid 0"))?;
    let fd = match pidfd_open(rpid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => {
            on_exit();
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    std::thread::Builder::new()
        .name(format!("watch-{pid}"))
        .spawn(move || {
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            // A pidfd becomes readable when the process exits; EINTR just means try again.
            while poll(&mut fds, None).is_err() {}
            on_exit();
        })?;
    Ok(())
}

/// Sends `sig` to `pid`; a process that is already gone is not an error.
pub fn send_signal(pid: u32, sig: Signal) -> io::Result<()> {
    match signal::kill(Pid::from_raw(pid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Resolves the `redis_server` setting: a bare name on PATH, or a path.
pub fn find_redis_server(configured: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(path) = which::which(configured) {
        return Ok(path);
    }
    let fix = "set `redis_server` in [cluster] to the path of the redis-server program";
    let meta = configured
        .contains('/')
        .then(|| std::fs::metadata(configured).ok())
        .flatten();
    Err(match meta {
        Some(m) if m.is_dir() => format!("`{configured}` is a directory: {fix}"),
        Some(m) => format!(
            "`{configured}` is not executable (mode {:o}): make it executable \
             (`chmod 755 {configured}`) or {fix}",
            m.permissions().mode() & 0o7777
        ),
        None => format!(
            "`{configured}` is not found: install redis-server (Debian, Ubuntu: \
             `sudo apt-get install redis-server`) or {fix}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_kind_is_read_from_the_replicas_log() {
        let full = "1:S 25 Nov 2026 09:16:59.467 * Full resync from master: b2ce:0";
        let partial =
            "1:S 25 Nov * MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.";
        assert_eq!(sync_kind_of(full), Some(SyncKind::Full));
        assert_eq!(sync_kind_of(partial), Some(SyncKind::Partial));
        assert_eq!(sync_kind_of("Ready to accept connections"), None);
        let valkey_full = "1:S 25 Nov 2026 09:16:59.467 * Full resync from primary: b2ce:0";
        let valkey_partial =
            "1:S 25 Nov * PRIMARY <-> REPLICA sync: Primary accepted a Partial Resynchronization.";
        assert_eq!(sync_kind_of(valkey_full), Some(SyncKind::Full));
        assert_eq!(sync_kind_of(valkey_partial), Some(SyncKind::Partial));
    }

    #[test]
    fn watch_exit_reports_an_exit() {
        let mut child = Command::new("sleep").arg("0.05").spawn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        watch_exit(child.id(), move || {
            let _ = tx.send(());
        })
        .unwrap();
        let _ = child.wait();
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    }
}
