//! The soak: a bounded random sequence of stop/start, restart, SIGKILL and reload against
//! one host's master and two replicas under continuous writes. After every step the group
//! must come back healthy (`status` exits 0) and every acknowledged write must be on the
//! master and, once they have caught up with it, on both replicas. See bench/README.md.
//!
//! `cargo bench --bench soak -- [--steps N] [--seed S] [--rate W] [--max-minutes M] [--keep]`
//!
//! Owns: its temp dir, the daemons it starts and every redis-server working under that
//! dir; all are killed on exit, also on a panic or Ctrl-C. It never sleeps blindly: every
//! wait is for a condition, with a deadline.

mod common;

use clap::Parser;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{free_port, int};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redisrepd_testkit::redis_and_forks_under as redis_under;
use redisrepd_testkit::{Target, Writer, WriterOpts};
use serde_json::Value;

use common::{BIN, Run};
const PASSWORD: &str = "soak-password-7Qx";
/// How the bench reaches its instances.
const REDIS: common::Redis = common::Redis {
    password: PASSWORD,
    info_within: Duration::from_secs(2),
    io: IO_TIMEOUT,
};
const REPLICAS: [&str; 2] = ["r1", "r2"];
/// The two values `maxmemory-policy` alternates between (harmless: `maxmemory` is 0).
const POLICIES: [&str; 2] = ["noeviction", "allkeys-lru"];

/// Longest a verb may run before the soak calls it hung.
const VERB_DEADLINE: Duration = Duration::from_secs(300);
/// Longest the group may take to be healthy again after a step.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(180);
/// Longest a replica may take to reach the master's offset once the writer is paused.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

struct Opts {
    steps: u64,
    seed: u64,
    rate: u64,
    max_minutes: u64,
    keep: bool,
}

/// The command line (`cargo bench --bench soak -- --help`).
#[derive(Parser)]
#[command(about = "Random operator steps against one redisrepd group under writes")]
struct Args {
    /// Steps to take.
    #[arg(long, default_value_t = 500)]
    steps: u64,
    /// The seed of the steps (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Writes per second.
    #[arg(long, default_value_t = 300)]
    rate: u64,
    /// Stop stepping after this many minutes.
    #[arg(long, default_value_t = 40)]
    max_minutes: u64,
    #[command(flatten)]
    common: common::BenchArgs,
}

fn opts() -> Opts {
    let a = Args::parse();
    Opts {
        steps: a.steps,
        seed: a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        }),
        rate: a.rate,
        max_minutes: a.max_minutes,
        keep: a.common.keep,
    }
}

// ----- faults --------------------------------------------------------------------------

/// One kind of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    StopStartReplica,
    RestartReplica,
    RestartMaster,
    RestartAll,
    KillReplica,
    KillMaster,
    ReloadUnchanged,
    ReloadChanged,
    KillDaemon,
}

const KINDS: [Kind; 9] = [
    Kind::StopStartReplica,
    Kind::RestartReplica,
    Kind::RestartMaster,
    Kind::RestartAll,
    Kind::KillReplica,
    Kind::KillMaster,
    Kind::ReloadUnchanged,
    Kind::ReloadChanged,
    Kind::KillDaemon,
];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::StopStartReplica => "`stop` + `start` a replica",
            Kind::RestartReplica => "`restart` a replica",
            Kind::RestartMaster => "`restart master`",
            Kind::RestartAll => "`restart --all`",
            Kind::KillReplica => "SIGKILL a replica",
            Kind::KillMaster => "SIGKILL the master",
            Kind::ReloadUnchanged => "`reload`, file unchanged",
            Kind::ReloadChanged => "`reload`, a replica's directive changed (live)",
            Kind::KillDaemon => "SIGKILL the daemon, start a new one",
        }
    }

    fn takes_replica(self) -> bool {
        matches!(
            self,
            Kind::StopStartReplica | Kind::RestartReplica | Kind::KillReplica | Kind::ReloadChanged
        )
    }
}

