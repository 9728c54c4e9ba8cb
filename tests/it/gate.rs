//! The sync gate: rolling restarts without full syncs, forced full syncs one at a time,
//! pacing across two daemons, and the min-replicas refusal.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::sys::signal::Signal;

use crate::cluster::{self, Cluster, UP};
use crate::util;

/// Fills the master with `n` small keys, so that a full sync has something to copy.
fn fill(c: &Cluster, n: usize) {
    let mut con = c.con("master");
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.set(format!("key:{i}"), "x".repeat(100)).ignore();
    }
    let _: () = pipe.query(&mut con).expect("filling the master");
}

/// Replays the master's log (forwarded into its daemon's log) and returns the largest
/// number of replicas it was syncing at once, and how many full syncs it served.
///
/// Redis 8.0 copies a full sync over a second connection from the replica (its "rdb
/// channel"), which asks for synchronization again under its source address (127.0.0.1,
/// not the announced one) and is followed by `Full resync requested by replica ...
/// (rdb-channel)`: that is the same replica, not another one syncing.
fn max_concurrent_syncs_in_log(log: &str) -> (usize, usize) {
    let mut syncing: HashSet<String> = HashSet::new();
    let mut max = 0;
    let mut full = 0;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("instance=master"))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let replica_after = |marker: &str| {
            line.split(marker)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        let rdb_channel = || {
            lines.get(i + 1).is_some_and(|next| {
                next.contains("Full resync requested") && next.contains("(rdb-channel)")
            })
        };
        if let Some(r) =
            replica_after("Replica ").filter(|_| line.contains("asks for synchronization"))
        {
            if !rdb_channel() {
                syncing.insert(r);
                max = max.max(syncing.len());
            }
        } else if let Some(r) = replica_after("Synchronization with replica ") {
            full += 1;
            syncing.remove(&r);
        } else if let Some(r) = replica_after("Partial resynchronization request from ") {
            syncing.remove(&r);
        }
    }
    (max, full)
}

/// [`max_concurrent_syncs_in_log`] of the master's daemon (host `a`) once `ended` full
/// syncs have ended in it. A diskless sync is over for the replica (its link up, so
/// `status` healthy) before the master logs "Synchronization with replica ... succeeded":
/// that waits for the replica's first REPLCONF ACK, up to a second later.
fn syncs_once_ended(c: &Cluster, ended: usize) -> (usize, usize) {
    util::wait_for(
        UP,
        &format!("the master to log {ended} syncs ended"),
        || {
            let (max, full) = max_concurrent_syncs_in_log(&c.daemon_log("a"));
            if full >= ended {
                Ok((max, full))
            } else {
                Err(format!("{full} ended\n{}", c.logs()))
            }
        },
    )
}

/// Polls the master's INFO in a thread until dropped: the most replicas it ever lacked.
struct AwayWatch {
    stop: Arc<AtomicBool>,
    max_away: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AwayWatch {
    fn start(c: &Cluster, replicas: usize) -> AwayWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let max_away = Arc::new(AtomicUsize::new(0));
        let addr = c.addr("master");
        let (s, m) = (stop.clone(), max_away.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(mut con) = util::connect(addr, Some(cluster::PASSWORD)) else {
                    continue;
                };
                while !s.load(Ordering::Relaxed) {
                    let Ok(info) = util::info(&mut con, "replication") else {
                        break;
                    };
                    let online = info
                        .iter()
                        .filter(|(k, v)| k.starts_with("slave") && v.contains("state=online"))
                        .count();
                    m.fetch_max(replicas.saturating_sub(online), Ordering::Relaxed);
                }
            }
        });
        AwayWatch {
            stop,
            max_away,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max_away.load(Ordering::Relaxed)
    }
}

