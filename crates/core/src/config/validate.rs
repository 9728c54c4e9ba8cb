//! Turns the raw file into a [`Group`]: defaults, paths, the replication tree, and every
//! rule of `spec/config.md`. All problems are collected before reporting.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawFile, RawInstance, RawSentinel};
use super::{
    Checked, Cluster, ConfigError, Directive, Group, Http, HttpListen, Instance, MaxSyncs,
    PasswordSource, Problem, Secret, Sentinel, SentinelNode, Supervise,
};

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

/// What [`deserialize_all`] found.
struct Shape {
    /// The file as deserialized once every problem was taken out; `None` when one could
    /// not be.
    raw: Option<RawFile>,
    /// toml's message for each problem, in the file's order.
    errors: Vec<String>,
    /// A bad or missing value was replaced by a stand-in to read on.
    stand_ins: bool,
}

/// Values tried in place of a bad or missing one, so that deserializing goes on past it:
/// one of them suits each type of the file.
const STAND_INS: &[&str] = &["1", "\"x\"", "\"127.0.0.1\"", "false", "[]", "{}"];

/// At most this many problems are reported (a file of another program, say).
const MAX_PROBLEMS: usize = 50;

/// Deserializes `text` into a [`RawFile`], collecting every problem of shape (unknown keys,
/// values of the wrong type or out of range, missing keys) rather than the first: toml
/// stops at the first, so each is taken out of the parsed document (an unknown key or a
/// bad value removed, a stand-in put where a required key is missing) and the document
/// deserialized again. The spans stay those of `text`, so each message shows its own line.
/// A syntax error is the only problem reported: it is the `Err`.
fn deserialize_all(text: &str) -> Result<Shape, String> {
    use serde::Deserialize as _;
    let doc = toml::de::DeTable::parse(text).map_err(|e| describe_toml_error(text, &e))?;
    let span = doc.span();
    let mut root = toml::de::DeValue::Table(doc.into_inner());
    let attempt = |root: &toml::de::DeValue<'_>| -> Result<RawFile, toml::de::Error> {
        let toml::de::DeValue::Table(t) = root else {
            unreachable!("the root stays a table")
        };
        let de = toml::de::Deserializer::from(toml::Spanned::new(span.clone(), t.clone()));
        RawFile::deserialize(de).map_err(|mut e| {
            e.set_input(Some(text));
            e
        })
    };
    let mut shape = Shape {
        raw: None,
        errors: Vec::new(),
        stand_ins: false,
    };
    let mut repairs = Repairs::default();
    let mut outcome = attempt(&root);
    for _ in 0..4 * MAX_PROBLEMS {
        let Err(e) = &outcome else { break };
        let consequence = repairs.caused(&root, e);
        if !consequence {
            shape.errors.push(describe_toml_error(text, e));
        }
        if shape.errors.len() >= MAX_PROBLEMS {
            return Ok(shape);
        }
        let Some((next, stand_in)) = repairs.repair(&mut root, e, &attempt) else {
            return Ok(shape);
        };
        shape.stand_ins |= stand_in;
        outcome = next;
    }
    shape.raw = outcome.ok();
    Ok(shape)
}

/// One step into the parsed document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

