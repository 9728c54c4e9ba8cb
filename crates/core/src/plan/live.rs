//! A rendered redis.conf read back as directives, and what of a change between two of them
//! a running server takes by `CONFIG SET` and `REPLICAOF` (the rest means a restart).

use crate::config::Secret;

/// What changes in a running instance's config that the server can take at runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    "tls-port",
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

/// Directives of passwords and ACL users: `acl::auth_change` applies them, before the
/// rest, on every instance.
pub const AUTH_KEYS: &[&str] = &["requirepass", "masterauth", "masteruser", "user"];

/// A value as redis.conf parses it: `""` is the empty string, and a quoted path (as
/// `render::quote_path` writes it) loses its quotes and escapes.
fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => value.to_owned(),
    }
}

/// The `[tls]` settings a running server re-reads its certificate files for: set together,
/// in one `CONFIG SET`, so that a new certificate is never checked against the old key.
pub const TLS_FILE_KEYS: [&str; 3] = ["tls-cert-file", "tls-key-file", "tls-ca-cert-file"];

/// Adds (or moves to the end, together) the settings that make a running server load its
/// certificate files again, with their values from the rendered `conf`: `CONFIG SET` of
/// the same paths re-reads rotated files.
pub fn reload_tls_files(change: &mut LiveChange, conf: &str) {
    change
        .set
        .retain(|(k, _)| !TLS_FILE_KEYS.contains(&k.as_str()));
    let dirs = directives(conf);
    for key in TLS_FILE_KEYS {
        if let Some((_, values)) = dirs.iter().find(|(k, _)| k == key)
            && let Some(v) = values.first()
        {
            change.set.push((key.to_owned(), Secret::new(unquote(v))));
        }
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
        if AUTH_KEYS.contains(&key.as_str()) {
            continue;
        }
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
        // Passwords and users change first, everywhere, by their own step (a replica
        // restarted with the new `masterauth` must find it on its upstream).
        if AUTH_KEYS.contains(&key.as_str()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_certificate_is_set_live_without_the_quotes_of_redis_conf() {
        let old = "tls-port 6379\ntls-cert-file \"/etc/a b/old.crt\"\n";
        let new = "tls-port 6379\ntls-cert-file \"/etc/a b/new \\\"x\\\".crt\"\n";
        let change = live_change(old, new).expect("live");
        assert_eq!(change.set.len(), 1);
        assert_eq!(change.set[0].0, "tls-cert-file");
        assert_eq!(change.set[0].1.expose(), "/etc/a b/new \"x\".crt");
        let mut rotated = LiveChange::default();
        reload_tls_files(
            &mut rotated,
            "tls-cert-file \"/c\"\ntls-key-file \"/k\"\ntls-ca-cert-file \"/ca\"\n",
        );
        let keys: Vec<&str> = rotated.set.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, TLS_FILE_KEYS);
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
}
