//! A crashed master loses nothing its replicas have: the master of the seed layout (a
//! master and two replicas on 127.0.0.1) is SIGKILLed after writes that both replicas
//! acknowledged (`WAIT 2`) since its last save; the naive way (what init scripts and
//! `Restart=always` do) starts it again on the same config at once, redisrepd's daemon
//! restarts it itself. Both ways in one run; see bench/README.md.
//!
//! `cargo bench --bench master_crash -- [--aof] [--keys N] [--writes N] [--only naive|redisrepd] [--keep]`

mod common;
mod naive;
mod trio;

use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use trio::{Layout, Managed, NAMES, Naive, Persistence, Syncs};

struct Opts {
    persistence: Persistence,
    keys: u64,
    writes: u64,
    only: Option<String>,
    resave: bool,
    keep: bool,
}

/// The command line (`cargo bench --bench master_crash -- --help`).
#[derive(Parser)]
#[command(
    about = "A crashed master, restarted by hand (the naive way) and by redisrepd: what its replicas lose and resync"
)]
struct Args {
    /// AOF (appendfsync everysec) besides `save 3600 1`; default RDB only.
    #[arg(long)]
    aof: bool,
    /// Keys in the group before the run.
    #[arg(long, default_value_t = 200_000)]
    keys: u64,
    /// Acknowledged writes before the crash.
    #[arg(long, default_value_t = 2000)]
    writes: u64,
    /// Only one way (naive or redisrepd).
    #[arg(long)]
    only: Option<String>,
    /// The master's RDB from before its replicas connected (no replication id).
    #[arg(long)]
    no_resave: bool,
    #[command(flatten)]
    common: common::BenchArgs,
}

fn opts() -> Opts {
    let a = Args::parse();
    Opts {
        persistence: if a.aof {
            Persistence::Aof
        } else {
            Persistence::Rdb
        },
        keys: a.keys,
        writes: a.writes,
        only: a.only,
        resave: !a.no_resave,
        keep: a.common.keep,
    }
}

/// What one way measured.
#[derive(Default)]
struct Row {
    acked: usize,
    not_acked: usize,
    /// Acknowledged writes missing on each instance once all were in sync.
    lost: [usize; 3],
    /// Full syncs and partial resyncs served (INFO stats, summed over instances and runs).
    full: i64,
    partial: i64,
    /// (full, partial) per instance from its own log.
    logged: [(u32, u32); 3],
    writable_s: Option<f64>,
    probe_errors: BTreeMap<String, u64>,
    in_sync_s: f64,
    master_after: &'static str,
    note: String,
}

const PREFIX: &str = "crash:";
/// Longest the master may take to accept a write again.
const WRITABLE_DEADLINE: Duration = Duration::from_secs(60);
/// Longest the group may take to be back in sync.
const IN_SYNC_DEADLINE: Duration = Duration::from_secs(300);

