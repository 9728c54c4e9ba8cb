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
use redisrepd_testkit::{Target, Writer, WriterOpts};

/// The matrix's servers by name (`redis-6.2`, `redis-7.0`, `valkey-8.1`), from
/// `.ci/servers`. Panics (never skips) when they cannot be had.
pub(crate) fn matrix(name: &str) -> PathBuf {
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

fn key(i: u64) -> String {
    format!("key:{i}")
}

/// What a failure shows besides its own message: every instance as `status` sees it
/// (state, role, pid, server, link, last error) and the tail of the daemon's log (its
/// decisions and the instances' own output).
fn context(c: &Cluster) -> String {
    let run = c.cli(&["status"]);
    let log = c.daemon_log("a");
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(80)..];
    format!(
        "--- status (exit {}):\n{}{}--- daemon log, last {} lines:\n{}",
        run.status,
        run.stdout,
        run.stderr,
        tail.len(),
        tail.join("\n")
    )
}

/// Polls `probe` until it succeeds; after [`UP`] panics with its last answer and the
/// group's [`context`]. (The pause between polls only paces them.)
#[track_caller]
fn wait_for<T>(c: &Cluster, what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    let never = AtomicBool::new(false);
    redisrepd_testkit::try_wait_for(what, UP, &never, probe)
        .unwrap_or_else(|e| panic!("{e}\n{}", context(c)))
}

/// [`Cluster::wait_healthy`], failing with the [`context`].
#[track_caller]
fn wait_healthy(c: &Cluster) {
    wait_for(c, "status to report every instance healthy", || {
        let run = c.cli(&["status"]);
        if run.status.code() == Some(0) {
            Ok(())
        } else {
            Err(format!("status exited {}", run.status))
        }
    });
}

/// A CLI run that must exit with `code`; else panics with the run and the [`context`].
#[track_caller]
fn expect_code(c: &Cluster, run: &util::Run, code: i32) {
    assert_eq!(
        run.status.code(),
        Some(code),
        "unexpected exit status\n{run}\n{}",
        context(c)
    );
}

/// The testkit's writer on `key:<n>` to the master until told to stop, reconnecting
/// after an error (the master is restarted last): a steady load, not a flood (5 ms after
/// every 50 writes: the 2-core machine also runs the servers), 20 ms between failed
/// attempts.
fn writer(c: &Cluster) -> Writer {
    let opts = WriterOpts {
        prefix: "key:".to_owned(),
        pause: Duration::from_millis(5),
        pause_every: 50,
        backoff: (Duration::from_millis(20), Duration::from_millis(20)),
        ..cluster::writer_opts()
    };
    Writer::start(Target::Fixed(c.addr("master")), opts)
}

/// Waits until `more` writes beyond those acknowledged now are acknowledged, failing with
/// the [`context`].
#[track_caller]
fn wait_for_more(c: &Cluster, writer: &Writer, more: usize) {
    let target = writer.acked() + more;
    let what = format!("{more} more writes to be acknowledged by `master`");
    wait_for(c, &what, || writer.reached(target));
}

/// Samples the master's INFO every 20 ms until stopped: the most replicas that were not
/// `online` at once while the original master (`pid`) was up as master (a planned restart
/// makes it a replica for a moment first), and the replica lines of
/// the first sample that showed that many.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(usize, String)>,
}

impl Watcher {
    fn start(addr: SocketAddr, pid: u32, replicas: usize) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut most_away = 0;
            let mut worst = String::new();
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                // INFO's default sections hold both the pid and the replica lines.
                let text = util::connect(addr, Some(PASSWORD))
                    .and_then(|mut c| redis::cmd("INFO").query::<String>(&mut c));
                if let Ok(text) = text {
                    let info = redisrepd_core::info::Info::parse(&text);
                    if info.process_id() == Some(pid) && info.role() == Some("master") {
                        let online = info.replicas.iter().filter(|r| r.is_online()).count();
                        let away = replicas.saturating_sub(online);
                        if away > most_away {
                            most_away = away;
                            let lines: Vec<String> = info
                                .replicas
                                .iter()
                                .map(|r| format!("{}:{} {}", r.ip, r.port, r.state))
                                .collect();
                            worst = format!("master's replicas then: [{}]", lines.join(", "));
                        }
                    }
                }
                // The sampling period, not a wait: INFO every 20 ms until stopped.
                std::thread::sleep(Duration::from_millis(20));
            }
            (most_away, worst)
        });
        Watcher { stop, handle }
    }

    fn finish(self) -> (usize, String) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the watcher thread panicked")
    }
}

/// SIGSTOPs an instance until dropped (then SIGCONT): a process too busy to answer its
/// probes, as on a loaded machine.
struct Stalled(u32);

