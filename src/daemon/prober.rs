//! The prober thread: reads INFO from every local instance and every upstream of a local
//! replica each `health_interval`, and sends the results to the supervisor. It decides
//! nothing.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Event;
use crate::redis_io::Endpoint;

/// The instances to probe, set by the supervisor.
pub type ProbeTargets = Arc<Mutex<Vec<(String, Endpoint)>>>;

/// Probes until the supervisor's side of `events` is gone or `stop` says so. A message on
/// `wake` probes at once (after a start, readiness should not wait a whole interval).
pub fn run(targets: ProbeTargets, interval: Duration, events: Sender<Event>, wake: Receiver<()>) {
    let timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(2));
    loop {
        let list = targets.lock().map(|t| t.clone()).unwrap_or_default();
        for (name, endpoint) in list {
            let result = endpoint.info(timeout);
            if events.send(Event::Probe { name, result }).is_err() {
                return;
            }
        }
        match wake.recv_timeout(interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
