//! `redisrepd doctor`: what a host must give its Redis servers, judged. Pure: [`read`]
//! reads /proc, /sys, the limits and the disks into [`Host`] and the TOML into [`Need`]s
//! (for the command and the daemon's metrics); every rule here is a function of those texts and numbers, so each is
//! tested on fixture contents.

use std::fmt;
use std::path::PathBuf;

/// How a check came out; the order is the severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warning,
    Problem,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad: the report aligns its columns with `{:<8}`.
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => "problem",
        })
    }
}

/// One line of the report: which check, how it came out, what was found, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A short stable name (`overcommit`, `thp`, `somaxconn`, `open-files`, `memory`,
    /// `disk`, `clock`), also the metrics label.
    pub check: &'static str,
    pub level: Level,
    pub what: String,
    /// What to do about it (None when ok).
    pub fix: Option<String>,
}

impl Finding {
    fn new(check: &'static str, level: Level, what: String, fix: Option<String>) -> Finding {
        Finding {
            check,
            level,
            what,
            fix,
        }
    }
}

/// Whether the kernel says the clock is synchronised (adjtimex's `STA_UNSYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Synced,
    Unsynced,
    Unknown,
}

/// A descriptor limit and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: u64,
    /// e.g. "its process" or "a daemon started from this shell".
    pub whose: String,
}

/// What was read from the host (each `None` when the file could not be read).
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// /proc/sys/vm/overcommit_memory
    pub overcommit_memory: Option<String>,
    /// /sys/kernel/mm/transparent_hugepage/enabled
    pub thp_enabled: Option<String>,
    /// /proc/sys/net/core/somaxconn
    pub somaxconn: Option<String>,
    /// /proc/meminfo
    pub meminfo: Option<String>,
    /// memory.max of this process's cgroup (v2), or memory.limit_in_bytes (v1).
    pub cgroup_memory_max: Option<String>,
    pub clock: Option<Clock>,
}

/// What one local instance needs of the host, from the TOML and its files.
#[derive(Debug, Clone)]
pub struct Need {
    pub name: String,
    /// Its process, when it runs now.
    pub pid: Option<u32>,
    /// `tcp-backlog` (Redis's default 511).
    pub tcp_backlog: u64,
    /// `maxclients` (default 10000).
    pub maxclients: u64,
    /// `maxmemory` in bytes; 0 = none set.
    pub maxmemory: u64,
    /// The descriptor limit it runs with (or would be started with).
    pub open_files: Option<OpenFiles>,
    pub data_dir: PathBuf,
    /// Free bytes on data_dir's file system (None: not there yet or unreadable).
    pub disk_free: Option<u64>,
    /// The bytes a snapshot of it takes: its dump.rdb (and AOF) now, else `maxmemory`.
    pub snapshot_bytes: u64,
}

/// Redis keeps this many descriptors beside maxclients (`CONFIG_MIN_RESERVED_FDS`).
const RESERVED_FDS: u64 = 32;

/// Every check, in the order printed.
pub fn judge(host: &Host, needs: &[Need]) -> Vec<Finding> {
    let mut out = vec![
        overcommit(host.overcommit_memory.as_deref()),
        thp(host.thp_enabled.as_deref()),
        somaxconn(host.somaxconn.as_deref(), needs),
    ];
    out.extend(open_files(needs));
    out.push(memory(
        host.meminfo.as_deref(),
        host.cgroup_memory_max.as_deref(),
        needs,
    ));
    out.extend(disk(needs));
    out.push(clock(host.clock));
    out
}

/// Each check at its worst level over its lines (`open-files` and `disk` have one per
/// instance), as the metric `redisrepd_doctor_check` gives them: 0 ok, 1 warning, 2 problem.
pub fn worst_per_check(findings: &[Finding]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for f in findings {
        let level = match f.level {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Problem => 2,
        };
        match out.iter_mut().find(|(c, _)| c == f.check) {
            Some((_, l)) => *l = (*l).max(level),
            None => out.push((f.check.to_owned(), level)),
        }
    }
    out
}

/// The exit status docs/reference/cli.md gives `doctor`: 0 all ok, 1 a problem, 3 only warnings.
pub fn exit_status(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.level).max() {
        Some(Level::Problem) => 1,
        Some(Level::Warning) => 3,
        _ => 0,
    }
}

fn unreadable(check: &'static str, what: &str) -> Finding {
    Finding::new(
        check,
        Level::Warning,
        format!("cannot read {what}"),
        Some("run doctor on the host itself (not in a container that hides it), as root if it says permission denied".into()),
    )
}