type Span = std::ops::Range<usize>;
type Attempt<'a, 'i> = dyn Fn(&toml::de::DeValue<'i>) -> Result<RawFile, toml::de::Error> + 'a;

/// What [`deserialize_all`] took out or put in so far: the errors that follow from its own
/// changes are not the file's.
#[derive(Default)]
struct Repairs {
    /// Bad values removed: (table, key). A "missing field" for one of them follows from
    /// the removal (the key is required): a stand-in goes there, nothing is reported.
    removed: Vec<(Vec<Step>, String)>,
    /// The spans of stand-in tables: their missing keys are not the file's either.
    tables: Vec<Span>,
}

impl Repairs {
    /// Whether `e` follows from an earlier repair rather than from the file.
    fn caused(&self, root: &toml::de::DeValue<'_>, e: &toml::de::Error) -> bool {
        let (Some(key), Some(at)) = (missing_field(e.message()), e.span()) else {
            return false;
        };
        if self.tables.contains(&at) {
            return true;
        }
        locate(root, &at)
            .is_some_and(|(table, _)| self.removed.iter().any(|(t, k)| *t == table && k == key))
    }

    /// Changes `root` so that the error `e` goes away; the next attempt's outcome, and
    /// whether a stand-in value was used. `None` when `e` cannot be taken out (then no
    /// later problem can be found).
    fn repair<'i>(
        &mut self,
        root: &mut toml::de::DeValue<'i>,
        e: &toml::de::Error,
        attempt: &Attempt<'_, 'i>,
    ) -> Option<(Result<RawFile, toml::de::Error>, bool)> {
        let at = e.span()?;
        if let Some(key) = missing_field(e.message()) {
            let (table, on_key) = locate(root, &at)?;
            if on_key {
                return None;
            }
            // The stand-in's own span: empty, at the end of the table's, so that neither
            // it nor its key is taken for the table when a later error points there.
            let mark = at.end..at.end;
            // The next error must be about something else: not the stand-in's type, not
            // this key missing still.
            let gone = |next: &Result<RawFile, toml::de::Error>| match next {
                Ok(_) => true,
                Err(n) => {
                    n.span() != Some(mark.clone())
                        && !(n.span() == Some(at.clone())
                            && missing_field(n.message()) == Some(key))
                }
            };
            for stand_in in STAND_INS {
                let value = stand_in_value(stand_in, &mark)?;
                let is_table = matches!(value.get_ref(), toml::de::DeValue::Table(_));
                let toml::de::DeValue::Table(t) = node_mut(root, &table)? else {
                    return None;
                };
                t.insert(
                    toml::Spanned::new(mark.clone(), key.to_owned().into()),
                    value,
                );
                let next = attempt(root);
                if gone(&next) {
                    if is_table {
                        self.tables.push(mark);
                    }
                    self.removed.retain(|(t, k)| !(*t == table && k == key));
                    return Some((next, true));
                }
            }
            return None;
        }
        let (mut path, on_key) = locate(root, &at)?;
        // A bad element of an array of values: the whole array goes.
        while matches!(path.last(), Some(Step::Index(_)))
            && !matches!(node_mut(root, &path), Some(toml::de::DeValue::Table(_)))
        {
            path.pop();
        }
        let Some(Step::Key(key)) = path.pop() else {
            return None;
        };
        let toml::de::DeValue::Table(t) = node_mut(root, &path)? else {
            return None;
        };
        t.remove(key.as_str())?;
        if !on_key {
            self.removed.push((path, key));
        }
        Some((attempt(root), false))
    }
}

/// The key of serde's "missing field `KEY`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// A stand-in value parsed from TOML, placed at `span`.
fn stand_in_value<'i>(
    text: &'static str,
    span: &std::ops::Range<usize>,
) -> Option<toml::Spanned<toml::de::DeValue<'i>>> {
    let value = toml::de::DeValue::parse(text).ok()?.into_inner();
    Some(toml::Spanned::new(span.clone(), value))
}

/// The deepest entry of `root` whose key (`true`) or value (`false`) the span `at` is, or
/// else whose value holds it: its path.
fn locate(root: &toml::de::DeValue<'_>, at: &std::ops::Range<usize>) -> Option<(Vec<Step>, bool)> {
    let mut best: Option<(Vec<Step>, bool, usize)> = None;
    let mut path = Vec::new();
    // The root: a key missing from the file's top level.
    let end = match root {
        toml::de::DeValue::Table(t) => t.values().map(|v| v.span().end).max().unwrap_or(0),
        _ => 0,
    };
    if at.end <= end || at.start == 0 {
        best = Some((Vec::new(), false, usize::MAX));
    }
    visit(root, at, &mut path, &mut best);
    best.map(|(p, on_key, _)| (p, on_key))
}

