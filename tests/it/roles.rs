//! Roles that change, against real servers: failover and back under writes, a daemon
//! restarted after a failover, promote with the master's host down and the old master back
//! as a replica, each refusal, and a crashed master that loses nothing its replicas have
//! (also after a rolling server upgrade: those tests use the matrix's servers from
//! `.ci/servers`, whatever `REDISREPD_TEST_SERVER` selects).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::util;
use redisrepd_testkit::{Target, Writer, WriterOpts};

/// Sum of `sync_full` over every instance that answers.
fn full_syncs(c: &Cluster, names: &[&str]) -> i64 {
    names
        .iter()
        .map(|n| c.info_int(n, "stats", "sync_full"))
        .sum()
}

/// Who reports role master, by name.
pub(crate) fn masters(c: &Cluster, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            c.connect(c.addr(n))
                .and_then(|mut con| util::info(&mut con, "replication"))
                .is_ok_and(|i| i.get("role").map(String::as_str) == Some("master"))
        })
        .map(|n| n.to_string())
        .collect()
}

/// Waits until `status --json` says `master` is the group's master and every instance
/// is healthy (exit 0).
pub(crate) fn wait_master(c: &Cluster, master: &str) {
    util::wait_for(
        UP,
        &format!("`{master}` to be the master, all healthy"),
        || {
            let run = c.cli(&["status", "--json"]);
            let doc: serde_json::Value =
                serde_json::from_str(&run.stdout).map_err(|e| format!("{e}: {}", run.stdout))?;
            if doc["master"] == master && run.status.code() == Some(0) {
                Ok(())
            } else {
                Err(format!("{doc}\n{}", c.logs()))
            }
        },
    );
}

/// The testkit's writer on the group's `w:<n>` keys, following the master (ROLE) after
/// any error; with `wait` > 0 a write counts only when `WAIT wait 1000` reports that many
/// replicas.
fn writer(c: &Cluster, wait: i64) -> Writer {
    let addrs = ALL.iter().map(|n| c.addr(n)).collect();
    let opts = WriterOpts {
        wait: (wait, Duration::from_millis(1000)),
        ..cluster::writer_opts()
    };
    Writer::start(Target::Master(addrs), opts)
}

/// Every key in `keys` that `name` does not have.
pub(crate) fn missing(c: &Cluster, name: &str, keys: &[String]) -> Vec<String> {
    let mut con = c.con(name);
    keys.iter()
        .filter(|k| {
            !redis::cmd("EXISTS")
                .arg(k)
                .query::<bool>(&mut con)
                .unwrap_or(false)
        })
        .cloned()
        .collect()
}

/// Waits until every one of `names` has all of `keys` (replicas catch up).
pub(crate) fn wait_all_have(c: &Cluster, names: &[&str], keys: &[String]) {
    for name in names {
        util::wait_for(
            UP,
            &format!("`{name}` to have every acknowledged write"),
            || {
                let gone = missing(c, name, keys);
                if gone.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} missing, e.g. {:?}\n{}",
                        gone.len(),
                        &gone[..gone.len().min(5)],
                        c.logs()
                    ))
                }
            },
        );
    }
}

const ALL: [&str; 3] = ["master", "r1", "r2"];

