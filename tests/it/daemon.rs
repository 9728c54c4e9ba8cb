//! The daemon end to end: start order across two daemons, replication, stop/start/restart,
//! crash restarts and crash loops, the unpersisted-master guard, SIGTERM, reload, the
//! control socket, and where the password must never show up.

use nix::sys::signal::Signal;
use std::os::unix::fs::MetadataExt;

use crate::cluster::{self, PASSWORD, UP};
use crate::util;

use crate::util::kill;

#[test]
fn replicas_started_before_their_master_wait_then_sync() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .with("min_replicas_to_write = 1\nmin_replicas_max_lag = 10")
        .instance("r1", "b", Some("master"))
        .instance("r2", "b", Some("master"))
        .build();
    c.start_daemon("b");
    util::wait_for(
        UP,
        "replicas to report that they wait for the master",
        || {
            let s = c.status();
            let r1 = &s["r1"];
            let why = r1["last_error"].as_str().unwrap_or_default();
            if r1["state"] == "starting" && why.contains("waiting for upstream `master`") {
                Ok(())
            } else {
                Err(r1.to_string())
            }
        },
    );
    assert_eq!(c.status()["master"]["state"], "unreachable");
    c.start_daemon("a");
    c.wait_healthy();

    let mut m = c.con("master");
    let _: () = redis::cmd("SET").arg("k").arg("v1").query(&mut m).unwrap();
    for r in ["r1", "r2"] {
        util::wait_for(UP, &format!("the key on {r}"), || {
            let v: Option<String> = redis::cmd("GET")
                .arg("k")
                .query(&mut c.con(r))
                .map_err(|e| e.to_string())?;
            if v.as_deref() == Some("v1") {
                Ok(())
            } else {
                Err(format!("{v:?}"))
            }
        });
        let err = redis::cmd("SET")
            .arg("x")
            .arg("1")
            .query::<()>(&mut c.con(r))
            .unwrap_err();
        assert_eq!(err.code(), Some("READONLY"), "{err}");
    }
    assert_eq!(
        util::config_get(&mut m, "min-replicas-to-write").unwrap(),
        "1"
    );
    assert_eq!(
        util::config_get(&mut m, "min-replicas-max-lag").unwrap(),
        "10"
    );
}