/// [`locate`]'s walk: an exact key or value span wins over a value that holds `at`, and a
/// smaller holder over a larger one.
fn visit(
    value: &toml::de::DeValue<'_>,
    at: &std::ops::Range<usize>,
    path: &mut Vec<Step>,
    best: &mut Option<(Vec<Step>, bool, usize)>,
) {
    let consider = |path: &Vec<Step>,
                    key: Option<std::ops::Range<usize>>,
                    span: std::ops::Range<usize>,
                    best: &mut Option<(Vec<Step>, bool, usize)>| {
        // Rank: 0 exact key, 1 exact value, 2 + width for a holder.
        let rank = if key.as_ref() == Some(at) {
            Some((0, true))
        } else if span == *at {
            Some((1, false))
        } else if span.start <= at.start && at.end <= span.end {
            Some((2 + (span.end - span.start), false))
        } else {
            None
        };
        if let Some((rank, on_key)) = rank
            && best
                .as_ref()
                .is_none_or(|(_, _, r)| rank < *r || (rank == *r && rank < 2))
        {
            *best = Some((path.clone(), on_key, rank));
        }
    };
    match value {
        toml::de::DeValue::Table(t) => {
            for (k, v) in t {
                path.push(Step::Key(k.get_ref().to_string()));
                consider(path, Some(k.span()), v.span(), best);
                visit(v.get_ref(), at, path, best);
                path.pop();
            }
        }
        toml::de::DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Step::Index(i));
                consider(path, None, v.span(), best);
                visit(v.get_ref(), at, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The value at `path` under `root`.
fn node_mut<'a, 'i>(
    root: &'a mut toml::de::DeValue<'i>,
    path: &[Step],
) -> Option<&'a mut toml::de::DeValue<'i>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(root);
    };
    let next = match (first, root) {
        (Step::Key(k), toml::de::DeValue::Table(t)) => t.get_mut(k.as_str())?.get_mut(),
        (Step::Index(i), toml::de::DeValue::Array(a)) => a.get_mut(*i)?.get_mut(),
        _ => return None,
    };
    node_mut(next, rest)
}

/// toml's own message shows line, column and a caret; add which `[[instance]]` it is in,
/// because a `port = "x"` line alone does not say which of five instances is wrong.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let base = err.to_string().trim_end().to_owned();
    let Some(span) = err.span() else { return base };
    // Up to the end of the error's line: a missing key is reported at its table's
    // `[[instance]]` header, which must count as the instance the error is in.
    let start = span.start.min(text.len());
    let line_end = text[start..].find('\n').map_or(text.len(), |n| start + n);
    let before = &text[..line_end];
    let index = before
        .lines()
        .filter(|l| l.trim_start().starts_with("[[instance]]"))
        .count();
    if index == 0 || is_after_other_section(before) {
        return base;
    }
    let name = toml::from_str::<toml::Table>(text).ok().and_then(|t| {
        t.get("instance")?
            .as_array()?
            .get(index - 1)?
            .get("name")?
            .as_str()
            .map(str::to_owned)
    });
    match name {
        Some(name) => format!("in instance `{name}`: {base}"),
        None => format!("in [[instance]] number {index}: {base}"),
    }
}