#[test]
fn failover_and_back_under_writes_loses_nothing_and_costs_no_full_sync() {
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let pids: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    let full_before = full_syncs(&c, &ALL);
    let writer = writer(&c, 0);
    writer.wait_acked(100, UP);

    let run = c.cli(&["failover", "--to", "r1"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        c.logs()
    );
    assert!(run.stdout.contains("r1: master now"), "{}", run.stdout);
    wait_master(&c, "r1");
    assert_eq!(masters(&c, &ALL), ["r1"], "one master");
    writer.wait_more(100, UP);

    // Back to the configured master.
    let run = c.cli(&["failover", "--to", "master"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        c.logs()
    );
    wait_master(&c, "master");
    writer.wait_more(100, UP);
    let acked = writer.finish().acked_keys();

    assert_eq!(masters(&c, &ALL), ["master"]);
    wait_all_have(&c, &ALL, &acked);
    assert_eq!(
        full_syncs(&c, &ALL),
        full_before,
        "no full sync\n{}",
        c.logs()
    );
    let after: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    assert_eq!(pids, after, "nothing restarted");
}

#[test]
fn a_daemon_restarted_after_a_failover_keeps_the_new_roles() {
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let run = c.cli(&["failover", "--to", "r1"]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    wait_master(&c, "r1");
    c.set("r1", "after-failover", "1");

    // The old master's daemon stops (its instance with it) and starts again: the old
    // master comes back as a replica of r1, not as a second master.
    util::wait_until(UP, "daemon a to keep r1 as the master", || {
        std::fs::read_to_string(c.run_dir().join("a.topology")).is_ok_and(|t| t.contains("\"r1\""))
    });
    assert!(c.stop_daemon("a").success());
    c.start_daemon("a");
    wait_master(&c, "r1");
    assert_eq!(masters(&c, &ALL), ["r1"]);
    let conf = std::fs::read_to_string(c.run_dir().join("master.conf")).expect("conf");
    let r1 = c.addr("r1");
    assert!(
        conf.contains(&format!("replicaof {} {}", r1.ip(), r1.port())),
        "the rendered config follows the actual master"
    );
    wait_all_have(&c, &["master"], &["after-failover".to_owned()]);

    // And the other daemon too.
    assert!(c.stop_daemon("b").success());
    c.start_daemon("b");
    wait_master(&c, "r1");
    assert_eq!(masters(&c, &ALL), ["r1"]);
}

#[test]
fn promote_with_the_master_host_down_then_the_old_master_rejoins_as_a_replica() {
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    for i in 0..200 {
        c.set("master", &format!("k{i}"), "v");
    }
    let mut con = c.con("master");
    let _: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(5000)
        .query(&mut con)
        .expect("WAIT");
    drop(con);

    // Refused while the master answers.
    let run = c.cli(&["promote", "r1"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stdout);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("answers") && out.contains("failover"), "{out}");

    // The master's host goes down: its daemon and its instance are killed.
    let master_pid = c.pid("master");
    let mut daemon = c.take_daemon("a").expect("daemon a");
    daemon.proc.signal(Signal::SIGKILL);
    daemon.proc.wait_exit(UP);
    util::kill(master_pid, Signal::SIGKILL);
    util::wait_until(UP, "the master gone", || {
        util::ping(c.addr("master"), Some(PASSWORD)).is_err()
    });

    let run = c.cli(&["promote", "r1"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        c.logs()
    );
    assert_eq!(masters(&c, &["r1", "r2"]), ["r1"]);
    util::wait_until(UP, "r2 to follow r1", || {
        let i = c.info("r2", "replication");
        i.get("master_port").map(String::as_str) == Some(&c.addr("r1").port().to_string())
            && i.get("master_link_status").map(String::as_str) == Some("up")
    });
    c.set("r1", "after-promote", "1");

    // The old master's host comes back: it starts as a replica of r1.
    c.start_daemon("a");
    wait_master(&c, "r1");
    assert_eq!(masters(&c, &ALL), ["r1"], "never two masters");
    let keys: Vec<String> = (0..200)
        .map(|i| format!("k{i}"))
        .chain(["after-promote".to_owned()])
        .collect();
    wait_all_have(&c, &ALL, &keys);
}

#[test]
fn failover_and_promote_refuse_what_would_lose_writes() {
    let mut c = cluster::master_and_two_replicas()
        .instance("leaf", "b", Some("r1"))
        .build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();

    // Not a replica of the current master.
    let run = c.cli(&["failover", "--to", "leaf"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stdout);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("not a replica of the current master"), "{out}");
    // Not in sync: r2 is stopped.
    c.cli(&["stop", "r2"]).expect_code(0);
    let run = c.cli(&["failover", "--to", "r2"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stdout);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("not in sync"), "{out}");
    c.cli(&["start", "r2"]).expect_code(0);
    c.wait_healthy();

    // A replica behind another: r1 frozen while writes reach r2, then the master's host
    // goes down. Promoting r1 would lose what only r2 has.
    let r1_pid = c.pid("r1");
    util::kill(r1_pid, Signal::SIGSTOP);
    let mut con = c.con("master");
    // More than the kernel's socket buffers hold for the frozen r1 (it would read those
    // when it wakes up): 40 MB.
    let big = "v".repeat(1 << 20);
    for i in 0..40 {
        let _: () = redis::cmd("SET")
            .arg(format!("x{i}"))
            .arg(&big)
            .query(&mut con)
            .expect("SET");
    }
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut con)
        .expect("WAIT");
    drop(con);
    let master_pid = c.pid("master");
    let mut daemon = c.take_daemon("a").expect("daemon a");
    daemon.proc.signal(Signal::SIGKILL);
    daemon.proc.wait_exit(UP);
    util::kill(master_pid, Signal::SIGKILL);
    util::kill(r1_pid, Signal::SIGCONT);
    util::wait_until(UP, "the master gone", || {
        util::ping(c.addr("master"), Some(PASSWORD)).is_err()
    });
    let run = c.cli(&["promote", "r1"]);
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, c.logs());
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("`r2`") && out.contains("higher replication offset"),
        "{out}"
    );
    // r2 is the right one.
    let run = c.cli(&["promote", "r2"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        c.logs()
    );
    let keys: Vec<String> = (0..40).map(|i| format!("x{i}")).collect();
    wait_all_have(&c, &["r2", "r1", "leaf"], &keys);
    // Failover is refused now that the master is r2... to an instance that is not its
    // replica; and promote is refused while r2 answers.
    let run = c.cli(&["promote", "r1"]);
    assert_eq!(run.status.code(), Some(1));
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("`r2` answers"), "{out}");
}

/// What happened to the group before the master's crash: each changes the master's
/// replication id, so its RDB names a history its replicas hold only as an older one.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Before {
    /// Nothing: the RDB is saved (`SAVE`) on the history the replicas are on.
    Nothing,
    /// `redisrepd restart master`: its RDB is the one its graceful stop saved.
    Restart,
    /// `failover --to r1` and back.
    FailoverAndBack,
    /// The master's host rebooted: its daemon stopped (stopping its instances) and started.
    HostReboot,
    /// A first crash and catch-up, then this one.
    CatchUp,
    /// The daemon SIGKILLed and a new one started (it adopts the instances).
    DaemonRestart,
    /// The group runs the first server of the matrix (`.ci/servers` names) and is
    /// upgraded to the second with the rolling server upgrade: `redis_server` changed,
    /// `reload --host b` (the replicas' host), then `reload --host a` (the master's).
    Upgrade(&'static str, &'static str),
}