/// What the soak counted, per kind and in total.
#[derive(Default)]
struct Tally {
    steps: u64,
    by_kind: BTreeMap<Kind, KindTally>,
    failed_started: u64,
    check_s: f64,
}

#[derive(Default)]
struct KindTally {
    count: u64,
    forced: u64,
    healthy_s: Vec<f64>,
}

// ----- the group -----------------------------------------------------------------------

/// The soak's group: its dir, TOML, addresses, daemon. Dropping it kills the daemon and
/// every redis-server working under the dir.
struct Group {
    dir: PathBuf,
    toml: PathBuf,
    log: PathBuf,
    addrs: BTreeMap<&'static str, SocketAddr>,
    policy: BTreeMap<&'static str, usize>,
    daemon: Option<Child>,
    keep_dir: bool,
}

impl Group {
    fn new() -> Group {
        let dir = common::fresh_dir("soak");
        let mut addrs = BTreeMap::new();
        for name in ["master", "r1", "r2"] {
            addrs.insert(name, SocketAddr::from(([127, 0, 0, 1], free_port())));
        }
        let password = dir.join("password");
        std::fs::write(&password, format!("{PASSWORD}\n")).expect("password file");
        std::fs::set_permissions(
            &password,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod password");
        let g = Group {
            toml: dir.join("group.toml"),
            log: dir.join("daemon.log"),
            dir,
            addrs,
            policy: REPLICAS.iter().map(|r| (*r, 0)).collect(),
            daemon: None,
            keep_dir: false,
        };
        g.write_toml();
        g
    }

    fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    fn toml_text(&self) -> String {
        let mut t = String::from(
            "[cluster]\nname = \"soak\"\npassword_file = \"password\"\nrun_dir = \"run\"\n\
             data_dir = \"data\"\n\n\
             [supervise]\nstart_timeout = \"60s\"\nshutdown_timeout = \"30s\"\n\
             restart_delay = \"100ms\"\nrestart_delay_max = \"1s\"\nhealth_interval = \"100ms\"\n\
             crash_loop_limit = 1000\nsync_timeout = \"120s\"\n\n\
             [redis]\nsave = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"\n\n",
        );
        for (name, addr) in &self.addrs {
            let _ = write!(
                t,
                "[[instance]]\nname = \"{name}\"\nhost = \"a\"\nbind = \"{}\"\nport = {}\n",
                addr.ip(),
                addr.port()
            );
            if let Some(p) = self.policy.get(name) {
                let _ = write!(
                    t,
                    "replica_of = \"master\"\n[instance.redis]\nmaxmemory-policy = \"{}\"\n",
                    POLICIES[*p]
                );
            }
            t.push('\n');
        }
        t
    }

    /// Writes group.toml atomically (temp file + rename).
    fn write_toml(&self) {
        let tmp = self.dir.join("group.toml.tmp");
        std::fs::write(&tmp, self.toml_text()).expect("writing group.toml");
        std::fs::rename(&tmp, &self.toml).expect("renaming group.toml");
    }

    /// A line in the daemon log, so the log reads alongside the steps.
    fn mark(&self, line: &str) {
        if let Ok(mut f) = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            let _ = writeln!(f, "===== soak: {line}");
        }
    }

