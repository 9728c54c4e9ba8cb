//! Timestamps out of Redis's own log and the daemon's log, to break a replica's restart
//! into its steps (save, exit, start, load, resync) and set each against its floor: the
//! replica's own save and load time. Parsing is pure (text in, seconds out, unit-tested);
//! `print_breakdown` reads the files.
//!
//! Redis 7.0 writes `pid:role 25 Nov 2026 13:17:30.123 * message` (local time); the
//! daemon's tracing lines start with an RFC 3339 UTC timestamp. The benches run with the
//! machine's zone at UTC (checked by `local_is_utc`), so both are read as UTC.

#![allow(dead_code)] // each bench uses part of it

/// One Redis log line: seconds since the epoch and the message.
pub fn redis_line(line: &str) -> Option<(f64, &str)> {
    // "1234:M 25 Nov 2026 13:17:30.123 * msg"
    let (_pid_role, rest) = line.split_once(' ')?;
    let mut parts = rest.splitn(6, ' ');
    let (d, mon, y, hms, _level) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let msg = parts.next().unwrap_or("");
    let text = format!("{d} {mon} {y} {hms}");
    let t = jiff::civil::DateTime::strptime("%d %b %Y %H:%M:%S%.f", &text).ok()?;
    let ts = jiff::tz::TimeZone::UTC.to_timestamp(t).ok()?;
    Some((ts.as_millisecond() as f64 / 1000.0, msg))
}

/// One daemon log line: seconds since the epoch and the rest of the line.
pub fn daemon_line(line: &str) -> Option<(f64, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let ts: jiff::Timestamp = stamp.parse().ok()?;
    Some((ts.as_microsecond() as f64 / 1e6, rest.trim_start()))
}

/// Whether this process's local zone is UTC (Redis logs local time).
pub fn local_is_utc() -> bool {
    jiff::tz::TimeZone::system()
        .to_offset(jiff::Timestamp::now())
        .seconds()
        == 0
}

/// One stop-and-start of a replica as its own log tells it (seconds since the epoch).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restart {
    /// "User requested shutdown" (SHUTDOWN received).
    pub shutdown: Option<f64>,
    /// "DB saved on disk" during the shutdown.
    pub saved: Option<f64>,
    /// "Redis is now ready to exit".
    pub exiting: Option<f64>,
    /// "Redis is starting" of the next run.
    pub starting: Option<f64>,
    /// "Loading RDB produced by" (or the AOF's first loading line).
    pub loading: Option<f64>,
    /// "DB loaded from disk".
    pub loaded: Option<f64>,
    /// The resync done: a partial one accepted, or a full sync finished.
    pub synced: Option<f64>,
    /// Whether the resync was partial.
    pub partial: bool,
}

impl Restart {
    /// Save time (shutdown received to RDB on disk).
    pub fn save(&self) -> Option<f64> {
        Some(self.saved? - self.shutdown?)
    }
    /// Load time (start of loading to loaded).
    pub fn load(&self) -> Option<f64> {
        Some(self.loaded? - self.loading?)
    }
    /// The floor of a restart: its own save plus load time.
    pub fn floor(&self) -> Option<f64> {
        Some(self.save()? + self.load()?)
    }
}

/// The first restart in a Redis log that begins (its SHUTDOWN received) at or after
/// `since`.
pub fn restart_after(log: &str, since: f64) -> Option<Restart> {
    let mut r = Restart::default();
    for (t, msg) in log.lines().filter_map(redis_line) {
        if t < since {
            continue;
        }
        if r.shutdown.is_none() {
            if msg.starts_with("User requested shutdown") {
                r.shutdown = Some(t);
            }
            continue;
        }
        let first = |slot: &mut Option<f64>| {
            if slot.is_none() {
                *slot = Some(t);
            }
        };
        if msg.starts_with("DB saved on disk") && r.exiting.is_none() {
            first(&mut r.saved);
        } else if msg.starts_with("Redis is now ready to exit") {
            first(&mut r.exiting);
        } else if msg.contains("Redis is starting") {
            first(&mut r.starting);
        } else if r.starting.is_some()
            && (msg.starts_with("Loading RDB produced by") || msg.starts_with("Reading RDB"))
        {
            first(&mut r.loading);
        } else if r.starting.is_some() && msg.starts_with("DB loaded from disk") {
            first(&mut r.loaded);
        } else if r.loaded.is_some()
            && (msg.contains("Master accepted a Partial Resynchronization")
                || msg.starts_with("Successful partial resynchronization"))
        {
            if r.synced.is_none() {
                r.synced = Some(t);
                r.partial = true;
            }
        } else if r.starting.is_some()
            && msg.contains("MASTER <-> REPLICA sync: Finished with success")
        {
            first(&mut r.synced);
        }
        if r.synced.is_some() {
            break;
        }
    }
    r.shutdown.is_some().then_some(r)
}

