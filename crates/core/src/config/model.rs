//! The model: a validated group, its sections with their defaults, and the problems a
//! file can have. Built by `validate`; nothing here reads files or parses TOML.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One validated replication group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The TOML file this group was read from (absolute when loaded from disk).
    pub source: PathBuf,
    pub cluster: Cluster,
    pub supervise: Supervise,
    /// `[redis]`: directives for every instance, in file order.
    pub redis: Vec<Directive>,
    /// Every instance, in file order.
    pub instances: Vec<Instance>,
    /// `[http]` (or its older name `[metrics]`).
    pub http: Http,
    /// `[sentinel]`: when set, Sentinel decides failover.
    pub sentinel: Option<Sentinel>,
    /// `[hooks]`.
    pub hooks: Hooks,
    /// `[backup]`, with defaults when absent.
    pub backup: Backup,
    /// `[tls]`: when set, every link is TLS.
    pub tls: Option<Tls>,
    /// `[[user]]`: ACL users set on every instance, in file order.
    pub users: Vec<User>,
}

/// One `[[user]]`: an ACL user set on every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// One or two password files: both are accepted, so a password rotates by listing
    /// the new one first and the old one second.
    pub password_files: Vec<PasswordFile>,
    /// The ACL rules, one token each, as `ACL SETUSER` takes them (no password rules:
    /// the passwords come from `password_files`).
    pub rules: Vec<String>,
}

impl User {
    /// The passwords read so far, in file order.
    pub fn passwords(&self) -> Vec<&Secret> {
        self.password_files
            .iter()
            .filter_map(|f| f.secret.as_ref())
            .collect()
    }
}

/// A password file and, once read by `config_file::load`, its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFile {
    pub path: PathBuf,
    pub secret: Option<Secret>,
}

/// `[tls]` with paths made absolute: each instance's and sentinel's port speaks TLS only,
/// replication and Sentinel use TLS, and redisrepd verifies every server against `ca_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The servers' certificate: one for every host, or one per host (file order).
    pub cert_file: PerHost,
    /// Its key, laid out like `cert_file`.
    pub key_file: PerHost,
    /// What every side verifies the others against.
    pub ca_file: PathBuf,
    /// `tls-auth-clients`: whether a client must present a certificate the CA signed.
    pub client_auth: ClientAuth,
    /// A digest of the files' contents as this host read them (`None` until
    /// `redisrepd_io::config_file::load` reads them): a reload tells a rotated certificate
    /// at the same path by it.
    pub contents: Option<u64>,
}

/// A path for every host, or one per host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerHost {
    Every(PathBuf),
    PerHost(Vec<(String, PathBuf)>),
}

impl PerHost {
    /// The path for `host` (`None` when the table has no entry for it).
    pub fn get(&self, host: &str) -> Option<&PathBuf> {
        match self {
            PerHost::Every(p) => Some(p),
            PerHost::PerHost(hosts) => hosts.iter().find(|(h, _)| h == host).map(|(_, p)| p),
        }
    }

    /// Every path, with the host it is for (`None`: every host).
    pub fn all(&self) -> Vec<(Option<&str>, &PathBuf)> {
        match self {
            PerHost::Every(p) => vec![(None, p)],
            PerHost::PerHost(hosts) => hosts.iter().map(|(h, p)| (Some(h.as_str()), p)).collect(),
        }
    }
}

/// `client_auth`: Redis's `tls-auth-clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client presents a certificate the CA signed (Redis's default).
    Yes,
    /// A client may present one; if it does, it must verify.
    Optional,
    /// Clients are not asked for one.
    No,
}

impl ClientAuth {
    /// The value of `tls-auth-clients`.
    pub fn directive(self) -> &'static str {
        match self {
            ClientAuth::Yes => "yes",
            ClientAuth::Optional => "optional",
            ClientAuth::No => "no",
        }
    }
}

impl Tls {
    /// The certificate and key that `host`'s servers present (and its clients, where
    /// `client_auth` asks for one).
    pub fn pair(&self, host: &str) -> Option<(&PathBuf, &PathBuf)> {
        Some((self.cert_file.get(host)?, self.key_file.get(host)?))
    }

