//! The fault-sequence checker: a seeded, reproducible run of random faults against a real
//! two-host group under a writer that records every write `WAIT 1` acknowledged, with the
//! group's promises checked after every step. See bench/README.md.
//!
//! `cargo bench --bench faults -- [--seed N] [--steps N] [--persistence rdb|aof-everysec|aof-always|all] [--server PATH] [--keep]`
//! (also `--keep-going`, `--from N`, `--kinds K,K`, `--loopback`; `--help` says what each
//! does). `.ci/run` runs it as `cargo test --bench faults -- …`: the same, in a debug build.
//!
//! The hosts: two network namespaces joined by a veth pair when run as root (the checker
//! itself, its CLI calls and its writer live in host `b`'s namespace), two loopback
//! addresses otherwise. One daemon per host; `master` and `r1` on host `a`, `r2` and `r3`
//! on host `b`, all replicas of `master` in the file.
//!
//! The steps are a pure function of the seed (drawn before the run and printed as they
//! run); what a step aims at ("the master", "the 2nd replica") is resolved against the
//! group as it is then. After each step, with the writer paused and within a bound: exactly
//! one instance answers as master (the one the last role-changing verb made master: a
//! crashed master's catch-up has handed the role back), every other one replicates from
//! it, link up, in sync; every acknowledged write is on it. The first broken promise stops the run with the
//! seed, the steps so far and the evidence, and exit status 1.
//!
//! Owns: its temp dir, its namespaces, its daemons and every server working under the dir;
//! all are killed on exit, also on a panic or Ctrl-C.

mod common;
mod load;
mod naive;
mod trio;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redisrepd_core::info::Info;

use load::Load;
use trio::{PASSWORD, Run};

/// The instances, in this order everywhere, and the host of each.
const NAMES: [&str; 4] = ["master", "r1", "r2", "r3"];
const HOST_OF: [usize; 4] = [0, 0, 1, 1];
const HOSTS: [&str; 2] = ["a", "b"];
/// The writer's keys: `faults:<n>` = `n`.
const PREFIX: &str = "faults:";
/// The two values of `maxmemory-policy` a reload alternates (harmless: `maxmemory` is 0).
const POLICIES: [&str; 2] = ["noeviction", "allkeys-lru"];

/// Longest a verb may run.
const VERB_DEADLINE: Duration = Duration::from_secs(120);
/// Longest the group may take, after a step, to have one master and every replica in
/// sync with it.
const SETTLE: Duration = Duration::from_secs(60);
/// Longest the acknowledged writes may take to show on a settled master.
const READ_BACK: Duration = Duration::from_secs(5);
/// How far (bytes) a replica's offset may trail its master's with the writer paused (the
/// master's pings to its replicas move its offset too).
const OFFSET_SLACK: i64 = 1024;
/// A step slower than this has its daemons' logs printed (no failure: no promise says how
/// long a verb takes).
const SLOW_STEP: Duration = Duration::from_secs(20);
/// Writes acknowledged before each fault, so that it has something to lose.
const WRITES_BEFORE: u64 = 30;

#[derive(Parser)]
#[command(
    about = "Seeded fault sequences against a two-host redisrepd group; checks that no acknowledged write is lost",
    // Here the temp dir goes unless a check failed.
    mut_arg("keep", |a| a.help("Keep the temp dir (configs, data, logs) when a check fails"))
)]
struct Args {
    /// The seed of the step list (default: random; always printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// Steps per persistence mode.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Persistence of the group; `all` runs the three one after another with the same seed.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    persistence: Mode,
    /// The server the instances run (redis-server or valkey-server).
    #[arg(long, default_value = "redis-server")]
    server: PathBuf,
    /// Start at this step of the seed's list (1-based): replays a failure found after a
    /// `--keep-going` restart.
    #[arg(long, default_value_t = 1)]
    from: usize,
    /// After a failure, report it, make a fresh group and go on with the next step.
    #[arg(long)]
    keep_going: bool,
    /// Only these kinds of step (comma-separated; default: all but reload-bad).
    #[arg(long, value_enum, value_delimiter = ',')]
    kinds: Vec<Kind>,
    /// Loopback addresses even when root (no network namespaces).
    #[arg(long)]
    loopback: bool,
    #[command(flatten)]
    common: common::BenchArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Rdb,
    AofEverysec,
    AofAlways,
    All,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Rdb => "rdb",
            Mode::AofEverysec => "aof-everysec",
            Mode::AofAlways => "aof-always",
            Mode::All => "all",
        }
    }

    /// The `[redis]` persistence lines.
    fn redis(self) -> &'static str {
        match self {
            Mode::Rdb | Mode::All => "save = [\"3600 1\"]\nappendonly = \"no\"\n",
            Mode::AofEverysec => {
                "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"everysec\"\n"
            }
            Mode::AofAlways => {
                "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"\n"
            }
        }
    }
}

// ----- the steps -----------------------------------------------------------------------

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Kind {
    /// `restart NAME`, any instance.
    Restart,
    KillMaster,
    KillReplica,
    /// SIGKILL a daemon, start a new one.
    KillDaemon,
    /// SIGTERM a daemon (it stops its instances), start a new one.
    RebootHost,
    /// `failover --to` a replica, the group checked, `failover --to` the old master.
    FailoverAndBack,
    /// The same with no pause between the two.
    FailoverBackToBack,
    /// The master's host dies (daemon and instances SIGKILLed), `promote` a replica of the
    /// other host, the host comes back.
    PromoteAfterHostLoss,
    /// A `maxmemory-policy` changed on one instance, `reload`.
    Reload,
    /// A misspelt directive (`maxmemroy`) added, `reload` (must be refused and change
    /// nothing), the file put back, `reload` (must succeed and change nothing).
    ReloadBad,
    RestartAll,
}

