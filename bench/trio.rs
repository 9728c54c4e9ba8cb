//! What the master-crash and failover benches share (each includes this file as `mod
//! trio`): the seed layout's group — a master and two replicas, `r1` and `r2`, on
//! 127.0.0.1 — run either the naive way (`redis-server` processes started by hand on
//! redisrepd's own configs minus its sync directives, as init scripts do) or by two
//! redisrepd daemons (host `m` runs the master, host `r` the replicas, as in the storm
//! bench); sync counters over every instance and every run; checks of acknowledged writes;
//! waits that give up at a deadline or on Ctrl-C.
//!
//! Owns: the bench's temp dirs and every process it starts (in their own process groups,
//! so that a Ctrl-C reaches only the bench). Dropping a [`Naive`] or [`Managed`] kills its
//! daemons, children and every redis-server still working under its dir, then removes
//! the dir (unless `--keep`).

#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redisrepd_core::info::SyncKind;

use crate::common::{self, free_port, int};
use crate::naive;

pub const PASSWORD: &str = "bench-password";
/// How the bench reaches its instances.
pub const REDIS: common::Redis = common::Redis {
    password: PASSWORD,
    info_within: Duration::from_secs(1),
    io: IO_TIMEOUT,
};
pub use crate::common::{BIN, Run};
/// The instances, in this order everywhere: index 0 is the configured master.
pub const NAMES: [&str; 3] = ["master", "r1", "r2"];
/// Room for slow replies (a forking master, a check of thousands of keys).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ----- Ctrl-C --------------------------------------------------------------------------

fn interrupted_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// SIGINT/SIGTERM set a flag that every wait checks: the bench then unwinds and its
/// guards kill what it started.
pub fn install_signals() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted_flag().clone()).expect("signal handler");
    }
}

pub fn interrupted() -> bool {
    interrupted_flag().load(Ordering::Relaxed)
}

/// Calls `f` every 20 ms until it gives a value; an error naming `what` and `f`'s last
/// complaint after `within` or on Ctrl-C.
pub fn wait<T>(
    what: &str,
    within: Duration,
    f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    common::wait_for(within, interrupted_flag(), f).map_err(|e| format!("{what}: {e}"))
}

// ----- the group's layout --------------------------------------------------------------

/// Persistence of the group: RDB only (`save 3600 1`), or with AOF (`appendfsync
/// everysec`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Rdb,
    Aof,
}

impl Persistence {
    pub fn label(self) -> &'static str {
        match self {
            Persistence::Rdb => "RDB only (save 3600 1)",
            Persistence::Aof => "AOF (appendfsync everysec) + save 3600 1",
        }
    }
}

/// One group's dir, TOML and addresses.
#[derive(Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub toml: PathBuf,
    pub addrs: [SocketAddr; 3],
    /// Leave the dir when dropped (`--keep`).
    pub keep: bool,
    /// `SAVE` on the master once its replicas are in sync (see [`save_with_replicas`]);
    /// `--no-resave` of the master-crash bench leaves the RDB from before.
    pub resave: bool,
}

impl Layout {
    /// A fresh temp dir with the group's TOML: three instances on free ports.
    pub fn create(tag: &str, p: Persistence) -> Layout {
        let local = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let l = Layout {
            dir: common::fresh_dir(&format!("bench-{tag}")),
            toml: PathBuf::new(),
            addrs: [local(), local(), local()],
            keep: false,
            resave: true,
        };
        let toml = l.dir.join("group.toml");
        std::fs::write(&toml, l.toml_text(p)).expect("writing group.toml");
        std::fs::create_dir_all(l.dir.join("log")).expect("log dir");
        Layout { toml, ..l }
    }