/// Writes 2,000 keys acknowledged by both replicas (`WAIT 2`); their names.
fn write_acked(c: &Cluster, prefix: &str) -> Vec<String> {
    let mut con = c.con(&current_master(c));
    let mut acked = Vec::new();
    for i in 0..2000 {
        let key = format!("{prefix}{i}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query(&mut con)
            .expect("SET");
        if i % 100 == 99 {
            let got: i64 = redis::cmd("WAIT")
                .arg(2)
                .arg(5000)
                .query(&mut con)
                .expect("WAIT");
            assert_eq!(got, 2, "both replicas acknowledged");
            acked.extend((i - 99..=i).map(|j| format!("{prefix}{j}")));
        }
    }
    acked
}

/// The instance that says `role:master` (there must be one).
fn current_master(c: &Cluster) -> String {
    let m = masters(c, &ALL);
    assert_eq!(m.len(), 1, "one master: {m:?}");
    m[0].clone()
}

/// SIGKILLs the master and waits until the daemon brought it back as the master.
fn crash_master(c: &Cluster) {
    let pid = c.pid("master");
    util::kill(pid, Signal::SIGKILL);
    util::wait_until(UP, "the master restarted", || {
        c.status()["master"]["pid"]
            .as_u64()
            .is_some_and(|p| p != pid as u64)
    });
    wait_master(c, "master");
    assert_eq!(masters(c, &ALL), ["master"]);
}

/// The crash of the issue: writes acknowledged by both replicas after the master's last
/// save, the master SIGKILLed; the daemon restarts it. Nothing a replica had is lost,
/// whatever changed the master's replication id before (`before`).
fn crashed_master_loses_nothing(redis: &str, before: Before, catch_up: bool) {
    let mut c = cluster::master_and_two_replicas().redis(redis).build();
    if let Before::Upgrade(from, _) = before {
        c.redis_server = crate::upgrade::matrix(from);
        c.write_config();
    }
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let mut all = Vec::new();
    {
        let mut con = c.con("master");
        for i in 0..500 {
            let _: () = redis::cmd("SET")
                .arg(format!("old{i}"))
                .arg(i)
                .query(&mut con)
                .expect("SET");
            all.push(format!("old{i}"));
        }
        if before == Before::Nothing {
            // Redis 8 may be writing its AOF's first base in the background just after a
            // start: SAVE is refused until that is done.
            util::wait_for(UP, "SAVE", || {
                redis::cmd("SAVE")
                    .query::<()>(&mut con)
                    .map_err(|e| e.to_string())
            });
        }
    }
    match before {
        Before::Nothing => {}
        Before::Restart => {
            c.cli(&["restart", "master"]).expect_code(0);
        }
        Before::FailoverAndBack => {
            c.cli(&["failover", "--to", "r1"]).expect_code(0);
            wait_master(&c, "r1");
            c.cli(&["failover", "--to", "master"]).expect_code(0);
            wait_master(&c, "master");
        }
        Before::HostReboot => {
            assert!(c.stop_daemon("a").success());
            c.start_daemon("a");
        }
        Before::CatchUp => {
            all.extend(write_acked(&c, "first"));
            crash_master(&c);
        }
        Before::DaemonRestart => {
            let mut old = c.take_daemon("a").expect("daemon a");
            old.proc.signal(Signal::SIGKILL);
            old.proc.wait_exit(UP);
            c.start_daemon("a");
        }
        Before::Upgrade(_, to) => {
            let path = crate::upgrade::matrix(to);
            let server = redisrepd_io::server_detect::detect(&path)
                .expect("the new server")
                .to_string();
            c.redis_server = path;
            c.write_config();
            for host in ["b", "a"] {
                c.cli(&["reload", "--host", host]).expect_code(0);
            }
            util::wait_for(UP, &format!("every instance on {server}"), || {
                let status = c.status();
                let on: Vec<String> = ALL
                    .iter()
                    .map(|n| {
                        status
                            .get(*n)
                            .and_then(|s| s["server"].as_str())
                            .unwrap_or("?")
                            .to_owned()
                    })
                    .collect();
                if on.iter().all(|s| *s == server) {
                    Ok(())
                } else {
                    Err(format!("{ALL:?} on {on:?}"))
                }
            });
        }
    }
    c.wait_healthy();
    wait_master(&c, "master");
    all.extend(write_acked(&c, "new"));
    crash_master(&c);
    wait_all_have(&c, &ALL, &all);
    // From an RDB, or an AOF written `everysec` (Redis may reply before it writes), the
    // master catches up from the replica ahead of it; from an AOF written `always`, which
    // holds every write Redis replied to, it starts from its own files.
    let log = c.daemon_log("a");
    assert_eq!(
        log.contains("writes this master's files lack"),
        catch_up,
        "{before:?}: {log}"
    );
}

const RDB: &str = "save = [\"3600 1\"]\nappendonly = \"no\"\n";
const AOF: &str = "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"everysec\"\n";
const AOF_ALWAYS: &str = "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"\n";

#[test]
fn a_crashed_master_with_rdb_only_loses_no_write_a_replica_acknowledged() {
    crashed_master_loses_nothing(RDB, Before::Nothing, true);
}

#[test]
fn a_crashed_master_with_aof_everysec_loses_no_write_a_replica_acknowledged() {
    crashed_master_loses_nothing(AOF, Before::Nothing, true);
}

#[test]
fn a_crashed_master_with_aof_always_starts_from_its_aof_and_loses_nothing() {
    crashed_master_loses_nothing(AOF_ALWAYS, Before::Nothing, false);
}

#[test]
fn a_master_restarted_then_crashed_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::Restart, true);
}

