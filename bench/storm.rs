//! The full-sync storm benchmark: the naive way (what init scripts do: every replica at
//! once) against redisrepd, in the same run, on the same machine. See bench/README.md.
//!
//! `cargo bench --bench storm -- [--keys N] [--aof|--rdb] [--replicas N] [--only a,b,c,d]`

mod common;

use clap::Parser;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, int, wait_some as wait};
use redisrepd_core::info::Info;

mod naive;
mod redislog;

const PASSWORD: &str = "bench-password";
/// How the bench reaches its instances.
const REDIS: common::Redis = common::Redis {
    password: PASSWORD,
    info_within: Duration::from_secs(1),
    io: IO_TIMEOUT,
};
const BIN: &str = env!("CARGO_BIN_EXE_redisrepd");

struct Opts {
    keys: u64,
    aof: bool,
    replicas: usize,
    only: Vec<char>,
}

/// The command line (`cargo bench --bench storm -- --help`).
#[derive(Parser)]
#[command(about = "A restart storm: every replica resyncing at once, naive against redisrepd")]
struct Args {
    /// Keys in the group.
    #[arg(long, default_value_t = 1_200_000)]
    keys: u64,
    /// Replicas of the master.
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// Only these episodes (comma-separated letters).
    #[arg(long, default_value = "a,b,c,d")]
    only: String,
    /// AOF + RDB (the default).
    #[arg(long, overrides_with = "rdb")]
    aof: bool,
    /// RDB only (the last of --aof and --rdb counts).
    #[arg(long, overrides_with = "aof")]
    rdb: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn opts() -> Opts {
    let a = Args::parse();
    Opts {
        keys: a.keys,
        aof: !a.rdb,
        replicas: a.replicas,
        only: a.only.split(',').filter_map(|s| s.chars().next()).collect(),
    }
}

/// One group's addresses and files.
struct Layout {
    dir: PathBuf,
    master: SocketAddr,
    replicas: Vec<SocketAddr>,
}

/// What an episode watches: the master and its replicas.
#[derive(Clone)]
struct Watched {
    master: SocketAddr,
    replicas: Vec<SocketAddr>,
}

impl Layout {
    /// A fresh temp dir with the group's TOML: the master and replicas on free ports.
    fn create(tag: &str, o: &Opts) -> (Layout, PathBuf) {
        let local = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let layout = Layout {
            master: local(),
            replicas: (0..o.replicas).map(|_| local()).collect(),
            dir: common::fresh_dir(&format!("bench-{tag}")),
        };
        let toml = layout.dir.join("group.toml");
        std::fs::write(&toml, toml_text(&layout, o)).expect("toml");
        (layout, toml)
    }

