//! The verbs that drive daemons through their control sockets: start, stop, restart,
//! status, reload, history. Each instance names its host, and each host's daemon listens on
//! `run_dir/<host>.sock`, so the client knows whom to ask.

use redisrepd_io::redis_io::Client as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::{ForceTargets, Targets};
use redisrepd_core::config::Group;
use redisrepd_core::control::{Request, Response};
use redisrepd_core::info::Info;
use redisrepd_core::status::{self, InstanceStatus};
use redisrepd_io::redis_io::Endpoint;

/// Which verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

/// start / stop / restart: one request per host, the master's host last (a master goes
/// after its replicas).
pub fn act(config: &Path, action: Action, targets: &ForceTargets) -> Result<u8> {
    let group = super::load_for_client(config)?.group;
    let by_host = group_by_host(&group, &targets.targets)?;
    let mut hosts: Vec<&String> = by_host.keys().collect();
    let master_host = group.master().host.clone();
    hosts.sort_by_key(|h| **h == master_host);
    if action == Action::Start {
        hosts.reverse(); // masters first
    }
    let mut ok = true;
    for host in hosts {
        let names = by_host[host].clone();
        let request = match action {
            Action::Start => Request::Start { instances: names },
            Action::Stop => Request::Stop {
                instances: names,
                force: targets.force,
            },
            Action::Restart => Request::Restart {
                instances: names,
                force: targets.force,
            },
        };
        ok &= done(host, ask(&group, host, &request)?)? == crate::EXIT_OK;
        if !ok {
            break;
        }
    }
    Ok(if ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_FAILED
    })
}

/// Instance names grouped by the host that runs them; `--all` means every host with a
/// daemon socket in run_dir.
fn group_by_host(group: &Group, targets: &Targets) -> Result<BTreeMap<String, Vec<String>>> {
    let mut by_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if targets.all {
        for host in group.hosts() {
            if group.socket_path(host).exists() {
                by_host.insert(host.to_owned(), Vec::new());
            }
        }
        if by_host.is_empty() {
            bail!(
                "no daemon of this group runs here: no socket in {}",
                group.cluster.run_dir.display()
            );
        }
        return Ok(by_host);
    }
    for name in &targets.instances {
        // An instance, or a sentinel node (start, stop, restart it like one).
        let host = match (group.instance(name), group.sentinel_node(name)) {
            (Some(inst), _) => inst.host.clone(),
            (None, Some(node)) => node.host.clone(),
            (None, None) => return Err(super::no_instance(group, name, true)),
        };
        by_host.entry(host).or_default().push(name.clone());
    }
    Ok(by_host)
}

/// Sends one request to the daemon of `host`.
pub(crate) fn ask(group: &Group, host: &str, request: &Request) -> Result<Response> {
    let socket = group.socket_path(host);
    if !socket.exists() {
        bail!(
            "no daemon for host `{host}` here: {} does not exist (start it with `redisrepd daemon --host {host}`, or run this on that host)",
            socket.display()
        );
    }
    redisrepd_io::control_socket::call(&socket, request).map_err(|e| {
        anyhow::anyhow!(
            "cannot talk to the daemon for host `{host}` at {}: {e}",
            socket.display()
        )
    })
}

