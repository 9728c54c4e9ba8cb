//! Waiting for a condition with a deadline: the only place tests and benches sleep to
//! wait. Every wait names what it waited for, and its failure carries the probe's last
//! complaint.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Polls `probe` with short sleeps (5 ms, doubling up to 100 ms) until it returns `Ok`,
/// for at most `within`; panics naming `what` and the last error when time runs out.
#[track_caller]
pub fn wait_for<T, E: fmt::Display>(
    within: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, E>,
) -> T {
    match poll(within, None, Duration::from_millis(100), probe) {
        Ok(value) => value,
        Err(Stopped::Deadline(e) | Stopped::Interrupted(e)) => {
            panic!("timed out after {within:?} waiting for {what}; last result: {e}")
        }
    }
}

/// [`wait_for`] a condition that is true or false.
#[track_caller]
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(within, what, || {
        if cond() { Ok(()) } else { Err("still false") }
    })
}

/// Polls `probe` (5 ms, doubling up to 20 ms, so that a bench measures a change to within
/// 20 ms) until it returns `Ok`, `within` passes or `stop` is set (a bench's Ctrl-C flag);
/// the error names `what` and carries the probe's last complaint.
pub fn try_wait_for<T, E: fmt::Display>(
    what: &str,
    within: Duration,
    stop: &AtomicBool,
    probe: impl FnMut() -> Result<T, E>,
) -> Result<T, String> {
    poll(within, Some(stop), Duration::from_millis(20), probe).map_err(|s| match s {
        Stopped::Deadline(e) => format!("{what}: still not so after {within:?}: {e}"),
        Stopped::Interrupted(e) => format!("{what}: interrupted while waiting: {e}"),
    })
}

/// Why [`poll`] gave up, with the probe's last complaint.
enum Stopped {
    Deadline(String),
    Interrupted(String),
}

fn poll<T, E: fmt::Display>(
    within: Duration,
    stop: Option<&AtomicBool>,
    max_pause: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Result<T, Stopped> {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5).min(max_pause);
    loop {
        let last = match probe() {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Stopped::Deadline(last.to_string()));
        }
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(Stopped::Interrupted(last.to_string()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(max_pause);
    }
}