    /// Every certificate/key pair, first the one for every host or else in file order:
    /// what a client may present (it uses the first it can read: its own host's).
    pub fn pairs(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut out = Vec::new();
        for (host, cert) in self.cert_file.all() {
            let key = match host {
                None => self.key_file.all().first().map(|(_, k)| (*k).clone()),
                Some(h) => self.key_file.get(h).cloned(),
            };
            if let Some(key) = key {
                out.push((cert.clone(), key));
            }
        }
        out
    }
}

/// `[hooks]` with defaults applied: programs the daemon runs on events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    /// Run after each change of the group's master this daemon makes or learns.
    pub on_role_change: Option<Hook>,
    /// How long a hook may run before it is killed; default 10 s.
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            on_role_change: None,
            timeout: Hooks::DEFAULT_TIMEOUT,
        }
    }
}

impl Hooks {
    /// The default `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
}

/// A program and its arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// A path (made absolute against the TOML's directory), or a bare name looked up on
    /// PATH.
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// `[backup]` with defaults applied: where `redisrepd backup` keeps snapshots, and the
/// daemon's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// Where backups are kept, on the host of the instance they are taken from.
    pub dir: PathBuf,
    /// Take one this often (`None`: only `redisrepd backup`).
    pub every: Option<Duration>,
    /// Scheduled backups keep this many of the newest of this cluster's backups in `dir`.
    pub keep: u32,
    /// The instance to take backups from (`None`: a replica in sync, else the master).
    pub from: Option<String>,
    /// A program and its arguments run after each backup, the file's path in place of `{}`
    /// (appended when no argument is `{}`).
    pub upload: Vec<String>,
    /// How long `upload` may run before it is killed.
    pub upload_timeout: Duration,
}

impl Backup {
    /// The default `dir`.
    pub const DEFAULT_DIR: &str = "/var/backups/redisrepd";
    /// The default `keep`.
    pub const DEFAULT_KEEP: u32 = 24;
    /// The default `upload_timeout`.
    pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
}

/// `[sentinel]` with defaults applied: the sentinels that monitor the group under the
/// cluster's `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentinel {
    /// Sentinels that must agree the master is down (`sentinel monitor ... <quorum>`).
    pub quorum: u32,
    /// `down-after-milliseconds`; default 30 s, Sentinel's own.
    pub down_after: Duration,
    /// `failover-timeout`; default 3 min, Sentinel's own.
    pub failover_timeout: Duration,
    /// Every node, in file order.
    pub nodes: Vec<SentinelNode>,
}

impl Sentinel {
    /// Sentinel's own default `down-after-milliseconds`.
    pub const DEFAULT_DOWN_AFTER: Duration = Duration::from_secs(30);
    /// How often Sentinel PINGs an instance at most (`SENTINEL_PING_PERIOD`), and how long
    /// after it learns of a new one it sends the first PING.
    pub const PING_PERIOD: Duration = Duration::from_secs(1);
    /// Sentinel's own default `failover-timeout`.
    pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(180);
}

/// One sentinel process: which host's daemon runs it and where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelNode {
    pub name: String,
    pub host: String,
    pub bind: IpAddr,
    pub port: u16,
}

impl SentinelNode {
    /// `bind:port`, for messages.
    pub fn address(&self) -> String {
        match self.bind {
            IpAddr::V4(ip) => format!("{ip}:{}", self.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.port),
        }
    }
}

/// `[http]` (older name `[metrics]`): where each host's daemon serves `/metrics` and the
/// health endpoints (`daemon --metrics` overrides it for one daemon).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Http {
    /// `None`: no HTTP listener.
    pub listen: Option<HttpListen>,
}

/// `[http] listen`: one address for every host, or one per host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpListen {
    /// `listen = "127.0.0.1:9765"`: every host's daemon listens there.
    Every(std::net::SocketAddr),
    /// `listen = { db1 = "...", db2 = "..." }`, in file order; `check` makes sure every
    /// host that runs instances has one.
    PerHost(Vec<(String, std::net::SocketAddr)>),
}

impl Http {
    /// Where the daemon of `host` listens, as the file says.
    pub fn address(&self, host: &str) -> Option<std::net::SocketAddr> {
        match self.listen.as_ref()? {
            HttpListen::Every(addr) => Some(*addr),
            HttpListen::PerHost(hosts) => hosts.iter().find(|(h, _)| h == host).map(|(_, a)| *a),
        }
    }
}

