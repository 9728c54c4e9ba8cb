//! A planned switchover under a write load, on the seed layout (a master and two replicas
//! on 127.0.0.1): the master role moves to r1 and back. The naive ways — `REPLICAOF NO
//! ONE` and `REPLICAOF` by hand, or Redis's `FAILOVER TO` by hand — against
//! `redisrepd failover --to r1` and `--to master`, in one run. See bench/README.md.
//!
//! `cargo bench --bench failover -- [--keys N] [--only manual|failover-cmd|redisrepd] [--operator-delay-ms MS] [--keep]`
//!
//! A writer (`SET` every 2 ms) and a prober (`PING` every 5 ms) follow the master: each
//! writes to the instance INFO calls the master, and looks again after an error.

mod common;
mod load;
mod naive;
mod trio;

use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use load::Load;
use trio::{Layout, Managed, NAMES, Naive, Persistence, Syncs};

struct Opts {
    keys: u64,
    only: Option<String>,
    operator_delay: Duration,
    keep: bool,
}

/// The command line (`cargo bench --bench failover -- --help`).
#[derive(Parser)]
#[command(
    about = "Failover of a master and two replicas: redisrepd's `failover` against a naive switchover by hand"
)]
struct Args {
    /// Keys in the group before the run.
    #[arg(long, default_value_t = 200_000)]
    keys: u64,
    /// Only one way (manual, failover-cmd or redisrepd).
    #[arg(long)]
    only: Option<String>,
    /// Between the hand-typed commands of the manual way, in ms.
    #[arg(long, default_value_t = 0)]
    operator_delay_ms: u64,
    #[command(flatten)]
    common: common::BenchArgs,
}

fn opts() -> Opts {
    let a = Args::parse();
    Opts {
        keys: a.keys,
        only: a.only,
        operator_delay: Duration::from_millis(a.operator_delay_ms),
        keep: a.common.keep,
    }
}

/// Longest the group may take to reach its new shape after the action.
const SHAPE_DEADLINE: Duration = Duration::from_secs(120);
/// Longest a `redisrepd failover` may run.
const VERB_DEADLINE: Duration = Duration::from_secs(180);

// ----- one episode ---------------------------------------------------------------------

/// What one switchover measured.
struct Row {
    way: &'static str,
    what: String,
    verb_s: Option<f64>,
    shape_s: f64,
    max_gap_ms: f64,
    gap_end_s: f64,
    writes_ok: usize,
    refused: BTreeMap<String, u64>,
    lost: [usize; 3],
    full: i64,
    partial: i64,
    logged: [(u32, u32); 3],
    ping: [f64; 3],
    note: String,
}

/// Under the load: `action` moves the master role to `target`; then the group must
/// reach its shape (with `chain`, a replica may hang under the other replica), the
/// writer must write again, and every acknowledged write must be on all three.
fn episode(
    l: &Layout,
    way: &'static str,
    tag: &str,
    target: usize,
    chain: bool,
    action: impl FnOnce() -> Result<Option<trio::Run>, String>,
) -> Result<Row, String> {
    let addrs = l.addrs;
    let syncs = Syncs::start(addrs);
    let load = Load::start(addrs, format!("fo-{tag}:"));
    load.wait_writes(200, "writes flowing before the switchover")?;
    syncs.sample();
    let before = syncs.totals();
    let marks = trio::log_marks(l);
    let t0 = Instant::now();
    let run = action()?;
    let verb_s = run.as_ref().map(|r| r.seconds);
    let note = run
        .as_ref()
        .map(|r| r.stdout.trim().replace('\n', " / "))
        .unwrap_or_default();
    trio::wait(
        &format!("{} the master, the group in shape", NAMES[target]),
        SHAPE_DEADLINE,
        || trio::in_shape(&addrs, target, chain, false),
    )?;
    let shape_s = t0.elapsed().as_secs_f64();
    load.wait_writes(200, "writes flowing after the switchover")?;
    let (log, mut lat) = load.finish();
    trio::wait("replicas caught up", Duration::from_secs(60), || {
        trio::in_shape(&addrs, target, chain, true)
    })?;
    syncs.sample();
    let after = syncs.totals();
    let mut lost = [0; 3];
    for (i, addr) in addrs.iter().enumerate() {
        lost[i] = trio::missing_on(*addr, &format!("fo-{tag}:"), &log.acked)?.len();
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Row {
        way,
        what: format!("to {}", NAMES[target]),
        verb_s,
        shape_s,
        max_gap_ms: log.max_gap.as_secs_f64() * 1000.0,
        gap_end_s: log
            .max_gap_end
            .map_or(0.0, |e| e.saturating_duration_since(t0).as_secs_f64()),
        writes_ok: log.acked.len(),
        refused: log.refused,
        lost,
        full: after[0] - before[0],
        partial: after[1] - before[1],
        logged: trio::syncs_logged(l, marks),
        ping: [pct(0.5), pct(0.99), lat.last().copied().unwrap_or(0.0)],
        note,
    })
}

