//! Prometheus metrics (`spec/cli.md`, "Metrics"): what only the supervisor knows, served
//! at `/metrics` over plain HTTP in the Prometheus text format (0.0.4).
//!
//! Theory of operation. The supervisor owns the numbers; this module owns none. The HTTP
//! thread ([`serve`]) asks for a [`Snapshot`] through a callback on every scrape (the
//! daemon's callback sends a request to the supervisor thread and waits a bounded time for
//! the answer), and [`encode`] turns it into text: a pure function, so what a scrape shows
//! is unit-tested without a daemon. Families are built afresh per scrape from the snapshot,
//! so an instance removed by `reload` disappears from the next scrape.
//!
//! The HTTP listener that serves it is `redisrepd_core::http`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use redisrepd_core::http::{Reply, Request};

/// Everything a scrape shows, as the supervisor knows it at that moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The daemon's host (`daemon --host`), the `host` label of `redisrepd_instance_up`.
    pub host: String,
    /// This host's instances.
    pub instances: Vec<InstanceMetrics>,
    /// The sync gates of the upstreams this host's replicas wait on.
    pub gates: Vec<GateMetrics>,
    /// Seconds the maintenance pause still holds (`None`: not paused).
    pub pause_remaining_s: Option<u64>,
    /// `doctor`'s checks of this host, each at its worst level: 0 ok, 1 warning, 2 problem.
    pub doctor: Vec<(String, i64)>,
    /// How the `[hooks] on_role_change` runs ended: ok, failed, timeout.
    pub hook_runs: [u64; 3],
    /// This daemon's backups.
    pub backup: redisrepd_core::backup::BackupStatus,
    /// `[tls]`: seconds until each certificate file this host uses ends (negative: ended),
    /// read at the scrape; a file that cannot be read is left out.
    pub tls_expiry: Vec<(String, i64)>,
}

/// One local instance's numbers. Counters count since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceMetrics {
    /// The instance's name.
    pub name: String,
    /// Running and, for a replica, in sync (status `running`).
    pub up: bool,
    /// Restarts after a crash (the `restarts` column of `status`).
    pub restarts: u64,
    /// Completed full syncs of this replica (0 for a master).
    pub full_syncs: u64,
    /// Completed partial resyncs of this replica.
    pub partial_syncs: u64,
    /// Replicas admitted as a sure partial resync that needed a full sync after all.
    pub mispredicted_syncs: u64,
    /// How its stops ended.
    pub stops: StopCounts,
    /// The server it runs on, when known (`--version` or INFO).
    pub server: Option<Server>,
}

/// Stops of one instance by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopCounts {
    /// SHUTDOWN SAVE succeeded.
    pub saved: u64,
    /// Stopped without saving on request (`--force`: SHUTDOWN NOSAVE).
    pub forced: u64,
    /// The final save failed: left running.
    pub failed: u64,
    /// Did not exit in time: SIGTERM, then SIGKILL.
    pub killed: u64,
}

/// A server's name and version, e.g. `redis` `7.0.15` or `valkey` `8.1.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub version: String,
}

