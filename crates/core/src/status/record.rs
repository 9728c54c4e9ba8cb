//! One record per instance, its state label, and what the records say about the group
//! (its actual master, a replication loop, mixed servers, the exit status).

use serde::{Deserialize, Serialize};

use crate::config::{Group, Instance};
use crate::info::Info;
use crate::server::Server;

/// One instance as `status --json` lists it (`docs/reference/cli.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub host: String,
    pub bind: String,
    pub port: u16,
    pub configured_role: String,
    pub role: Option<String>,
    pub state: StateLabel,
    pub pid: Option<u32>,
    pub uptime_s: Option<i64>,
    pub restarts: u32,
    pub replica_of: Option<String>,
    pub master_link_status: Option<String>,
    pub repl_offset: Option<i64>,
    pub lag_bytes: Option<i64>,
    pub last_error: Option<String>,
    /// How the last (re)start of a replica caught up: sync type and time.
    #[serde(default)]
    pub last_sync: Option<String>,
    /// Times a replica took longer than `sync_timeout` to come in sync.
    #[serde(default)]
    pub sync_timeouts: u32,
    /// Times a replica admitted as a sure partial resync needed a full sync after all.
    #[serde(default)]
    pub sync_mispredictions: u64,
    /// Advice about this instance (for example a replication backlog that is too small),
    /// and conditions to act on: a master refusing writes, an instance not answering.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The configured `min_replicas_to_write` (a master refuses writes below it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas_to_write: Option<u32>,
    /// The server it runs, from its INFO (`"redis 7.0.15"`, `"valkey 8.1.8"`), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The instance it actually replicates from, by name (its INFO's `master_host` and
    /// `master_port`); `None` for a master or when unknown.
    #[serde(default)]
    pub upstream: Option<String>,
}

/// One host's HTTP endpoint (`[http] listen`) as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpEndpoint {
    pub host: String,
    /// `ADDR:PORT`.
    pub address: String,
    /// Why it does not listen (e.g. the address is in use), or that it was not asked (no
    /// daemon for that host here); `None` when its daemon says it listens.
    pub error: Option<String>,
}

/// An instance's state as `status` names it (docs/reference/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateLabel {
    Running,
    Starting,
    Syncing,
    Stopping,
    Stopped,
    Backoff,
    Failed,
    /// Not local and not answering INFO.
    Unreachable,
}

impl StateLabel {
    /// The name in the table and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StateLabel::Running => "running",
            StateLabel::Starting => "starting",
            StateLabel::Syncing => "syncing",
            StateLabel::Stopping => "stopping",
            StateLabel::Stopped => "stopped",
            StateLabel::Backoff => "backoff",
            StateLabel::Failed => "failed",
            StateLabel::Unreachable => "unreachable",
        }
    }
}

impl InstanceStatus {
    /// A record with only what the TOML says; state `unreachable` until filled in.
    pub fn from_config(inst: &Instance) -> Self {
        InstanceStatus {
            name: inst.name.clone(),
            host: inst.host.clone(),
            bind: inst.bind.to_string(),
            port: inst.port,
            configured_role: if inst.is_master() {
                "master"
            } else {
                "replica"
            }
            .to_owned(),
            role: None,
            state: StateLabel::Unreachable,
            pid: None,
            uptime_s: None,
            restarts: 0,
            replica_of: inst.replica_of.clone(),
            master_link_status: None,
            repl_offset: None,
            lag_bytes: None,
            last_error: None,
            last_sync: None,
            sync_timeouts: 0,
            sync_mispredictions: 0,
            warnings: Vec::new(),
            min_replicas_to_write: inst.min_replicas_to_write.filter(|n| *n > 0),
            server: None,
            upstream: None,
        }
    }

    /// Fills in what Redis reports: server, role, link, offset, uptime; lag from the
    /// upstream.
    pub fn apply_info(&mut self, info: &Info, upstream: Option<&Info>) {
        self.server = Server::from_info(info).map(|s| s.to_string());
        self.role = info.role().map(str::to_owned);
        self.master_link_status = info
            .master_link_up()
            .map(|up| if up { "up" } else { "down" }.to_owned());
        self.repl_offset = info.repl_offset();
        self.uptime_s = info.uptime_s();
        if self.role.as_deref() == Some("replica")
            && let (Some(mine), Some(theirs)) =
                (info.repl_offset(), upstream.and_then(Info::repl_offset))
        {
            self.lag_bytes = Some((theirs - mine).max(0));
        }
        if let Some(w) = write_refusal(info, self.min_replicas_to_write) {
            self.warnings.push(w);
        }
    }

