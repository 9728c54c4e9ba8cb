//! The daemon's own death never bounces Redis: a new daemon adopts the running instances
//! (this is also how the binary is upgraded: see docs/behaviour.md, "Adoption").

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use nix::sys::signal::Signal;

use crate::cluster::{self, Cluster, UP};
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

/// A master and a replica on host `a` (the test sets its `redis_server`).
fn pair() -> Cluster {
    cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .build()
}

/// A copy of the suite's server at `rel` in the test dir (any name, any depth).
fn install_server(c: &Cluster, rel: &str) -> PathBuf {
    let path = c.dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("the binary's directory");
    std::fs::copy(util::redis_server(), &path)
        .unwrap_or_else(|e| panic!("copying the server to {}: {e}", path.display()));
    path
}

/// Starts the group, SIGKILLs its daemon, runs `meanwhile` (e.g. an upgrade of the binary
/// on disk), starts a new daemon and checks that it adopted every instance: same pids, no
/// restart, nothing started twice. Returns the new daemon's log.
fn adopted_after_a_daemon_crash(c: &mut Cluster, meanwhile: impl FnOnce(&Cluster)) -> String {
    adopted_after_a_crash_of(c, |c| c.start_daemon("a"), meanwhile)
}

/// [`adopted_after_a_daemon_crash`] with daemons started by `start`.
fn adopted_after_a_crash_of(
    c: &mut Cluster,
    start: impl Fn(&mut Cluster),
    meanwhile: impl FnOnce(&Cluster),
) -> String {
    start(c);
    c.wait_healthy();
    let pids: Vec<u32> = ["master", "r1"].iter().map(|n| c.pid(n)).collect();
    let mut old = c.take_daemon("a").expect("daemon");
    old.proc.signal(Signal::SIGKILL);
    old.proc.wait_exit(UP);
    meanwhile(c);

    start(c);
    c.wait_healthy();
    let log = c.daemon_log("a");
    let status = c.status();
    for (name, pid) in ["master", "r1"].iter().zip(&pids) {
        let s = &status[*name];
        assert_eq!(
            s["pid"].as_u64(),
            Some(u64::from(*pid)),
            "`{name}` was adopted, not restarted: {s}\n{}",
            c.logs()
        );
        assert_eq!(s["restarts"], 0, "`{name}`: {s}");
    }
    assert_eq!(
        c.redis_pids().len(),
        2,
        "nothing started twice\n{}",
        c.logs()
    );
    assert_eq!(
        log.matches("adopted the running instance").count(),
        2,
        "{log}"
    );
    assert!(!log.contains("is held by"), "{log}");
    log
}

#[test]
fn a_build_under_its_own_name_is_adopted_also_after_its_file_is_replaced() {
    let mut c = pair();
    let binary = install_server(&c, "redis-server-6.2");
    c.redis_server = binary.clone();
    c.write_config();
    let log = adopted_after_a_daemon_crash(&mut c, |c| {
        // A package upgrade: a new file renamed over the old one while the servers run.
        let new = install_server(c, "redis-server-6.2.new");
        std::fs::rename(&new, &binary).expect("replacing the binary");
    });
    assert!(
        log.contains(&format!("{} was replaced on disk", binary.display())),
        "{log}"
    );
}

#[test]
fn a_build_in_its_own_tree_is_adopted_after_redis_server_moved_on() {
    // `redis_server` is a symlink to the build; it points elsewhere when the new daemon
    // starts: the instances still run the build they were started from.
    let mut c = pair();
    let build = install_server(&c, "opt/redis/8.0/bin/redis-server");
    let link = c.dir.join("bin/redis-server");
    std::fs::create_dir_all(link.parent().expect("bin")).expect("bin/");
    std::os::unix::fs::symlink(&build, &link).expect("symlink");
    c.redis_server = link.clone();
    c.write_config();
    adopted_after_a_daemon_crash(&mut c, |c| {
        let next = install_server(c, "opt/redis/8.2/bin/redis-server");
        std::fs::remove_file(&link).expect("removing the link");
        std::os::unix::fs::symlink(&next, &link).expect("re-linking");
    });
}

