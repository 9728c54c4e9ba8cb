//! What a backup costs the master: its PING latency while a scheduled `[backup]` is taken
//! on a replica (the replica forks) against a cron-style `BGSAVE` on the master and a copy
//! of its dump.rdb (the master forks), in the same run, on the same data. See
//! bench/README.md.
//!
//! `cargo bench --bench backup -- [--keys N] [--value BYTES] [--rounds N] [--server PATH]`

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

const PASSWORD: &str = "bench-password";
const BIN: &str = env!("CARGO_BIN_EXE_redisrepd");
const T: Duration = Duration::from_secs(5);

/// Master PING latency during a backup from a replica vs a BGSAVE on the master.
#[derive(Parser)]
struct Opts {
    /// Keys in the data set.
    #[arg(long, default_value_t = 1_500_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value: usize,
    /// Rounds; each has one window of each kind.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The server (default: redis-server on PATH).
    #[arg(long, default_value = "redis-server")]
    server: String,
    /// `cargo bench` passes `--bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The daemon, killed (and its instances with it) when the bench ends.
struct Daemon(Child, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn main() {
    let o = Opts::parse();
    let dir = common::fresh_dir("backup");
    let (mp, rp) = (common::free_port(), common::free_port());
    let master: SocketAddr = format!("127.0.0.1:{mp}").parse().unwrap();
    let replica: SocketAddr = format!("127.0.0.1:{rp}").parse().unwrap();
    let bk = dir.join("bk");
    std::fs::write(dir.join("password"), format!("{PASSWORD}\n")).unwrap();
    let toml = format!(
        "[cluster]\nname = \"bench\"\npassword_file = \"password\"\nrun_dir = \"run\"\n\
         data_dir = \"data\"\nredis_server = \"{}\"\n\
         [supervise]\nsync_timeout = \"10m\"\nshutdown_timeout = \"2m\"\n\
         [redis]\nsave = [\"86400 1000000000\"]\nappendonly = \"no\"\n\
         [[instance]]\nname = \"master\"\nhost = \"a\"\nbind = \"127.0.0.1\"\nport = {mp}\n\
         [[instance]]\nname = \"r1\"\nhost = \"a\"\nbind = \"127.0.0.1\"\nport = {rp}\n\
         replica_of = \"master\"\n\
         [backup]\ndir = \"{}\"\nevery = \"30s\"\nkeep = 2\n",
        o.server,
        bk.display()
    );
    let config = dir.join("bench.toml");
    std::fs::write(&config, toml).unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let child = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "daemon",
            "--host",
            "a",
        ])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("redisrepd daemon");
    let _daemon = Daemon(child, dir.clone());
    let stop = AtomicBool::new(false);
    let wait = Duration::from_secs(600);
    common::wait_for(wait, &stop, || {
        common::info(replica, PASSWORD, "replication", T, T).and_then(|i| {
            (i.get("master_link_status") == Some("up"))
                .then_some(())
                .ok_or_else(|| "replica not up".to_owned())
        })
    })
    .expect("the group to come up");
    load(master, o.keys, o.value);
    common::wait_for(wait, &stop, || {
        let m = common::info(master, PASSWORD, "replication", T, T)?;
        let r = common::info(replica, PASSWORD, "replication", T, T)?;
        let (mo, ro) = (
            common::int(&m, "master_repl_offset"),
            common::int(&r, "master_repl_offset"),
        );
        (mo == ro).then_some(()).ok_or(format!("{ro} of {mo}"))
    })
    .expect("the replica to catch up");
    let mem = common::info(master, PASSWORD, "memory", T, T).unwrap();
    println!(
        "{} keys x {} bytes loaded: used_memory {} MB",
        o.keys,
        o.value,
        common::int(&mem, "used_memory") / 1_000_000
    );