/// `[cluster]` with defaults applied and paths made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub password: PasswordSource,
    /// As configured: a bare name is looked up on PATH when the daemon starts.
    pub redis_server: String,
    pub run_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub user: Option<String>,
}

/// Where the group's password comes from.
#[derive(Clone, PartialEq)]
pub enum PasswordSource {
    /// No AUTH at all (`check` warns).
    None,
    /// Written in the TOML itself.
    Inline(Secret),
    /// Read from this file by [`load`]; `secret` is `None` until then.
    File {
        path: PathBuf,
        secret: Option<Secret>,
    },
    /// `password_files`: one or two files, the first used and every one accepted (a
    /// password rotates by listing the new one first and the old one second).
    Files(Vec<PasswordFile>),
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::None => f.write_str("None"),
            PasswordSource::Inline(_) => f.write_str("Inline(***)"),
            PasswordSource::File { path, .. } => write!(f, "File({})", path.display()),
            PasswordSource::Files(files) => {
                let paths: Vec<_> = files.iter().map(|p| p.path.display()).collect();
                write!(f, "Files({paths:?})")
            }
        }
    }
}

/// A password: never printed by `Debug` or `Display`, so it cannot leak into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The password itself: call only where it is handed to Redis or a 0600 file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `max_concurrent_syncs`: how many replicas of one upstream may (re)sync at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSyncs {
    /// At most this many (at least 1).
    Fixed(u32),
    /// As many as the upstream's memory headroom and replica output buffers allow, one
    /// at least (`gate::auto_admits`).
    Auto,
}

impl MaxSyncs {
    /// The value Sentinel's `parallel-syncs` and Redis's `repl-diskless-sync-max-replicas`
    /// get for a fixed limit; `None` for `auto`, where each renders its own choice.
    pub fn fixed(self) -> Option<u32> {
        match self {
            MaxSyncs::Fixed(n) => Some(n),
            MaxSyncs::Auto => None,
        }
    }
}

impl fmt::Display for MaxSyncs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxSyncs::Fixed(n) => write!(f, "{n}"),
            MaxSyncs::Auto => f.write_str("auto"),
        }
    }
}

/// `[supervise]` with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Supervise {
    pub start_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    pub crash_loop_limit: u32,
    pub crash_loop_window: Duration,
    pub max_concurrent_syncs: MaxSyncs,
    pub sync_timeout: Duration,
    pub health_interval: Duration,
}

impl Default for Supervise {
    fn default() -> Self {
        Supervise {
            start_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            restart_delay: Duration::from_secs(1),
            restart_delay_max: Duration::from_secs(60),
            crash_loop_limit: 5,
            crash_loop_window: Duration::from_secs(300),
            max_concurrent_syncs: MaxSyncs::Fixed(1),
            sync_timeout: Duration::from_secs(600),
            health_interval: Duration::from_secs(1),
        }
    }
}

/// One redis.conf directive: `key value`, or the key repeated once per list item.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub key: String,
    pub values: Vec<String>,
}

/// One `[[instance]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    pub host: String,
    pub bind: IpAddr,
    /// More addresses it listens on at `port` (`extra_bind`: a virtual IP that an
    /// `[hooks]` program moves to the master's host); it is reached at `bind` only.
    pub extra_bind: Vec<IpAddr>,
    pub port: u16,
    /// The instance this one replicates from; `None` for the master.
    pub replica_of: Option<String>,
    pub min_replicas_to_write: Option<u32>,
    pub min_replicas_max_lag: Option<u32>,
    /// `[instance.redis]`, in file order.
    pub redis: Vec<Directive>,
}

impl Instance {
    /// True for the group's one master.
    pub fn is_master(&self) -> bool {
        self.replica_of.is_none()
    }
    /// `bind:port`, for messages.
    pub fn address(&self) -> String {
        match self.bind {
            IpAddr::V4(ip) => format!("{ip}:{}", self.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", self.port),
        }
    }
}

impl Group {
    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The group's master (validation guarantees exactly one).
    pub fn master(&self) -> &Instance {
        self.instances
            .iter()
            .find(|i| i.is_master())
            .unwrap_or(&self.instances[0])
    }