#[test]
fn a_master_restarted_then_crashed_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::Restart, true);
}

#[test]
fn a_master_crashed_after_failover_and_back_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::FailoverAndBack, true);
}

#[test]
fn a_master_crashed_after_failover_and_back_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::FailoverAndBack, true);
}

#[test]
fn a_master_crashed_after_a_host_reboot_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::HostReboot, true);
}

#[test]
fn a_master_crashed_twice_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::CatchUp, true);
}

#[test]
fn a_master_crashed_after_a_daemon_crash_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::DaemonRestart, true);
}

#[test]
fn a_master_crashed_after_an_upgrade_from_6_2_to_7_0_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::Upgrade("redis-6.2", "redis-7.0"), true);
}

#[test]
fn a_master_crashed_after_an_upgrade_from_6_2_to_7_0_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::Upgrade("redis-6.2", "redis-7.0"), true);
}

#[test]
fn a_master_crashed_after_an_upgrade_from_7_0_to_8_0_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::Upgrade("redis-7.0", "redis-8.0"), true);
}

#[test]
fn a_master_crashed_after_an_upgrade_from_7_0_to_8_0_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::Upgrade("redis-7.0", "redis-8.0"), true);
}

#[test]
fn a_master_crashed_after_an_upgrade_from_valkey_8_0_to_8_1_loses_nothing_with_rdb() {
    crashed_master_loses_nothing(RDB, Before::Upgrade("valkey-8.0", "valkey-8.1"), true);
}