/// `vm.overcommit_memory`: with 0 the kernel may refuse the fork of a background save or a
/// full sync when free memory looks short (Redis logs "Memory overcommit must be enabled!"
/// at every start); 2 refuses it whenever the commit limit is reached.
pub fn overcommit(text: Option<&str>) -> Finding {
    const FIX: &str = "sysctl vm.overcommit_memory=1, and keep it: echo 'vm.overcommit_memory = 1' > /etc/sysctl.d/30-redis.conf";
    let Some(text) = text else {
        return unreadable("overcommit", "/proc/sys/vm/overcommit_memory");
    };
    match text.trim() {
        "1" => Finding::new(
            "overcommit",
            Level::Ok,
            "vm.overcommit_memory = 1".into(),
            None,
        ),
        "2" => Finding::new(
            "overcommit",
            Level::Problem,
            "vm.overcommit_memory = 2: the fork of a background save or a full sync fails once the commit limit is reached".into(),
            Some(FIX.into()),
        ),
        v => Finding::new(
            "overcommit",
            Level::Warning,
            format!("vm.overcommit_memory = {v}: a background save or a full sync may fail to fork when free memory looks short"),
            Some(FIX.into()),
        ),
    }
}

/// Transparent huge pages: with `always`, a fork's copy-on-write copies 2 MB pages, and
/// latency and memory use grow. Redis 6.2 and newer turn it off for their own process
/// (`disable-thp yes`, the default), so `always` is a warning, not a problem.
pub fn thp(text: Option<&str>) -> Finding {
    let Some(text) = text else {
        return Finding::new(
            "thp",
            Level::Ok,
            "transparent huge pages are not available on this kernel".into(),
            None,
        );
    };
    // The kernel marks the active choice with brackets: "always [madvise] never".
    let active = text
        .split_whitespace()
        .find(|w| w.starts_with('[') && w.ends_with(']'))
        .map(|w| w.trim_matches(['[', ']']))
        .unwrap_or(text.trim());
    if active == "always" {
        Finding::new(
            "thp",
            Level::Warning,
            "transparent huge pages: always (Redis 6.2+ opts its own process out with disable-thp; older servers suffer latency and copy-on-write growth)".into(),
            Some("echo madvise > /sys/kernel/mm/transparent_hugepage/enabled, and keep it with the kernel parameter transparent_hugepage=madvise".into()),
        )
    } else {
        Finding::new(
            "thp",
            Level::Ok,
            format!("transparent huge pages: {active}"),
            None,
        )
    }
}

/// `net.core.somaxconn` caps every listen backlog: a `tcp-backlog` above it is cut down
/// (Redis logs "The TCP backlog setting ... cannot be enforced").
pub fn somaxconn(text: Option<&str>, needs: &[Need]) -> Finding {
    let Some(text) = text else {
        return unreadable("somaxconn", "/proc/sys/net/core/somaxconn");
    };
    let Ok(have) = text.trim().parse::<u64>() else {
        return unreadable("somaxconn", "a number in /proc/sys/net/core/somaxconn");
    };
    let Some(top) = needs.iter().max_by_key(|n| n.tcp_backlog) else {
        return Finding::new(
            "somaxconn",
            Level::Ok,
            format!("net.core.somaxconn = {have}"),
            None,
        );
    };
    if have >= top.tcp_backlog {
        Finding::new(
            "somaxconn",
            Level::Ok,
            format!(
                "net.core.somaxconn = {have}, at least tcp-backlog {}",
                top.tcp_backlog
            ),
            None,
        )
    } else {
        Finding::new(
            "somaxconn",
            Level::Warning,
            format!(
                "net.core.somaxconn = {have} is below tcp-backlog {} of `{}`: bursts of connections are refused",
                top.tcp_backlog, top.name
            ),
            Some(format!(
                "sysctl net.core.somaxconn={0}, and keep it: echo 'net.core.somaxconn = {0}' > /etc/sysctl.d/30-redis.conf",
                top.tcp_backlog
            )),
        )
    }
}

