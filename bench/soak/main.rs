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

#[path = "../common.rs"]
mod common;

// The group and what it reads of it; the steps and their checks.
mod group;
mod steps;

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
use group::*;
use steps::*;
pub(crate) const PASSWORD: &str = "soak-password-7Qx";
/// How the bench reaches its instances.
pub(crate) const REDIS: common::Redis = common::Redis {
    password: PASSWORD,
    info_within: Duration::from_secs(2),
    io: IO_TIMEOUT,
};
pub(crate) const REPLICAS: [&str; 2] = ["r1", "r2"];
/// The two values `maxmemory-policy` alternates between (harmless: `maxmemory` is 0).
pub(crate) const POLICIES: [&str; 2] = ["noeviction", "allkeys-lru"];

/// Longest a verb may run before the soak calls it hung.
pub(crate) const VERB_DEADLINE: Duration = Duration::from_secs(300);
/// Longest the group may take to be healthy again after a step.
pub(crate) const HEALTHY_DEADLINE: Duration = Duration::from_secs(180);
/// Longest a replica may take to reach the master's offset once the writer is paused.
pub(crate) const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) struct Opts {
    pub(crate) steps: u64,
    pub(crate) seed: u64,
    pub(crate) rate: u64,
    pub(crate) max_minutes: u64,
    pub(crate) keep: bool,
}

/// The command line (`cargo bench --bench soak -- --help`).
#[derive(Parser)]
#[command(about = "Random operator steps against one redisrepd group under writes")]
pub(crate) struct Args {
    /// Steps to take.
    #[arg(long, default_value_t = 500)]
    pub(crate) steps: u64,
    /// The seed of the steps (default: from the clock; printed).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Writes per second.
    #[arg(long, default_value_t = 300)]
    pub(crate) rate: u64,
    /// Stop stepping after this many minutes.
    #[arg(long, default_value_t = 40)]
    pub(crate) max_minutes: u64,
    #[command(flatten)]
    pub(crate) common: common::BenchArgs,
}

pub(crate) fn opts() -> Opts {
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
pub(crate) enum Kind {
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

pub(crate) const KINDS: [Kind; 9] = [
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
    pub(crate) fn label(self) -> &'static str {
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

    pub(crate) fn takes_replica(self) -> bool {
        matches!(
            self,
            Kind::StopStartReplica | Kind::RestartReplica | Kind::KillReplica | Kind::ReloadChanged
        )
    }
}

/// What the soak counted, per kind and in total.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) steps: u64,
    pub(crate) by_kind: BTreeMap<Kind, KindTally>,
    pub(crate) failed_started: u64,
    pub(crate) check_s: f64,
}

#[derive(Default)]
pub(crate) struct KindTally {
    pub(crate) count: u64,
    pub(crate) forced: u64,
    pub(crate) healthy_s: Vec<f64>,
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
pub(crate) fn run(o: &Opts, interrupted: &AtomicBool) -> bool {
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

pub(crate) struct Report {
    pub(crate) acked: usize,
    pub(crate) not_acked: BTreeMap<String, u64>,
    pub(crate) lost: usize,
    pub(crate) syncs: [i64; 3],
    pub(crate) master_runs: usize,
    pub(crate) seconds: f64,
    pub(crate) stopped_by: Option<&'static str>,
    pub(crate) failed: bool,
}

pub(crate) fn print_report(o: &Opts, t: &Tally, r: Report) {
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
