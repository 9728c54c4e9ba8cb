//! A write load and a PING prober that follow the master (shared by the failover and
//! sentinel-restart benches, each includes this file as `mod load`): each connects to the
//! instance INFO calls the master and looks again after any error, as a client that
//! discovers its master would.

#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{common, trio};

/// The instance INFO calls the master; with several (a naive switchover half done), the
/// one with the most replicas online.
pub fn current_master(addrs: &[SocketAddr; 3]) -> Option<usize> {
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
pub fn masters(addrs: &[SocketAddr; 3]) -> Vec<usize> {
    (0..3)
        .filter(|i| trio::role(addrs[*i]).is_ok_and(|(r, _)| r == "master"))
        .collect()
}

/// A connection to the current master, or `None` (after a short pause) when there is
/// none to be had.
fn follow(addrs: &[SocketAddr; 3]) -> Option<redis::Connection> {
    let c = current_master(addrs)
        .and_then(|i| trio::connect(addrs[i], Duration::from_millis(200)).ok());
    if c.is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    c
}

/// What the writer saw.
#[derive(Default)]
pub struct WriterLog {
    pub acked: Vec<u64>,
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

/// The writer (a `SET` of a new key every 2 ms) and the prober (`PING` every 5 ms), both
/// following the master, until finished or dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    acked_count: Arc<AtomicU64>,
    ping_errors: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<f64>>>,
}

impl Load {
    /// Starts both threads; the writer's keys are `<prefix><n>` with value `n`.
    pub fn start(addrs: [SocketAddr; 3], prefix: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let acked_count = Arc::new(AtomicU64::new(0));
        let ping_errors = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, log, count) = (stop.clone(), log.clone(), acked_count.clone());
            std::thread::spawn(move || {
                let mut con = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(2));
                    if con.is_none() {
                        con = follow(&addrs);
                    }
                    let Some(c) = con.as_mut() else {
                        continue;
                    };
                    n += 1;
                    let r = redis::cmd("SET")
                        .arg(format!("{prefix}{n}"))
                        .arg(n)
                        .query::<()>(c);
                    let now = Instant::now();
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(()) => {
                            log.acked.push(n);
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
                        Err(e) => {
                            *log.refused.entry(trio::error_kind(&e)).or_default() += 1;
                            log.refused_at.push(now);
                            con = None;
                        }
                    }
                }
                Vec::new()
            })
        };
        let prober = {
            let (stop, errors) = (stop.clone(), ping_errors.clone());
            std::thread::spawn(move || {
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
            })
        };
        Load {
            stop,
            log,
            acked_count,
            ping_errors,
            threads: vec![writer, prober],
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked_count.load(Ordering::Relaxed)
    }

    /// Until `more` writes beyond the present count are acknowledged.
    pub fn wait_writes(&self, more: u64, what: &str) -> Result<(), String> {
        let goal = self.acked() + more;
        trio::wait(what, Duration::from_secs(60), || {
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
