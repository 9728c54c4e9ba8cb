//! A replication group for daemon tests: its TOML in a temp dir, one daemon per host, the
//! CLI against it, and cleanup that leaves no redis-server behind (also after a panic or a
//! SIGKILLed daemon).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::{self, ProcGuard, Run, TestDir};
use redisrepd_testkit::{Pki, TlsFiles};

/// The password every test group uses. Long and unusual, so a leak is easy to grep.
pub const PASSWORD: &str = "pw-Zq81-never-leak";

/// Generous upper bounds: the 2-core CI machine is slow, so these are never the
/// expected duration, only the point at which a test gives up.
pub const UP: Duration = Duration::from_secs(60);

/// One instance of a test group.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub host: String,
    pub replica_of: Option<String>,
    pub ip: IpAddr,
    pub port: u16,
    /// Extra lines inside this `[[instance]]` (e.g. `min_replicas_to_write = 1`).
    pub extra: String,
}

impl Member {
    /// An instance with its own loopback address and a free port.
    pub fn new(name: &str, host: &str, replica_of: Option<&str>) -> Member {
        let ip = util::loopback_ip();
        Member {
            name: name.to_owned(),
            host: host.to_owned(),
            replica_of: replica_of.map(str::to_owned),
            ip,
            port: util::free_port(ip),
            extra: String::new(),
        }
    }
}

/// Builds a group: instances, `[supervise]` and `[redis]` lines, and `[tls]` when asked.
pub struct Builder {
    members: Vec<Member>,
    supervise: String,
    redis: String,
    cluster_extra: String,
    tls: Option<TlsOpts>,
}

/// How a test group's `[tls]` is written (see [`Builder::tls`]).
#[derive(Clone, Default)]
struct TlsOpts {
    client_auth: Option<String>,
    per_host: Vec<String>,
}

/// A test group's `[tls]`: the PKI in its dir and how the section reads.
#[derive(Clone)]
pub struct GroupTls {
    /// The CA and the pairs it issued (`redis`, or one per host named after it).
    pub pki: Pki,
    /// `client_auth` as written; `None`: the key is left out (Redis's default, "yes").
    pub client_auth: Option<String>,
    /// The hosts with a pair of their own (`cert_file = { a = ..., b = ... }`); empty:
    /// one pair, `pair`, for every host.
    pub per_host: Vec<String>,
    /// The name of the pair for every host (`redis`: `redis.crt`, `redis.key`); a test
    /// that moves the group to new files changes it.
    pub pair: String,
}

impl GroupTls {
    /// The `[tls]` section.
    pub fn section(&self) -> String {
        let path = |name: &str| self.pki.path(name).display().to_string();
        let (cert, key) = if self.per_host.is_empty() {
            (
                format!("\"{}\"", path(&format!("{}.crt", self.pair))),
                format!("\"{}\"", path(&format!("{}.key", self.pair))),
            )
        } else {
            let table = |ext: &str| {
                let entries: Vec<String> = self
                    .per_host
                    .iter()
                    .map(|h| format!("{h} = \"{}\"", path(&format!("{h}.{ext}"))))
                    .collect();
                format!("{{ {} }}", entries.join(", "))
            };
            (table("crt"), table("key"))
        };
        let mut t = format!(
            "[tls]\ncert_file = {cert}\nkey_file = {key}\nca_file = \"{}\"\n",
            self.pki.ca().display()
        );
        if let Some(auth) = &self.client_auth {
            let _ = writeln!(t, "client_auth = \"{auth}\"");
        }
        t
    }

    /// What the tests' clients use: the CA, and a pair it signed (the one for every host,
    /// or the first host's) unless `client_auth = "no"`, where they present none.
    pub fn client(&self) -> TlsFiles {
        if self.client_auth.as_deref() == Some("no") {
            return self.pki.anonymous();
        }
        self.pki
            .client(self.per_host.first().map_or("redis", String::as_str))
    }
}