    /// Notes that a running instance did not answer its last INFO probe (frozen, stopped
    /// by a signal, or overloaded): what it reports is then missing from the record.
    pub fn note_unanswered(&mut self, error: &str) {
        self.warnings.push(format!("not answering INFO: {error}"));
    }

    /// True when running and, for what runs as a replica now (whatever the file says),
    /// linked to its upstream and in sync.
    pub fn healthy(&self) -> bool {
        let replica = match &self.role {
            Some(role) => role == "replica",
            None => self.configured_role == "replica",
        };
        self.state == StateLabel::Running
            && (!replica || self.master_link_status.as_deref() == Some("up"))
    }
}

/// A warning when `inst`'s replication backlog covers less than a minute of its current
/// write rate (`bytes_per_s`): a replica away longer than that needs a full sync.
pub fn backlog_warning(group: &Group, inst: &Instance, rate: Option<(i64, f64)>) -> Option<String> {
    let (backlog, bytes_per_s) = rate?;
    if group.replicas_of(&inst.name).next().is_none() || bytes_per_s <= 0.0 {
        return None;
    }
    let covered_s = backlog as f64 / bytes_per_s;
    if covered_s >= 60.0 {
        return None;
    }
    let wanted = (bytes_per_s * 60.0).ceil() as u64;
    Some(format!(
        "the replication backlog ({backlog} bytes) covers {covered_s:.0}s of writes at \
         {bytes_per_s:.0} B/s: a replica away longer needs a full sync; set \
         `repl-backlog-size` to at least {}mb in [redis]",
        wanted.div_ceil(1 << 20)
    ))
}

/// Why a master refuses every write, when it does: fewer good replicas (online, lag within
/// `min_replicas_max_lag`) than its `min_replicas_to_write`.
pub fn write_refusal(info: &Info, min_replicas_to_write: Option<u32>) -> Option<String> {
    let min = min_replicas_to_write?;
    let good = info.good_replicas()?;
    (good < i64::from(min)).then(|| {
        format!(
            "refusing writes: {good} good replicas, min_replicas_to_write = {min} (a replica \
             is down, or lags more than min_replicas_max_lag)"
        )
    })
}

/// The instance of `group` that `info` (a replica's) replicates from, by the address its
/// INFO names.
pub fn upstream_name(group: &Group, info: &Info) -> Option<String> {
    crate::topology::upstream_of(group, info).map(|i| i.name.clone())
}

/// The group's actual master, as the instances say: the one reporting role master that the
/// most others replicate from (the configured master on a tie); `None` when none answers.
pub fn actual_master(list: &[InstanceStatus]) -> Option<String> {
    let mut masters: Vec<&InstanceStatus> = list
        .iter()
        .filter(|s| s.role.as_deref() == Some("master"))
        .collect();
    let followers = |name: &str| {
        list.iter()
            .filter(|s| s.upstream.as_deref() == Some(name))
            .count()
    };
    masters.sort_by_key(|m| {
        (
            std::cmp::Reverse(followers(&m.name)),
            m.configured_role != "master",
        )
    });
    masters.first().map(|m| m.name.clone())
}

/// What is wrong with the group's replication as a whole, if anything: instances that
/// replicate from each other in a loop, or every instance answering and none master.
/// Either way nobody takes writes; the daemons repair it (the most advanced becomes master)
/// if it lasts.
pub fn replication_problem(list: &[InstanceStatus]) -> Option<String> {
    let up = |name: &str| {
        list.iter()
            .find(|s| s.name == name && s.role.as_deref() == Some("replica"))
            .and_then(|s| s.upstream.as_deref())
    };
    for s in list {
        let mut path = vec![s.name.as_str()];
        let mut at = s.name.as_str();
        while let Some(next) = up(at) {
            if let Some(i) = path.iter().position(|p| *p == next) {
                let mut cycle = path[i..].to_vec();
                cycle.push(next);
                return Some(format!(
                    "replication loop: {} (no master takes writes)",
                    cycle.join(" -> ")
                ));
            }
            path.push(next);
            at = next;
        }
    }
    let all_replicas =
        !list.is_empty() && list.iter().all(|s| s.role.as_deref() == Some("replica"));
    all_replicas.then(|| "no master: every instance answers as a replica".to_owned())
}