impl Stalled {
    /// Stops `name` and waits until the daemon reports that it does not answer INFO.
    fn until_unanswered(c: &Cluster, name: &str) -> Stalled {
        let stalled = Stalled(c.pid(name));
        util::kill(stalled.0, nix::sys::signal::Signal::SIGSTOP);
        wait_for(c, &format!("`{name}` reported not answering"), || {
            let s = c.status().remove(name).unwrap_or_default();
            let warned = s["warnings"].as_array().is_some_and(|w| {
                w.iter()
                    .any(|w| w.as_str().is_some_and(|w| w.contains("not answering INFO")))
            });
            if warned { Ok(()) } else { Err(s.to_string()) }
        });
        stalled
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
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
/// reloads, and checks the outcome; prints the figures. Every failure names the instance
/// and shows the group's [`context`].
fn rolling_upgrade(from: &str, to: &str) {
    let (from_path, to_path) = (matrix(from), matrix(to));
    let from_server = redisrepd_io::server_detect::detect(&from_path).expect("from server");
    let to_server = redisrepd_io::server_detect::detect(&to_path).expect("to server");
    let mut c = cluster::one_host().build();
    c.redis_server = from_path;
    c.write_config();
    c.start_daemon("a");
    wait_healthy(&c);
    let before = servers(&c);
    assert!(
        before.values().all(|s| *s == from_server.to_string()),
        "every instance on {from_server} before the reload: {before:?}\n{}",
        context(&c)
    );
    let pids: BTreeMap<&str, u32> = ["master", "r1", "r2"].map(|n| (n, c.pid(n))).into();

    let writer = writer(&c);
    let watcher = Watcher::start(c.addr("master"), pids["master"], 2);
    wait_for_more(&c, &writer, 500);
    let log_before = c.daemon_log("a").len();
    c.redis_server = to_path;
    c.write_config();
    let started = Instant::now();
    let run = c.cli(&["reload"]);
    let took = started.elapsed();
    expect_code(&c, &run, 0);
    assert!(
        run.stdout.contains("0 changed live, 3 restarted")
            && run
                .stdout
                .contains(&format!("a: server: {from_server} -> {to_server}")),
        "reload's summary\n{run}\n{}",
        context(&c)
    );
    // More writes on the upgraded group, then stop.
    wait_for_more(&c, &writer, 500);
    let report = writer.finish();
    let (acked, write_errors, longest_gap) = (
        report.acked(),
        report.seen.errors.len(),
        report.longest_gap(),
    );
    let (most_away, worst) = watcher.finish();
    wait_healthy(&c);

    let after = servers(&c);
    for (n, pid) in &pids {
        assert_eq!(
            after.get(*n).map(String::as_str),
            Some(to_server.to_string().as_str()),
            "`{n}` on {to_server} after the reload: {after:?}\n{}",
            context(&c)
        );
        assert_ne!(
            c.pid(n),
            *pid,
            "`{n}` was restarted on the new server\n{}",
            context(&c)
        );
    }
    assert!(
        most_away <= 1,
        "{most_away} replicas were away at once before the master went ({worst}; r1 is \
         {}, r2 is {})\n{}",
        c.addr("r1"),
        c.addr("r2"),
        context(&c)
    );
    // No acknowledged write lost, anywhere.
    for name in ["master", "r1", "r2"] {
        wait_for(&c, &format!("every acknowledged write on `{name}`"), || {
            let mut con = util::connect(c.addr(name), Some(PASSWORD))
                .map_err(|e| format!("connecting to `{name}`: {e}"))?;
            let mut missing = Vec::new();
            for chunk in acked.chunks(1000) {
                let keys: Vec<String> = chunk.iter().map(|i| key(*i)).collect();
                let got: Vec<Option<u64>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query(&mut con)
                    .map_err(|e| format!("MGET on `{name}`: {e}"))?;
                missing.extend(
                    chunk
                        .iter()
                        .zip(got)
                        .filter(|(i, v)| *v != Some(**i))
                        .map(|(i, _)| *i),
                );
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} missing on `{name}`, the first: {:?}",
                    missing.len(),
                    acked.len(),
                    &missing[..missing.len().min(10)]
                ))
            }
        });
    }
    // The syncs: each replica restarts from its RDB with its replication id and offset
    // (partial, every server); the master's role moves to a replica and back around its
    // restart, so its replicas follow partially each time (on every server, whether or
    // not it keeps the replication id from its RDB).
    let log = c.daemon_log("a");
    let log = &log[log_before.min(log.len())..];
    let mut per_replica = Vec::new();
    let (mut full, mut partial) = (0, 0);
    for r in ["r1", "r2"] {
        let (f, p) = syncs_in(log, r);
        per_replica.push(format!("`{r}`: {f} full, {p} partial"));
        full += f;
        partial += p;
    }
    let expected_full = 0;
    println!(
        "upgrade: {from_server} -> {to_server}: reload took {:.1}s, {full} full and {partial} \
         partial syncs, {} writes acknowledged, {write_errors} failed (master restart), writes \
         stopped for {:.2}s at most, at most {most_away} replica away",
        took.as_secs_f64(),
        acked.len(),
        longest_gap.as_secs_f64()
    );
    assert!(
        full == expected_full && partial >= 4,
        "syncs on {from_server} -> {to_server}: expected {expected_full} full and {} or more \
         partial, logged {}\n{}",
        4,
        per_replica.join("; "),
        context(&c)
    );
    // The warning about mixed servers is gone once all run one server.
    let run = c.cli(&["status"]);
    assert!(
        !run.stdout.contains("mixed servers"),
        "{run}\n{}",
        context(&c)
    );
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
    wait_healthy(&c);
    let names = ["master", "r1", "r2"];
    let pids: Vec<u32> = names.map(|n| c.pid(n)).into();
    let same_pids = |c: &Cluster, when: &str| {
        for (n, pid) in names.iter().zip(&pids) {
            assert_eq!(c.pid(n), *pid, "`{n}` not restarted {when}\n{}", context(c));
        }
    };
    c.redis_server = matrix("redis-6.2");
    c.write_config();
    let run = c.cli(&["reload"]);
    expect_code(&c, &run, 1);
    assert!(
        run.stderr.contains("reload refused, nothing changed")
            && run.stderr.contains("redis 6.2.14")
            && run.stderr.contains("RDB version 10"),
        "{run}\n{}",
        context(&c)
    );
    same_pids(&c, "by the refused reload");
    let r70 = redisrepd_io::server_detect::detect(&matrix("redis-7.0")).expect("7.0");
    let s = servers(&c);
    assert!(
        s.values().all(|v| *v == r70.to_string()),
        "every instance on {r70}: {s:?}\n{}",
        context(&c)
    );

    // A daemon started on that file adopts the 7.0 instances as they are, and refuses to
    // restart one onto 6.2 (it could not read its own dump).
    drop(c.take_daemon("a"));
    c.start_daemon("a");
    wait_healthy(&c);
    same_pids(&c, "by the new daemon (adopted)");
    let run = c.cli(&["restart", "r1"]);
    expect_code(&c, &run, 1);
    assert!(
        run.stderr.contains("restart refused, nothing changed")
            && run.stderr.contains("`r1` would restart on redis 6.2.14"),
        "{run}\n{}",
        context(&c)
    );
    same_pids(&c, "by the refused restart");

    // The flake: `r1` too busy to answer one probe made the daemon forget that it runs
    // 7.0, and `restart` put it on 6.2 (which cannot read its dump). It remembers now.
    let stalled = Stalled::until_unanswered(&c, "r1");
    let s = servers(&c);
    assert_eq!(s["r1"], r70.to_string(), "{s:?}\n{}", context(&c));
    let run = c.cli(&["restart", "r1"]);
    expect_code(&c, &run, 1);
    assert!(
        run.stderr.contains("`r1` would restart on redis 6.2.14"),
        "{run}\n{}",
        context(&c)
    );
    drop(stalled);
    wait_healthy(&c);
    same_pids(&c, "while it did not answer");
}

