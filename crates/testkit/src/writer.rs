//! One writer for tests and benches: a thread that `SET`s a new key `<prefix><n>` after
//! another and records which writes were acknowledged (and when), which failed (and why),
//! so that a caller can check that no acknowledged key is lost and how long writes stopped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::redis::{connect, connect_master};
use crate::wait::wait_for;

/// Where the writer sends its writes.
#[derive(Clone)]
pub enum Target {
    /// Always this address (a master that stays, or a proxy in front of the group).
    Fixed(SocketAddr),
    /// The first of these whose ROLE is `master`, looked up again after any error, as a
    /// client that discovers its master would.
    Master(Vec<SocketAddr>),
}

/// How the writer writes.
#[derive(Clone)]
pub struct WriterOpts {
    /// AUTH with this password.
    pub password: Option<String>,
    /// Keys are `<prefix><n>`, counting from 0.
    pub prefix: String,
    /// Values are `<value_prefix><n>`.
    pub value_prefix: String,
    /// `WAIT replicas timeout` after each `SET` when replicas > 0: the write counts as
    /// acknowledged only when `WAIT` reports that many (changed with [`Writer::set_wait`]).
    pub wait: (i64, Duration),
    /// The pause after each acknowledged write (none: as fast as the server answers).
    pub pause: Duration,
    /// With `pause`: pause only after every this many writes (1: after each).
    pub pause_every: u64,
    /// The pause after a failed write or connection, doubled after each failure in a row up
    /// to the second value, as client libraries back off.
    pub backoff: (Duration, Duration),
    /// End at the first failure (a writer that shows where the master went away).
    pub stop_on_error: bool,
    /// Stop writing after this long even if nobody says so: a test that hangs elsewhere
    /// does not write forever.
    pub max_run: Duration,
}

impl Default for WriterOpts {
    fn default() -> WriterOpts {
        WriterOpts {
            password: None,
            prefix: "w:".to_owned(),
            value_prefix: String::new(),
            wait: (0, Duration::from_secs(1)),
            pause: Duration::from_millis(2),
            pause_every: 1,
            backoff: (Duration::from_millis(5), Duration::from_millis(5)),
            stop_on_error: false,
            max_run: Duration::from_secs(300),
        }
    }
}

/// What the writer saw.
#[derive(Default, Clone)]
pub struct Seen {
    /// Acknowledged writes: when, and the key's number.
    pub acked: Vec<(Instant, u64)>,
    /// Failed writes and connections: when, and the error.
    pub errors: Vec<(Instant, String)>,
}

/// The writer's thread, stopped by [`Writer::finish`] or on drop.
pub struct Writer {
    opts: WriterOpts,
    started: Instant,
    stop: Arc<AtomicBool>,
    wait: Arc<AtomicI64>,
    acked: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer did, once finished.
pub struct WriterReport {
    /// The writer's options (for key names).
    pub prefix: String,
    /// When it started.
    pub started: Instant,
    /// Everything it saw.
    pub seen: Seen,
}

impl WriterReport {
    /// The numbers of the acknowledged keys, in order.
    pub fn acked(&self) -> Vec<u64> {
        self.seen.acked.iter().map(|(_, n)| *n).collect()
    }

    /// The acknowledged keys, in order.
    pub fn acked_keys(&self) -> Vec<String> {
        self.seen
            .acked
            .iter()
            .map(|(_, n)| format!("{}{n}", self.prefix))
            .collect()
    }

    /// The longest time without an acknowledged write, from the start to the last one.
    pub fn longest_gap(&self) -> Duration {
        let end = self.seen.acked.last().map_or(self.started, |(at, _)| *at);
        longest_gap(&self.seen, self.started, end)
    }

