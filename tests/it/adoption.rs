//! The daemon's own death never bounces Redis: a new daemon adopts the running instances
//! (this is also how the binary is upgraded: see README "Upgrading").

use nix::sys::signal::Signal;

use crate::cluster::{self, UP};
use crate::util;

/// Running (an exited process whose new parent has not reaped it yet is a zombie `Z`).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

use crate::util::kill;

#[test]
fn a_new_daemon_adopts_instances_after_the_old_one_is_killed() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    c.set("master", "k", "v");
    let pids: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();

    let mut old = c.take_daemon("a").expect("daemon");
    old.proc.signal(Signal::SIGKILL);
    old.proc.wait_exit(UP);
    // The instances keep serving with the same pids.
    for (name, pid) in ["master", "r1", "r2"].iter().zip(&pids) {
        util::ping(c.addr(name), Some(cluster::PASSWORD)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(alive(*pid), "{name} still runs");
    }

    c.start_daemon("a");
    c.wait_healthy();
    for (name, pid) in ["master", "r1", "r2"].iter().zip(&pids) {
        assert_eq!(c.pid(name), *pid, "{name} was adopted, not restarted");
    }
    assert_eq!(c.redis_pids().len(), 3, "nothing started twice");
    assert!(c.daemon_log("a").contains("adopted the running instance"));

    // A crash of an adopted instance is noticed (pidfd) and handled like any other.
    kill(pids[1], Signal::SIGKILL);
    let s = util::wait_for(UP, "r1 restarted after its crash", || {
        let s = c.status().remove("r1").unwrap();
        match s["pid"].as_u64() {
            Some(p) if p as u32 != pids[1] && s["state"] == "running" => Ok(s),
            _ => Err(s.to_string()),
        }
    });
    assert_eq!(s["restarts"], 1);
    c.wait_healthy();
    // And a graceful stop of an adopted instance works too.
    c.cli(&["stop", "r2"]).expect_code(0);
    assert!(!alive(pids[2]), "r2 has exited");
}

#[test]
fn a_stale_pid_file_is_cleaned_and_not_adopted() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    std::fs::create_dir_all(c.run_dir()).unwrap();
    // Our own pid: alive, but not a redis-server.
    let pid_file = c.run_dir().join("master.pid");
    std::fs::write(&pid_file, format!("{}\n1\n", std::process::id())).unwrap();
    c.start_daemon("a");
    c.wait_state("master", "running");
    let text = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        !text.starts_with(&std::process::id().to_string()),
        "pid file rewritten: {text}"
    );
    assert!(c.daemon_log("a").contains("removing a stale pid file"));
}