#[test]
fn stop_start_restart_each_instance_and_resync_partially() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let full_before = c.info_int("master", "stats", "sync_full");

    let run = c.cli(&["stop", "r1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("r1: stopped"), "{run}");
    assert!(
        c.data_dir("r1").join("dump.rdb").exists(),
        "graceful stop saved an RDB"
    );
    assert_eq!(c.status()["r1"]["state"], "stopped");
    assert!(
        util::connect(c.addr("r1"), Some(PASSWORD)).is_err(),
        "r1 is down"
    );

    let run = c.cli(&["start", "r1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("r1: running"), "{run}");
    c.wait_healthy();
    assert_eq!(
        c.info_int("master", "stats", "sync_full"),
        full_before,
        "a replica restarted after a graceful stop resyncs partially\n{}",
        c.logs()
    );
    assert!(c.info_int("master", "stats", "sync_partial_ok") >= 1);

    let pid = c.pid("r2");
    c.cli(&["restart", "r2"]).expect_code(0);
    assert_ne!(c.pid("r2"), pid, "restarted with a new process");
    let mpid = c.pid("master");
    let run = c.cli(&["restart", "master"]);
    run.expect_code(0);
    assert_ne!(c.pid("master"), mpid);
    c.wait_healthy();
    // A planned master restart moves the role to a replica and back: the old master comes
    // back as a replica from its RDB and resumes partially, on every server (also 6.2,
    // where a master restarted in place takes a new replication id and every replica would
    // full-sync).
    // Counted on every instance: r1 serves the syncs while it holds the role.
    let full: i64 = ["master", "r1", "r2"]
        .iter()
        .map(|n| c.info_int(n, "stats", "sync_full"))
        .sum();
    assert_eq!(
        full,
        0,
        "full syncs after a master restart on {}\n{}",
        util::test_server(),
        c.logs()
    );
}

#[test]
fn sigkill_is_restarted_and_a_crash_loop_fails() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .supervise("crash_loop_limit", "3")
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let mut pid = c.pid("r1");
    for n in 1..=2u64 {
        kill(pid, Signal::SIGKILL);
        let s = util::wait_for(UP, "r1 restarted with a new pid", || {
            let s = c.status().remove("r1").unwrap();
            match s["pid"].as_u64() {
                Some(p) if p as u32 != pid && s["state"] == "running" => Ok(s),
                _ => Err(s.to_string()),
            }
        });
        assert_eq!(s["restarts"], n);
        pid = s["pid"].as_u64().unwrap() as u32;
    }
    kill(pid, Signal::SIGKILL);
    let s = c.wait_state("r1", "failed");
    let why = s["last_error"].as_str().unwrap();
    assert!(
        why.contains("crashed 3 times") && why.contains("SIGKILL"),
        "{why}"
    );
    // An operator's start clears the failure.
    c.cli(&["start", "r1"]).expect_code(0);
    c.wait_healthy();
}

#[test]
fn unpersisted_master_is_never_restarted_automatically() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .redis("save = \"\"\nappendonly = \"no\"\n")
        .build();
    let check = c.cli(&["check", "--host", "a"]);
    check.expect_code(0);
    assert!(check.stderr.contains("no persistence"), "{check}");
    c.start_daemon("a");
    c.wait_healthy();
    kill(c.pid("master"), Signal::SIGKILL);
    let s = c.wait_state("master", "failed");
    assert!(
        s["last_error"].as_str().unwrap().contains("no persistence"),
        "{s}"
    );
    // The replica keeps its data: it is not restarted either.
    assert_eq!(c.status()["r1"]["state"], "running");
}

#[test]
fn sigterm_stops_every_instance_saved_and_exits_zero() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    c.set("master", "k", "v");
    assert_eq!(c.redis_pids().len(), 3);
    let status = c.stop_daemon("a");
    assert_eq!(status.code(), Some(0), "{}", c.logs());
    assert!(c.redis_pids().is_empty(), "no redis-server left behind");
    for name in ["master", "r1", "r2"] {
        assert!(c.data_dir(name).join("dump.rdb").exists(), "{name} saved");
    }
    assert!(!c.run_dir().join("a.sock").exists(), "socket removed");
    assert!(
        !c.run_dir().join("a.new").exists(),
        "no socket under its temporary name"
    );
}

#[test]
fn second_daemon_for_the_same_host_refuses() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    c.start_daemon("a");
    let mut cmd = util::redisrepd(&c.config);
    cmd.args(["daemon", "--host", "a"]);
    let run = util::run(&mut cmd, UP);
    run.expect_code(1);
    assert!(run.stderr.contains("already runs host `a`"), "{run}");
    c.wait_state("master", "running");
}

#[test]
fn password_never_leaks() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    c.cli(&["restart", "r1"]).expect_code(0);
    let daemon_pid = c.daemon("a").proc.pid();
    let mut pids = c.redis_pids();
    pids.push(daemon_pid);
    for pid in pids {
        for what in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(PASSWORD),
                "the password is in /proc/{pid}/{what}"
            );
        }
    }
    let log = c.daemon_log("a");
    assert!(!log.is_empty());
    assert!(!log.contains(PASSWORD), "the password is in the daemon log");
    for run in [
        c.cli(&["status"]),
        c.cli(&["render", "master"]),
        c.cli(&["check", "--host", "a"]),
    ] {
        run.expect_hidden(PASSWORD);
    }
    // Every file that holds it is readable by its owner only.
    let mut stack = vec![c.dir.path().to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let text =
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
                if text.contains(PASSWORD) {
                    assert_eq!(
                        meta.mode() & 0o077,
                        0,
                        "{path:?} holds the password and is readable by others"
                    );
                }
            }
        }
    }
    let run_dir_mode = std::fs::metadata(c.run_dir()).unwrap().mode() & 0o777;
    assert_eq!(run_dir_mode, 0o700);
}