    fn toml_text(&self, p: Persistence) -> String {
        let aof = match p {
            Persistence::Rdb => "appendonly = \"no\"\n",
            Persistence::Aof => "appendonly = \"yes\"\nappendfsync = \"everysec\"\n",
        };
        // restart_delay 100ms: what systemd's Restart=always waits by default (RestartSec),
        // so that both ways restart a crashed server equally soon.
        let mut t = format!(
            "[cluster]\nname = \"bench\"\npassword = \"{PASSWORD}\"\nrun_dir = \"run\"\n\
             data_dir = \"data\"\nlog_dir = \"log\"\n\n\
             [supervise]\nhealth_interval = \"100ms\"\nrestart_delay = \"100ms\"\n\
             start_timeout = \"2m\"\nshutdown_timeout = \"1m\"\nsync_timeout = \"5m\"\n\n\
             [redis]\nsave = [\"3600 1\"]\n{aof}{}\n",
            debug_directive()
        );
        for (i, name) in NAMES.iter().enumerate() {
            let host = if i == 0 { "m" } else { "r" };
            t.push_str(&format!(
                "[[instance]]\nname = \"{name}\"\nhost = \"{host}\"\nbind = \"127.0.0.1\"\nport = {}\n",
                self.addrs[i].port()
            ));
            if i > 0 {
                t.push_str("replica_of = \"master\"\n");
            }
            t.push('\n');
        }
        t
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.join("log").join(format!("{}.log", NAMES[i]))
    }

    /// The index of the instance listening on `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.addrs.iter().position(|a| a.port() == port)
    }

    fn remove(&self) {
        if self.keep {
            eprintln!("bench: files kept in {}", self.dir.display());
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_under(&self.dir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use redisrepd_testkit::redis_and_forks_under as redis_under;

pub fn kill_pid(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Spawns `cmd` in its own process group, its stdout and stderr appended to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // Its own process group: a Ctrl-C in the terminal reaches only the bench.
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))
}

// ----- Redis ---------------------------------------------------------------------------

/// The directive that lets the bench send `DEBUG POPULATE` (Redis 7.0+ and Valkey refuse
/// DEBUG without it); Redis 6.2 allows DEBUG already and does not know the directive.
fn debug_directive() -> &'static str {
    use redisrepd_core::server::Kind;
    use redisrepd_io::server_detect::detect;
    match detect(Path::new("redis-server")) {
        Ok(s) if s.kind == Kind::Redis && s.version.major < 7 => "",
        _ => "enable-debug-command = \"local\"\n",
    }
}