    fn watched(&self) -> Watched {
        Watched {
            master: self.master,
            replicas: self.replicas.clone(),
        }
    }
}

impl Watched {
    /// Every instance, the configured master first.
    fn all(&self) -> Vec<SocketAddr> {
        std::iter::once(self.master)
            .chain(self.replicas.iter().copied())
            .collect()
    }
}

/// A connection to whichever instance says it is master now, trying each in turn: a
/// client that follows the master, as one behind the generated HAProxy config does.
fn connect_master(all: &[SocketAddr]) -> Option<redis::Connection> {
    redisrepd_testkit::connect_master(all, |addr| REDIS.connect(addr, Duration::from_millis(200)))
}

fn toml_text(l: &Layout, o: &Opts) -> String {
    let mut t = format!(
        "[cluster]\nname = \"bench\"\npassword = \"{PASSWORD}\"\nrun_dir = \"run\"\ndata_dir = \"data\"\nlog_dir = \"log\"\n\n\
         [supervise]\nmax_concurrent_syncs = 1\nhealth_interval = \"100ms\"\nstart_timeout = \"2m\"\n\
         shutdown_timeout = \"2m\"\nsync_timeout = \"10m\"\nrestart_delay = \"200ms\"\n\n\
         [redis]\nsave = [\"3600 1\"]\nappendonly = \"{}\"\nenable-debug-command = \"local\"\n\n",
        if o.aof { "yes" } else { "no" }
    );
    t.push_str(&format!(
        "[[instance]]\nname = \"master\"\nhost = \"m\"\nbind = \"127.0.0.1\"\nport = {}\n\n",
        l.master.port()
    ));
    for (n, r) in l.replicas.iter().enumerate() {
        t.push_str(&format!(
            "[[instance]]\nname = \"r{}\"\nhost = \"r\"\nbind = \"127.0.0.1\"\nport = {}\nreplica_of = \"master\"\n\n",
            n + 1,
            r.port()
        ));
    }
    t
}

/// Room for slow replies: a master forking a large data set answers late.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Replicas the master lists as online.
fn online(master: SocketAddr) -> Option<usize> {
    let i = REDIS.info(master, "replication").ok()?;
    Some(i.replicas.iter().filter(|r| r.is_online()).count())
}

fn wait_all_online(l: &Watched) {
    let n = l.replicas.len();
    wait("every replica online", Duration::from_secs(900), || {
        (online(l.master)? == n
            && l.replicas.iter().all(|r| {
                REDIS
                    .info(*r, "replication")
                    .ok()
                    .is_some_and(|i| i.master_link_up() == Some(true) && !i.sync_in_progress())
                    && REDIS.info(*r, "persistence").ok().is_some_and(|i| {
                        // Settled: a replica writing its initial AOF cannot even shut down.
                        int(&i, "aof_rewrite_in_progress") == 0 && !i.loading()
                    })
            }))
        .then_some(())
    });
}

/// What one episode measured.
#[derive(Default, Clone)]
struct Metrics {
    full_syncs: i64,
    forks: i64,
    peak_away: usize,
    peak_full: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    writes_refused: u64,
    writes_ok: u64,
    /// The longest time between two acknowledged writes of the client that follows the
    /// master.
    longest_gap_ms: f64,
    /// Acknowledged writes the master no longer had at the end.
    lost: usize,
}

/// Runs `action` under a steady write load while watching the master; returns when every
/// replica is online again.
fn episode(l: &Watched, action: impl FnOnce()) -> Metrics {
    let before = REDIS.info(l.master, "all").expect("master INFO");
    // Full syncs are counted on every instance: a planned master restart serves them from
    // the replica that holds the role meanwhile.
    let syncs_before: Vec<Option<Info>> =
        l.all().iter().map(|a| REDIS.info(*a, "all").ok()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (peak_away, peak_full) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let n = l.replicas.len();
    let master = l.master;
    let watcher = {
        let (stop, pa, pf) = (stop.clone(), peak_away.clone(), peak_full.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match REDIS.info(master, "replication").ok() {
                    Some(i) => {
                        let on = i.replicas.iter().filter(|r| r.is_online()).count();
                        let full = i
                            .replicas
                            .iter()
                            .filter(|r| matches!(r.state.as_str(), "wait_bgsave" | "send_bulk"))
                            .count();
                        pa.fetch_max((n - on.min(n)) as u64, Ordering::Relaxed);
                        pf.fetch_max(full as u64, Ordering::Relaxed);
                    }
                    None => {
                        pa.fetch_max(n as u64, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let pinger = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut con = None;
            while !stop.load(Ordering::Relaxed) {
                if con.is_none() {
                    con = REDIS.connect(master, Duration::from_millis(500)).ok();
                    if con.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
                let t = Instant::now();
                let r: redis::RedisResult<String> =
                    redis::cmd("PING").query(con.as_mut().expect("con"));
                match r {
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => con = None,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            lat
        })
    };
    let writer = {
        let stop = stop.clone();
        let all = l.all();
        std::thread::spawn(move || {
            let (mut ok, mut refused) = (0u64, 0u64);
            let mut acked: HashMap<u64, u64> = HashMap::new();
            let (mut last_ok, mut longest) = (Instant::now(), Duration::ZERO);
            let mut con = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
                i += 1;
                if con.is_none() {
                    con = connect_master(&all);
                }
                let Some(c) = con.as_mut() else {
                    refused += 1;
                    continue;
                };
                let key = i % 10000;
                let r: redis::RedisResult<()> =
                    redis::cmd("SET").arg(format!("w:{key}")).arg(i).query(c);
                match r {
                    Ok(()) => {
                        ok += 1;
                        acked.insert(key, i);
                        longest = longest.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    Err(_) => {
                        refused += 1;
                        con = None;
                    }
                }
            }
            (ok, refused, acked, longest)
        })
    };
    let start = Instant::now();
    action();
    wait_all_online(l);
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let mut lat = pinger.join().unwrap_or_default();
    let (writes_ok, writes_refused, acked, longest) =
        writer
            .join()
            .unwrap_or((0, 0, HashMap::new(), Duration::ZERO));
    let lost = lost_writes(&l.all(), &acked);
    let full_syncs = l
        .all()
        .iter()
        .zip(&syncs_before)
        .map(|(a, before)| {
            let after = REDIS.info(*a, "all").expect("INFO");
            match before {
                Some(b) if b.get("run_id") == after.get("run_id") => {
                    int(&after, "sync_full") - int(b, "sync_full")
                }
                _ => int(&after, "sync_full"),
            }
        })
        .sum();
    let after = REDIS.info(l.master, "all").expect("master INFO");
    let restarted = before.get("run_id") != after.get("run_id");
    let delta = |k: &str| {
        if restarted {
            int(&after, k)
        } else {
            int(&after, k) - int(&before, k)
        }
    };
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Metrics {
        full_syncs,
        forks: delta("total_forks"),
        peak_away: peak_away.load(Ordering::Relaxed) as usize,
        peak_full: peak_full.load(Ordering::Relaxed) as usize,
        seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        writes_refused,
        writes_ok,
        longest_gap_ms: longest.as_secs_f64() * 1000.0,
        lost,
    }
}

/// Acknowledged writes whose value the group's master no longer has (a later value is
/// fine: a write that failed on the wire may still have been applied).
fn lost_writes(all: &[SocketAddr], acked: &HashMap<u64, u64>) -> usize {
    let mut c = connect_master(all).expect("a master at the end");
    acked
        .iter()
        .filter(|&(key, &value)| {
            let now: Option<u64> = redis::cmd("GET")
                .arg(format!("w:{key}"))
                .query(&mut c)
                .expect("GET");
            now.is_none_or(|v| v < value)
        })
        .count()
}

// ----- the naive way: redis-server processes started and stopped like init scripts do ---

struct Naive {
    layout: Layout,
    confs: Vec<PathBuf>, // master first
    procs: Vec<Option<Child>>,
}

impl Naive {
    fn setup(o: &Opts) -> Naive {
        let (layout, toml) = Layout::create("naive", o);
        let checked = redisrepd_io::config_file::load(&toml).expect("valid bench TOML");
        let g = checked.group;
        let mut confs = Vec::new();
        for inst in g.start_order_all() {
            let text = naive::conf(&g, inst);
            let path = layout.dir.join(format!("{}.conf", inst.name));
            std::fs::create_dir_all(g.data_path(inst)).expect("data dir");
            std::fs::create_dir_all(layout.dir.join("log")).expect("log dir");
            std::fs::write(&path, text).expect("conf");
            confs.push(path);
        }
        let procs = confs.iter().map(|_| None).collect();
        Naive {
            layout,
            confs,
            procs,
        }
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::File::create(self.confs[i].with_extension("log")).expect("log");
        let child = Command::new("redis-server")
            .arg(&self.confs[i])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redis-server");
        self.procs[i] = Some(child);
    }

    fn addr(&self, i: usize) -> SocketAddr {
        if i == 0 {
            self.layout.master
        } else {
            self.layout.replicas[i - 1]
        }
    }

    fn wait_up(&self, i: usize) {
        wait("redis answers", Duration::from_secs(300), || {
            let i = REDIS.info(self.addr(i), "persistence").ok()?;
            (!i.loading()).then_some(())
        });
    }

    /// `redis-cli -a ... shutdown` as the init script does, then wait for the exit.
    fn shutdown(&mut self, i: usize) {
        if let Ok(mut c) = REDIS.connect(self.addr(i), Duration::from_secs(2)) {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
        }
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.wait();
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    fn replicas(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.layout.replicas.len()
    }

    /// Every replica stopped at once and started at once.
    fn all_replicas_restart(&mut self, lose_data: bool) {
        let range = self.replicas();
        std::thread::scope(|s| {
            let addrs: Vec<SocketAddr> = range.clone().map(|i| self.addr(i)).collect();
            for a in addrs {
                if !lose_data {
                    s.spawn(move || match REDIS.connect(a, Duration::from_secs(2)) {
                        // The connection closing is success; an error reply is not.
                        Ok(mut c) => match redis::cmd("SHUTDOWN").query::<()>(&mut c) {
                            Err(e) if e.code().is_some() => eprintln!("bench: SHUTDOWN {a}: {e}"),
                            _ => {}
                        },
                        Err(e) => eprintln!("bench: cannot reach {a}: {e}"),
                    });
                }
            }
        });
        for i in range.clone() {
            if lose_data {
                self.kill(i);
                let data = self.layout.dir.join("data").join(format!("r{i}"));
                let _ = std::fs::remove_dir_all(&data);
                std::fs::create_dir_all(&data).expect("data dir");
            } else if let Some(mut p) = self.procs[i].take() {
                let _ = p.wait();
            }
        }
        for i in range {
            self.start(i);
        }
    }
}

impl Drop for Naive {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

// ----- redisrepd -----------------------------------------------------------------------

struct Managed {
    layout: Layout,
    toml: PathBuf,
    daemons: HashMap<&'static str, Child>,
}

impl Managed {
    fn setup(o: &Opts) -> Managed {
        let (layout, toml) = Layout::create("redisrepd", o);
        Managed {
            layout,
            toml,
            daemons: HashMap::new(),
        }
    }

    fn daemon(&mut self, host: &'static str) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.layout.dir.join(format!("daemon-{host}.log")))
            .expect("log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.toml)
            .args(["daemon", "--host", host])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redisrepd daemon");
        self.daemons.insert(host, child);
        let sock = self.layout.dir.join("run").join(format!("{host}.sock"));
        wait("daemon socket", Duration::from_secs(60), || {
            sock.exists().then_some(())
        });
    }

    fn stop_daemon(&mut self, host: &'static str) {
        if let Some(mut d) = self.daemons.remove(host) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = d.wait();
        }
    }

    fn cli(&self, args: &[&str]) {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.toml)
            .args(args)
            .output()
            .expect("redisrepd");
        assert!(
            out.status.success(),
            "redisrepd {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pid(&self, name: &str) -> u32 {
        let pid_file = self.layout.dir.join("run").join(format!("{name}.pid"));
        std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.parse().ok()))
            .expect("pid file")
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        for host in ["r", "m"] {
            self.stop_daemon(host);
        }
    }
}

fn populate(master: SocketAddr, keys: u64, aof: bool) {
    let mut c = REDIS
        .connect(master, Duration::from_secs(5))
        .expect("master");
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(keys)
        .arg("key")
        .arg(100)
        .query(&mut c)
        .expect("DEBUG POPULATE");
    // DEBUG POPULATE is neither replicated nor logged in the AOF: persist it explicitly.
    let _: () = redis::cmd("SAVE").query(&mut c).expect("SAVE");
    if aof {
        let _: () = redis::cmd("BGREWRITEAOF")
            .query(&mut c)
            .expect("BGREWRITEAOF");
        wait("AOF rewrite", Duration::from_secs(600), || {
            let i = REDIS.info(master, "persistence").ok()?;
            (int(&i, "aof_rewrite_in_progress") == 0 && int(&i, "aof_rewrite_scheduled") == 0)
                .then_some(())
        });
    }
}

fn used_mb(master: SocketAddr) -> f64 {
    REDIS
        .info(master, "memory")
        .ok()
        .map(|i| int(&i, "used_memory") as f64 / 1048576.0)
        .unwrap_or(0.0)
}

fn main() {
    redislog::self_check();
    let o = opts();
    let mut rows: Vec<(char, &str, Metrics)> = Vec::new();
    eprintln!(
        "bench: {} keys, {} replicas, {}",
        o.keys,
        o.replicas,
        if o.aof { "AOF + RDB" } else { "RDB only" }
    );

    {
        let mut n = Naive::setup(&o);
        n.start(0);
        n.wait_up(0);
        populate(n.layout.master, o.keys, o.aof);
        eprintln!("bench: master holds {:.0} MB", used_mb(n.layout.master));
        for i in n.replicas() {
            n.start(i);
        }
        let w = n.layout.watched();
        wait_all_online(&w);
        for s in o.only.clone() {
            eprintln!("bench: naive ({s})");
            let since = redislog::now();
            let m = match s {
                'a' | 'd' => episode(&w, || n.all_replicas_restart(false)),
                'b' => episode(&w, || n.all_replicas_restart(true)),
                'c' => episode(&w, || {
                    n.shutdown(0);
                    n.start(0);
                    n.wait_up(0);
                }),
                _ => continue,
            };
            if matches!(s, 'a' | 'd') {
                println!("naive ({s}), each replica's restart from its own log:");
                let names: Vec<String> = n.replicas().map(|i| format!("r{i}")).collect();
                redislog::print_breakdown(&n.layout.dir.join("log"), &names, since, None);
            }
            rows.push((s, "naive", m));
        }
    }
    {
        let mut m = Managed::setup(&o);
        m.daemon("m");
        wait("master up", Duration::from_secs(120), || {
            REDIS
                .info(m.layout.master, "persistence")
                .ok()
                .filter(|i| !i.loading())
        });
        populate(m.layout.master, o.keys, o.aof);
        m.daemon("r");
        let w = m.layout.watched();
        wait_all_online(&w);
        let names: Vec<String> = (1..=o.replicas).map(|i| format!("r{i}")).collect();
        for s in o.only.clone() {
            eprintln!("bench: redisrepd ({s})");
            let since = redislog::now();
            let metrics = match s {
                'a' => episode(&w, || {
                    let mut args = vec!["restart"];
                    args.extend(names.iter().map(String::as_str));
                    m.cli(&args);
                }),
                'b' => episode(&w, || {
                    for name in &names {
                        let data = m.layout.dir.join("data").join(name);
                        let _ = std::fs::remove_dir_all(&data);
                        let pid = m.pid(name);
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }),
                'c' => episode(&w, || m.cli(&["restart", "master"])),
                'd' => episode(&w, || {
                    m.stop_daemon("r");
                    m.daemon("r");
                }),
                _ => continue,
            };
            if matches!(s, 'a' | 'd') {
                println!(
                    "redisrepd ({s}), each replica's restart from its own log and the daemon's:"
                );
                let daemon_log = m.layout.dir.join("daemon-r.log");
                redislog::print_breakdown(
                    &m.layout.dir.join("log"),
                    &names,
                    since,
                    Some(&daemon_log),
                );
            }
            rows.push((s, "redisrepd", metrics));
        }
    }
    print_table(&rows);
}

fn print_table(rows: &[(char, &str, Metrics)]) {
    println!(
        "| scenario | way | full syncs | master forks | peak away | peak concurrent full syncs | s until all online | PING p50/p99/max ms | writes refused / ok | longest write gap ms | lost |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (s, way, m) in rows {
        let name = match s {
            'a' => "(a) rolling restart of every replica",
            'b' => "(b) every replica crashes, files lost",
            'c' => "(c) master restart",
            'd' => "(d) replicas' host reboots",
            _ => "?",
        };
        println!(
            "| {name} | {way} | {} | {} | {} | {} | {:.1} | {:.2}/{:.2}/{:.1} | {} / {} | {:.0} | {} |",
            m.full_syncs,
            m.forks,
            m.peak_away,
            m.peak_full,
            m.seconds,
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            m.writes_refused,
            m.writes_ok,
            m.longest_gap_ms,
            m.lost
        );
    }
    let time = |s: char, way: &str| {
        rows.iter()
            .find(|r| r.0 == s && r.1 == way)
            .map(|r| r.2.seconds)
    };
    for s in ['a', 'b', 'c', 'd'] {
        if let (Some(naive), Some(ours)) = (time(s, "naive"), time(s, "redisrepd")) {
            println!(
                "({s}) time until all online, redisrepd / naive: {:.2}",
                ours / naive
            );
        }
    }
}
