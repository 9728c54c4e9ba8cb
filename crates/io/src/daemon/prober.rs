//! The prober: reads INFO from every target the machine names (local instances and the
//! group's other instances) each `health_interval`, or at once when woken, and sends the
//! results to the supervisor, stamped with when each was asked. It decides nothing.
//!
//! Each target has a worker thread of its own, kept across rounds with its connection
//! open: a round is one INFO per target, not a thread, a TCP connection, AUTH and
//! `CLIENT SETNAME` each (what the daemon spent most of its idle time on with dozens of
//! instances). Targets are still asked in parallel, so one that is slow or cut off holds
//! back no other's answer.

use crate::redis_io::Client as _;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Event, ProbeAnswer};
use crate::redis_io::{Endpoint, describe, info_or_sentinel_on};
use redisrepd_core::info::Info;

/// The instances to probe, set by the supervisor.
pub type ProbeTargets = Arc<Mutex<Vec<(String, Endpoint)>>>;

/// How long a probe connection is kept before the next probe opens a new one. A kept
/// connection stays authenticated when the instance's password is changed behind the
/// daemon's back (`CONFIG SET requirepass` by hand); a new one finds out, as every probe
/// did when each opened its own, within this.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// A probe connection kept across rounds, and what it was opened to.
struct Kept {
    endpoint: Endpoint,
    opened: Instant,
    conn: redis::Connection,
}

/// Whether the connection opened to `kept` at `opened` may serve a probe of `endpoint` at
/// `now`: only to the same address with the same password (a reload or a password change
/// in place gives a new endpoint), and not older than [`MAX_CONNECTION_AGE`].
fn reusable(kept: &Endpoint, opened: Instant, endpoint: &Endpoint, now: Instant) -> bool {
    kept == endpoint && now.saturating_duration_since(opened) < MAX_CONNECTION_AGE
}

/// How a probe over a kept connection ended, and what comes next.
#[derive(Debug, PartialEq, Eq)]
enum AfterKept {
    /// Answered: keep the connection.
    Answered,
    /// Timed out: the answer, if it comes, would be taken for the next command's, so the
    /// connection is closed; and the instance is slow, not gone, so it is not asked
    /// again at once (that would double the wait): the timeout is the probe's result.
    TimedOut,
    /// Failed otherwise (the instance restarted, or closed the connection: an idle
    /// `timeout`, `CLIENT KILL`): closed, and asked again at once on a new connection,
    /// whose answer is the probe's result, as if it had been the only one.
    Retry,
}

fn after_kept(result: &redis::RedisResult<Info>) -> AfterKept {
    match result {
        Ok(_) => AfterKept::Answered,
        Err(e) if e.is_timeout() => AfterKept::TimedOut,
        Err(_) => AfterKept::Retry,
    }
}

/// One probe of `endpoint`, over `kept` when it may serve, else (or when it failed other
/// than by a timeout) over a new connection that is kept for the next rounds when it
/// answers. Returns when the answering question was asked, and the answer.
fn probe(
    kept: &mut Option<Kept>,
    endpoint: &Endpoint,
    cluster: &str,
    timeout: Duration,
) -> (Instant, Result<Info, String>) {
    if let Some(k) = kept.take()
        && reusable(&k.endpoint, k.opened, endpoint, Instant::now())
    {
        let mut k = k;
        let asked_at = Instant::now();
        let result = info_or_sentinel_on(&mut k.conn, cluster);
        match after_kept(&result) {
            AfterKept::Answered => {
                *kept = Some(k);
                return (asked_at, result.map_err(describe));
            }
            AfterKept::TimedOut => return (asked_at, result.map_err(describe)),
            AfterKept::Retry => {}
        }
    }
    let asked_at = Instant::now();
    let result = endpoint.connect(timeout).and_then(|mut conn| {
        let info = info_or_sentinel_on(&mut conn, cluster)?;
        *kept = Some(Kept {
            endpoint: endpoint.clone(),
            opened: asked_at,
            conn,
        });
        Ok(info)
    });
    (asked_at, result.map_err(describe))
}

/// A target's worker: probes it each time it is handed the target's endpoint (round
/// `n`), and hands `(n, answer)` to the prober. Ends when its target is dropped (its
/// sender closed) or the prober is gone.
fn worker(
    name: String,
    asks: Receiver<(u64, Endpoint)>,
    answers: Sender<(u64, ProbeAnswer)>,
    cluster: String,
    timeout: Duration,
) {
    let mut kept = None;
    while let Ok((round, endpoint)) = asks.recv() {
        let (asked_at, result) = probe(&mut kept, &endpoint, &cluster, timeout);
        let answer = ProbeAnswer {
            name: name.clone(),
            asked_at,
            result,
        };
        if answers.send((round, answer)).is_err() {
            return;
        }
    }
}

/// How long a round waits for a worker at most: a probe takes at most a connect, a
/// SETNAME and two commands within `timeout` each, twice (the retry on a new connection).
/// Only a worker that died mid-probe (a bug) is waited for this long.
fn round_limit(timeout: Duration) -> Duration {
    timeout * 8 + Duration::from_secs(1)
}

/// How long the answers of a round are held back to go to the supervisor together: the
/// supervisor weighs each batch against the whole group (O(N)), so a round sent as N
/// single answers costs it O(N²). All answer within a few milliseconds as a rule; what
/// comes later (a slow or unreachable target) is sent as it comes.
const BATCH_GRACE: Duration = Duration::from_millis(50);

/// When the answers held so far go to the supervisor: once every target answered, or
/// the grace since the round began is over.
fn send_now(waiting: usize, round_began: Instant, now: Instant) -> bool {
    waiting == 0 || now >= round_began + BATCH_GRACE
}

