//! A rolling `redisrepd restart --all` under a write load that follows the master, on the
//! seed layout (a master and two replicas on 127.0.0.1, daemon `m` for the master, `r`
//! for the replicas), both ways in one run on fresh groups: without Sentinel (the master
//! restarted in place, writes refused while it is down) and with three sentinels (the
//! master role moved away through Sentinel first, then the old master restarted as a
//! replica). See bench/README.md.
//!
//! `cargo bench --bench sentinel_restart -- [--keys N] [--only plain|sentinel] [--keep]`

mod common;
mod load;
mod naive;
mod redislog;
mod trio;

use clap::Parser;
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use load::Load;
use trio::{Managed, NAMES, Persistence, Syncs};

struct Opts {
    keys: u64,
    only: Option<String>,
    keep: bool,
}

/// The command line (`cargo bench --bench sentinel_restart -- --help`).
#[derive(Parser)]
#[command(about = "A master restart with Sentinel watching, plain and in sentinel mode")]
struct Args {
    /// Keys in the group before the run.
    #[arg(long, default_value_t = 200_000)]
    keys: u64,
    /// Only one way (plain or sentinel).
    #[arg(long)]
    only: Option<String>,
    #[command(flatten)]
    common: common::BenchArgs,
}

fn opts() -> Opts {
    let a = Args::parse();
    Opts {
        keys: a.keys,
        only: a.only,
        keep: a.common.keep,
    }
}

/// Longest `restart --all` may run.
const VERB_DEADLINE: Duration = Duration::from_secs(240);
/// Longest the group may take to be in shape (and `status` 0) after the verb.
const SHAPE_DEADLINE: Duration = Duration::from_secs(120);
/// Longest the sentinels may take to know both replicas and each other (Sentinel asks
/// the master's INFO every 10 s, hellos go every 2 s).
const SENTINELS_DEADLINE: Duration = Duration::from_secs(60);
/// The cluster's name in trio's TOML: the name the sentinels monitor.
const CLUSTER: &str = "bench";

// ----- the sentinels -------------------------------------------------------------------

/// Three sentinels on 127.0.0.1: `s1` on host `m` (with the master), `s2` and `s3` on
/// host `r`; quorum 2, down_after 1 s, failover_timeout 10 s. Appended to the TOML.
fn add_sentinels(m: &Managed) -> Result<Vec<SocketAddr>, String> {
    let mut nodes = Vec::new();
    let mut lines = String::new();
    for (name, host) in [("s1", "m"), ("s2", "r"), ("s3", "r")] {
        let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        lines.push_str(&format!(
            "  {{ name = \"{name}\", host = \"{host}\", bind = \"127.0.0.1\", port = {} }},\n",
            addr.port()
        ));
        nodes.push(addr);
    }
    let section = format!(
        "\n[sentinel]\nquorum = 2\ndown_after = \"1s\"\nfailover_timeout = \"10s\"\nnodes = [\n{lines}]\n"
    );
    let toml = &m.layout.toml;
    let mut text = std::fs::read_to_string(toml).map_err(|e| format!("{}: {e}", toml.display()))?;
    text.push_str(&section);
    std::fs::write(toml, text).map_err(|e| format!("{}: {e}", toml.display()))?;
    Ok(nodes)
}

fn sentinel_query<T: redis::FromRedisValue>(
    sentinel: SocketAddr,
    args: &[&str],
) -> Result<T, String> {
    let mut c = trio::REDIS
        .connect(sentinel, Duration::from_secs(1))
        .map_err(|e| format!("{sentinel}: {e}"))?;
    let mut cmd = redis::cmd("SENTINEL");
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(&mut c).map_err(|e| format!("{sentinel}: {e}"))
}

/// The instance a sentinel names as master.
fn named(addrs: &[SocketAddr; 3], sentinel: SocketAddr) -> Result<usize, String> {
    let reply: Vec<String> = sentinel_query(sentinel, &["GET-MASTER-ADDR-BY-NAME", CLUSTER])?;
    let port: Option<u16> = reply.get(1).and_then(|p| p.parse().ok());
    port.and_then(|p| addrs.iter().position(|a| a.port() == p))
        .ok_or_else(|| format!("{sentinel} names {reply:?}, no instance"))
}