impl Builder {
    /// Fast supervision settings for tests; `save` on, AOF off (a replica restarted from
    /// its RDB resumes with a partial resync).
    pub fn new() -> Builder {
        Builder {
            members: Vec::new(),
            supervise: "start_timeout = \"30s\"\nshutdown_timeout = \"20s\"\nrestart_delay = \"100ms\"\n\
                        restart_delay_max = \"1s\"\nhealth_interval = \"100ms\"\nsync_timeout = \"60s\"\n"
                .to_owned(),
            redis: "save = [\"3600 1\"]\nappendonly = \"no\"\n".to_owned(),
            cluster_extra: String::new(),
            tls: None,
        }
    }

    /// `[tls]`: a throw-away PKI (made with `openssl` in the test dir), one certificate
    /// for every host, `client_auth` left to its default ("yes"). The cluster's own
    /// connections (`con`, `set`, `info`, `connect`, `writer_opts`) then use TLS.
    pub fn tls(mut self) -> Builder {
        self.tls.get_or_insert_with(TlsOpts::default);
        self
    }

    /// [`Builder::tls`] with `client_auth = "<value>"` written out.
    pub fn tls_client_auth(mut self, value: &str) -> Builder {
        self.tls.get_or_insert_with(TlsOpts::default).client_auth = Some(value.to_owned());
        self
    }

    /// [`Builder::tls`] with a certificate of its own for each of `hosts` (every host
    /// that runs an instance or a sentinel), as a table per host.
    pub fn tls_per_host(mut self, hosts: &[&str]) -> Builder {
        self.tls.get_or_insert_with(TlsOpts::default).per_host =
            hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    /// Adds an instance on `host`, with its own loopback address and a free port.
    pub fn instance(mut self, name: &str, host: &str, replica_of: Option<&str>) -> Builder {
        self.members.push(Member::new(name, host, replica_of));
        self
    }

    /// Adds lines to the last instance added.
    pub fn with(mut self, lines: &str) -> Builder {
        if let Some(m) = self.members.last_mut() {
            m.extra.push_str(lines);
            m.extra.push('\n');
        }
        self
    }

    /// Adds `[supervise]` lines (later keys must not repeat earlier ones: replace instead).
    pub fn supervise(mut self, key: &str, value: &str) -> Builder {
        let kept: Vec<&str> = self
            .supervise
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .collect();
        self.supervise = format!("{}\n{key} = {value}\n", kept.join("\n"));
        self
    }

    /// Replaces the `[redis]` section.
    pub fn redis(mut self, lines: &str) -> Builder {
        self.redis = lines.to_owned();
        self
    }

    /// Adds lines to `[cluster]`.
    pub fn cluster(mut self, lines: &str) -> Builder {
        self.cluster_extra.push_str(lines);
        self.cluster_extra.push('\n');
        self
    }

    /// Writes the TOML (and with `[tls]` the PKI) into a fresh temp dir.
    pub fn build(self) -> Cluster {
        let dir = TestDir::new();
        let tls = self.tls.map(|opts| {
            let pki = Pki::create(&dir.join("tls"));
            // Every address a test of this process may give an instance or a sentinel:
            // sentinels' addresses are chosen after the build.
            let ips: Vec<IpAddr> = std::iter::once(IpAddr::from([127, 0, 0, 1]))
                .chain(util::loopback_ips())
                .collect();
            if opts.per_host.is_empty() {
                pki.issue("redis", &ips);
            }
            for host in &opts.per_host {
                pki.issue(host, &ips);
            }
            GroupTls {
                pki,
                client_auth: opts.client_auth,
                per_host: opts.per_host,
                pair: "redis".to_owned(),
            }
        });
        let cluster = Cluster {
            config: dir.join("group.toml"),
            dir,
            members: self.members,
            supervise: self.supervise,
            redis: self.redis,
            cluster_extra: self.cluster_extra,
            redis_server: util::redis_server(),
            extra_sections: String::new(),
            tls,
            daemons: BTreeMap::new(),
        };
        cluster.dir.write("password", format!("{PASSWORD}\n"));
        cluster.write_config();
        cluster
    }
}

/// A running test group.
pub struct Cluster {
    pub dir: TestDir,
    pub config: PathBuf,
    pub members: Vec<Member>,
    pub supervise: String,
    pub redis: String,
    pub cluster_extra: String,
    /// The `redis_server` written into the TOML (the suite's server; a rolling-upgrade
    /// test changes it and reloads).
    pub redis_server: PathBuf,
    /// Whole sections after the instances (e.g. `[sentinel]`).
    pub extra_sections: String,
    /// `[tls]`, when the group has it.
    pub tls: Option<GroupTls>,
    daemons: BTreeMap<String, Daemon>,
}

/// A `redisrepd daemon --host H` process with its log in the test dir.
pub struct Daemon {
    pub proc: ProcGuard,
    pub log: PathBuf,
}

impl Cluster {
    /// The TOML text for the current members.
    pub fn toml_text(&self) -> String {
        let mut t = String::new();
        // The suite's server unless the test names one itself.
        let server = if self.cluster_extra.contains("redis_server") {
            String::new()
        } else {
            format!("redis_server = \"{}\"\n", self.redis_server.display())
        };
        // The suite's password file unless the test lists its own (`password_files`).
        let password = if self.cluster_extra.contains("password_files") {
            String::new()
        } else {
            "password_file = \"password\"\n".to_owned()
        };
        let _ = write!(
            t,
            "[cluster]\nname = \"test\"\n{password}run_dir = \"run\"\n\
             data_dir = \"data\"\n{server}{}\n[supervise]\n{}\n[redis]\n{}\n",
            self.cluster_extra, self.supervise, self.redis
        );
        if let Some(tls) = &self.tls {
            let _ = writeln!(t, "{}", tls.section());
        }
        for m in &self.members {
            let _ = write!(
                t,
                "[[instance]]\nname = \"{}\"\nhost = \"{}\"\nbind = \"{}\"\nport = {}\n",
                m.name, m.host, m.ip, m.port
            );
            if let Some(up) = &m.replica_of {
                let _ = writeln!(t, "replica_of = \"{up}\"");
            }
            t.push_str(&m.extra);
            t.push('\n');
        }
        t.push_str(&self.extra_sections);
        t
    }

