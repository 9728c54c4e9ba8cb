//! Many instances on one host: N instances in two shapes (groups of 3, each group with a
//! daemon of its own as `redisrepd@GROUP` runs them; and one group of a master and N-1
//! replicas), against the same redis-servers started at once by hand. Measures the cold
//! start until every replica is in sync, `status` latency, the daemons' CPU, RSS and
//! threads at idle and during `restart --all`, the INFO calls they send each master, and
//! the control socket under concurrent clients. See bench/README.md.
//!
//! `cargo bench --bench scale -- [--sizes 10,30,60] [--shapes groups,one] [--idle 30]
//! [--keys N] [--server PATH] [--max-concurrent-syncs VALUE] [--health-interval D]
//! [--redisrepd PATH,PATH]`

mod common;
mod naive;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

const PASSWORD: &str = "bench-password";
/// This build's redisrepd: the default of `--redisrepd`.
const BIN: &str = env!("CARGO_BIN_EXE_redisrepd");
const T: Duration = Duration::from_secs(5);
/// Linux's USER_HZ: the unit of utime and stime in /proc/<pid>/stat.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Shape {
    /// Groups of 3 (a master and two replicas; a remainder joins the last group), one
    /// daemon per group with its own run_dir and data_dir.
    Groups,
    /// One group: a master and N-1 replicas, one daemon.
    One,
}

/// N instances on one host, as groups of 3 and as one group, against by hand.
#[derive(Parser)]
struct Opts {
    /// Instance counts (the curve).
    #[arg(long, value_delimiter = ',', default_value = "10,30,60")]
    sizes: Vec<usize>,
    /// Shapes to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "groups,one")]
    shapes: Vec<Shape>,
    /// Seconds of the idle window (CPU, RSS, INFO calls).
    #[arg(long, default_value_t = 30)]
    idle: u64,
    /// `status` calls for the latency.
    #[arg(long, default_value_t = 100)]
    status_calls: usize,
    /// `status` clients at once on one daemon's control socket.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Keys (100 bytes each) in every master's dump.rdb at the cold start.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// The server (default: redis-server on PATH).
    #[arg(long, default_value = "redis-server")]
    server: String,
    /// `[supervise] health_interval`.
    #[arg(long, default_value = "1s")]
    health_interval: String,
    /// `[supervise] max_concurrent_syncs`, written into the TOML as given (a number bare,
    /// anything else as a TOML string, e.g. `auto`); absent: the default.
    #[arg(long)]
    max_concurrent_syncs: Option<String>,
    /// The redisrepd binaries to compare (default: this build's). Each size runs them
    /// back to back, so that every build meets the same load; a row says which.
    #[arg(long, value_delimiter = ',')]
    redisrepd: Vec<PathBuf>,
    /// Skip the naive start.
    #[arg(long)]
    skip_naive: bool,
    /// Skip `restart --all`.
    #[arg(long)]
    skip_restart: bool,
    #[command(flatten)]
    common: common::BenchArgs,
}

/// One group's files and addresses.
struct GroupFiles {
    config: PathBuf,
    master: SocketAddr,
    replicas: Vec<SocketAddr>,
}

/// The groups of one run, in their own directory.
struct Layout {
    dir: PathBuf,
    groups: Vec<GroupFiles>,
}

/// Group sizes for N instances in `shape`.
fn group_sizes(shape: Shape, n: usize) -> Vec<usize> {
    match shape {
        Shape::One => vec![n],
        Shape::Groups => {
            let mut sizes = vec![3; (n / 3).max(1)];
            let rest = n.saturating_sub(3 * sizes.len());
            if let Some(last) = sizes.last_mut() {
                *last += rest;
            }
            sizes
        }
    }
}

/// A port free on `ip` a moment ago.
fn free_port_on(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn mkdir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).expect("dir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o750)).expect("chmod");
}

