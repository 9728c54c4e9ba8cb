//! What a start, stop, restart or reload means as an ordered list of steps, and when a stop
//! must be refused. Pure: the supervisor carries the steps out.

use std::collections::HashSet;

use crate::config::{Group, Secret};
use crate::render::{self, Secrets};
use crate::server::Server;

/// One thing the supervisor does for an operation, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Authenticated SHUTDOWN (saving); `force` skips the quorum check and, if the final
    /// save fails, shuts down without saving.
    Stop { name: String, force: bool },
    /// Mark the instance wanted; it passes the sync gate and starts.
    Start { name: String },
    /// Wait until it is running (a replica: in sync with its upstream).
    AwaitReady { name: String },
    /// Change the password of a running instance in place (`CONFIG SET requirepass` and
    /// `masterauth`): replication links stay up, because AUTH happens only on connect.
    SetPassword { name: String },
    /// Apply a changed config to a running instance without a restart (`CONFIG SET`,
    /// `REPLICAOF`), and write its new redis.conf so a later start agrees. Should the
    /// server refuse a setting at runtime, or a new upstream not be sure to resync
    /// partially, the instance is restarted instead (through the sync gate).
    ApplyLive { name: String, change: LiveChange },
    /// Ask every instance the daemon probes for a fresh INFO and wait for the answers
    /// (or a few seconds), so the next step decides on facts no older than itself.
    AwaitProbes { name: String },
    /// Coordinated switchover: `FAILOVER TO` on the current master, making `name` master.
    Failover { name: String, force: bool },
    /// The master is gone: make `name` master (`REPLICAOF NO ONE`).
    Promote { name: String, force: bool },
    /// Wait until every instance that answers follows the actual topology (`name` is its
    /// master), and report who follows whom.
    AwaitTopology { name: String },
    /// Sentinel mode: ask the sentinels to fail over (`SENTINEL FAILOVER`) and wait until
    /// they name a master other than `name`; with `force`, a failover that does not happen
    /// does not stop the operation (the stop of `name` goes on).
    SentinelFailover { name: String, force: bool },
}

impl Step {
    /// The instance the step is about.
    pub fn name(&self) -> &str {
        match self {
            Step::Stop { name, .. }
            | Step::Start { name }
            | Step::AwaitReady { name }
            | Step::SetPassword { name }
            | Step::ApplyLive { name, .. }
            | Step::AwaitProbes { name }
            | Step::Failover { name, .. }
            | Step::Promote { name, .. }
            | Step::AwaitTopology { name }
            | Step::SentinelFailover { name, .. } => name,
        }
    }
}

/// What changes in a running instance's config that the server can take at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChange {
    /// `CONFIG SET key value`, in order. Values are the server's settings as `CONFIG SET`
    /// takes them.
    pub set: Vec<(String, Secret)>,
    /// A new upstream, by `REPLICAOF` after the settings: `Some(None)` makes it a master
    /// (`REPLICAOF NO ONE`).
    pub repoint: Option<Option<Upstream>>,
}

/// Where `REPLICAOF` points an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The instance's name, for messages (the address when it is not in the file).
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl LiveChange {
    /// What it does, for the reload's reply: `set maxmemory live`, `re-pointed to r1`.
    pub fn describe(&self) -> String {
        let keys: Vec<&str> = self.set.iter().map(|(k, _)| k.as_str()).collect();
        let mut parts = Vec::new();
        if !keys.is_empty() {
            parts.push(format!("set {} live", keys.join(", ")));
        }
        match &self.repoint {
            Some(Some(up)) => parts.push(format!("re-pointed to {}", up.name)),
            Some(None) => parts.push("made master (REPLICAOF NO ONE)".to_owned()),
            None => {}
        }
        if parts.is_empty() {
            return "config file rewritten, nothing to change live".to_owned();
        }
        parts.join(", ")
    }

    /// True when it changes nothing in the running server.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.repoint.is_none()
    }
}

/// Directives a server takes only at start: a change to one of them means a restart.
const RESTART_KEYS: &[&str] = &[
    "port",
    "bind",
    "dir",
    "logfile",
    "daemonize",
    "pidfile",
    "unixsocket",
    "unixsocketperm",
    "databases",
    "io-threads",
    "supervised",
    "syslog-enabled",
    "syslog-ident",
    "syslog-facility",
    "appenddirname",
    "always-show-logo",
];

