//! The storm that hurts: the replicas' host reboots under a write load, its downtime
//! outruns the master's backlog, and every replica needs a full sync over a slow link. The
//! naive way (every replica started at once, as init scripts do) against redisrepd, in the
//! same run. See bench/README.md.
//!
//! Two network namespaces made by the bench (`rrdp-<pid>-m`, `rrdp-<pid>-r`) joined by a
//! veth pair with private addresses (10.211.7.1 master side, 10.211.7.2 replica side) and a
//! `tc tbf` rate limit on both ends: no traffic leaves the machine. The bench's own
//! connections come from its main thread, which joins the master's namespace first (every
//! thread it spawns later is in it too). On exit, panic or Ctrl-C every process in the
//! namespaces is killed and the namespaces are deleted. Needs root and iproute2.
//!
//! `cargo bench --bench pressure -- [--keys N] [--value BYTES] [--replicas N] [--mbit M]
//!  [--write-kb K] [--limit "replica 64mb 32mb 10"] [--naive-minutes M] [--only naive|redisrepd]`

mod common;
mod naive;
mod redislog;

use clap::Parser;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redisrepd_core::info::Info;

use common::{int, wait_some as wait};
use redisrepd_testkit::netns::remove_netns;

const PASSWORD: &str = "bench-password";
/// How the bench reaches its instances.
const REDIS: common::Redis = common::Redis {
    password: PASSWORD,
    info_within: Duration::from_secs(1),
    io: Duration::from_secs(120),
};
const BIN: &str = env!("CARGO_BIN_EXE_redisrepd");
const MASTER_IP: Ipv4Addr = Ipv4Addr::new(10, 211, 7, 1);
const REPLICA_IP: Ipv4Addr = Ipv4Addr::new(10, 211, 7, 2);
const MASTER_PORT: u16 = 6379;

struct Opts {
    keys: u64,
    value: u64,
    replicas: usize,
    mbit: u64,
    write_kb: u64,
    limit: String,
    naive_minutes: u64,
    ways: Vec<String>,
}