#[test]
fn rolling_restart_of_two_replicas_needs_no_full_sync_and_keeps_one_online() {
    // AOF on: a replica that loaded its AOF could only full-sync (Redis 7.0), so this also
    // proves the resume-from-RDB path.
    let mut c = cluster::one_host()
        .redis("save = [\"3600 1\"]\nappendonly = \"yes\"\n")
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    fill(&c, 2000);
    c.wait_healthy();
    let full_before = c.info_int("master", "stats", "sync_full");
    let watch = AwayWatch::start(&c, 2);
    let run = c.cli(&["restart", "r1", "r2"]);
    let max_away = watch.finish();
    run.expect_code(0);
    assert_eq!(run.stdout.matches("partial resync").count(), 2, "{run}");
    assert_eq!(
        c.info_int("master", "stats", "sync_full"),
        full_before,
        "no full sync\n{}",
        c.logs()
    );
    assert!(
        max_away <= 1,
        "at most one replica away at a time, saw {max_away}"
    );
    // AOF is back on for both.
    c.wait_healthy();
    for r in ["r1", "r2"] {
        util::wait_until(UP, "AOF back on", || {
            util::config_get(&mut c.con(r), "appendonly").is_ok_and(|v| v == "yes")
        });
    }
}

#[test]
fn replicas_that_lost_their_data_full_sync_one_at_a_time() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    fill(&c, 5000);
    c.wait_healthy();
    let full_before = c.info_int("master", "stats", "sync_full");
    for r in ["r1", "r2"] {
        std::fs::remove_dir_all(c.data_dir(r)).unwrap();
    }
    let pids = [c.pid("r1"), c.pid("r2")];
    for pid in pids {
        util::kill(pid, Signal::SIGKILL);
    }
    util::wait_until(UP, "both replicas restarted", || {
        let s = c.status();
        ["r1", "r2"].iter().all(|r| s[*r]["restarts"] == 1)
    });
    c.wait_healthy();
    assert_eq!(
        c.info_int("master", "stats", "sync_full"),
        full_before + 2,
        "both had to copy everything"
    );
    let (max, full) = syncs_once_ended(&c, 4);
    assert_eq!(max, 1, "never two syncing at once\n{}", c.logs());
    assert!(
        full >= 4,
        "initial syncs and the forced ones are in the log"
    );
    let s = c.status();
    for r in ["r1", "r2"] {
        assert!(
            s[r]["last_sync"]
                .as_str()
                .unwrap_or_default()
                .contains("full sync"),
            "{}",
            s[r]
        );
        let n: i64 = redis::cmd("DBSIZE").query(&mut c.con(r)).unwrap();
        assert_eq!(n, 5000);
    }
}

#[test]
fn the_gate_paces_replicas_of_two_daemons() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "b", Some("master"))
        .instance("r2", "c", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_state("master", "running");
    fill(&c, 5000);
    // Both replica daemons start together; each replica needs a full sync.
    c.start_daemon("b");
    c.start_daemon("c");
    c.wait_healthy();
    let (max, full) = syncs_once_ended(&c, 2);
    assert_eq!(full, 2, "{}", c.logs());
    assert_eq!(
        max,
        1,
        "the daemons of b and c never let both sync at once\n{}",
        c.logs()
    );
}