#[test]
fn reload_adds_removes_and_changes_instances() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .instance("r2", "a", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let master_pid = c.pid("master");
    let r1_pid = c.pid("r1");
    // Remove r2, change r1 (in a way only a restart applies), add r3.
    c.members.retain(|m| m.name != "r2");
    c.members[1].extra = "[instance.redis]\ndatabases = \"32\"\n".into();
    c.members
        .push(cluster::Member::new("r3", "a", Some("master")));
    c.write_config();
    let run = c.cli(&["reload"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("reload: 0 changed live, 1 restarted, 1 added, 1 removed, 1 unchanged"),
        "{run}"
    );
    c.wait_healthy();
    let s = c.status();
    assert_eq!(s.len(), 3, "r2 is gone from status");
    assert_eq!(
        c.pid("master"),
        master_pid,
        "unchanged instances keep their pid"
    );
    assert_ne!(c.pid("r1"), r1_pid, "the changed instance was restarted");
    assert!(
        run.stdout.contains("r1: restarting: `databases` changed"),
        "{run}"
    );
    assert_eq!(
        util::config_get(&mut c.con("r1"), "databases").unwrap(),
        "32"
    );
    assert_eq!(c.redis_pids().len(), 3, "r2's process is gone");

    // An invalid file changes nothing: the client refuses it, and so does the daemon when
    // it gets SIGHUP.
    let valid = std::fs::read_to_string(&c.config).unwrap();
    std::fs::write(&c.config, "[cluster]\nname = \"test\"\nbogus = 1\n").unwrap();
    let run = c.cli(&["reload", "--host", "a"]);
    run.expect_code(1);
    assert!(run.stderr.contains("bogus"), "{run}");
    c.daemon("a").proc.signal(Signal::SIGHUP);
    util::wait_until(UP, "the daemon to refuse the invalid file", || {
        c.daemon_log("a")
            .contains("reload refused, nothing changed")
    });
    std::fs::write(&c.config, valid).unwrap();
    assert_eq!(c.pid("master"), master_pid);
    assert_eq!(c.redis_pids().len(), 3);
}

/// The control socket's file appears only once it listens, with mode 0600: whoever sees
/// it can connect. (Bound in place, it existed before listen(), where a connect is refused,
/// and with the umask's mode until the chmod; the tests' `wait_socket` and the CLI take an
/// existing file for a daemon that answers.) A socket and a temporary one left behind by a
/// SIGKILLed daemon are replaced.
#[test]
fn the_control_socket_appears_listening_and_private() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let socket = c.run_dir().join("a.sock");
    let temporary = c.run_dir().join("a.new");
    c.start_daemon_with("a", |_| {});
    // Catch the very first moment the file exists: a spin, not a sleeping poll.
    let deadline = std::time::Instant::now() + UP;
    let first_seen = loop {
        if let Ok(meta) = std::fs::symlink_metadata(&socket) {
            break meta;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no socket within {UP:?}:\n{}",
            c.daemon_log("a")
        );
        std::thread::yield_now();
    };
    let connected = UnixStream::connect(&socket);
    assert!(
        connected.is_ok(),
        "the socket file exists but refuses: {connected:?}"
    );
    assert_eq!(first_seen.permissions().mode() & 0o777, 0o600);
    assert!(!temporary.exists(), "no socket under its temporary name");
    c.wait_state("master", "running");

    let mut d = c.take_daemon("a").expect("daemon");
    d.proc.signal(Signal::SIGKILL);
    d.proc.wait_exit(UP);
    assert!(socket.exists(), "a SIGKILLed daemon leaves its socket");
    drop(UnixListener::bind(&temporary).expect("a stale temporary socket"));
    c.start_daemon_with("a", |_| {});
    util::wait_for(UP, "the new daemon's socket to accept", || {
        UnixStream::connect(&socket)
    });
    let mode = std::fs::symlink_metadata(&socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!temporary.exists(), "the stale temporary socket is gone");
    c.wait_state("master", "running");
}