/// The command line (`cargo bench --bench pressure -- --help`).
#[derive(Parser)]
#[command(
    about = "Replicas resyncing over a slow link under writes: naive against redisrepd's gate"
)]
struct Args {
    /// Keys in the group.
    #[arg(long, default_value_t = 250_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 1000)]
    value: u64,
    /// Replicas of the master.
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// The link's bandwidth, Mbit/s.
    #[arg(long, default_value_t = 150)]
    mbit: u64,
    /// Writes to the master, KiB/s.
    #[arg(long, default_value_t = 1024)]
    write_kb: u64,
    /// `client-output-buffer-limit` for replicas.
    #[arg(long, default_value = "replica 64mb 32mb 10")]
    limit: String,
    /// How long the naive way may take, in minutes.
    #[arg(long, default_value_t = 4)]
    naive_minutes: u64,
    /// Only one way (naive or redisrepd).
    #[arg(long)]
    only: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn opts() -> Opts {
    let a = Args::parse();
    Opts {
        keys: a.keys,
        value: a.value,
        replicas: a.replicas,
        mbit: a.mbit,
        write_kb: a.write_kb,
        limit: a.limit,
        naive_minutes: a.naive_minutes,
        ways: match a.only {
            Some(way) => vec![way],
            None => vec!["naive".to_owned(), "redisrepd".to_owned()],
        },
    }
}

// ----- the lab: two namespaces, a veth pair, a rate limit ------------------------------

/// The namespaces' names and the temp dir, for the signal handler's cleanup.
static NAMESPACES: OnceLock<Vec<String>> = OnceLock::new();
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Runs a command; panics with its output when it fails.
#[track_caller]
fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills everything in the namespaces, deletes them, and removes the data sets (up to
/// 9 GB; the logs are kept).
fn cleanup() {
    for ns in NAMESPACES.get().into_iter().flatten() {
        remove_netns(ns);
    }
    if let Some(dir) = DIR.get() {
        for way in ["naive", "redisrepd"] {
            let _ = std::fs::remove_dir_all(dir.join(way).join("data"));
        }
    }
}

/// The two namespaces while this lives; on drop (also on panic) everything in them is
/// killed and they are deleted, and the data sets are removed (logs are kept).
struct Lab {
    m: String,
    r: String,
    dir: PathBuf,
}

impl Lab {
    fn create() -> Lab {
        redisrepd_testkit::netns::remove_orphans_with("rrdp-");
        let pid = std::process::id();
        let (m, r) = (format!("rrdp-{pid}-m"), format!("rrdp-{pid}-r"));
        let _ = NAMESPACES.set(vec![m.clone(), r.clone()]);
        // Ctrl-C, SIGTERM, SIGHUP: the same cleanup as a normal exit.
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ])
        .expect("signal handler");
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("bench: signal {sig}: cleaning up");
                cleanup();
                std::process::exit(130);
            }
        });
        let dir = std::env::temp_dir().join(format!("redisrepd-pressure-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        let _ = DIR.set(dir.clone());
        let lab = Lab { m, r, dir };
        for ns in [&lab.m, &lab.r] {
            remove_netns(ns);
            run("ip", &["netns", "add", ns]);
        }
        run(
            "ip",
            &[
                "link", "add", "pm", "netns", &lab.m, "type", "veth", "peer", "name", "pr",
                "netns", &lab.r,
            ],
        );
        for (ns, dev, ip) in [(&lab.m, "pm", MASTER_IP), (&lab.r, "pr", REPLICA_IP)] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev],
            );
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        // The bench's own connections: from the master's namespace. Threads spawned from
        // here on inherit it (the signal thread above needs no network).
        let fd = File::open(Path::new("/run/netns").join(&lab.m)).expect("netns file");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        lab
    }

    /// The link limited to `mbit` in both directions (`None`: unlimited).
    fn limit(&self, mbit: Option<u64>) {
        for (ns, dev) in [(&self.m, "pm"), (&self.r, "pr")] {
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root",
                ])
                .stderr(Stdio::null())
                .status();
            if let Some(mbit) = mbit {
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        ns,
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "tbf",
                        "rate",
                        &format!("{mbit}mbit"),
                        "burst",
                        "256kb",
                        "latency",
                        "50ms",
                    ],
                );
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        cleanup();
    }
}

// ----- Redis helpers ---------------------------------------------------------------------

fn master() -> SocketAddr {
    SocketAddr::from((MASTER_IP, MASTER_PORT))
}

fn replica(i: usize) -> SocketAddr {
    SocketAddr::from((REPLICA_IP, 6380 + i as u16))
}

