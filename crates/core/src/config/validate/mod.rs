//! Turns the raw file into a [`Group`]: defaults, paths, the replication tree, and every
//! rule of `docs/reference/config.md`. All problems are collected before reporting.

//!
//! - this module: the entry point, the instances, their directives and the replication tree;
//! - [`shape`]: deserializing with every problem of shape collected, not only toml's first;
//! - [`services`]: `[supervise]`, `[hooks]`, `[http]` and `[backup]`;
//! - [`sentinel`]: `[sentinel]` and its nodes;
//! - [`tls`]: the `[tls]` section.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::model::{
    Checked, Cluster, ConfigError, Directive, Group, Instance, PasswordSource, Problem, Secret,
};
use super::raw::{RawFile, RawInstance};

/// Directives redisrepd writes itself, with the TOML key to use instead.
pub const MANAGED_DIRECTIVES: &[(&str, &str)] = &[
    ("port", "`port` of the [[instance]]"),
    ("bind", "`bind` of the [[instance]]"),
    (
        "daemonize",
        "nothing: redisrepd runs Redis in the foreground",
    ),
    (
        "pidfile",
        "nothing: redisrepd writes pid files into `run_dir`",
    ),
    ("dir", "`data_dir` in [cluster]"),
    ("logfile", "`log_dir` in [cluster]"),
    ("requirepass", "`password_file` or `password` in [cluster]"),
    ("masterauth", "`password_file` or `password` in [cluster]"),
    (
        "masteruser",
        "nothing: with [[user]], replicas authenticate as redisrepd's own user",
    ),
    ("user", "[[user]]"),
    (
        "aclfile",
        "[[user]]: redisrepd writes the users into redis.conf",
    ),
    ("replicaof", "`replica_of` of the [[instance]]"),
    ("slaveof", "`replica_of` of the [[instance]]"),
    (
        "min-replicas-to-write",
        "`min_replicas_to_write` of the [[instance]]",
    ),
    (
        "min-replicas-max-lag",
        "`min_replicas_max_lag` of the [[instance]]",
    ),
    (
        "min-slaves-to-write",
        "`min_replicas_to_write` of the [[instance]]",
    ),
    (
        "min-slaves-max-lag",
        "`min_replicas_max_lag` of the [[instance]]",
    ),
    ("include", "nothing: put every directive in the TOML"),
    (
        "tls-port",
        "[tls]: with it, `port` of the [[instance]] speaks TLS only",
    ),
    ("tls-cert-file", "`cert_file` in [tls]"),
    ("tls-key-file", "`key_file` in [tls]"),
    ("tls-ca-cert-file", "`ca_file` in [tls]"),
    ("tls-auth-clients", "`client_auth` in [tls]"),
    ("tls-replication", "[tls] (replication uses TLS with it)"),
    ("tls-client-cert-file", "`cert_file` in [tls]"),
    ("tls-client-key-file", "`key_file` in [tls]"),
    (
        "replica-announce-ip",
        "`bind` of the [[instance]] (redisrepd announces it)",
    ),
    (
        "slave-announce-ip",
        "`bind` of the [[instance]] (redisrepd announces it)",
    ),
];

pub(super) fn parse(text: &str, source: &Path, base_dir: &Path) -> Result<Checked, ConfigError> {
    let fail = |problems: Vec<String>| ConfigError {
        file: source.to_owned(),
        problems,
    };
    let shape = deserialize_all(text).map_err(|e| fail(vec![e]))?;
    let mut problems = shape.errors;
    // The rules of the model run on what deserialized, unless a stand-in value is in it
    // (two ports replaced by the same stand-in would conflict, say).
    let Some(raw) = shape.raw.filter(|_| !shape.stand_ins) else {
        return Err(fail(problems));
    };
    let mut v = Validator::default();
    let group = v.group(raw, source, base_dir);
    problems.extend(v.errors.iter().map(ToString::to_string));
    if problems.is_empty() {
        Ok(Checked {
            group,
            warnings: v.warnings,
        })
    } else {
        Err(fail(problems))
    }
}

mod sentinel;
mod services;
mod shape;
mod tls;
mod users;

use shape::deserialize_all;

#[derive(Default)]
struct Validator {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Validator {
    fn error(&mut self, instance: Option<&str>, key: &str, message: impl Into<String>) {
        self.errors.push(Problem::new(instance, key, message));
    }
    fn warn(&mut self, instance: Option<&str>, key: &str, message: impl Into<String>) {
        self.warnings.push(Problem::new(instance, key, message));
    }