/// A value as redis.conf parses it: `""` is the empty string.
fn unquote(value: &str) -> String {
    if value == "\"\"" {
        String::new()
    } else {
        value.to_owned()
    }
}

/// Directives redisrepd writes only in some cases, with the server's default to set
/// when a reload drops one (a parent that lost its last replica, a replica made master).
const GENERATED_DEFAULTS: &[(&str, &str)] = &[
    ("repl-diskless-sync-max-replicas", "0"),
    ("repl-diskless-load", "disabled"),
    ("min-replicas-to-write", "0"),
    ("min-replicas-max-lag", "10"),
];

/// The directives of a rendered redis.conf: key to its values, in order of appearance.
fn directives(conf: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in conf.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let key = key.to_ascii_lowercase();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value.to_owned()),
            None => out.push((key, vec![value.to_owned()])),
        }
    }
    out
}

/// How a running instance goes from `old` to `new` (rendered configs) without a restart,
/// or why it cannot.
pub fn live_change(old: &str, new: &str) -> Result<LiveChange, String> {
    let (old, new) = (directives(old), directives(new));
    let value = |list: &[(String, Vec<String>)], key: &str| {
        list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let mut change = LiveChange {
        set: Vec::new(),
        repoint: None,
    };
    for (key, _) in &old {
        if key == "replicaof" && value(&new, key).is_none() {
            change.repoint = Some(None);
            continue;
        }
        if value(&new, key).is_some() {
            continue;
        }
        // A directive redisrepd generates goes back to its known default; for anything
        // else only a restart brings back the server's default.
        match GENERATED_DEFAULTS.iter().find(|(k, _)| k == key) {
            Some((_, default)) => change.set.push((key.clone(), Secret::new(*default))),
            None => {
                return Err(format!(
                    "`{key}` was removed, and only a restart brings back its default"
                ));
            }
        }
    }
    for (key, values) in &new {
        if value(&old, key).as_ref() == Some(values) {
            continue;
        }
        if RESTART_KEYS.contains(&key.as_str()) {
            return Err(format!("`{key}` changed"));
        }
        // A new upstream by `REPLICAOF`; the supervisor restarts it instead (through the
        // sync gate) unless its resync there is sure to be partial.
        if key == "replicaof" {
            let (host, port) = values
                .first()
                .and_then(|v| v.split_once(' '))
                .and_then(|(h, p)| Some((h.to_owned(), p.trim().parse().ok()?)))
                .ok_or_else(|| "its `replicaof` line is not `HOST PORT`".to_owned())?;
            change.repoint = Some(Some(Upstream {
                name: format!("{host}:{port}"),
                host,
                port,
            }));
            continue;
        }
        // The password is changed first, everywhere, by its own step (a replica restarted
        // with the new `masterauth` must find it on its upstream).
        if key == "requirepass" || key == "masterauth" {
            continue;
        }
        // A directive repeated in redis.conf is one setting at runtime where the server
        // takes all its values at once; for any other, which values win is not ours to
        // guess: restart.
        let joined = match (key.as_str(), values.as_slice()) {
            (_, [one]) => unquote(one),
            ("save" | "client-output-buffer-limit", many) => many
                .iter()
                .map(|v| unquote(v))
                .collect::<Vec<_>>()
                .join(" "),
            _ => return Err(format!("`{key}` has several values")),
        };
        change.set.push((key.clone(), Secret::new(joined)));
    }
    Ok(change)
}

/// Names sorted parents first (master, then each level of replicas), file order within a
/// level; unknown names are dropped (the caller reports them).
fn parents_first<'a>(group: &'a Group, names: &[String]) -> Vec<&'a str> {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    group
        .start_order_all()
        .into_iter()
        .filter(|i| wanted.contains(i.name.as_str()))
        .map(|i| i.name.as_str())
        .collect()
}

/// Start: parents first, each waited for, so a replica never races its upstream.
pub fn start(group: &Group, names: &[String]) -> Vec<Step> {
    parents_first(group, names)
        .into_iter()
        .flat_map(|n| {
            [
                Step::Start { name: n.to_owned() },
                Step::AwaitReady { name: n.to_owned() },
            ]
        })
        .collect()
}

