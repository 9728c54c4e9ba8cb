//! The prober thread: reads INFO from every target the machine names (local instances and
//! the group's other instances) each `health_interval`, or at once when woken, and
//! sends the results to the supervisor, stamped with when each was asked. It decides
//! nothing.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Event;
use crate::redis_io::Endpoint;

/// The instances to probe, set by the supervisor.
pub type ProbeTargets = Arc<Mutex<Vec<(String, Endpoint)>>>;

/// How long one INFO probe may take. At least a second: a busy instance that answers INFO
/// late must not pass for one that is gone (a promotion is refused only while the master
/// answers). Targets are asked in parallel, so one slow answer holds back no other.
pub(crate) fn probe_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(2))
}

/// A sentinel also says whom it names as master (`cluster` is the name it monitors).
/// Probes until the supervisor's side of `events` or `wake` is gone. A message on `wake`
/// starts the next round at once (after a launch, readiness should not wait a whole
/// interval; a status request wants answers no older than itself).
pub fn run(
    targets: ProbeTargets,
    interval: Duration,
    events: Sender<Event>,
    wake: Receiver<()>,
    cluster: String,
) {
    let timeout = probe_timeout(interval);
    loop {
        let list = targets.lock().map(|t| t.clone()).unwrap_or_default();
        // All at once: an instance on a host that is cut off takes the whole timeout to
        // fail, and must not hold back the answers of the others.
        let gone = std::thread::scope(|scope| {
            let asks: Vec<_> = list
                .into_iter()
                .map(|(name, endpoint)| {
                    let events = events.clone();
                    let cluster = &cluster;
                    scope.spawn(move || {
                        let asked_at = Instant::now();
                        let result = endpoint.info_or_sentinel(cluster, timeout);
                        events
                            .send(Event::Probe {
                                name,
                                asked_at,
                                result,
                            })
                            .is_err()
                    })
                })
                .collect();
            asks.into_iter().any(|a| a.join().unwrap_or(true))
        });
        if gone {
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
