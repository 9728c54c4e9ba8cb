//! Rolling upgrades between servers: `redis_server` changed in the TOML, then `reload`.
//! A master and two replicas under a steady write load go 7.0 → Valkey 8.1 and 6.2 → 7.0:
//! no acknowledged write is lost, never more than one replica is away, and the syncs are
//! the ones the version table predicts. A downgrade to an older RDB version is refused.
//!
//! These tests use the three servers of the test matrix, whatever `REDISREPD_TEST_SERVER`
//! selects: `.ci/servers` provides them (cached under target/servers/) and is run once
//! per test process. Each test prints its figures (`upgrade: ...`); bench/README.md has them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::util;

/// The matrix's servers by name (`redis-6.2`, `redis-7.0`, `valkey-8.1`), from
/// `.ci/servers`. Panics (never skips) when they cannot be had.
fn matrix(name: &str) -> PathBuf {
    static LIST: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let list = LIST.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/servers");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .expect("running .ci/servers");
        assert!(
            out.status.success(),
            ".ci/servers failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, p)| (n.to_owned(), PathBuf::from(p)))
            .collect()
    });
    list.get(name)
        .unwrap_or_else(|| panic!(".ci/servers provides no `{name}`: {list:?}"))
        .clone()
}

fn key(i: u32) -> String {
    format!("key:{i}")
}

/// A thread that writes `key:i` to the master without pause until told to stop,
/// reconnecting after an error (the master is restarted last); it remembers the
/// acknowledged writes and counts the failed ones.
struct Writer {
    stop: Arc<AtomicBool>,
    /// How many writes were acknowledged so far.
    count: Arc<std::sync::atomic::AtomicUsize>,
    handle: std::thread::JoinHandle<(Vec<u32>, u32, Duration)>,
}

impl Writer {
    fn start(addr: SocketAddr) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let handle = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut errors = 0u32;
            // The longest time between two acknowledged writes: how long writes stopped.
            let mut last_ok = Instant::now();
            let mut longest_gap = Duration::ZERO;
            let mut con = None;
            let mut i = 0u32;
            // Bounded: a test that hangs elsewhere does not write forever.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if con.is_none() {
                    con = util::connect(addr, Some(PASSWORD)).ok();
                    if con.is_none() {
                        errors += 1;
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
                let Some(c) = con.as_mut() else { continue };
                let r: redis::RedisResult<()> = redis::cmd("SET").arg(key(i)).arg(i).query(c);
                match r {
                    Ok(()) => {
                        acked.push(i);
                        counted.store(acked.len(), Ordering::Relaxed);
                        longest_gap = longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    Err(_) => {
                        errors += 1;
                        con = None;
                    }
                }
                i += 1;
                // A steady load, not a flood: the 2-core machine also runs the servers.
                if i.is_multiple_of(50) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            (acked, errors, longest_gap)
        });
        Writer {
            stop,
            count,
            handle,
        }
    }

    /// Waits until `more` writes beyond those acknowledged now are acknowledged.
    fn wait_for_more(&self, more: usize) {
        let target = self.count.load(Ordering::Relaxed) + more;
        util::wait_until(UP, "the writer's writes to be acknowledged", || {
            self.count.load(Ordering::Relaxed) >= target
        });
    }

    fn finish(self) -> (Vec<u32>, u32, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the writer thread panicked")
    }
}

/// Samples the master's INFO every 20 ms until stopped: the most replicas that were not
/// `online` at once while the original master (`pid`) was up.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<usize>,
}

impl Watcher {
    fn start(addr: SocketAddr, pid: u32, replicas: usize) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut most_away = 0;
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                // INFO's default sections hold both the pid and the replica lines.
                let text = util::connect(addr, Some(PASSWORD))
                    .and_then(|mut c| redis::cmd("INFO").query::<String>(&mut c));
                if let Ok(text) = text {
                    let info = redisrepd::info::Info::parse(&text);
                    if info.process_id() == Some(pid) {
                        let online = info.replicas.iter().filter(|r| r.is_online()).count();
                        most_away = most_away.max(replicas.saturating_sub(online));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            most_away
        });
        Watcher { stop, handle }
    }

    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the watcher thread panicked")
    }
}

