//! A write load and a PING prober that follow the master (shared by the failover,
//! sentinel-restart and faults benches, each includes this file as `mod load`): each
//! connects to the instance INFO calls the master and looks again after any error, as a
//! client that discovers its master would. The writer can also ask for `WAIT` after each
//! write (a write then counts only when enough replicas have it) and be paused.

#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// A connection to the current master, or `None` (after a short pause) when there is
/// none to be had.
fn follow(addrs: &[SocketAddr]) -> Option<redis::Connection> {
    let c = current_master(addrs)
        .and_then(|i| trio::connect(addrs[i], Duration::from_millis(200)).ok());
    if c.is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    c
}

/// A connection to the master the first sentinel that answers names for `cluster`
/// (`SENTINEL GET-MASTER-ADDR-BY-NAME`), as a Sentinel-aware client finds it: asked again
/// after any error.
fn follow_sentinels(sentinels: &[SocketAddr], cluster: &str) -> Option<redis::Connection> {
    let named = sentinels.iter().find_map(|s| {
        let mut c = trio::connect(*s, Duration::from_millis(200)).ok()?;
        let reply: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(cluster)
            .query(&mut c)
            .ok()?;
        let ip = reply.first()?.parse().ok()?;
        let port = reply.get(1)?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    });
    let c = named.and_then(|a| trio::connect(a, Duration::from_millis(200)).ok());
    if c.is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    c
}

/// What the writer saw.
#[derive(Default)]
pub struct WriterLog {
    pub acked: Vec<u64>,
    /// With [`Options::wait`]: for each acknowledged write, how many replicas `WAIT`
    /// reported (in the order of `acked`).
    pub acked_by: Vec<u8>,
    pub refused: BTreeMap<String, u64>,
    /// When each refused write was answered (or failed).
    pub refused_at: Vec<Instant>,
    /// Longest time between two acknowledged writes, and when it began and ended.
    pub max_gap: Duration,
    pub max_gap_start: Option<Instant>,
    pub max_gap_end: Option<Instant>,
    pub last_ok: Option<Instant>,
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

/// The writer (a `SET` of a new key every 2 ms) and the prober (`PING` every 5 ms), both
/// following the master, until finished or dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Set by [`Load::pause`]: the writer sends nothing until it is cleared.
    pause: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    acked_count: Arc<AtomicU64>,
    ping_errors: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<f64>>>,
}

/// The writer held between two writes (see [`Load::pause`]); it resumes when this drops.
pub struct Paused<'a> {
    pub log: std::sync::MutexGuard<'a, WriterLog>,
    pause: &'a AtomicBool,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.pause.store(false, Ordering::Relaxed);
    }
}

impl Load {
    /// Starts both threads; the writer's keys are `<prefix><n>` with value `n`.
    pub fn start(addrs: [SocketAddr; 3], prefix: String) -> Load {
        Load::start_with(addrs.to_vec(), prefix, Options::default())
    }