/// Until every sentinel names `master` and knows both replicas and the other two
/// sentinels.
fn wait_sentinels(
    addrs: &[SocketAddr; 3],
    sentinels: &[SocketAddr],
    master: usize,
) -> Result<(), String> {
    trio::wait(
        &format!(
            "every sentinel naming {} and knowing 2 replicas and 2 sentinels",
            NAMES[master]
        ),
        SENTINELS_DEADLINE,
        || {
            for s in sentinels {
                let n = named(addrs, *s)?;
                if n != master {
                    return Err(format!("{s} names {}", NAMES[n]));
                }
                let replicas: Vec<redis::Value> = sentinel_query(*s, &["REPLICAS", CLUSTER])?;
                let others: Vec<redis::Value> = sentinel_query(*s, &["SENTINELS", CLUSTER])?;
                if replicas.len() != 2 || others.len() != sentinels.len() - 1 {
                    return Err(format!(
                        "{s} knows {} replicas, {} other sentinels",
                        replicas.len(),
                        others.len()
                    ));
                }
            }
            Ok(())
        },
    )
}

// ----- the logs ------------------------------------------------------------------------

/// The log files read for the timeline: the two daemons', the configured master's Redis
/// log and each sentinel's (`log_dir` is set), each with how to read a line's time.
fn log_files(m: &Managed, sentinels: usize) -> Vec<(String, PathBuf, bool)> {
    let mut files = vec![
        ("daemon m".to_owned(), m.daemon_log("m"), true),
        ("daemon r".to_owned(), m.daemon_log("r"), true),
        ("master".to_owned(), m.layout.log(0), false),
    ];
    for i in 1..=sentinels {
        let name = format!("s{i}");
        let path = m.layout.dir.join("log").join(format!("{name}.log"));
        files.push((name, path, false));
    }
    files
}

/// Where each file ends now.
fn log_marks(files: &[(String, PathBuf, bool)]) -> Vec<u64> {
    files
        .iter()
        .map(|(_, p, _)| std::fs::metadata(p).map(|md| md.len()).unwrap_or(0))
        .collect()
}