/// Each instance's `server` in `status --json`.
fn servers(c: &Cluster) -> BTreeMap<String, String> {
    c.status()
        .into_iter()
        .map(|(n, s)| (n, s["server"].as_str().unwrap_or("?").to_owned()))
        .collect()
}

/// Full and partial syncs each replica logged (through the daemon) in `log`.
fn syncs_in(log: &str, name: &str) -> (usize, usize) {
    let mine = |l: &&str| l.ends_with(&format!("instance={name}"));
    let full = log
        .lines()
        .filter(mine)
        .filter(|l| l.contains("Full resync from master") || l.contains("Full resync from primary"))
        .count();
    let partial = log
        .lines()
        .filter(mine)
        .filter(|l| l.contains("accepted a Partial Resynchronization"))
        .count();
    (full, partial)
}

/// Runs a master and two replicas on `from`, changes `redis_server` to `to` under writes,
/// reloads, and checks the outcome; prints the figures.
fn rolling_upgrade(from: &str, to: &str) {
    let (from_path, to_path) = (matrix(from), matrix(to));
    let from_server = redisrepd::server::detect(&from_path).expect("from server");
    let to_server = redisrepd::server::detect(&to_path).expect("to server");
    let mut c = cluster::one_host().build();
    c.redis_server = from_path;
    c.write_config();
    c.start_daemon("a");
    c.wait_healthy();
    let before = servers(&c);
    assert!(
        before.values().all(|s| *s == from_server.to_string()),
        "{before:?}"
    );
    let pids: BTreeMap<&str, u32> = ["master", "r1", "r2"].map(|n| (n, c.pid(n))).into();

    let writer = Writer::start(c.addr("master"));
    let watcher = Watcher::start(c.addr("master"), pids["master"], 2);
    writer.wait_for_more(500);
    let log_before = c.daemon_log("a").len();
    c.redis_server = to_path;
    c.write_config();
    let started = Instant::now();
    let run = c.cli(&["reload"]);
    let took = started.elapsed();
    run.expect_code(0);
    assert!(run.stdout.contains("3 changed"), "{run}");
    assert!(
        run.stdout
            .contains(&format!("a: server: {from_server} -> {to_server}")),
        "{run}"
    );
    // More writes on the upgraded group, then stop.
    writer.wait_for_more(500);
    let (acked, write_errors, longest_gap) = writer.finish();
    let most_away = watcher.finish();
    c.wait_healthy();

    let after = servers(&c);
    assert!(
        after.values().all(|s| *s == to_server.to_string()),
        "{after:?}"
    );
    for (n, pid) in &pids {
        assert_ne!(c.pid(n), *pid, "`{n}` was restarted on the new server");
    }
    assert!(
        most_away <= 1,
        "{most_away} replicas were away at once before the master went"
    );
    // No acknowledged write lost, anywhere.
    for name in ["master", "r1", "r2"] {
        util::wait_for(UP, &format!("every acknowledged write on `{name}`"), || {
            let mut con = util::connect(c.addr(name), Some(PASSWORD)).map_err(|e| e.to_string())?;
            let mut missing = 0;
            for chunk in acked.chunks(1000) {
                let keys: Vec<String> = chunk.iter().map(|i| key(*i)).collect();
                let got: Vec<Option<u32>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query(&mut con)
                    .map_err(|e| e.to_string())?;
                missing += chunk
                    .iter()
                    .zip(got)
                    .filter(|(i, v)| *v != Some(**i))
                    .count();
            }
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} of {} missing", acked.len()))
            }
        });
    }
    // The syncs: each replica restarts from its RDB with its replication id and offset
    // (partial, every server); the master's restart is partial where the new server keeps
    // the replication id from the RDB (Redis 7.0+, Valkey), else every replica full-syncs.
    let log = c.daemon_log("a");
    let log = &log[log_before.min(log.len())..];
    let (mut full, mut partial) = (0, 0);
    for r in ["r1", "r2"] {
        let (f, p) = syncs_in(log, r);
        full += f;
        partial += p;
    }
    let expected_full = if to_server.master_restart_keeps_replid() {
        0
    } else {
        2
    };
    println!(
        "upgrade: {from_server} -> {to_server}: reload took {:.1}s, {full} full and {partial} \
         partial syncs, {} writes acknowledged, {write_errors} failed (master restart), writes \
         stopped for {:.2}s at most, at most {most_away} replica away",
        took.as_secs_f64(),
        acked.len(),
        longest_gap.as_secs_f64()
    );
    assert_eq!(
        full,
        expected_full,
        "full syncs on {from_server} -> {to_server}\n{}",
        c.logs()
    );
    assert_eq!(partial, 4 - expected_full, "partial resyncs\n{}", c.logs());
    // The warning about mixed servers is gone once all run one server.
    let run = c.cli(&["status"]);
    assert!(!run.stdout.contains("mixed servers"), "{run}");
}