    /// The instances that replicate directly from `name`, in file order.
    pub fn replicas_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances
            .iter()
            .filter(move |i| i.replica_of.as_deref() == Some(name))
    }

    /// The instance that `inst` replicates from.
    pub fn upstream(&self, inst: &Instance) -> Option<&Instance> {
        inst.replica_of.as_deref().and_then(|n| self.instance(n))
    }

    /// Hops from the master: 0 for the master, 1 for its replicas, 2 for theirs.
    pub fn depth(&self, inst: &Instance) -> usize {
        let mut depth = 0;
        let mut current = inst;
        while let Some(up) = self.upstream(current) {
            depth += 1;
            current = up;
            if depth > self.instances.len() {
                break; // a cycle, which validation rejects; never loop forever
            }
        }
        depth
    }

    /// Every instance ordered master first, then each level of replicas (parents before
    /// children), file order within a level.
    pub fn start_order_all(&self) -> Vec<&Instance> {
        let mut all: Vec<&Instance> = self.instances.iter().collect();
        all.sort_by_key(|i| self.depth(i));
        all
    }

    /// This host's instances in the order they are started.
    pub fn start_order(&self, host: &str) -> Vec<&Instance> {
        self.start_order_all()
            .into_iter()
            .filter(|i| i.host == host)
            .collect()
    }

    /// This host's instances in the order they are stopped: deepest replicas first.
    pub fn stop_order(&self, host: &str) -> Vec<&Instance> {
        let mut order = self.start_order(host);
        order.reverse();
        order
    }