    let samples: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let pinging = Arc::new(AtomicBool::new(true));
    let pinger = {
        let (samples, pinging) = (samples.clone(), pinging.clone());
        std::thread::spawn(move || {
            let mut c = common::connect(master, PASSWORD, T, T).expect("ping connection");
            while pinging.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _: Result<String, _> = redis::cmd("PING").query(&mut c);
                if let Ok(mut s) = samples.lock() {
                    s.push((t, t.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut windows: Vec<(&str, Instant, Instant, i64)> = Vec::new();
    let mut fork_usec: Vec<i64> = Vec::new();
    let forks = || {
        common::int(
            &common::info(master, PASSWORD, "stats", T, T).unwrap(),
            "total_forks",
        )
    };
    for round in 1..=o.rounds {
        // (1) The next scheduled backup: from the replica's fork to the file in place.
        let before = backups(&bk);
        let f0 = forks();
        common::wait_for(wait, &stop, || {
            let i = common::info(replica, PASSWORD, "persistence", T, T)?;
            (common::int(&i, "rdb_bgsave_in_progress") == 1)
                .then_some(())
                .ok_or_else(|| "no save yet".to_owned())
        })
        .expect("a scheduled backup to start");
        let start = Instant::now();
        common::wait_for(wait, &stop, || {
            (backups(&bk) != before)
                .then_some(())
                .ok_or_else(|| "no new backup yet".to_owned())
        })
        .expect("the scheduled backup to end");
        windows.push((
            "scheduled backup on the replica",
            start,
            Instant::now(),
            forks() - f0,
        ));
        // (2) As long with nothing going on.
        let len = Instant::now() - start;
        let quiet = Instant::now();
        std::thread::sleep(len.max(Duration::from_secs(2)));
        windows.push(("nothing (baseline)", quiet, Instant::now(), 0));
        // (3) A cron job: BGSAVE on the master, then a copy of its dump.rdb.
        let f0 = forks();
        let start = Instant::now();
        let mut c = common::connect(master, PASSWORD, T, T).unwrap();
        let before_saves = common::int(
            &common::info(master, PASSWORD, "persistence", T, T).unwrap(),
            "rdb_last_save_time",
        );
        let _: String = redis::cmd("BGSAVE").query(&mut c).expect("BGSAVE");
        common::wait_for(wait, &stop, || {
            let i = common::info(master, PASSWORD, "persistence", T, T)?;
            (common::int(&i, "rdb_bgsave_in_progress") == 0
                && common::int(&i, "rdb_last_save_time") >= before_saves)
                .then_some(())
                .ok_or_else(|| "saving".to_owned())
        })
        .expect("the master's BGSAVE to end");
        let dump = dir.join("data/master/dump.rdb");
        std::fs::copy(&dump, dir.join(format!("cron-{round}.rdb"))).expect("copy dump.rdb");
        windows.push((
            "cron: BGSAVE on the master + cp",
            start,
            Instant::now(),
            forks() - f0,
        ));
        let stats = common::info(master, PASSWORD, "stats", T, T).unwrap();
        fork_usec.push(common::int(&stats, "latest_fork_usec"));
        eprintln!("round {round} done");
    }
    pinging.store(false, Ordering::Relaxed);
    let _ = pinger.join();
    let samples = samples.lock().unwrap().clone();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.trim());
    println!("the master's fork (latest_fork_usec) in the cron windows: {fork_usec:?} us");
    println!("| window | seconds | master forks | PINGs | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    let in_window = |from: Instant, to: Instant| -> Vec<Duration> {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, d)| *d)
            .collect()
    };
    // Each window, then every window of a kind together.
    let mut rows: Vec<(String, f64, i64, Vec<Duration>)> = windows
        .iter()
        .map(|(name, from, to, forks)| {
            (
                name.to_string(),
                (*to - *from).as_secs_f64(),
                *forks,
                in_window(*from, *to),
            )
        })
        .collect();
    for kind in [
        "scheduled backup on the replica",
        "nothing (baseline)",
        "cron: BGSAVE on the master + cp",
    ] {
        let of_kind: Vec<&(&str, Instant, Instant, i64)> =
            windows.iter().filter(|w| w.0 == kind).collect();
        rows.push((
            format!("**all: {kind}**"),
            of_kind.iter().map(|w| (w.2 - w.1).as_secs_f64()).sum(),
            of_kind.iter().map(|w| w.3).sum(),
            of_kind.iter().flat_map(|w| in_window(w.1, w.2)).collect(),
        ));
    }
    for (name, secs, forks, mut lat) in rows {
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "| {name} | {secs:.1} | {forks} | {} | {:.2} | {:.2} | {:.2} |",
            lat.len(),
            pct(0.5),
            pct(0.99),
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        );
    }
}

/// The bench's backups, by name.
fn backups(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| redisrepd_core::backup::is_backup_of("bench", n))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `keys` keys of `value` bytes, written with pipelined MSETs (they replicate, unlike
/// `DEBUG POPULATE`).
fn load(master: SocketAddr, keys: u64, value: usize) {
    let mut c = common::connect(master, PASSWORD, T, Duration::from_secs(60)).unwrap();
    let v = "x".repeat(value);
    let started = Instant::now();
    let mut i = 0;
    while i < keys {
        let mut pipe = redis::pipe();
        for _ in 0..200 {
            let mut mset = redis::cmd("MSET");
            for _ in 0..50 {
                if i >= keys {
                    break;
                }
                mset.arg(format!("key:{i}")).arg(&v);
                i += 1;
            }
            pipe.add_command(mset).ignore();
            if i >= keys {
                break;
            }
        }
        pipe.query::<()>(&mut c).expect("MSET");
    }
    eprintln!("loaded in {:.1}s", started.elapsed().as_secs_f64());
}
