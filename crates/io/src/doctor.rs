//! What `doctor` judges, read from this machine: /proc, /sys, the instances' limits and
//! their data dirs (the IO side of [`crate::doctor`]; the command and the daemon's metrics
//! both use it).

use std::path::{Path, PathBuf};

use redisrepd_core::config::{Group, Instance};
use redisrepd_core::doctor::{self, Clock, Host, Need, OpenFiles};

/// Every check for the instances `group` puts on `host`.
pub fn findings(group: &Group, host: &str) -> Vec<doctor::Finding> {
    let needs: Vec<Need> = group
        .start_order(host)
        .iter()
        .map(|i| need(group, i))
        .collect();
    doctor::judge(&read_host(&needs), &needs)
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The pid of a local instance that runs now (its pid file, and the process is there).
fn running_pid(group: &Group, inst: &Instance) -> Option<u32> {
    let record = crate::process::read_pid_file(&group.pid_path(inst))?;
    Path::new(&format!("/proc/{}", record.pid))
        .exists()
        .then_some(record.pid)
}

pub fn read_host(needs: &[Need]) -> Host {
    // The instances' cgroup is the daemon's (it starts them): one that runs tells it best;
    // else this process's, which is the daemon's when the verb runs beside it by hand only
    // approximately (a systemd unit has a cgroup of its own).
    let pid = needs.iter().find_map(|n| n.pid);
    Host {
        overcommit_memory: read("/proc/sys/vm/overcommit_memory"),
        thp_enabled: read("/sys/kernel/mm/transparent_hugepage/enabled"),
        somaxconn: read("/proc/sys/net/core/somaxconn"),
        meminfo: read("/proc/meminfo"),
        cgroup_memory_max: cgroup_memory_max(pid),
        clock: Some(clock()),
    }
}

/// The tightest memory limit on the cgroup path of `pid` (or this process): v2's
/// `memory.max` at each level up to the root, or v1's `memory.limit_in_bytes`.
fn cgroup_memory_max(pid: Option<u32>) -> Option<String> {
    let who = pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
    let text = read(format!("/proc/{who}/cgroup"))?;
    let mut best: Option<(u64, String)> = None;
    let mut consider = |value: Option<String>| {
        if let Some(v) = value
            && let Ok(n) = v.trim().parse::<u64>()
            && best.as_ref().is_none_or(|(b, _)| n < *b)
        {
            best = Some((n, v));
        }
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            let mut dir = PathBuf::from("/sys/fs/cgroup").join(path);
            loop {
                consider(read(dir.join("memory.max")));
                if !dir.pop() || dir == Path::new("/sys/fs") {
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            consider(read(
                PathBuf::from("/sys/fs/cgroup/memory")
                    .join(path)
                    .join("memory.limit_in_bytes"),
            ));
        }
    }
    // None found: "max" everywhere (or no memory controller), which `doctor` reads as none.
    Some(best.map_or_else(|| "max".to_owned(), |(_, v)| v))
}

/// The kernel's view of clock discipline: `adjtimex` reports `TIME_ERROR` or sets
/// `STA_UNSYNC` while no NTP client keeps the clock (what `timedatectl` reads too).
fn clock() -> Clock {
    use nix::libc;
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: modes = 0 only reads the kernel's state into `tx`, which we own.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        Clock::Unknown
    } else if state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        Clock::Unsynced
    } else {
        Clock::Synced
    }
}

/// The soft "Max open files" of a process, from /proc/PID/limits.
fn open_files_of(pid: u32) -> Option<u64> {
    let text = read(format!("/proc/{pid}/limits"))?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn need(group: &Group, inst: &Instance) -> Need {
    let value = |key: &str| {
        group
            .directive(inst, key)
            .and_then(|v| v.first())
            .map(String::as_str)
    };
    let number =
        |key: &str, default: u64| value(key).and_then(doctor::parse_size).unwrap_or(default);
    let pid = running_pid(group, inst);
    let open_files = match pid.and_then(|p| open_files_of(p).map(|n| (p, n))) {
        Some((_, soft)) => Some(OpenFiles {
            soft,
            whose: "its process".into(),
        }),
        None => rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map(|soft| OpenFiles {
                soft,
                whose: "not running: what a daemon started from this shell gives it".into(),
            }),
    };
    let data_dir = group.data_path(inst);
    let maxmemory = number("maxmemory", 0);
    let on_disk = snapshot_files(group, inst, &data_dir);
    Need {
        name: inst.name.clone(),
        tcp_backlog: number("tcp-backlog", 511),
        maxclients: number("maxclients", 10000),
        maxmemory,
        open_files,
        disk_free: free_bytes(&data_dir),
        snapshot_bytes: if on_disk > 0 { on_disk } else { maxmemory },
        data_dir,
        pid,
    }
}

/// The bytes of the instance's RDB and AOF files now: what its next snapshot (or rewrite)
/// writes again beside them.
fn snapshot_files(group: &Group, inst: &Instance, data: &Path) -> u64 {
    let name = |key: &str, default: &str| {
        group
            .directive(inst, key)
            .and_then(|v| v.first().cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let rdb = size(data.join(name("dbfilename", "dump.rdb")));
    let aof: u64 = std::fs::read_dir(data.join(name("appenddirname", "appendonlydir")))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    rdb.max(aof)
}

/// Free bytes for an unprivileged writer on the file system that holds `dir` (or its
/// nearest existing parent, before the first start made it).
fn free_bytes(dir: &Path) -> Option<u64> {
    let mut at = dir.to_owned();
    loop {
        if let Ok(st) = rustix::fs::statvfs(&at) {
            return Some(st.f_bavail.saturating_mul(st.f_frsize));
        }
        if !at.pop() {
            return None;
        }
    }
}
