//! Redis server processes: spawning one in the foreground, its pid file, forwarding its
//! output, signalling it, and finding who holds a port. No supervision decisions here.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid};
use tracing::info;

pub use crate::info::{SyncKind, sync_kind_of};

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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        forward(launch.name, out, tail.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(launch.name, err, tail.clone());
    }
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

/// The start time of a process (clock ticks since boot), from `/proc/<pid>/stat`: with the
/// pid it identifies a process even after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The content of a pid file: pid and start time.
pub fn pid_file_contents(pid: u32) -> String {
    format!("{pid}\n{}\n", start_time(pid).unwrap_or(0))
}

/// Reads a pid file written by [`pid_file_contents`].
pub fn read_pid_file(path: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let start = lines.next()?.trim().parse().ok()?;
    Some((pid, start))
}

/// The pid of a server that an earlier daemon started for the instance at `address`
/// (`ip:port`) and that still runs: the pid file's pid must be alive, with the start time
/// recorded beside it (a reused pid is not ours), named `redis-server` or `valkey-server`
/// and listening on `address` (both show it in their process title, e.g.
/// `valkey-server 127.0.0.1:6379`). Either name, whatever the file now configures: a daemon
/// that stopped in the middle of a rolling upgrade has instances of both to adopt.
pub fn adoptable(pid_file: &Path, address: &str) -> Option<u32> {
    let (pid, recorded_start) = read_pid_file(pid_file)?;
    if start_time(pid)? != recorded_start {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let known = crate::server::PROCESS_NAMES.contains(&comm.trim());
    (known && cmdline.contains(address)).then_some(pid)
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

/// Whether something already listens on `bind:port`.
pub fn port_in_use(bind: IpAddr, port: u16) -> bool {
    matches!(
        std::net::TcpListener::bind((bind, port)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse
    )
}

/// The process listening on TCP `bind:port` (or on `port` of every address), as
/// "pid N (command)", found through /proc. Listeners on the same port of another address
/// are not it: on a host with several addresses they are often our own instances.
pub fn port_holder(bind: IpAddr, port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            if *state == "0A" && blocks(local, bind, port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if inodes.iter().any(|i| Path::new(i) == target) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", comm.trim()));
            }
        }
    }
    Some("another process".to_owned())
}

/// Whether a listener at `local` (as /proc/net/tcp{,6} print it: hex address, colon, hex
/// port) keeps a server from binding `bind:port`.
fn blocks(local: &str, bind: IpAddr, port: u16) -> bool {
    let Some((addr, p)) = local.rsplit_once(':') else {
        return false;
    };
    if u16::from_str_radix(p, 16).ok() != Some(port) {
        return false;
    }
    match proc_net_addr(addr) {
        Some(ip) => ip == bind || ip.is_unspecified() || ip.to_canonical() == bind,
        None => true, // unparsable: rather name a holder than none
    }
}

/// An address from /proc/net/tcp{,6}: the kernel prints each 32-bit word of the address
/// (network byte order in memory) as a native-endian hex number.
fn proc_net_addr(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| {
            hex.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| u32::from_be(*w).to_be_bytes())
        .collect();
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
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
    fn a_reused_pid_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("x.pid");
        let me = std::process::id();
        let start = start_time(me).unwrap();
        std::fs::write(&pid_file, format!("{me}\n{}\n", start + 1)).unwrap();
        assert_eq!(
            adoptable(&pid_file, "127.0.0.1:1"),
            None,
            "start time differs"
        );
        std::fs::write(&pid_file, format!("{me}\n{start}\n")).unwrap();
        assert_eq!(
            adoptable(&pid_file, "127.0.0.1:1"),
            None,
            "not a redis-server"
        );
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

    #[test]
    fn start_time_of_self_is_known() {
        assert!(start_time(std::process::id()).is_some_and(|t| t > 0));
    }

    #[test]
    fn proc_net_addresses_are_read_in_network_order() {
        let v4 = if cfg!(target_endian = "little") {
            "0100007F"
        } else {
            "7F000001"
        };
        assert_eq!(proc_net_addr(v4), "127.0.0.1".parse().ok());
        assert_eq!(proc_net_addr("00000000"), "0.0.0.0".parse().ok());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(blocks(&format!("{v4}:1A0B"), here, 0x1A0B));
        assert!(
            !blocks(&format!("{v4}:1A0B"), other, 0x1A0B),
            "another address"
        );
        assert!(!blocks(&format!("{v4}:1A0C"), here, 0x1A0B), "another port");
        assert!(
            blocks("00000000:1A0B", other, 0x1A0B),
            "0.0.0.0 takes every address"
        );
        assert!(blocks(
            "00000000000000000000000000000000:1A0B",
            other,
            0x1A0B
        ));
    }

    #[test]
    fn port_holder_finds_our_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(port_in_use("127.0.0.1".parse().unwrap(), port));
        let holder = port_holder("127.0.0.1".parse().unwrap(), port).unwrap();
        assert!(holder.contains(&std::process::id().to_string()), "{holder}");
    }
}
