//! What `status` shows: one record per instance, the table, the JSON and the exit status.
//! Building records is pure; the client and daemon fill in what they know.

use serde::{Deserialize, Serialize};

use crate::config::{Group, Instance};
use crate::info::Info;
use crate::server::Server;

/// One instance as `status --json` lists it (`spec/cli.md`).
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

/// The lines under the table: each host's endpoint and whether it listens.
pub fn endpoints_table(list: &[HttpEndpoint]) -> String {
    let mut out = String::new();
    for e in list {
        let state = match &e.error {
            None => "listening".to_owned(),
            Some(why) => why.clone(),
        };
        out.push_str(&format!(
            "http endpoint of host {}: http://{} ({state})\n",
            e.host, e.address
        ));
    }
    out
}

/// An instance's state as `status` names it (spec/cli.md).
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

/// The width the default table fits in.
pub const NARROW_WIDTH: usize = 100;

/// Spaces between two columns of the default table.
const GAP: usize = 2;

/// The file's role: `master` or `replica of UPSTREAM`.
fn configured_role(s: &InstanceStatus) -> String {
    match &s.replica_of {
        Some(up) => format!("replica of {up}"),
        None => "master".to_owned(),
    }
}

/// What it runs as, by its INFO: `master`, `replica of UPSTREAM` (`replica` when the
/// upstream is no instance of the file); `None` when it does not answer.
fn actual_role(s: &InstanceStatus) -> Option<String> {
    match (&s.role, &s.upstream) {
        (Some(role), Some(up)) if role == "replica" => Some(format!("replica of {up}")),
        (Some(role), _) => Some(role.clone()),
        (None, _) => None,
    }
}

/// The default table's role: the actual one, `*` when it differs from the file's (a
/// failover, a promotion), the file's in parentheses when the instance does not answer.
/// The second value says whether it differs.
fn role_cell(s: &InstanceStatus) -> (String, bool) {
    let configured = configured_role(s);
    match actual_role(s) {
        None => (format!("({configured})"), false),
        // A replica of an upstream the file does not name: the same role, as far as the
        // file goes.
        Some(actual) if actual == configured || (actual == "replica" && s.replica_of.is_some()) => {
            (actual, false)
        }
        Some(actual) => (format!("{actual}*"), true),
    }
}

/// The default table's note: the instance's last error, then warnings, then how its last
/// sync went (`full sync, in sync 1.0s after start` says what it is without a label).
fn note(s: &InstanceStatus) -> String {
    let mut note: Vec<String> = Vec::new();
    note.extend(s.last_error.iter().cloned());
    note.extend(s.warnings.iter().cloned());
    note.extend(s.last_sync.iter().cloned());
    note.join("; ")
}

/// `text` cut to `width` characters, the last one `…` when anything was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// Column widths that fit `max`: the natural ones when they do; else the note (the last
/// column) gives way down to `note_min`, then the widest of `shrinkable` (column, least
/// width) one character at a time, then the note down to its header.
fn fit(
    natural: &[usize],
    max: usize,
    note_min: usize,
    shrinkable: &[(usize, usize)],
) -> Vec<usize> {
    let mut w = natural.to_vec();
    let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
    let last = w.len() - 1;
    let others = total(&w) - w[last];
    if total(&w) > max {
        w[last] = max.saturating_sub(others).max(note_min.min(natural[last]));
    }
    while total(&w) > max {
        let Some(&(col, _)) = shrinkable
            .iter()
            .filter(|(c, least)| w[*c] > *least)
            .max_by_key(|(c, _)| w[*c])
        else {
            break;
        };
        w[col] -= 1;
    }
    if total(&w) > max {
        let over = total(&w) - max;
        w[last] = w[last].saturating_sub(over).max("NOTE".len());
    }
    w
}