impl Layout {
    fn create(dir: PathBuf, shape: Shape, n: usize, o: &Opts, seed: Option<&Path>) -> Layout {
        use std::os::unix::fs::PermissionsExt;
        mkdir(&dir);
        let mut next = 0usize;
        let mut groups = Vec::new();
        for (k, size) in group_sizes(shape, n).into_iter().enumerate() {
            let gdir = dir.join(format!("g{k}"));
            mkdir(&gdir);
            let pw = gdir.join("password");
            std::fs::write(&pw, format!("{PASSWORD}\n")).expect("password");
            std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let syncs = o.max_concurrent_syncs.as_ref().map_or(String::new(), |v| {
                if v.parse::<u64>().is_ok() {
                    format!("max_concurrent_syncs = {v}\n")
                } else {
                    format!("max_concurrent_syncs = \"{v}\"\n")
                }
            });
            let mut toml = format!(
                "[cluster]\nname = \"scale-g{k}\"\npassword_file = \"password\"\n\
                 run_dir = \"run\"\ndata_dir = \"data\"\nredis_server = \"{}\"\n\
                 [supervise]\nhealth_interval = \"{}\"\nsync_timeout = \"10m\"\n{syncs}\
                 [redis]\nsave = [\"3600 1\"]\nappendonly = \"no\"\n",
                o.server, o.health_interval
            );
            let mut addrs = Vec::new();
            for i in 0..size {
                // Each instance its own loopback address, as each would have its own host.
                let ip = IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    0,
                    u8::try_from(10 + next).expect("at most 245 instances"),
                ));
                next += 1;
                let addr = SocketAddr::new(ip, free_port_on(ip));
                let (name, of) = if i == 0 {
                    ("m".to_owned(), String::new())
                } else {
                    (format!("r{i}"), "replica_of = \"m\"\n".to_owned())
                };
                toml.push_str(&format!(
                    "[[instance]]\nname = \"{name}\"\nhost = \"h\"\nbind = \"{}\"\nport = {}\n{of}",
                    addr.ip(),
                    addr.port()
                ));
                addrs.push(addr);
            }
            let config = gdir.join("scale.toml");
            std::fs::write(&config, toml).expect("toml");
            mkdir(&gdir.join("data"));
            if let Some(seed) = seed {
                mkdir(&gdir.join("data/m"));
                std::fs::copy(seed, gdir.join("data/m/dump.rdb")).expect("seed rdb");
            }
            groups.push(GroupFiles {
                config,
                master: addrs[0],
                replicas: addrs[1..].to_vec(),
            });
        }
        Layout { dir, groups }
    }
}