/// Probes until the supervisor's side of `events` or `wake` is gone. A message on `wake`
/// starts the next round at once (after a launch, readiness should not wait a whole
/// interval; a status request wants answers no older than itself). A sentinel also says
/// whom it names as master (`cluster` is the name it monitors).
pub fn run(
    targets: ProbeTargets,
    interval: Duration,
    events: Sender<Event>,
    wake: Receiver<()>,
    cluster: String,
) {
    let timeout = redisrepd_core::machine::probe_timeout(interval);
    let (answers_tx, answers) = mpsc::channel::<(u64, ProbeAnswer)>();
    let mut workers: HashMap<String, Sender<(u64, Endpoint)>> = HashMap::new();
    let mut round: u64 = 0;
    loop {
        round += 1;
        let began = Instant::now();
        let list = targets.lock().map(|t| t.clone()).unwrap_or_default();
        // A target no longer named: its worker ends, closing its connection.
        workers.retain(|name, _| list.iter().any(|(n, _)| n == name));
        let mut waiting = 0usize;
        let mut held: Vec<ProbeAnswer> = Vec::new();
        for (name, endpoint) in list {
            let mut ask = (round, endpoint);
            if let Some(w) = workers.get(&name) {
                match w.send(ask) {
                    Ok(()) => {
                        waiting += 1;
                        continue;
                    }
                    // Its worker is gone (it cannot be, short of a bug): a new one.
                    Err(mpsc::SendError(back)) => ask = back,
                }
            }
            let (tx, rx) = mpsc::channel();
            let (to_prober, cluster, who) = (answers_tx.clone(), cluster.clone(), name.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("probe-{name}"))
                .spawn(move || worker(who, rx, to_prober, cluster, timeout));
            match spawned {
                Ok(_) if tx.send(ask).is_ok() => {
                    workers.insert(name, tx);
                    waiting += 1;
                }
                Ok(_) => {}
                // Said as the probe's failure, so status shows it.
                Err(e) => held.push(ProbeAnswer {
                    name,
                    asked_at: Instant::now(),
                    result: Err(format!("cannot start a probe thread: {e}")),
                }),
            }
        }
        // The round ends when every target answered (or timed out), as before: a wake
        // during it is answered by the next round, all of whose questions come after it.
        let limit = began + round_limit(timeout);
        loop {
            let now = Instant::now();
            if !held.is_empty() && send_now(waiting, began, now) {
                let batch = std::mem::take(&mut held);
                if events.send(Event::Probes(batch)).is_err() {
                    return;
                }
            }
            if waiting == 0 {
                break;
            }
            let until = if held.is_empty() {
                limit
            } else {
                limit.min(began + BATCH_GRACE)
            };
            match answers.recv_timeout(until.saturating_duration_since(now)) {
                Ok((n, answer)) => {
                    // A late answer of an earlier round is still an answer (its
                    // `asked_at` says how old), but this round does not wait for it.
                    if n == round {
                        waiting -= 1;
                    }
                    held.push(answer);
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < limit => {}
                Err(_) => break,
            }
        }
        if !held.is_empty() && events.send(Event::Probes(held)).is_err() {
            return;
        }
        // Wakes that came during this round are all answered by the next one, at once.
        let mut woken = false;
        while wake.try_recv().is_ok() {
            woken = true;
        }
        if woken {
            continue;
        }
        match wake.recv_timeout(interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redisrepd_core::config::Secret;

    fn endpoint(port: u16, password: Option<&str>) -> Endpoint {
        Endpoint {
            bind: "127.0.0.1".parse().expect("ip"),
            port,
            user: None,
            password: password.map(|p| Secret::new(p.to_owned())),
            fallback: Vec::new(),
            tls: None,
        }
    }

    #[test]
    fn a_kept_connection_serves_only_the_same_endpoint_and_not_for_ever() {
        let t0 = Instant::now();
        let e = endpoint(7000, Some("pw"));
        assert!(reusable(&e, t0, &e, t0 + Duration::from_secs(1)));
        // A new password (a reload, a change in place), another address: a new connection.
        assert!(!reusable(&e, t0, &endpoint(7000, Some("new")), t0));
        assert!(!reusable(&e, t0, &endpoint(7000, None), t0));
        assert!(!reusable(&e, t0, &endpoint(7001, Some("pw")), t0));
        // Old enough: opened again, so a password changed behind our back shows.
        assert!(reusable(
            &e,
            t0,
            &e,
            t0 + MAX_CONNECTION_AGE - Duration::from_millis(1)
        ));
        assert!(!reusable(&e, t0, &e, t0 + MAX_CONNECTION_AGE));
    }

    #[test]
    fn a_round_is_sent_whole_unless_some_answers_are_late() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Everyone answered: at once.
        assert!(send_now(0, t0, t0 + ms(1)));
        // Some still to answer: held within the grace, sent as they come after it.
        assert!(!send_now(3, t0, t0 + ms(1)));
        assert!(!send_now(1, t0, t0 + BATCH_GRACE - ms(1)));
        assert!(send_now(1, t0, t0 + BATCH_GRACE));
        assert!(send_now(1, t0, t0 + ms(1500)));
    }

    #[test]
    fn a_kept_connection_that_fails_is_retried_fresh_unless_it_timed_out() {
        use redis::{ErrorKind, RedisError};
        assert_eq!(after_kept(&Ok(Info::default())), AfterKept::Answered);
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::WouldBlock));
        assert!(timeout.is_timeout());
        assert_eq!(after_kept(&Err(timeout)), AfterKept::TimedOut);
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(after_kept(&Err(reset)), AfterKept::Retry);
        let closed = RedisError::from((ErrorKind::Io, "Connection closed"));
        assert_eq!(after_kept(&Err(closed)), AfterKept::Retry);
    }
}
