//! Clients through HAProxy: the longest write gap a client sees through the haproxy.cfg
//! that `redisrepd haproxy` prints, per event — a failover to r1, the failback, a master
//! crash (SIGKILL; the daemon's catch-up), and `promote` of the most advanced replica after the master's host died.
//! See bench/README.md.
//!
//! `cargo bench --bench clients -- [--runs N] [--keys N] [--health-interval 1s] [--keep]`
//!
//! The seed layout on 127.0.0.1 (bench/trio.rs: host `m` runs the master, host `r` both
//! replicas), each daemon with its HTTP endpoint (`[http] listen`), and a real HAProxy
//! (`/usr/sbin/haproxy`) on the generated config. One client writes `SET cl:<n>` through
//! HAProxy every 2 ms, one at a time; after a failed write it reconnects after a backoff
//! (10 ms, doubling to 160 ms), as client libraries do. A write counts as acknowledged on
//! its OK. Measured per event: the longest time between two acknowledged writes from the
//! event's start until writes flow again (the promotion: from the `promote` command, typed
//! once HAProxy has marked the dead master down), the failed writes by kind, and at the
//! end whether every acknowledged write is on the final master.

mod common;
mod naive;
mod trio;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::Parser;
use redisrepd_testkit::{Target, Writer, WriterOpts, count_kinds};
use trio::{Managed, Persistence};

/// Longest write gap through HAProxy per event.
#[derive(Parser)]
struct Opts {
    /// Rounds of the four events, each on a fresh group.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Keys in the data set (DEBUG POPULATE).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// `[supervise] health_interval` of the group (the product's default: 1s).
    #[arg(long, default_value = "1s")]
    health_interval: String,
    #[command(flatten)]
    common: common::BenchArgs,
}

const HAPROXY: &str = "/usr/sbin/haproxy";
const PREFIX: &str = "cl:";
/// The testkit's writer through HAProxy at `front`: `SET cl:<n> <n>` every 2 ms, one at a
/// time, acknowledged on its OK; after a failed write or connection it reconnects after
/// a backoff (10 ms, doubling to 160 ms), as client libraries do.
fn writer(front: SocketAddr) -> Writer {
    Writer::start(
        Target::Fixed(front),
        WriterOpts {
            password: Some(trio::PASSWORD.to_owned()),
            prefix: PREFIX.to_owned(),
            pause: Duration::from_millis(2),
            backoff: (Duration::from_millis(10), Duration::from_millis(160)),
            connect_timeout: Duration::from_secs(2),
            io_timeout: trio::IO_TIMEOUT,
            max_run: Duration::from_secs(24 * 3600),
            ..WriterOpts::default()
        },
    )
}

/// Until `n` more writes are acknowledged.
fn wait_more(w: &Writer, n: usize, what: &str) -> Result<(), String> {
    let goal = w.acked() + n;
    trio::wait(what, Duration::from_secs(120), || w.reached(goal))
}

/// HAProxy, killed on drop.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An event: does it, says when it began and which instance is master after it.
type Action<'a> = dyn FnMut(&mut Managed) -> Result<(Instant, usize), String> + 'a;

/// One event's figures.
struct Row {
    event: &'static str,
    gap: Duration,
    failed: BTreeMap<String, u64>,
}