/// Each instance wants `maxclients + 32` descriptors; with fewer, Redis lowers maxclients
/// at start (and refuses clients beyond it).
pub fn open_files(needs: &[Need]) -> Vec<Finding> {
    needs
        .iter()
        .map(|n| {
            let want = n.maxclients + RESERVED_FDS;
            match &n.open_files {
                None => unreadable("open-files", &format!("the open-files limit of `{}`", n.name)),
                Some(l) if l.soft >= want => Finding::new(
                    "open-files",
                    Level::Ok,
                    format!("`{}`: open files {} ({}), at least maxclients {} + {RESERVED_FDS}", n.name, l.soft, l.whose, n.maxclients),
                    None,
                ),
                Some(l) => Finding::new(
                    "open-files",
                    Level::Problem,
                    format!(
                        "`{}`: open files {} ({}) is below maxclients {} + {RESERVED_FDS}: Redis lowers maxclients to {}",
                        n.name, l.soft, l.whose, n.maxclients, l.soft.saturating_sub(RESERVED_FDS)
                    ),
                    Some(format!(
                        "LimitNOFILE={want} or more in the unit (systemctl edit redisrepd), or `ulimit -n {want}` before `redisrepd daemon`, then restart the instance"
                    )),
                ),
            }
        })
        .collect()
}

/// `MemTotal` in bytes: what the host can ever give (free memory comes and goes; the page
/// cache yields to Redis).
fn mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let mut words = rest.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") | None => Some(n * 1024),
            _ => None,
        }
    })
}

/// A cgroup's memory limit: "max" (v2) or a huge number (v1's "unlimited") mean none.
fn cgroup_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    // cgroup v1 writes PAGE_COUNTER_MAX rounded to pages (~2^63) for "no limit".
    (n < 1 << 60).then_some(n)
}