/// Stop: deepest replicas first, masters last.
pub fn stop(group: &Group, names: &[String], force: bool) -> Vec<Step> {
    let mut order = parents_first(group, names);
    order.reverse();
    order
        .into_iter()
        .map(|n| Step::Stop {
            name: n.to_owned(),
            force,
        })
        .collect()
}

/// Rolling restart: one instance at a time, deepest first, master last; each is back (in
/// sync, for a replica) before the next goes down, so at most one is ever away.
pub fn restart(group: &Group, names: &[String], force: bool) -> Vec<Step> {
    let mut order = parents_first(group, names);
    order.reverse();
    order
        .into_iter()
        .flat_map(|n| {
            [
                Step::Stop {
                    name: n.to_owned(),
                    force,
                },
                Step::Start { name: n.to_owned() },
                Step::AwaitReady { name: n.to_owned() },
            ]
        })
        .collect()
}

/// A planned restart of the group's `master` (not forced): the role moves first to its
/// most up-to-date replica with the switchover, the master restarts as that one's
/// replica (from the RDB its SHUTDOWN SAVE wrote: a partial resync, AOF or not), and the
/// role comes back the same way. Writes wait milliseconds twice instead of being refused
/// for the master's save and load, and no replica full-syncs against a master that came
/// back from its AOF with a new replication id. Other steps are left as they are.
pub fn restart_master_away(steps: Vec<Step>, master: &str) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len() + 4);
    let mut i = 0;
    while i < steps.len() {
        let triple = matches!(
            &steps[i..],
            [Step::Stop { name: a, force: false }, Step::Start { name: b }, Step::AwaitReady { name: c }, ..]
                if a == master && b == master && c == master
        );
        if triple {
            out.push(Step::Failover {
                name: String::new(),
                force: false,
            });
            out.push(Step::AwaitTopology {
                name: String::new(),
            });
            out.extend(steps[i..i + 3].iter().cloned());
            out.push(Step::Failover {
                name: master.to_owned(),
                force: false,
            });
            out.push(Step::AwaitTopology {
                name: master.to_owned(),
            });
            i += 3;
        } else {
            out.push(steps[i].clone());
            i += 1;
        }
    }
    out
}

/// How the instances of one host differ between two versions of the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Changed only in the password: applied in place, no restart.
    pub password_only: Vec<String>,
    /// Changed in ways the running server takes at runtime: applied live, no restart.
    pub live: Vec<(String, LiveChange)>,
    /// Why each of `changed` needs a restart.
    pub restart_reasons: Vec<(String, String)>,
    pub unchanged: Vec<String>,
}

impl ReloadDiff {
    /// The reply's first line: how many instances took the change live, restart, were added,
    /// removed, or are unchanged (each instance counted once: a password set in place
    /// before a restart counts as restarted).
    pub fn summary(&self) -> String {
        let mut live: Vec<&str> = self
            .password_only
            .iter()
            .chain(self.live.iter().map(|(n, _)| n))
            .map(String::as_str)
            .filter(|n| !self.changed.iter().any(|c| c == n))
            .collect();
        live.sort_unstable();
        live.dedup();
        format!(
            "reload: {} changed live, {} restarted, {} added, {} removed, {} unchanged",
            live.len(),
            self.changed.len(),
            self.added.len(),
            self.removed.len(),
            self.unchanged.len()
        )
    }
}