/// True when the last section header before the error is a top-level one such as
/// `[supervise]`, so the error is not inside an instance.
fn is_after_other_section(before: &str) -> bool {
    before
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('['))
        .is_some_and(|l| !l.starts_with("[[instance]]") && !l.starts_with("[instance."))
}

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
        let password = match (c.password, c.password_file) {
            (Some(_), Some(_)) => {
                self.error(
                    None,
                    "password",
                    "both `password` and `password_file` are set in [cluster]: keep one",
                );
                PasswordSource::None
            }
            (Some(p), None) if p.is_empty() => {
                self.error(
                    None,
                    "password",
                    "is empty: set a password or remove the key",
                );
                PasswordSource::None
            }
            (Some(p), None) if p.chars().any(super::breaks_redis_conf) => {
                self.error(
                    None,
                    "password",
                    "contains whitespace or a quote, which redis.conf cannot carry safely: \
                     choose another",
                );
                PasswordSource::None
            }
            (Some(p), None) => PasswordSource::Inline(Secret::new(p)),
            (None, Some(path)) => PasswordSource::File {
                path: resolve(path),
                secret: None,
            },
            (None, None) => {
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
        };
        self.tree(&group);
        self.backup_source(&group);
        self.sentinel_nodes(&group);
        group
    }

    fn hooks(
        &mut self,
        raw: super::raw::RawHooks,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> super::Hooks {
        let timeout = raw.timeout.unwrap_or(super::Hooks::DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            self.error(None, "hooks.timeout", "must be longer than zero");
        }
        let on_role_change = match raw.on_role_change {
            None => None,
            Some(argv) => match argv.split_first() {
                Some((program, args)) if !program.trim().is_empty() => {
                    // A path is taken from the TOML's directory; a bare name from PATH.
                    let program = if program.contains('/') {
                        resolve(PathBuf::from(program))
                    } else {
                        PathBuf::from(program)
                    };
                    Some(super::Hook {
                        program,
                        args: args.to_vec(),
                    })
                }
                _ => {
                    self.error(
                        None,
                        "hooks.on_role_change",
                        "names no program: write [\"PROGRAM\", \"ARG\", ...] or remove the key",
                    );
                    None
                }
            },
        };
        super::Hooks {
            on_role_change,
            timeout,
        }
    }

    /// `[http]`, or `[metrics]` (its older name); a table needs every host that runs
    /// instances, and only those.
    fn http(
        &mut self,
        http: super::raw::RawHttp,
        metrics: super::raw::RawHttp,
        instances: &[Instance],
    ) -> Http {
        let listen = match (http.listen, metrics.listen) {
            (Some(_), Some(_)) => {
                self.error(
                    None,
                    "metrics.listen",
                    "both [http] and [metrics] set `listen`: [metrics] is the older name of \
                     [http]; keep only `[http] listen`",
                );
                return Http::default();
            }
            (Some(l), None) | (None, Some(l)) => l,
            (None, None) => return Http::default(),
        };
        let listen = match listen {
            super::raw::HttpListen::Every(addr) => HttpListen::Every(addr),
            super::raw::HttpListen::PerHost(hosts) => {
                let mut runs: Vec<&str> = Vec::new();
                for i in instances {
                    if !runs.contains(&i.host.as_str()) {
                        runs.push(&i.host);
                    }
                }
                for (host, _) in &hosts {
                    if !runs.contains(&host.as_str()) {
                        self.error(
                            None,
                            "http.listen",
                            format!(
                                "host `{host}` runs no instance (hosts: {}): fix the name or \
                                 remove it",
                                runs.join(", ")
                            ),
                        );
                    }
                }
                for host in &runs {
                    if !hosts.iter().any(|(h, _)| h == host) {
                        self.error(
                            None,
                            "http.listen",
                            format!(
                                "no address for host `{host}`, which runs instances: add \
                                 `{host} = \"ADDR:PORT\"` to the table, or write one address \
                                 for every host (listen = \"ADDR:PORT\")"
                            ),
                        );
                    }
                }
                HttpListen::PerHost(hosts)
            }
        };
        Http {
            listen: Some(listen),
        }
    }

    fn backup(
        &mut self,
        raw: super::raw::RawBackup,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> super::Backup {
        use super::Backup;
        let keep = match raw.keep {
            None => Backup::DEFAULT_KEEP,
            Some(k) => u32::try_from(k)
                .ok()
                .filter(|k| *k >= 1)
                .unwrap_or_else(|| {
                    self.error(
                        None,
                        "backup.keep",
                        format!("is {k}: keep at least 1 backup"),
                    );
                    Backup::DEFAULT_KEEP
                }),
        };
        if raw.every.is_some_and(|d| d < Duration::from_secs(1)) {
            self.error(
                None,
                "backup.every",
                "is shorter than 1s: write e.g. \"1h\"",
            );
        }
        let upload_empty = raw
            .upload
            .as_ref()
            .is_some_and(|u| u.first().is_none_or(String::is_empty));
        let upload = raw.upload.unwrap_or_default();
        if upload_empty {
            self.error(
                None,
                "backup.upload",
                "names no program: write [\"PROGRAM\", \"ARG\", ...] or remove the key",
            );
        }
        Backup {
            dir: resolve(raw.dir.unwrap_or_else(|| Backup::DEFAULT_DIR.into())),
            every: raw.every,
            keep,
            from: raw.from,
            upload,
            upload_timeout: raw.upload_timeout.unwrap_or(Backup::DEFAULT_UPLOAD_TIMEOUT),
        }
    }

    /// `[backup] from` names an instance of the file.
    fn backup_source(&mut self, g: &Group) {
        if let Some(from) = &g.backup.from
            && g.instance(from).is_none()
        {
            let names: Vec<String> = g
                .instances
                .iter()
                .map(|i| format!("`{}`", i.name))
                .collect();
            self.error(
                None,
                "backup.from",
                format!(
                    "names no instance `{from}`; instances: {}",
                    names.join(", ")
                ),
            );
        }
    }

    fn supervise(&mut self, raw: super::raw::RawSupervise) -> Supervise {
        let d = Supervise::default();
        let mut s = Supervise {
            start_timeout: raw.start_timeout.unwrap_or(d.start_timeout),
            shutdown_timeout: raw.shutdown_timeout.unwrap_or(d.shutdown_timeout),
            restart_delay: raw.restart_delay.unwrap_or(d.restart_delay),
            restart_delay_max: raw.restart_delay_max.unwrap_or(d.restart_delay_max),
            crash_loop_limit: raw.crash_loop_limit.unwrap_or(d.crash_loop_limit),
            crash_loop_window: raw.crash_loop_window.unwrap_or(d.crash_loop_window),
            max_concurrent_syncs: d.max_concurrent_syncs,
            sync_timeout: raw.sync_timeout.unwrap_or(d.sync_timeout),
            health_interval: raw.health_interval.unwrap_or(d.health_interval),
        };
        for (key, value) in [
            ("start_timeout", s.start_timeout),
            ("shutdown_timeout", s.shutdown_timeout),
            ("sync_timeout", s.sync_timeout),
            ("health_interval", s.health_interval),
            ("crash_loop_window", s.crash_loop_window),
        ] {
            if value.is_zero() {
                self.error(
                    None,
                    &format!("supervise.{key}"),
                    "must be longer than zero",
                );
            }
        }
        if s.restart_delay_max < s.restart_delay {
            self.error(
                None,
                "supervise.restart_delay_max",
                "is shorter than `restart_delay`: make it at least as long",
            );
        }
        if s.crash_loop_limit == 0 {
            self.error(None, "supervise.crash_loop_limit", "must be at least 1");
        }
        if let Some(v) = &raw.max_concurrent_syncs {
            s.max_concurrent_syncs = self.max_syncs(v);
        }
        s
    }

    /// `max_concurrent_syncs`: an integer of at least 1, or `"auto"`. A bad value is
    /// reported and replaced by the default, so the other checks still run.
    fn max_syncs(&mut self, value: &toml::Value) -> MaxSyncs {
        let allowed = "use an integer of at least 1 (how many replicas of one upstream may \
                       sync at once), or \"auto\" (as many as its memory allows)";
        let problem = match value {
            toml::Value::Integer(n) => match u32::try_from(*n) {
                Ok(n) if n >= 1 => return MaxSyncs::Fixed(n),
                Ok(_) | Err(_) if *n <= 0 => {
                    format!("is {n}: at least 1, or no replica could ever sync; {allowed}")
                }
                _ => format!("is {n}, too large; {allowed}"),
            },
            toml::Value::String(s) if s == "auto" => return MaxSyncs::Auto,
            toml::Value::String(s) => format!("is \"{s}\"; {allowed}"),
            other => format!("is a {}; {allowed}", other.type_str()),
        };
        self.error(None, "supervise.max_concurrent_syncs", problem);
        Supervise::default().max_concurrent_syncs
    }

    /// `[sentinel]` on its own: quorum, durations, each node's host.
    fn sentinel(&mut self, raw: RawSentinel) -> Sentinel {
        let quorum = match u32::try_from(raw.quorum) {
            Ok(q) if q >= 1 => q,
            _ => {
                self.error(
                    None,
                    "sentinel.quorum",
                    format!(
                        "is {}: at least 1 sentinel must agree that the master is down",
                        raw.quorum
                    ),
                );
                1
            }
        };
        let s = Sentinel {
            quorum,
            down_after: raw.down_after.unwrap_or(Sentinel::DEFAULT_DOWN_AFTER),
            failover_timeout: raw
                .failover_timeout
                .unwrap_or(Sentinel::DEFAULT_FAILOVER_TIMEOUT),
            nodes: raw
                .nodes
                .into_iter()
                .map(|n| SentinelNode {
                    name: n.name.into_string(),
                    host: n.host,
                    bind: n.bind,
                    port: n.port.0,
                })
                .collect(),
        };
        // Sentinel counts in milliseconds; below one it would read 0 and refuse to start.
        for (key, value) in [
            ("down_after", s.down_after),
            ("failover_timeout", s.failover_timeout),
        ] {
            if value.as_millis() == 0 {
                self.error(
                    None,
                    &format!("sentinel.{key}"),
                    "must be at least 1ms (Sentinel counts in milliseconds)",
                );
            }
        }
        // Sentinel PINGs each instance every min(down_after, 1 s), and times a new link
        // (a new master after each failover, every instance when a sentinel starts) from
        // its creation, sending its first PING only 1 s after it. With down_after at 1 s
        // or less it judges that instance down before the answer can come: a moment of
        // `+sdown` each time, and when the other sentinels agree, a second failover
        // (measured on 7.0: 1 test run in ~30).
        if s.down_after <= Sentinel::PING_PERIOD && s.down_after.as_millis() > 0 {
            self.warn(
                None,
                "sentinel.down_after",
                format!(
                    "is {}ms: Sentinel sends its first PING to a new master only 1 s after it \
                     learns of it, so with down_after at 1s or less it judges every new master \
                     down for a moment, and may fail over a second time right after a \
                     failover; use at least 2s",
                    s.down_after.as_millis()
                ),
            );
        }
        if raw.quorum >= 1 && (s.nodes.len() as i64) < raw.quorum {
            self.error(
                None,
                "sentinel.nodes",
                format!(
                    "lists {} node(s) but `quorum` is {}: that many sentinels could never \
                     agree; add nodes or lower `quorum`",
                    s.nodes.len(),
                    raw.quorum
                ),
            );
        }
        for n in &s.nodes {
            if n.host.is_empty() {
                self.error(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}`: `host` is empty: name the host whose daemon runs it",
                        n.name
                    ),
                );
            }
        }
        s
    }

    /// The rules between sentinel nodes and instances: names and addresses are shared.
    /// A node's host need not run an instance: a third host with only a sentinel is the
    /// usual tie-breaker.
    fn sentinel_nodes(&mut self, g: &Group) {
        let Some(s) = &g.sentinel else { return };
        let mut names: HashSet<&str> = g.instances.iter().map(|i| i.name.as_str()).collect();
        let instance_names = names.clone();
        for n in &s.nodes {
            if !names.insert(&n.name) {
                let other = if instance_names.contains(n.name.as_str()) {
                    "an [[instance]]"
                } else {
                    "another sentinel node"
                };
                self.error(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}`: the name is also used by {other}: names must be unique \
                         (they name pid, log and data files)",
                        n.name
                    ),
                );
            }
        }
        let mut addresses: HashMap<(&str, std::net::IpAddr, u16), String> = g
            .instances
            .iter()
            .map(|i| {
                (
                    (i.host.as_str(), i.bind, i.port),
                    format!("instance `{}`", i.name),
                )
            })
            .collect();
        for n in &s.nodes {
            let key = (n.host.as_str(), n.bind, n.port);
            if let Some(other) = addresses.get(&key) {
                self.error(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}`: {} on host `{}` is also used by {other}: give one of them \
                         another port",
                        n.name,
                        n.address(),
                        n.host
                    ),
                );
            } else {
                addresses.insert(key, format!("sentinel node `{}`", n.name));
            }
        }
        // A sentinel announces its `bind` to the others (`announce-ip`), and Redis 6.2 also
        // sends its own connections from it (the first `bind` address: there is no
        // `bind-source-addr` before 7.0). A loopback address serves only when everything
        // on the other hosts is on loopback too (one machine, as in tests).
        for n in s.nodes.iter().filter(|n| n.bind.is_loopback()) {
            let remote = g
                .instances
                .iter()
                .filter(|i| i.host != n.host && !i.bind.is_loopback())
                .map(|i| {
                    format!(
                        "instance `{}` on host `{}` is at {}",
                        i.name, i.host, i.bind
                    )
                })
                .chain(
                    s.nodes
                        .iter()
                        .filter(|o| o.host != n.host && !o.bind.is_loopback())
                        .map(|o| {
                            format!("node `{}` on host `{}` is at {}", o.name, o.host, o.bind)
                        }),
                )
                .next();
            if let Some(remote) = remote {
                self.warn(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}` binds {}, a loopback address, while {remote}: the other \
                         hosts cannot reach it (it announces its `bind`), and on Redis 6.2 its \
                         own connections leave from that address and reach no other host; \
                         bind it to an address of host `{}` that the other hosts reach",
                        n.name, n.bind, n.host
                    ),
                );
            }
        }
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
