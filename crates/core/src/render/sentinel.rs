//! The sentinel.conf redisrepd generates for a sentinel node: a pure function of the model
//! and of the file Sentinel last wrote.
//!
//! Sentinel rewrites its own config file (CONFIG REWRITE) whenever it learns something: its
//! id, the epochs, the replicas and other sentinels it found, and after a failover the
//! *new* master's address in `sentinel monitor`. That state must survive a restart of the
//! sentinel and of the daemon, so [`render_sentinel`] takes the existing file and keeps
//! what Sentinel learned ([`Learned`]) while writing redisrepd's own settings fresh: a
//! re-render after a failover never puts the TOML's master back.
//!
//! A running sentinel keeps its settings in memory and writes them out at its next
//! rewrite, so a changed `[sentinel]` reaches a running one through `SENTINEL SET`
//! ([`live_changes`]), not through the file.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{MASK, Secrets, quote_path};
use crate::config::{Group, SentinelNode};

/// What Sentinel learned, read from the file it last wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// `sentinel myid`: its identity among the other sentinels.
    pub myid: Option<String>,
    /// `sentinel current-epoch`.
    pub current_epoch: Option<u64>,
    /// `sentinel config-epoch <name>`: the epoch of the current master's configuration.
    pub config_epoch: Option<u64>,
    /// `sentinel leader-epoch <name>`.
    pub leader_epoch: Option<u64>,
    /// `sentinel monitor <name> <ip> <port> <quorum>`: the master as Sentinel last knew it.
    pub master: Option<(IpAddr, u16)>,
    /// `sentinel known-replica <name> <ip> <port>`, in file order.
    pub known_replicas: Vec<(IpAddr, u16)>,
    /// `sentinel known-sentinel <name> <ip> <port> <runid>`, in file order.
    pub known_sentinels: Vec<(IpAddr, u16, String)>,
}

/// Reads what Sentinel learned about the master called `master_name` (the cluster's
/// name) from a sentinel.conf. Lines it cannot read are ignored: the worst case is a
/// sentinel that learns again. State about other master names is not kept (a renamed
/// cluster is a new monitor); `myid` and `current-epoch` belong to the sentinel itself and
/// are always kept.
pub fn learned(existing: &str, master_name: &str) -> Learned {
    let mut l = Learned::default();
    for line in existing.lines() {
        let Some(args) = split_args(line) else {
            continue;
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let named = |i: usize| args.get(i).is_some_and(|n| *n == master_name);
        match args.as_slice() {
            [s, rest @ ..] if s.eq_ignore_ascii_case("sentinel") => match rest {
                [k, id] if k.eq_ignore_ascii_case("myid") => l.myid = Some((*id).to_owned()),
                [k, e] if k.eq_ignore_ascii_case("current-epoch") => {
                    l.current_epoch = e.parse().ok();
                }
                [k, _, e] if k.eq_ignore_ascii_case("config-epoch") && named(2) => {
                    l.config_epoch = e.parse().ok();
                }
                [k, _, e] if k.eq_ignore_ascii_case("leader-epoch") && named(2) => {
                    l.leader_epoch = e.parse().ok();
                }
                [k, _, ip, port, _] if k.eq_ignore_ascii_case("monitor") && named(2) => {
                    l.master = addr(ip, port);
                }
                [k, _, ip, port] if k.eq_ignore_ascii_case("known-replica") && named(2) => {
                    l.known_replicas.extend(addr(ip, port));
                }
                [k, _, ip, port, id] if k.eq_ignore_ascii_case("known-sentinel") && named(2) => {
                    if let Some((ip, port)) = addr(ip, port) {
                        l.known_sentinels.push((ip, port, (*id).to_owned()));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    l
}

fn addr(ip: &str, port: &str) -> Option<(IpAddr, u16)> {
    Some((ip.parse().ok()?, port.parse().ok()?))
}

/// Splits a config line into arguments the way Redis does (`sdssplitargs`): spaces
/// separate, `"..."` takes `\` escapes (`\"`, `\\`, `\n`, `\xHH`), `'...'` only `\'`.
/// Valkey quotes some values Redis leaves bare (`"<runid>"`). `None` for an unbalanced
/// quote; comments and blank lines give no arguments.
pub fn split_args(line: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = line.trim_start().chars().peekable();
    if chars.peek() == Some(&'#') {
        return Some(args);
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Some(args);
        };
        let mut arg = String::new();
        match first {
            '"' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            'n' => arg.push('\n'),
                            'r' => arg.push('\r'),
                            't' => arg.push('\t'),
                            'x' => {
                                let hex: String = [chars.next()?, chars.next()?].iter().collect();
                                arg.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                            }
                            other => arg.push(other),
                        },
                        c => arg.push(c),
                    }
                }
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        '\\' if chars.peek() == Some(&'\'') => arg.push(chars.next()?),
                        c => arg.push(c),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    arg.push(c);
                    chars.next();
                }
            }
        }
        args.push(arg);
    }
}