#[test]
fn a_master_crashed_after_an_upgrade_from_valkey_8_0_to_8_1_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::Upgrade("valkey-8.0", "valkey-8.1"), true);
}

#[test]
fn reload_re_points_a_replica_live() {
    let mut c = cluster::master_and_two_replicas()
        .instance("leaf", "b", Some("r1"))
        .build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let pid = c.pid("leaf");
    let text = std::fs::read_to_string(&c.config).expect("toml");
    // Move the leaf from r1 to r2.
    let moved = text.replacen("replica_of = \"r1\"", "replica_of = \"r2\"", 1);
    assert_ne!(moved, text);
    std::fs::write(&c.config, moved).expect("write");
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("leaf: re-pointed to r2"),
        "{}",
        run.stdout
    );
    util::wait_until(UP, "the leaf to follow r2", || {
        let i = c.info("leaf", "replication");
        i.get("master_port").map(String::as_str) == Some(&c.addr("r2").port().to_string())
            && i.get("master_link_status").map(String::as_str) == Some("up")
    });
    assert_eq!(c.pid("leaf"), pid, "not restarted");
}

/// An operator's failover-and-failback script: `failover --to r1` and, as soon as it
/// returns, `failover --to master`, 20 times. Every time the group ends with `master` as
/// master and everyone following it: no stale re-point from the first change may make two
/// instances replicas of each other.
#[test]
fn back_to_back_failovers_end_with_the_requested_master_every_time() {
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    for round in 0..20 {
        for to in ["r1", "master"] {
            let run = c.cli(&["failover", "--to", to]);
            assert_eq!(
                run.status.code(),
                Some(0),
                "round {round}, failover --to {to}:\n{}\n{}\n{}",
                run.stdout,
                run.stderr,
                c.logs()
            );
        }
        wait_master(&c, "master");
        assert_eq!(masters(&c, &ALL), ["master"], "round {round}\n{}", c.logs());
    }
    // Every role change was logged; a dropped stale re-point says so.
    let logs = c.logs();
    assert!(logs.contains("FAILOVER TO"), "{logs}");
    eprintln!(
        "stale re-points not sent: {}, dropped: {}, no REPLICAOF needed: {}",
        logs.matches("the group moved on").count(),
        logs.matches("re-point dropped").count(),
        logs.matches("no REPLICAOF needed").count()
    );
}

/// A replication loop made by hand (the master told to replicate from its own replica):
/// `status` says so, and the daemons make the most advanced instance master again.
#[test]
fn a_replication_loop_is_reported_and_repaired() {
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    c.set("master", "before-loop", "1");
    let r1 = c.addr("r1");
    let mut con = c.con("master");
    let _: () = redis::cmd("REPLICAOF")
        .arg(r1.ip().to_string())
        .arg(r1.port())
        .query(&mut con)
        .expect("REPLICAOF");
    util::wait_for(UP, "status to report the loop", || {
        let run = c.cli(&["status", "--json"]);
        let doc: serde_json::Value =
            serde_json::from_str(&run.stdout).map_err(|e| format!("{e}: {}", run.stdout))?;
        match doc["problem"].as_str() {
            Some(p) if p.contains("replication loop") && run.status.code() == Some(3) => Ok(()),
            _ => Err(format!("{doc}")),
        }
    });
    wait_master(&c, "master");
    assert_eq!(masters(&c, &ALL), ["master"]);
    wait_all_have(&c, &ALL, &["before-loop".to_owned()]);
    let logs = c.logs();
    assert!(logs.contains("replication loop"), "{logs}");
}

#[test]
fn a_master_crashed_after_a_host_reboot_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::HostReboot, true);
}

#[test]
fn a_master_crashed_twice_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::CatchUp, true);
}

#[test]
fn a_master_crashed_after_a_daemon_crash_loses_nothing_with_aof() {
    crashed_master_loses_nothing(AOF, Before::DaemonRestart, true);
}