/// During a rolling upgrade (or after one that stopped half way) the group runs several
/// servers or versions: one warning naming them, added to every instance that reports one
/// (it is a fact about the group, so it shows whichever instances are listed). Returns it.
pub fn warn_mixed_servers(list: &mut [InstanceStatus]) -> Option<String> {
    let mut seen: Vec<(String, Vec<String>)> = Vec::new();
    for s in list.iter() {
        let Some(server) = &s.server else { continue };
        match seen.iter_mut().find(|(v, _)| v == server) {
            Some((_, names)) => names.push(s.name.clone()),
            None => seen.push((server.clone(), vec![s.name.clone()])),
        }
    }
    if seen.len() < 2 {
        return None;
    }
    let parts: Vec<String> = seen
        .iter()
        .map(|(v, names)| format!("{v} ({})", names.join(", ")))
        .collect();
    let warning = format!(
        "mixed servers in the group: {}; finish the upgrade (set one `redis_server`, then \
         `reload`)",
        parts.join(", ")
    );
    for s in list.iter_mut().filter(|s| s.server.is_some()) {
        s.warnings.push(warning.clone());
    }
    Some(warning)
}

/// The exit status of `status`: 0 when every listed instance is healthy, 3 otherwise.
pub fn exit_code(list: &[InstanceStatus]) -> u8 {
    if list.iter().all(InstanceStatus::healthy) {
        crate::EXIT_OK
    } else {
        crate::EXIT_DEGRADED
    }
}
#[cfg(test)]
pub(in crate::status) mod tests {
    use super::*;
    use crate::status::tables::wide_table;
    use std::path::Path;

    pub(in crate::status) fn group() -> Group {
        crate::config::parse(
            "[cluster]\nname=\"t\"\npassword=\"p\"\n[[instance]]\nname=\"m\"\nhost=\"a\"\n\
             bind=\"127.0.0.1\"\nport=1\n[[instance]]\nname=\"r\"\nhost=\"a\"\nbind=\"127.0.0.1\"\n\
             port=2\nreplica_of=\"m\"\n",
            Path::new("/t.toml"),
            Path::new("/"),
        )
        .unwrap()
        .group
    }

    #[test]
    fn exit_code_needs_every_replica_linked() {
        let g = group();
        let mut m = InstanceStatus::from_config(&g.instances[0]);
        let mut r = InstanceStatus::from_config(&g.instances[1]);
        m.state = StateLabel::Running;
        r.state = StateLabel::Running;
        assert_eq!(exit_code(&[m.clone(), r.clone()]), crate::EXIT_DEGRADED);
        r.apply_info(
            &Info::parse("role:slave\nmaster_link_status:up\nmaster_repl_offset:5\n"),
            Some(&Info::parse("master_repl_offset:9\n")),
        );
        assert_eq!(r.lag_bytes, Some(4));
        assert_eq!(exit_code(&[m, r]), crate::EXIT_OK);
    }

    #[test]
    fn a_replication_loop_or_no_master_is_a_problem() {
        let g = group();
        let mut m = InstanceStatus::from_config(&g.instances[0]);
        let mut r = InstanceStatus::from_config(&g.instances[1]);
        m.role = Some("master".into());
        r.role = Some("replica".into());
        r.upstream = Some("m".into());
        assert_eq!(replication_problem(&[m.clone(), r.clone()]), None);
        m.role = Some("replica".into());
        m.upstream = Some("r".into());
        assert_eq!(
            replication_problem(&[m.clone(), r.clone()]).as_deref(),
            Some("replication loop: m -> r -> m (no master takes writes)")
        );
        m.upstream = None;
        assert!(
            replication_problem(&[m.clone(), r.clone()])
                .is_some_and(|p| p.starts_with("no master"))
        );
        // An instance that does not answer: no verdict on the group from here.
        m.role = None;
        assert_eq!(replication_problem(&[m, r]), None);
    }