    /// Every host named in the file, in first-mention order.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = Vec::new();
        for inst in &self.instances {
            if !hosts.contains(&inst.host.as_str()) {
                hosts.push(&inst.host);
            }
        }
        hosts
    }

    /// The password, once loaded: the one redisrepd uses (with `password_files`, the
    /// first).
    pub fn password(&self) -> Option<&Secret> {
        self.passwords().into_iter().next()
    }

    /// Every cluster password that is accepted, the one used first (two while one
    /// rotates), once loaded.
    pub fn passwords(&self) -> Vec<&Secret> {
        match &self.cluster.password {
            PasswordSource::None => Vec::new(),
            PasswordSource::Inline(s) => vec![s],
            PasswordSource::File { secret, .. } => secret.iter().collect(),
            PasswordSource::Files(files) => {
                files.iter().filter_map(|f| f.secret.as_ref()).collect()
            }
        }
    }

    /// The `[[user]]` called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The generated redis.conf of an instance.
    pub fn conf_path(&self, inst: &Instance) -> PathBuf {
        self.cluster.run_dir.join(format!("{}.conf", inst.name))
    }

    /// The pid file redisrepd writes for an instance (pid and process start time).
    pub fn pid_path(&self, inst: &Instance) -> PathBuf {
        self.cluster.run_dir.join(format!("{}.pid", inst.name))
    }

    /// The directory holding an instance's RDB/AOF.
    pub fn data_path(&self, inst: &Instance) -> PathBuf {
        self.cluster.data_dir.join(&inst.name)
    }

    /// The instance's own log file, when `log_dir` is set.
    pub fn log_path(&self, inst: &Instance) -> Option<PathBuf> {
        self.cluster
            .log_dir
            .as_ref()
            .map(|d| d.join(format!("{}.log", inst.name)))
    }

    /// Where the daemon for `host` keeps the group's actual master across its restarts.
    pub fn topology_path(&self, host: &str) -> PathBuf {
        self.cluster.run_dir.join(format!("{host}.topology"))
    }

    /// Where a host's daemon keeps a maintenance pause across its restarts: the UTC time
    /// it ends (RFC 3339).
    pub fn pause_path(&self, host: &str) -> PathBuf {
        self.cluster.run_dir.join(format!("{host}.pause"))
    }

    /// Where the daemon for `host` keeps the changes of master it recorded.
    pub fn history_path(&self, host: &str) -> PathBuf {
        self.cluster.run_dir.join(format!("{host}.history"))
    }

    /// The sentinel node called `name`.
    pub fn sentinel_node(&self, name: &str) -> Option<&SentinelNode> {
        self.sentinel
            .as_ref()
            .and_then(|s| s.nodes.iter().find(|n| n.name == name))
    }

    /// The sentinel nodes this host's daemon runs, in file order.
    pub fn sentinel_nodes_on<'a>(
        &'a self,
        host: &'a str,
    ) -> impl Iterator<Item = &'a SentinelNode> + 'a {
        self.sentinel
            .iter()
            .flat_map(|s| s.nodes.iter())
            .filter(move |n| n.host == host)
    }

    /// A sentinel's own directory, `data_dir/<node>`: it holds the sentinel's config file.
    /// Not `run_dir`: Sentinel rewrites that file with what it learns (its id, epochs, the
    /// current master), which must survive a reboot, and it rewrites it through a temp
    /// file and a rename in the same directory, so the directory must belong to the
    /// sentinel's user (mode 0700: Sentinel's rewrite leaves the file 0644 & ~umask).
    pub fn sentinel_dir(&self, node: &SentinelNode) -> PathBuf {
        self.cluster.data_dir.join(&node.name)
    }

    /// The sentinel's config file, `data_dir/<node>/sentinel.conf`.
    pub fn sentinel_conf_path(&self, node: &SentinelNode) -> PathBuf {
        self.sentinel_dir(node).join("sentinel.conf")
    }

    /// The pid file redisrepd writes for a sentinel (names are unique across instances
    /// and nodes, so it shares `run_dir` with the instances' pid files).
    pub fn sentinel_pid_path(&self, node: &SentinelNode) -> PathBuf {
        self.cluster.run_dir.join(format!("{}.pid", node.name))
    }

    /// The sentinel's own log file, when `log_dir` is set.
    pub fn sentinel_log_path(&self, node: &SentinelNode) -> Option<PathBuf> {
        self.cluster
            .log_dir
            .as_ref()
            .map(|d| d.join(format!("{}.log", node.name)))
    }

    /// The control socket of the daemon for `host`.
    pub fn socket_path(&self, host: &str) -> PathBuf {
        self.cluster.run_dir.join(format!("{host}.sock"))
    }

    /// The effective value of a directive for an instance (instance overrides group), with
    /// keys compared the way Redis does (case-insensitive).
    pub fn directive<'a>(&'a self, inst: &'a Instance, key: &str) -> Option<&'a [String]> {
        inst.redis
            .iter()
            .chain(self.redis.iter())
            .find(|d| d.key.eq_ignore_ascii_case(key))
            .map(|d| d.values.as_slice())
    }

    /// Whether an instance keeps its data across a restart (RDB snapshots or AOF). Redis
    /// saves by default when a config file sets no `save`, so only an explicit `save ""`
    /// together with `appendonly no` means no persistence.
    pub fn persists(&self, inst: &Instance) -> bool {
        let aof = self
            .directive(inst, "appendonly")
            .is_some_and(|v| v.iter().any(|s| s.eq_ignore_ascii_case("yes")));
        let rdb = match self.directive(inst, "save") {
            None => true,
            Some(v) => v.iter().any(|s| !s.trim().is_empty() && s.trim() != "\"\""),
        };
        aof || rdb
    }
}

/// One problem found in the file: which instance, which key, what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The instance concerned, if any.
    pub instance: Option<String>,
    /// The key (or section) concerned, e.g. `replica_of` or `[redis].port`.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Problem {
    pub fn new(instance: Option<&str>, key: &str, message: impl Into<String>) -> Self {
        Problem {
            instance: instance.map(str::to_owned),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.instance {
            Some(inst) => write!(f, "instance `{inst}`, key `{}`: {}", self.key, self.message),
            None => write!(f, "key `{}`: {}", self.key, self.message),
        }
    }
}

/// A file that cannot be used: every problem found, each naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, p) in self.problems.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {p}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A valid group plus the warnings `check` prints.
#[derive(Debug, Clone)]
pub struct Checked {
    pub group: Group,
    pub warnings: Vec<Problem>,
}

/// True for a character a password cannot hold because it is written unquoted into
/// redis.conf: whitespace splits the line, and Redis opens a quoted string at either quote
/// (`requirepass it's` is an "Unbalanced quotes" error and Redis refuses to start).
pub fn breaks_redis_conf(c: char) -> bool {
    c.is_whitespace() || c == '"' || c == '\''
}