/// `status`: daemons for the hosts that have a socket here, INFO straight from Redis for
/// the rest.
pub fn status(config: &Path, only: &[String], json: bool, wide: bool) -> Result<u8> {
    let group = super::load_for_client(config)?.group;
    if let Some(name) = only.iter().find(|n| group.instance(n).is_none()) {
        return Err(super::no_instance(&group, name, false));
    }
    let mut from_daemons: BTreeMap<String, InstanceStatus> = BTreeMap::new();
    let mut paused: Vec<(String, Duration)> = Vec::new();
    let mut endpoints: Vec<status::HttpEndpoint> = Vec::new();
    // The certificate files each answering daemon uses (`[tls]`).
    let mut certs: Vec<(String, redisrepd_core::tls::CertExpiry)> = Vec::new();
    // The hosts whose daemon did not answer here, and why.
    let mut silent: Vec<(String, DaemonAbsent)> = Vec::new();
    for host in group.hosts() {
        let configured = group.http.address(host).map(|a| status::HttpEndpoint {
            host: host.to_owned(),
            address: a.to_string(),
            error: Some("no daemon for this host here: not checked".to_owned()),
        });
        if !group.socket_path(host).exists() {
            silent.push((host.to_owned(), DaemonAbsent::NoSocket));
            endpoints.extend(configured);
            continue;
        }
        match ask(&group, host, &Request::Status) {
            Ok(Response::Status {
                instances,
                paused_for_ms,
                http,
                tls_cert_expiry,
                ..
            }) => {
                certs.extend(tls_cert_expiry.into_iter().map(|c| (host.to_owned(), c)));
                for s in instances {
                    from_daemons.insert(s.name.clone(), s);
                }
                if let Some(ms) = paused_for_ms {
                    paused.push((host.to_owned(), Duration::from_millis(ms)));
                }
                endpoints.extend(http);
            }
            Ok(_) => {}
            Err(e) => {
                silent.push((host.to_owned(), DaemonAbsent::NoAnswer(format!("{e:#}"))));
                endpoints.extend(configured);
            }
        }
    }
    for line in absent_daemons(&group, &redisrepd_io::host::hostname(), &silent) {
        eprintln!("redisrepd: {line}");
    }
    let timeout = Duration::from_secs(2);
    let mut infos: BTreeMap<String, Result<Info, String>> = BTreeMap::new();
    let mut info_of = |name: &str| -> Option<Info> {
        infos
            .entry(name.to_owned())
            .or_insert_with(|| {
                let inst = group.instance(name).ok_or_else(String::new)?;
                Endpoint::of(&group, inst).info(timeout)
            })
            .as_ref()
            .ok()
            .cloned()
    };
    let mut list = Vec::new();
    for inst in group.start_order_all() {
        if !only.is_empty() && !only.contains(&inst.name) {
            continue;
        }
        let record = match from_daemons.remove(&inst.name) {
            Some(s) => s,
            None => {
                let mut s = InstanceStatus::from_config(inst);
                match info_of(&inst.name) {
                    Some(info) => {
                        let upstream = inst.replica_of.as_deref().and_then(&mut info_of);
                        s.state = redisrepd_core::status::StateLabel::Running;
                        s.apply_info(&info, upstream.as_ref());
                        s.upstream = status::upstream_name(&group, &info);
                        s.last_error = Some(format!(
                            "no daemon for host `{}` here; read from Redis",
                            inst.host
                        ));
                    }
                    None => {
                        s.last_error = Some("does not answer".to_owned());
                    }
                }
                s
            }
        };
        list.push(record);
    }
    let backups = backup_status(&group);
    status::warn_mixed_servers(&mut list);
    let sentinels = sentinel_status(&group);
    let problem = status::replication_problem(&list);
    // The pause ends at the latest deadline any daemon holds.
    let paused_until = paused.iter().map(|(_, d)| *d).max().and_then(|d| {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(d).ok()?)
            .ok()
            .map(|t| t.round(jiff::Unit::Second).unwrap_or(t))
    });
    let now = jiff::Timestamp::now();
    if json {
        let mut doc = serde_json::json!({
            "cluster": group.cluster.name,
            "master": status::actual_master(&list),
            "problem": problem,
            "paused_until": paused_until.map(|t| t.to_string()),
            "paused_hosts": paused.iter().map(|(h, _)| h).collect::<Vec<_>>(),
            "instances": list,
            "endpoints": endpoints,
        });
        if let Some(s) = &sentinels {
            doc["sentinels"] = serde_json::to_value(s)?;
        }
        doc["backups"] = serde_json::to_value(&backups)?;
        doc["tls_cert_expiry"] = certs
            .iter()
            .map(|(host, c)| {
                serde_json::json!({
                    "host": host,
                    "file": c.file,
                    "not_after": c.not_after,
                    "seconds_left": c.seconds_left(now),
                    "error": c.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if wide {
            print!("{}", status::wide_table(&list));
        } else {
            print!("{}", status::table(&list));
        }
        if let Some(until) = paused_until {
            let hosts: Vec<&str> = paused.iter().map(|(h, _)| h.as_str()).collect();
            println!(
                "paused until {until} (hosts {}): nothing restarts, re-points or fails over by itself; `redisrepd resume` ends it",
                hosts.join(", ")
            );
        }
        if let Some(p) = &problem {
            println!("warning: {p}");
        }
        for (host, c) in &certs {
            if let Some(w) = c.warning(host, now) {
                println!("warning: {w}");
            }
        }
        for b in &backups {
            println!("{}", b.line());
        }
        print!("{}", status::endpoints_table(&endpoints));
        if let Some(s) = &sentinels {
            println!();
            print!("{}", s.table());
        }
    }
    let code = if problem.is_some() {
        crate::EXIT_DEGRADED
    } else {
        status::exit_code(&list)
    };
    if sentinels
        .as_ref()
        .is_some_and(status::SentinelSummary::degraded)
    {
        return Ok(crate::EXIT_DEGRADED);
    }
    Ok(code)
}

/// Why a host's daemon did not answer `status`.
#[derive(Debug, Clone, PartialEq)]
enum DaemonAbsent {
    /// No socket in run_dir: not running (here).
    NoSocket,
    /// A socket, but no answer: the error.
    NoAnswer(String),
}

/// What `status` says, before the table, about daemons that did not answer: in one line,
/// this machine's own (the host named as its hostname; or, when none is, every host, if
/// no daemon answered at all), whose instances are then read straight from Redis. Other
/// hosts' daemons run on other machines: no socket here is normal for them, but a socket
/// that does not answer is worth a line.
fn absent_daemons(group: &Group, me: &str, silent: &[(String, DaemonAbsent)]) -> Vec<String> {
    let hosts = group.hosts();
    let local: Vec<&(String, DaemonAbsent)> = if hosts.contains(&me) {
        silent.iter().filter(|(h, _)| h == me).collect()
    } else if silent.len() == hosts.len() {
        silent.iter().collect()
    } else {
        Vec::new()
    };
    let why = |host: &str, absent: &DaemonAbsent| match absent {
        DaemonAbsent::NoSocket => format!("no socket at {}", group.socket_path(host).display()),
        DaemonAbsent::NoAnswer(e) => e.clone(),
    };
    let read = "instances are read straight from Redis";
    let mut lines = match local.as_slice() {
        [] => Vec::new(),
        [(host, DaemonAbsent::NoSocket)] => vec![format!(
            "the daemon for host `{host}` is not running ({}; start it with `redisrepd daemon \
             --host {host}`): {read}",
            why(host, &DaemonAbsent::NoSocket)
        )],
        [(host, absent)] => vec![format!(
            "the daemon for host `{host}` does not answer ({}): {read}",
            why(host, absent)
        )],
        several => {
            let each: Vec<String> = several
                .iter()
                .map(|(h, a)| format!("host `{h}`: {}", why(h, a)))
                .collect();
            vec![format!(
                "no daemon of this group answers here ({}): {read}",
                each.join("; ")
            )]
        }
    };
    // Another host's socket that is here but does not answer.
    for (host, absent) in silent {
        if let DaemonAbsent::NoAnswer(e) = absent
            && !local.iter().any(|(h, _)| h == host)
        {
            lines.push(e.clone());
        }
    }
    lines
}

/// The backups of every daemon with a socket here that has a schedule or has taken or
/// tried one.
fn backup_status(group: &Group) -> Vec<redisrepd_core::backup::BackupStatus> {
    group
        .hosts()
        .into_iter()
        .filter(|h| group.socket_path(h).exists())
        .filter_map(|h| match ask(group, h, &Request::BackupStatus) {
            Ok(Response::Backup { status }) => Some(status),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Sentinel mode: every sentinel node asked directly (whom it names, its epoch, whom it
/// knows), in parallel.
fn sentinel_status(group: &Group) -> Option<status::SentinelSummary> {
    let s = group.sentinel.as_ref()?;
    let timeout = Duration::from_secs(2);
    let name = &group.cluster.name;
    let nodes = std::thread::scope(|scope| {
        let asks: Vec<_> = s
            .nodes
            .iter()
            .map(|node| {
                scope.spawn(move || {
                    let ep = redisrepd_core::sentinel::endpoint(group, node);
                    let mut record = status::SentinelStatus {
                        name: node.name.clone(),
                        host: node.host.clone(),
                        address: node.address(),
                        reachable: false,
                        master: None,
                        config_epoch: None,
                        replicas: None,
                        other_sentinels: None,
                        error: None,
                    };
                    match redisrepd_io::sentinel_client::get_master_addr(&ep, name, timeout) {
                        Ok(addr) => {
                            record.reachable = true;
                            record.master = addr.map(|(ip, port)| {
                                redisrepd_core::topology::instance_at(group, &ip.to_string(), port)
                                    .map_or_else(|| format!("{ip}:{port}"), |i| i.name.clone())
                            });
                        }
                        Err(e) => record.error = Some(e),
                    }
                    if let Ok(m) = redisrepd_io::sentinel_client::master_state(&ep, name, timeout) {
                        record.config_epoch = Some(m.config_epoch);
                        record.replicas = Some(m.num_replicas);
                        record.other_sentinels = Some(m.num_other_sentinels);
                    }
                    record
                })
            })
            .collect();
        asks.into_iter()
            .filter_map(|a| a.join().ok())
            .collect::<Vec<_>>()
    });
    Some(status::SentinelSummary::of(s.quorum, nodes))
}

/// `failover [--to REPLICA]`: asked of the daemon of REPLICA's host, or without `--to` of
/// one that runs here (the configured master's first). That daemon talks to the master and
/// the target itself; the other daemons follow what the group then says.
pub fn failover(config: &Path, to: Option<String>, force: bool) -> Result<u8> {
    let group = super::load_for_client(config)?.group;
    let host = match &to {
        Some(name) => instance_host(&group, name)?,
        None => {
            let mut hosts = group.hosts();
            let master_host = group.master().host.clone();
            hosts.sort_by_key(|h| *h != master_host);
            match hosts.into_iter().find(|h| group.socket_path(h).exists()) {
                Some(h) => h.to_owned(),
                None => bail!(
                    "no daemon of this group runs here: no socket in {}",
                    group.cluster.run_dir.display()
                ),
            }
        }
    };
    done(&host, ask(&group, &host, &Request::Failover { to, force })?)
}

/// `promote REPLICA`: asked of the daemon of REPLICA's host (the master's may be gone).
pub fn promote(config: &Path, instance: String, force: bool) -> Result<u8> {
    let group = super::load_for_client(config)?.group;
    let host = instance_host(&group, &instance)?;
    done(
        &host,
        ask(&group, &host, &Request::Promote { instance, force })?,
    )
}

fn instance_host(group: &Group, name: &str) -> Result<String> {
    match group.instance(name) {
        Some(inst) => Ok(inst.host.clone()),
        None => Err(super::no_instance(group, name, false)),
    }
}

/// Prints an operation's lines; its exit status.
pub(crate) fn done(host: &str, response: Response) -> Result<u8> {
    match response {
        Response::Done { ok, lines, failed } => {
            print_lines("", ok, &lines, &failed);
            Ok(if ok {
                crate::EXIT_OK
            } else {
                crate::EXIT_FAILED
            })
        }
        Response::Error { message } => {
            eprintln!("redisrepd: host `{host}`: {message}");
            Ok(crate::EXIT_FAILED)
        }
        Response::Status { .. } | Response::History { .. } | Response::Backup { .. } => {
            bail!("host `{host}`: the daemon answered out of turn")
        }
    }
}

/// Prints the lines of a `Done` reply after `prefix`: those that say what failed on stderr
/// as errors (`redisrepd: ...`), the others on stdout.
pub(crate) fn print_lines(prefix: &str, ok: bool, lines: &[String], failed: &[usize]) {
    // A daemon from before `failed` existed (still running across an upgrade of the
    // package) ended a failed operation with the line that said why.
    let last = (!ok && failed.is_empty()).then(|| lines.len().saturating_sub(1));
    for (i, l) in lines.iter().enumerate() {
        if failed.contains(&i) || last == Some(i) {
            eprintln!("redisrepd: {prefix}{l}");
        } else {
            println!("{prefix}{l}");
        }
    }
}

/// `reload`: every daemon with a socket in run_dir, or the one for `host`.
pub fn reload(config: &Path, host: Option<&str>) -> Result<u8> {
    let group = super::load(config)?.group;
    let hosts: Vec<String> = match host {
        Some(h) => vec![h.to_owned()],
        None => group
            .hosts()
            .into_iter()
            .filter(|h| group.socket_path(h).exists())
            .map(str::to_owned)
            .collect(),
    };
    if hosts.is_empty() {
        bail!(
            "no daemon of this group runs here: no socket in {}",
            group.cluster.run_dir.display()
        );
    }
    let mut ok = true;
    for host in hosts {
        match ask(&group, &host, &Request::Reload)? {
            Response::Done {
                ok: done,
                lines,
                failed,
            } => {
                print_lines(&format!("{host}: "), done, &lines, &failed);
                ok &= done;
            }
            Response::Error { message } => {
                eprintln!("redisrepd: host `{host}`: {message}");
                ok = false;
            }
            Response::Status { .. } | Response::History { .. } | Response::Backup { .. } => {
                ok = false
            }
        }
    }
    Ok(if ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_FAILED
    })
}

/// `pause --for` (`Some`) or `resume` (`None`): asks every daemon with a socket here; the
/// hosts without one are named (their daemons must be told on their own machines).
pub fn pause(config: &Path, length: Option<Duration>) -> Result<u8> {
    let group = super::load(config)?.group;
    let (here, elsewhere): (Vec<&str>, Vec<&str>) = group
        .hosts()
        .into_iter()
        .partition(|h| group.socket_path(h).exists());
    if here.is_empty() {
        bail!(
            "no daemon of this group runs here: no socket in {}",
            group.cluster.run_dir.display()
        );
    }
    let request = match length {
        Some(d) => Request::Pause {
            for_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        },
        None => Request::Resume,
    };
    let mut ok = true;
    for host in here {
        ok &= done(host, ask(&group, host, &request)?)? == crate::EXIT_OK;
    }
    let verb = if length.is_some() { "pause" } else { "resume" };
    for host in elsewhere {
        eprintln!(
            "redisrepd: warning: host `{host}` has no daemon socket in {}: run `redisrepd {verb}` on that host too",
            group.cluster.run_dir.display()
        );
    }
    Ok(if ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_FAILED
    })
}

/// `history`: the changes of master every daemon here recorded, merged (`changes::merge`).
/// A host whose daemon does not answer is read from its file in run_dir, when there is one.
pub fn history(config: &Path, json: bool) -> Result<u8> {
    let group = super::load_for_client(config)?.group;
    let mut records = Vec::new();
    let mut ok = true;
    for host in group.hosts() {
        let socket = group.socket_path(host);
        if socket.exists() {
            match redisrepd_io::control_socket::call(&socket, &Request::History) {
                Ok(Response::History { changes, .. }) => {
                    records.push(changes);
                    continue;
                }
                Ok(Response::Error { message }) => {
                    eprintln!("redisrepd: host `{host}`: {message}; reading its file instead")
                }
                Ok(_) => eprintln!("redisrepd: host `{host}`: the daemon answered out of turn"),
                Err(e) => eprintln!(
                    "redisrepd: cannot talk to the daemon for host `{host}` at {}: {e}; reading \
                     its file instead",
                    socket.display()
                ),
            }
        }
        let path = group.history_path(host);
        match std::fs::read_to_string(&path) {
            Ok(text) => records.push(redisrepd_core::changes::parse_file(&text).0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("redisrepd: cannot read {}: {e}", path.display());
                ok = false;
            }
        }
    }
    if records.is_empty() && ok {
        bail!(
            "no daemon of this group runs here and no history file is in {}: run this on a \
             host that runs a daemon",
            group.cluster.run_dir.display()
        );
    }
    let merged = redisrepd_core::changes::merge(records);
    if json {
        let doc = serde_json::json!({
            "cluster": group.cluster.name,
            "changes": merged,
        });
        println!("{doc}");
    } else {
        print!("{}", redisrepd_core::changes::render_table(&merged));
    }
    Ok(if ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_FAILED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(hosts: &[&str]) -> Group {
        let mut text = "[cluster]\nname=\"t\"\npassword=\"p\"\nrun_dir=\"/run/t\"\n".to_owned();
        for (i, h) in hosts.iter().enumerate() {
            text.push_str(&format!(
                "[[instance]]\nname=\"i{i}\"\nhost=\"{h}\"\nbind=\"127.0.0.1\"\nport={}\n{}",
                7000 + i,
                if i > 0 { "replica_of=\"i0\"\n" } else { "" }
            ));
        }
        redisrepd_core::config::parse(&text, Path::new("/t.toml"), Path::new("/"))
            .expect("test config")
            .group
    }

    #[test]
    fn the_local_daemons_absence_is_one_line() {
        let g = group(&["a", "b"]);
        let none = [
            ("a".to_owned(), DaemonAbsent::NoSocket),
            ("b".to_owned(), DaemonAbsent::NoSocket),
        ];
        // This machine is host `a`: only its daemon is named.
        assert_eq!(
            absent_daemons(&g, "a", &none),
            [
                "the daemon for host `a` is not running (no socket at /run/t/a.sock; start it \
              with `redisrepd daemon --host a`): instances are read straight from Redis"
            ]
        );
        // A machine that is no host of the file, and no daemon answers: all of them.
        let lines = absent_daemons(&g, "elsewhere", &none);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("no daemon of this group answers here (host `a`: no socket")
                && lines[0].ends_with("instances are read straight from Redis"),
            "{lines:?}"
        );
        // Host `b`'s daemon runs elsewhere, `a`'s answered: nothing to say.
        let b_only = [("b".to_owned(), DaemonAbsent::NoSocket)];
        assert!(absent_daemons(&g, "a", &b_only).is_empty());
        // A socket that does not answer is said, local or not.
        let stale = [("b".to_owned(), DaemonAbsent::NoAnswer("cannot talk".into()))];
        assert_eq!(absent_daemons(&g, "a", &stale), ["cannot talk"]);
        let g = group(&["a"]);
        let stale = [("a".to_owned(), DaemonAbsent::NoAnswer("cannot talk".into()))];
        assert_eq!(
            absent_daemons(&g, "x", &stale),
            [
                "the daemon for host `a` does not answer (cannot talk): instances are read \
              straight from Redis"
            ]
        );
    }
}