/// Compares what each instance of `host` would run with: the server, the generated
/// redis.conf (which carries address, password, upstream and directives) and where it
/// lives. `old_server` is what runs now, `new_server` what the new file's `redis_server`
/// is (a binary upgraded in place at the same path is a change too).
pub fn reload_diff(
    old: &Group,
    new: &Group,
    host: &str,
    old_server: &Server,
    new_server: &Server,
) -> ReloadDiff {
    let mut diff = ReloadDiff::default();
    for inst in new.start_order(host) {
        match old.instance(&inst.name).filter(|o| o.host == host) {
            None => diff.added.push(inst.name.clone()),
            Some(prev) => {
                let same_process = old.conf_path(prev) == new.conf_path(inst)
                    && old.cluster.redis_server == new.cluster.redis_server
                    && old_server == new_server
                    && old.cluster.user == new.cluster.user;
                let same_masked = render::render(old, prev, old_server, Secrets::Mask)
                    == render::render(new, inst, new_server, Secrets::Mask);
                let same = same_masked
                    && render::render(old, prev, old_server, Secrets::Show)
                        == render::render(new, inst, new_server, Secrets::Show);
                let name = inst.name.clone();
                let password_changed = old.password().is_some() && old.password() != new.password();
                match (same_process, same_masked, same) {
                    (true, _, true) => diff.unchanged.push(name),
                    (true, true, false) if old.password().is_some() => {
                        diff.password_only.push(name)
                    }
                    (false, _, _) => {
                        diff.restart_reasons.push((
                            name.clone(),
                            "its server, user or config path changed".to_owned(),
                        ));
                        diff.changed.push(name);
                    }
                    (true, _, false) if password_changed => {
                        // The password first, in place, with every other instance's; what
                        // else changed follows live or by a restart.
                        diff.password_only.push(name.clone());
                        match live_change(
                            &render::render(old, prev, old_server, Secrets::Show),
                            &render::render(new, inst, new_server, Secrets::Show),
                        )
                        .map(|c| named(c, inst))
                        {
                            Ok(change) if change.is_empty() => {}
                            Ok(change) => diff.live.push((name, change)),
                            Err(why) => {
                                diff.restart_reasons.push((name.clone(), why));
                                diff.changed.push(name);
                            }
                        }
                    }
                    (true, _, false) => match live_change(
                        &render::render(old, prev, old_server, Secrets::Show),
                        &render::render(new, inst, new_server, Secrets::Show),
                    )
                    .map(|c| named(c, inst))
                    {
                        Ok(change) => diff.live.push((name, change)),
                        Err(why) => {
                            diff.restart_reasons.push((name.clone(), why));
                            diff.changed.push(name);
                        }
                    },
                }
            }
        }
    }
    for inst in old.stop_order(host) {
        if new.instance(&inst.name).is_none_or(|n| n.host != host) {
            diff.removed.push(inst.name.clone());
        }
    }
    diff
}

/// Names the new upstream of a live change by its instance.
fn named(mut change: LiveChange, inst: &crate::config::Instance) -> LiveChange {
    if let (Some(Some(up)), Some(name)) = (&mut change.repoint, &inst.replica_of) {
        up.name = name.clone();
    }
    change
}

/// The steps that apply a reload: change passwords in place, stop removed instances,
/// restart changed ones (rolling, through the gate), start added ones, then apply live
/// changes parents first (a replica re-pointed to an added instance finds it up).
pub fn reload(old: &Group, new: &Group, diff: &ReloadDiff) -> Vec<Step> {
    let mut steps: Vec<Step> = diff
        .password_only
        .iter()
        .map(|n| Step::SetPassword { name: n.clone() })
        .collect();
    steps.extend(stop(old, &diff.removed, false));
    steps.extend(restart(new, &diff.changed, false));
    steps.extend(start(new, &diff.added));
    let live_names: Vec<String> = diff.live.iter().map(|(n, _)| n.clone()).collect();
    for name in parents_first(new, &live_names) {
        if let Some((_, change)) = diff.live.iter().find(|(n, _)| n == name) {
            steps.push(Step::ApplyLive {
                name: name.to_owned(),
                change: change.clone(),
            });
        }
    }
    steps
}