    /// (Re)writes group.toml from the members.
    pub fn write_config(&self) {
        self.dir.write("group.toml", self.toml_text());
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member `{name}`"))
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        let m = self.member(name);
        SocketAddr::new(m.ip, m.port)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join("data").join(name)
    }

    /// Starts the daemon for `host` and waits until its control socket answers.
    pub fn start_daemon(&mut self, host: &str) {
        // A daemon of ours killed earlier leaves its socket behind; the new one replaces
        // it only once it has read the file and asked the server its version. Waiting for
        // "the socket exists" would return at once, and a `status` in the gap reads Redis
        // directly, without the daemon: remove it first.
        let running = self
            .daemons
            .get_mut(host)
            .is_some_and(|d| d.proc.exited().is_none());
        if !running {
            let _ = std::fs::remove_file(self.run_dir().join(format!("{host}.sock")));
        }
        self.start_daemon_with(host, |_| {});
        self.wait_socket(host);
    }

    /// Waits until the control socket of `host` exists, which means it answers: the daemon
    /// renames it into place only once it listens. Panics with the daemon's log if the
    /// daemon exits first.
    pub fn wait_socket(&mut self, host: &str) {
        let socket = self.run_dir().join(format!("{host}.sock"));
        util::wait_until(UP, &format!("the socket of host `{host}`"), || {
            if let Some(d) = self.daemons.get_mut(host)
                && let Some(status) = d.proc.exited()
            {
                panic!(
                    "daemon for `{host}` exited ({status}):\n{}",
                    self.daemon_log(host)
                );
            }
            socket.exists()
        });
    }

    /// Starts the daemon with a custom command (e.g. extra environment).
    pub fn start_daemon_with(&mut self, host: &str, adjust: impl FnOnce(&mut Command)) {
        self.start_daemon_wrapped(host, &[], adjust);
    }