    /// The last error, if any.
    pub fn last_error(&self) -> Option<&str> {
        self.seen.errors.last().map(|(_, e)| e.as_str())
    }
}

impl Writer {
    /// Starts the thread.
    pub fn start(target: Target, opts: WriterOpts) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let wait = Arc::new(AtomicI64::new(opts.wait.0));
        let acked = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let thread = {
            let (stop, wait, acked, seen) =
                (stop.clone(), wait.clone(), acked.clone(), seen.clone());
            let opts = opts.clone();
            std::thread::spawn(move || write_loop(&target, &opts, &stop, &wait, &acked, &seen))
        };
        Writer {
            opts,
            started: Instant::now(),
            stop,
            wait,
            acked,
            seen,
            thread: Some(thread),
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// From now on, a write counts only when `WAIT` reports `replicas` (0: OK is enough).
    pub fn set_wait(&self, replicas: i64) {
        self.wait.store(replicas, Ordering::Relaxed);
    }

    /// `Ok` once `n` writes in all were acknowledged; else how far it is, with the
    /// failures so far and the last one (for a wait's message).
    pub fn reached(&self, n: usize) -> Result<(), String> {
        let count = self.acked();
        if count >= n {
            return Ok(());
        }
        let seen = self.seen();
        let last = seen.errors.last().map_or("", |(_, e)| e.as_str());
        Err(format!(
            "{count} of {n} acknowledged, {} failed, the last with: {last}",
            seen.errors.len()
        ))
    }

    /// Waits until `n` writes in all were acknowledged; panics after `within`, naming the
    /// failures so far and the last one.
    #[track_caller]
    pub fn wait_acked(&self, n: usize, within: Duration) {
        wait_for(within, &format!("{n} acknowledged writes"), || {
            self.reached(n)
        });
    }

    /// Waits until `more` writes beyond those acknowledged now were acknowledged.
    #[track_caller]
    pub fn wait_more(&self, more: usize, within: Duration) {
        self.wait_acked(self.acked() + more, within);
    }

    /// The longest time without an acknowledgement between `from` and `to` (the first
    /// stretch counts from `from`, the last up to `to`).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let seen = self.seen();
        let gap = longest_gap(&seen, from, to);
        let last = seen
            .acked
            .iter()
            .rev()
            .map(|(at, _)| *at)
            .find(|at| *at <= to)
            .filter(|at| *at >= from)
            .unwrap_or(from);
        gap.max(to.saturating_duration_since(last))
    }

    /// The errors between `from` and `to`.
    pub fn errors(&self, from: Instant, to: Instant) -> Vec<String> {
        self.seen()
            .errors
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Stops the thread (after the write in flight) and says what it did.
    pub fn finish(mut self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && let Err(p) = t.join()
        {
            std::panic::resume_unwind(p);
        }
        WriterReport {
            prefix: self.opts.prefix.clone(),
            started: self.started,
            seen: std::mem::take(&mut *self.seen()),
        }
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The longest stretch without an acknowledgement between acknowledgements in
/// `from..=to`, the first counted from `from`.
fn longest_gap(seen: &Seen, from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for (at, _) in seen.acked.iter().filter(|(at, _)| *at >= from && *at <= to) {
        longest = longest.max(at.duration_since(last));
        last = *at;
    }
    longest
}

fn write_loop(
    target: &Target,
    opts: &WriterOpts,
    stop: &AtomicBool,
    wait: &AtomicI64,
    acked: &AtomicUsize,
    seen: &Mutex<Seen>,
) {
    let password = opts.password.as_deref();
    let deadline = Instant::now() + opts.max_run;
    let note = |e: String| {
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        s.errors.push((Instant::now(), e));
    };
    let mut con: Option<redis::Connection> = None;
    let mut n = 0u64;
    let mut backoff = opts.backoff.0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if con.is_none() {
            con = match target {
                Target::Fixed(addr) => connect(*addr, password)
                    .map_err(|e| note(format!("connecting to {addr}: {e}")))
                    .ok(),
                Target::Master(addrs) => {
                    let c = connect_master(addrs, |a| connect(a, password));
                    if c.is_none() {
                        note("no master found".to_owned());
                    }
                    c
                }
            };
            if con.is_none() {
                if opts.stop_on_error {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(opts.backoff.1);
                continue;
            }
        }
        let Some(c) = con.as_mut() else { continue };
        let replicas = wait.load(Ordering::Relaxed);
        let result = write_one(c, opts, n, replicas);
        // A write that failed may or may not have happened: its number is not reused.
        let this = n;
        n += 1;
        match result {
            Ok(()) => {
                let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                s.acked.push((Instant::now(), this));
                acked.store(s.acked.len(), Ordering::Relaxed);
                drop(s);
                backoff = opts.backoff.0;
                if !opts.pause.is_zero() && n.is_multiple_of(opts.pause_every.max(1)) {
                    std::thread::sleep(opts.pause);
                }
            }
            Err(e) => {
                note(e);
                con = None;
                if opts.stop_on_error {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(opts.backoff.1);
            }
        }
    }
}

/// `SET <prefix>n <value_prefix>n`, then `WAIT replicas timeout` when replicas > 0.
fn write_one(
    c: &mut redis::Connection,
    opts: &WriterOpts,
    n: u64,
    replicas: i64,
) -> Result<(), String> {
    let key = format!("{}{n}", opts.prefix);
    redis::cmd("SET")
        .arg(&key)
        .arg(format!("{}{n}", opts.value_prefix))
        .query::<()>(c)
        .map_err(|e| format!("SET {key}: {e}"))?;
    if replicas > 0 {
        let got: i64 = redis::cmd("WAIT")
            .arg(replicas)
            .arg(u64::try_from(opts.wait.1.as_millis()).unwrap_or(u64::MAX))
            .query(c)
            .map_err(|e| format!("WAIT after SET {key}: {e}"))?;
        if got < replicas {
            return Err(format!("WAIT: {got} of {replicas} replicas"));
        }
    }
    Ok(())
}