/// The master a (re)started sentinel monitors: the one Sentinel last wrote, as long as it
/// is still an instance of the group (a failover moved the role there, and redisrepd never
/// undoes it); otherwise (first start, or the instance was removed or moved to another
/// address) the TOML's master.
pub fn monitored_master(group: &Group, learned: &Learned) -> (IpAddr, u16) {
    learned
        .master
        .filter(|m| is_instance(group, *m))
        .unwrap_or_else(|| {
            let m = group.master();
            (m.bind, m.port)
        })
}

fn is_instance(group: &Group, (ip, port): (IpAddr, u16)) -> bool {
    group
        .instances
        .iter()
        .any(|i| i.bind == ip && i.port == port)
}

/// The complete sentinel.conf for `node`, keeping what Sentinel learned in `existing` (the
/// file as Sentinel last wrote it, if there is one). Write it (mode 0600) only before the
/// sentinel starts: a running sentinel overwrites it from memory.
///
/// Kept from `existing`: `myid`, the epochs, the monitored master while it is an instance
/// of the group, known replicas that are instances of the group, known sentinels that are
/// other nodes of `[sentinel]` (so a removed node or instance is forgotten). Written
/// fresh: everything else, from the TOML.
pub fn render_sentinel(
    group: &Group,
    node: &SentinelNode,
    existing: Option<&str>,
    secrets: Secrets,
) -> String {
    let name = &group.cluster.name;
    let learned = existing.map(|e| learned(e, name)).unwrap_or_default();
    let (master_ip, master_port) = monitored_master(group, &learned);
    let mut out = String::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    line(format!(
        "# Generated by redisrepd for sentinel `{}` of cluster `{name}`.",
        node.name
    ));
    line("# Sentinel rewrites this file as it learns; redisrepd renders it again at every".into());
    line("# start, keeping what Sentinel learned (id, epochs, the current master).".into());
    line(format!("# Source: {}", group.source.display()));
    match &group.tls {
        None => line(format!("port {}", node.port)),
        Some(tls) => {
            // Sentinel speaks TLS on its port and to the instances and other sentinels
            // (`tls-replication yes`); announce-port below is the TLS port.
            line("port 0".into());
            line(format!("tls-port {}", node.port));
            crate::render::tls_lines(&mut |k, v| line(format!("{k} {v}")), tls, &node.host);
        }
    }
    line(format!("bind {}", node.bind));
    // Sentinels and the instances reach each other on these addresses; the password
    // (below), not protected mode, keeps strangers out. Sentinel's default, said aloud.
    line("protected-mode no".into());
    line("daemonize no".into());
    line(format!(
        "dir {}",
        quote_path(&group.sentinel_dir(node).display().to_string())
    ));
    let logfile = group
        .sentinel_log_path(node)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    line(format!("logfile {}", quote_path(&logfile)));
    let password = group.password().map(|s| match secrets {
        Secrets::Show => s.expose(),
        Secrets::Mask => MASK,
    });
    if let Some(pw) = password {
        // Clients (redisrepd, operators) AUTH to the sentinel with the group's password;
        // the other sentinels need `sentinel-pass` to talk to one that requires it. While
        // the password rotates (two of them) the sentinel's `default` user accepts both.
        let all = group.passwords();
        if all.len() > 1 {
            let list: Vec<String> = all
                .iter()
                .map(|s| match secrets {
                    Secrets::Show => format!(">{}", s.expose()),
                    Secrets::Mask => format!(">{MASK}"),
                })
                .collect();
            line(format!(
                "user default reset on {} ~* &* +@all",
                list.join(" ")
            ));
        } else {
            line(format!("requirepass {pw}"));
        }
        line(format!("sentinel sentinel-pass {pw}"));
    }
    // Others learn this sentinel's address from its hello messages: say it is `bind`, so
    // that `known-sentinel` lines match the TOML's nodes.
    line(format!("sentinel announce-ip {}", node.bind));
    line(format!("sentinel announce-port {}", node.port));
    if let Some(id) = &learned.myid {
        line(format!("sentinel myid {id}"));
    }
    if let Some(s) = &group.sentinel {
        line(format!(
            "sentinel monitor {name} {master_ip} {master_port} {}",
            s.quorum
        ));
        if crate::acl::internal_users(group) {
            line(format!(
                "sentinel auth-user {name} {}",
                crate::acl::SENTINEL_USER
            ));
        }
        if let Some(pw) = password {
            line(format!("sentinel auth-pass {name} {pw}"));
        }
        line(format!(
            "sentinel down-after-milliseconds {name} {}",
            s.down_after.as_millis()
        ));
        line(format!(
            "sentinel failover-timeout {name} {}",
            s.failover_timeout.as_millis()
        ));
        line(format!(
            "sentinel parallel-syncs {name} {}",
            parallel_syncs(group)
        ));
        if let Some(e) = learned.config_epoch {
            line(format!("sentinel config-epoch {name} {e}"));
        }
        if let Some(e) = learned.leader_epoch {
            line(format!("sentinel leader-epoch {name} {e}"));
        }
    }
    if let Some(e) = learned.current_epoch {
        line(format!("sentinel current-epoch {e}"));
    }
    if group.sentinel.is_some() {
        for (ip, port) in &learned.known_replicas {
            if is_instance(group, (*ip, *port)) && (*ip, *port) != (master_ip, master_port) {
                line(format!("sentinel known-replica {name} {ip} {port}"));
            }
        }
        let nodes = group.sentinel.iter().flat_map(|s| s.nodes.iter());
        for (ip, port, id) in &learned.known_sentinels {
            let is_other_node = nodes
                .clone()
                .any(|n| n.bind == *ip && n.port == *port && n.name != node.name);
            if is_other_node && id.chars().all(|c| c.is_ascii_alphanumeric()) {
                line(format!("sentinel known-sentinel {name} {ip} {port} {id}"));
            }
        }
    }
    out
}