/// Every line written since `marks`, as (seconds after `t0`, `[file] line`), in time
/// order (the daemon's RFC 3339 stamps and Redis's, read as UTC: see bench/redislog.rs).
fn timeline(
    files: &[(String, PathBuf, bool)],
    marks: &[u64],
    t0: SystemTime,
) -> Vec<(f64, String)> {
    let t0 = t0
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = Vec::new();
    for ((label, path, daemon), mark) in files.iter().zip(marks) {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            let _ = f.seek(std::io::SeekFrom::Start(*mark));
            let _ = f.read_to_string(&mut text);
        }
        for line in text.lines() {
            let parsed = if *daemon {
                redislog::daemon_line(line)
            } else {
                redislog::redis_line(line)
            };
            if let Some((at, msg)) = parsed {
                out.push((at - t0, format!("[{label}] {msg}")));
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The moments of the master's last step that explain the write pause, each the first
/// line since the verb began that contains its needle.
const MILESTONES: [(&str, &str); 9] = [
    (
        "daemon: SHUTDOWN SAVE of master",
        "stopping: SHUTDOWN SAVE instance=master",
    ),
    (
        "daemon: asks the sentinels",
        "asking the sentinels to fail over",
    ),
    ("a sentinel: +try-failover", "+try-failover"),
    ("a sentinel: +promoted-slave", "+promoted-slave"),
    ("a sentinel: +switch-master", "+switch-master"),
    ("master: DB saved on disk", "[master] DB saved on disk"),
    (
        "master: ready to exit",
        "[master] Redis is now ready to exit",
    ),
    ("master: DB loaded", "[master] DB loaded from disk"),
    (
        "master: ready for connections",
        "[master] Ready to accept connections",
    ),
];

fn milestones(lines: &[(f64, String)]) -> Vec<(&'static str, f64)> {
    MILESTONES
        .iter()
        .filter_map(|(label, needle)| {
            lines
                .iter()
                .find(|(at, l)| *at >= 0.0 && l.contains(needle))
                .map(|(at, _)| (*label, *at))
        })
        .collect()
}

// ----- one way -------------------------------------------------------------------------

struct Row {
    way: &'static str,
    verb_s: f64,
    writes_ok: usize,
    refused: BTreeMap<String, u64>,
    /// Seconds after the verb began of the first and last refused write.
    refused_window: Option<(f64, f64)>,
    max_gap_ms: f64,
    /// Seconds after the verb began when the longest pause began and ended.
    gap_at: (f64, f64),
    lost: [usize; 3],
    full: i64,
    partial: i64,
    master_after: usize,
    masters_seen: usize,
    sentinels_name: Option<String>,
    ping: [f64; 3],
    ping_errors: u64,
    /// Moments from the logs (see [`MILESTONES`]), seconds after the verb began.
    milestones: Vec<(&'static str, f64)>,
    verb_output: String,
}

fn run_way(o: &Opts, way: &'static str, with_sentinel: bool) -> Result<Row, String> {
    let tag = if with_sentinel {
        "sr-sentinel"
    } else {
        "sr-plain"
    };
    let mut m = Managed::setup(tag, Persistence::Rdb);
    m.layout.keep = o.keep;
    let sentinels = if with_sentinel {
        add_sentinels(&m)?
    } else {
        Vec::new()
    };
    let result = measure(o, &mut m, way, &sentinels);
    if let Err(e) = &result {
        eprintln!(
            "bench: {way} failed: {e}\n--- daemon m's log (tail):\n{}\n--- daemon r's log (tail):\n{}",
            m.log_tail("m", 40),
            m.log_tail("r", 40)
        );
    }
    result
}

fn measure(
    o: &Opts,
    m: &mut Managed,
    way: &'static str,
    sentinels: &[SocketAddr],
) -> Result<Row, String> {
    m.start_group(o.keys, Persistence::Rdb)?;
    let addrs = m.layout.addrs;
    if !sentinels.is_empty() {
        wait_sentinels(&addrs, sentinels, 0)?;
    }
    let prefix = "sr:";
    let syncs = Syncs::start(addrs);
    // With Sentinel the writer is a Sentinel-aware client: it asks the sentinels for the
    // master; without, it asks the instances' INFO.
    let opts = load::Options {
        sentinels: (!sentinels.is_empty()).then(|| (sentinels.to_vec(), CLUSTER.to_owned())),
        ..load::Options::default()
    };
    let load = Load::start_with(addrs.to_vec(), prefix.to_owned(), opts);
    load.wait_writes(200, "writes flowing before the restart")?;
    syncs.sample();
    let before = syncs.totals();
    let files = log_files(m, sentinels.len());
    let marks = log_marks(&files);
    let (t0, wall0) = (Instant::now(), SystemTime::now());
    let run = m.cli(&["restart", "--all"], VERB_DEADLINE);
    if !run.ok() {
        return Err(run.one_line());
    }
    eprintln!("bench: {way}: {}", run.one_line());
    let master_after = trio::wait("the group in shape", SHAPE_DEADLINE, || {
        trio::find_shape(&addrs, false, false)
    })?;
    m.wait_status_ok(SHAPE_DEADLINE)?;
    load.wait_writes(200, "writes flowing after the restart")?;
    let masters_seen = load::masters(&addrs).len();
    let (log, mut lat) = load.finish();
    let settled = trio::wait(
        "the replicas at the master's offset",
        SHAPE_DEADLINE,
        || trio::find_shape(&addrs, false, true),
    )?;
    if settled != master_after {
        return Err(format!(
            "the master moved after the restart: {} then {}",
            NAMES[master_after], NAMES[settled]
        ));
    }
    syncs.sample();
    let after = syncs.totals();
    let mut lost = [0; 3];
    for (i, addr) in addrs.iter().enumerate() {
        lost[i] = trio::missing_on(*addr, prefix, &log.acked)?.len();
    }
    let sentinels_name = if sentinels.is_empty() {
        None
    } else {
        let names: Vec<String> = sentinels
            .iter()
            .map(|s| named(&addrs, *s).map_or_else(|e| e, |i| NAMES[i].to_owned()))
            .collect();
        Some(names.join(" / "))
    };
    let lines = timeline(&files, &marks, wall0);
    for (at, line) in &lines {
        eprintln!("bench: {way}: {at:+7.3} s {line}");
    }
    let since = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(Row {
        way,
        verb_s: run.seconds,
        writes_ok: log.acked.len(),
        refused_window: log
            .refused_at
            .first()
            .zip(log.refused_at.last())
            .map(|(a, b)| (since(*a), since(*b))),
        refused: log.refused,
        max_gap_ms: log.max_gap.as_secs_f64() * 1000.0,
        gap_at: (
            log.max_gap_start.map_or(0.0, since),
            log.max_gap_end.map_or(0.0, since),
        ),
        lost,
        full: after[0] - before[0],
        partial: after[1] - before[1],
        master_after,
        masters_seen,
        sentinels_name,
        ping: [
            load::quantile(&lat, 0.5),
            load::quantile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0),
        ],
        ping_errors: log.ping_errors,
        milestones: milestones(&lines),
        verb_output: run.stdout.trim().replace('\n', " / "),
    })
}

fn main() {
    trio::install_signals();
    let o = opts();
    if !redislog::local_is_utc() {
        eprintln!(
            "bench: the local zone is not UTC: Redis's log times will be off; run with TZ=UTC"
        );
    }
    eprintln!(
        "bench: `redisrepd restart --all` under writes, without and with Sentinel, {} keys populated",
        o.keys
    );
    let mut rows = Vec::new();
    for (name, way, with_sentinel) in [
        ("plain", "without Sentinel", false),
        ("sentinel", "with Sentinel", true),
    ] {
        if o.only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        eprintln!("bench: {way}");
        rows.push(run_way(&o, way, with_sentinel).map_err(|e| format!("{way}: {e}")));
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
        "\n`redisrepd restart --all` under writes (SET every 2 ms, PING every 5 ms, both following the master); {} keys; RDB only\n",
        o.keys
    );
    println!(
        "| way | restart --all s | writes ok | writes refused (first–last, s) | longest write pause ms (from–to, s) | acknowledged writes lost on master / r1 / r2 | full syncs | partial resyncs | master after | PING p50/p99/max ms (errors) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for r in rows {
        match r {
            Ok(r) => {
                let refused: Vec<String> =
                    r.refused.iter().map(|(k, v)| format!("{v} {k}")).collect();
                let refused = if refused.is_empty() {
                    "0".to_owned()
                } else {
                    let (a, b) = r.refused_window.unwrap_or_default();
                    format!("{} ({a:.2}–{b:.2})", refused.join(", "))
                };
                let mut master = NAMES[r.master_after].to_owned();
                if r.masters_seen != 1 {
                    master.push_str(&format!(" (**{} masters**)", r.masters_seen));
                }
                println!(
                    "| {} | {:.2} | {} | {} | {:.0} ({:.2}–{:.2}) | **{} / {} / {}** | {} | {} | {} | {:.2}/{:.2}/{:.0} ({}) |",
                    r.way,
                    r.verb_s,
                    r.writes_ok,
                    refused,
                    r.max_gap_ms,
                    r.gap_at.0,
                    r.gap_at.1,
                    r.lost[0],
                    r.lost[1],
                    r.lost[2],
                    r.full,
                    r.partial,
                    master,
                    r.ping[0],
                    r.ping[1],
                    r.ping[2],
                    r.ping_errors,
                );
                let mut note = format!("{}: output: {}", r.way, r.verb_output);
                if let Some(s) = &r.sentinels_name {
                    note.push_str(&format!("; the sentinels name: {s}"));
                }
                let moments: Vec<String> = r
                    .milestones
                    .iter()
                    .map(|(what, at)| format!("{what} {at:.2}"))
                    .collect();
                note.push_str(&format!(
                    "; logs (s after the verb began): {}",
                    moments.join(", ")
                ));
                notes.push(note);
            }
            Err(e) => println!("| failed: {e} |||||||||"),
        }
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
}