    fn group(&mut self, raw: RawFile, source: &Path, base_dir: &Path) -> Group {
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };
        let c = raw.cluster;
        let password = match (c.password, c.password_file, c.password_files) {
            (p, f, Some(files)) => {
                if p.is_some() || f.is_some() {
                    self.error(
                        None,
                        "password_files",
                        "is set with `password` or `password_file` in [cluster]: keep one",
                    );
                }
                PasswordSource::Files(self.password_files("password_files", files, &resolve))
            }
            (Some(_), Some(_), None) => {
                self.error(
                    None,
                    "password",
                    "both `password` and `password_file` are set in [cluster]: keep one",
                );
                PasswordSource::None
            }
            (Some(p), None, None) if p.is_empty() => {
                self.error(
                    None,
                    "password",
                    "is empty: set a password or remove the key",
                );
                PasswordSource::None
            }
            (Some(p), None, None) if p.chars().any(super::model::breaks_redis_conf) => {
                self.error(
                    None,
                    "password",
                    "contains whitespace or a quote, which redis.conf cannot carry safely: \
                     choose another",
                );
                PasswordSource::None
            }
            (Some(p), None, None) => PasswordSource::Inline(Secret::new(p)),
            (None, Some(path), None) => PasswordSource::File {
                path: resolve(path),
                secret: None,
            },
            (None, None, None) => {
                self.warn(
                    None,
                    "password_file",
                    "no password is set: anyone who reaches these ports can read and write \
                     the data; set `password_file` in [cluster]",
                );
                PasswordSource::None
            }
        };
        let redis_server = c.redis_server.unwrap_or_else(|| "redis-server".to_owned());
        let redis_server = if redis_server.contains('/') {
            resolve(PathBuf::from(redis_server)).display().to_string()
        } else {
            redis_server
        };
        if let Some(user) = &c.user
            && user.is_empty()
        {
            self.error(None, "user", "is empty: name a user or remove the key");
        }
        let has_password = !matches!(password, PasswordSource::None);
        let cluster = Cluster {
            name: c.name.into_string(),
            password,
            redis_server,
            run_dir: resolve(c.run_dir.unwrap_or_else(|| "/run/redisrepd".into())),
            data_dir: resolve(c.data_dir.unwrap_or_else(|| "/var/lib/redisrepd".into())),
            log_dir: c.log_dir.map(resolve),
            user: c.user,
        };
        let supervise = self.supervise(raw.supervise);
        let redis = self.directives(None, "redis", raw.redis);
        if raw.instance.is_empty() {
            self.error(
                None,
                "instance",
                "no [[instance]] is defined: add at least the master",
            );
        }
        let instances: Vec<Instance> = raw.instance.into_iter().map(|i| self.instance(i)).collect();
        let http = self.http(raw.http, raw.metrics, &instances);
        let sentinel = raw.sentinel.map(|s| self.sentinel(s));
        let hooks = self.hooks(raw.hooks, &resolve);
        let backup = self.backup(raw.backup, &resolve);
        let nodes = sentinel
            .as_ref()
            .map(|s| s.nodes.as_slice())
            .unwrap_or_default();
        let tls = raw.tls.map(|t| self.tls(t, &instances, nodes, &resolve));
        let users = self.users(raw.user, &resolve, has_password);
        let group = Group {
            source: source.to_owned(),
            cluster,
            supervise,
            redis,
            instances,
            http,
            sentinel,
            hooks,
            backup,
            tls,
            users,
        };
        self.tree(&group);
        self.backup_source(&group);
        self.sentinel_nodes(&group);
        group
    }

    fn instance(&mut self, raw: RawInstance) -> Instance {
        let name = raw.name.into_string();
        if raw.host.is_empty() {
            self.error(Some(&name), "host", "is empty: name the host that runs it");
        }
        let redis = self.directives(Some(&name), "redis", raw.redis);
        if raw.extra_bind.contains(&raw.bind) {
            self.error(
                Some(&name),
                "extra_bind",
                "repeats `bind`: list only the other addresses",
            );
        }
        Instance {
            host: raw.host,
            bind: raw.bind,
            extra_bind: raw.extra_bind,
            port: raw.port.0,
            replica_of: raw.replica_of,
            min_replicas_to_write: raw.min_replicas_to_write,
            min_replicas_max_lag: raw.min_replicas_max_lag,
            redis,
            name,
        }
    }

