//! Pid files and process identity: what a pid file records of the process it names, and
//! whether the live process behind it is the instance an earlier daemon started.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::ports::{Listeners, holds_socket};

/// The start time of a process (clock ticks since boot), from `/proc/<pid>/stat`: with the
/// pid it identifies a process even after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// What a pid file records of the process it names. The daemon writes it at launch
/// (the executable it ran) and again once the server first answers (the executable and
/// name the process has then: a wrapper script that `exec`s the server is recorded as the
/// server). Older daemons read only the first two lines (pid, start time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    /// Its start time (clock ticks since boot): with the pid it identifies the process
    /// even after the pid is reused.
    pub start_time: u64,
    /// The executable it runs, symlinks resolved; `None` in files of older daemons.
    pub exe: Option<PathBuf>,
    /// Its process name (`/proc/PID/comm`), for when its executable cannot be read.
    pub comm: Option<String>,
}

impl PidRecord {
    /// The record of a server just spawned from `binary`: what the daemon ran.
    pub fn launched(pid: u32, binary: &Path) -> PidRecord {
        let exe = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_owned());
        let comm = exe.file_name().map(|n| comm_of(&n.to_string_lossy()));
        PidRecord {
            pid,
            start_time: start_time(pid).unwrap_or(0),
            exe: Some(exe),
            comm,
        }
    }

    /// `self` updated with what /proc says of the running process now (fields it cannot
    /// read are kept).
    pub fn observed(&self) -> PidRecord {
        let mut now = self.clone();
        if let Some(exe) = read_exe(self.pid).filter(|e| !e.deleted) {
            now.exe = Some(exe.path);
        }
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)) {
            now.comm = Some(comm.trim_end_matches('\n').to_owned());
        }
        now
    }

    /// The file's content: `PID`, `START`, then `exe PATH` and `comm NAME` lines.
    pub fn render(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = format!("{}\n{}\n", self.pid, self.start_time).into_bytes();
        // A path or name with a newline cannot be recorded line by line: left out.
        if let Some(exe) = &self.exe
            && !exe.as_os_str().as_bytes().contains(&b'\n')
        {
            out.extend_from_slice(b"exe ");
            out.extend_from_slice(exe.as_os_str().as_bytes());
            out.push(b'\n');
        }
        if let Some(comm) = self.comm.as_ref().filter(|c| !c.contains('\n')) {
            out.extend_from_slice(format!("comm {comm}\n").as_bytes());
        }
        out
    }

    /// Parses [`PidRecord::render`]'s output (or an older daemon's two lines).
    pub fn parse(bytes: &[u8]) -> Option<PidRecord> {
        use std::os::unix::ffi::OsStrExt;
        let mut lines = bytes.split(|b| *b == b'\n');
        let number = |line: Option<&[u8]>| -> Option<u64> {
            std::str::from_utf8(line?).ok()?.trim().parse().ok()
        };
        let pid = u32::try_from(number(lines.next())?).ok()?;
        let start_time = number(lines.next())?;
        let mut record = PidRecord {
            pid,
            start_time,
            ..PidRecord::default()
        };
        for line in lines {
            if let Some(path) = line.strip_prefix(b"exe ") {
                record.exe = Some(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
            } else if let Some(name) = line.strip_prefix(b"comm ") {
                record.comm = Some(String::from_utf8_lossy(name).into_owned());
            }
        }
        Some(record)
    }
}

/// Reads a pid file written by [`PidRecord::render`].
pub fn read_pid_file(path: &Path) -> Option<PidRecord> {
    PidRecord::parse(&std::fs::read(path).ok()?)
}

/// The process name the kernel gives a program started from a file named `file_name`:
/// at most 15 bytes of it (`TASK_COMM_LEN`).
pub fn comm_of(file_name: &str) -> String {
    let mut end = file_name.len().min(15);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    file_name[..end].to_owned()
}

/// A process's executable, as `/proc/PID/exe` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exe {
    /// Its path, without the kernel's ` (deleted)` mark.
    pub path: PathBuf,
    /// The file was removed or replaced since the process started (a package upgrade
    /// replaces the binary: the process still runs the old one).
    pub deleted: bool,
}

/// `/proc/PID/exe`; `None` when it cannot be read: the process is gone, or belongs to
/// another user and the daemon lacks CAP_SYS_PTRACE (the shipped systemd units do).
fn read_exe(pid: u32) -> Option<Exe> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let bytes = link.into_os_string().into_vec();
    Some(match bytes.strip_suffix(b" (deleted)") {
        Some(path) => Exe {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
            deleted: true,
        },
        None => Exe {
            path: PathBuf::from(std::ffi::OsString::from_vec(bytes)),
            deleted: false,
        },
    })
}