#[test]
fn reload_changes_maxmemory_and_adds_a_sub_replica_without_changing_any_pid() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let pids: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    for m in &mut c.members {
        m.extra = "[instance.redis]\nmaxmemory = \"64mb\"\n".into();
    }
    c.members
        .push(cluster::Member::new("leaf", "a", Some("r1")));
    c.write_config();
    let run = c.cli(&["reload"]);
    run.expect_code(0);
    for line in [
        "master: set maxmemory live",
        "r2: set maxmemory live",
        "leaf: running",
    ] {
        assert!(run.stdout.contains(line), "{line}\n{run}");
    }
    // r1 gains a replica: its pacing directive too, where the server knows it (7.0+).
    assert!(
        run.stdout
            .contains("r1: set repl-diskless-sync-max-replicas, maxmemory live")
            || run.stdout.contains("r1: set maxmemory live"),
        "{run}"
    );
    c.wait_healthy();
    let after: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "nothing restarted");
    for n in ["master", "r1", "r2"] {
        assert_eq!(
            util::config_get(&mut c.con(n), "maxmemory").unwrap(),
            (64 << 20).to_string(),
            "{n}"
        );
        // The file on disk agrees, so a later restart keeps the change.
        let conf = std::fs::read_to_string(c.run_dir().join(format!("{n}.conf"))).unwrap();
        assert!(conf.contains("maxmemory 64mb"), "{n}: {conf}");
    }
    // Empty where the server does not know it (6.2).
    let v = util::config_get(&mut c.con("r1"), "repl-diskless-sync-max-replicas").unwrap();
    assert!(v == "1" || v.is_empty(), "{v}");
    // The leaf replicates from r1.
    c.set("master", "through-r1", "yes");
    util::wait_until(UP, "the key on the leaf", || {
        redis::cmd("GET")
            .arg("through-r1")
            .query::<Option<String>>(&mut c.con("leaf"))
            .is_ok_and(|v| v.as_deref() == Some("yes"))
    });
}

#[test]
fn garbage_on_the_control_socket_gets_an_error_reply() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    c.start_daemon("a");
    let socket = c.run_dir().join("a.sock");
    for garbage in [&b"not json\n"[..], b"{\"op\":\"explode\"}\n", b"\n"] {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(garbage).unwrap();
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply).unwrap();
        assert!(reply.contains("\"reply\":\"error\""), "{reply}");
    }
    // An oversized line is cut off with an error, too.
    let mut s = UnixStream::connect(&socket).unwrap();
    let big = vec![b'x'; 200 * 1024];
    let _ = s.write_all(&big);
    let mut reply = String::new();
    let _ = BufReader::new(&s).read_line(&mut reply);
    assert!(reply.is_empty() || reply.contains("error"), "{reply}");
    c.wait_state("master", "running");
}

#[test]
fn a_new_password_is_applied_in_place_without_restarts() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let pids: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    let new_password = "pw-rotated-Xy93";
    c.dir.write("password", format!("{new_password}\n"));
    let run = c.cli(&["reload"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout.matches("password changed in place").count(),
        3,
        "{run}"
    );
    let after: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    assert_eq!(pids, after, "nothing restarted");
    util::ping(c.addr("master"), Some(new_password)).expect("the new password works");
    assert!(
        util::ping(c.addr("master"), Some(PASSWORD)).is_err(),
        "the old one does not"
    );
    // The daemon uses the new password from now on: stop and start still work.
    let run = c.cli(&["restart", "r1"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.daemon_log("a"));
    let run = c.cli(&["status"]);
    run.expect_code(0);
    run.expect_hidden(new_password);
}

#[test]
fn a_second_sigterm_stops_the_rest_at_once_still_saving() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    c.set("master", "k", "v");
    let mut d = c.take_daemon("a").expect("daemon");
    d.proc.signal(Signal::SIGTERM);
    d.proc.signal(Signal::SIGTERM);
    let status = d.proc.wait_exit(UP);
    assert_eq!(status.code(), Some(0), "{}", c.daemon_log("a"));
    assert!(c.redis_pids().is_empty(), "no redis-server left behind");
    for name in ["master", "r1", "r2"] {
        assert!(c.data_dir(name).join("dump.rdb").exists(), "{name} saved");
    }
}