/// One upstream's sync gate as seen from this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateMetrics {
    /// The upstream instance.
    pub upstream: String,
    /// This host's replicas waiting for a place in its gate.
    pub waiting: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabel {
    file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceHost {
    instance: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabel {
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    instance: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StopLabels {
    instance: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    instance: String,
    server: String,
    version: String,
}

/// The Prometheus text (0.0.4) of a snapshot. Pure.
pub fn encode(snapshot: &Snapshot) -> String {
    let up = Family::<InstanceHost, Gauge>::default();
    let restarts = Family::<InstanceLabel, Counter>::default();
    let syncs = Family::<SyncLabels, Counter>::default();
    let stops = Family::<StopLabels, Counter>::default();
    let mispredicted = Family::<InstanceLabel, Counter>::default();
    let waiting = Family::<UpstreamLabel, Gauge>::default();
    let server = Family::<ServerLabels, Gauge>::default();
    for i in &snapshot.instances {
        let name = || i.name.clone();
        up.get_or_create(&InstanceHost {
            instance: name(),
            host: snapshot.host.clone(),
        })
        .set(i64::from(i.up));
        restarts
            .get_or_create(&InstanceLabel { instance: name() })
            .inc_by(i.restarts);
        for (kind, n) in [("full", i.full_syncs), ("partial", i.partial_syncs)] {
            syncs
                .get_or_create(&SyncLabels {
                    instance: name(),
                    kind,
                })
                .inc_by(n);
        }
        mispredicted
            .get_or_create(&InstanceLabel { instance: name() })
            .inc_by(i.mispredicted_syncs);
        let s = i.stops;
        for (result, n) in [
            ("saved", s.saved),
            ("forced", s.forced),
            ("failed", s.failed),
            ("killed", s.killed),
        ] {
            stops
                .get_or_create(&StopLabels {
                    instance: name(),
                    result,
                })
                .inc_by(n);
        }
        if let Some(srv) = &i.server {
            server
                .get_or_create(&ServerLabels {
                    instance: name(),
                    server: srv.name.clone(),
                    version: srv.version.clone(),
                })
                .set(1);
        }
    }
    for g in &snapshot.gates {
        waiting
            .get_or_create(&UpstreamLabel {
                upstream: g.upstream.clone(),
            })
            .set(i64::try_from(g.waiting).unwrap_or(i64::MAX));
    }

    let hook_runs = Family::<ResultLabel, Counter>::default();
    for (result, n) in ["ok", "failed", "timeout"]
        .into_iter()
        .zip(snapshot.hook_runs)
    {
        hook_runs.get_or_create(&ResultLabel { result }).inc_by(n);
    }

    let mut registry = Registry::default();
    let doctor = Family::<CheckLabel, Gauge>::default();
    for (check, level) in &snapshot.doctor {
        doctor
            .get_or_create(&CheckLabel {
                check: check.clone(),
            })
            .set(*level);
    }
    registry.register(
        "redisrepd_doctor_check",
        "The host checks of `redisrepd doctor`, run every 10 minutes: 0 ok, 1 warning, 2 problem",
        doctor,
    );
    let paused = Gauge::<i64>::default();
    paused.set(i64::from(snapshot.pause_remaining_s.is_some()));
    let pause_left = Gauge::<i64>::default();
    pause_left.set(
        snapshot
            .pause_remaining_s
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
    );
    registry.register(
        "redisrepd_paused",
        "1 while the group is paused (redisrepd pause): nothing restarts, re-points or fails over by itself",
        paused,
    );
    registry.register(
        "redisrepd_pause_remaining_seconds",
        "Seconds until the pause ends by itself (0 when not paused)",
        pause_left,
    );
    registry.register(
        "redisrepd_instance_up",
        "1 when the instance is running and, for a replica, in sync",
        up,
    );
    registry.register(
        "redisrepd_restarts",
        "Restarts of the instance after a crash",
        restarts,
    );
    registry.register(
        "redisrepd_syncs",
        "Completed syncs of the replica with its upstream, full or partial",
        syncs,
    );
    registry.register(
        "redisrepd_sync_mispredictions",
        "Replicas admitted to the sync gate as a sure partial resync that needed a full sync",
        mispredicted,
    );
    registry.register(
        "redisrepd_stops",
        "Stops of the instance by result: saved, forced (no save), failed (save failed, \
         left running), killed (did not exit in time)",
        stops,
    );
    registry.register(
        "redisrepd_gate_waiting",
        "Replicas of this host waiting for a place in the upstream's sync gate",
        waiting,
    );
    registry.register(
        "redisrepd_hook_runs",
        "Runs of the [hooks] on_role_change program by result: ok, failed (non-zero exit \
         or could not start), timeout (killed)",
        hook_runs,
    );
    registry.register(
        "redisrepd_server_info",
        "The server and version the instance runs on (always 1)",
        server,
    );
    // Backup numbers from a daemon that has a schedule or has taken or tried one.
    let b = &snapshot.backup;
    if !b.is_empty() {
        let failures = Counter::<u64>::default();
        failures.inc_by(b.failures_total);
        registry.register(
            "redisrepd_backup_failures",
            "Backups this daemon tried that failed (save, copy, verify, prune or upload)",
            failures,
        );
    }
    if let Some(t) = b.last_success_unix {
        let g = Gauge::<i64>::default();
        g.set(t);
        registry.register(
            "redisrepd_backup_last_success_timestamp_seconds",
            "When this daemon last took a backup that verified (Unix time)",
            g,
        );
    }
    if let Some(size) = b.last_size_bytes {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(size).unwrap_or(i64::MAX));
        registry.register(
            "redisrepd_backup_last_size_bytes",
            "The size of the last backup this daemon took",
            g,
        );
    }
    if !snapshot.tls_expiry.is_empty() {
        let expiry = Family::<FileLabel, Gauge>::default();
        for (file, left) in &snapshot.tls_expiry {
            expiry
                .get_or_create(&FileLabel { file: file.clone() })
                .set(*left);
        }
        registry.register(
            "redisrepd_tls_cert_expiry_seconds",
            "Seconds until the certificate file ends (its notAfter; for a file of several, the \
             earliest), for this host's certificate and ca_file; negative once ended",
            expiry,
        );
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// The answer to a request for `/metrics` (404 for any other path). Pure, except that it
/// asks `snapshot` when the request is a scrape.
pub fn respond(req: &Request, snapshot: impl FnOnce() -> Option<Snapshot>) -> Reply {
    if req.path != "/metrics" {
        return Reply::text(
            "404 Not Found",
            "not found: metrics are at /metrics; health checks at /master/<instance>, \
             /replica/<instance>, /health/<instance>",
        );
    }
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Reply::text("405 Method Not Allowed", "use GET");
        }
    };
    match snapshot() {
        Some(s) => Reply {
            status: "200 OK",
            content_type: prometheus_text::CONTENT_TYPE,
            body: encode(&s),
            head_only,
        },
        None => Reply {
            head_only,
            ..Reply::text(
                "503 Service Unavailable",
                "the supervisor did not answer; try again",
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            host: "db2".to_owned(),
            instances: vec![
                InstanceMetrics {
                    name: "replica-1".to_owned(),
                    up: true,
                    restarts: 2,
                    full_syncs: 1,
                    partial_syncs: 3,
                    mispredicted_syncs: 1,
                    stops: StopCounts {
                        saved: 4,
                        forced: 0,
                        failed: 1,
                        killed: 0,
                    },
                    server: Some(Server {
                        name: "redis".to_owned(),
                        version: "7.0.15".to_owned(),
                    }),
                },
                InstanceMetrics {
                    name: "replica-2".to_owned(),
                    ..InstanceMetrics::default()
                },
            ],
            gates: vec![GateMetrics {
                upstream: "master".to_owned(),
                waiting: 1,
            }],
            pause_remaining_s: Some(90),
            doctor: vec![("overcommit".into(), 1), ("disk".into(), 0)],
            hook_runs: [2, 1, 0],
            backup: redisrepd_core::backup::BackupStatus {
                last_success_unix: Some(1_796_000_000),
                last_size_bytes: Some(4096),
                failures_total: 2,
                ..Default::default()
            },
            tls_expiry: vec![
                ("/etc/redisrepd/tls/db2.crt".into(), 86_400),
                ("/etc/redisrepd/tls/ca.crt".into(), -5),
            ],
        }
    }

    /// The sample lines (no comments), sorted: families keep no order.
    fn samples(text: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn encode_shows_every_metric_with_its_labels() {
        let text = encode(&snapshot());
        let got = samples(&text);
        for want in [
            r#"redisrepd_instance_up{instance="replica-1",host="db2"} 1"#,
            r#"redisrepd_instance_up{instance="replica-2",host="db2"} 0"#,
            r#"redisrepd_restarts_total{instance="replica-1"} 2"#,
            r#"redisrepd_restarts_total{instance="replica-2"} 0"#,
            r#"redisrepd_syncs_total{instance="replica-1",kind="full"} 1"#,
            r#"redisrepd_syncs_total{instance="replica-1",kind="partial"} 3"#,
            r#"redisrepd_stops_total{instance="replica-1",result="saved"} 4"#,
            r#"redisrepd_stops_total{instance="replica-1",result="failed"} 1"#,
            r#"redisrepd_stops_total{instance="replica-1",result="killed"} 0"#,
            r#"redisrepd_gate_waiting{upstream="master"} 1"#,
            r#"redisrepd_server_info{instance="replica-1",server="redis",version="7.0.15"} 1"#,
            r#"redisrepd_sync_mispredictions_total{instance="replica-1"} 1"#,
            "redisrepd_paused 1",
            r#"redisrepd_doctor_check{check="overcommit"} 1"#,
            "redisrepd_pause_remaining_seconds 90",
            r#"redisrepd_hook_runs_total{result="ok"} 2"#,
            r#"redisrepd_hook_runs_total{result="failed"} 1"#,
            r#"redisrepd_hook_runs_total{result="timeout"} 0"#,
            "redisrepd_backup_failures_total 2",
            "redisrepd_backup_last_success_timestamp_seconds 1796000000",
            "redisrepd_backup_last_size_bytes 4096",
            r#"redisrepd_tls_cert_expiry_seconds{file="/etc/redisrepd/tls/db2.crt"} 86400"#,
            r#"redisrepd_tls_cert_expiry_seconds{file="/etc/redisrepd/tls/ca.crt"} -5"#,
        ] {
            assert!(got.contains(&want), "missing {want}\n{text}");
        }
        // Unknown server: no info line for replica-2.
        assert!(
            !text.contains(r#"server_info{instance="replica-2""#),
            "{text}"
        );
        // 2 up + 2 restarts + 4 syncs + 2 mispredictions + 8 stops + 1 gate + 1 info + 2
        // pause + 3 hook results + 3 backup + 2 doctor checks + 2 certificates.
        assert_eq!(got.len(), 32, "{text}");
    }

    #[test]
    fn encode_declares_types_for_prometheus() {
        let text = encode(&snapshot());
        for want in [
            "# TYPE redisrepd_instance_up gauge",
            "# TYPE redisrepd_restarts_total counter",
            "# TYPE redisrepd_syncs_total counter",
            "# TYPE redisrepd_stops_total counter",
            "# TYPE redisrepd_gate_waiting gauge",
            "# TYPE redisrepd_server_info gauge",
            "# TYPE redisrepd_tls_cert_expiry_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want}\n{text}");
        }
        assert!(
            !text.contains("# EOF"),
            "OpenMetrics, not Prometheus text: {text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = snapshot();
        s.instances[1].server = Some(Server {
            name: "valkey".to_owned(),
            version: "8.1 \"rc\"\\x".to_owned(),
        });
        let text = encode(&s);
        assert!(text.contains(r#"version="8.1 \"rc\"\\x""#), "{text}");
    }

    #[test]
    fn an_empty_snapshot_encodes_to_descriptors_the_pause_and_zero_hook_runs_only() {
        assert_eq!(
            samples(&encode(&Snapshot::default())),
            [
                r#"redisrepd_hook_runs_total{result="failed"} 0"#,
                r#"redisrepd_hook_runs_total{result="ok"} 0"#,
                r#"redisrepd_hook_runs_total{result="timeout"} 0"#,
                "redisrepd_pause_remaining_seconds 0",
                "redisrepd_paused 0",
            ]
        );
    }

    fn req(line: &str) -> Request {
        redisrepd_core::http::parse_head(format!("{line}\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn respond_routes_and_reports_a_silent_supervisor() {
        let get = |line: &str, snap: Option<Snapshot>| respond(&req(line), move || snap);
        let ok = get("GET /metrics HTTP/1.1", Some(snapshot()));
        assert_eq!(ok.status, "200 OK");
        assert_eq!(ok.content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(ok.body.contains("redisrepd_instance_up"));
        assert_eq!(
            get("GET /metrics?x=1 HTTP/1.0", Some(snapshot())).status,
            "200 OK"
        );
        assert_eq!(
            get("GET / HTTP/1.1", Some(snapshot())).status,
            "404 Not Found"
        );
        assert_eq!(
            get("GET /metricsx HTTP/1.1", Some(snapshot())).status,
            "404 Not Found"
        );
        assert_eq!(
            get("POST /metrics HTTP/1.1", Some(snapshot())).status,
            "405 Method Not Allowed"
        );
        assert_eq!(
            get("GET /metrics HTTP/1.1", None).status,
            "503 Service Unavailable"
        );
        let head = get("HEAD /metrics HTTP/1.1", Some(snapshot()));
        let bytes = String::from_utf8(head.to_bytes()).unwrap();
        assert!(bytes.ends_with("\r\n\r\n"), "{bytes}");
        assert!(bytes.contains(&format!("Content-Length: {}", head.body.len())));
    }
}
