//! The metrics snapshot: what only the supervisor knows (the machine's report, the pause,
//! the hook and backup counts, `doctor`'s checks, the certificates' ends), for a scrape of
//! `/metrics`.

use std::time::Instant;

use super::Runtime;
use crate::metrics::{GateMetrics, InstanceMetrics, Snapshot, StopCounts};

impl Runtime {
    /// The metrics of this host's instances, now.
    pub(super) fn snapshot(&self) -> Snapshot {
        let group = self.machine.group();
        let report = self.machine.report();
        let in_gate: Vec<(&str, bool)> = report
            .iter()
            .map(|r| (r.name.as_str(), r.waiting_in_gate_of.is_some()))
            .collect();
        let gates = gates(&in_gate, |name| {
            group.instance(name).and_then(|i| i.replica_of.clone())
        });
        let instances = report
            .into_iter()
            .map(|r| InstanceMetrics {
                name: r.name,
                up: r.up,
                restarts: u64::from(r.restarts),
                full_syncs: r.counters.full_syncs,
                partial_syncs: r.counters.partial_syncs,
                mispredicted_syncs: r.counters.mispredicted_syncs,
                stops: StopCounts {
                    saved: r.counters.stops_saved,
                    forced: r.counters.stops_nosave,
                    failed: r.counters.stops_refused,
                    killed: r.counters.stops_killed,
                },
                server: r.server.map(|s| crate::metrics::Server {
                    name: s.kind.name().to_owned(),
                    version: s.version.to_string(),
                }),
            })
            .collect();
        Snapshot {
            host: self.host.clone(),
            instances,
            gates,
            pause_remaining_s: self.machine.paused_for(Instant::now()).map(|d| d.as_secs()),
            doctor: self.doctor.lock().map(|d| d.clone()).unwrap_or_default(),
            hook_runs: self
                .recorder
                .as_ref()
                .and_then(|r| r.counts.lock().ok().map(|n| [n.ok, n.failed, n.timeout]))
                .unwrap_or_default(),
            backup: self.backups.status(),
            tls_expiry: self.tls_expiry(),
        }
    }

    /// The certificate files this host uses, read now (a scrape or a `status` reads them
    /// afresh, so a renewed file shows at once; they are a few small local files).
    pub(super) fn cert_expiries(&self) -> Vec<redisrepd_core::tls::CertExpiry> {
        self.machine
            .group()
            .tls
            .as_ref()
            .map(|tls| crate::tls_files::expiries(tls, &self.host))
            .unwrap_or_default()
    }

    /// Seconds until each readable certificate file of this host ends, for the metric.
    fn tls_expiry(&self) -> Vec<(String, i64)> {
        let now = jiff::Timestamp::now();
        self.cert_expiries()
            .into_iter()
            .filter_map(|e| Some((e.file.display().to_string(), e.seconds_left(now)?)))
            .collect()
    }
}

/// Per upstream (`upstream_of` an instance, from the file), in the order first met, how
/// many of this host's replicas wait in its sync gate; `in_gate` says of each local
/// instance whether it waits.
fn gates(
    in_gate: &[(&str, bool)],
    upstream_of: impl Fn(&str) -> Option<String>,
) -> Vec<GateMetrics> {
    let mut gates: Vec<GateMetrics> = Vec::new();
    for &(name, waiting) in in_gate {
        let Some(up) = upstream_of(name) else {
            continue;
        };
        let waiting = u64::from(waiting);
        match gates.iter_mut().find(|g| g.upstream == up) {
            Some(g) => g.waiting += waiting,
            None => gates.push(GateMetrics {
                upstream: up,
                waiting,
            }),
        }
    }
    gates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_upstream_gate_counts_the_replicas_waiting_in_it() {
        let upstream_of = |name: &str| match name {
            "r1" | "r2" | "r4" => Some("m".to_owned()),
            "r3" => Some("r1".to_owned()),
            _ => None,
        };
        let in_gate = [
            ("m", false),
            ("r1", false),
            ("r2", true),
            ("r3", false),
            ("r4", true),
        ];
        assert_eq!(
            gates(&in_gate, upstream_of),
            [
                GateMetrics {
                    upstream: "m".into(),
                    waiting: 2
                },
                GateMetrics {
                    upstream: "r1".into(),
                    waiting: 0
                },
            ]
        );
        assert!(gates(&[("m", false)], upstream_of).is_empty());
    }
}