    /// Converts a `[redis]` table, rejecting managed keys and values redis.conf cannot hold.
    fn directives(
        &mut self,
        inst: Option<&str>,
        section: &str,
        table: toml::Table,
    ) -> Vec<Directive> {
        let mut out = Vec::new();
        for (key, value) in table {
            let shown = format!("{section}.{key}");
            let normalized = key.to_ascii_lowercase().replace('_', "-");
            if let Some((_, instead)) = MANAGED_DIRECTIVES.iter().find(|(k, _)| *k == normalized) {
                self.error(
                    inst,
                    &shown,
                    format!("redisrepd manages `{normalized}` itself; use {instead}"),
                );
                continue;
            }
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.error(inst, &shown, "is not a redis.conf directive name");
                continue;
            }
            let values = match value {
                toml::Value::String(s) => vec![s],
                toml::Value::Integer(n) => vec![n.to_string()],
                toml::Value::Boolean(b) => vec![if b { "yes" } else { "no" }.to_owned()],
                toml::Value::Array(items) => {
                    let strings: Option<Vec<String>> = items
                        .into_iter()
                        .map(|v| match v {
                            toml::Value::String(s) => Some(s),
                            toml::Value::Integer(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .collect();
                    match strings {
                        Some(s) => s,
                        None => {
                            self.error(
                                inst,
                                &shown,
                                "a list may hold only strings: one directive line each",
                            );
                            continue;
                        }
                    }
                }
                other => {
                    self.error(
                        inst,
                        &shown,
                        format!(
                            "a {} cannot be a redis.conf value: use a string, an integer, \
                             a boolean or a list of strings",
                            other.type_str()
                        ),
                    );
                    continue;
                }
            };
            if values.iter().any(|v| v.contains(['\n', '\r'])) {
                self.error(inst, &shown, "a value may not contain a line break");
                continue;
            }
            out.push(Directive { key, values });
        }
        out
    }

    /// The rules that need every instance: names, addresses, the replication tree.
    fn tree(&mut self, g: &Group) {
        let mut seen = HashSet::new();
        for inst in &g.instances {
            if !seen.insert(inst.name.as_str()) {
                self.error(
                    Some(&inst.name),
                    "name",
                    "is used by more than one [[instance]]: names must be unique",
                );
            }
        }
        let mut addresses: HashMap<(&str, std::net::IpAddr, u16), &str> = HashMap::new();
        for inst in &g.instances {
            if let Some(other) = addresses.insert((&inst.host, inst.bind, inst.port), &inst.name)
                && other != inst.name
            {
                self.error(
                    Some(&inst.name),
                    "port",
                    format!(
                        "{} on host `{}` is also used by instance `{other}`: give one of them \
                         another port",
                        inst.address(),
                        inst.host
                    ),
                );
            }
        }
        let names: HashSet<&str> = g.instances.iter().map(|i| i.name.as_str()).collect();
        let mut bad_link = false;
        for inst in &g.instances {
            if let Some(up) = &inst.replica_of {
                if up == &inst.name {
                    bad_link = true;
                    self.error(Some(&inst.name), "replica_of", "names the instance itself");
                } else if !names.contains(up.as_str()) {
                    bad_link = true;
                    self.error(
                        Some(&inst.name),
                        "replica_of",
                        format!("names `{up}`, which is not an instance in this file"),
                    );
                }
            }
        }
        let masters: Vec<&str> = g
            .instances
            .iter()
            .filter(|i| i.is_master())
            .map(|i| i.name.as_str())
            .collect();
        if !g.instances.is_empty() && masters.is_empty() && !bad_link {
            self.error(
                None,
                "replica_of",
                "every instance has `replica_of`, so there is no master: remove it from the \
                 one that should be the master",
            );
        }
        if masters.len() > 1 {
            for m in &masters[1..] {
                self.error(
                    Some(m),
                    "replica_of",
                    format!(
                        "is missing, so `{m}` would be a second master beside `{}`: one group \
                         has one master; set `replica_of`",
                        masters[0]
                    ),
                );
            }
        }
        if !bad_link {
            for inst in &g.instances {
                if let Some(cycle) = cycle_from(g, inst)
                    && cycle.first() == Some(&inst.name.as_str())
                    && cycle.iter().min() == Some(&inst.name.as_str())
                {
                    self.error(
                        Some(&inst.name),
                        "replica_of",
                        format!(
                            "forms a cycle ({} -> {}): one instance in it must be the master \
                             or replicate from outside the cycle",
                            cycle.join(" -> "),
                            cycle[0]
                        ),
                    );
                }
            }
        }
        for inst in &g.instances {
            let replicas = g.replicas_of(&inst.name).count() as u32;
            if let Some(min) = inst.min_replicas_to_write {
                if min > replicas {
                    self.error(
                        Some(&inst.name),
                        "min_replicas_to_write",
                        format!(
                            "is {min} but only {replicas} instance(s) replicate from `{}`: \
                             every write would be refused; lower it or add replicas",
                            inst.name
                        ),
                    );
                } else if min > 0 && min == replicas {
                    self.warn(
                        Some(&inst.name),
                        "min_replicas_to_write",
                        format!(
                            "equals the number of its replicas ({replicas}): while any one \
                             replica restarts, `{}` refuses every write",
                            inst.name
                        ),
                    );
                }
            }
            if inst.is_master() && replicas > 0 && !g.persists(inst) {
                self.warn(
                    Some(&inst.name),
                    "redis.save",
                    format!(
                        "master `{}` has no persistence (`save \"\"` and `appendonly no`) but \
                         has replicas: restarted empty, it would wipe them; redisrepd will \
                         never restart it on its own after a crash",
                        inst.name
                    ),
                );
            }
        }
    }
}

/// The `replica_of` chain from `inst` if it loops back to `inst`.
fn cycle_from<'a>(g: &'a Group, inst: &'a Instance) -> Option<Vec<&'a str>> {
    let mut chain = vec![inst.name.as_str()];
    let mut current = inst;
    while let Some(up) = g.upstream(current) {
        if up.name == inst.name {
            return Some(chain);
        }
        if chain.contains(&up.name.as_str()) {
            return None; // a cycle further up, reported from one of its members
        }
        chain.push(&up.name);
        current = up;
    }
    None
}