/// Every replica online at the master, linked, not loading: the time it took, or `None`
/// when not within `within`.
fn all_online(n: usize, within: Duration) -> Option<f64> {
    let start = Instant::now();
    loop {
        let up = REDIS.info(master(), "replication").ok().is_some_and(|i| {
            (0..n).all(|k| {
                let r = replica(k);
                i.replica(r.ip(), r.port()).is_some_and(|l| l.is_online())
            })
        }) && (0..n).all(|k| {
            REDIS.info(replica(k), "all").ok().is_some_and(|i| {
                i.master_link_up() == Some(true) && !i.sync_in_progress() && !i.loading()
            })
        });
        if up {
            return Some(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn toml_text(o: &Opts) -> String {
    let mut t = format!(
        "[cluster]\nname = \"pressure\"\npassword = \"{PASSWORD}\"\nrun_dir = \"run\"\n\
         data_dir = \"data\"\nlog_dir = \"log\"\n\n\
         [supervise]\nmax_concurrent_syncs = 1\nhealth_interval = \"100ms\"\nstart_timeout = \"5m\"\n\
         shutdown_timeout = \"2m\"\nsync_timeout = \"30m\"\nrestart_delay = \"200ms\"\n\n\
         [redis]\nsave = [\"3600 1\"]\nappendonly = \"no\"\nrdbcompression = \"no\"\n\
         client-output-buffer-limit = \"{}\"\nenable-debug-command = \"yes\"\n\n",
        o.limit
    );
    t.push_str(&format!(
        "[[instance]]\nname = \"master\"\nhost = \"m\"\nbind = \"{MASTER_IP}\"\nport = {MASTER_PORT}\n\n"
    ));
    for k in 0..o.replicas {
        t.push_str(&format!(
            "[[instance]]\nname = \"r{}\"\nhost = \"r\"\nbind = \"{REPLICA_IP}\"\nport = {}\nreplica_of = \"master\"\n\n",
            k + 1,
            replica(k).port()
        ));
    }
    t
}

fn populate(o: &Opts) {
    let mut c = REDIS
        .connect(master(), Duration::from_secs(5))
        .expect("master");
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(o.keys)
        .arg("key")
        .arg(o.value)
        .query(&mut c)
        .expect("DEBUG POPULATE");
    // DEBUG POPULATE is not replicated: replicas get it by their first (full) sync.
    let _: () = redis::cmd("SAVE").query(&mut c).expect("SAVE");
}

// ----- one episode: the replicas' host reboots -------------------------------------------

/// What one episode measured.
#[derive(Default)]
struct Metrics {
    downtime: f64,
    seconds: Option<f64>,
    within: u64,
    full_syncs: i64,
    partial: i64,
    forks: i64,
    drops: usize,
    peak_omem: i64,
    peak_repl_buffer: i64,
    peak_used: i64,
    used_before: i64,
    rdb_bytes: u64,
    writes_ok: u64,
    writes_failed: u64,
}

/// Runs a steady write load on the master: `kb` KiB/s of SETs over the populated keys.
fn writer(o: &Opts, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let (keys, value) = (o.keys.max(1), o.value.max(1));
    // Batches every 20 ms.
    let per_batch = ((o.write_kb * 1024) as f64 / 50.0 / value as f64)
        .ceil()
        .max(1.0) as u64;
    std::thread::spawn(move || {
        let payload = vec![b'w'; value as usize];
        let (mut ok, mut failed) = (0u64, 0u64);
        let mut con = None;
        let mut n = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            next += Duration::from_millis(20);
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            if con.is_none() {
                con = REDIS.connect(master(), Duration::from_millis(500)).ok();
            }
            let Some(c) = con.as_mut() else {
                failed += per_batch;
                continue;
            };
            let mut p = redis::pipe();
            for _ in 0..per_batch {
                n += 1;
                // Spread over the key space (a multiplicative hash of n).
                let k = n.wrapping_mul(2654435761) % keys;
                p.cmd("SET").arg(format!("key:{k}")).arg(&payload).ignore();
            }
            match p.query::<()>(c) {
                Ok(()) => ok += per_batch,
                Err(_) => {
                    failed += per_batch;
                    con = None;
                }
            }
        }
        (ok, failed)
    })
}

/// Peaks of the master's memory and of its replicas' output buffers, sampled every 100 ms.
#[derive(Default)]
struct Peaks {
    omem: i64,
    repl_buffer: i64,
    used: i64,
}

fn sampler(stop: Arc<AtomicBool>) -> (Arc<Mutex<Peaks>>, std::thread::JoinHandle<()>) {
    let peaks = Arc::new(Mutex::new(Peaks::default()));
    let p = peaks.clone();
    let h = std::thread::spawn(move || {
        let mut con = None;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if con.is_none() {
                con = REDIS.connect(master(), Duration::from_millis(500)).ok();
            }
            let Some(c) = con.as_mut() else { continue };
            let mem: redis::RedisResult<String> = redis::cmd("INFO").arg("memory").query(c);
            let list: redis::RedisResult<String> = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("replica")
                .query(c);
            let (Ok(mem), Ok(list)) = (mem, list) else {
                con = None;
                continue;
            };
            let mem = Info::parse(&mem);
            let omem = list
                .lines()
                .filter_map(|l| {
                    l.split(' ')
                        .find_map(|f| f.strip_prefix("omem="))
                        .and_then(|v| v.parse::<i64>().ok())
                })
                .max()
                .unwrap_or(0);
            let mut pk = p.lock().unwrap_or_else(|e| e.into_inner());
            pk.omem = pk.omem.max(omem);
            pk.repl_buffer = pk.repl_buffer.max(
                int(&mem, "mem_total_replication_buffer").max(int(&mem, "mem_clients_slaves")),
            );
            pk.used = pk.used.max(int(&mem, "used_memory"));
        }
    });
    (peaks, h)
}

/// The master's log lines at or after `since` that report a replica dropped for its
/// output buffer.
fn drops(master_log: &Path, since: f64) -> usize {
    std::fs::read_to_string(master_log)
        .unwrap_or_default()
        .lines()
        .filter_map(redislog::redis_line)
        .filter(|(t, m)| *t >= since && m.contains("overcoming of output buffer limits"))
        .count()
}

/// The episode: `stop` the replicas (under writes), wait until the master's backlog no
/// longer holds where they stopped (their resync must be full), `start` them, and measure
/// until every replica is online or `minutes` pass (the naive way is given
/// `--naive-minutes`; redisrepd, which converges, up to 30).
fn episode(
    o: &Opts,
    dir: &Path,
    minutes: u64,
    stop_all: impl FnOnce(),
    start_all: impl FnOnce(),
) -> Metrics {
    let before = REDIS.info(master(), "all").expect("master INFO");
    let quit = Arc::new(AtomicBool::new(false));
    let w = writer(o, quit.clone());
    std::thread::sleep(Duration::from_secs(2));
    let down_at = Instant::now();
    stop_all();
    let stopped_at = REDIS
        .info(master(), "replication")
        .ok()
        .and_then(|i| i.repl_offset())
        .expect("master offset");
    wait(
        "the backlog to move past the replicas",
        Duration::from_secs(600),
        || {
            let i = REDIS.info(master(), "replication").ok()?;
            (int(&i, "repl_backlog_first_byte_offset") > stopped_at + 1).then_some(())
        },
    );
    let (peaks, s) = sampler(quit.clone());
    let since = redislog::now();
    let downtime = down_at.elapsed().as_secs_f64();
    start_all();
    let within = minutes * 60;
    let seconds = all_online(o.replicas, Duration::from_secs(within));
    quit.store(true, Ordering::Relaxed);
    let (writes_ok, writes_failed) = w.join().unwrap_or((0, 0));
    let _ = s.join();
    let after = REDIS.info(master(), "all").expect("master INFO");
    let delta = |k: &str| int(&after, k) - int(&before, k);
    let pk = peaks.lock().unwrap_or_else(|e| e.into_inner());
    let rdb_bytes = std::fs::metadata(dir.join("data").join("master").join("dump.rdb"))
        .map(|m| m.len())
        .unwrap_or(0);
    Metrics {
        downtime,
        seconds,
        within,
        full_syncs: delta("sync_full"),
        partial: delta("sync_partial_ok"),
        forks: delta("total_forks"),
        drops: drops(&dir.join("log").join("master.log"), since),
        peak_omem: pk.omem,
        peak_repl_buffer: pk.repl_buffer,
        peak_used: pk.used,
        used_before: int(&before, "used_memory"),
        rdb_bytes,
        writes_ok,
        writes_failed,
    }
}

// ----- the two ways --------------------------------------------------------------------

fn group(dir: &Path, o: &Opts) -> redisrepd_core::config::Group {
    std::fs::create_dir_all(dir).expect("dir");
    let toml = dir.join("group.toml");
    std::fs::write(&toml, toml_text(o)).expect("toml");
    redisrepd_io::config_file::load(&toml)
        .expect("valid bench TOML")
        .group
}

/// `ip netns exec NS` + a command, its output appended to `log`.
fn in_ns(ns: &str, log: &Path) -> Command {
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
    cmd
}

fn naive(lab: &Lab, o: &Opts) -> Metrics {
    let dir = lab.dir.join("naive");
    let g = group(&dir, o);
    std::fs::create_dir_all(dir.join("log")).expect("log dir");
    let mut confs = Vec::new();
    for inst in g.start_order_all() {
        let text = naive::conf(&g, inst);
        let path = dir.join(format!("{}.conf", inst.name));
        std::fs::create_dir_all(g.data_path(inst)).expect("data dir");
        std::fs::write(&path, text).expect("conf");
        confs.push(path);
    }
    let start = |i: usize| -> Child {
        let ns = if i == 0 { &lab.m } else { &lab.r };
        in_ns(ns, &dir.join("stdout.log"))
            .arg("redis-server")
            .arg(&confs[i])
            .spawn()
            .expect("redis-server")
    };
    let mut procs: Vec<Option<Child>> = vec![Some(start(0))];
    wait("master up", Duration::from_secs(60), || {
        REDIS
            .info(master(), "persistence")
            .ok()
            .filter(|i| !i.loading())
    });
    populate(o);
    eprintln!("bench: naive: master holds {} MB", used_mb());
    for i in 1..=o.replicas {
        procs.push(Some(start(i)));
    }
    all_online(o.replicas, Duration::from_secs(1800)).expect("initial sync");
    eprintln!(
        "bench: naive: replicas in sync; the link limited to {} Mbit/s",
        o.mbit
    );
    lab.limit(Some(o.mbit));
    let replicas: Vec<Child> = procs.drain(1..).flatten().collect();
    let holder = Mutex::new(replicas);
    let m = episode(
        o,
        &dir,
        o.naive_minutes,
        || {
            // `/etc/init.d/redis stop` on each, at once (SHUTDOWN saves: `save` is set).
            std::thread::scope(|s| {
                for k in 0..o.replicas {
                    s.spawn(move || {
                        if let Ok(mut c) = REDIS.connect(replica(k), Duration::from_secs(2)) {
                            let _ = redis::cmd("SHUTDOWN").query::<()>(&mut c);
                        }
                    });
                }
            });
            for p in holder.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
                let _ = p.wait();
            }
        },
        || {
            let mut h = holder.lock().unwrap_or_else(|e| e.into_inner());
            h.clear();
            for i in 1..=o.replicas {
                h.push(start(i));
            }
        },
    );
    lab.limit(None);
    // Everything of this way goes before the next one starts.
    for p in holder
        .into_inner()
        .unwrap_or_default()
        .iter_mut()
        .chain(procs.iter_mut().flatten())
    {
        let _ = p.kill();
        let _ = p.wait();
    }
    m
}

fn used_mb() -> i64 {
    REDIS
        .info(master(), "memory")
        .ok()
        .map_or(0, |i| int(&i, "used_memory") / 1048576)
}

/// A daemon for `host` in `ns`; returns when its control socket exists.
fn daemon(lab: &Lab, dir: &Path, host: &str) -> Child {
    let ns = if host == "m" { &lab.m } else { &lab.r };
    let child = in_ns(ns, &dir.join(format!("daemon-{host}.log")))
        .arg(BIN)
        .arg("--config")
        .arg(dir.join("group.toml"))
        .args(["daemon", "--host", host])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .spawn()
        .expect("daemon");
    let sock = dir.join("run").join(format!("{host}.sock"));
    wait("daemon socket", Duration::from_secs(60), || {
        sock.exists().then_some(())
    });
    child
}

fn stop_daemon(mut d: Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.id() as i32), Signal::SIGTERM);
    let _ = d.wait();
}