/// The default table, at most [`NARROW_WIDTH`] columns wide: name, host, role (actual),
/// state, pid, a replica's lag or a master's offset, and the note, cut with `…`
/// ([`wide_table`] has every column and the whole note).
pub fn table(list: &[InstanceStatus]) -> String {
    let header = ["NAME", "HOST", "ROLE", "STATE", "PID", "LAG/OFFSET", "NOTE"];
    let mut differs = false;
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|s| {
            let (role, d) = role_cell(s);
            differs |= d;
            let position = match (s.role.as_deref(), s.lag_bytes, s.repl_offset) {
                (Some("replica"), Some(lag), _) => format!("lag {lag}"),
                (Some("master"), _, Some(offset)) => format!("offset {offset}"),
                _ => "-".to_owned(),
            };
            [
                s.name.clone(),
                s.host.clone(),
                role,
                s.state.as_str().to_owned(),
                s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                position,
                note(s),
            ]
        })
        .collect();
    let natural: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let widths = fit(&natural, NARROW_WIDTH, 24, &[(0, 12), (1, 8), (2, 14)]);
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{:<w$}", cut(cell, *w)))
            .collect();
        let mut l = padded.join(&" ".repeat(GAP)).trim_end().to_owned();
        l.push('\n');
        l
    };
    let mut out = line(&header.map(str::to_owned));
    for r in &rows {
        out.push_str(&line(r));
    }
    if differs {
        out.push_str("* not the role the file gives it (`status --wide` shows both)\n");
    }
    out
}