/// A dump.rdb of `keys` keys of 100 bytes, made by a throw-away server.
fn seed_rdb(dir: &Path, o: &Opts) -> Option<PathBuf> {
    if o.keys == 0 {
        return None;
    }
    let sdir = dir.join("seed");
    mkdir(&sdir);
    let port = common::free_port();
    let mut child = Command::new(&o.server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--requirepass", PASSWORD, "--dir"])
        .arg(&sdir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("seed redis-server");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let stop = AtomicBool::new(false);
    let mut c = common::wait_for(Duration::from_secs(30), &stop, || {
        common::connect(addr, PASSWORD, T, T).map_err(|e| e.to_string())
    })
    .expect("seed server up");
    let v = "x".repeat(100);
    let mut i = 0;
    while i < o.keys {
        let mut mset = redis::cmd("MSET");
        for _ in 0..1000 {
            if i >= o.keys {
                break;
            }
            mset.arg(format!("key:{i}")).arg(&v);
            i += 1;
        }
        mset.query::<()>(&mut c).expect("MSET");
    }
    redis::cmd("SAVE").query::<()>(&mut c).expect("SAVE");
    let _ = child.kill();
    let _ = child.wait();
    Some(sdir.join("dump.rdb"))
}

/// True once every master lists all its replicas `online`.
fn all_in_sync(layout: &Layout) -> Result<(), String> {
    for g in &layout.groups {
        let info = common::info(g.master, PASSWORD, "replication", T, T)?;
        if (common::int(&info, "connected_slaves") as usize) < g.replicas.len() {
            return Err(format!("{}: replicas missing", g.master));
        }
        let online = info.replicas.iter().filter(|r| r.is_online()).count();
        if online < g.replicas.len() {
            return Err(format!(
                "{}: {online} of {} replicas online",
                g.master,
                g.replicas.len()
            ));
        }
    }
    Ok(())
}

// ----- the naive way ------------------------------------------------------------------

/// The same redis-servers with the same generated configs (minus redisrepd's pacing),
/// all started at once; seconds until every master lists all its replicas online.
fn naive_start(layout: &Layout, o: &Opts) -> Result<f64, String> {
    let mut confs = Vec::new();
    for g in &layout.groups {
        let group = redisrepd_io::config_file::load(&g.config)
            .map_err(|e| e.to_string())?
            .group;
        for inst in group.start_order_all() {
            std::fs::create_dir_all(group.data_path(inst)).map_err(|e| e.to_string())?;
            let path = g.config.with_file_name(format!("{}.conf", inst.name));
            std::fs::write(&path, naive::conf(&group, inst)).map_err(|e| e.to_string())?;
            confs.push(path);
        }
    }
    let mut procs = Procs(Vec::new());
    let started = Instant::now();
    for conf in &confs {
        let child = Command::new(&o.server)
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", o.server))?;
        procs.0.push(child);
    }
    let stop = AtomicBool::new(false);
    common::wait_for(Duration::from_secs(600), &stop, || all_in_sync(layout))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Processes killed when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

// ----- redisrepd -----------------------------------------------------------------------

/// The daemons of a layout: on drop, SIGTERM (they stop their instances, saving), then
/// SIGKILL for any left, and any instance still running from the pid files.
struct Daemons {
    children: Vec<Child>,
    run_dirs: Vec<PathBuf>,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for c in &self.children {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(120);
        for c in &mut self.children {
            while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for run in &self.run_dirs {
            let Ok(entries) = std::fs::read_dir(run) else {
                continue;
            };
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "pid")
                    && let Some(rec) = redisrepd_io::process::read_pid_file(&e.path())
                    && redisrepd_io::process::start_time(rec.pid) == Some(rec.start_time)
                {
                    let _ = kill(Pid::from_raw(rec.pid as i32), Signal::SIGKILL);
                }
            }
        }
    }
}

/// Each instance's `process_id` (INFO server), masters first, `None` when it did not answer.
fn server_pids(layout: &Layout) -> Vec<Option<i64>> {
    layout
        .groups
        .iter()
        .flat_map(|g| std::iter::once(g.master).chain(g.replicas.iter().copied()))
        .map(|addr| {
            common::info(addr, PASSWORD, "server", T, T)
                .ok()
                .and_then(|i| i.int("process_id"))
        })
        .collect()
}

/// CPU ticks (user + system) of `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// (RSS in MB, threads) of `pid`.
fn rss_threads(pid: u32) -> (f64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") as f64 / 1024.0, field("Threads:"))
}

/// Peak RSS and threads of each pid, sampled every `every` until `done` returns true.
#[derive(Default, Clone)]
struct Peaks {
    rss_mb: f64,
    threads: u64,
}

fn sample_peaks(pids: &[u32], peaks: &mut [Peaks]) {
    for (pid, p) in pids.iter().zip(peaks.iter_mut()) {
        let (rss, th) = rss_threads(*pid);
        p.rss_mb = p.rss_mb.max(rss);
        p.threads = p.threads.max(th);
    }
}

/// `redisrepd --config C <args>`: wall time and whether it exited 0.
fn verb(bin: &Path, config: &Path, args: &[&str]) -> (Duration, bool, String) {
    let t = Instant::now();
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output();
    let elapsed = t.elapsed();
    match out {
        Ok(out) => (
            elapsed,
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ),
        Err(e) => (elapsed, false, e.to_string()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (p50, max) in ms.
fn p50_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let p50 = v.get(v.len() / 2).map_or(0.0, |d| ms(*d));
    (p50, v.last().map_or(0.0, |d| ms(*d)))
}

/// `INFO commandstats` `calls` of `cmdstat_info` on `addr`.
fn info_calls(addr: SocketAddr) -> i64 {
    let Ok(i) = common::info(addr, PASSWORD, "commandstats", T, T) else {
        return 0;
    };
    i.get("cmdstat_info")
        .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One row of the table.
#[derive(Default)]
struct Row {
    shape: String,
    /// The redisrepd binary's file name.
    build: String,
    n: usize,
    daemons: usize,
    naive_s: Option<f64>,
    daemon_s: f64,
    status_zero_s: f64,
    status_p50: f64,
    status_max: f64,
    status_failed: usize,
    conc_p50: f64,
    conc_max: f64,
    conc_ok: usize,
    idle_cpu_max: f64,
    idle_cpu_mean: f64,
    idle_rss_max: f64,
    idle_threads_max: u64,
    info_per_s_mean: f64,
    info_per_s_max: f64,
    restart_s: Option<f64>,
    restart_ok: bool,
    restart_cpu_max: f64,
    restart_rss_max: f64,
    restart_threads_max: u64,
}

fn run_daemons(layout: &Layout, o: &Opts, bin: &Path, row: &mut Row) -> Result<(), String> {
    let started = Instant::now();
    let mut daemons = Daemons {
        children: Vec::new(),
        run_dirs: Vec::new(),
    };
    for g in &layout.groups {
        let gdir = g.config.parent().expect("group dir");
        let log = std::fs::File::create(gdir.join("daemon.log")).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&g.config)
            .args(["daemon", "--host", "h"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| e.to_string())?;
        daemons.children.push(child);
        daemons.run_dirs.push(gdir.join("run"));
    }
    row.daemons = daemons.children.len();
    let stop = AtomicBool::new(false);
    common::wait_for(Duration::from_secs(600), &stop, || all_in_sync(layout))?;
    row.daemon_s = started.elapsed().as_secs_f64();
    eprintln!("  redisrepd: all in sync after {:.1}s", row.daemon_s);
    // The daemons' own verdict: `status` exits 0 (every instance running, in sync).
    for g in &layout.groups {
        common::wait_for(Duration::from_secs(120), &stop, || {
            let (_, ok, err) = verb(bin, &g.config, &["status"]);
            ok.then_some(()).ok_or(err)
        })?;
    }
    row.status_zero_s = started.elapsed().as_secs_f64();
    let pids: Vec<u32> = daemons.children.iter().map(|c| c.id()).collect();

    // Idle: CPU, RSS, threads of each daemon, INFO calls on each master.
    std::thread::sleep(Duration::from_secs(2));
    let cpu0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let calls0: Vec<i64> = layout.groups.iter().map(|g| info_calls(g.master)).collect();
    let t0 = Instant::now();
    let mut peaks = vec![Peaks::default(); pids.len()];
    while t0.elapsed() < Duration::from_secs(o.idle) {
        sample_peaks(&pids, &mut peaks);
        std::thread::sleep(Duration::from_millis(500));
    }
    let idle = t0.elapsed().as_secs_f64();
    let calls1: Vec<i64> = layout.groups.iter().map(|g| info_calls(g.master)).collect();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| (cpu_ticks(*p) - c0) as f64 / TICKS_PER_SEC / idle * 100.0)
        .collect();
    row.idle_cpu_max = cpu.iter().copied().fold(0.0, f64::max);
    row.idle_cpu_mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    row.idle_rss_max = peaks.iter().map(|p| p.rss_mb).fold(0.0, f64::max);
    row.idle_threads_max = peaks.iter().map(|p| p.threads).max().unwrap_or(0);
    // Less the bench's own first `INFO commandstats` (counted once it returned).
    let rates: Vec<f64> = calls0
        .iter()
        .zip(&calls1)
        .map(|(a, b)| (b - a - 1) as f64 / idle)
        .collect();
    row.info_per_s_mean = rates.iter().sum::<f64>() / rates.len() as f64;
    row.info_per_s_max = rates.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "  idle {idle:.0}s: CPU max {:.2}% mean {:.2}%, RSS max {:.1} MB, threads max {}, INFO/s per master {:.2}",
        row.idle_cpu_max,
        row.idle_cpu_mean,
        row.idle_rss_max,
        row.idle_threads_max,
        row.info_per_s_mean
    );

    // `status` latency, round robin over the groups.
    let mut lat = Vec::new();
    for i in 0..o.status_calls {
        let g = &layout.groups[i % layout.groups.len()];
        let (d, ok, err) = verb(bin, &g.config, &["status"]);
        if !ok {
            row.status_failed += 1;
            eprintln!("  status failed: {err}");
        }
        lat.push(d);
    }
    (row.status_p50, row.status_max) = p50_max(lat);

    // The first daemon's control socket under concurrent clients.
    let barrier = Arc::new(Barrier::new(o.clients));
    let config = layout.groups[0].config.clone();
    let handles: Vec<_> = (0..o.clients)
        .map(|_| {
            let (barrier, config, bin) = (barrier.clone(), config.clone(), bin.to_owned());
            std::thread::spawn(move || {
                barrier.wait();
                verb(&bin, &config, &["status"])
            })
        })
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        if let Ok((d, ok, _)) = h.join() {
            row.conc_ok += usize::from(ok);
            lat.push(d);
        }
    }
    (row.conc_p50, row.conc_max) = p50_max(lat);
    eprintln!(
        "  status p50 {:.0} ms max {:.0} ms ({} failed); {} at once: p50 {:.0} max {:.0} ms, {} ok",
        row.status_p50,
        row.status_max,
        row.status_failed,
        o.clients,
        row.conc_p50,
        row.conc_max,
        row.conc_ok
    );

    // A rolling `restart --all` of every group at once.
    if !o.skip_restart {
        let before = server_pids(layout);
        let cpu0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
        let t0 = Instant::now();
        let handles: Vec<_> = layout
            .groups
            .iter()
            .map(|g| {
                let (config, bin) = (g.config.clone(), bin.to_owned());
                std::thread::spawn(move || verb(&bin, &config, &["restart", "--all"]))
            })
            .collect();
        let mut peaks = vec![Peaks::default(); pids.len()];
        while !handles.iter().all(|h| h.is_finished()) {
            sample_peaks(&pids, &mut peaks);
            std::thread::sleep(Duration::from_millis(200));
        }
        row.restart_ok = true;
        for h in handles {
            match h.join() {
                Ok((_, true, _)) => {}
                Ok((_, false, err)) => {
                    row.restart_ok = false;
                    eprintln!("  restart --all failed: {err}");
                }
                Err(_) => row.restart_ok = false,
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        row.restart_s = Some(secs);
        // Every instance runs as a new process (or the restart did not do its job).
        let after = server_pids(layout);
        let renewed = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b && b.is_some())
            .count();
        if renewed != before.len() {
            row.restart_ok = false;
            eprintln!(
                "  restart --all: only {renewed} of {} instances restarted",
                before.len()
            );
        }
        row.restart_cpu_max = pids
            .iter()
            .zip(&cpu0)
            .map(|(p, c0)| (cpu_ticks(*p) - c0) as f64 / TICKS_PER_SEC / secs * 100.0)
            .fold(0.0, f64::max);
        row.restart_rss_max = peaks.iter().map(|p| p.rss_mb).fold(0.0, f64::max);
        row.restart_threads_max = peaks.iter().map(|p| p.threads).max().unwrap_or(0);
        eprintln!(
            "  restart --all: {secs:.1}s (ok: {}), CPU max {:.1}%, RSS max {:.1} MB, threads max {}",
            row.restart_ok, row.restart_cpu_max, row.restart_rss_max, row.restart_threads_max
        );
    }
    drop(daemons);
    Ok(())
}

fn main() {
    let o = Opts::parse();
    let base = common::fresh_dir("scale");
    let seed = seed_rdb(&base, &o);
    let load = |when: &str| {
        let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        eprintln!("load average {when}: {}", l.trim());
        l.split_whitespace().next().unwrap_or("?").to_owned()
    };
    let load_start = load("at the start");
    let bins = if o.redisrepd.is_empty() {
        vec![PathBuf::from(BIN)]
    } else {
        o.redisrepd.clone()
    };
    let mut rows = Vec::new();
    let mut failed = false;
    for &shape in &o.shapes {
        for &n in &o.sizes {
            let name = format!("{shape:?}").to_lowercase();
            eprintln!("{name}, N = {n}:");
            let mut naive_s = None;
            if !o.skip_naive {
                let layout = Layout::create(
                    base.join(format!("naive-{name}-{n}")),
                    shape,
                    n,
                    &o,
                    seed.as_deref(),
                );
                match naive_start(&layout, &o) {
                    Ok(s) => {
                        eprintln!("  naive: all in sync after {s:.1}s");
                        naive_s = Some(s);
                    }
                    Err(e) => eprintln!("  naive: {e}"),
                }
                let _ = std::fs::remove_dir_all(&layout.dir);
            }
            for (k, bin) in bins.iter().enumerate() {
                let build = bin
                    .file_name()
                    .map_or_else(|| bin.display().to_string(), |f| f.to_string_lossy().into());
                if bins.len() > 1 {
                    eprintln!(" {build}:");
                }
                let mut row = Row {
                    shape: name.clone(),
                    build,
                    n,
                    naive_s,
                    ..Row::default()
                };
                let layout = Layout::create(
                    base.join(format!("daemon-{name}-{n}-{k}")),
                    shape,
                    n,
                    &o,
                    seed.as_deref(),
                );
                if let Err(e) = run_daemons(&layout, &o, bin, &mut row) {
                    eprintln!("  redisrepd: {e} (logs in {})", layout.dir.display());
                    failed = true;
                } else if !o.common.keep {
                    let _ = std::fs::remove_dir_all(&layout.dir);
                }
                rows.push(row);
            }
        }
    }
    let load_end = load("at the end");
    println!(
        "server {}, health_interval {}, max_concurrent_syncs {}, {} keys per master, idle window {} s, load {load_start} -> {load_end}",
        o.server,
        o.health_interval,
        o.max_concurrent_syncs.as_deref().unwrap_or("(default)"),
        o.keys,
        o.idle
    );
    println!(
        "| shape | build | N | daemons | cold start: by hand s | redisrepd s | ratio | status 0 s | status p50/max ms | {} at once p50/max ms, ok | idle CPU % max (mean) | RSS MB max | threads max | INFO/s per master | restart --all s | restart CPU % max | restart RSS MB | restart threads |",
        o.clients
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let naive = r.naive_s.map_or("-".into(), |s| format!("{s:.1}"));
        let ratio = r
            .naive_s
            .map_or("-".into(), |s| format!("{:.1}x", r.daemon_s / s));
        let restart = r.restart_s.map_or("-".into(), |s| {
            format!("{s:.1}{}", if r.restart_ok { "" } else { " (failed)" })
        });
        println!(
            "| {} | {} | {} | {} | {naive} | {:.1} | {ratio} | {:.1} | {:.0} / {:.0}{} | {:.0} / {:.0}, {}/{} | {:.2} ({:.2}) | {:.1} | {} | {:.2} | {restart} | {:.1} | {:.1} | {} |",
            r.shape,
            r.build,
            r.n,
            r.daemons,
            r.daemon_s,
            r.status_zero_s,
            r.status_p50,
            r.status_max,
            if r.status_failed > 0 {
                format!(" ({} failed)", r.status_failed)
            } else {
                String::new()
            },
            r.conc_p50,
            r.conc_max,
            r.conc_ok,
            o.clients,
            r.idle_cpu_max,
            r.idle_cpu_mean,
            r.idle_rss_max,
            r.idle_threads_max,
            r.info_per_s_mean,
            r.restart_cpu_max,
            r.restart_rss_max,
            r.restart_threads_max,
        );
    }
    if !o.common.keep && !failed {
        let _ = std::fs::remove_dir_all(&base);
    }
}
