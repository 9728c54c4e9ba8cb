//! A write load and a PING prober that follow the master (shared by the failover,
//! sentinel-restart and faults benches, each includes this file as `mod load`): the
//! testkit's [`Writer`] and [`Prober`], each connecting to the instance INFO calls the
//! master (the bench's own rule, [`current_master`]) and looking again after any error,
//! as a client that discovers its master would; or, for the writer, to the master
//! Sentinel names. The writer can also ask for `WAIT` after each write (a write then
//! counts only when enough replicas have it) and be paused.

#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redisrepd_testkit::{Paused, Prober, Target, Writer, WriterOpts};

use crate::{common, trio};

/// The instance INFO calls the master; with several (a naive switchover half done), the
/// one with the most replicas online.
pub fn current_master(addrs: &[SocketAddr]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, addr) in addrs.iter().enumerate() {
        let Ok(inf) = common::info(
            *addr,
            trio::PASSWORD,
            "replication",
            Duration::from_millis(200),
            Duration::from_secs(2),
        ) else {
            continue;
        };
        if inf.role() == Some("master") {
            let online = inf.replicas.iter().filter(|r| r.is_online()).count();
            if best.is_none_or(|(_, n)| online > n) {
                best = Some((i, online));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// The instances INFO calls master right now.
pub fn masters(addrs: &[SocketAddr]) -> Vec<usize> {
    (0..addrs.len())
        .filter(|i| trio::role(addrs[*i]).is_ok_and(|(r, _)| r == "master"))
        .collect()
}

/// What the writer saw, in the terms the benches' tables use.
#[derive(Default)]
pub struct WriterLog {
    pub acked: Vec<u64>,
    /// Failed writes by kind (a connection that failed sent none and is not counted).
    pub refused: BTreeMap<String, u64>,
    /// When each refused write was answered (or failed).
    pub refused_at: Vec<Instant>,
    /// Longest time between two acknowledged writes, and when it began and ended.
    pub max_gap: Duration,
    pub max_gap_start: Option<Instant>,
    pub max_gap_end: Option<Instant>,
    /// PINGs that failed (the prober then looks for the master again).
    pub ping_errors: u64,
}

/// How the writer writes.
#[derive(Clone)]
pub struct Options {
    /// Find the master as a Sentinel-aware client does: ask these sentinels whom they
    /// name for the cluster (the name), instead of asking the instances' INFO.
    pub sentinels: Option<(Vec<SocketAddr>, String)>,
    /// `WAIT replicas timeout` after each `SET`: the write counts as acknowledged only when
    /// `WAIT` reports at least that many replicas.
    pub wait: Option<(u8, Duration)>,
    /// Whether the PING prober runs.
    pub probe: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sentinels: None,
            wait: None,
            probe: true,
        }
    }
}

/// The testkit's writer (a `SET` of a new key every 2 ms, 2 ms between failed attempts)
/// and prober (`PING` every 5 ms), both following the master, until finished or dropped.
pub struct Load {
    writer: Writer,
    prober: Option<Prober>,
}

impl Load {
    /// Starts both threads; the writer's keys are `<prefix><n>` with value `n`.
    pub fn start(addrs: [SocketAddr; 3], prefix: String) -> Load {
        Load::start_with(addrs.to_vec(), prefix, Options::default())
    }

    /// [`Load::start`] over any number of instances, writing as `opts` says.
    pub fn start_with(addrs: Vec<SocketAddr>, prefix: String, opts: Options) -> Load {
        let (want, timeout) = opts.wait.unwrap_or((0, Duration::from_secs(1)));
        let writer_opts = WriterOpts {
            password: Some(trio::PASSWORD.to_owned()),
            prefix,
            wait: (i64::from(want), timeout),
            pause: Duration::from_millis(2),
            backoff: (Duration::from_millis(2), Duration::from_millis(2)),
            connect_timeout: Duration::from_millis(200),
            io_timeout: trio::IO_TIMEOUT,
            max_run: Duration::from_secs(24 * 3600),
            ..WriterOpts::default()
        };
        let follow = Target::Lookup(Arc::new(move || current_master(&addrs).map(|i| addrs[i])));
        let target = match opts.sentinels {
            Some((sentinels, name)) => Target::Sentinel { sentinels, name },
            None => follow.clone(),
        };
        Load {
            prober: opts
                .probe
                .then(|| Prober::start(follow, &writer_opts, Duration::from_millis(5))),
            writer: Writer::start(target, writer_opts),
        }
    }

    /// Holds the writer between two writes until the guard drops: nothing is in flight
    /// meanwhile, and the guard reads what it saw so far.
    pub fn pause(&self) -> Paused<'_> {
        self.writer.pause()
    }

    pub fn acked(&self) -> u64 {
        self.writer.acked() as u64
    }

    /// Until `more` writes beyond the present count are acknowledged.
    pub fn wait_writes(&self, more: u64, what: &str) -> Result<(), String> {
        self.wait_writes_within(more, Duration::from_secs(60))
            .map_err(|e| format!("{what}: {e}"))
    }

    /// Until `more` writes beyond the present count are acknowledged, at most `within`.
    pub fn wait_writes_within(&self, more: u64, within: Duration) -> Result<(), String> {
        let goal = self.writer.acked() + usize::try_from(more).unwrap_or(usize::MAX);
        trio::wait("acknowledged writes", within, || self.writer.reached(goal))
    }

    /// Stops both threads: the writer's log and the PING latencies (ms).
    pub fn finish(self) -> (WriterLog, Vec<f64>) {
        let probed = self.prober.map(Prober::finish);
        let seen = self.writer.finish().seen;
        let gap = seen.longest_between_acks();
        let log = WriterLog {
            acked: seen.acked_numbers(),
            refused: seen.failed_writes(),
            refused_at: seen
                .errors
                .iter()
                .filter(|f| !f.connecting)
                .map(|f| f.at)
                .collect(),
            max_gap: gap.map_or(Duration::ZERO, |g| g.0),
            max_gap_start: gap.map(|g| g.1),
            max_gap_end: gap.map(|g| g.2),
            ping_errors: probed.as_ref().map_or(0, |p| p.errors),
        };
        let lat = probed.map_or_else(Vec::new, |p| {
            p.latencies
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect()
        });
        (log, lat)
    }
}

/// The `p` quantile of sorted `lat`, 0 when empty.
pub fn quantile(lat: &[f64], p: f64) -> f64 {
    lat.get(((lat.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(0.0)
}