fn failed_text(f: &BTreeMap<String, u64>) -> String {
    if f.is_empty() {
        return "0".to_owned();
    }
    f.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One round: a fresh group, HAProxy, the four events; the rows and the acknowledged
/// writes the final master lacks.
fn round(o: &Opts) -> Result<(Vec<Row>, usize, usize), String> {
    let mut g = Managed::setup("clients", Persistence::Rdb);
    g.layout.keep = o.common.keep;
    let (hm, hr) = (common::free_port(), common::free_port());
    let text = std::fs::read_to_string(&g.layout.toml).map_err(|e| e.to_string())?;
    let text = text.replace(
        "health_interval = \"100ms\"",
        &format!("health_interval = \"{}\"", o.health_interval),
    );
    let text =
        format!("{text}\n[http]\nlisten = {{ m = \"127.0.0.1:{hm}\", r = \"127.0.0.1:{hr}\" }}\n");
    std::fs::write(&g.layout.toml, text).map_err(|e| e.to_string())?;
    g.start_group(o.keys, Persistence::Rdb)?;

    let front = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let run = g.cli(
        &["haproxy", "--bind", &front.to_string()],
        Duration::from_secs(30),
    );
    if !run.ok() {
        return Err(run.one_line());
    }
    let cfg = g.layout.dir.join("haproxy.cfg");
    std::fs::write(&cfg, &run.stdout).map_err(|e| e.to_string())?;
    let _hp = Haproxy(trio::spawn_logged(
        Command::new(HAPROXY).arg("-db").arg("-f").arg(&cfg),
        &g.layout.dir.join("haproxy.log"),
    )?);
    let w = writer(front);
    wait_more(&w, 200, "writes through HAProxy")?;

    let mut rows = Vec::new();
    let mut event =
        |name: &'static str, g: &mut Managed, w: &Writer, act: &mut Action| -> Result<(), String> {
            let (began, master) = act(g)?;
            let addrs = g.layout.addrs;
            trio::wait("the group in shape", Duration::from_secs(120), || {
                if master == 0 || trio::REDIS.info(addrs[0], "replication").is_ok() {
                    return trio::in_shape(&addrs, master, false, false);
                }
                // The configured master's host is down: the other two in shape.
                let other = 3 - master;
                let (role, up) = trio::role(addrs[other])?;
                let (m, _) = trio::role(addrs[master])?;
                (m == "master" && role == "replica" && up == Some(addrs[master].port()))
                    .then_some(())
                    .ok_or_else(|| {
                        format!(
                            "{} not yet under {}",
                            trio::NAMES[other],
                            trio::NAMES[master]
                        )
                    })
            })?;
            wait_more(w, 300, "writes flowing again")?;
            // The longest stretch without an acknowledged write from the event's start
            // until now, and the failed writes and connections meanwhile by kind.
            let now = Instant::now();
            let (gap, failed) = (
                w.longest_gap(began, now),
                count_kinds(&w.failures(began, now)),
            );
            eprintln!(
                "clients: {name}: longest write gap {} ms, failed writes {}",
                gap.as_millis(),
                failed_text(&failed)
            );
            rows.push(Row {
                event: name,
                gap,
                failed,
            });
            Ok(())
        };
    let verb = |args: &'static [&'static str], master: usize| {
        move |g: &mut Managed| -> Result<(Instant, usize), String> {
            let began = Instant::now();
            let r = g.cli(args, Duration::from_secs(180));
            r.ok()
                .then_some((began, master))
                .ok_or_else(|| r.one_line())
        }
    };
    event(
        "failover --to r1",
        &mut g,
        &w,
        &mut verb(&["failover", "--to", "r1"], 1),
    )?;
    event(
        "failover --to master",
        &mut g,
        &w,
        &mut verb(&["failover", "--to", "master"], 0),
    )?;
    event(
        "master crash (SIGKILL), catch-up",
        &mut g,
        &w,
        &mut |g: &mut Managed| {
            let began = Instant::now();
            g.kill(0)?;
            Ok((began, 0))
        },
    )?;
    event(
        "promote (master's host down)",
        &mut g,
        &w,
        &mut |g: &mut Managed| {
            g.kill_daemon("m");
            g.kill(0)?;
            let died = Instant::now();
            // The operator types `promote` once HAProxy has marked the dead master down.
            trio::wait("HAProxy to refuse writes", Duration::from_secs(60), || {
                let since = died + Duration::from_millis(800);
                (!w.failures(since, Instant::now()).is_empty())
                    .then_some(())
                    .ok_or_else(|| "not yet".to_owned())
            })?;
            // The replica with the most (a write in flight may have reached only one):
            // promote refuses the other, rightly.
            let offset = |i: usize| {
                trio::REDIS
                    .info(g.layout.addrs[i], "replication")
                    .ok()
                    .and_then(|i| i.repl_offset())
                    .unwrap_or(-1)
            };
            let new = if offset(2) > offset(1) { 2 } else { 1 };
            let began = Instant::now();
            let r = g.cli(&["promote", trio::NAMES[new]], Duration::from_secs(180));
            r.ok().then_some((began, new)).ok_or_else(|| r.one_line())
        },
    )?;
    let acked = w.finish().acked();
    // The configured master's host is down now: the master is r1 or r2.
    let master = (1..3)
        .find(|i| trio::role(g.layout.addrs[*i]).is_ok_and(|(r, _)| r == "master"))
        .ok_or("neither r1 nor r2 is master")?;
    let lost = trio::missing_on(g.layout.addrs[master], PREFIX, &acked)?;
    Ok((rows, acked.len(), lost.len()))
}

fn main() {
    let o = Opts::parse();
    trio::install_signals();
    if !std::path::Path::new(HAPROXY).exists() {
        eprintln!("clients: {HAPROXY} is missing: apt-get install haproxy");
        std::process::exit(1);
    }
    let mut all: BTreeMap<&'static str, Vec<(Duration, String)>> = BTreeMap::new();
    let mut order: Vec<&'static str> = Vec::new();
    let mut totals = (0, 0);
    for n in 1..=o.runs {
        match round(&o) {
            Ok((rows, acked, lost)) => {
                eprintln!("clients: run {n}: {acked} writes acknowledged, {lost} lost");
                totals.0 += acked;
                totals.1 += lost;
                for r in rows {
                    if !order.contains(&r.event) {
                        order.push(r.event);
                    }
                    all.entry(r.event)
                        .or_default()
                        .push((r.gap, failed_text(&r.failed)));
                }
            }
            Err(e) => {
                eprintln!("clients: run {n} failed: {e}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "\n{} runs, health_interval {}, {} keys; {} writes acknowledged, {} lost\n",
        o.runs, o.health_interval, o.keys, totals.0, totals.1
    );
    println!("| event | longest write gap ms, each run | max | failed writes, each run |");
    println!("|---|---|---|---|");
    for e in order {
        let runs = &all[e];
        let gaps: Vec<String> = runs
            .iter()
            .map(|(g, _)| g.as_millis().to_string())
            .collect();
        let max = runs.iter().map(|(g, _)| *g).max().unwrap_or_default();
        let failed: Vec<&str> = runs.iter().map(|(_, f)| f.as_str()).collect();
        println!(
            "| {e} | {} | {} | {} |",
            gaps.join(" / "),
            max.as_millis(),
            failed.join(" / ")
        );
    }
}