/// The default mix. [`Kind::ReloadBad`] is left out (only `--kinds` selects it), so that
/// the seeds recorded in bench/README.md keep replaying the same steps.
const KINDS: [Kind; 10] = [
    Kind::Restart,
    Kind::KillMaster,
    Kind::KillReplica,
    Kind::KillDaemon,
    Kind::RebootHost,
    Kind::FailoverAndBack,
    Kind::FailoverBackToBack,
    Kind::PromoteAfterHostLoss,
    Kind::Reload,
    Kind::RestartAll,
];

/// One step: a kind and a number that picks its target among those that exist when it
/// runs (an instance, a replica of the master, a host).
#[derive(Clone, Copy)]
struct Step {
    kind: Kind,
    pick: usize,
}

impl Kind {
    /// The kind in words, for the report.
    fn label(self) -> &'static str {
        match self {
            Kind::Restart => "`restart` an instance",
            Kind::KillMaster => "SIGKILL the master",
            Kind::KillReplica => "SIGKILL a replica",
            Kind::KillDaemon => "SIGKILL a daemon, start a new one",
            Kind::RebootHost => "reboot a host (daemon SIGTERM + start)",
            Kind::FailoverAndBack => "`failover --to` a replica, check, and back",
            Kind::FailoverBackToBack => "`failover --to` a replica and back, back to back",
            Kind::PromoteAfterHostLoss => "the master's host dies, `promote`, host back",
            Kind::Reload => "`reload`, a directive changed",
            Kind::ReloadBad => "`reload` of a misspelt directive, refused; file restored",
            Kind::RestartAll => "`restart --all`",
        }
    }
}

impl Step {
    /// What the step does, as the seed alone says it.
    fn describe(self) -> String {
        let p = self.pick;
        match self.kind {
            Kind::Restart => format!("`restart {}`", NAMES[p % NAMES.len()]),
            Kind::KillMaster => "SIGKILL the master".to_owned(),
            Kind::KillReplica => format!("SIGKILL replica #{}", p % 3 + 1),
            Kind::KillDaemon => format!("SIGKILL daemon {}, start a new one", HOSTS[p % 2]),
            Kind::RebootHost => format!("reboot host {} (daemon SIGTERM + start)", HOSTS[p % 2]),
            Kind::FailoverAndBack => format!("`failover --to` replica #{} and back", p % 3 + 1),
            Kind::FailoverBackToBack => {
                format!(
                    "`failover --to` replica #{} and back, back to back",
                    p % 3 + 1
                )
            }
            Kind::PromoteAfterHostLoss => "the master's host dies, `promote`".to_owned(),
            Kind::Reload => format!("`reload`, {}'s maxmemory-policy changed", NAMES[p % 4]),
            Kind::ReloadBad => {
                "`reload` of a misspelt directive, then of the file restored".to_owned()
            }
            Kind::RestartAll => "`restart --all`".to_owned(),
        }
    }
}

/// The step list of a seed: a pure function of it (and of the kinds allowed).
fn plan(seed: u64, steps: usize, kinds: &[Kind]) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..steps)
        .map(|_| Step {
            kind: kinds[rng.random_range(0..kinds.len())],
            pick: rng.random_range(0..12),
        })
        .collect()
}

// ----- the hosts -----------------------------------------------------------------------

/// Where the hosts are: network namespaces (root) or loopback addresses.
struct Hosts {
    ips: [IpAddr; 2],
    /// The namespaces, host `a`'s then host `b`'s; `None` on loopback.
    netns: Option<([String; 2], redisrepd_testkit::netns::Netns)>,
}

impl Hosts {
    fn new(loopback: bool) -> Hosts {
        let root = nix::unistd::geteuid().is_root() && which::which("ip").is_ok();
        if loopback || !root {
            return Hosts {
                ips: [
                    "127.0.0.111".parse().expect("an IP"),
                    "127.0.0.112".parse().expect("an IP"),
                ],
                netns: None,
            };
        }
        let pid = std::process::id();
        let names = [format!("rrd-{pid}-fa"), format!("rrd-{pid}-fb")];
        let veths = [format!("rrd{pid}fa"), format!("rrd{pid}fb")];
        let ips = ["192.168.77.101", "192.168.77.102"];
        let ns = redisrepd_testkit::netns::Netns::pair(
            [&names[0], &names[1]],
            [&veths[0], &veths[1]],
            ips,
        );
        Hosts {
            ips: ips.map(|i| i.parse().expect("an IP")),
            netns: Some((names, ns)),
        }
    }

    fn describe(&self) -> String {
        match &self.netns {
            Some((names, _)) => format!(
                "network namespaces {} ({}) and {} ({})",
                names[0], self.ips[0], names[1], self.ips[1]
            ),
            None => format!("loopback addresses {} and {}", self.ips[0], self.ips[1]),
        }
    }

    /// Runs `f` where host `b` is: in its namespace (threads and processes started from
    /// there are in it too), or here.
    fn run_in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.netns {
            Some((names, _)) => redisrepd_testkit::netns::in_ns(&names[1], f),
            None => f(),
        }
    }
}

// ----- the group -----------------------------------------------------------------------

/// One run's group: dir, TOML, addresses, daemons. Dropping it kills the daemons and
/// every server working under the dir, and removes the dir unless it is to be kept.
struct Group {
    dir: PathBuf,
    toml: PathBuf,
    addrs: [SocketAddr; 4],
    server: PathBuf,
    mode: Mode,
    policy: [usize; 4],
    /// Whether the file carries a misspelt directive (`maxmemroy`), which the checker
    /// must reject.
    bad: bool,
    /// The namespace of each host, when there are namespaces.
    netns: Option<[String; 2]>,
    daemons: [Option<Child>; 2],
    keep: bool,
}