/// Refuses a reload that would (re)start an instance on a server that cannot load an RDB
/// it needs: its own dump (written by the server it runs now), or its upstream's full
/// sync while the upstream still runs its current server (replicas are restarted before
/// their upstream), or that would leave a replica of it on another host, not restarted
/// here, under a server with a newer RDB version than that replica can load. An older
/// replica under a newer upstream fails only after the whole transfer (`Can't handle RDB
/// format version`), so this is checked before anything changes.
///
/// The instances in `diff.changed` and `diff.added` will run `new_server`. `running` is
/// the server an instance reports in its INFO now (local or remote), where known; a local
/// instance that does not answer is taken to run `old_server`. An instance whose server is
/// unknown (down, on another host) is not checked.
pub fn check_servers(
    new: &Group,
    host: &str,
    diff: &ReloadDiff,
    old_server: &Server,
    new_server: &Server,
    running: &dyn Fn(&str) -> Option<Server>,
) -> Result<(), String> {
    let restarted: HashSet<&str> = diff
        .changed
        .iter()
        .chain(&diff.added)
        .map(String::as_str)
        .collect();
    let new_rdb = new_server.rdb_version();
    // What runs `name` now: its INFO, else the daemon's server for a local instance that
    // existed before the reload.
    let now = |name: &str, local_before: bool| {
        running(name).or_else(|| local_before.then_some(*old_server))
    };
    let cannot_load = |who: &str, server: &Server| {
        format!(
            "{who} runs {server}, which writes RDB version {}; {new_server} (the configured \
             `redis_server`) reads RDB versions up to {new_rdb} only",
            server.rdb_version()
        )
    };
    for inst in new.start_order(host) {
        if !restarted.contains(inst.name.as_str()) {
            continue;
        }
        let name = &inst.name;
        if diff.changed.contains(name)
            && let Some(cur) = now(name, true)
            && cur.rdb_version() > new_rdb
        {
            return Err(format!(
                "`{name}` would restart on {new_server} and could not load its own data: {}; \
                 a downgrade to an older RDB version is not possible by restart",
                cannot_load(&format!("`{name}`"), &cur)
            ));
        }
        if let Some(up) = new.upstream(inst) {
            let local_before = up.host == host && !diff.added.contains(&up.name);
            if let Some(cur) = now(&up.name, local_before)
                && cur.rdb_version() > new_rdb
            {
                return Err(format!(
                    "replica `{name}` would run {new_server} under its upstream `{}`, which \
                     {}; never put an older replica under a newer upstream: upgrade replicas \
                     first, the master last",
                    up.name,
                    cannot_load("", &cur).trim_start()
                ));
            }
        }
        for r in new.replicas_of(name) {
            if restarted.contains(r.name.as_str()) {
                continue;
            }
            if let Some(cur) = running(&r.name)
                && cur.rdb_version() < new_rdb
            {
                return Err(format!(
                    "`{name}` would run {new_server} (RDB version {new_rdb}), but its replica \
                     `{}` on host `{}` runs {cur}, which reads RDB versions up to {} only: \
                     upgrade `{}` first (reload its host), then this one",
                    r.name,
                    r.host,
                    cur.rdb_version(),
                    r.name
                ));
            }
        }
    }
    Ok(())
}