fn managed(lab: &Lab, o: &Opts) -> Metrics {
    let dir = lab.dir.join("redisrepd");
    let _ = group(&dir, o);
    let dm = daemon(lab, &dir, "m");
    wait("master up", Duration::from_secs(60), || {
        REDIS
            .info(master(), "persistence")
            .ok()
            .filter(|i| !i.loading())
    });
    populate(o);
    eprintln!("bench: redisrepd: master holds {} MB", used_mb());
    let dr = daemon(lab, &dir, "r");
    all_online(o.replicas, Duration::from_secs(1800)).expect("initial sync");
    eprintln!(
        "bench: redisrepd: replicas in sync; the link limited to {} Mbit/s",
        o.mbit
    );
    lab.limit(Some(o.mbit));
    let holder = Mutex::new(Some(dr));
    let m = episode(
        o,
        &dir,
        o.naive_minutes.max(30),
        || {
            // The host goes down: its daemon stops every replica (SHUTDOWN SAVE).
            if let Some(d) = holder.lock().unwrap_or_else(|e| e.into_inner()).take() {
                stop_daemon(d);
            }
        },
        || {
            *holder.lock().unwrap_or_else(|e| e.into_inner()) = Some(daemon(lab, &dir, "r"));
        },
    );
    lab.limit(None);
    if let Some(d) = holder.into_inner().unwrap_or_default() {
        stop_daemon(d);
    }
    stop_daemon(dm);
    m
}