#[test]
fn restart_that_breaks_min_replicas_is_refused_unless_forced() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .with("min_replicas_to_write = 1")
        .instance("r1", "a", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let pid = c.pid("r1");
    let run = c.cli(&["restart", "r1"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("redisrepd: refused: ")
            && run.stderr.contains("min_replicas_to_write = 1")
            && run.stderr.contains("--force"),
        "{run}"
    );
    assert_eq!(c.pid("r1"), pid, "nothing was restarted");
    let run = c.cli(&["stop", "r1"]);
    run.expect_code(1);
    let run = c.cli(&["restart", "--force", "r1"]);
    run.expect_code(0);
    assert_ne!(c.pid("r1"), pid);
    c.wait_healthy();
}

/// The predictive gate: a replica whose RDB resumes within its master's backlog costs no
/// fork, so it starts while another replica holds the only place for a full sync.
#[test]
fn a_replica_sure_to_resync_partially_is_admitted_while_another_holds_the_gate() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    fill(&c, 2000);
    c.wait_healthy();
    // r2 stops gracefully: its RDB carries the master's history. A few writes follow.
    c.cli(&["stop", "r2"]).expect_code(0);
    c.set("master", "after-r2-stopped", "1");
    // r1 crashes and loses its data: its restart needs a full sync, which the master makes
    // slow (10 ms a key: about 20 s), so it holds the gate's one place for that long.
    // (A crash, not `start`: the daemon carries out one request at a time.)
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg("10000")
        .query(&mut c.con("master"))
        .unwrap();
    // The master's fork for an earlier sync may not be gone yet: Redis 8.0 reaps it up to
    // ~100 ms after the replica is in sync (seen in CI: the test then took that fork for
    // r1's, and asked while r1 was still in its restart backoff).
    let forking = |want: &str| {
        util::connect(c.addr("master"), Some(cluster::PASSWORD))
            .and_then(|mut con| util::info(&mut con, "persistence"))
            .is_ok_and(|info| {
                info.get("rdb_bgsave_in_progress")
                    .is_some_and(|v| v == want)
            })
    };
    util::wait_until(UP, "the master's earlier forks to end", || forking("0"));
    std::fs::remove_dir_all(c.data_dir("r1")).unwrap();
    util::kill(c.pid("r1"), Signal::SIGKILL);
    // r1 is back and the master has forked its transfer (which the delay slows down).
    util::wait_until(UP, "the master to be sending r1 its full copy", || {
        c.status()["r1"]["state"] == "syncing" && forking("1")
    });
    let run = c.cli(&["start", "r2"]);
    run.expect_code(0);
    assert!(run.stdout.contains("partial resync"), "{run}");
    let s = c.status();
    assert_eq!(s["r2"]["state"], "running", "{}\n{}", s["r2"], c.logs());
    assert_eq!(
        s["r1"]["state"],
        "syncing",
        "r1 still holds the gate: {}\n{}",
        s["r1"],
        c.logs()
    );
    let v: Option<String> = redis::cmd("GET")
        .arg("after-r2-stopped")
        .query(&mut c.con("r2"))
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg("0")
        .query(&mut c.con("master"))
        .unwrap();
    c.wait_healthy();
    assert_eq!(c.status()["r2"]["sync_mispredictions"], 0);
}