#[test]
fn rolling_upgrade_redis_7_0_to_valkey_8_1() {
    rolling_upgrade("redis-7.0", "valkey-8.1");
}

#[test]
fn rolling_upgrade_redis_6_2_to_7_0() {
    rolling_upgrade("redis-6.2", "redis-7.0");
}

#[test]
fn a_downgrade_to_an_older_rdb_version_is_refused() {
    let mut c = cluster::one_host().build();
    c.redis_server = matrix("redis-7.0");
    c.write_config();
    c.start_daemon("a");
    c.wait_healthy();
    let pids: Vec<u32> = ["master", "r1", "r2"].map(|n| c.pid(n)).into();
    c.redis_server = matrix("redis-6.2");
    c.write_config();
    let run = c.cli(&["reload"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("reload refused, nothing changed")
            && run.stderr.contains("redis 6.2.14")
            && run.stderr.contains("RDB version 10"),
        "{run}"
    );
    assert_eq!(pids, ["master", "r1", "r2"].map(|n| c.pid(n)));
    let r70 = redisrepd::server::detect(&matrix("redis-7.0")).expect("7.0");
    let s = servers(&c);
    assert!(s.values().all(|v| *v == r70.to_string()), "{s:?}");

    // A daemon started on that file adopts the 7.0 instances as they are, and refuses to
    // restart one onto 6.2 (it could not read its own dump).
    drop(c.take_daemon("a"));
    c.start_daemon("a");
    c.wait_healthy();
    assert_eq!(pids, ["master", "r1", "r2"].map(|n| c.pid(n)));
    let run = c.cli(&["restart", "r1"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("restart refused, nothing changed")
            && run.stderr.contains("`r1` would restart on redis 6.2.14"),
        "{run}"
    );
    assert_eq!(pids, ["master", "r1", "r2"].map(|n| c.pid(n)));
}

#[test]
fn a_half_upgraded_group_shows_mixed_servers() {
    // The daemon restarted on a file whose `redis_server` changed meanwhile: it adopts the
    // running 7.0 instances as they are; restarting one replica puts it on Valkey.
    let mut c = cluster::one_host().build();
    c.redis_server = matrix("redis-7.0");
    c.write_config();
    c.start_daemon("a");
    c.wait_healthy();
    let old = c.take_daemon("a").expect("daemon");
    drop(old); // killed; the instances keep running
    c.redis_server = matrix("valkey-8.1");
    c.write_config();
    c.start_daemon("a");
    c.wait_healthy();
    let r70 = redisrepd::server::detect(&matrix("redis-7.0")).expect("7.0");
    let v81 = redisrepd::server::detect(&matrix("valkey-8.1")).expect("valkey");
    assert!(servers(&c).values().all(|s| *s == r70.to_string()));
    let run = c.cli(&["status"]);
    assert!(!run.stdout.contains("mixed servers"), "{run}");

    c.cli(&["restart", "r1"]).expect_code(0);
    c.wait_healthy();
    let s = servers(&c);
    assert_eq!(s["r1"], v81.to_string(), "{s:?}");
    assert_eq!(s["master"], r70.to_string(), "{s:?}");
    let run = c.cli(&["status"]);
    assert!(
        run.stdout.contains("mixed servers in the group")
            && run.stdout.contains(&format!("{v81} (r1)")),
        "{run}"
    );
    let json = c.status();
    assert!(
        json["master"]["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("mixed")))),
        "{}",
        json["master"]
    );
}