/// `DEBUG POPULATE keys` on the master (not replicated: run it before the replicas
/// start), then `SAVE`, and an AOF rewrite when the AOF is on (DEBUG POPULATE is not
/// logged in the AOF either).
pub fn populate(master: SocketAddr, keys: u64, p: Persistence) -> Result<(), String> {
    let mut c = REDIS
        .connect(master, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let q = |c: &mut redis::Connection, cmd: &mut redis::Cmd| -> Result<(), String> {
        cmd.query::<()>(c).map_err(|e| format!("{cmd:?}: {e}"))
    };
    q(
        &mut c,
        redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(keys)
            .arg("key")
            .arg(100),
    )?;
    q(&mut c, &mut redis::cmd("SAVE"))?;
    if p == Persistence::Aof {
        q(&mut c, &mut redis::cmd("BGREWRITEAOF"))?;
        wait("the AOF rewrite", Duration::from_secs(300), || {
            let i = REDIS.info(master, "persistence")?;
            (int(&i, "aof_rewrite_in_progress") == 0 && int(&i, "aof_rewrite_scheduled") == 0)
                .then_some(())
                .ok_or_else(|| "rewriting".to_owned())
        })?;
    }
    Ok(())
}

/// `SAVE` on the master once its replicas are in sync: the master's last save, as its
/// hourly `save 3600 1` would make it, carrying the replication id and offset (an RDB
/// saved before any replica connected has none: the master had no backlog yet).
pub fn save_with_replicas(master: SocketAddr) -> Result<(), String> {
    let mut c = REDIS
        .connect(master, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    redis::cmd("SAVE")
        .query::<()>(&mut c)
        .map_err(|e| format!("SAVE on the master: {e}"))
}

/// The role Redis reports for `addr` and, for a replica, the port of its master.
pub fn role(addr: SocketAddr) -> Result<(&'static str, Option<u16>), String> {
    let i = REDIS.info(addr, "replication")?;
    let role = i.role().ok_or_else(|| format!("{addr}: no role in INFO"))?;
    let port = i.get("master_port").and_then(|p| p.parse().ok());
    Ok((role, port))
}

/// `Ok` when `addrs[master]` is a master, every other instance replicates from it (or,
/// when `chain` allows, from another instance that does), its link up, not syncing, not
/// loading, and the master lists its direct replicas `online`. With `settled`, also
/// every replica's offset equals the master's (meant for a group nobody writes to).
pub fn in_shape(
    addrs: &[SocketAddr; 3],
    master: usize,
    chain: bool,
    settled: bool,
) -> Result<(), String> {
    let m = REDIS.info(addrs[master], "replication")?;
    if m.role() != Some("master") {
        return Err(format!("{} is not a master yet", NAMES[master]));
    }
    let m_offset = m.repl_offset().unwrap_or(-1);
    for (i, addr) in addrs.iter().enumerate() {
        if i == master {
            continue;
        }
        let r = REDIS.info(*addr, "all")?;
        let name = NAMES[i];
        if r.role() != Some("replica") {
            return Err(format!("{name} is not a replica"));
        }
        let up = r.get("master_port").and_then(|p| p.parse::<u16>().ok());
        let direct = up == Some(addrs[master].port());
        let chained =
            chain && up.is_some_and(|p| p != addr.port() && addrs.iter().any(|a| a.port() == p));
        if !direct && !chained {
            return Err(format!("{name} replicates from port {up:?}"));
        }
        if r.master_link_up() != Some(true) || r.sync_in_progress() || r.loading() {
            return Err(format!("{name}: link not up, or syncing, or loading"));
        }
        if direct
            && !m
                .replicas
                .iter()
                .any(|l| l.port == addr.port() && l.is_online())
        {
            return Err(format!("{name} not online at {}", NAMES[master]));
        }
        if settled {
            let off = int(&r, "slave_repl_offset");
            if off != m_offset {
                return Err(format!("{name} at offset {off}, the master at {m_offset}"));
            }
        }
    }
    Ok(())
}

/// The keys of `acked` (`<prefix><n>` = `n`) that `addr` lacks or holds with another
/// value.
pub fn missing_on(addr: SocketAddr, prefix: &str, acked: &[u64]) -> Result<Vec<u64>, String> {
    let mut con = REDIS
        .connect(addr, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    redisrepd_testkit::missing_keys(&mut con, prefix, acked).map_err(|e| format!("{addr}: {e}"))
}

/// How a failed command reads in a table: the error code (`READONLY`, `LOADING`, ...) or
/// `connection`.
pub fn error_kind(e: &redis::RedisError) -> String {
    match e.code() {
        Some(code) => code.to_owned(),
        None if e.is_timeout() => "timeout".to_owned(),
        None if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            "connection".to_owned()
        }
        None => e.to_string(),
    }
}

// ----- syncs ---------------------------------------------------------------------------

/// Reads `sync_full` and `sync_partial_ok` of every instance every 100 ms (and on
/// [`Syncs::sample`]) and keeps the largest seen per instance and `run_id`: the counters
/// start from 0 when a server restarts, so a total is the sum over runs.
/// (full, partial) per instance index and run id.
type Seen = Mutex<BTreeMap<(usize, String), [i64; 2]>>;

pub struct Syncs {
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    addrs: [SocketAddr; 3],
    handle: Option<JoinHandle<()>>,
}

impl Syncs {
    pub fn start(addrs: [SocketAddr; 3]) -> Syncs {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    Self::read(&addrs, &seen);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Syncs {
            seen,
            stop,
            addrs,
            handle: Some(handle),
        }
    }

    fn read(addrs: &[SocketAddr; 3], seen: &Seen) {
        for (i, addr) in addrs.iter().enumerate() {
            let Ok(stats) = REDIS.info(*addr, "default") else {
                continue;
            };
            let Some(run_id) = stats.get("run_id") else {
                continue;
            };
            let now = [stats.sync_full(), stats.sync_partial_ok()];
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let entry = seen.entry((i, run_id.to_owned())).or_default();
            for (e, n) in entry.iter_mut().zip(now) {
                *e = (*e).max(n);
            }
        }
    }

    /// Reads every instance now.
    pub fn sample(&self) {
        Self::read(&self.addrs, &self.seen);
    }

    /// (full syncs, partial resyncs) served, summed over instances and runs.
    pub fn totals(&self) -> [i64; 2] {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().fold([0; 2], |mut t, v| {
            t[0] += v[0];
            t[1] += v[1];
            t
        })
    }
}

impl Drop for Syncs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Where each instance's log ends now: [`syncs_logged`] reads what comes after.
pub fn log_marks(l: &Layout) -> [u64; 3] {
    [0, 1, 2].map(|i| std::fs::metadata(l.log(i)).map(|m| m.len()).unwrap_or(0))
}

/// The syncs each instance's own log reports since `marks` (as a replica: `Full resync
/// from master`, `Master accepted a Partial Resynchronization`): (full, partial) each.
pub fn syncs_logged(l: &Layout, marks: [u64; 3]) -> [(u32, u32); 3] {
    [0, 1, 2].map(|i| {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(l.log(i)) {
            let _ = f.seek(std::io::SeekFrom::Start(marks[i]));
            let _ = f.read_to_string(&mut text);
        }
        text.lines()
            .filter_map(redisrepd_core::info::sync_kind_of)
            .fold((0, 0), |(f, p), k| match k {
                SyncKind::Full => (f + 1, p),
                SyncKind::Partial => (f, p + 1),
            })
    })
}

// ----- the naive way -------------------------------------------------------------------

/// redis-server processes started by hand on redisrepd's configs minus its sync
/// directives ([`naive::conf`]).
pub struct Naive {
    pub layout: Layout,
    confs: Vec<PathBuf>,
    procs: Vec<Option<Child>>,
}

impl Naive {
    pub fn setup(tag: &str, p: Persistence) -> Naive {
        let layout = Layout::create(tag, p);
        let checked = redisrepd_io::config_file::load(&layout.toml).expect("valid bench TOML");
        let g = checked.group;
        let mut confs = Vec::new();
        for name in NAMES {
            let inst = g
                .instances
                .iter()
                .find(|i| i.name == name)
                .expect("instance in TOML");
            std::fs::create_dir_all(g.data_path(inst)).expect("data dir");
            let path = layout.dir.join(format!("{name}.conf"));
            std::fs::write(&path, naive::conf(&g, inst)).expect("conf");
            confs.push(path);
        }
        Naive {
            layout,
            confs,
            procs: vec![None, None, None],
        }
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.layout.addrs[i]
    }

    pub fn start(&mut self, i: usize) -> Result<(), String> {
        let out = self.layout.dir.join(format!("{}.out", NAMES[i]));
        let child = spawn_logged(Command::new("redis-server").arg(&self.confs[i]), &out)?;
        self.procs[i] = Some(child);
        Ok(())
    }

    /// Until `i` answers with its data loaded.
    pub fn wait_up(&self, i: usize) -> Result<(), String> {
        let addr = self.addr(i);
        wait(
            &format!("{} answering", NAMES[i]),
            Duration::from_secs(120),
            || {
                let i = REDIS.info(addr, "persistence")?;
                (!i.loading())
                    .then_some(())
                    .ok_or_else(|| "loading".to_owned())
            },
        )
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// The master started, populated and saved; then both replicas, until in sync.
    pub fn start_group(&mut self, keys: u64, p: Persistence) -> Result<(), String> {
        self.start(0)?;
        self.wait_up(0)?;
        populate(self.addr(0), keys, p)?;
        self.start(1)?;
        self.start(2)?;
        wait("the group in sync", Duration::from_secs(300), || {
            in_shape(&self.layout.addrs, 0, false, true)
        })?;
        if !self.layout.resave {
            return Ok(());
        }
        save_with_replicas(self.addr(0))
    }
}

impl Drop for Naive {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
        for pid in redis_under(&self.layout.dir) {
            kill_pid(pid, Signal::SIGKILL);
        }
        self.layout.remove();
    }
}

// ----- redisrepd -----------------------------------------------------------------------

/// Two daemons: host `m` runs the master, host `r` both replicas.
pub struct Managed {
    pub layout: Layout,
    daemons: BTreeMap<&'static str, Child>,
}

impl Managed {
    pub fn setup(tag: &str, p: Persistence) -> Managed {
        Managed {
            layout: Layout::create(tag, p),
            daemons: BTreeMap::new(),
        }
    }

    pub fn daemon_log(&self, host: &str) -> PathBuf {
        self.layout.dir.join(format!("daemon-{host}.log"))
    }

    /// Starts the daemon for `host` and waits for its control socket.
    pub fn start_daemon(&mut self, host: &'static str) -> Result<(), String> {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.layout.toml)
            .args(["daemon", "--host", host]);
        let child = spawn_logged(&mut cmd, &self.daemon_log(host))?;
        self.daemons.insert(host, child);
        let sock = self.layout.dir.join("run").join(format!("{host}.sock"));
        wait(
            &format!("daemon {host}'s socket"),
            Duration::from_secs(60),
            || {
                sock.exists()
                    .then_some(())
                    .ok_or_else(|| "absent".to_owned())
            },
        )
    }

    /// Runs `redisrepd --config group.toml ARGS`, killed after `deadline`.
    pub fn cli(&self, args: &[&str], deadline: Duration) -> Run {
        common::cli(
            &self.layout.dir,
            &self.layout.toml,
            args,
            deadline,
            &interrupted,
        )
    }

    /// Until `status` exits 0 (every instance running, every replica in sync).
    pub fn wait_status_ok(&self, within: Duration) -> Result<(), String> {
        wait("`redisrepd status` exit 0", within, || {
            let r = self.cli(&["status"], Duration::from_secs(30));
            r.ok().then_some(()).ok_or_else(|| r.one_line())
        })
    }

    /// The pid in the instance's pid file (the daemon writes it).
    pub fn pid(&self, i: usize) -> Result<u32, String> {
        let f = self
            .layout
            .dir
            .join("run")
            .join(format!("{}.pid", NAMES[i]));
        std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|w| w.parse().ok()))
            .ok_or_else(|| format!("no pid in {}", f.display()))
    }

    /// SIGKILL to an instance, by its pid file.
    pub fn kill(&self, i: usize) -> Result<u32, String> {
        let pid = self.pid(i)?;
        kill_pid(pid, Signal::SIGKILL);
        Ok(pid)
    }

    /// Daemon `m` (the master), the master populated and saved, then daemon `r`, until
    /// the group is in sync and `status` says so.
    pub fn start_group(&mut self, keys: u64, p: Persistence) -> Result<(), String> {
        self.start_daemon("m")?;
        let master = self.layout.addrs[0];
        wait("the master answering", Duration::from_secs(120), || {
            let i = REDIS.info(master, "persistence")?;
            (!i.loading())
                .then_some(())
                .ok_or_else(|| "loading".to_owned())
        })?;
        populate(master, keys, p)?;
        self.start_daemon("r")?;
        wait("the group in sync", Duration::from_secs(300), || {
            in_shape(&self.layout.addrs, 0, false, true)
        })?;
        if self.layout.resave {
            save_with_replicas(master)?;
        }
        self.wait_status_ok(Duration::from_secs(120))
    }

    /// SIGKILL to the daemon of `host` (its host "dies"); its instances are left running.
    pub fn kill_daemon(&mut self, host: &str) {
        if let Some(mut d) = self.daemons.remove(host) {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// The last `lines` lines of a daemon's log.
    pub fn log_tail(&self, host: &str, lines: usize) -> String {
        let log = std::fs::read_to_string(self.daemon_log(host)).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        // The daemons first (SIGKILL: they restart nothing), then every instance left.
        for d in self.daemons.values_mut() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for pid in redis_under(&self.layout.dir) {
            kill_pid(pid, Signal::SIGKILL);
        }
        self.layout.remove();
    }
}

/// The instance that is the group's master with the other two in shape under it (see
/// [`in_shape`]), or why there is none.
pub fn find_shape(addrs: &[SocketAddr; 3], chain: bool, settled: bool) -> Result<usize, String> {
    let mut why = Vec::new();
    for i in 0..3 {
        match in_shape(addrs, i, chain, settled) {
            Ok(()) => return Ok(i),
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
}