    /// Starts the daemon behind `wrapper` (e.g. `["setpriv", ...]`: a program that execs the
    /// rest of its command line), with the same arguments and cleared environment as
    /// [`Cluster::start_daemon_with`]. Waits for nothing: see [`Cluster::wait_socket`].
    pub fn start_daemon_wrapped(
        &mut self,
        host: &str,
        wrapper: &[String],
        adjust: impl FnOnce(&mut Command),
    ) {
        // Every daemon test needs redis-server: fail first with how to install it.
        util::redis_server();
        let log = self.dir.join(format!("daemon-{host}.log"));
        // An earlier daemon's log of this host is kept beside (`daemon-a.log.1`, `.2`...)
        // for a post-mortem (REDISREPD_KEEP_TEST_DIRS); `daemon_log` reads the newest.
        if log.exists() {
            let kept = (1..)
                .map(|n| self.dir.join(format!("daemon-{host}.log.{n}")))
                .find(|p| !p.exists())
                .expect("a free name");
            let _ = std::fs::rename(&log, kept);
        }
        let file = std::fs::File::create(&log).expect("daemon log");
        let mut inner = util::redisrepd(&self.config);
        inner.arg("daemon").arg("--host").arg(host);
        let mut cmd = match wrapper.split_first() {
            None => inner,
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args)
                    .arg(inner.get_program())
                    .args(inner.get_args());
                for (key, value) in inner.get_envs() {
                    match value {
                        Some(v) => cmd.env(key, v),
                        None => cmd.env_remove(key),
                    };
                }
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file);
        adjust(&mut cmd);
        let proc = ProcGuard::spawn(&format!("daemon --host {host}"), &mut cmd);
        self.daemons.insert(host.to_owned(), Daemon { proc, log });
    }

    pub fn daemon(&mut self, host: &str) -> &mut Daemon {
        self.daemons
            .get_mut(host)
            .unwrap_or_else(|| panic!("no daemon for `{host}`"))
    }

    /// Forgets a daemon without killing it (after it exited, or to leave it to a test).
    pub fn take_daemon(&mut self, host: &str) -> Option<Daemon> {
        self.daemons.remove(host)
    }