#[test]
fn a_half_upgraded_group_shows_mixed_servers() {
    // The daemon restarted on a file whose `redis_server` changed meanwhile: it adopts the
    // running 7.0 instances as they are; restarting one replica puts it on Valkey.
    let mut c = cluster::one_host().build();
    c.redis_server = matrix("redis-7.0");
    c.write_config();
    c.start_daemon("a");
    wait_healthy(&c);
    let old = c.take_daemon("a").expect("daemon");
    drop(old); // killed; the instances keep running
    c.redis_server = matrix("valkey-8.1");
    c.write_config();
    c.start_daemon("a");
    wait_healthy(&c);
    let r70 = redisrepd_io::server_detect::detect(&matrix("redis-7.0")).expect("7.0");
    let v81 = redisrepd_io::server_detect::detect(&matrix("valkey-8.1")).expect("valkey");
    let s = servers(&c);
    assert!(
        s.values().all(|v| *v == r70.to_string()),
        "every adopted instance on {r70}: {s:?}\n{}",
        context(&c)
    );
    let run = c.cli(&["status"]);
    assert!(!run.stdout.contains("mixed servers"), "{run}");

    expect_code(&c, &c.cli(&["restart", "r1"]), 0);
    wait_healthy(&c);
    let s = servers(&c);
    assert!(
        s["r1"] == v81.to_string() && s["master"] == r70.to_string(),
        "`r1` on {v81}, `master` on {r70}: {s:?}\n{}",
        context(&c)
    );
    let run = c.cli(&["status", "--wide"]);
    assert!(
        run.stdout.contains("mixed servers in the group")
            && run.stdout.contains(&format!("{v81} (r1)")),
        "{run}\n{}",
        context(&c)
    );
    let json = c.status();
    assert!(
        json["master"]["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("mixed")))),
        "`master`'s warnings: {}\n{}",
        json["master"],
        context(&c)
    );
}