    #[test]
    fn backlog_warning_names_the_size_that_would_do() {
        let g = group();
        let w = backlog_warning(&g, &g.instances[0], Some((1 << 20, 100_000.0))).unwrap();
        assert!(w.contains("repl-backlog-size") && w.contains("6mb"), "{w}");
        assert!(backlog_warning(&g, &g.instances[0], Some((1 << 30, 100_000.0))).is_none());
        assert!(
            backlog_warning(&g, &g.instances[1], Some((1, 100_000.0))).is_none(),
            "no replicas"
        );
    }

    #[test]
    fn a_master_short_of_good_replicas_says_it_refuses_writes() {
        let mut g = group();
        g.instances[0].min_replicas_to_write = Some(1);
        let mut m = InstanceStatus::from_config(&g.instances[0]);
        m.apply_info(
            &Info::parse("role:master\nmin_slaves_good_slaves:1\n"),
            None,
        );
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        m.apply_info(
            &Info::parse("role:master\nmin_slaves_good_slaves:0\n"),
            None,
        );
        assert_eq!(m.warnings.len(), 1);
        assert!(
            m.warnings[0]
                .starts_with("refusing writes: 0 good replicas, min_replicas_to_write = 1"),
            "{:?}",
            m.warnings
        );
        // Without the setting Redis does not report the count, and nothing is refused.
        let mut plain = InstanceStatus::from_config(&group().instances[0]);
        plain.apply_info(
            &Info::parse("role:master\nmin_slaves_good_slaves:0\n"),
            None,
        );
        assert!(plain.warnings.is_empty());
    }

    #[test]
    fn server_comes_from_info_and_mixed_versions_warn() {
        let g = group();
        let mut m = InstanceStatus::from_config(&g.instances[0]);
        let mut r = InstanceStatus::from_config(&g.instances[1]);
        m.apply_info(&Info::parse("redis_version:7.0.15\nrole:master\n"), None);
        r.apply_info(
            &Info::parse("redis_version:7.2.4\nserver_name:valkey\nvalkey_version:8.1.8\n"),
            None,
        );
        assert_eq!(m.server.as_deref(), Some("redis 7.0.15"));
        assert_eq!(r.server.as_deref(), Some("valkey 8.1.8"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["server"], "valkey 8.1.8");
        let mut same = vec![m.clone(), m.clone()];
        assert_eq!(warn_mixed_servers(&mut same), None);
        let mut list = vec![m, r];
        let w = warn_mixed_servers(&mut list).unwrap();
        assert!(
            w.contains("redis 7.0.15 (m)") && w.contains("valkey 8.1.8 (r)"),
            "{w}"
        );
        assert!(list.iter().all(|s| s.warnings.contains(&w)));
        assert!(wide_table(&list).contains("valkey 8.1.8"));
        let down = InstanceStatus::from_config(&g.instances[0]);
        assert!(serde_json::to_value(&down).unwrap().get("server").is_none());
    }

    #[test]
    fn upstream_is_named_by_the_address_a_replica_reports() {
        let g = group();
        let replica = Info::parse("role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:1\r\n");
        assert_eq!(upstream_name(&g, &replica).as_deref(), Some("m"));
        let elsewhere = Info::parse("role:slave\r\nmaster_host:10.0.0.9\r\nmaster_port:1\r\n");
        assert_eq!(upstream_name(&g, &elsewhere), None);
        assert_eq!(upstream_name(&g, &Info::parse("role:master\r\n")), None);
    }

    #[test]
    fn the_actual_master_is_the_one_the_others_follow() {
        let g = group();
        let mut m = InstanceStatus::from_config(g.instance("m").unwrap());
        let mut r = InstanceStatus::from_config(g.instance("r").unwrap());
        assert_eq!(actual_master(&[m.clone(), r.clone()]), None, "none answers");
        m.role = Some("master".into());
        r.role = Some("replica".into());
        r.upstream = Some("m".into());
        assert_eq!(actual_master(&[m.clone(), r.clone()]).as_deref(), Some("m"));
        // After a switchover: r is master, m follows it.
        m.role = Some("replica".into());
        m.upstream = Some("r".into());
        r.role = Some("master".into());
        r.upstream = None;
        assert_eq!(actual_master(&[m, r]).as_deref(), Some("r"));
    }
}