/// The memory the instances may take, with room for one fork's copy-on-write (the
/// largest instance copying all of its pages: a write-heavy worst case; the sync gate and
/// staggered saves keep forks from all running at once), against the RAM and the cgroup.
/// Instances without `maxmemory` can grow to all of it: a warning, as no sum is possible.
pub fn memory(meminfo: Option<&str>, cgroup: Option<&str>, needs: &[Need]) -> Finding {
    let Some(total) = meminfo.and_then(mem_total) else {
        return unreadable("memory", "MemTotal in /proc/meminfo");
    };
    let limit = cgroup.and_then(cgroup_limit);
    let (room, whose) = match limit {
        Some(l) if l < total => (l, format!("the cgroup's limit {}", human(l))),
        _ => (total, format!("RAM {}", human(total))),
    };
    let unbounded: Vec<&str> = needs
        .iter()
        .filter(|n| n.maxmemory == 0)
        .map(|n| n.name.as_str())
        .collect();
    if !unbounded.is_empty() {
        return Finding::new(
            "memory",
            Level::Warning,
            format!(
                "no maxmemory for {}: they can grow until the kernel kills one ({whose})",
                unbounded
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("set maxmemory in [redis] (or per instance) so that their sum plus the largest one fits in memory".into()),
        );
    }
    let sum: u64 = needs.iter().map(|n| n.maxmemory).sum();
    let fork = needs.iter().map(|n| n.maxmemory).max().unwrap_or(0);
    let want = sum + fork;
    let what = format!(
        "maxmemory {} in all + {} for a fork's copy-on-write = {} of {whose}",
        human(sum),
        human(fork),
        human(want)
    );
    if want > room {
        Finding::new(
            "memory",
            Level::Problem,
            format!("{what}: a fork under write load can run the host out of memory"),
            Some("lower maxmemory, move instances to another host, or add memory".into()),
        )
    } else if want > room / 10 * 9 {
        Finding::new(
            "memory",
            Level::Warning,
            format!("{what}: less than 10 % left for everything else"),
            Some("lower maxmemory or add memory".into()),
        )
    } else {
        Finding::new("memory", Level::Ok, what, None)
    }
}

/// A snapshot is written beside the old one before it replaces it: each data dir needs
/// room for one more copy (its file system's free space is shared by the instances on it).
pub fn disk(needs: &[Need]) -> Vec<Finding> {
    needs
        .iter()
        .map(|n| match n.disk_free {
            None => unreadable(
                "disk",
                &format!("the free space of {} (`{}`)", n.data_dir.display(), n.name),
            ),
            Some(free) if free < n.snapshot_bytes => Finding::new(
                "disk",
                Level::Problem,
                format!(
                    "`{}`: {} free in {}, a snapshot takes {}: the next save fails",
                    n.name,
                    human(free),
                    n.data_dir.display(),
                    human(n.snapshot_bytes)
                ),
                Some(format!(
                    "free space on the file system of {}, or move data_dir",
                    n.data_dir.display()
                )),
            ),
            Some(free) if free < n.snapshot_bytes.saturating_mul(2) => Finding::new(
                "disk",
                Level::Warning,
                format!(
                    "`{}`: {} free in {}, less than two snapshots ({} each)",
                    n.name,
                    human(free),
                    n.data_dir.display(),
                    human(n.snapshot_bytes)
                ),
                Some(format!(
                    "free space on the file system of {}",
                    n.data_dir.display()
                )),
            ),
            Some(free) => Finding::new(
                "disk",
                Level::Ok,
                format!(
                    "`{}`: {} free in {} (a snapshot: {})",
                    n.name,
                    human(free),
                    n.data_dir.display(),
                    human(n.snapshot_bytes)
                ),
                None,
            ),
        })
        .collect()
}

/// Replication does not depend on the clock, but logs, backups' names, TLS certificates
/// and the operator's reading of events across hosts do.
pub fn clock(clock: Option<Clock>) -> Finding {
    match clock.unwrap_or(Clock::Unknown) {
        Clock::Synced => Finding::new("clock", Level::Ok, "the clock is synchronised".into(), None),
        Clock::Unsynced => Finding::new(
            "clock",
            Level::Warning,
            "the clock is not synchronised (the kernel says STA_UNSYNC)".into(),
            Some("run an NTP client: apt-get install systemd-timesyncd (or chrony)".into()),
        ),
        Clock::Unknown => unreadable("clock", "whether the clock is synchronised"),
    }
}

/// A size as Redis's own units (`memtoll`): `k`/`m`/`g` are powers of 1000, `kb`/`mb`/`gb`
/// of 1024, case-insensitive; a plain number is bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Bytes for a reader: "512 B", "3.2 MiB", "15.6 GiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(name: &str) -> Need {
        Need {
            name: name.into(),
            pid: None,
            tcp_backlog: 511,
            maxclients: 10000,
            maxmemory: 1 << 30,
            open_files: Some(OpenFiles {
                soft: 65536,
                whose: "its process".into(),
            }),
            data_dir: PathBuf::from("/var/lib/redisrepd"),
            disk_free: Some(100 << 30),
            snapshot_bytes: 1 << 30,
        }
    }

    const MEMINFO: &str =
        "MemTotal:       16318480 kB\nMemFree:         1020000 kB\nMemAvailable:    9000000 kB\n";

    #[test]
    fn overcommit_wants_one() {
        assert_eq!(overcommit(Some("1\n")).level, Level::Ok);
        let zero = overcommit(Some("0\n"));
        assert_eq!(zero.level, Level::Warning);
        assert!(zero.fix.unwrap().contains("vm.overcommit_memory = 1"));
        assert_eq!(overcommit(Some("2\n")).level, Level::Problem);
        assert_eq!(overcommit(None).level, Level::Warning);
    }

    #[test]
    fn thp_reads_the_bracketed_choice() {
        assert_eq!(thp(Some("[always] madvise never\n")).level, Level::Warning);
        let m = thp(Some("always [madvise] never\n"));
        assert_eq!(
            (m.level, m.what.as_str()),
            (Level::Ok, "transparent huge pages: madvise")
        );
        assert_eq!(thp(Some("always madvise [never]\n")).level, Level::Ok);
        assert_eq!(thp(None).level, Level::Ok);
    }

    #[test]
    fn somaxconn_against_the_largest_backlog() {
        let mut big = need("r1");
        big.tcp_backlog = 4096;
        let needs = [need("m"), big];
        let low = somaxconn(Some("1024\n"), &needs);
        assert_eq!(low.level, Level::Warning);
        assert!(
            low.what.contains("tcp-backlog 4096 of `r1`"),
            "{}",
            low.what
        );
        assert!(low.fix.unwrap().contains("net.core.somaxconn=4096"));
        assert_eq!(somaxconn(Some("4096"), &needs).level, Level::Ok);
        assert_eq!(somaxconn(Some("oops"), &needs).level, Level::Warning);
        assert_eq!(somaxconn(Some("128"), &[]).level, Level::Ok);
    }

    #[test]
    fn open_files_wants_maxclients_plus_reserved() {
        let mut short = need("r1");
        short.open_files = Some(OpenFiles {
            soft: 1024,
            whose: "a daemon started from this shell".into(),
        });
        let mut exact = need("r2");
        exact.open_files = Some(OpenFiles {
            soft: 10032,
            whose: "its process".into(),
        });
        let mut unknown = need("r3");
        unknown.open_files = None;
        let f = open_files(&[short, exact, unknown]);
        assert_eq!(f[0].level, Level::Problem);
        assert!(
            f[0].what.contains("lowers maxclients to 992"),
            "{}",
            f[0].what
        );
        assert!(f[0].fix.as_deref().unwrap().contains("LimitNOFILE=10032"));
        assert_eq!(f[1].level, Level::Ok);
        assert_eq!(f[2].level, Level::Warning);
    }

    #[test]
    fn memory_counts_one_fork_against_ram_or_cgroup() {
        // 16 GiB (15.56 GiB MemTotal); three instances of 4 GiB + one fork = 16 GiB: too much.
        let mut n = vec![need("a"), need("b"), need("c")];
        for x in &mut n {
            x.maxmemory = 4 << 30;
        }
        assert_eq!(memory(Some(MEMINFO), None, &n).level, Level::Problem);
        // Two of 4 GiB + 4 GiB = 12 GiB of 15.56: ok.
        n.pop();
        assert_eq!(memory(Some(MEMINFO), Some("max\n"), &n).level, Level::Ok);
        // ... but a cgroup of 12.5 GiB leaves under 10 %.
        let cg = format!("{}\n", 12u64 * (1 << 30) + (1 << 29));
        let w = memory(Some(MEMINFO), Some(&cg), &n);
        assert_eq!(w.level, Level::Warning, "{}", w.what);
        assert!(w.what.contains("cgroup"), "{}", w.what);
        // cgroup v1's "unlimited".
        assert_eq!(
            memory(Some(MEMINFO), Some("9223372036854771712"), &n).level,
            Level::Ok
        );
        // No maxmemory: a warning naming the instance.
        n[1].maxmemory = 0;
        let u = memory(Some(MEMINFO), None, &n);
        assert_eq!(u.level, Level::Warning);
        assert!(u.what.contains("`b`"), "{}", u.what);
        assert_eq!(memory(None, None, &n).level, Level::Warning);
    }

    #[test]
    fn disk_wants_room_for_a_snapshot() {
        let mut full = need("a");
        full.disk_free = Some(100 << 20);
        let mut tight = need("b");
        tight.disk_free = Some(3 << 29);
        let mut gone = need("c");
        gone.disk_free = None;
        let f = disk(&[full, tight, gone, need("d")]);
        let levels: Vec<Level> = f.iter().map(|f| f.level).collect();
        assert_eq!(
            levels,
            [Level::Problem, Level::Warning, Level::Warning, Level::Ok]
        );
        assert!(f[0].what.contains("100.0 MiB free"), "{}", f[0].what);
    }

    #[test]
    fn clock_and_exit_status() {
        assert_eq!(clock(Some(Clock::Synced)).level, Level::Ok);
        assert_eq!(clock(Some(Clock::Unsynced)).level, Level::Warning);
        assert_eq!(clock(None).level, Level::Warning);
        let ok = clock(Some(Clock::Synced));
        let warn = clock(Some(Clock::Unsynced));
        let bad = overcommit(Some("2"));
        assert_eq!(exit_status(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_status(&[ok.clone(), warn.clone()]), 3);
        assert_eq!(exit_status(&[ok, warn, bad]), 1);
    }

    #[test]
    fn sizes_parse_like_redis() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("100mb"), Some(100 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("1g"), Some(1_000_000_000));
        assert_eq!(parse_size("12k"), Some(12_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5tb"), None);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }

    #[test]
    fn judge_lists_every_check() {
        let host = Host {
            overcommit_memory: Some("1".into()),
            thp_enabled: Some("always [madvise] never".into()),
            somaxconn: Some("4096".into()),
            meminfo: Some(MEMINFO.into()),
            cgroup_memory_max: None,
            clock: Some(Clock::Synced),
        };
        let f = judge(&host, &[need("m"), need("r1")]);
        let checks: Vec<&str> = f.iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            [
                "overcommit",
                "thp",
                "somaxconn",
                "open-files",
                "open-files",
                "memory",
                "disk",
                "disk",
                "clock"
            ]
        );
        assert_eq!(exit_status(&f), 0, "{f:?}");
        let mut full = need("r2");
        full.disk_free = Some(1);
        let f = judge(&host, &[need("m"), full]);
        let worst = worst_per_check(&f);
        assert_eq!(worst.len(), 7, "one per check: {worst:?}");
        assert!(worst.contains(&("disk".to_owned(), 2)), "{worst:?}");
        assert!(worst.contains(&("thp".to_owned(), 0)), "{worst:?}");
    }
}
