//! One writer for tests and benches: a thread that `SET`s a new key `<prefix><n>` after
//! another and records which writes were acknowledged (and when, and by how many replicas
//! when it asks `WAIT`), which failed (and why), so that a caller can check that no
//! acknowledged key is lost and how long writes stopped. It can follow the master (by
//! ROLE, through Sentinel or by the caller's rule), be paused between two writes, and a
//! [`Prober`] beside it PINGs the master.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::redis::{TIMEOUT, connect_master, connect_with_tls, error_kind};
use crate::wait::wait_for;

/// Where the writer sends its writes.
#[derive(Clone)]
pub enum Target {
    /// Always this address (a master that stays, or a proxy in front of the group).
    Fixed(SocketAddr),
    /// The first of these whose ROLE is `master`, looked up again after any error, as a
    /// client that discovers its master would.
    Master(Vec<SocketAddr>),
    /// The master the first of these sentinels that answers names for `name`
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`), asked again after any error, as a
    /// Sentinel-aware client finds it. The sentinels take the same password.
    Sentinel {
        /// The sentinels, asked in this order.
        sentinels: Vec<SocketAddr>,
        /// The master's name in Sentinel.
        name: String,
    },
    /// The address the caller's rule gives (`None`: no master now), asked again after any
    /// error: a bench that picks the master its own way.
    Lookup(Arc<dyn Fn() -> Option<SocketAddr> + Send + Sync>),
}

/// How the writer writes.
#[derive(Clone)]
pub struct WriterOpts {
    /// AUTH with this password.
    pub password: Option<String>,
    /// Connect over TLS with these files (a group with `[tls]`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Keys are `<prefix><n>`, counting from 0.
    pub prefix: String,
    /// Values are `<value_prefix><n>`.
    pub value_prefix: String,
    /// `WAIT replicas timeout` after each `SET` when replicas > 0: the write counts as
    /// acknowledged only when `WAIT` reports that many (changed with [`Writer::set_wait`]).
    /// Fewer is a failed write of kind `WAIT <got>` that keeps the connection.
    pub wait: (i64, Duration),
    /// The pause after each acknowledged write (none: as fast as the server answers).
    pub pause: Duration,
    /// With `pause`: pause only after every this many writes (1: after each).
    pub pause_every: u64,
    /// Writes (and connection attempts) begun per second, on a schedule that catches up
    /// at most a second of delay; 0: not paced by a rate (only by `pause`).
    pub rate: u64,
    /// The pause after a failed write or connection, doubled after each failure in a row up
    /// to the second value, as client libraries back off.
    pub backoff: (Duration, Duration),
    /// How long connecting may take, and then each reply.
    pub connect_timeout: Duration,
    /// Read and write timeout of the writer's connection.
    pub io_timeout: Duration,
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
            tls: None,
            prefix: "w:".to_owned(),
            value_prefix: String::new(),
            wait: (0, Duration::from_secs(1)),
            pause: Duration::from_millis(2),
            pause_every: 1,
            rate: 0,
            backoff: (Duration::from_millis(5), Duration::from_millis(5)),
            connect_timeout: TIMEOUT,
            io_timeout: TIMEOUT,
            stop_on_error: false,
            max_run: Duration::from_secs(300),
        }
    }
}

/// A failed write or connection.
#[derive(Clone, Debug)]
pub struct Failed {
    /// When it came back (or timed out).
    pub at: Instant,
    /// Whether it was the connection (or finding the master) that failed: no write was
    /// sent.
    pub connecting: bool,
    /// Its kind, for a table: the error code (`READONLY`, `LOADING`, ...), `connection`,
    /// `timeout`, `WAIT <got>`, `no master`.
    pub kind: String,
    /// The whole message.
    pub message: String,
}

/// What the writer saw.
#[derive(Default, Clone)]
pub struct Seen {
    /// Acknowledged writes: when, and the key's number.
    pub acked: Vec<(Instant, u64)>,
    /// For each acknowledged write (in the order of `acked`), how many replicas `WAIT`
    /// reported (0 without `WAIT`).
    pub acked_by: Vec<i64>,
    /// Failed writes and connections.
    pub errors: Vec<Failed>,
}

impl Seen {
    /// The numbers of the acknowledged keys, in order.
    pub fn acked_numbers(&self) -> Vec<u64> {
        self.acked.iter().map(|(_, n)| *n).collect()
    }

    /// The failed writes (connections left out) by kind.
    pub fn failed_writes(&self) -> BTreeMap<String, u64> {
        count_kinds(self.errors.iter().filter(|f| !f.connecting))
    }

    /// The longest time between two acknowledged writes, with when it began and ended
    /// (`None` before the second).
    pub fn longest_between_acks(&self) -> Option<(Duration, Instant, Instant)> {
        // The first of equal gaps: the one a watcher would have seen first.
        self.acked.windows(2).fold(None, |best, w| {
            let gap = w[1].0 - w[0].0;
            match best {
                Some((longest, _, _)) if longest >= gap => best,
                _ => Some((gap, w[0].0, w[1].0)),
            }
        })
    }
}

/// Failures counted by kind.
pub fn count_kinds<'a>(failed: impl IntoIterator<Item = &'a Failed>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for f in failed {
        *counts.entry(f.kind.clone()).or_default() += 1;
    }
    counts
}

/// The writer's thread, stopped by [`Writer::finish`] or on drop.
pub struct Writer {
    opts: WriterOpts,
    started: Instant,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer's thread and its handle share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Set by [`Writer::pause`]: the thread begins no write until it is cleared.
    paused: AtomicBool,
    /// Held by the thread for each attempt (connecting, writing, recording): whoever
    /// takes it knows that no write is in flight.
    gate: Mutex<()>,
    wait: AtomicI64,
    acked: AtomicUsize,
    seen: Mutex<Seen>,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
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
        self.seen.acked_numbers()
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
        self.seen.errors.last().map(|f| f.message.as_str())
    }
}

/// The writer held between two writes (see [`Writer::pause`]): it reads as what the
/// writer saw so far, and the writer resumes when it drops.
pub struct Paused<'a> {
    seen: MutexGuard<'a, Seen>,
    _gate: MutexGuard<'a, ()>,
    paused: &'a AtomicBool,
}

impl Deref for Paused<'_> {
    type Target = Seen;

    fn deref(&self) -> &Seen {
        &self.seen
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.paused.store(false, Ordering::Relaxed);
    }
}

impl Writer {
    /// Starts the thread.
    pub fn start(target: Target, opts: WriterOpts) -> Writer {
        let shared = Arc::new(Shared {
            wait: AtomicI64::new(opts.wait.0),
            ..Shared::default()
        });
        let thread = {
            let shared = shared.clone();
            let opts = opts.clone();
            std::thread::spawn(move || write_loop(&target, &opts, &shared))
        };
        Writer {
            opts,
            started: Instant::now(),
            shared,
            thread: Some(thread),
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// From now on, a write counts only when `WAIT` reports `replicas` (0: OK is enough).
    pub fn set_wait(&self, replicas: i64) {
        self.shared.wait.store(replicas, Ordering::Relaxed);
    }

    /// Holds the writer between two writes until the guard drops: nothing is in flight
    /// meanwhile, and the guard reads what it saw so far.
    pub fn pause(&self) -> Paused<'_> {
        self.shared.paused.store(true, Ordering::Relaxed);
        let gate = self.shared.gate.lock().unwrap_or_else(|e| e.into_inner());
        Paused {
            seen: self.shared.seen(),
            _gate: gate,
            paused: &self.shared.paused,
        }
    }

    /// `Ok` once `n` writes in all were acknowledged; else how far it is, with the
    /// failures so far and the last one (for a wait's message).
    pub fn reached(&self, n: usize) -> Result<(), String> {
        let count = self.acked();
        if count >= n {
            return Ok(());
        }
        let seen = self.shared.seen();
        let last = seen.errors.last().map_or("", |f| f.message.as_str());
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
        let seen = self.shared.seen();
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
        self.failures(from, to)
            .into_iter()
            .map(|f| f.message)
            .collect()
    }

    /// The failed writes and connections between `from` and `to`.
    pub fn failures(&self, from: Instant, to: Instant) -> Vec<Failed> {
        self.shared
            .seen()
            .errors
            .iter()
            .filter(|f| f.at >= from && f.at <= to)
            .cloned()
            .collect()
    }

    /// For a writer with `stop_on_error`: waits (at most `within`) until it stops by itself
    /// at its first failed write, then says what it did. A caller that just made the
    /// target fail must not [`Writer::finish`] at once: that could stop the writer before
    /// its write in flight fails.
    pub fn finish_at_error(self, within: Duration) -> WriterReport {
        let deadline = Instant::now() + within;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.finish()
    }

    /// Stops the thread (after the write in flight) and says what it did.
    pub fn finish(mut self) -> WriterReport {
        self.stop();
        if let Some(t) = self.thread.take()
            && let Err(p) = t.join()
        {
            std::panic::resume_unwind(p);
        }
        WriterReport {
            prefix: self.opts.prefix.clone(),
            started: self.started,
            seen: std::mem::take(&mut *self.shared.seen()),
        }
    }

    fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.paused.store(false, Ordering::Relaxed);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
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

/// How an attempt ended.
enum Attempt {
    /// Acknowledged, by this many replicas.
    Acked(u64, i64),
    /// Failed; with `true` the connection is still good (a `WAIT` that came up short).
    Failed(Failed, bool),
}

fn write_loop(target: &Target, opts: &WriterOpts, shared: &Shared) {
    let deadline = Instant::now().checked_add(opts.max_run);
    let interval = (opts.rate > 0).then(|| Duration::from_secs_f64(1.0 / opts.rate as f64));
    let mut next_at = Instant::now();
    let mut con: Option<redis::Connection> = None;
    let mut n = 0u64;
    let mut backoff = opts.backoff.0;
    while !shared.stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        if shared.paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if let Some(interval) = interval {
            let now = Instant::now();
            if next_at > now {
                std::thread::sleep(next_at - now);
            }
            next_at = next_at.max(now - Duration::from_secs(1)) + interval;
        }
        let gate = shared.gate.lock().unwrap_or_else(|e| e.into_inner());
        if shared.paused.load(Ordering::Relaxed) {
            continue;
        }
        let wait = shared.wait.load(Ordering::Relaxed);
        let mut write = |c: &mut redis::Connection| {
            // A write that failed may or may not have happened: its number is not reused.
            let this = n;
            n += 1;
            write_one(c, opts, this, wait)
        };
        let attempt = match con.as_mut() {
            Some(c) => write(c),
            None => match connect_target(target, opts) {
                Ok(c) => write(con.insert(c)),
                Err(f) => Attempt::Failed(f, false),
            },
        };
        let failed = {
            let mut seen = shared.seen();
            match attempt {
                Attempt::Acked(this, replicas) => {
                    seen.acked.push((Instant::now(), this));
                    seen.acked_by.push(replicas);
                    shared.acked.store(seen.acked.len(), Ordering::Relaxed);
                    None
                }
                Attempt::Failed(f, keep) => {
                    seen.errors.push(f);
                    Some(keep)
                }
            }
        };
        drop(gate);
        match failed {
            None => {
                backoff = opts.backoff.0;
                if !opts.pause.is_zero() && n.is_multiple_of(opts.pause_every.max(1)) {
                    std::thread::sleep(opts.pause);
                }
            }
            Some(keep) => {
                if opts.stop_on_error {
                    return;
                }
                if !keep {
                    con = None;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(opts.backoff.1);
            }
        }
    }
}

/// A connection to where `target` says the master is.
fn connect_target(target: &Target, opts: &WriterOpts) -> Result<redis::Connection, Failed> {
    let connect = |a| {
        connect_with_tls(
            a,
            opts.password.as_deref(),
            opts.tls.as_ref(),
            opts.connect_timeout,
            opts.io_timeout,
        )
    };
    let failed = |kind: String, message: String| Failed {
        at: Instant::now(),
        connecting: true,
        kind,
        message,
    };
    let no_master = || failed("no master".to_owned(), "no master found".to_owned());
    let addr = match target {
        Target::Fixed(addr) => *addr,
        Target::Master(addrs) => return connect_master(addrs, connect).ok_or_else(no_master),
        Target::Sentinel { sentinels, name } => {
            sentinel_master(sentinels, name, connect).ok_or_else(no_master)?
        }
        Target::Lookup(find) => find().ok_or_else(no_master)?,
    };
    connect(addr).map_err(|e| failed(error_kind(&e), format!("connecting to {addr}: {e}")))
}

/// The master the first sentinel that answers names for `name`.
fn sentinel_master(
    sentinels: &[SocketAddr],
    name: &str,
    connect: impl Fn(SocketAddr) -> redis::RedisResult<redis::Connection>,
) -> Option<SocketAddr> {
    sentinels.iter().find_map(|s| {
        let mut c = connect(*s).ok()?;
        let reply: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(name)
            .query(&mut c)
            .ok()?;
        let ip = reply.first()?.parse().ok()?;
        let port = reply.get(1)?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    })
}

/// `SET <prefix>n <value_prefix>n`, then `WAIT replicas timeout` when replicas > 0.
fn write_one(c: &mut redis::Connection, opts: &WriterOpts, n: u64, replicas: i64) -> Attempt {
    let key = format!("{}{n}", opts.prefix);
    let failed = |kind: String, message: String| Failed {
        at: Instant::now(),
        connecting: false,
        kind,
        message,
    };
    if let Err(e) = redis::cmd("SET")
        .arg(&key)
        .arg(format!("{}{n}", opts.value_prefix))
        .query::<()>(c)
    {
        return Attempt::Failed(failed(error_kind(&e), format!("SET {key}: {e}")), false);
    }
    if replicas <= 0 {
        return Attempt::Acked(n, 0);
    }
    let got = redis::cmd("WAIT")
        .arg(replicas)
        .arg(u64::try_from(opts.wait.1.as_millis()).unwrap_or(u64::MAX))
        .query::<i64>(c);
    match got {
        Ok(got) if got >= replicas => Attempt::Acked(n, got),
        Ok(got) => Attempt::Failed(
            failed(
                format!("WAIT {got}"),
                format!("WAIT: {got} of {replicas} replicas"),
            ),
            true,
        ),
        Err(e) => Attempt::Failed(
            failed(error_kind(&e), format!("WAIT after SET {key}: {e}")),
            false,
        ),
    }
}

/// A thread that PINGs the master every so often and times the answers, looking for the
/// master again after any error.
pub struct Prober {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<Duration>>>,
}

/// What a [`Prober`] measured.
pub struct Probed {
    /// Each answered PING's round trip, in order.
    pub latencies: Vec<Duration>,
    /// PINGs that failed.
    pub errors: u64,
}

impl Prober {
    /// Starts the thread: a PING `every` after the last answer, connected as `opts` says
    /// (password, timeouts) to `target`; a failed connection is retried after twice that.
    pub fn start(target: Target, opts: &WriterOpts, every: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, errors, opts) = (stop.clone(), errors.clone(), opts.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut con = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    if con.is_none() {
                        con = connect_target(&target, &opts).ok();
                    }
                    let Some(c) = con.as_mut() else {
                        std::thread::sleep(every);
                        continue;
                    };
                    let t = Instant::now();
                    match redis::cmd("PING").query::<String>(c) {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            con = None;
                        }
                    }
                }
                latencies
            })
        };
        Prober {
            stop,
            errors,
            thread: Some(thread),
        }
    }

    /// Stops the thread and says what it measured.
    pub fn finish(mut self) -> Probed {
        self.stop.store(true, Ordering::Relaxed);
        let latencies = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Probed {
            latencies,
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The numbers of `acked` whose key `<prefix><n>` `con` lacks or holds with a value other
/// than `n`: EXISTS over chunks of 1000, 16 chunks to a pipeline, and MGET only for a chunk
/// that comes up short (a check of a million keys stays a few round trips).
pub fn missing_keys(
    con: &mut redis::Connection,
    prefix: &str,
    acked: &[u64],
) -> redis::RedisResult<Vec<u64>> {
    const CHUNK: usize = 1000;
    const PIPELINE: usize = 16;
    let key = |n: u64| format!("{prefix}{n}");
    let mut missing = Vec::new();
    let chunks: Vec<&[u64]> = acked.chunks(CHUNK).collect();
    for group in chunks.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for chunk in group {
            let cmd = pipe.cmd("EXISTS");
            for n in *chunk {
                cmd.arg(key(*n));
            }
        }
        let counts: Vec<usize> = pipe.query(con)?;
        for (chunk, count) in group.iter().zip(counts) {
            if count == chunk.len() {
                continue;
            }
            let keys: Vec<String> = chunk.iter().map(|n| key(*n)).collect();
            let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(con)?;
            for (n, v) in chunk.iter().zip(got) {
                if v != Some(n.to_string()) {
                    missing.push(*n);
                }
            }
        }
    }
    Ok(missing)
}
