//! Network namespaces for tests and benches that put instances on two "hosts": a pair
//! joined by a veth link, removed with every process in them on drop (and, when an
//! earlier run was SIGKILLed, on the next run).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::proc::run;

/// Runs `ip ARGS...`; panics with its output when it fails.
#[track_caller]
pub fn ip(args: &[&str]) {
    let run = run(Command::new("ip").args(args), Duration::from_secs(20));
    assert_eq!(run.status.code(), Some(0), "ip {}\n{run}", args.join(" "));
}

/// Network namespaces that exist while this lives: on drop, every process left in them
/// is killed and they are deleted (which also removes the veth pair between them).
pub struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// Namespaces `a` and `b` (named `rrd-<pid>-...`, so that [`remove_orphans`] knows
    /// them) joined by a veth pair `va` (in `a`, `ips[0]`/24) and `vb` (in `b`, `ips[1]`/24),
    /// both up, with `lo` up in each.
    pub fn pair(names: [&str; 2], veths: [&str; 2], ips: [&str; 2]) -> Netns {
        let ([a, b], [va, vb]) = (names, veths);
        remove_orphans();
        let guard = Netns {
            names: vec![a.to_owned(), b.to_owned()],
        };
        for ns in &guard.names {
            // Left over from a run that was SIGKILLed with the same pid: start clean.
            remove_netns(ns);
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
        ]);
        for (ns, dev, addr) in [(a, va, ips[0]), (b, vb, ips[1])] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        guard
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.names {
            remove_netns(ns);
        }
    }
}

/// Removes the namespaces of earlier processes that died without cleaning up (a SIGKILL,
/// a CI timeout): `rrd-<pid>-...` whose pid no longer exists.
pub fn remove_orphans() {
    remove_orphans_with("rrd-");
}

/// [`remove_orphans`] for namespaces named `<prefix><pid>-...`.
pub fn remove_orphans_with(prefix: &str) {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let owner = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            remove_netns(name);
        }
    }
}

/// Kills every process in namespace `ns` but this one (which may have joined it), and
/// deletes it; quiet when it does not exist.
pub fn remove_netns(ns: &str) {
    let pids = Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| *p != me)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Runs `f` on a thread that has joined network namespace `ns`: connections it opens
/// belong to that namespace. A panic in `f` is the caller's panic.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path:?}: {e}"));
            f()
        });
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