/// One setting a running sentinel takes live: `SENTINEL SET <name> <option> <value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelSet {
    /// The option as `SENTINEL SET` spells it.
    pub option: &'static str,
    pub value: String,
}

impl SentinelSet {
    /// The command's arguments, `SENTINEL SET <master_name> <option> <value>`.
    pub fn args(&self, master_name: &str) -> [String; 5] {
        [
            "SENTINEL".to_owned(),
            "SET".to_owned(),
            master_name.to_owned(),
            self.option.to_owned(),
            self.value.clone(),
        ]
    }
}

/// Sentinel's `parallel-syncs`: `max_concurrent_syncs`, and 1 for `auto`. Sentinel
/// re-points the replicas after a failover with no way to judge what a sync costs, at the
/// moment least is known: the promoted master has never forked as a master (no measured
/// copy-on-write) and may hold another replica's buffers. 1 never costs more than the
/// default gate; the usual resync after a failover is partial (the promoted replica keeps
/// the old history), so going one at a time costs seconds, not full copies.
pub fn parallel_syncs(group: &Group) -> u32 {
    group.supervise.max_concurrent_syncs.fixed().unwrap_or(1)
}

/// What a `reload` from `old` to `new` changes in a running sentinel's monitor, as the
/// `SENTINEL SET` commands that apply it live (Sentinel then rewrites its file itself):
/// `quorum`, `down-after-milliseconds`, `failover-timeout`, and `parallel-syncs` (from
/// `max_concurrent_syncs`). Empty when either side has no `[sentinel]` or the cluster's
/// name changed (that is a new monitor: restart the sentinels on a fresh render). A new
/// password is not here (it must not sit in a plain list): `sentinel::change_password`.
pub fn live_changes(old: &Group, new: &Group) -> Vec<SentinelSet> {
    let (Some(o), Some(n)) = (&old.sentinel, &new.sentinel) else {
        return Vec::new();
    };
    if old.cluster.name != new.cluster.name {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut push = |option: &'static str, before: u128, after: u128| {
        if before != after {
            out.push(SentinelSet {
                option,
                value: after.to_string(),
            });
        }
    };
    push("quorum", o.quorum.into(), n.quorum.into());
    push(
        "down-after-milliseconds",
        o.down_after.as_millis(),
        n.down_after.as_millis(),
    );
    push(
        "failover-timeout",
        o.failover_timeout.as_millis(),
        n.failover_timeout.as_millis(),
    );
    push(
        "parallel-syncs",
        parallel_syncs(old).into(),
        parallel_syncs(new).into(),
    );
    // With [[user]] the sentinels authenticate to the instances as redisrepd's own
    // Sentinel user; without, as `default` (empty: no `auth-user`).
    let user = |g: &Group| crate::acl::internal_users(g).then_some(crate::acl::SENTINEL_USER);
    if user(old) != user(new) {
        out.push(SentinelSet {
            option: "auth-user",
            value: user(new).unwrap_or_default().to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