/// `switchover` on connections opened before the target froze: the catch-up cannot end, so
/// it aborts within its timeout, the master takes writes again at once and the target is
/// still a replica. (The catch-up is a millisecond or two: only a target frozen after the
/// connect reaches this path.)
#[test]
fn a_switchover_whose_target_freezes_mid_way_aborts_unpaused_with_roles_unchanged() {
    use redisrepd_core::config::Secret;
    use redisrepd_core::endpoint::Endpoint;
    use redisrepd_io::redis_io::Client as _;
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let ep = |name: &str| {
        let a = c.addr(name);
        Endpoint {
            bind: a.ip(),
            port: a.port(),
            user: None,
            password: Some(Secret::new(PASSWORD)),
            fallback: Vec::new(),
            tls: None,
        }
    };
    let (master, target) = (ep("master"), ep("r1"));
    let io = Duration::from_secs(2);
    let m = master.connect(io).expect("connect to the master");
    let t = target.connect(io).expect("connect to r1");
    let r1 = c.pid("r1");
    util::kill(r1, Signal::SIGSTOP);
    let started = std::time::Instant::now();
    let result = master.switchover_on(m, t, Vec::new(), &target, Duration::from_secs(1));
    let took = started.elapsed();
    // Writes go on at the master at once.
    let mut con = c.con("master");
    con.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let set: redis::RedisResult<()> = redis::cmd("SET").arg("after-abort").arg(1).query(&mut con);
    util::kill(r1, Signal::SIGCONT);
    let why = result.expect_err("the switchover must abort");
    assert!(why.contains("switchover aborted"), "{why}");
    assert!(took < Duration::from_secs(3), "aborted after {took:?}");
    set.expect("the master takes writes right after the abort");
    assert_eq!(masters(&c, &ALL), ["master"], "roles unchanged");
    c.wait_healthy();
}

/// The verb on a frozen target: refused before anything is paused, the reason said, the
/// writer never stops.
#[test]
fn a_failover_to_a_frozen_replica_fails_saying_why_and_writes_go_on() {
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let writer = writer(&c, 0);
    writer.wait_acked(100, UP);
    let r1 = c.pid("r1");
    util::kill(r1, Signal::SIGSTOP);
    let run = c.cli(&["failover", "--to", "r1"]);
    writer.wait_more(100, UP);
    util::kill(r1, Signal::SIGCONT);
    assert_eq!(run.status.code(), Some(1), "{run}");
    assert!(
        run.stderr.contains("the target") || run.stdout.contains("the target"),
        "{run}"
    );
    let acked = writer.finish().acked_keys();
    assert_eq!(masters(&c, &ALL), ["master"], "roles unchanged");
    c.wait_healthy();
    wait_all_have(&c, &ALL, &acked);
}

/// A planned restart of the master with AOF (the demo's layout): the role moves to a
/// replica and back around it, so no replica full-syncs (a master back from its AOF has a
/// new replication id), no acknowledged write is lost, and the verb returns only once the
/// group is whole again: `status` right after it exits 0.
#[test]
fn a_planned_master_restart_with_aof_costs_no_full_sync_and_returns_when_whole() {
    for aof in ["yes", "no"] {
        let mut c = cluster::master_and_two_replicas()
            .redis(&format!(
                "save = [\"3600 1\"]\nappendonly = \"{aof}\"\nappendfsync = \"everysec\"\n"
            ))
            .build();
        c.start_daemon("a");
        c.start_daemon("b");
        c.wait_healthy();
        // The replicas' counters (they are not restarted); the master's starts at 0 again.
        let full_before = full_syncs(&c, &["r1", "r2"]);
        let writer = writer(&c, 2);
        writer.wait_acked(100, UP);
        let run = c.cli(&["restart", "master"]);
        assert_eq!(run.status.code(), Some(0), "aof {aof}: {run}\n{}", c.logs());
        assert!(
            run.stdout
                .contains("the role moves to its most up-to-date replica"),
            "{run}"
        );
        let status = c.cli(&["status"]);
        assert_eq!(
            status.status.code(),
            Some(0),
            "aof {aof}: status right after the verb\n{status}"
        );
        writer.wait_more(100, UP);
        let acked = writer.finish().acked_keys();
        assert_eq!(masters(&c, &ALL), ["master"], "the role came back");
        wait_all_have(&c, &ALL, &acked);
        assert_eq!(
            (full_syncs(&c, &["r1", "r2"]), full_syncs(&c, &["master"])),
            (full_before, 0),
            "aof {aof}: no full sync\n{}",
            c.sync_story()
        );
    }
}
