//! Roles that change, against real servers: failover and back under writes, a daemon
//! restarted after a failover, promote with the master's host down and the old master back
//! as a replica, each refusal, and a crashed master that loses nothing its replicas have.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::util;

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
            util::connect(c.addr(n), Some(PASSWORD))
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

/// A client that writes `w:<n>` keys to whichever instance is master, counting each
/// write the server acknowledged; refused writes are retried on the master it finds next.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<u64>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(addrs: Vec<SocketAddr>, wait_replicas: Option<i64>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (s, a, r) = (stop.clone(), acked.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut con: Option<redis::Connection> = None;
            while !s.load(Ordering::Relaxed) {
                if con.is_none() {
                    con = addrs.iter().find_map(|addr| {
                        let mut c = util::connect(*addr, Some(PASSWORD)).ok()?;
                        let role: String = redis::cmd("ROLE")
                            .query::<Vec<redis::Value>>(&mut c)
                            .ok()
                            .and_then(|v| match v.first() {
                                Some(redis::Value::BulkString(b)) => {
                                    Some(String::from_utf8_lossy(b).into_owned())
                                }
                                _ => None,
                            })?;
                        (role == "master").then_some(c)
                    });
                    if con.is_none() {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                }
                let Some(c) = con.as_mut() else { continue };
                let key = format!("w:{n}");
                let set: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(n).query(c);
                let ok = match (set, wait_replicas) {
                    (Ok(()), None) => true,
                    (Ok(()), Some(k)) => redis::cmd("WAIT")
                        .arg(k)
                        .arg(1000)
                        .query::<i64>(c)
                        .is_ok_and(|got| got >= k),
                    (Err(_), _) => false,
                };
                if ok {
                    if let Ok(mut a) = a.lock() {
                        a.push(key);
                    }
                    n += 1;
                } else {
                    if let Ok(mut r) = r.lock() {
                        *r += 1;
                    }
                    con = None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Writer {
            stop,
            acked,
            refused,
            thread: Some(thread),
        }
    }

    /// Waits until at least `n` writes were acknowledged.
    fn wait_acked(&self, n: usize) {
        util::wait_until(UP, "acknowledged writes", || {
            self.acked.lock().map(|a| a.len()).unwrap_or(0) >= n
        });
    }

    fn finish(mut self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let acked = self.acked.lock().map(|a| a.clone()).unwrap_or_default();
        let refused = self.refused.lock().map(|r| *r).unwrap_or(0);
        (acked, refused)
    }
}

/// Every key in `keys` that `name` does not have.
fn missing(c: &Cluster, name: &str, keys: &[String]) -> Vec<String> {
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
fn wait_all_have(c: &Cluster, names: &[&str], keys: &[String]) {
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
    let writer = Writer::start(ALL.iter().map(|n| c.addr(n)).collect(), None);
    writer.wait_acked(100);

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
    let n = writer.acked.lock().map(|a| a.len()).unwrap_or(0);
    writer.wait_acked(n + 100);

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
    let n = writer.acked.lock().map(|a| a.len()).unwrap_or(0);
    writer.wait_acked(n + 100);
    let (acked, _refused) = writer.finish();

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

/// The crash of the issue: writes acknowledged by both replicas after the master's last
/// save, the master SIGKILLed; the daemon restarts it. Nothing a replica had is lost.
fn crashed_master_loses_nothing(redis: &str, catch_up: bool) {
    let mut c = cluster::master_and_two_replicas().redis(redis).build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let mut con = c.con("master");
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("old{i}"))
            .arg(i)
            .query(&mut con)
            .expect("SET");
    }
    // Redis 8.0 puts a replica online while the fork that sent it the copy may still be
    // finishing (its "rdb channel"), and SAVE is refused until it ends.
    util::wait_until(UP, "no fork on the master", || {
        util::info(&mut con, "persistence")
            .is_ok_and(|info| info.get("rdb_bgsave_in_progress").is_some_and(|v| v == "0"))
    });
    let _: () = redis::cmd("SAVE").query(&mut con).expect("SAVE");
    let mut acked = Vec::new();
    for i in 0..2000 {
        let key = format!("new{i}");
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
        }
        acked.push(key);
    }
    drop(con);
    let pid = c.pid("master");
    util::kill(pid, Signal::SIGKILL);
    // The daemon restarts it; it ends as master with everything.
    util::wait_until(UP, "the master restarted", || {
        c.status()["master"]["pid"]
            .as_u64()
            .is_some_and(|p| p != pid as u64)
    });
    wait_master(&c, "master");
    assert_eq!(masters(&c, &ALL), ["master"]);
    let all: Vec<String> = (0..500).map(|i| format!("old{i}")).chain(acked).collect();
    wait_all_have(&c, &ALL, &all);
    // From an RDB the master catches up from the replica ahead of it; from an AOF, which
    // holds every write Redis replied to, it starts from its own files.
    let log = c.daemon_log("a");
    assert_eq!(
        log.contains("writes this master's files lack"),
        catch_up,
        "{log}"
    );
}

#[test]
fn a_crashed_master_with_rdb_only_loses_no_write_a_replica_acknowledged() {
    crashed_master_loses_nothing("save = [\"3600 1\"]\nappendonly = \"no\"\n", true);
}

#[test]
fn a_crashed_master_with_aof_everysec_loses_no_write_a_replica_acknowledged() {
    crashed_master_loses_nothing(
        "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"everysec\"\n",
        false,
    );
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