impl Group {
    /// A fresh dir and TOML for the group that starts at step `first` (0-based).
    fn new(hosts: &Hosts, server: &Path, mode: Mode, first: usize) -> Group {
        let dir = common::fresh_dir(&format!("faults-{}-{first}", mode.label()));
        let addrs: [SocketAddr; 4] = std::array::from_fn(|i| {
            let ip = hosts.ips[HOST_OF[i]];
            // In a namespace the addresses are the group's own; on loopback, free ports.
            let port = match hosts.netns {
                Some(_) => 6379 + (i % 2) as u16,
                None => redisrepd_testkit::free_port(ip),
            };
            SocketAddr::new(ip, port)
        });
        let password = dir.join("password");
        std::fs::write(&password, format!("{PASSWORD}\n")).expect("writing the password file");
        redisrepd_testkit::chmod(&password, 0o600);
        std::fs::create_dir_all(dir.join("log")).expect("creating the log dir");
        let g = Group {
            toml: dir.join("group.toml"),
            dir,
            addrs,
            server: server.to_owned(),
            mode,
            policy: [0; 4],
            bad: false,
            netns: hosts.netns.as_ref().map(|(n, _)| n.clone()),
            daemons: [None, None],
            keep: false,
        };
        g.write_toml();
        g
    }

    fn toml_text(&self) -> String {
        let mut t = format!(
            "[cluster]\nname = \"faults\"\npassword_file = \"password\"\nredis_server = \"{}\"\n\
             run_dir = \"run\"\ndata_dir = \"data\"\nlog_dir = \"log\"\n\n\
             [supervise]\nstart_timeout = \"60s\"\nshutdown_timeout = \"30s\"\n\
             restart_delay = \"100ms\"\nrestart_delay_max = \"1s\"\nhealth_interval = \"100ms\"\n\
             crash_loop_limit = 1000\nsync_timeout = \"60s\"\n\n[redis]\n{}\n",
            self.server.display(),
            self.mode.redis()
        );
        if self.bad {
            t.insert_str(t.len() - 1, "maxmemroy = \"1gb\"\n");
        }
        for (i, name) in NAMES.iter().enumerate() {
            let _ = write!(
                t,
                "[[instance]]\nname = \"{name}\"\nhost = \"{}\"\nbind = \"{}\"\nport = {}\n",
                HOSTS[HOST_OF[i]],
                self.addrs[i].ip(),
                self.addrs[i].port()
            );
            if i > 0 {
                t.push_str("replica_of = \"master\"\n");
            }
            let _ = writeln!(
                t,
                "[instance.redis]\nmaxmemory-policy = \"{}\"\n",
                POLICIES[self.policy[i]]
            );
        }
        t
    }

    /// Writes group.toml atomically (temp file + rename).
    fn write_toml(&self) {
        let tmp = self.dir.join("group.toml.tmp");
        std::fs::write(&tmp, self.toml_text()).expect("writing group.toml");
        std::fs::rename(&tmp, &self.toml).expect("renaming group.toml");
    }

    fn daemon_log(&self, host: usize) -> PathBuf {
        self.dir.join(format!("daemon-{}.log", HOSTS[host]))
    }

    /// A line in both daemon logs, so that they read alongside the steps.
    fn mark(&self, line: &str) {
        for h in 0..2 {
            if let Ok(mut f) = std::fs::File::options()
                .create(true)
                .append(true)
                .open(self.daemon_log(h))
            {
                use std::io::Write as _;
                let _ = writeln!(f, "===== faults: {line}");
            }
        }
    }