/// `SET crash:<n> <n>` then `WAIT 2 5000`, pipelined, for n in 1..=writes: the writes
/// both replicas acknowledged, and how many they did not.
fn write_acked(master: SocketAddr, writes: u64) -> Result<(Vec<u64>, usize), String> {
    let mut con = trio::REDIS
        .connect(master, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let (mut acked, mut not) = (Vec::new(), 0);
    for n in 1..=writes {
        let (replicas,): (i64,) = redis::pipe()
            .cmd("SET")
            .arg(format!("{PREFIX}{n}"))
            .arg(n)
            .ignore()
            .cmd("WAIT")
            .arg(2)
            .arg(5000)
            .query(&mut con)
            .map_err(|e| format!("SET + WAIT on the master: {e}"))?;
        if replicas >= 2 {
            acked.push(n);
        } else {
            not += 1;
        }
    }
    Ok((acked, not))
}

/// `SET` on `addr` every 5 ms from `t0` until one succeeds: the seconds that took, and
/// the errors seen on the way (READONLY, LOADING, connection, ...).
fn until_writable(addr: SocketAddr, t0: Instant) -> (Option<f64>, BTreeMap<String, u64>) {
    let mut errors = BTreeMap::new();
    let mut con: Option<redis::Connection> = None;
    let mut n = 0u64;
    while t0.elapsed() < WRITABLE_DEADLINE && !trio::interrupted() {
        if con.is_none() {
            match trio::REDIS.connect(addr, Duration::from_millis(200)) {
                Ok(c) => con = Some(c),
                Err(e) => {
                    *errors.entry(trio::error_kind(&e)).or_default() += 1;
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        }
        n += 1;
        let c = con.as_mut().expect("connected");
        match redis::cmd("SET")
            .arg(format!("probe:{n}"))
            .arg(n)
            .query::<()>(c)
        {
            Ok(()) => return (Some(t0.elapsed().as_secs_f64()), errors),
            Err(e) => {
                if e.code().is_none() {
                    con = None;
                }
                *errors.entry(trio::error_kind(&e)).or_default() += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (None, errors)
}

/// The episode on a group in sync: acknowledged writes, the kill (`crash` SIGKILLs the
/// master and, for the naive way, starts it again), then the measurements.
fn episode(
    l: &Layout,
    o: &Opts,
    crash: impl FnOnce() -> Result<(), String>,
) -> Result<Row, String> {
    let addrs = l.addrs;
    let syncs = Syncs::start(addrs);
    let (acked, not_acked) = write_acked(addrs[0], o.writes)?;
    eprintln!(
        "bench: {} writes acknowledged by both replicas ({not_acked} not); SIGKILL to the master",
        acked.len()
    );
    syncs.sample();
    let before = syncs.totals();
    let marks = trio::log_marks(l);
    let t0 = Instant::now();
    crash()?;
    // The probe runs beside the wait for the group, so that each is timed on its own.
    let probe_done = Arc::new(AtomicBool::new(false));
    let probe = {
        let done = probe_done.clone();
        std::thread::spawn(move || {
            let r = until_writable(addrs[0], t0);
            done.store(true, Ordering::Relaxed);
            r
        })
    };
    // In sync under the configured master; under another one only once the probe has
    // given up on the master's address (a catch-up passes through another master).
    // When it ends under another master, the time is when it was first in sync so.
    let mut first_other: Option<f64> = None;
    let master_after = trio::wait("the group in sync", IN_SYNC_DEADLINE, || {
        if trio::in_shape(&addrs, 0, false, true).is_ok() {
            return Ok(0);
        }
        let other = trio::find_shape(&addrs, false, true);
        if other.is_ok() && first_other.is_none() {
            first_other = Some(t0.elapsed().as_secs_f64());
        }
        if probe_done.load(Ordering::Relaxed) {
            return other;
        }
        Err("not in sync under `master`".to_owned())
    });
    let in_sync_s = match master_after {
        Ok(i) if i != 0 => first_other.unwrap_or_else(|| t0.elapsed().as_secs_f64()),
        _ => t0.elapsed().as_secs_f64(),
    };
    let (writable_s, probe_errors) = probe.join().unwrap_or_default();
    eprintln!("bench: master writable after {writable_s:?} s");
    let master_after = master_after?;
    syncs.sample();
    let after = syncs.totals();
    let mut lost = [0; 3];
    for (i, addr) in addrs.iter().enumerate() {
        lost[i] = trio::missing_on(*addr, PREFIX, &acked)?.len();
    }
    Ok(Row {
        acked: acked.len(),
        not_acked,
        lost,
        full: after[0] - before[0],
        partial: after[1] - before[1],
        logged: trio::syncs_logged(l, marks),
        writable_s,
        probe_errors,
        in_sync_s,
        master_after: NAMES[master_after],
        note: String::new(),
    })
}

fn naive_way(o: &Opts) -> Result<Row, String> {
    let mut n = Naive::setup("crash-naive", o.persistence);
    n.layout.keep = o.keep;
    n.layout.resave = o.resave;
    n.start_group(o.keys, o.persistence)?;
    let layout = n.layout.clone();
    episode(&layout, o, || {
        n.kill(0);
        // systemd's Restart=always, after its default RestartSec (100 ms).
        std::thread::sleep(Duration::from_millis(100));
        n.start(0)
    })
}

fn redisrepd_way(o: &Opts) -> Result<Row, String> {
    let mut m = Managed::setup("crash-redisrepd", o.persistence);
    m.layout.keep = o.keep;
    m.layout.resave = o.resave;
    m.start_group(o.keys, o.persistence)?;
    let layout = m.layout.clone();
    let mut row = episode(&layout, o, || m.kill(0).map(|_| ()))?;
    let t = Instant::now();
    if let Err(e) = m.wait_status_ok(Duration::from_secs(20)) {
        row.note = format!("`status` not 0 within 20 s after the group was in sync: {e}");
    } else if t.elapsed() > Duration::from_millis(500) {
        row.note = format!(
            "`status` exit 0 {:.1} s after the group was in sync",
            t.elapsed().as_secs_f64()
        );
    }
    let log = m.log_tail("m", 400);
    let interesting: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("crash")
                || l.contains("catch")
                || l.contains("exited")
                || l.contains("promot")
        })
        .collect();
    eprintln!("bench: daemon m on the crash:\n{}", interesting.join("\n"));
    Ok(row)
}

fn main() {
    trio::install_signals();
    let o = opts();
    eprintln!(
        "bench: master crash, {}, {} keys populated, {} acknowledged writes after the save",
        o.persistence.label(),
        o.keys,
        o.writes
    );
    let mut rows: Vec<(&str, Result<Row, String>)> = Vec::new();
    for (way, run) in [
        ("naive", naive_way as fn(&Opts) -> Result<Row, String>),
        ("redisrepd", redisrepd_way),
    ] {
        if o.only.as_deref().is_some_and(|only| only != way) {
            continue;
        }
        eprintln!("bench: {way}");
        let r = run(&o);
        if let Err(e) = &r {
            eprintln!("bench: {way} failed: {e}");
        }
        rows.push((way, r));
        if trio::interrupted() {
            break;
        }
    }
    print_table(&o, &rows);
    if rows.iter().any(|(_, r)| r.is_err()) {
        std::process::exit(1);
    }
}

fn print_table(o: &Opts, rows: &[(&str, Result<Row, String>)]) {
    println!(
        "\nmaster SIGKILLed, {}; {} keys populated and saved, then {} writes each acknowledged by both replicas (WAIT 2)\n",
        o.persistence.label(),
        o.keys,
        o.writes
    );
    println!(
        "| way | writes acknowledged | lost on master / r1 / r2 | full syncs | partial resyncs | replicas' logs: r1, r2 (full/partial) | s until master writable | refused meanwhile | s until all in sync | master after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (way, r) in rows {
        match r {
            Ok(r) => {
                let refused: Vec<String> = r
                    .probe_errors
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect();
                println!(
                    "| {way} | {}{} | **{} / {} / {}** | {} | {} | {}/{}, {}/{} | {} | {} | {:.1} | {} |",
                    r.acked,
                    if r.not_acked > 0 {
                        format!(" ({} not)", r.not_acked)
                    } else {
                        String::new()
                    },
                    r.lost[0],
                    r.lost[1],
                    r.lost[2],
                    r.full,
                    r.partial,
                    r.logged[1].0,
                    r.logged[1].1,
                    r.logged[2].0,
                    r.logged[2].1,
                    r.writable_s.map_or(
                        format!("not within {} s", WRITABLE_DEADLINE.as_secs()),
                        |s| format!("{s:.2}")
                    ),
                    if refused.is_empty() {
                        "-".to_owned()
                    } else {
                        refused.join(", ")
                    },
                    r.in_sync_s,
                    r.master_after,
                );
                if r.logged[0] != (0, 0) {
                    println!(
                        "  ({way}: the master's own log: {} full / {} partial as a replica)",
                        r.logged[0].0, r.logged[0].1
                    );
                }
                if !r.note.is_empty() {
                    println!("  ({way}: {})", r.note);
                }
            }
            Err(e) => println!("| {way} | failed: {e} |||||||||"),
        }
    }
}