/// Issue 18: `stop r1 r2` in one command, and two stops back to back, each stopped both
/// replicas and left the master refusing every write (the guard counted online replicas
/// on an INFO from before the first stop). Both are refused now; nothing is stopped by a
/// refused command, and the master takes writes throughout.
#[test]
fn the_min_replicas_guard_holds_for_one_command_and_for_stops_back_to_back() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .with("min_replicas_to_write = 1\nmin_replicas_max_lag = 10")
        .instance("r1", "a", Some("master"))
        .instance("r2", "a", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let pids: Vec<u32> = ["r1", "r2"].iter().map(|n| c.pid(n)).collect();

    let run = c.cli(&["stop", "r1", "r2"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("min_replicas_to_write = 1")
            && run.stderr.contains("stopped by the same command"),
        "{run}"
    );
    let now: Vec<u32> = ["r1", "r2"].iter().map(|n| c.pid(n)).collect();
    assert_eq!(now, pids, "a refused command stops nothing");
    c.set("master", "after-one-command", "1");

    // Back to back: the second asked the moment the first returned.
    c.cli(&["stop", "r1"]).expect_code(0);
    let run = c.cli(&["stop", "r2"]);
    run.expect_code(1);
    assert!(run.stderr.contains("0 good replica(s)"), "{run}");
    assert_eq!(c.pid("r2"), pids[1]);
    c.set("master", "after-back-to-back", "1");

    // Both at once, from two clients: one of them is refused, whichever comes second.
    c.cli(&["start", "r1"]).expect_code(0);
    c.wait_healthy();
    let config = c.config.clone();
    let runs: Vec<util::Run> = std::thread::scope(|s| {
        let both: Vec<_> = ["r1", "r2"]
            .into_iter()
            .map(|n| {
                let config = &config;
                s.spawn(move || {
                    util::run(
                        util::redisrepd(config).args(["stop", n]),
                        std::time::Duration::from_secs(60),
                    )
                })
            })
            .collect();
        both.into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let codes: Vec<Option<i32>> = runs.iter().map(|r| r.status.code()).collect();
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "one stop, one refusal: {}\n{}",
        runs[0],
        runs[1]
    );
    c.set("master", "after-two-at-once", "1");
}

/// An operator's rolling restart of both replicas right after a master restart: the
/// master's restart ends when its replicas are back, so the replicas' min-replicas check
/// finds them online (it refused at once before, on every server).
#[test]
fn replicas_restart_right_after_a_master_restart() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .with("min_replicas_to_write = 1")
        .instance("r1", "a", Some("master"))
        .instance("r2", "a", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    fill(&c, 1000);
    c.wait_healthy();
    for _ in 0..2 {
        let run = c.cli(&["restart", "master"]);
        run.expect_code(0);
        // The role moves to a replica and back around the master's restart; the group
        // is whole when the verb returns.
        assert!(
            run.stdout
                .contains("the role moves to its most up-to-date replica"),
            "{run}"
        );
        c.cli(&["restart", "r1", "r2"]).expect_code(0);
    }
    c.wait_healthy();
}

/// Replays the daemon's own gate lines: the most replicas holding a place at once (from
/// `granted a place` to `in sync`). The master's log is no measure of that on Redis 6.2
/// with diskless sync: it logs a transfer's end a moment after it lists the replica
/// online, so the next one's request may come first.
fn max_admitted_in_log(log: &str) -> usize {
    let mut holding: HashSet<String> = HashSet::new();
    let mut max = 0;
    for line in log.lines() {
        let Some(name) = line
            .split(" instance=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        else {
            continue;
        };
        if line.contains("granted a place in the sync gate") {
            holding.insert(name.to_owned());
            max = max.max(holding.len());
        } else if line.contains(" in sync: ") {
            holding.remove(name);
        }
    }
    max
}

/// Issue 22: `max_concurrent_syncs = "auto"` admits by cost. Four replicas of a small
/// master that all lost their data need full syncs: with 1 they go one at a time (one
/// fork each), with `auto` the host's memory leaves room for all of them, so they sync
/// together from shared forks, and the daemon says why it let them in.
#[test]
fn auto_admits_cheap_syncs_together_where_one_admits_one_at_a_time() {
    let replicas = ["r1", "r2", "r3", "r4"];
    for setting in ["1", "\"auto\""] {
        // Diskless on every server (Redis 6.2's default is off): replicas waiting
        // together share the transfer's fork.
        let mut b = cluster::Builder::new()
            .redis("save = [\"3600 1\"]\nappendonly = \"no\"\nrepl-diskless-sync = \"yes\"\n")
            .instance("master", "a", None)
            .supervise("max_concurrent_syncs", setting);
        for r in replicas {
            b = b.instance(r, "a", Some("master"));
        }
        let mut c = b.build();
        c.start_daemon("a");
        c.wait_healthy();
        fill(&c, 1000);
        c.wait_healthy();
        let full_before = c.info_int("master", "stats", "sync_full");
        let forks_before = c.info_int("master", "stats", "total_forks");
        let log_before = c.daemon_log("a").len();
        for r in replicas {
            std::fs::remove_dir_all(c.data_dir(r)).unwrap();
        }
        let pids: Vec<u32> = replicas.iter().map(|r| c.pid(r)).collect();
        for pid in pids {
            util::kill(pid, Signal::SIGKILL);
        }
        util::wait_until(UP, "every replica restarted", || {
            let s = c.status();
            replicas.iter().all(|r| s[*r]["restarts"] == 1)
        });
        c.wait_healthy();
        let log = c.daemon_log("a");
        let since = &log[log_before.min(log.len())..];
        let (max, _) = max_concurrent_syncs_in_log(since);
        let admitted = max_admitted_in_log(since);
        let full = c.info_int("master", "stats", "sync_full") - full_before;
        let forks = c.info_int("master", "stats", "total_forks") - forks_before;
        eprintln!(
            "max_concurrent_syncs = {setting}: {admitted} admitted and {max} syncing at once, \
             {full} full syncs, {forks} forks"
        );
        assert_eq!(full, 4, "{setting}: each copied everything\n{}", c.logs());
        if setting == "1" {
            assert_eq!(admitted, 1, "1: one place at a time\n{since}");
            assert_eq!(forks, 4, "1: a fork each\n{}", c.logs());
        } else {
            assert!(
                admitted >= 2 && max >= 2,
                "auto: syncs together, at most {admitted} admitted, {max} syncing\n{since}"
            );
            assert!(
                forks < 4,
                "auto: replicas share forks, {forks} forks\n{}",
                c.logs()
            );
            assert!(
                since.contains("granted a place in the sync gate of `master`")
                    && since.contains("auto: headroom"),
                "auto says why it admits\n{since}"
            );
        }
        for r in replicas {
            let n: i64 = redis::cmd("DBSIZE").query(&mut c.con(r)).unwrap();
            assert_eq!(n, 1000, "{setting}: {r}");
        }
    }
}

/// `auto` across daemons: the replicas of daemons b and c claim places in the gate of a
/// master on host a, which is another host to them, so each judges from the master's
/// INFO alone; that leaves room for both, and they sync together.
#[test]
fn auto_lets_replicas_of_two_daemons_sync_together() {
    let mut c = cluster::Builder::new()
        .supervise("max_concurrent_syncs", "\"auto\"")
        .redis("save = [\"3600 1\"]\nappendonly = \"no\"\nrepl-diskless-sync = \"yes\"\n")
        .instance("master", "a", None)
        .instance("r1", "b", Some("master"))
        .instance("r2", "c", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_state("master", "running");
    fill(&c, 5000);
    c.start_daemon("b");
    c.start_daemon("c");
    c.wait_healthy();
    let (max, full) = syncs_once_ended(&c, 2);
    assert_eq!(full, 2, "{}", c.logs());
    let grants = [c.daemon_log("b"), c.daemon_log("c")]
        .iter()
        .filter(|log| log.contains("auto: headroom (INFO only, another host)"))
        .count();
    assert_eq!(max, 2, "both synced at once\n{}", c.logs());
    assert!(
        grants >= 1,
        "the second one was let in on the master's INFO\n{}",
        c.logs()
    );
}

/// A reload from 1 to `auto` applies live: the master's diskless transfer now waits for
/// its two replicas (they may be released together), and nothing restarts.
#[test]
fn a_reload_to_auto_applies_live() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let pids: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    c.supervise.push_str("max_concurrent_syncs = \"auto\"\n");
    c.write_config();
    let run = c.cli(&["reload"]);
    run.expect_code(0);
    let now: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    assert_eq!(now, pids, "nothing restarted\n{run}");
    // Redis 6.2 does not know the directive: nothing to set there.
    if util::test_server().knows_diskless_sync_max_replicas() {
        assert!(
            run.stdout
                .contains("master: set repl-diskless-sync-max-replicas live"),
            "{run}"
        );
        let v = util::config_get(&mut c.con("master"), "repl-diskless-sync-max-replicas")
            .expect("CONFIG GET");
        assert_eq!(v, "2", "{run}");
    }
    c.wait_healthy();
}