/// What /proc says about the live process a pid file names, for [`judge_adoption`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcFacts {
    pub start_time: u64,
    /// `None` when `/proc/PID/exe` cannot be read.
    pub exe: Option<Exe>,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// `/proc/PID/cmdline`, NULs as spaces: servers show their address in it.
    pub cmdline: String,
    /// Whether it holds a listening socket on the instance's address; `None` when its
    /// file descriptors cannot be read.
    pub listening: Option<bool>,
}

/// Reads the [`ProcFacts`] of `pid` about the address `bind:port` (`listeners`: read
/// once by the caller); `None` when no such process runs (or only its zombie is left).
pub fn proc_facts(
    pid: u32,
    (bind, port): (IpAddr, u16),
    listeners: &Listeners,
) -> Option<ProcFacts> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    if rest.starts_with('Z') {
        return None;
    }
    let start_time = rest.split(' ').nth(19)?.parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let listening = holds_socket(pid, &listeners.inodes(bind, port));
    Some(ProcFacts {
        start_time,
        exe: read_exe(pid),
        comm: comm.trim_end_matches('\n').to_owned(),
        cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
        listening,
    })
}

/// The outcome of [`judge_adoption`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The process is the instance an earlier daemon started: watch it, start none.
    /// `note` is worth a line in the log (e.g. its binary was replaced on disk).
    Adopt { note: Option<String> },
    /// Not the instance (the pid file is stale), and why.
    Refuse(String),
}