fn main() {
    redislog::self_check();
    let o = opts();
    assert!(
        redislog::local_is_utc(),
        "the bench reads Redis's local-time log stamps as UTC: run it with TZ=UTC"
    );
    let lab = Lab::create();
    eprintln!(
        "bench: {} keys × {} B, {} replicas, link {} Mbit/s, writes {} KiB/s, client-output-buffer-limit {}, temp dir {}",
        o.keys,
        o.value,
        o.replicas,
        o.mbit,
        o.write_kb,
        o.limit,
        lab.dir.display()
    );
    let mut rows: Vec<(&str, Metrics)> = Vec::new();
    for way in o.ways.clone() {
        eprintln!("bench: {way}");
        let m = if way == "naive" {
            naive(&lab, &o)
        } else {
            managed(&lab, &o)
        };
        eprintln!(
            "bench: {way}: {} full syncs, {} forks, {}",
            m.full_syncs,
            m.forks,
            m.seconds
                .map_or(format!("not online within {} s", m.within), |s| format!(
                    "{s:.1} s"
                ))
        );
        rows.push((if way == "naive" { "naive" } else { "redisrepd" }, m));
    }
    print_table(&o, &rows);
    eprintln!("bench: logs kept in {}", lab.dir.display());
}

fn print_table(o: &Opts, rows: &[(&str, Metrics)]) {
    let mb = |b: i64| b as f64 / 1048576.0;
    println!(
        "{} replicas, {} keys × {} B (RDB {:.0} MB), link {} Mbit/s, writes {} KiB/s, client-output-buffer-limit {}",
        o.replicas,
        o.keys,
        o.value,
        rows.first()
            .map_or(0.0, |r| r.1.rdb_bytes as f64 / 1048576.0),
        o.mbit,
        o.write_kb,
        o.limit
    );
    println!(
        "| way | downtime s | full syncs | partial | master forks | replicas dropped (output buffer) | peak replica omem MB | peak repl. buffer MB | used_memory before / peak MB | s until all online | writes ok / failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (way, m) in rows {
        println!(
            "| {way} | {:.1} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} / {:.0} | {} | {} / {} |",
            m.downtime,
            m.full_syncs,
            m.partial,
            m.forks,
            m.drops,
            mb(m.peak_omem),
            mb(m.peak_repl_buffer),
            mb(m.used_before),
            mb(m.peak_used),
            m.seconds
                .map_or(format!("not within {} min", m.within / 60), |s| format!(
                    "{s:.1}"
                )),
            m.writes_ok,
            m.writes_failed
        );
    }
    let t = |w: &str| rows.iter().find(|r| r.0 == w).map(|r| r.1.seconds);
    match (t("naive"), t("redisrepd")) {
        (Some(Some(n)), Some(Some(r))) => {
            println!("time until all online, redisrepd / naive: {:.2}", r / n)
        }
        (Some(None), Some(Some(r))) => println!(
            "time until all online: redisrepd {r:.1} s; naive not within {} min",
            o.naive_minutes
        ),
        _ => {}
    }
}