#[test]
fn a_cascade_syncs_through_its_relay_and_restarts_leaf_first() {
    let mut c = cluster::Builder::new()
        .instance("master", "east", None)
        .instance("relay", "west", Some("master"))
        .instance("leaf", "west", Some("relay"))
        .build();
    c.start_daemon("west");
    c.start_daemon("east");
    c.wait_healthy();
    c.set("master", "k", "v");
    util::wait_for(UP, "the key on the leaf", || {
        let v: Option<String> = redis::cmd("GET")
            .arg("k")
            .query(&mut c.con("leaf"))
            .map_err(|e| e.to_string())?;
        if v.as_deref() == Some("v") {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });
    // The leaf replicates from the relay, not from the master.
    let leaf = c.info("leaf", "replication");
    assert_eq!(leaf["master_port"], c.member("relay").port.to_string());
    let run = c.cli(&["restart", "--all"]);
    run.expect_code(0);
    let order: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.ends_with(": stopped"))
        .map(|l| l.trim_end_matches(": stopped"))
        .collect();
    assert_eq!(order, ["leaf", "relay", "master"], "{run}");
    c.wait_healthy();
}

/// Regression: right after the master listed both replicas online, `status --json` still
/// said one was `syncing` with link `down` and exited 3: its answer came from probes older
/// than the question. A long `health_interval` made that window seconds wide.
#[test]
fn status_right_after_the_master_lists_its_replicas_online_says_in_sync() {
    let mut c = cluster::one_host()
        .supervise("health_interval", "\"3s\"")
        .build();
    c.start_daemon("a");
    for round in 0..3 {
        util::wait_until(UP, "the master to list both replicas online", || {
            let Ok(info) = util::connect(c.addr("master"), Some(PASSWORD))
                .and_then(|mut con| util::info(&mut con, "replication"))
            else {
                return false;
            };
            ["slave0", "slave1"]
                .iter()
                .all(|k| info.get(*k).is_some_and(|v| v.contains("state=online")))
        });
        let run = c.cli(&["status", "--json"]);
        run.expect_code(0);
        if round < 2 {
            // Away and back: the master drops it from its list, then lists it again.
            c.cli(&["restart", "r2"]).expect_code(0);
        }
    }
}

/// `status --json` names, besides the configured roles, what each replica actually
/// replicates from (`upstream`) and the group's actual master (`master`, top level).
#[test]
fn status_names_the_actual_upstream_and_master() {
    let mut c = cluster::master_and_two_replicas()
        .instance("leaf", "b", Some("r1"))
        .build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let run = c.cli(&["status", "--json"]);
    run.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["master"], "master", "{doc}");
    let upstream = |name: &str| {
        doc["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == name))
            .map(|i| i["upstream"].clone())
            .unwrap_or_default()
    };
    assert_eq!(upstream("master"), serde_json::Value::Null);
    assert_eq!(upstream("r1"), "master");
    assert_eq!(upstream("r2"), "master");
    assert_eq!(upstream("leaf"), "r1");
}

/// Issue 18: a `[redis]` directive the server rejects (`maxmemroy`) passed the file's own
/// checks, so `reload` tried it live, then restarted the master with it: a crash loop and
/// no master. The reload runs the server's verdict first now, and a refusal changes
/// nothing: same processes, same config files, the master takes writes. The corrected
/// file is then applied and said so.
#[test]
fn a_reload_with_a_directive_the_server_rejects_changes_nothing() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .with("min_replicas_to_write = 1\nmin_replicas_max_lag = 10")
        .instance("r1", "a", Some("master"))
        .instance("r2", "a", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let names = ["master", "r1", "r2"];
    let pids: Vec<u32> = names.iter().map(|n| c.pid(n)).collect();
    let run_dir = c.run_dir();
    let confs = || -> Vec<String> {
        names
            .iter()
            .map(|n| std::fs::read_to_string(run_dir.join(format!("{n}.conf"))).unwrap())
            .collect()
    };
    let before = confs();
    let good_redis = c.redis.clone();

    c.redis = format!("{good_redis}maxmemroy = \"1gb\"\n");
    c.write_config();
    c.cli(&["check"]).expect_code(1);
    let run = c.cli(&["reload"]);
    run.expect_code(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("reload refused, nothing changed") && said.contains("maxmemroy"),
        "{run}"
    );
    c.wait_healthy();
    let after: Vec<u32> = names.iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "nothing restarted");
    assert_eq!(confs(), before, "no config rewritten");
    c.set("master", "after-the-refused-reload", "1");
    assert!(
        !c.daemon_log("a").contains("not applied live"),
        "nothing was tried live:\n{}",
        c.logs()
    );

    // The typo corrected: applied live, and the reply says so.
    c.redis = format!("{good_redis}maxmemory = \"1gb\"\n");
    c.write_config();
    let run = c.cli(&["reload"]);
    run.expect_code(0);
    for n in names {
        assert!(
            run.stdout.contains(&format!("{n}: set maxmemory live")),
            "{n}\n{run}"
        );
        assert_eq!(
            util::config_get(&mut c.con(n), "maxmemory").unwrap(),
            (1u64 << 30).to_string(),
            "{n}"
        );
    }
    let after: Vec<u32> = names.iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "still nothing restarted");
}