/// The table of `status --wide`: every column, and the whole note.
pub fn wide_table(list: &[InstanceStatus]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header([
        "NAME", "HOST", "ADDRESS", "ROLE", "ACTUAL", "STATE", "SERVER", "PID", "UPTIME",
        "RESTARTS", "LINK", "OFFSET", "LAG", "NOTE",
    ]);
    let dash = || "-".to_owned();
    for s in list {
        let role = match &s.replica_of {
            Some(up) => format!("replica of {up}"),
            None => "master".to_owned(),
        };
        let mut note: Vec<String> = Vec::new();
        if let Some(e) = &s.last_error {
            note.push(e.clone());
        }
        if let Some(sync) = &s.last_sync {
            note.push(format!("last sync: {sync}"));
        }
        note.extend(s.warnings.iter().cloned());
        t.add_row([
            s.name.clone(),
            s.host.clone(),
            format!("{}:{}", s.bind, s.port),
            role,
            match (&s.role, &s.upstream) {
                (Some(role), Some(up)) if role == "replica" => format!("replica of {up}"),
                (Some(role), _) => role.clone(),
                (None, _) => dash(),
            },
            s.state.as_str().to_owned(),
            s.server.clone().unwrap_or_else(dash),
            s.pid.map_or_else(dash, |p| p.to_string()),
            s.uptime_s.map_or_else(dash, |u| format!("{u}s")),
            s.restarts.to_string(),
            s.master_link_status.clone().unwrap_or_else(dash),
            s.repl_offset.map_or_else(dash, |o| o.to_string()),
            s.lag_bytes.map_or_else(dash, |l| l.to_string()),
            note.join("; "),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn group() -> Group {
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
    fn each_hosts_endpoint_is_a_line_with_its_state() {
        let list = [
            HttpEndpoint {
                host: "a".into(),
                address: "127.0.0.1:9765".into(),
                error: None,
            },
            HttpEndpoint {
                host: "b".into(),
                address: "127.0.0.2:9765".into(),
                error: Some("cannot listen on 127.0.0.2:9765: Address in use".into()),
            },
        ];
        assert_eq!(
            endpoints_table(&list),
            "http endpoint of host a: http://127.0.0.1:9765 (listening)\n\
             http endpoint of host b: http://127.0.0.2:9765 (cannot listen on 127.0.0.2:9765: \
             Address in use)\n"
        );
        assert_eq!(endpoints_table(&[]), "");
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
    fn table_lists_every_instance() {
        let g = group();
        let list: Vec<_> = g
            .instances
            .iter()
            .map(InstanceStatus::from_config)
            .collect();
        let t = wide_table(&list);
        assert!(
            t.contains("replica of m") && t.contains("127.0.0.1:2"),
            "{t}"
        );
        let t = table(&list);
        assert!(
            t.contains("(replica of m)") && t.contains("unreachable"),
            "{t}"
        );
    }

    /// A record as a daemon fills it in, with a long name and a long note.
    fn long(g: &Group, at: usize, name: &str, note_len: usize) -> InstanceStatus {
        let mut s = InstanceStatus::from_config(&g.instances[at]);
        s.name = name.to_owned();
        s.host = "a-host-with-a-rather-long-name.example.org".to_owned();
        s.state = StateLabel::Running;
        s.pid = Some(4_194_304);
        s.last_error = Some("x".repeat(note_len));
        s.warnings
            .push("mixed servers in the group: redis 7.0.15 (m), valkey 8.1.8 (r)".into());
        s.last_sync = Some("full sync, in sync 1.1s after start".into());
        s
    }

    #[test]
    fn the_default_table_fits_100_columns_and_cuts_long_notes() {
        let g = group();
        let mut m = long(&g, 0, &"m".repeat(60), 300);
        let mut r = long(&g, 1, "r", 10);
        m.role = Some("master".into());
        m.repl_offset = Some(123_456_789_012);
        r.role = Some("replica".into());
        r.upstream = Some("m".into());
        r.lag_bytes = Some(1_048_576);
        let t = table(&[m.clone(), r.clone()]);
        for line in t.lines() {
            assert!(
                line.chars().count() <= NARROW_WIDTH,
                "{} columns: {line}\n{t}",
                line.chars().count()
            );
        }
        assert!(
            t.lines().any(|l| l.ends_with('…')),
            "a cut note ends with …:\n{t}"
        );
        assert!(
            t.contains("offset 123456789012") && t.contains("lag 1048576"),
            "{t}"
        );
        assert!(t.contains("4194304"), "{t}");
        // The wide form keeps every column and the whole note.
        let wide = wide_table(&[m.clone(), r.clone()]);
        assert!(
            wide.contains(&"x".repeat(300)) && wide.contains("UPTIME"),
            "{wide}"
        );
        // Short records: nothing cut.
        m.name = "m".into();
        m.host = "a".into();
        m.last_error = None;
        m.warnings.clear();
        m.pid = Some(4242);
        m.repl_offset = Some(0);
        let t = table(&[m]);
        assert!(!t.contains('…'), "{t}");
        assert!(t.contains("  full sync, in sync 1.1s after start"), "{t}");
    }

    #[test]
    fn a_role_other_than_the_files_is_marked() {
        let g = group();
        let mut m = InstanceStatus::from_config(&g.instances[0]);
        let mut r = InstanceStatus::from_config(&g.instances[1]);
        m.role = Some("master".into());
        r.role = Some("replica".into());
        r.upstream = Some("m".into());
        let t = table(&[m.clone(), r.clone()]);
        assert!(!t.contains('*'), "{t}");
        // After a failover to r: both differ from the file.
        m.role = Some("replica".into());
        m.upstream = Some("r".into());
        r.role = Some("master".into());
        r.upstream = None;
        let t = table(&[m, r]);
        assert!(t.contains("replica of r*") && t.contains("master*"), "{t}");
        assert!(t.contains("* not the role the file gives it"), "{t}");
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

/// One sentinel node as `status` shows it (Sentinel mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentinelStatus {
    pub name: String,
    pub host: String,
    pub address: String,
    /// It answered.
    pub reachable: bool,
    /// The instance it names as master (its address when that is no instance).
    pub master: Option<String>,
    /// The configuration epoch of the master it monitors.
    pub config_epoch: Option<u64>,
    /// Replicas and other sentinels it knows.
    pub replicas: Option<u32>,
    pub other_sentinels: Option<u32>,
    pub error: Option<String>,
}

/// What the sentinels say together: how many answer, what most of them name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentinelSummary {
    pub quorum: u32,
    pub reachable: usize,
    pub master: Option<String>,
    /// How many name `master`.
    pub agree: usize,
    pub nodes: Vec<SentinelStatus>,
}

impl SentinelSummary {
    /// Sums the nodes up.
    pub fn of(quorum: u32, nodes: Vec<SentinelStatus>) -> SentinelSummary {
        let reachable = nodes.iter().filter(|n| n.reachable).count();
        let mut counts: Vec<(String, usize)> = Vec::new();
        for m in nodes.iter().filter_map(|n| n.master.clone()) {
            match counts.iter_mut().find(|(k, _)| *k == m) {
                Some((_, c)) => *c += 1,
                None => counts.push((m, 1)),
            }
        }
        let best = counts.iter().max_by_key(|(_, c)| *c).cloned();
        SentinelSummary {
            quorum,
            reachable,
            agree: best.as_ref().map_or(0, |(_, c)| *c),
            master: best.map(|(m, _)| m),
            nodes,
        }
    }

    /// Fewer than `quorum` sentinels answer: no failover could be authorised.
    pub fn degraded(&self) -> bool {
        self.reachable < self.quorum as usize
    }

    /// The sentinels' lines of the human table.
    pub fn table(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING);
        t.set_header([
            "SENTINEL",
            "HOST",
            "ADDRESS",
            "STATE",
            "NAMES MASTER",
            "EPOCH",
            "KNOWS",
        ]);
        let dash = || "-".to_owned();
        for n in &self.nodes {
            t.add_row([
                n.name.clone(),
                n.host.clone(),
                n.address.clone(),
                if n.reachable {
                    "running".to_owned()
                } else {
                    format!("unreachable: {}", n.error.clone().unwrap_or_default())
                },
                n.master.clone().unwrap_or_else(dash),
                n.config_epoch.map_or_else(dash, |e| e.to_string()),
                match (n.replicas, n.other_sentinels) {
                    (Some(r), Some(s)) => format!("{r} replicas, {s} sentinels"),
                    _ => dash(),
                },
            ]);
        }
        let mut out = format!("{t}\n");
        out.push_str(&format!(
            "sentinels: {}/{} answer (quorum {}); {} name {}\n",
            self.reachable,
            self.nodes.len(),
            self.quorum,
            self.agree,
            self.master.as_deref().unwrap_or("no master"),
        ));
        if self.degraded() {
            out.push_str(
                "warning: fewer sentinels answer than the quorum: no failover can happen\n",
            );
        }
        out
    }
}

#[cfg(test)]
mod sentinel_tests {
    use super::*;

    fn node(name: &str, master: Option<&str>) -> SentinelStatus {
        SentinelStatus {
            name: name.into(),
            host: "h".into(),
            address: "127.0.0.1:1".into(),
            reachable: master.is_some(),
            master: master.map(str::to_owned),
            config_epoch: Some(1),
            replicas: Some(2),
            other_sentinels: Some(2),
            error: master.is_none().then(|| "connection refused".to_owned()),
        }
    }

    #[test]
    fn the_summary_counts_who_answers_and_what_most_name() {
        let s = SentinelSummary::of(
            2,
            vec![
                node("s1", Some("r1")),
                node("s2", Some("r1")),
                node("s3", None),
            ],
        );
        assert_eq!((s.reachable, s.agree), (2, 2));
        assert_eq!(s.master.as_deref(), Some("r1"));
        assert!(!s.degraded());
        assert!(
            s.table().contains("2/3 answer (quorum 2); 2 name r1"),
            "{}",
            s.table()
        );
        let s = SentinelSummary::of(
            2,
            vec![node("s1", Some("m")), node("s2", None), node("s3", None)],
        );
        assert!(s.degraded());
        assert!(s.table().contains("fewer sentinels answer than the quorum"));
    }
}
