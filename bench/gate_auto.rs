//! The cost-based sync gate (`max_concurrent_syncs = "auto"`) against fixed limits 1 and
//! N (the replica count), in the same run: N replicas lose their data at once and need
//! full syncs of a master holding ~200 MB under a steady write load. See bench/README.md.
//!
//! `cargo bench --bench gate_auto -- [--keys N] [--replicas N] [--modes auto,1,8]
//! [--server PATH] [--redis 'directive = "value"']...`

mod common;

use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, int, wait_some as wait};
use redisrepd_core::info::Info;

const PASSWORD: &str = "bench-password";
/// How the bench reaches its instances.
const REDIS: common::Redis = common::Redis {
    password: PASSWORD,
    info_within: Duration::from_secs(1),
    io: IO_TIMEOUT,
};
const BIN: &str = env!("CARGO_BIN_EXE_redisrepd");
/// Room for slow replies: a master forking a large data set answers late.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

struct Opts {
    keys: u64,
    replicas: usize,
    modes: Vec<String>,
    server: String,
    /// More `[redis]` lines (`--redis 'key = "value"'`, repeatable).
    redis: Vec<String>,
}

/// The command line (`cargo bench --bench gate_auto -- --help`).
#[derive(Parser)]
#[command(
    about = "The sync gate's auto mode against fixed limits: replicas resyncing after a master restart"
)]
struct Args {
    /// Keys in the group.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Replicas of the master.
    #[arg(long, default_value_t = 8)]
    replicas: usize,
    /// Gate modes to run, comma-separated (default: auto,1,<replicas>).
    #[arg(long, value_delimiter = ',')]
    modes: Vec<String>,
    /// The server the instances run.
    #[arg(long, default_value = "redis-server")]
    server: String,
    /// More `[redis]` lines (`--redis 'key = "value"'`, repeatable).
    #[arg(long)]
    redis: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn opts() -> Opts {
    let a = Args::parse();
    let modes = if a.modes.is_empty() {
        vec!["auto".into(), "1".into(), a.replicas.to_string()]
    } else {
        a.modes
    };
    Opts {
        keys: a.keys,
        replicas: a.replicas,
        modes,
        server: a.server,
        redis: a.redis,
    }
}

/// `MemAvailable` of this host, in bytes.
fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// The major version `server --version` reports (`Redis server v=6.2.14 ...`; Valkey
/// says `v=8.1.1`); 0 when it cannot be run.
fn server_major(server: &str) -> u32 {
    Command::new(server)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let v = text.split("v=").nth(1)?;
            v.split('.').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// `Pss` of a process from `/proc/<pid>/smaps_rollup`, in bytes (0 when gone).
fn pss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("Pss:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// The master's memory with its fork's: the sum of their `Pss` (pages they still share
/// are split between them, each copy-on-write page counts once), so it is what the
/// master costs the host, copy-on-write included, which its RSS alone does not show.
fn pss_with_forks(pid: u32) -> u64 {
    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default();
    pss(pid) + children.into_iter().map(pss).sum::<u64>()
}

/// One group under redisrepd: a master and its replicas on one host, so the gate reads
/// this host's memory.
struct Group {
    dir: PathBuf,
    toml: PathBuf,
    master: SocketAddr,
    replicas: Vec<SocketAddr>,
    daemon: Option<Child>,
}

impl Group {
    fn create(mode: &str, o: &Opts) -> Group {
        let local = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let tag = format!("gate-{}", mode.replace('"', ""));
        let mut g = Group {
            dir: common::fresh_dir(&tag),
            toml: PathBuf::new(),
            master: local(),
            replicas: (0..o.replicas).map(|_| local()).collect(),
            daemon: None,
        };
        let syncs = if mode == "auto" {
            "\"auto\"".to_owned()
        } else {
            mode.to_owned()
        };
        let mut t = format!(
            "[cluster]\nname = \"bench\"\npassword = \"{PASSWORD}\"\nrun_dir = \"run\"\n\
             data_dir = \"data\"\nlog_dir = \"log\"\nredis_server = \"{}\"\n\n\
             [supervise]\nmax_concurrent_syncs = {syncs}\nhealth_interval = \"100ms\"\n\
             start_timeout = \"2m\"\nshutdown_timeout = \"2m\"\nsync_timeout = \"10m\"\n\
             restart_delay = \"200ms\"\n\n\
             [redis]\nsave = [\"3600 1\"]\nappendonly = \"no\"\n{}{}\n\n",
            o.server,
            // Redis 6.2 allows DEBUG without it and refuses the directive.
            if server_major(&o.server) >= 7 {
                "enable-debug-command = \"local\"\n"
            } else {
                ""
            },
            o.redis.join("\n")
        );
        t.push_str(&format!(
            "[[instance]]\nname = \"master\"\nhost = \"m\"\nbind = \"127.0.0.1\"\nport = {}\n\n",
            g.master.port()
        ));
        for (n, r) in g.replicas.iter().enumerate() {
            t.push_str(&format!(
                "[[instance]]\nname = \"r{}\"\nhost = \"m\"\nbind = \"127.0.0.1\"\nport = {}\n\
                 replica_of = \"master\"\n\n",
                n + 1,
                r.port()
            ));
        }
        g.toml = g.dir.join("group.toml");
        std::fs::write(&g.toml, t).expect("toml");
        g
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("daemon.log")).expect("log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.toml)
            .args(["daemon", "--host", "m"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redisrepd daemon");
        self.daemon = Some(child);
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("run").join(format!("{name}.pid")))
            .ok()?
            .lines()
            .next()?
            .parse()
            .ok()
    }

    /// Every replica listed online by the master, linked and done loading.
    fn all_online(&self) -> bool {
        let n = self.replicas.len();
        REDIS
            .info(self.master, "replication")
            .ok()
            .is_some_and(|i| i.replicas.iter().filter(|r| r.is_online()).count() == n)
            && self.replicas.iter().all(|r| {
                REDIS.info(*r, "replication").ok().is_some_and(|i| {
                    i.master_link_up() == Some(true) && !i.sync_in_progress() && !i.loading()
                })
            })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = d.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one mode measured.
struct Row {
    mode: String,
    seconds: f64,
    full_syncs: i64,
    forks: i64,
    peak_syncing: u64,
    master_rss_peak_mb: u64,
    master_pss_peak_mb: u64,
    replica_buffers_peak_mb: u64,
    avail_before_mb: u64,
    avail_lowest_mb: u64,
    avail_after_mb: u64,
    dropped: String,
    writes: u64,
    gate_lines: Vec<String>,
}

fn mb(bytes: u64) -> u64 {
    bytes >> 20
}

/// Lines of `path` that contain `needle`.
fn count_in(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

fn run_mode(mode: &str, o: &Opts) -> Row {
    let mut g = Group::create(mode, o);
    g.start();
    wait("the group in sync", Duration::from_secs(120), || {
        g.all_online().then_some(())
    });
    {
        let mut c = REDIS
            .connect(g.master, Duration::from_secs(1))
            .expect("master");
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(o.keys)
            .arg("key")
            .arg(150)
            .query(&mut c)
            .expect("DEBUG POPULATE");
    }
    let master_log = g.dir.join("log").join("master.log");
    let before = REDIS.info(g.master, "all").expect("master INFO");
    let dropped_log_before = count_in(&master_log, "overcoming of output buffer limits");
    let daemon_log_len = std::fs::metadata(g.dir.join("daemon.log")).map_or(0, |m| m.len());

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    // A steady write load: 500-byte values, about 500 a second.
    let writer = {
        let (stop, writes, master) = (stop.clone(), writes.clone(), g.master);
        std::thread::spawn(move || {
            let value = "v".repeat(500);
            let mut con = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
                if con.is_none() {
                    con = REDIS.connect(master, Duration::from_secs(1)).ok();
                }
                let Some(c) = con.as_mut() else { continue };
                i += 1;
                let r: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("w:{}", i % 50_000))
                    .arg(&value)
                    .query(c);
                match r {
                    Ok(()) => {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => con = None,
                }
            }
        })
    };
    let avail_before = mem_available();
    let master_pid = g.pid("master").expect("master pid");
    let pss_peak = Arc::new(AtomicU64::new(0));
    let (rss_peak, buf_peak, avail_low, syncing_peak) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(avail_before)),
        Arc::new(AtomicU64::new(0)),
    );
    let poller = {
        let stop = stop.clone();
        let pss = pss_peak.clone();
        let (rss, buf, low, syncing) = (
            rss_peak.clone(),
            buf_peak.clone(),
            avail_low.clone(),
            syncing_peak.clone(),
        );
        let master = g.master;
        std::thread::spawn(move || {
            let mut con = None;
            while !stop.load(Ordering::Relaxed) {
                low.fetch_min(mem_available(), Ordering::Relaxed);
                pss.fetch_max(pss_with_forks(master_pid), Ordering::Relaxed);
                if con.is_none() {
                    con = REDIS.connect(master, Duration::from_secs(1)).ok();
                }
                if let Some(c) = con.as_mut() {
                    match redis::cmd("INFO").query::<String>(c) {
                        Ok(text) => {
                            let i = Info::parse(&text);
                            rss.fetch_max(int(&i, "used_memory_rss") as u64, Ordering::Relaxed);
                            buf.fetch_max(int(&i, "mem_clients_slaves") as u64, Ordering::Relaxed);
                            let n = i.syncing_replicas(|_| false) as u64;
                            syncing.fetch_max(n, Ordering::Relaxed);
                        }
                        Err(_) => con = None,
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Every replica crashes and loses its files: each needs a full sync.
    let start = Instant::now();
    for n in 1..=g.replicas.len() {
        let name = format!("r{n}");
        let _ = std::fs::remove_dir_all(g.dir.join("data").join(&name));
        if let Some(pid) = g.pid(&name) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    // The master sees them go before they come back: wait for that, then for all online.
    wait("the replicas gone", Duration::from_secs(30), || {
        REDIS
            .info(g.master, "replication")
            .ok()
            .is_some_and(|i| i.replicas.iter().filter(|r| r.is_online()).count() < o.replicas)
            .then_some(())
    });
    wait("every replica online", Duration::from_secs(600), || {
        g.all_online().then_some(())
    });
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let _ = poller.join();
    let avail_after = mem_available();
    let after = REDIS.info(g.master, "all").expect("master INFO");
    let delta = |k: &str| int(&after, k) - int(&before, k);
    let dropped_log =
        count_in(&master_log, "overcoming of output buffer limits") - dropped_log_before;
    let dropped = match after.int("client_output_buffer_limit_disconnections") {
        Some(_) => format!(
            "{} (stat) / {dropped_log} (log)",
            delta("client_output_buffer_limit_disconnections")
        ),
        None => format!("{dropped_log} (log)"),
    };
    let daemon_log = std::fs::read_to_string(g.dir.join("daemon.log")).unwrap_or_default();
    let gate_lines = daemon_log
        .get(daemon_log_len as usize..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("granted a place") || l.contains("waiting in the sync gate"))
        .map(|l| l.split_once("Z ").map_or(l, |(_, rest)| rest).to_owned())
        .collect();
    Row {
        mode: mode.to_owned(),
        seconds,
        full_syncs: delta("sync_full"),
        forks: delta("total_forks"),
        peak_syncing: syncing_peak.load(Ordering::Relaxed),
        master_rss_peak_mb: mb(rss_peak.load(Ordering::Relaxed)),
        master_pss_peak_mb: mb(pss_peak.load(Ordering::Relaxed)),
        replica_buffers_peak_mb: mb(buf_peak.load(Ordering::Relaxed)),
        avail_before_mb: mb(avail_before),
        avail_lowest_mb: mb(avail_low.load(Ordering::Relaxed)),
        avail_after_mb: mb(avail_after),
        dropped,
        writes: writes.load(Ordering::Relaxed),
        gate_lines,
    }
}

fn main() {
    let o = opts();
    eprintln!(
        "bench: {} keys of 150 bytes, {} replicas, modes {:?}, server {}, [redis] {:?}",
        o.keys, o.replicas, o.modes, o.server, o.redis
    );
    let mut rows = Vec::new();
    for mode in &o.modes {
        eprintln!("bench: max_concurrent_syncs = {mode}");
        let row = run_mode(mode, &o);
        for l in row.gate_lines.iter().take(12) {
            println!("  [{mode}] {l}");
        }
        rows.push(row);
    }
    println!(
        "| max_concurrent_syncs | s until all online | full syncs | master forks | peak syncing | \
         master RSS peak MB | master + fork PSS peak MB | replica buffers peak MB | MemAvailable before / lowest / after MB | \
         lowest below after MB | dropped for output buffers | writes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {} |",
            r.mode,
            r.seconds,
            r.full_syncs,
            r.forks,
            r.peak_syncing,
            r.master_rss_peak_mb,
            r.master_pss_peak_mb,
            r.replica_buffers_peak_mb,
            r.avail_before_mb,
            r.avail_lowest_mb,
            r.avail_after_mb,
            r.avail_after_mb.saturating_sub(r.avail_lowest_mb),
            r.dropped,
            r.writes
        );
    }
    let secs = |m: &str| rows.iter().find(|r| r.mode == m).map(|r| r.seconds);
    if let Some(auto) = secs("auto") {
        for r in rows.iter().filter(|r| r.mode != "auto") {
            println!(
                "time until all online, auto / {}: {:.2}",
                r.mode,
                auto / r.seconds
            );
        }
    }
}