/// Issue 18: after a full sync with `appendonly yes` a replica writes its initial AOF and
/// refuses SHUTDOWN (and SIGTERM) until it is done; a stop right then was reported as a
/// failed final save and left it running. The daemon waits for the rewrite now and stops
/// it within shutdown_timeout, and its log says so. `rdb-key-save-delay` (per key, in the
/// RDB preamble the rewrite writes) makes the rewrite last a few seconds.
#[test]
fn a_stop_during_the_initial_aof_rewrite_waits_for_it_and_succeeds() {
    let mut c = cluster::Builder::new()
        .redis("save = [\"3600 1\"]\nappendonly = \"yes\"\n")
        .instance("master", "a", None)
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let mut con = c.con("master");
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.set(format!("key:{i}"), "x".repeat(100)).ignore();
    }
    let _: () = pipe.query(&mut con).expect("filling the master");
    // A new replica: a full sync, then its initial AOF (200 µs a key: about 4 s).
    c.members
        .push(cluster::Member::new("r1", "a", Some("master")));
    c.members[1].extra = "[instance.redis]\nrdb-key-save-delay = \"200\"\n".into();
    c.write_config();
    c.cli(&["reload"]).expect_code(0);
    let p = c.info("r1", "persistence");
    let one = |field: &str| p.get(field).map(String::as_str) == Some("1");
    assert!(
        one("aof_rewrite_in_progress") || one("aof_rewrite_scheduled"),
        "the test needs the rewrite still to do: {p:?}"
    );
    let run = c.cli(&["stop", "r1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("r1: stopped"), "{run}");
    let log = c.daemon_log("a");
    for line in [
        "SHUTDOWN refused while it rewrites its AOF",
        "stopped once its AOF rewrite was done",
    ] {
        assert!(log.contains(line), "{line}\n{}", c.logs());
    }
    assert!(!log.contains("stop failed"), "{}", c.logs());
    // What it wrote is whole: it comes back from its own files, in sync at once.
    c.cli(&["start", "r1"]).expect_code(0);
    c.wait_healthy();
}

/// Without a daemon, `status` says so in one line first and still shows what the
/// instances' INFO says, in a table that fits 100 columns (`--wide`: every column).
#[test]
fn status_without_the_daemon_says_so_and_reads_redis() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let mut d = c.take_daemon("a").expect("daemon");
    d.proc.signal(Signal::SIGKILL);
    d.proc.wait_exit(UP);
    // Its socket is left behind: a daemon that does not answer.
    let run = c.cli(&["status"]);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("redisrepd: the daemon for host `a` does not answer (")
            && first.ends_with("instances are read straight from Redis"),
        "{run}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run}");
    // Gone: not running.
    std::fs::remove_file(c.run_dir().join("a.sock")).expect("removing the socket");
    let run = c.cli(&["status"]);
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [format!(
            "redisrepd: the daemon for host `a` is not running (no socket at {}; start it with \
             `redisrepd daemon --host a`): instances are read straight from Redis",
            c.run_dir().join("a.sock").display()
        )],
        "{run}"
    );
    // Read straight from Redis: running, replicas of `master`.
    for name in ["master", "r1", "r2"] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {run}"));
        assert!(line.contains("running"), "{line}\n{run}");
    }
    assert!(run.stdout.contains("replica of master"), "{run}");
    assert!(
        run.stdout.lines().all(|l| l.chars().count() <= 100),
        "fits 100 columns: {run}"
    );
    let wide = c.cli(&["status", "--wide"]);
    assert!(
        wide.stdout.contains("ADDRESS") && wide.stdout.contains("UPTIME"),
        "{wide}"
    );
}