fn redis_cmd(addr: SocketAddr, cmd: &redis::Cmd) -> Result<(), String> {
    let mut c = trio::REDIS
        .connect(addr, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    cmd.query::<()>(&mut c)
        .map_err(|e| format!("{cmd:?} on {addr}: {e}"))
}

fn replicaof(addrs: &[SocketAddr; 3], on: usize, of: Option<usize>) -> Result<(), String> {
    let mut cmd = redis::cmd("REPLICAOF");
    match of {
        Some(m) => cmd.arg(addrs[m].ip().to_string()).arg(addrs[m].port()),
        None => cmd.arg("NO").arg("ONE"),
    };
    redis_cmd(addrs[on], &cmd)
}

// ----- the ways ------------------------------------------------------------------------

/// By hand without FAILOVER: `REPLICAOF NO ONE` on the new master, then `REPLICAOF` it on
/// the old master, then on the other replica.
fn manual(o: &Opts, rows: &mut Vec<Result<Row, String>>) -> Result<(), String> {
    let mut n = Naive::setup("failover-manual", Persistence::Rdb);
    n.layout.keep = o.keep;
    n.start_group(o.keys, Persistence::Rdb)?;
    let l = n.layout.clone();
    let a = l.addrs;
    let delay = o.operator_delay;
    for (from, to, other) in [(0, 1, 2), (1, 0, 2)] {
        let r = episode(
            &l,
            "naive: REPLICAOF by hand",
            &format!("m{to}"),
            to,
            false,
            || {
                replicaof(&a, to, None)?;
                std::thread::sleep(delay);
                replicaof(&a, from, Some(to))?;
                std::thread::sleep(delay);
                replicaof(&a, other, Some(to))?;
                Ok(None)
            },
        );
        let failed = r.is_err();
        rows.push(r);
        if failed {
            break;
        }
    }
    Ok(())
}

/// By hand with Redis's own `FAILOVER TO` on the master; the other replica is left where
/// it is (it now replicates from a replica).
fn failover_cmd(o: &Opts, rows: &mut Vec<Result<Row, String>>) -> Result<(), String> {
    let mut n = Naive::setup("failover-cmd", Persistence::Rdb);
    n.layout.keep = o.keep;
    n.start_group(o.keys, Persistence::Rdb)?;
    let l = n.layout.clone();
    let a = l.addrs;
    for (from, to) in [(0, 1), (1, 0)] {
        let r = episode(
            &l,
            "naive: FAILOVER TO by hand",
            &format!("f{to}"),
            to,
            true,
            || {
                let mut cmd = redis::cmd("FAILOVER");
                cmd.arg("TO")
                    .arg(a[to].ip().to_string())
                    .arg(a[to].port())
                    .arg("TIMEOUT")
                    .arg(10_000);
                redis_cmd(a[from], &cmd)?;
                Ok(None)
            },
        );
        let failed = r.is_err();
        rows.push(r);
        if failed {
            break;
        }
    }
    Ok(())
}

fn redisrepd(o: &Opts, rows: &mut Vec<Result<Row, String>>) -> Result<(), String> {
    let mut m = Managed::setup("failover-redisrepd", Persistence::Rdb);
    m.layout.keep = o.keep;
    m.start_group(o.keys, Persistence::Rdb)?;
    let l = m.layout.clone();
    for to in [1, 0] {
        let r = episode(
            &l,
            "redisrepd failover",
            &format!("r{to}"),
            to,
            false,
            || {
                let run = m.cli(&["failover", "--to", NAMES[to]], VERB_DEADLINE);
                if run.ok() {
                    Ok(Some(run))
                } else {
                    Err(run.one_line())
                }
            },
        )
        .map(|mut row| {
            if let Err(e) = m.wait_status_ok(Duration::from_secs(20)) {
                row.note = format!("{}; `status` not 0 within 20 s after: {e}", row.note);
            }
            row
        });
        let failed = r.is_err();
        rows.push(r);
        if failed {
            eprintln!("bench: daemon m's log:\n{}", m.log_tail("m", 30));
            break;
        }
    }
    Ok(())
}

fn main() {
    trio::install_signals();
    let o = opts();
    eprintln!(
        "bench: switchover to r1 and back under writes, {} keys populated, operator delay {:?}",
        o.keys, o.operator_delay
    );
    let mut rows: Vec<Result<Row, String>> = Vec::new();
    type Way = fn(&Opts, &mut Vec<Result<Row, String>>) -> Result<(), String>;
    for (name, way) in [
        ("manual", manual as Way),
        ("failover-cmd", failover_cmd),
        ("redisrepd", redisrepd),
    ] {
        if o.only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        eprintln!("bench: {name}");
        if let Err(e) = way(&o, &mut rows) {
            rows.push(Err(format!("{name}: setting up: {e}")));
        }
        if let Some(Err(e)) = rows.last() {
            eprintln!("bench: {name} failed: {e}");
        }
        if trio::interrupted() {
            break;
        }
    }
    print_table(&o, &rows);
    if rows.iter().any(|r| r.is_err()) {
        std::process::exit(1);
    }
}

fn print_table(o: &Opts, rows: &[Result<Row, String>]) {
    println!(
        "\nswitchover under writes (SET every 2 ms, PING every 5 ms, both following the master); {} keys; RDB only{}\n",
        o.keys,
        if o.operator_delay.is_zero() {
            String::new()
        } else {
            format!("; {:?} between the operator's commands", o.operator_delay)
        }
    );
    println!(
        "| way | move | longest write pause ms (ended at s) | writes ok | writes refused | acknowledged writes lost on master / r1 / r2 | full syncs | partial resyncs | s until new shape (verb) | PING p50/p99/max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for r in rows {
        match r {
            Ok(r) => {
                let refused: Vec<String> =
                    r.refused.iter().map(|(k, v)| format!("{v} {k}")).collect();
                println!(
                    "| {} | {} | {:.0} ({:.2}) | {} | {} | **{} / {} / {}** | {} | {} | {:.2}{} | {:.2}/{:.2}/{:.0} |",
                    r.way,
                    r.what,
                    r.max_gap_ms,
                    r.gap_end_s,
                    r.writes_ok,
                    if refused.is_empty() {
                        "0".to_owned()
                    } else {
                        refused.join(", ")
                    },
                    r.lost[0],
                    r.lost[1],
                    r.lost[2],
                    r.full,
                    r.partial,
                    r.shape_s,
                    r.verb_s.map_or(String::new(), |s| format!(" ({s:.2})")),
                    r.ping[0],
                    r.ping[1],
                    r.ping[2],
                );
                let logged: Vec<String> = (0..3)
                    .filter(|i| r.logged[*i] != (0, 0))
                    .map(|i| {
                        format!(
                            "{} {} full/{} partial",
                            NAMES[i], r.logged[i].0, r.logged[i].1
                        )
                    })
                    .collect();
                notes.push(format!(
                    "{} {}: logs: {}{}",
                    r.way,
                    r.what,
                    logged.join(", "),
                    if r.note.is_empty() {
                        String::new()
                    } else {
                        format!("; output: {}", r.note)
                    }
                ));
            }
            Err(e) => println!("| failed: {e} |||||||||"),
        }
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
}