/// Whether the process a pid file names is the instance at `address` that an earlier
/// daemon started. Pure: over the record, what /proc says of the pid now (`None`: no such
/// process), and `configured` (the `redis_server` binary, symlinks resolved).
///
/// - It must be the recorded process: alive, with the recorded start time.
/// - Its executable must be `configured` or the one recorded when it started (a daemon
///   that stopped mid-upgrade left instances of the old binary), whatever its name;
///   after a package upgrade replaced that file the process runs the old one (`(deleted)`)
///   and still counts. When the executable cannot be read (another user's process and
///   no CAP_SYS_PTRACE), its process name must be one of those executables' names. A pid
///   file of an older daemon records no executable: the names `redis-server` and
///   `valkey-server` also count then, as they did.
/// - It must listen on `address`: judged by its sockets, or by its process title (which
///   shows the address) when its file descriptors cannot be read.
pub fn judge_adoption(
    record: &PidRecord,
    facts: Option<&ProcFacts>,
    address: &str,
    configured: &Path,
) -> Adoption {
    let pid = record.pid;
    let Some(f) = facts else {
        return Adoption::Refuse(format!("pid {pid} is not running"));
    };
    if f.start_time != record.start_time {
        return Adoption::Refuse(format!(
            "pid {pid} is another process now: it started at tick {}, the pid file says {}",
            f.start_time, record.start_time
        ));
    }
    let mut known: Vec<(&Path, &str)> = vec![(configured, "the configured `redis_server`")];
    if let Some(exe) = &record.exe {
        known.push((exe, "the binary it was started from"));
    }
    let legacy = record.exe.is_none();
    let mut note = None;
    let what = match &f.exe {
        Some(exe) => {
            let ours = known.iter().any(|(k, _)| *k == exe.path)
                || (legacy && redisrepd_core::server::PROCESS_NAMES.contains(&f.comm.as_str()));
            if !ours {
                let expected: Vec<String> = known
                    .iter()
                    .map(|(k, why)| format!("{} ({why})", k.display()))
                    .collect();
                return Adoption::Refuse(format!(
                    "pid {pid} runs {}, which is not {}",
                    exe.path.display(),
                    expected.join(" nor ")
                ));
            }
            if exe.deleted {
                note = Some(format!(
                    "{} was replaced on disk since it started: it runs the old build until \
                     it is restarted",
                    exe.path.display()
                ));
            }
            exe.path.display().to_string()
        }
        None => {
            let mut names: Vec<String> = known
                .iter()
                .filter_map(|(k, _)| k.file_name())
                .map(|n| comm_of(&n.to_string_lossy()))
                .collect();
            names.extend(record.comm.clone());
            if legacy {
                names.extend(redisrepd_core::server::PROCESS_NAMES.map(str::to_owned));
            }
            if !names.contains(&f.comm) {
                names.sort();
                names.dedup();
                return Adoption::Refuse(format!(
                    "pid {pid} is named `{}`, not {} (its executable cannot be read to tell)",
                    f.comm,
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" nor ")
                ));
            }
            format!("`{}`", f.comm)
        }
    };
    let listens = f.listening.unwrap_or_else(|| f.cmdline.contains(address));
    if !listens {
        return Adoption::Refuse(format!("pid {pid} ({what}) does not listen on {address}"));
    }
    Adoption::Adopt { note }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "127.0.0.1:6379";

    fn record(exe: Option<&str>) -> PidRecord {
        PidRecord {
            pid: 42,
            start_time: 1000,
            exe: exe.map(PathBuf::from),
            comm: exe.map(|e| comm_of(e.rsplit('/').next().unwrap_or(e))),
        }
    }

    /// A live process with the recorded start time, running `exe` (`None`: unreadable),
    /// listening on ADDR.
    fn facts(exe: Option<&str>, comm: &str) -> ProcFacts {
        ProcFacts {
            start_time: 1000,
            exe: exe.map(|e| match e.strip_suffix(" (deleted)") {
                Some(p) => Exe {
                    path: p.into(),
                    deleted: true,
                },
                None => Exe {
                    path: e.into(),
                    deleted: false,
                },
            }),
            comm: comm.to_owned(),
            cmdline: format!("{comm} {ADDR}"),
            listening: Some(true),
        }
    }

    fn judge(r: &PidRecord, f: Option<&ProcFacts>, configured: &str) -> Adoption {
        judge_adoption(r, f, ADDR, Path::new(configured))
    }

    fn adopted(a: &Adoption) -> bool {
        matches!(a, Adoption::Adopt { .. })
    }

    #[test]
    fn any_name_of_the_configured_or_recorded_binary_is_adopted() {
        // (recorded exe, running exe, comm, configured, adopted?)
        let cases = [
            // A build kept under its own name: the configured one.
            (
                Some("/opt/r/redis-server-6.2"),
                "/opt/r/redis-server-6.2",
                "redis-server-6.",
                "/opt/r/redis-server-6.2",
                true,
            ),
            (
                Some("/opt/redis/8.0/bin/redis-server"),
                "/opt/redis/8.0/bin/redis-server",
                "redis-server",
                "/opt/redis/8.0/bin/redis-server",
                true,
            ),
            // `redis_server` changed while the daemon was down: the binary it ran counts.
            (
                Some("/usr/bin/redis-server"),
                "/usr/bin/redis-server",
                "redis-server",
                "/opt/valkey/bin/valkey-server",
                true,
            ),
            // A wrapper recorded as the server it execs.
            (
                Some("/opt/redis/bin/redis-server"),
                "/opt/redis/bin/redis-server",
                "redis-server",
                "/usr/local/bin/redis-wrapper",
                true,
            ),
            // Another program with the recorded pid and start time.
            (
                Some("/usr/bin/redis-server"),
                "/usr/bin/nc.openbsd",
                "nc",
                "/usr/bin/redis-server",
                false,
            ),
            // Named like a server, but neither binary: not ours.
            (
                Some("/usr/bin/redis-server"),
                "/tmp/x/redis-server",
                "redis-server",
                "/usr/bin/redis-server",
                false,
            ),
            // An older daemon's pid file (no executable): any redis-server or
            // valkey-server, as before, and the configured binary whatever its name.
            (
                None,
                "/usr/bin/redis-server",
                "redis-server",
                "/opt/valkey/bin/valkey-server",
                true,
            ),
            (
                None,
                "/opt/r/redis-server-6.2",
                "redis-server-6.",
                "/opt/r/redis-server-6.2",
                true,
            ),
            (
                None,
                "/usr/bin/nc.openbsd",
                "nc",
                "/usr/bin/redis-server",
                false,
            ),
        ];
        for (rec, exe, comm, configured, want) in cases {
            let got = judge(&record(rec), Some(&facts(Some(exe), comm)), configured);
            assert_eq!(
                adopted(&got),
                want,
                "recorded {rec:?}, running {exe}, configured {configured}: {got:?}"
            );
        }
    }

    #[test]
    fn a_binary_replaced_on_disk_is_adopted_with_a_note() {
        let r = record(Some("/usr/bin/redis-server"));
        let f = facts(Some("/usr/bin/redis-server (deleted)"), "redis-server");
        match judge(&r, Some(&f), "/usr/bin/redis-server") {
            Adoption::Adopt { note: Some(n) } => {
                assert!(
                    n.contains("/usr/bin/redis-server was replaced on disk"),
                    "{n}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A deleted file that was never ours is still not ours.
        let f = facts(Some("/tmp/evil (deleted)"), "evil");
        assert!(!adopted(&judge(&r, Some(&f), "/usr/bin/redis-server")));
    }

    #[test]
    fn an_unreadable_executable_is_judged_by_name() {
        // (recorded exe, comm now, configured, adopted?)
        let cases = [
            (
                Some("/opt/r/redis-server-6.2"),
                "redis-server-6.",
                "/opt/r/redis-server-6.2",
                true,
            ),
            (
                Some("/usr/bin/redis-server"),
                "redis-server",
                "/opt/valkey-server",
                true,
            ),
            (
                Some("/usr/bin/redis-server"),
                "nc",
                "/usr/bin/redis-server",
                false,
            ),
            (None, "valkey-server", "/usr/bin/redis-server", true),
            (None, "nc", "/usr/bin/redis-server", false),
        ];
        for (rec, comm, configured, want) in cases {
            let got = judge(&record(rec), Some(&facts(None, comm)), configured);
            assert_eq!(adopted(&got), want, "{rec:?} {comm} {configured}: {got:?}");
        }
        // The wrapper's case: the name recorded once the server answered.
        let mut r = record(Some("/usr/local/bin/redis-wrapper"));
        r.comm = Some("redis-server".into());
        let f = facts(None, "redis-server");
        assert!(adopted(&judge(
            &r,
            Some(&f),
            "/usr/local/bin/redis-wrapper"
        )));
    }

    #[test]
    fn the_process_must_be_the_recorded_one_and_listen_on_the_address() {
        let r = record(Some("/usr/bin/redis-server"));
        let conf = "/usr/bin/redis-server";
        let gone = judge(&r, None, conf);
        assert_eq!(gone, Adoption::Refuse("pid 42 is not running".into()));
        let mut reused = facts(Some(conf), "redis-server");
        reused.start_time = 1001;
        let Adoption::Refuse(why) = judge(&r, Some(&reused), conf) else {
            panic!("a reused pid adopted")
        };
        assert!(why.contains("another process now"), "{why}");
        let mut elsewhere = facts(Some(conf), "redis-server");
        elsewhere.listening = Some(false);
        let Adoption::Refuse(why) = judge(&r, Some(&elsewhere), conf) else {
            panic!("a server on another address adopted")
        };
        assert_eq!(
            why,
            "pid 42 (/usr/bin/redis-server) does not listen on 127.0.0.1:6379"
        );
        // Sockets unreadable: the process title tells.
        elsewhere.listening = None;
        elsewhere.cmdline = "redis-server 127.0.0.1:7000".into();
        assert!(!adopted(&judge(&r, Some(&elsewhere), conf)));
        elsewhere.cmdline = format!("redis-server {ADDR}");
        assert!(adopted(&judge(&r, Some(&elsewhere), conf)));
    }

    #[test]
    fn a_refusal_names_what_runs_and_what_was_expected() {
        let r = record(Some("/opt/r/redis-server-6.2"));
        let f = facts(Some("/usr/bin/python3.11"), "python3");
        let Adoption::Refuse(why) = judge(&r, Some(&f), "/usr/bin/redis-server") else {
            panic!()
        };
        assert_eq!(
            why,
            "pid 42 runs /usr/bin/python3.11, which is not /usr/bin/redis-server (the \
             configured `redis_server`) nor /opt/r/redis-server-6.2 (the binary it was \
             started from)"
        );
    }

    #[test]
    fn pid_records_round_trip_and_old_files_still_read() {
        let r = PidRecord {
            pid: 7,
            start_time: 99,
            exe: Some("/opt/redis/8.0/bin/redis-server".into()),
            comm: Some("redis-server".into()),
        };
        let text = r.render();
        assert_eq!(
            String::from_utf8_lossy(&text),
            "7\n99\nexe /opt/redis/8.0/bin/redis-server\ncomm redis-server\n"
        );
        assert_eq!(PidRecord::parse(&text), Some(r));
        let old = PidRecord::parse(b"7\n99\n").unwrap();
        assert_eq!(
            (old.pid, old.start_time, old.exe, old.comm),
            (7, 99, None, None)
        );
        assert_eq!(PidRecord::parse(b"7\n"), None);
        assert_eq!(PidRecord::parse(b"x\n1\n"), None);
        assert_eq!(comm_of("redis-server-6.2"), "redis-server-6.");
        assert_eq!(comm_of("redis-server"), "redis-server");
    }

    #[test]
    fn facts_of_this_process_are_read() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id();
        let here = "127.0.0.1".parse().unwrap();
        let f = proc_facts(me, (here, port), &Listeners::read()).unwrap();
        assert_eq!(Some(f.start_time), start_time(me));
        let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(f.exe.as_ref().map(|e| &e.path), Some(&exe));
        assert_eq!(f.listening, Some(true));
        let other = proc_facts(me, (here, port.wrapping_add(1)), &Listeners::read()).unwrap();
        assert_eq!(other.listening, Some(false));
        // What a launch records is what /proc then reports.
        let r = PidRecord::launched(me, &exe);
        assert_eq!(r.observed().exe, Some(exe));
    }
    #[test]
    fn start_time_of_self_is_known() {
        assert!(start_time(std::process::id()).is_some_and(|t| t > 0));
    }
}