/// The first daemon log line at or after `since` about `instance` (its `instance=NAME`
/// field) that contains `msg`.
pub fn daemon_event(log: &str, since: f64, instance: &str, msg: &str) -> Option<f64> {
    let field = format!("instance={instance}");
    log.lines()
        .filter_map(daemon_line)
        .find(|(t, rest)| {
            *t >= since
                && rest.contains(msg)
                && rest
                    .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
                    .any(|w| w == field)
        })
        .map(|(t, _)| t)
}

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    jiff::Timestamp::now().as_microsecond() as f64 / 1e6
}

/// Prints, per replica, its restart's steps from its own log (`<log_dir>/<name>.log`)
/// and, when a daemon ran it, the daemon's log (`daemon_log`): the step against its floor
/// (save + load), and whether it is within floor + 0.5 s. `since`: the episode's start.
pub fn print_breakdown(
    log_dir: &std::path::Path,
    names: &[String],
    since: f64,
    daemon_log: Option<&std::path::Path>,
) {
    let daemon = daemon_log.and_then(|p| std::fs::read_to_string(p).ok());
    println!();
    println!(
        "| replica | stop asked → SHUTDOWN | save | exit | exited → started | started → loading | load | loaded → resynced | resync | resynced → daemon: in sync | step | floor (save + load) | step − floor | within floor + 0.5 s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let ms = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "?".to_owned(),
    };
    for name in names {
        let text = std::fs::read_to_string(log_dir.join(format!("{name}.log"))).unwrap_or_default();
        let Some(r) = restart_after(&text, since) else {
            println!("| {name} | no restart in its log |");
            continue;
        };
        let asked = daemon
            .as_deref()
            .and_then(|d| daemon_event(d, since, name, "stopping"));
        let in_sync = daemon
            .as_deref()
            .and_then(|d| daemon_event(d, r.starting.unwrap_or(since), name, "in sync"));
        // The step: from the stop being asked (the daemon's line, or SHUTDOWN received)
        // until the replica is in sync (the daemon's judgement, or its own log).
        let begin = asked.or(r.shutdown);
        let end = in_sync.or(r.synced);
        let step = match (begin, end) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let floor = r.floor();
        let over = match (step, floor) {
            (Some(s), Some(f)) => Some(s - f),
            _ => None,
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms(asked, r.shutdown),
            ms(r.shutdown, r.saved),
            ms(r.saved, r.exiting),
            ms(r.exiting, r.starting),
            ms(r.starting, r.loading),
            ms(r.loading, r.loaded),
            ms(r.loaded, r.synced),
            if r.synced.is_none() {
                "?"
            } else if r.partial {
                "partial"
            } else {
                "full"
            },
            ms(r.synced, in_sync),
            step.map_or("?".to_owned(), |s| format!("{s:.2}")),
            floor.map_or("?".to_owned(), |s| format!("{s:.2}")),
            over.map_or("?".to_owned(), |s| format!("{s:+.2}")),
            over.map_or("?", |o| if o <= 0.5 { "yes" } else { "no" }),
        );
    }
}

/// Checks the parsers on known lines (benches run without a test harness: each bench
/// calls this at its start, so a parser broken by an edit fails loudly, not silently).
pub fn self_check() {
    {
        let log = "\
1:M 25 Nov 2026 13:00:00.000 * Background saving started\n\
1:S 25 Nov 2026 13:00:01.000 # User requested shutdown...\n\
1:S 25 Nov 2026 13:00:01.010 * Saving the final RDB snapshot before exiting.\n\
1:S 25 Nov 2026 13:00:01.510 * DB saved on disk\n\
1:S 25 Nov 2026 13:00:01.520 # Redis is now ready to exit, bye bye...\n\
2:C 25 Nov 2026 13:00:01.700 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo\n\
2:S 25 Nov 2026 13:00:01.710 * Loading RDB produced by version 7.0.15\n\
2:S 25 Nov 2026 13:00:02.710 * DB loaded from disk: 1.000 seconds\n\
2:S 25 Nov 2026 13:00:02.800 * MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.\n";
        let since = redis_line("1:S 25 Nov 2026 13:00:00.500 * x").unwrap().0;
        let r = restart_after(log, since).unwrap();
        assert!(r.partial);
        assert!((r.save().unwrap() - 0.51).abs() < 1e-6);
        assert!((r.load().unwrap() - 1.0).abs() < 1e-6);
        assert!((r.synced.unwrap() - r.shutdown.unwrap() - 1.8).abs() < 1e-6);
    }
    {
        let (t, rest) =
            daemon_line("2026-11-25T13:00:01.250000Z  INFO supervisor: instance=r1 stopping")
                .unwrap();
        assert!(rest.starts_with("INFO"));
        let r = redis_line("1:S 25 Nov 2026 13:00:01.250 * x").unwrap().0;
        assert!((t - r).abs() < 1e-6);
    }
}