#[test]
fn an_instance_started_through_a_wrapper_is_adopted() {
    let mut c = pair();
    let real = install_server(&c, "opt/redis/bin/redis-server");
    let wrapper = c.dir.join("bin/redis-wrapper");
    std::fs::create_dir_all(wrapper.parent().expect("bin")).expect("bin/");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", real.display()),
    )
    .expect("the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    c.redis_server = wrapper;
    c.write_config();
    adopted_after_a_daemon_crash(&mut c, |_| {});
}

#[test]
fn a_foreign_process_with_the_recorded_pid_on_the_port_is_refused_and_named() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    std::fs::create_dir_all(c.run_dir()).unwrap();
    // This test process: the pid file's pid and start time, and it holds the port, but
    // it is not a server (the file even claims the configured binary).
    let me = std::process::id();
    let start = std::fs::read_to_string(format!("/proc/{me}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 2..].to_owned();
            rest.split(' ').nth(19).map(str::to_owned)
        })
        .expect("our start time");
    let pid_file = c.run_dir().join("master.pid");
    std::fs::write(
        &pid_file,
        format!("{me}\n{start}\nexe {}\n", c.redis_server.display()),
    )
    .unwrap();
    let squatter = TcpListener::bind(c.addr("master")).expect("binding master's port");
    c.start_daemon("a");
    let holder = format!("is held by pid {me}");
    util::wait_for(UP, "status to name who holds master's port", || {
        let s = c.status().remove("master").expect("master");
        let why = s["last_error"].as_str().unwrap_or_default().to_owned();
        if why.contains(&holder) {
            Ok(())
        } else {
            Err(format!("{s}\n{}", c.logs()))
        }
    });
    let log = c.daemon_log("a");
    assert!(!log.contains("adopted the running instance"), "{log}");
    assert!(
        log.contains("removing a stale pid file")
            && log.contains(&format!("pid {me} runs "))
            && log.contains("which is not"),
        "{log}"
    );
    drop(squatter);
    c.wait_state("master", "running");
    assert_ne!(c.pid("master"), me);
}

/// The shipped units' daemon (root, with `user` set, without CAP_SYS_PTRACE) cannot read
/// the `/proc/PID/exe` or the sockets of an instance running as the user: it adopts by the
/// process name and title instead, also for a build under its own name.
#[test]
fn a_daemon_without_cap_sys_ptrace_adopts_the_users_instances_by_name() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (instances run as `nobody`); CI runs the tests as root: \
         `sudo -E cargo test adoption::`"
    );
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .cluster("user = \"nobody\"")
        .build();
    // tempfile makes the test dir 0700 root: the user must reach its paths and the binary.
    util::chmod(c.dir.path(), 0o755);
    c.redis_server = install_server(&c, "redis-server-6.2");
    c.write_config();
    // The units' CapabilityBoundingSet= and NoNewPrivileges=yes (systemd also drops what
    // the bounding set lacks from the inheritable set: it would be gained back at exec).
    let sandbox: Vec<String> = [
        "setpriv",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set",
        "-all,+setuid,+setgid,+chown,+fowner,+dac_read_search,+kill",
    ]
    .map(str::to_owned)
    .into();
    let start = |c: &mut Cluster| {
        // As `start_daemon` does: the killed daemon's socket must not pass for the new one's.
        let _ = std::fs::remove_file(c.run_dir().join("a.sock"));
        c.start_daemon_wrapped("a", &sandbox, |_| {});
        c.wait_socket("a");
        let daemon = c.daemon("a").proc.pid();
        let status = std::fs::read_to_string(format!("/proc/{daemon}/status")).unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .expect("CapEff");
        assert_eq!(eff & (1 << 19), 0, "the daemon has no CAP_SYS_PTRACE");
    };
    adopted_after_a_crash_of(&mut c, start, |_| {});
}