    /// Starts host `h`'s daemon (in its namespace) and waits for its control socket.
    fn start_daemon(&mut self, h: usize) -> Result<(), String> {
        let socket = self.dir.join("run").join(format!("{}.sock", HOSTS[h]));
        // A SIGKILLed daemon leaves its socket: wait for the new one's.
        let _ = std::fs::remove_file(&socket);
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns[h]]).arg(trio::BIN);
                c
            }
            None => Command::new(trio::BIN),
        };
        cmd.arg("--config")
            .arg(&self.toml)
            .args(["daemon", "--host", HOSTS[h]])
            .env_remove("REDISREPD_CONFIG");
        let child = trio::spawn_logged(&mut cmd, &self.daemon_log(h))?;
        self.daemons[h] = Some(child);
        trio::wait(
            &format!("daemon {}'s control socket", HOSTS[h]),
            Duration::from_secs(60),
            || {
                if let Some(Ok(Some(status))) = self.daemons[h].as_mut().map(Child::try_wait) {
                    return Err(format!("the daemon exited ({status})"));
                }
                socket
                    .exists()
                    .then_some(())
                    .ok_or_else(|| "absent".to_owned())
            },
        )
    }

    fn kill_daemon(&mut self, h: usize) {
        if let Some(mut d) = self.daemons[h].take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// SIGTERM to host `h`'s daemon, and wait for it to exit (it stops its instances).
    fn stop_daemon(&mut self, h: usize) -> Result<(), String> {
        let Some(mut d) = self.daemons[h].take() else {
            return Ok(());
        };
        trio::kill_pid(d.id(), Signal::SIGTERM);
        let status = trio::wait(
            &format!("daemon {} to exit after SIGTERM", HOSTS[h]),
            VERB_DEADLINE,
            || {
                d.try_wait()
                    .ok()
                    .flatten()
                    .ok_or_else(|| "running".to_owned())
            },
        );
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("daemon {} exited {s} after SIGTERM", HOSTS[h])),
            Err(e) => {
                let _ = d.kill();
                let _ = d.wait();
                Err(e)
            }
        }
    }

    fn cli(&self, args: &[&str]) -> Run {
        common::cli(
            &self.dir,
            &self.toml,
            args,
            VERB_DEADLINE,
            &trio::interrupted,
        )
    }

    /// The pid in an instance's pid file (the daemon writes it).
    fn pid(&self, i: usize) -> Option<u32> {
        let f = self.dir.join("run").join(format!("{}.pid", NAMES[i]));
        std::fs::read_to_string(f)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// SIGKILL to an instance, by its pid file, if that pid is a server's.
    fn kill_instance(&self, i: usize) -> Result<u32, String> {
        let pid = self
            .pid(i)
            .ok_or_else(|| format!("no pid file for `{}`", NAMES[i]))?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !redisrepd_testkit::is_server_comm(&comm) {
            return Err(format!("`{}`'s pid {pid} is not a server", NAMES[i]));
        }
        trio::kill_pid(pid, Signal::SIGKILL);
        // Gone, not just signalled: a check right after must not read the dying server.
        trio::wait(
            &format!("`{}` (pid {pid}) gone after SIGKILL", NAMES[i]),
            Duration::from_secs(10),
            || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat)
                    if !stat
                        .rsplit_once(") ")
                        .is_some_and(|(_, s)| s.starts_with('Z')) =>
                {
                    Err("still running".to_owned())
                }
                _ => Ok(()),
            },
        )?;
        Ok(pid)
    }

    /// INFO replication of each instance (`Err` when it does not answer).
    fn infos(&self) -> Vec<Result<Info, String>> {
        self.addrs
            .iter()
            .map(|a| {
                common::info(
                    *a,
                    PASSWORD,
                    "replication",
                    Duration::from_millis(500),
                    Duration::from_secs(3),
                )
            })
            .collect()
    }

    /// Host `h`'s daemon log from the mark of step `n` on (at most `lines` lines).
    fn log_since_step(&self, h: usize, n: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(self.daemon_log(h)).unwrap_or_default();
        let mark = format!("===== faults: step {n}/");
        let from = log.rfind(&mark).unwrap_or(log.len());
        log[from..]
            .lines()
            .take(lines)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_tail(&self, h: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(self.daemon_log(h)).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The daemons first (SIGKILL: they restart nothing), then every server left.
        for h in 0..2 {
            self.kill_daemon(h);
        }
        for pid in redisrepd_testkit::redis_and_forks_under(&self.dir) {
            trio::kill_pid(pid, Signal::SIGKILL);
        }
        // Gone before the next group takes the same ports.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redisrepd_testkit::redis_and_forks_under(&self.dir).is_empty()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.keep {
            eprintln!("faults: files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ----- the invariants ------------------------------------------------------------------

/// A broken promise: which, and the evidence.
struct Failure {
    invariant: &'static str,
    detail: String,
}

fn fail(invariant: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        invariant,
        detail: detail.into(),
    }
}

/// `Ok(master)` when exactly one instance answers as master and every other one is its
/// replica, link up, not syncing or loading, its offset within [`OFFSET_SLACK`] of the
/// master's; else which promise does not hold (yet) and why.
fn shape(infos: &[Result<Info, String>], addrs: &[SocketAddr; 4]) -> Result<usize, Failure> {
    let masters: Vec<usize> = (0..4)
        .filter(|i| {
            infos[*i]
                .as_ref()
                .is_ok_and(|inf| inf.role() == Some("master"))
        })
        .collect();
    if masters.len() != 1 {
        let names: Vec<&str> = masters.iter().map(|i| NAMES[*i]).collect();
        return Err(fail(
            "exactly one master",
            format!("{} instances answer as master: {names:?}", masters.len()),
        ));
    }
    let m = masters[0];
    let m_info = infos[m]
        .as_ref()
        .map_err(|e| fail("exactly one master", e.clone()))?;
    let m_off = m_info.repl_offset().unwrap_or(0);
    for i in (0..4).filter(|i| *i != m) {
        let name = NAMES[i];
        let inf = infos[i].as_ref().map_err(|e| {
            fail(
                "every replica in sync",
                format!("`{name}` does not answer: {e}"),
            )
        })?;
        let host = inf.get("master_host").unwrap_or_default();
        let port = inf.get("master_port").unwrap_or_default();
        let follows = host == addrs[m].ip().to_string() && port == addrs[m].port().to_string();
        let off = common::int(inf, "slave_repl_offset");
        let why = if inf.role() != Some("slave") && inf.role() != Some("replica") {
            Some(format!("role {:?}", inf.role()))
        } else if !follows {
            Some(format!(
                "replicates from {host}:{port}, not from `{}`",
                NAMES[m]
            ))
        } else if inf.master_link_up() != Some(true) {
            Some("link down".to_owned())
        } else if inf.sync_in_progress() || inf.loading() {
            Some("syncing or loading".to_owned())
        } else if off + OFFSET_SLACK < m_off {
            Some(format!("offset {off}, the master's {m_off}"))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(fail("every replica in sync", format!("`{name}`: {why}")));
        }
    }
    Ok(m)
}

/// `INFO replication` of `addr` as the server wrote it.
fn info_text(addr: SocketAddr) -> Result<String, String> {
    let mut c = common::connect(
        addr,
        PASSWORD,
        Duration::from_millis(500),
        Duration::from_secs(3),
    )
    .map_err(|e| e.to_string())?;
    redis::cmd("INFO")
        .arg("replication")
        .query(&mut c)
        .map_err(|e| e.to_string())
}

// ----- the run -------------------------------------------------------------------------

/// What one kind of step took.
#[derive(Default)]
struct KindTally {
    count: usize,
    /// Seconds of the fault itself (the verbs, the kills) and until the checks passed.
    step_s: Vec<f64>,
    check_s: Vec<f64>,
}

/// One persistence mode's run.
struct Checker {
    g: Group,
    load: Load,
    /// Acknowledged writes excused from the checks: acknowledged only by replicas on a
    /// host that was then lost with its master (`WAIT 1` promises no more).
    excused: BTreeSet<u64>,
    /// Acknowledged writes a host loss may have taken (acknowledged since the last check
    /// by no more replicas than the lost host held besides its master): excused if missing.
    at_risk: BTreeSet<u64>,
    /// How many acknowledged writes the last check found (those before it are on every
    /// instance).
    checked: usize,
    /// The instance the group must settle on as master: the configured one at first,
    /// then the one the last role-changing verb made master. A crash or a restart keeps
    /// it: its daemon starts it as master again, after a catch-up from an instance that
    /// is master for the moment when its replicas are ahead; the checks wait for that
    /// hand-back, so that the next step aims at the group as it stays.
    expected: usize,
    /// The steps done, as they ran (their targets resolved).
    done: Vec<String>,
    tally: BTreeMap<Kind, KindTally>,
    /// Acknowledged writes found missing.
    lost: usize,
}

/// What a finished run reports.
#[derive(Default)]
struct Outcome {
    /// Steps that passed their checks.
    passed: usize,
    acked: usize,
    excused: usize,
    lost: usize,
    refused: BTreeMap<String, u64>,
    tally: BTreeMap<Kind, KindTally>,
    seconds: f64,
    /// Each broken promise: the step (1-based in the seed's list), what it did, and what
    /// broke.
    failures: Vec<(usize, String, Failure)>,
}

impl Checker {
    /// A verb that must succeed. A refusal the daemon marks as of the moment ("try again":
    /// a crashed master's catch-up still hands the role back) is asked again within
    /// [`SETTLE`]; the group is in a safe shape meanwhile (the checks passed), only busy.
    fn verb(&self, args: &[&str]) -> Result<(), Failure> {
        let until = Instant::now() + SETTLE;
        let mut run = self.g.cli(args);
        while !run.ok() && run.stderr.contains("try again") && Instant::now() < until {
            eprintln!(
                "faults: `{}` refused for the moment, asked again: {}",
                args.join(" "),
                run.stderr.lines().next().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
            run = self.g.cli(args);
        }
        if run.ok() {
            Ok(())
        } else {
            Err(fail(
                "the verb succeeds",
                format!("{}\n{}{}", run.one_line(), run.stdout, run.stderr),
            ))
        }
    }

    /// The group's master now (exactly one answers as master), within [`SETTLE`].
    fn master(&self) -> Result<usize, Failure> {
        let mut last = None;
        let until = Instant::now() + SETTLE;
        loop {
            let infos = self.g.infos();
            match shape(&infos, &self.g.addrs) {
                Ok(m) => return Ok(m),
                Err(f) if f.invariant == "exactly one master" => last = Some(f),
                // In sync or not, one master answers: that is all a step needs to aim.
                Err(_) => {
                    if let Some(m) = (0..4).find(|i| {
                        infos[*i]
                            .as_ref()
                            .is_ok_and(|inf| inf.role() == Some("master"))
                    }) {
                        return Ok(m);
                    }
                }
            }
            if Instant::now() >= until || trio::interrupted() {
                return Err(last.unwrap_or_else(|| fail("exactly one master", "none answers")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The replicas of master `m`, in name order.
    fn replicas_of(m: usize) -> Vec<usize> {
        (0..4).filter(|i| *i != m).collect()
    }

    /// Runs one step's faults; returns what it aimed at, in words.
    fn run_step(&mut self, step: Step) -> Result<String, Failure> {
        let p = step.pick;
        match step.kind {
            Kind::Restart => {
                let name = NAMES[p % 4];
                self.verb(&["restart", name])?;
                Ok(format!("restart {name}"))
            }
            Kind::KillMaster => {
                let m = self.master()?;
                let pid = self
                    .g
                    .kill_instance(m)
                    .map_err(|e| fail("the fault applies", e))?;
                Ok(format!("SIGKILL {} (pid {pid})", NAMES[m]))
            }
            Kind::KillReplica => {
                let m = self.master()?;
                let r = Self::replicas_of(m)[p % 3];
                let pid = self
                    .g
                    .kill_instance(r)
                    .map_err(|e| fail("the fault applies", e))?;
                Ok(format!("SIGKILL {} (pid {pid})", NAMES[r]))
            }
            Kind::KillDaemon => {
                let h = p % 2;
                self.g.kill_daemon(h);
                self.g
                    .start_daemon(h)
                    .map_err(|e| fail("the daemon starts", e))?;
                Ok(format!("SIGKILL daemon {}, new one", HOSTS[h]))
            }
            Kind::RebootHost => {
                let h = p % 2;
                self.g
                    .stop_daemon(h)
                    .map_err(|e| fail("the daemon stops on SIGTERM", e))?;
                self.g
                    .start_daemon(h)
                    .map_err(|e| fail("the daemon starts", e))?;
                Ok(format!("reboot host {}", HOSTS[h]))
            }
            Kind::FailoverAndBack | Kind::FailoverBackToBack => {
                let m = self.master()?;
                let to = Self::replicas_of(m)[p % 3];
                self.verb(&["failover", "--to", NAMES[to]])?;
                self.expected = to;
                if step.kind == Kind::FailoverAndBack {
                    self.check()?;
                    self.wait_writes();
                }
                self.verb(&["failover", "--to", NAMES[m]])?;
                self.expected = m;
                Ok(format!(
                    "failover --to {} then --to {}{}",
                    NAMES[to],
                    NAMES[m],
                    if step.kind == Kind::FailoverBackToBack {
                        " (back to back)"
                    } else {
                        ""
                    }
                ))
            }
            Kind::PromoteAfterHostLoss => self.promote_after_host_loss(),
            Kind::Reload => {
                let i = p % 4;
                self.g.policy[i] = 1 - self.g.policy[i];
                self.g.write_toml();
                self.verb(&["reload"])?;
                Ok(format!(
                    "reload ({} maxmemory-policy {})",
                    NAMES[i], POLICIES[self.g.policy[i]]
                ))
            }
            Kind::ReloadBad => {
                let pids: Vec<Option<u32>> = (0..4).map(|i| self.g.pid(i)).collect();
                self.g.bad = true;
                self.g.write_toml();
                let run = self.g.cli(&["reload"]);
                self.g.bad = false;
                self.g.write_toml();
                if run.ok() {
                    return Err(fail(
                        "a file that fails the checker changes nothing",
                        format!("`reload` accepted `maxmemroy`: {}", run.one_line()),
                    ));
                }
                self.verb(&["reload"])?;
                let now: Vec<Option<u32>> = (0..4).map(|i| self.g.pid(i)).collect();
                if now != pids {
                    return Err(fail(
                        "a file that fails the checker changes nothing",
                        format!("pids before the refused reload {pids:?}, after {now:?}"),
                    ));
                }
                Ok(format!("reload refused ({})", run.one_line()))
            }
            Kind::RestartAll => {
                self.verb(&["restart", "--all"])?;
                Ok("restart --all".to_owned())
            }
        }
    }

    /// The master's host dies: its daemon and instances SIGKILLed. The most advanced
    /// replica of the other host is promoted, then the host comes back. Writes that only
    /// replicas of the lost host acknowledged are excused (`WAIT 1` promised no more).
    fn promote_after_host_loss(&mut self) -> Result<String, Failure> {
        let m = self.master()?;
        let h = HOST_OF[m];
        self.g.kill_daemon(h);
        let on_host: Vec<usize> = (0..4).filter(|i| HOST_OF[*i] == h).collect();
        for i in &on_host {
            // An instance may be between two runs: then it has no live pid to kill.
            let _ = self.g.kill_instance(*i);
        }
        trio::wait(
            "the lost host's instances gone",
            Duration::from_secs(10),
            || match on_host.iter().find(|i| {
                common::connect(
                    self.g.addrs[**i],
                    PASSWORD,
                    Duration::from_millis(200),
                    Duration::from_secs(1),
                )
                .is_ok()
            }) {
                Some(i) => Err(format!("`{}` still answers", NAMES[*i])),
                None => Ok(()),
            },
        )
        .map_err(|e| fail("the fault applies", e))?;
        // No master now, so no write is acknowledged until the promotion: what is at risk
        // was acknowledged since the last check.
        let at_risk = {
            let paused = self.load.pause();
            let others = on_host.len() as i64 - 1;
            (self.checked..paused.acked.len())
                .filter(|k| paused.acked_by[*k] <= others)
                .map(|k| paused.acked[k].1)
                .collect()
        };
        self.at_risk = at_risk;
        let infos = self.g.infos();
        let best = (0..4)
            .filter(|i| HOST_OF[*i] != h)
            .filter_map(|i| {
                infos[i]
                    .as_ref()
                    .ok()
                    .map(|inf| (common::int(inf, "slave_repl_offset"), i))
            })
            .max()
            .map(|(_, i)| i)
            .ok_or_else(|| fail("the fault applies", "no replica answers on the other host"))?;
        self.verb(&["promote", NAMES[best]])?;
        self.expected = best;
        self.g
            .start_daemon(h)
            .map_err(|e| fail("the daemon starts", e))?;
        Ok(format!(
            "host {} lost with {}, promote {}, host back",
            HOSTS[h], NAMES[m], NAMES[best]
        ))
    }
}

impl Checker {
    /// Until [`WRITES_BEFORE`] more writes are acknowledged (at most 10 s: a group that
    /// takes none is the checks' business, not this wait's).
    fn wait_writes(&self) {
        let _ = self
            .load
            .wait_writes_within(WRITES_BEFORE, Duration::from_secs(10));
    }

    /// The promises, with the writer paused: within [`SETTLE`] exactly one master, the
    /// expected one, and every other instance its replica, in sync; then every
    /// acknowledged write on it.
    fn check(&mut self) -> Result<(), Failure> {
        let paused = self.load.pause();
        let until = Instant::now() + SETTLE;
        let m = loop {
            let infos = self.g.infos();
            let f = match shape(&infos, &self.g.addrs) {
                Ok(m) if m == self.expected => break m,
                // A settled shape around another master: a role change still under way
                // (a crashed master's catch-up not handed back yet), or one nobody asked.
                Ok(m) => fail(
                    "the master stays the one asked for",
                    format!(
                        "`{}` is master with every replica in sync, `{}` expected",
                        NAMES[m], NAMES[self.expected]
                    ),
                ),
                Err(f) => f,
            };
            if Instant::now() >= until || trio::interrupted() {
                return Err(Failure {
                    detail: format!("not so within {SETTLE:?}: {}", f.detail),
                    ..f
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let wanted: Vec<u64> = paused
            .acked
            .iter()
            .map(|(_, n)| *n)
            .filter(|n| !self.excused.contains(n))
            .collect();
        let total = paused.acked.len();
        let addr = self.g.addrs[m];
        let until = Instant::now() + READ_BACK;
        let missing = loop {
            let missing = trio::missing_on(addr, PREFIX, &wanted);
            match missing {
                Ok(v) if v.is_empty() => break v,
                _ if Instant::now() < until && !trio::interrupted() => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(v) => break v,
                Err(e) => return Err(fail("acknowledged writes readable", e)),
            }
        };
        let (excused, lost): (Vec<u64>, Vec<u64>) =
            missing.into_iter().partition(|n| self.at_risk.contains(n));
        self.at_risk.clear();
        self.excused.extend(&excused);
        if !lost.is_empty() {
            self.lost = lost.len();
            return Err(fail(
                "no acknowledged write lost",
                format!(
                    "{} of {} acknowledged writes missing on the master `{}`, e.g. {:?} (last \
                     acknowledged: {:?}; excused: {})",
                    lost.len(),
                    wanted.len(),
                    NAMES[m],
                    lost.iter()
                        .take(10)
                        .map(|n| format!("{PREFIX}{n}"))
                        .collect::<Vec<_>>(),
                    paused.acked.last().map(|(_, n)| n),
                    self.excused.len()
                ),
            ));
        }
        self.checked = total;
        Ok(())
    }

    /// Everything a failure report shows besides the broken promise.
    fn evidence(&self) -> String {
        let mut e = String::new();
        let infos = self.g.infos();
        for (i, inf) in infos.iter().enumerate() {
            let _ = writeln!(
                e,
                "--- `{}` ({}, host {}, pid {:?}):",
                NAMES[i],
                self.g.addrs[i],
                HOSTS[HOST_OF[i]],
                self.g.pid(i)
            );
            let _ = inf;
            match info_text(self.g.addrs[i]) {
                Ok(text) => {
                    let _ = writeln!(e, "{}", text.trim_end());
                }
                Err(err) => {
                    let _ = writeln!(e, "  does not answer: {err}");
                }
            }
        }
        let status = self.g.cli(&["status"]);
        let _ = writeln!(
            e,
            "--- `redisrepd status`:\n{}{}",
            status.stdout, status.stderr
        );
        for (h, host) in HOSTS.iter().enumerate() {
            let _ = writeln!(
                e,
                "--- daemon {host} (last 40 lines of {}):\n{}",
                self.g.daemon_log(h).display(),
                self.g.log_tail(h, 40)
            );
        }
        e
    }
}

/// One persistence mode: a fresh group, the steps from `from` (0-based) on, the checks
/// after each; with `--keep-going`, a fresh group again after each failure.
fn run_mode(hosts: &Hosts, args: &Args, seed: u64, mode: Mode, steps: &[Step]) -> Outcome {
    let began = Instant::now();
    let mut total = Outcome::default();
    let mut next = args.from.saturating_sub(1);
    while next < steps.len() && !trio::interrupted() {
        let (o, failed_at) = run_group(hosts, args, seed, mode, steps, next);
        total.passed += o.passed;
        total.acked += o.acked;
        total.excused += o.excused;
        total.lost += o.lost;
        for (why, n) in o.refused {
            *total.refused.entry(why).or_default() += n;
        }
        for (kind, k) in o.tally {
            let t = total.tally.entry(kind).or_default();
            t.count += k.count;
            t.step_s.extend(k.step_s);
            t.check_s.extend(k.check_s);
        }
        total.failures.extend(o.failures);
        match failed_at {
            Some(n) if args.keep_going => next = n.max(next + 1),
            Some(_) => break,
            None => break,
        }
    }
    total.seconds = began.elapsed().as_secs_f64();
    total
}

/// One group from step `first` (0-based) until the end or the first failure; returns
/// what it did and the index of the step after the failing one.
fn run_group(
    hosts: &Hosts,
    args: &Args,
    seed: u64,
    mode: Mode,
    steps: &[Step],
    first: usize,
) -> (Outcome, Option<usize>) {
    let mut outcome = Outcome::default();
    let mut g = Group::new(hosts, &args.server, mode, first);
    let addrs = g.addrs;
    for h in 0..2 {
        if let Err(e) = g.start_daemon(h) {
            let f = fail("the daemon starts", e);
            outcome
                .failures
                .push((first + 1, "starting the group".to_owned(), f));
            g.keep = args.common.keep;
            return (outcome, Some(first + 1));
        }
    }
    let load = Load::start_with(
        addrs.to_vec(),
        PREFIX.to_owned(),
        load::Options {
            wait: Some((1, Duration::from_millis(500))),
            probe: false,
            ..load::Options::default()
        },
    );
    let mut c = Checker {
        g,
        load,
        excused: BTreeSet::new(),
        at_risk: BTreeSet::new(),
        checked: 0,
        expected: 0,
        lost: 0,
        done: Vec::new(),
        tally: BTreeMap::new(),
    };
    let mut failure = c.check().err().map(|f| (first, f));
    for (n, step) in steps.iter().enumerate().skip(first) {
        if failure.is_some() || trio::interrupted() {
            break;
        }
        c.wait_writes();
        let what = step.describe();
        c.g.mark(&format!("step {}/{}: {what}", n + 1, steps.len()));
        let t = Instant::now();
        let result = c.run_step(*step);
        let step_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let result = result.and_then(|done| {
            c.done.push(format!("{:>3}. {what}: {done}", n + 1));
            c.check()
        });
        let check_s = t.elapsed().as_secs_f64();
        if let Err(f) = result {
            if c.done.len() < n + 1 - first {
                c.done
                    .push(format!("{:>3}. {what}: (did not complete)", n + 1));
            }
            failure = Some((n + 1, f));
            break;
        }
        if step_s > SLOW_STEP.as_secs_f64() {
            // Not a broken promise, but worth knowing why: what the daemons did.
            eprintln!(
                "faults: step {} took {step_s:.1}s; the daemons meanwhile:\n{}\n{}",
                n + 1,
                c.g.log_since_step(0, n + 1, 60),
                c.g.log_since_step(1, n + 1, 60)
            );
        }
        let k = c.tally.entry(step.kind).or_default();
        k.count += 1;
        k.step_s.push(step_s);
        k.check_s.push(check_s);
        outcome.passed += 1;
        eprintln!(
            "faults: {} step {:>3}/{}: {:<60} {step_s:5.1}s + checks {check_s:4.1}s, {} acknowledged",
            mode.label(),
            n + 1,
            steps.len(),
            c.done
                .last()
                .map(|d| d.split_once(": ").map_or(d.as_str(), |x| x.1))
                .unwrap_or(""),
            c.load.acked()
        );
    }
    if let Some((n, f)) = &failure {
        eprintln!(
            "\nfaults: FAILED at step {n} ({} persistence, server {}, seed {seed}): {}\n{}\n\n\
             --- steps since the group was made:\n{}\n\n{}\n\
             rerun: cargo bench --bench faults -- --seed {seed} --persistence {} --server {} \
             --steps {n}{}{}\n",
            mode.label(),
            args.server.display(),
            f.invariant,
            f.detail,
            c.done.join("\n"),
            c.evidence(),
            mode.label(),
            args.server.display(),
            if first > 0 {
                format!(" --from {}", first + 1)
            } else {
                String::new()
            },
            if args.kinds.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = args
                    .kinds
                    .iter()
                    .filter_map(|k| k.to_possible_value().map(|v| v.get_name().to_owned()))
                    .collect();
                format!(" --kinds {}", names.join(","))
            }
        );
        c.g.keep = args.common.keep;
    }
    outcome.excused = c.excused.len();
    outcome.lost = c.lost;
    outcome.tally = std::mem::take(&mut c.tally);
    let (log, _) = c.load.finish();
    outcome.acked = log.acked.len();
    outcome.refused = log.refused;
    let failed_at = failure.as_ref().map(|(n, _)| *n);
    if let Some((n, f)) = failure {
        let what = c
            .done
            .last()
            .filter(|_| n > first)
            .map_or("the first check".to_owned(), |d| d.trim().to_owned());
        outcome.failures.push((n, what, f));
    }
    (outcome, failed_at)
}

fn print_report(server: &Path, seed: u64, outcomes: &[(Mode, Outcome)]) {
    for (mode, o) in outcomes {
        let failures: Vec<String> = o
            .failures
            .iter()
            .map(|(n, _, f)| format!("step {n}: {}", f.invariant))
            .collect();
        println!(
            "\n### {} on {}, seed {seed}: {}",
            mode.label(),
            server.display(),
            if failures.is_empty() {
                "passed".to_owned()
            } else {
                format!("FAILED ({})", failures.join("; "))
            }
        );
        println!(
            "\n| step | count | fault s mean / max | checks s mean / max |\n|---|---|---|---|"
        );
        for (kind, k) in &o.tally {
            let stat = |v: &[f64]| {
                let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
                let max = v.iter().copied().fold(0.0, f64::max);
                format!("{mean:.1} / {max:.1}")
            };
            println!(
                "| {} | {} | {} | {} |",
                kind.label(),
                k.count,
                stat(&k.step_s),
                stat(&k.check_s)
            );
        }
        for (n, what, f) in &o.failures {
            let first = f.detail.lines().next().unwrap_or_default();
            println!("- failed at step {n} ({what}): {}: {first}", f.invariant);
        }
        let refused: Vec<String> = o.refused.iter().map(|(w, n)| format!("{n} {w}")).collect();
        println!(
            "\nwrites acknowledged {}, lost {}, excused (only on a lost host's replicas) {}, \
             not acknowledged: {}; {:.0} s",
            o.acked,
            o.lost,
            o.excused,
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            },
            o.seconds
        );
    }
    println!();
    for (mode, o) in outcomes {
        println!(
            "faults: {} {}: {} steps passed, {} failed, {} writes acknowledged, {} lost, seed {seed}",
            server.display(),
            mode.label(),
            o.passed,
            o.failures.len(),
            o.acked,
            o.lost
        );
    }
}

fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    eprintln!("faults: seed {seed}");
    trio::install_signals();
    let modes: Vec<Mode> = match args.persistence {
        Mode::All => vec![Mode::Rdb, Mode::AofEverysec, Mode::AofAlways],
        m => vec![m],
    };
    let kinds = if args.kinds.is_empty() {
        KINDS.to_vec()
    } else {
        args.kinds.clone()
    };
    let steps = plan(seed, args.steps, &kinds);
    let hosts = Hosts::new(args.loopback);
    eprintln!(
        "faults: {} steps per mode ({}), server {}, hosts on {}",
        args.steps,
        modes
            .iter()
            .map(|m| m.label())
            .collect::<Vec<_>>()
            .join(", "),
        args.server.display(),
        hosts.describe()
    );
    let outcomes = hosts.run_in_b(|| {
        let mut outcomes = Vec::new();
        for mode in modes {
            let o = run_mode(&hosts, &args, seed, mode, &steps);
            let failed = !o.failures.is_empty();
            outcomes.push((mode, o));
            if (failed && !args.keep_going) || trio::interrupted() {
                break;
            }
        }
        outcomes
    });
    print_report(&args.server, seed, &outcomes);
    let ok = outcomes.iter().all(|(_, o)| o.failures.is_empty()) && !trio::interrupted();
    drop(hosts);
    std::process::exit(if ok { 0 } else { 1 });
}