    /// [`Load::start`] over any number of instances, writing as `opts` says.
    pub fn start_with(addrs: Vec<SocketAddr>, prefix: String, opts: Options) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let acked_count = Arc::new(AtomicU64::new(0));
        let ping_errors = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, pause, log, count) = (
                stop.clone(),
                pause.clone(),
                log.clone(),
                acked_count.clone(),
            );
            let addrs = addrs.clone();
            let opts = opts.clone();
            std::thread::spawn(move || {
                let mut con = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(2));
                    if pause.load(Ordering::Relaxed) {
                        continue;
                    }
                    if con.is_none() {
                        con = match &opts.sentinels {
                            Some((s, cluster)) => follow_sentinels(s, cluster),
                            None => follow(&addrs),
                        };
                    }
                    let Some(c) = con.as_mut() else {
                        continue;
                    };
                    // Held for the whole write: `pause` takes it to know none is in flight.
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    if pause.load(Ordering::Relaxed) {
                        continue;
                    }
                    n += 1;
                    let r = redis::cmd("SET")
                        .arg(format!("{prefix}{n}"))
                        .arg(n)
                        .query::<()>(c);
                    let r = match (r, opts.wait) {
                        (Ok(()), Some((want, timeout))) => redis::cmd("WAIT")
                            .arg(want)
                            .arg(timeout.as_millis() as u64)
                            .query::<i64>(c)
                            .map(|got| u8::try_from(got).unwrap_or(u8::MAX))
                            .map_err(Some)
                            .and_then(|got| {
                                if got >= want {
                                    Ok(got)
                                } else {
                                    *log.refused.entry(format!("WAIT {got}")).or_default() += 1;
                                    Err(None)
                                }
                            }),
                        (Ok(()), None) => Ok(0),
                        (Err(e), _) => Err(Some(e)),
                    };
                    let now = Instant::now();
                    match r {
                        Ok(replicas) => {
                            log.acked.push(n);
                            log.acked_by.push(replicas);
                            count.fetch_add(1, Ordering::Relaxed);
                            if let Some(last) = log.last_ok
                                && now - last > log.max_gap
                            {
                                log.max_gap = now - last;
                                log.max_gap_start = Some(last);
                                log.max_gap_end = Some(now);
                            }
                            log.last_ok = Some(now);
                        }
                        // Too few replicas: counted above; the connection is fine.
                        Err(None) => log.refused_at.push(now),
                        Err(Some(e)) => {
                            *log.refused.entry(trio::error_kind(&e)).or_default() += 1;
                            log.refused_at.push(now);
                            con = None;
                        }
                    }
                }
                Vec::new()
            })
        };
        let mut threads = vec![writer];
        if opts.probe {
            let (stop, errors) = (stop.clone(), ping_errors.clone());
            threads.push(std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut con = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    if con.is_none() {
                        con = follow(&addrs);
                    }
                    let Some(c) = con.as_mut() else {
                        continue;
                    };
                    let t = Instant::now();
                    match redis::cmd("PING").query::<String>(c) {
                        Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            con = None;
                        }
                    }
                }
                lat
            }));
        }
        Load {
            stop,
            pause,
            log,
            acked_count,
            ping_errors,
            threads,
        }
    }

    /// Holds the writer between two writes until the guard drops: nothing is in flight
    /// meanwhile, and the guard reads what was acknowledged so far.
    pub fn pause(&self) -> Paused<'_> {
        self.pause.store(true, Ordering::Relaxed);
        Paused {
            log: self.log.lock().unwrap_or_else(|e| e.into_inner()),
            pause: &self.pause,
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked_count.load(Ordering::Relaxed)
    }

    /// Until `more` writes beyond the present count are acknowledged.
    pub fn wait_writes(&self, more: u64, what: &str) -> Result<(), String> {
        self.wait_writes_within(more, Duration::from_secs(60))
            .map_err(|e| format!("{what}: {e}"))
    }

    /// Until `more` writes beyond the present count are acknowledged, at most `within`.
    pub fn wait_writes_within(&self, more: u64, within: Duration) -> Result<(), String> {
        let goal = self.acked() + more;
        trio::wait("acknowledged writes", within, || {
            (self.acked() >= goal)
                .then_some(())
                .ok_or_else(|| format!("{} of {goal} writes acknowledged", self.acked()))
        })
    }

    /// Stops both threads: the writer's log and the PING latencies (ms).
    pub fn finish(mut self) -> (WriterLog, Vec<f64>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for t in self.threads.drain(..) {
            lat.extend(t.join().unwrap_or_default());
        }
        let mut log = std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()));
        log.ping_errors = self.ping_errors.load(Ordering::Relaxed);
        (log, lat)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The `p` quantile of sorted `lat`, 0 when empty.
pub fn quantile(lat: &[f64], p: f64) -> f64 {
    lat.get(((lat.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(0.0)
}
