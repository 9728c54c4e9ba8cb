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

#[path = "../common.rs"]
mod common;
#[path = "../load.rs"]
mod load;
#[path = "../naive.rs"]
mod naive;
#[path = "../trio.rs"]
mod trio;

// The run, in files by concern: the steps, the hosts and the group, the invariants.
mod check;
mod group;
mod steps;

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

use check::*;
use group::*;
use load::Load;
use steps::*;
use trio::{PASSWORD, Run};

/// The instances, in this order everywhere, and the host of each.
pub(crate) const NAMES: [&str; 4] = ["master", "r1", "r2", "r3"];
pub(crate) const HOST_OF: [usize; 4] = [0, 0, 1, 1];
pub(crate) const HOSTS: [&str; 2] = ["a", "b"];
/// The writer's keys: `faults:<n>` = `n`.
pub(crate) const PREFIX: &str = "faults:";
/// The two values of `maxmemory-policy` a reload alternates (harmless: `maxmemory` is 0).
pub(crate) const POLICIES: [&str; 2] = ["noeviction", "allkeys-lru"];

/// Longest a verb may run.
pub(crate) const VERB_DEADLINE: Duration = Duration::from_secs(120);
/// Longest the group may take, after a step, to have one master and every replica in
/// sync with it.
pub(crate) const SETTLE: Duration = Duration::from_secs(60);
/// Longest the acknowledged writes may take to show on a settled master.
pub(crate) const READ_BACK: Duration = Duration::from_secs(5);
/// How far (bytes) a replica's offset may trail its master's with the writer paused (the
/// master's pings to its replicas move its offset too).
pub(crate) const OFFSET_SLACK: i64 = 1024;
/// A step slower than this has its daemons' logs printed (no failure: no promise says how
/// long a verb takes).
pub(crate) const SLOW_STEP: Duration = Duration::from_secs(20);
/// Writes acknowledged before each fault, so that it has something to lose.
pub(crate) const WRITES_BEFORE: u64 = 30;

#[derive(Parser)]
#[command(
    about = "Seeded fault sequences against a two-host redisrepd group; checks that no acknowledged write is lost",
    // Here the temp dir goes unless a check failed.
    mut_arg("keep", |a| a.help("Keep the temp dir (configs, data, logs) when a check fails"))
)]
pub(crate) struct Args {
    /// The seed of the step list (default: random; always printed first).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Steps per persistence mode.
    #[arg(long, default_value_t = 100)]
    pub(crate) steps: usize,
    /// Persistence of the group; `all` runs the three one after another with the same seed.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    pub(crate) persistence: Mode,
    /// The server the instances run (redis-server or valkey-server).
    #[arg(long, default_value = "redis-server")]
    pub(crate) server: PathBuf,
    /// Start at this step of the seed's list (1-based): replays a failure found after a
    /// `--keep-going` restart.
    #[arg(long, default_value_t = 1)]
    pub(crate) from: usize,
    /// After a failure, report it, make a fresh group and go on with the next step.
    #[arg(long)]
    pub(crate) keep_going: bool,
    /// Only these kinds of step (comma-separated; default: all but reload-bad).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) kinds: Vec<Kind>,
    /// Loopback addresses even when root (no network namespaces).
    #[arg(long)]
    pub(crate) loopback: bool,
    #[command(flatten)]
    pub(crate) common: common::BenchArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    Rdb,
    AofEverysec,
    AofAlways,
    All,
}

impl Mode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::Rdb => "rdb",
            Mode::AofEverysec => "aof-everysec",
            Mode::AofAlways => "aof-always",
            Mode::All => "all",
        }
    }

    /// The `[redis]` persistence lines.
    pub(crate) fn redis(self) -> &'static str {
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
pub(crate) fn run_group(
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

pub(crate) fn print_report(server: &Path, seed: u64, outcomes: &[(Mode, Outcome)]) {
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