/// Refuses taking `name` down when its upstream would be left with fewer good replicas
/// than its `min_replicas_to_write` (every write would fail meanwhile). `good_others` is
/// the number of the upstream's other replicas that are online now.
pub fn check_quorum(group: &Group, name: &str, good_others: usize) -> Result<(), String> {
    let Some(inst) = group.instance(name) else {
        return Ok(());
    };
    let Some(up) = group.upstream(inst) else {
        return Ok(());
    };
    let Some(min) = up.min_replicas_to_write.filter(|m| *m > 0) else {
        return Ok(());
    };
    if good_others >= min as usize {
        return Ok(());
    }
    Err(format!(
        "refused: taking `{name}` down leaves `{}` with {good_others} good replica(s), fewer \
         than its min_replicas_to_write = {min}, so every write to it would fail meanwhile; \
         use --force to do it anyway",
        up.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_planned_master_restart_moves_the_role_away_and_back_around_it() {
        let stop = |n: &str, force| Step::Stop {
            name: n.into(),
            force,
        };
        let start = |n: &str| Step::Start { name: n.into() };
        let ready = |n: &str| Step::AwaitReady { name: n.into() };
        let steps = vec![stop("r1", false), start("r1"), ready("r1")];
        let mut all = steps.clone();
        all.extend([stop("m", false), start("m"), ready("m")]);
        let away = restart_master_away(all, "m");
        assert_eq!(away[..3], steps[..]);
        assert_eq!(
            away[3..],
            [
                Step::Failover {
                    name: String::new(),
                    force: false
                },
                Step::AwaitTopology {
                    name: String::new()
                },
                stop("m", false),
                start("m"),
                ready("m"),
                Step::Failover {
                    name: "m".into(),
                    force: false
                },
                Step::AwaitTopology { name: "m".into() },
            ]
        );
        // Forced, or only stopped: as they were.
        let forced = vec![stop("m", true), start("m"), ready("m")];
        assert_eq!(restart_master_away(forced.clone(), "m"), forced);
        let stopped = vec![stop("m", false)];
        assert_eq!(restart_master_away(stopped.clone(), "m"), stopped);
    }

    const CASCADE: &str = r#"
[cluster]
name = "t"
password = "pw"
[[instance]]
name = "m"
host = "a"
bind = "127.0.0.1"
port = 1
min_replicas_to_write = 1
[[instance]]
name = "leaf"
host = "b"
bind = "127.0.0.1"
port = 4
replica_of = "r1"
[[instance]]
name = "r1"
host = "b"
bind = "127.0.0.1"
port = 2
replica_of = "m"
[[instance]]
name = "r2"
host = "b"
bind = "127.0.0.1"
port = 3
replica_of = "m"
"#;

    fn group(text: &str) -> Group {
        crate::config::parse(text, Path::new("/t.toml"), Path::new("/"))
            .unwrap()
            .group
    }

    const R70: Server = Server {
        kind: crate::server::Kind::Redis,
        version: crate::server::Version {
            major: 7,
            minor: 0,
            patch: 15,
        },
    };

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn restart_goes_deepest_first_master_last_one_at_a_time() {
        let g = group(CASCADE);
        let steps = restart(&g, &names(&["m", "r1", "leaf", "r2"]), false);
        let stops: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Stop { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(stops, ["leaf", "r2", "r1", "m"]);
        assert_eq!(steps.len(), 12);
        assert_eq!(
            steps[1],
            Step::Start {
                name: "leaf".into()
            }
        );
        assert_eq!(
            steps[2],
            Step::AwaitReady {
                name: "leaf".into()
            }
        );
    }

    #[test]
    fn start_goes_parents_first() {
        let g = group(CASCADE);
        let steps = start(&g, &names(&["leaf", "r1"]));
        assert_eq!(steps[0], Step::Start { name: "r1".into() });
        assert_eq!(
            steps[2],
            Step::Start {
                name: "leaf".into()
            }
        );
    }

    #[test]
    fn reload_diff_finds_added_removed_changed() {
        let old = group(CASCADE);
        let new_text = CASCADE
            .replace("port = 3", "port = 33")
            .replace("name = \"leaf\"", "name = \"leaf2\"");
        let new = group(&new_text);
        let diff = reload_diff(&old, &new, "b", &R70, &R70);
        assert_eq!(diff.added, ["leaf2"]);
        assert_eq!(diff.removed, ["leaf"]);
        assert_eq!(diff.changed, ["r2"]);
        assert_eq!(diff.unchanged, ["r1"]);
        assert_eq!(
            diff.summary(),
            "reload: 0 changed live, 1 restarted, 1 added, 1 removed, 1 unchanged"
        );
        let steps = reload(&old, &new, &diff);
        assert_eq!(
            steps[0],
            Step::Stop {
                name: "leaf".into(),
                force: false
            }
        );
    }

    #[test]
    fn a_new_password_is_applied_in_place() {
        let old = group(CASCADE);
        let new = group(&CASCADE.replace("password = \"pw\"", "password = \"pw2\""));
        let diff = reload_diff(&old, &new, "b", &R70, &R70);
        assert_eq!(diff.password_only, ["r1", "r2", "leaf"]);
        assert!(diff.changed.is_empty());
        let steps = reload(&old, &new, &diff);
        assert_eq!(steps[0], Step::SetPassword { name: "r1".into() });
        assert_eq!(steps.len(), 3, "no restart");
    }

    fn server(kind: crate::server::Kind, major: u32, minor: u32) -> Server {
        Server {
            kind,
            version: crate::server::Version {
                major,
                minor,
                patch: 0,
            },
        }
    }

    const LOCAL: &str = r#"
[cluster]
name = "t"
[[instance]]
name = "m"
host = "a"
bind = "127.0.0.1"
port = 1
[[instance]]
name = "r1"
host = "a"
bind = "127.0.0.1"
port = 2
replica_of = "m"
[[instance]]
name = "r2"
host = "a"
bind = "127.0.0.1"
port = 3
replica_of = "m"
"#;

    #[test]
    fn a_server_change_restarts_everything_replicas_first() {
        use crate::server::Kind;
        let g = group(LOCAL);
        let (r62, v81) = (server(Kind::Redis, 6, 2), server(Kind::Valkey, 8, 1));
        let diff = reload_diff(&g, &g, "a", &R70, &v81);
        assert_eq!(diff.changed, ["m", "r1", "r2"], "{diff:?}");
        let stops: Vec<String> = reload(&g, &g, &diff)
            .into_iter()
            .filter_map(|s| match s {
                Step::Stop { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(stops, ["r2", "r1", "m"]);
        let running = |_: &str| None;
        assert!(check_servers(&g, "a", &diff, &R70, &v81, &running).is_ok());
        assert!(check_servers(&g, "a", &diff, &r62, &R70, &running).is_ok());
        let same = reload_diff(&g, &g, "a", &R70, &R70);
        assert!(same.changed.is_empty());
    }

    #[test]
    fn a_downgrade_below_the_rdb_version_is_refused() {
        use crate::server::Kind;
        let g = group(LOCAL);
        let r62 = server(Kind::Redis, 6, 2);
        let r74 = server(Kind::Redis, 7, 4);
        let v81 = server(Kind::Valkey, 8, 1);
        let none = |_: &str| None;
        let diff = reload_diff(&g, &g, "a", &R70, &r62);
        let err = check_servers(&g, "a", &diff, &R70, &r62, &none).unwrap_err();
        assert!(
            err.contains("RDB version 10") && err.contains("up to 9"),
            "{err}"
        );
        // Redis 7.4 (RDB 12) to Valkey 8.1 (RDB 11): refused too.
        let diff = reload_diff(&g, &g, "a", &r74, &v81);
        assert!(check_servers(&g, "a", &diff, &r74, &v81, &none).is_err());
        // Valkey 8.1 to Redis 7.2 (both RDB 11): allowed.
        let r72 = server(Kind::Redis, 7, 2);
        let diff = reload_diff(&g, &g, "a", &v81, &r72);
        assert!(check_servers(&g, "a", &diff, &v81, &r72, &none).is_ok());
    }

    #[test]
    fn an_older_replica_is_never_put_under_a_newer_upstream() {
        use crate::server::Kind;
        // r1 and r2 on host b, the master on host a already runs Valkey 8.1 (RDB 11),
        // b's replicas still run 6.2 (their INFO says so) and are moved to 7.0 (RDB 10).
        let g = group(&LOCAL.replace(
            "host = \"a\"\nbind = \"127.0.0.1\"\nport = 2",
            "host = \"b\"\nbind = \"127.0.0.1\"\nport = 2",
        ));
        let r62 = server(Kind::Redis, 6, 2);
        let v81 = server(Kind::Valkey, 8, 1);
        let running = |name: &str| match name {
            "m" => Some(v81),
            _ => Some(r62),
        };
        let diff = reload_diff(&g, &g, "b", &r62, &R70);
        assert_eq!(diff.changed, ["r1"]);
        let err = check_servers(&g, "b", &diff, &r62, &R70, &running).unwrap_err();
        assert!(
            err.contains("replica `r1`")
                && err.contains("upstream `m`")
                && err.contains("valkey 8.1.0"),
            "{err}"
        );
        // The master's host upgrading first while its replica on b still runs 6.2.
        let diff = reload_diff(&g, &g, "a", &r62, &R70);
        assert_eq!(diff.changed, ["m", "r2"]);
        let running = |name: &str| match name {
            "r1" => Some(r62),
            _ => None,
        };
        let err = check_servers(&g, "a", &diff, &r62, &R70, &running).unwrap_err();
        assert!(
            err.contains("its replica `r1` on host `b` runs redis 6.2.0")
                && err.contains("upgrade `r1` first"),
            "{err}"
        );
        // Once r1 runs 7.0, the master's host may follow.
        let running = |name: &str| match name {
            "r1" => Some(R70),
            _ => None,
        };
        assert!(check_servers(&g, "a", &diff, &r62, &R70, &running).is_ok());
    }

    #[test]
    fn runtime_settings_change_live_and_the_rest_restarts() {
        let old = group(CASCADE);
        let text = CASCADE.replace(
            "port = 2\nreplica_of = \"m\"",
            "port = 2\nreplica_of = \"m\"\n[instance.redis]\nmaxmemory = \"1gb\"\nsave = [\"60 1\", \"10 100\"]",
        );
        let diff = reload_diff(&old, &group(&text), "b", &R70, &R70);
        let live: Vec<&str> = diff.live.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(live, ["r1"]);
        let (_, change) = &diff.live[0];
        let set: Vec<(&str, &str)> = change
            .set
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(set, [("maxmemory", "1gb"), ("save", "60 1 10 100")]);
        assert_eq!(change.describe(), "set maxmemory, save live");
        // A new port or a removed directive needs a restart; a new upstream is REPLICAOF.
        let diff = reload_diff(
            &group(&text),
            &group(&text.replace("port = 2\n", "port = 22\n")),
            "b",
            &R70,
            &R70,
        );
        assert_eq!(diff.changed, ["r1"]);
        assert_eq!(diff.restart_reasons[0].1, "`port` changed");
        let leaf = &diff.live.iter().find(|(n, _)| n == "leaf").expect("leaf").1;
        assert_eq!(
            leaf.describe(),
            "re-pointed to r1",
            "the leaf follows r1's new port"
        );
        let moved = text.replace(
            "port = 4\nreplica_of = \"r1\"",
            "port = 4\nreplica_of = \"r2\"",
        );
        let diff = reload_diff(&group(&text), &group(&moved), "b", &R70, &R70);
        assert!(diff.changed.is_empty());
        let live: Vec<&str> = diff.live.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            live,
            ["r1", "r2", "leaf"],
            "their pacing directive follows, live"
        );
        let leaf = &diff.live[2].1;
        assert_eq!(leaf.describe(), "re-pointed to r2");
        assert_eq!(
            leaf.repoint,
            Some(Some(Upstream {
                name: "r2".into(),
                host: "127.0.0.1".into(),
                port: 3
            }))
        );
        assert_eq!(diff.live[0].1.set[0].1.expose(), "0", "back to the default");
        let diff = reload_diff(&group(&text), &old, "b", &R70, &R70);
        assert_eq!(
            diff.changed,
            ["r1"],
            "maxmemory removed: back to the default by a restart"
        );
    }

    #[test]
    fn a_password_and_another_change_set_the_password_first() {
        let old = group(CASCADE);
        let new = group(
            &CASCADE
                .replace("password = \"pw\"", "password = \"pw2\"")
                .replace(
                    "port = 2\nreplica_of = \"m\"",
                    "port = 2\nreplica_of = \"m\"\n[instance.redis]\nmaxmemory = \"1gb\"",
                ),
        );
        let diff = reload_diff(&old, &new, "b", &R70, &R70);
        assert_eq!(diff.password_only, ["r1", "r2", "leaf"]);
        let steps = reload(&old, &new, &diff);
        assert!(matches!(&steps[0], Step::SetPassword { .. }), "{steps:?}");
        let Some(Step::ApplyLive { name, change }) = steps.last() else {
            panic!("{steps:?}")
        };
        assert_eq!(name, "r1");
        assert_eq!(change.describe(), "set maxmemory live", "no password in it");
    }

    #[test]
    fn repeated_directives_and_empty_values_go_to_config_set_as_redis_parses_them() {
        let one = "notify-keyspace-events \"\"\n";
        let change = live_change("", one).unwrap();
        assert_eq!(change.set[0].1.expose(), "");
        let two = "client-output-buffer-limit normal 0 0 0\nclient-output-buffer-limit replica 64mb 32mb 10\n";
        let change = live_change("", two).unwrap();
        assert_eq!(
            change.set[0].1.expose(),
            "normal 0 0 0 replica 64mb 32mb 10"
        );
        assert!(live_change("", "rename-command a b\nrename-command c d\n").is_err());
    }

    #[test]
    fn quorum_refuses_only_below_min_replicas() {
        let g = group(CASCADE);
        let err = check_quorum(&g, "r1", 0).unwrap_err();
        assert!(
            err.contains("min_replicas_to_write = 1") && err.contains("--force"),
            "{err}"
        );
        assert!(check_quorum(&g, "r1", 1).is_ok());
        assert!(
            check_quorum(&g, "leaf", 0).is_ok(),
            "r1 has no min_replicas_to_write"
        );
        assert!(check_quorum(&g, "m", 0).is_ok(), "a master has no upstream");
    }
}