    pub fn daemon_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("daemon-{host}.log"))).unwrap_or_default()
    }

    /// SIGTERM to the daemon of `host`; waits for its exit.
    pub fn stop_daemon(&mut self, host: &str) -> ExitStatus {
        let mut d = self.daemons.remove(host).expect("daemon");
        d.proc.signal(Signal::SIGTERM);
        d.proc.wait_exit(UP)
    }

    /// Runs `redisrepd --config group.toml ARGS...`.
    pub fn cli(&self, args: &[&str]) -> Run {
        let mut cmd = util::redisrepd(&self.config);
        cmd.args(args);
        util::run(&mut cmd, Duration::from_secs(180))
    }

    /// `status --json`, parsed, by instance name.
    pub fn status(&self) -> BTreeMap<String, Value> {
        parse_status(&self.cli(&["status", "--json"]))
    }

    /// Waits until `status` exits 0: everything running, every replica in sync.
    pub fn wait_healthy(&self) {
        util::wait_for(UP, "status to report every instance healthy", || {
            let run = self.cli(&["status"]);
            if run.status.code() == Some(0) {
                Ok(())
            } else {
                Err(format!("{}\n{}", run.stdout, self.logs()))
            }
        });
    }

    /// Waits until `name` is in `state` according to `status --json`.
    pub fn wait_state(&self, name: &str, state: &str) -> Value {
        util::wait_for(UP, &format!("`{name}` to be {state}"), || {
            let s = self.status().remove(name).expect("instance in status");
            if s["state"] == state {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        })
    }

    /// Every daemon log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for host in self.daemons.keys() {
            let log = self.daemon_log(host);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let _ = writeln!(out, "--- daemon {host} (last lines):");
            for l in tail.into_iter().rev() {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }

    /// Every line of every daemon log (the servers' own output included) that tells how
    /// replication moved: full and partial resyncs, role changes, re-points, switchovers.
    /// For failure messages of tests that count full syncs: the last 30 lines rarely hold
    /// the one that matters.
    pub fn sync_story(&self) -> String {
        const MARKS: [&str; 14] = [
            "Full resync",
            "full resync",
            "Partial resynchronization",
            "partial resync",
            "PSYNC",
            "MASTER MODE",
            "REPLICAOF",
            "Connecting to MASTER",
            "cached master",
            "Discarding",
            "Starting BGSAVE",
            "switchover",
            "role",
            "backlog",
        ];
        let mut out = String::new();
        for host in self.daemons.keys() {
            let _ = writeln!(out, "--- daemon {host}, replication lines:");
            for l in self.daemon_log(host).lines() {
                if MARKS.iter().any(|m| l.contains(m)) {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
        out
    }

    /// What the suite's clients use for TLS (`None`: the group has no `[tls]`).
    pub fn tls_client(&self) -> Option<TlsFiles> {
        self.tls.as_ref().map(GroupTls::client)
    }

    /// An authenticated connection to any server of the group (an instance, a sentinel),
    /// over TLS when the group has `[tls]`.
    pub fn connect(&self, addr: SocketAddr) -> redis::RedisResult<redis::Connection> {
        let t = redisrepd_testkit::redis::TIMEOUT;
        util::connect_with_tls(addr, Some(PASSWORD), self.tls_client().as_ref(), t, t)
    }

    /// PING (authenticated, TLS with `[tls]`) answered by `addr`.
    pub fn ping(&self, addr: SocketAddr) -> redis::RedisResult<()> {
        util::ping_with(addr, Some(PASSWORD), self.tls_client().as_ref())
    }

    /// An authenticated connection to an instance.
    pub fn con(&self, name: &str) -> redis::Connection {
        self.connect(self.addr(name))
            .unwrap_or_else(|e| panic!("connecting to `{name}`: {e}"))
    }

    /// [`writer_opts`] with this group's TLS.
    pub fn writer_opts(&self) -> redisrepd_testkit::WriterOpts {
        redisrepd_testkit::WriterOpts {
            tls: self.tls_client(),
            ..writer_opts()
        }
    }

    /// `SET key value` on an instance; panics if Redis refuses it.
    pub fn set(&self, name: &str, key: &str, value: &str) {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut self.con(name))
            .unwrap_or_else(|e| panic!("SET {key} on `{name}`: {e}"));
    }

    /// One INFO section of an instance.
    pub fn info(&self, name: &str, section: &str) -> std::collections::HashMap<String, String> {
        util::info(&mut self.con(name), section).unwrap_or_else(|e| panic!("INFO of `{name}`: {e}"))
    }

    /// An integer INFO field.
    pub fn info_int(&self, name: &str, section: &str, field: &str) -> i64 {
        self.info(name, section)
            .get(field)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("INFO {section} of `{name}` has no {field}"))
    }

    /// The pid the daemon reports for an instance.
    pub fn pid(&self, name: &str) -> u32 {
        let s = self.status().remove(name).expect("instance");
        s["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("`{name}` has no pid: {s}")) as u32
    }

    /// Every redis-server process of this test.
    pub fn redis_pids(&self) -> Vec<u32> {
        util::redis_under(self.dir.path())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Daemons first (SIGKILL, so they restart nothing), then any instance left over.
        self.daemons.clear();
        for pid in self.redis_pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// The testkit writer's options for a test cluster: its password, `w:<n>` keys, 2 ms
/// between writes.
pub fn writer_opts() -> redisrepd_testkit::WriterOpts {
    redisrepd_testkit::WriterOpts {
        password: Some(PASSWORD.to_owned()),
        ..redisrepd_testkit::WriterOpts::default()
    }
}

/// The instances of a `status --json` run, by name.
pub fn parse_status(run: &Run) -> BTreeMap<String, Value> {
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{run}"));
    doc["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| (i["name"].as_str().unwrap_or_default().to_owned(), i.clone()))
        .collect()
}

/// The standard shape: a master on host `a`, two replicas on host `b`.
pub fn master_and_two_replicas() -> Builder {
    Builder::new()
        .instance("master", "a", None)
        .instance("r1", "b", Some("master"))
        .instance("r2", "b", Some("master"))
}

/// All three on one host `a`.
pub fn one_host() -> Builder {
    Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .instance("r2", "a", Some("master"))
}