    fn start_daemon(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.toml)
            .args(["daemon", "--host", "a"])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("daemon log"))
            .stderr(log);
        // Its own process group: a Ctrl-C in the terminal reaches only the soak.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.daemon = Some(cmd.spawn().expect("starting redisrepd daemon"));
    }

    fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// `Some(status)` when the daemon has exited on its own.
    fn daemon_exited(&mut self) -> Option<String> {
        let d = self.daemon.as_mut()?;
        match d.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Runs `redisrepd --config group.toml ARGS` with a deadline.
    fn cli(&self, args: &[&str], deadline: Duration) -> Run {
        common::cli(&self.dir, &self.toml, args, deadline, &|| false)
    }

    /// `status --json`: the run and the records by name.
    fn status(&self) -> (Run, BTreeMap<String, Value>) {
        let run = self.cli(&["status", "--json"], Duration::from_secs(30));
        let records = serde_json::from_str::<Value>(&run.stdout)
            .ok()
            .and_then(|doc| doc["instances"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i["name"].as_str().unwrap_or_default().to_owned(), i))
            .collect();
        (run, records)
    }

    /// The pid of each instance as its daemon reports it.
    fn pids(&self) -> BTreeMap<String, u32> {
        self.status()
            .1
            .into_iter()
            .filter_map(|(n, r)| Some((n, r["pid"].as_u64()? as u32)))
            .collect()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The daemon first (SIGKILL: it restarts nothing), then every instance left.
        self.kill_daemon();
        for pid in redis_under(&self.dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if self.keep_dir {
            eprintln!("soak: files kept in {}", self.dir.display());
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !redis_under(&self.dir).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ----- Redis ---------------------------------------------------------------------------

/// Room for slow replies (a check reads thousands of keys per pipeline).
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The acknowledged keys `addr` lacks (or holds with another value).
fn missing_on(addr: SocketAddr, acked: &[u64]) -> Result<Vec<u64>, String> {
    let mut con = REDIS
        .connect(addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    redisrepd_testkit::missing_keys(&mut con, "soak:", acked).map_err(|e| e.to_string())
}

// ----- the writer ----------------------------------------------------------------------

/// The testkit's writer: `SET soak:<n> <n>` to the master at `rate` per second (0: as
/// fast as it can), a write acknowledged on its `OK`; a failed connection is retried
/// after 20 ms. The soak pauses it (between two writes) to check.
fn writer(master: SocketAddr, rate: u64) -> Writer {
    Writer::start(
        Target::Fixed(master),
        WriterOpts {
            password: Some(PASSWORD.to_owned()),
            prefix: "soak:".to_owned(),
            pause: Duration::ZERO,
            rate,
            backoff: (Duration::from_millis(20), Duration::from_millis(20)),
            connect_timeout: Duration::from_millis(500),
            io_timeout: IO_TIMEOUT,
            max_run: Duration::from_secs(24 * 3600),
            ..WriterOpts::default()
        },
    )
}

// ----- full and partial syncs served by the master ------------------------------------

/// Reads the master's `sync_full` / `sync_partial_ok` / `sync_partial_err` every 100 ms
/// and keeps the last values seen per `run_id`: the counters start from 0 at each master
/// restart, so the totals are the sums over run ids.
struct SyncCounter {
    seen: Arc<Mutex<BTreeMap<String, [i64; 3]>>>,
    stop: Arc<AtomicBool>,
    master: SocketAddr,
    handle: Option<JoinHandle<()>>,
}

impl SyncCounter {
    fn start(master: SocketAddr) -> SyncCounter {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    Self::read(master, &seen);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        SyncCounter {
            seen,
            stop,
            master,
            handle: Some(handle),
        }
    }

    fn read(master: SocketAddr, seen: &Mutex<BTreeMap<String, [i64; 3]>>) {
        let Ok(stats) = REDIS.info(master, "default") else {
            return;
        };
        let Some(run_id) = stats.get("run_id") else {
            return;
        };
        let now = [
            stats.sync_full(),
            stats.sync_partial_ok(),
            int(&stats, "sync_partial_err"),
        ];
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(run_id.to_owned()).or_default();
        for (e, n) in entry.iter_mut().zip(now) {
            *e = (*e).max(n);
        }
    }

    /// Reads the counters now: before the master is restarted or killed.
    fn sample(&self) {
        Self::read(self.master, &self.seen);
    }

    /// (full syncs, partial resyncs accepted, partial resyncs refused), summed over runs.
    fn totals(&self) -> [i64; 3] {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().fold([0; 3], |mut t, v| {
            for (t, v) in t.iter_mut().zip(v) {
                *t += v;
            }
            t
        })
    }

    fn master_runs(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for SyncCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ----- the soak ------------------------------------------------------------------------

/// Why the soak stopped early.
struct Failure {
    step: u64,
    what: String,
}

struct Soak<'a> {
    g: Group,
    writer: Writer,
    syncs: SyncCounter,
    tally: Tally,
    lost: Vec<(String, u64)>,
    interrupted: &'a AtomicBool,
    step: u64,
}

impl Soak<'_> {
    fn fail(&self, what: String) -> Failure {
        Failure {
            step: self.step,
            what,
        }
    }

    /// A verb that must succeed; `stop`/`restart` refused for min-replicas reasons are
    /// retried with `--force` (counted).
    fn verb(&mut self, kind: Kind, args: &[&str]) -> Result<(), Failure> {
        let run = self.g.cli(args, VERB_DEADLINE);
        if run.code == Some(0) {
            return Ok(());
        }
        let refused = run.stderr.contains("--force") && run.stderr.contains("refused");
        if refused && matches!(args.first(), Some(&"stop" | &"restart")) {
            let mut forced = vec![args[0], "--force"];
            forced.extend(&args[1..]);
            self.tally.by_kind.entry(kind).or_default().forced += 1;
            let again = self.g.cli(&forced, VERB_DEADLINE);
            if again.code == Some(0) {
                return Ok(());
            }
            return Err(self.fail(format!("{run}\nthen with --force:\n{again}")));
        }
        Err(self.fail(format!("a verb failed:\n{run}")))
    }

    fn kill(&self, name: &str, pids: &BTreeMap<String, u32>) -> Result<u32, Failure> {
        let pid = *pids
            .get(name)
            .ok_or_else(|| self.fail(format!("no pid for `{name}` in status")))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)
            .map_err(|e| self.fail(format!("kill -9 {pid} (`{name}`): {e}")))?;
        Ok(pid)
    }

    /// Runs one step: the fault, then waits until the group is healthy again, with the
    /// instances it restarts under a new pid and the ones it must leave alone under the
    /// same pid as before.
    fn step(&mut self, kind: Kind, replica: &'static str) -> Result<(), Failure> {
        let pids = self.g.pids();
        if pids.len() != 3 {
            return Err(self.fail(format!("status reports pids {pids:?}, not three")));
        }
        let mut must_change: Vec<(&str, u32)> = Vec::new();
        let mut must_keep: Vec<(&str, u32)> = Vec::new();
        let pid_of = |n: &str| pids.get(n).copied().unwrap_or(0);
        if matches!(
            kind,
            Kind::RestartMaster | Kind::RestartAll | Kind::KillMaster
        ) {
            self.syncs.sample();
        }
        match kind {
            Kind::StopStartReplica => {
                self.verb(kind, &["stop", replica])?;
                self.verb(kind, &["start", replica])?;
                must_change.push((replica, pid_of(replica)));
            }
            Kind::RestartReplica => {
                self.verb(kind, &["restart", replica])?;
                must_change.push((replica, pid_of(replica)));
            }
            Kind::RestartMaster => {
                self.verb(kind, &["restart", "master"])?;
                must_change.push(("master", pid_of("master")));
            }
            Kind::RestartAll => {
                self.verb(kind, &["restart", "--all"])?;
                for n in ["master", "r1", "r2"] {
                    must_change.push((n, pid_of(n)));
                }
            }
            Kind::KillReplica => {
                let pid = self.kill(replica, &pids)?;
                must_change.push((replica, pid));
            }
            Kind::KillMaster => {
                let pid = self.kill("master", &pids)?;
                must_change.push(("master", pid));
            }
            Kind::ReloadUnchanged => {
                self.verb(kind, &["reload"])?;
                for n in ["master", "r1", "r2"] {
                    must_keep.push((n, pid_of(n)));
                }
            }
            Kind::ReloadChanged => {
                if let Some(p) = self.g.policy.get_mut(replica) {
                    *p = 1 - *p;
                }
                self.g.write_toml();
                self.verb(kind, &["reload"])?;
                // `maxmemory-policy` is applied live (CONFIG SET, no restart): every
                // instance keeps its pid, and the replica answers the new value.
                let want = POLICIES[self.g.policy[replica]];
                let got: Result<String, String> = REDIS
                    .connect(self.g.addrs[replica], IO_TIMEOUT)
                    .and_then(|mut c| {
                        redis::cmd("CONFIG")
                            .arg("GET")
                            .arg("maxmemory-policy")
                            .query::<Vec<String>>(&mut c)
                    })
                    .map(|pair| pair.get(1).cloned().unwrap_or_default())
                    .map_err(|e| e.to_string());
                if got.as_deref() != Ok(want) {
                    return Err(self.fail(format!(
                        "after the reload `{replica}` has maxmemory-policy {got:?}, not `{want}`"
                    )));
                }
                for n in ["master", "r1", "r2"] {
                    must_keep.push((n, pid_of(n)));
                }
            }
            Kind::KillDaemon => {
                self.g.kill_daemon();
                self.g.mark("daemon SIGKILLed; starting a new one");
                self.g.start_daemon();
                for n in ["master", "r1", "r2"] {
                    must_keep.push((n, pid_of(n)));
                }
            }
        }
        self.wait_healthy(&must_change, &must_keep)
    }

    /// Waits until `status` exits 0 with every instance running under a pid its daemon
    /// reports; `start`s an instance that is `failed` (counted).
    fn wait_healthy(
        &mut self,
        must_change: &[(&str, u32)],
        must_keep: &[(&str, u32)],
    ) -> Result<(), Failure> {
        let until = Instant::now() + HEALTHY_DEADLINE;
        loop {
            if let Some(status) = self.g.daemon_exited() {
                return Err(self.fail(format!("the daemon exited on its own ({status})")));
            }
            let (run, records) = self.g.status();
            let mut complaint = None;
            for (name, rec) in &records {
                if rec["state"] == "failed" {
                    self.g.mark(&format!("`{name}` is failed: start it"));
                    self.tally.failed_started += 1;
                    let start = self.g.cli(&["start", name], VERB_DEADLINE);
                    if start.code != Some(0) {
                        return Err(self.fail(format!("`{name}` failed, and:\n{start}")));
                    }
                }
            }
            if run.code != Some(0) {
                complaint = Some(format!("status exits {:?}", run.code));
            } else if !run.stderr.trim().is_empty() {
                complaint = Some(format!("status complains: {}", run.stderr.trim()));
            } else if records.len() != 3 || records.values().any(|r| r["pid"].is_null()) {
                complaint = Some("not every instance reported by the daemon".to_owned());
            }
            let pid = |n: &str| records.get(n).and_then(|r| r["pid"].as_u64());
            for (n, old) in must_change {
                if complaint.is_none() && pid(n) == Some(u64::from(*old)) {
                    complaint = Some(format!("`{n}` still runs under its old pid {old}"));
                }
            }
            if complaint.is_none() {
                for (n, old) in must_keep {
                    if pid(n) != Some(u64::from(*old)) {
                        // A real finding, not a wait: the step must not restart it.
                        return Err(self.fail(format!(
                            "`{n}` was restarted (pid {old} -> {:?}) by a step that must leave it running",
                            pid(n)
                        )));
                    }
                }
                return Ok(());
            }
            let complaint = complaint.unwrap_or_default();
            if Instant::now() >= until || self.interrupted.load(Ordering::Relaxed) {
                let table = self.g.cli(&["status"], Duration::from_secs(30));
                return Err(self.fail(format!(
                    "not healthy within {HEALTHY_DEADLINE:?}: {complaint}\n{table}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pauses the writer and checks every acknowledged key: on the master, then on each
    /// replica once it follows the master's replication id at or past the master's offset
    /// (every acknowledged write is below that offset, or in the data set it synced).
    fn check(&mut self) -> Result<(), Failure> {
        let started = Instant::now();
        let paused = self.writer.pause();
        let acked = &paused.acked_numbers();
        let master = self.g.addr("master");
        let stop = self.interrupted;
        let missing = common::wait_for(CATCH_UP_DEADLINE, stop, || missing_on(master, acked))
            .map_err(|e| self.fail(format!("reading the master: {e}")))?;
        if !missing.is_empty() {
            self.lost
                .extend(missing.iter().map(|n| ("master".to_owned(), *n)));
            return Err(self.fail(format!(
                "{} of {} acknowledged writes missing on the master, first {:?}",
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(10)]
            )));
        }
        for r in REPLICAS {
            let addr = self.g.addr(r);
            common::wait_for(CATCH_UP_DEADLINE, stop, || {
                // The master's id and offset are read anew each time: a master restarted
                // without a backlog takes a new replication id when its first replica
                // connects, and `status` may have said "in sync" just before that (its
                // records are as old as the last probe).
                let m = REDIS
                    .info(master, "replication")
                    .map_err(|e| format!("master: {e}"))?;
                let replid = m.get("master_replid").unwrap_or_default();
                let offset = m.repl_offset().unwrap_or(0);
                let i = REDIS.info(addr, "replication")?;
                let (link, id, off) = (
                    i.get("master_link_status").unwrap_or_default(),
                    i.get("master_replid").unwrap_or_default(),
                    int(&i, "slave_repl_offset"),
                );
                if link == "up" && id == replid && off >= offset {
                    Ok(())
                } else {
                    Err(format!(
                        "`{r}`: link {link}, replid {id} offset {off}; master {replid} {offset}"
                    ))
                }
            })
            .map_err(|e| self.fail(format!("`{r}` does not catch up: {e}")))?;
            let missing = common::wait_for(CATCH_UP_DEADLINE, stop, || missing_on(addr, acked))
                .map_err(|e| self.fail(format!("reading `{r}`: {e}")))?;
            if !missing.is_empty() {
                self.lost.extend(missing.iter().map(|n| (r.to_owned(), *n)));
                return Err(self.fail(format!(
                    "{} of {} acknowledged writes missing on `{r}` (at the master's offset), first {:?}",
                    missing.len(),
                    acked.len(),
                    &missing[..missing.len().min(10)]
                )));
            }
        }
        drop(paused);
        self.tally.check_s += started.elapsed().as_secs_f64();
        Ok(())
    }
}

fn main() {
    let o = opts();
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone()).expect("signal handler");
    }
    let ok = run(&o, &interrupted);
    std::process::exit(if ok { 0 } else { 1 });
}

/// The whole soak; `false` when it found a problem. Everything it started is gone when it
/// returns (the guards drop here), also when it panics.
fn run(o: &Opts, interrupted: &AtomicBool) -> bool {
    eprintln!(
        "soak: {} steps, seed {}, writer at {}, at most {} min",
        o.steps,
        o.seed,
        if o.rate == 0 {
            "full speed".to_owned()
        } else {
            format!("{} writes/s", o.rate)
        },
        o.max_minutes
    );
    let began = Instant::now();
    let mut g = Group::new();
    g.keep_dir = o.keep;
    g.start_daemon();
    let master = g.addr("master");
    let mut soak = Soak {
        writer: writer(master, o.rate),
        syncs: SyncCounter::start(master),
        g,
        tally: Tally::default(),
        lost: Vec::new(),
        interrupted,
        step: 0,
    };
    let mut rng = StdRng::seed_from_u64(o.seed);
    let limit = Duration::from_secs(o.max_minutes * 60);
    let mut stopped_by = None;
    let mut failure = soak
        .wait_healthy(&[], &[])
        .and_then(|()| soak.check())
        .err();
    while failure.is_none() && soak.step < o.steps {
        if interrupted.load(Ordering::Relaxed) {
            stopped_by = Some("interrupted");
            break;
        }
        if began.elapsed() >= limit {
            stopped_by = Some("time limit");
            break;
        }
        let kind = KINDS[rng.random_range(0..KINDS.len())];
        let replica = REPLICAS[rng.random_range(0..REPLICAS.len())];
        soak.step += 1;
        let what = if kind.takes_replica() {
            format!("{} ({replica})", kind.label())
        } else {
            kind.label().to_owned()
        };
        soak.g
            .mark(&format!("step {}/{}: {what}", soak.step, o.steps));
        let t = Instant::now();
        let result = soak.step(kind, replica);
        let healthy_s = t.elapsed().as_secs_f64();
        let result = result.and_then(|()| soak.check());
        let k = soak.tally.by_kind.entry(kind).or_default();
        k.count += 1;
        k.healthy_s.push(healthy_s);
        soak.tally.steps += 1;
        eprintln!(
            "soak: step {:>3}/{}: {what:<48} healthy after {healthy_s:5.1}s, {} writes acknowledged",
            soak.step,
            o.steps,
            soak.writer.acked()
        );
        failure = result.err();
    }
    if interrupted.load(Ordering::Relaxed) && soak.lost.is_empty() {
        // Ctrl-C cuts waits short: what they complain about then is no finding.
        failure = None;
        stopped_by = Some("interrupted");
    }
    if let Some(f) = &failure {
        soak.g.keep_dir = true;
        eprintln!(
            "\nsoak: FAILED at step {}: {}\n\n--- daemon log (last 60 lines):\n{}\n",
            f.step,
            f.what,
            soak.g.log_tail(60)
        );
    }
    soak.syncs.sample();
    let seen = soak.writer.finish().seen;
    let (acked, not_acked) = (seen.acked.len(), seen.failed_writes());
    let syncs = soak.syncs.totals();
    print_report(
        o,
        &soak.tally,
        Report {
            acked,
            not_acked,
            lost: soak.lost.len(),
            syncs,
            master_runs: soak.syncs.master_runs(),
            seconds: began.elapsed().as_secs_f64(),
            stopped_by,
            failed: failure.is_some(),
        },
    );
    failure.is_none() && stopped_by != Some("interrupted")
}

struct Report {
    acked: usize,
    not_acked: BTreeMap<String, u64>,
    lost: usize,
    syncs: [i64; 3],
    master_runs: usize,
    seconds: f64,
    stopped_by: Option<&'static str>,
    failed: bool,
}

fn print_report(o: &Opts, t: &Tally, r: Report) {
    let outcome = match (r.failed, r.stopped_by) {
        (true, _) => "FAILED (see above)".to_owned(),
        (false, Some(why)) => format!("stopped early: {why}"),
        (false, None) => "passed".to_owned(),
    };
    println!("\n| soak | |\n|---|---|");
    println!("| outcome | {outcome} |");
    println!("| seed | {} |", o.seed);
    println!("| steps run | {} of {} |", t.steps, o.steps);
    println!(
        "| faults injected | {} (+ {} `start` of a `failed` instance) |",
        t.steps, t.failed_started
    );
    println!("| writes acknowledged | {} |", r.acked);
    let why: Vec<String> = r
        .not_acked
        .iter()
        .map(|(why, n)| format!("{n} {why}"))
        .collect();
    println!(
        "| writes sent but not acknowledged (master down or restarting) | {} ({}) |",
        r.not_acked.values().sum::<u64>(),
        if why.is_empty() {
            "none".to_owned()
        } else {
            why.join(", ")
        }
    );
    println!("| **writes lost** | **{}** |", r.lost);
    println!(
        "| full syncs served by the master | {} (over {} master runs) |",
        r.syncs[0], r.master_runs
    );
    println!(
        "| partial resyncs served / refused | {} / {} |",
        r.syncs[1], r.syncs[2]
    );
    println!("| time checking writes | {:.1} s |", t.check_s);
    println!(
        "| total time | {:.0} s ({:.1} min) |",
        r.seconds,
        r.seconds / 60.0
    );
    println!("\n| fault | count | `--force` needed | s until healthy: mean / max |");
    println!("|---|---|---|---|");
    for (kind, k) in &t.by_kind {
        let mean = k.healthy_s.iter().sum::<f64>() / k.healthy_s.len().max(1) as f64;
        let max = k.healthy_s.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {} | {} | {mean:.1} / {max:.1} |",
            kind.label(),
            k.count,
            k.forced
        );
    }
}
