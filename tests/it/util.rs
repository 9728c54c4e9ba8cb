//! Helpers shared by the integration tests: temp dirs, the examples, loopback addresses and
//! free ports, waiting for a condition with a deadline, running the built binary, guarding
//! child processes, and a small synchronous Redis client.
//!
//! `wait_for` is the only place that sleeps: everything else waits for a condition.

#![allow(dead_code)] // each test module uses a different part

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a verb that reads only the TOML may take.
pub const QUICK: Duration = Duration::from_secs(20);

/// A directory of its own for one test, removed when dropped. Its path is short (under the
/// system temp dir) so that Unix sockets inside it fit the 108-byte limit.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    pub fn new() -> TestDir {
        let mut dir = tempfile::Builder::new()
            .prefix("rrd-")
            .tempdir()
            .expect("creating a temp dir");
        // REDISREPD_KEEP_TEST_DIRS=1 leaves each test's dir (logs, configs) for a post-mortem.
        if std::env::var_os("REDISREPD_KEEP_TEST_DIRS").is_some() {
            dir.disable_cleanup(true);
        }
        TestDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    /// Writes a file (creating its directory) with mode 0600, as secrets and generated
    /// redis.conf files need; returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating a directory in the test dir");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
        chmod(&path, 0o600);
        path
    }
}

/// Sets a file's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {path:?}: {e}"));
}

/// A file of examples/.
pub fn example_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file)
}

/// One of examples/ (`seed`, `local`, `cascade`) as an editable TOML table plus its
/// password.
pub struct Example {
    pub name: String,
    pub toml: toml::Table,
    pub password: String,
}

impl Example {
    pub fn load(name: &str) -> Example {
        let path = example_path(&format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let toml: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let cluster = &toml["cluster"];
        let password = match (cluster.get("password"), cluster.get("password_file")) {
            (Some(inline), None) => inline.as_str().expect("a string password").to_owned(),
            (None, Some(file)) => {
                let file = file.as_str().expect("a password_file path");
                std::fs::read_to_string(example_path(file))
                    .expect("reading the example's password file")
                    .trim_end()
                    .to_owned()
            }
            _ => panic!("{path:?}: the examples set either password or password_file"),
        };
        Example {
            name: name.to_owned(),
            toml,
            password,
        }
    }

    /// Points `run_dir` and `data_dir` into `dir`, `redis_server` at the suite's server,
    /// and gives every instance a loopback
    /// address of its own and a free port on it; `replica_of` names stay as they are, so
    /// the links still hold. Hosts stay as they are too.
    pub fn isolate(&mut self, dir: &TestDir) {
        let cluster = self.toml["cluster"].as_table_mut().expect("[cluster]");
        for (key, sub) in [("run_dir", "run"), ("data_dir", "data")] {
            let path = dir.join(sub).display().to_string();
            cluster.insert(key.to_owned(), path.into());
        }
        for inst in self.instances_mut() {
            let ip = loopback_ip();
            inst.insert("bind".to_owned(), ip.to_string().into());
            inst.insert("port".to_owned(), i64::from(free_port(ip)).into());
        }
        let cluster = self.toml["cluster"].as_table_mut().expect("[cluster]");
        cluster.insert(
            "redis_server".to_owned(),
            redis_server().display().to_string().into(),
        );
    }

    /// Writes `<name>.toml` and its password file (mode 0600), if it has one, into `dir`;
    /// returns the TOML's path.
    pub fn write(&self, dir: &TestDir) -> PathBuf {
        if let Some(pw_file) = self.toml["cluster"].get("password_file") {
            let pw_file = pw_file.as_str().expect("a password_file path");
            dir.write(pw_file, format!("{}\n", self.password));
        }
        let text = toml::to_string(&self.toml).expect("serializing the TOML");
        dir.write(format!("{}.toml", self.name), text)
    }

    pub fn instances(&self) -> impl Iterator<Item = &toml::Table> {
        self.toml["instance"]
            .as_array()
            .expect("[[instance]]")
            .iter()
            .map(|i| i.as_table().expect("an [[instance]] table"))
    }

    pub fn instances_mut(&mut self) -> impl Iterator<Item = &mut toml::Table> {
        self.toml
            .get_mut("instance")
            .and_then(toml::Value::as_array_mut)
            .expect("[[instance]]")
            .iter_mut()
            .map(|i| i.as_table_mut().expect("an [[instance]] table"))
    }

    pub fn instance(&self, name: &str) -> &toml::Table {
        self.instances()
            .find(|i| i["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no instance `{name}` in {}", self.name))
    }

    /// Where an instance listens, as written in the TOML.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let inst = self.instance(name);
        let ip: IpAddr = inst["bind"].as_str().unwrap().parse().unwrap();
        let port = u16::try_from(inst["port"].as_integer().unwrap()).unwrap();
        SocketAddr::new(ip, port)
    }
}

/// A loopback address for one instance: 127.A.B.C, where A.B comes from the process id (so
/// parallel test processes, as under nextest, rarely meet) and C counts calls in this
/// process (wrapping after 250, which only makes a port race more likely, see
/// [`free_port`]). Linux routes all of 127.0.0.0/8 to `lo`; 127.0.0.x is left to others.
pub fn loopback_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250;
    let p = std::process::id() % (250 * 250);
    let octet = |v: u32| u8::try_from(v).expect("below 256");
    IpAddr::V4(Ipv4Addr::new(
        127,
        octet(p / 250 + 1),
        octet(p % 250),
        octet(n + 2),
    ))
}

/// A TCP port that is free on `ip` right now: bind port 0, read the port, let it go.
///
/// The port is free when this returns, not necessarily when a server binds it: something
/// else may take it in between. A caller that starts a server on it must retry with a new
/// port when the server fails with "Address already in use" ([`RedisProc::wait_ready`]
/// returns the log so the caller can tell).
pub fn free_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("binding {ip}:0: {e}"));
    listener.local_addr().expect("local_addr").port()
}

/// Polls `probe` with short sleeps until it returns `Ok`, for at most `within`; panics
/// naming `what` and the last error when time runs out. The only place tests sleep.
#[track_caller]
pub fn wait_for<T, E: fmt::Display>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last result: {e}")
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// [`wait_for`] a condition that is true or false.
#[track_caller]
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(within, what, || {
        if cond() { Ok(()) } else { Err("still false") }
    })
}

/// The redisrepd binary cargo built for these tests, at a path every user can execute:
/// some tests run it as an unprivileged user, and a checkout under a private directory
/// (`mktemp -d` is 0700) would stop them at the first path component.
pub fn bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_redisrepd"));
        if everyone_can_execute(&built) {
            return built;
        }
        public_copy(&built)
    })
    .clone()
}

/// True when "others" may traverse every directory above `path` and execute it.
fn everyone_can_execute(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode_ok = |p: &Path, bits: u32| std::fs::metadata(p).is_ok_and(|m| m.mode() & bits == bits);
    mode_ok(path, 0o005)
        && path
            .ancestors()
            .skip(1)
            .all(|dir| dir.as_os_str().is_empty() || mode_ok(dir, 0o001))
}

/// A copy of the binary under the system temp dir, in a 0755 directory; replaced
/// atomically when the build changes, so parallel test processes share it safely.
fn public_copy(built: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(built).expect("the built binary");
    let dir = std::env::temp_dir().join(format!("redisrepd-test-bin-{}", nix::unistd::geteuid()));
    std::fs::create_dir_all(&dir).expect("a directory for the test binary");
    chmod(&dir, 0o755);
    let copy = dir.join("redisrepd");
    let same = std::fs::metadata(&copy)
        .is_ok_and(|m| m.size() == meta.size() && m.mtime() >= meta.mtime());
    if !same {
        let tmp = dir.join(format!(".redisrepd.{}", std::process::id()));
        std::fs::copy(built, &tmp).expect("copying the test binary");
        chmod(&tmp, 0o755);
        std::fs::rename(&tmp, &copy).expect("installing the test binary");
    }
    copy
}

/// `redisrepd --config <config>`, with no inherited setting that would change its behaviour
/// (REDISREPD_CONFIG, systemd's NOTIFY_SOCKET and JOURNAL_STREAM).
pub fn redisrepd(config: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(config)
        .env_remove("REDISREPD_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM");
    cmd
}

/// What a finished command did.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything the command printed if it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit status\n{self}"
        );
        self
    }

    /// Asserts that neither stdout nor stderr contains `secret`.
    #[track_caller]
    pub fn expect_hidden(&self, secret: &str) -> &Run {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the output shows the password\n{self}"
        );
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout:\n{}--- stderr:\n{}---",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs a command to completion with stdin closed, capturing its output; kills it and
/// panics if it takes longer than `within`.
#[track_caller]
pub fn run(cmd: &mut Command, within: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = ProcGuard::spawn(&format!("{cmd:?}"), cmd);
    let stdout = drain(proc.child.stdout.take().expect("piped stdout"));
    let stderr = drain(proc.child.stderr.take().expect("piped stderr"));
    let status = proc.wait_exit(within);
    Run {
        status,
        stdout: stdout.join().expect("reading stdout"),
        stderr: stderr.join().expect("reading stderr"),
    }
}

/// Reads a pipe to its end on a thread of its own, so that a full pipe never blocks the
/// child while the test waits for it.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A child process that is killed (SIGKILL) and reaped when the guard is dropped, also
/// when the test panics.
pub struct ProcGuard {
    what: String,
    pub child: Child,
}

impl ProcGuard {
    /// Spawns `cmd`; `what` names it in messages.
    #[track_caller]
    pub fn spawn(what: &str, cmd: &mut Command) -> ProcGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        ProcGuard {
            what: what.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. SIGTERM for a graceful stop); an exited child is not an error.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        match nix::sys::signal::kill(pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => panic!("kill -{signal} {} ({}): {e}", self.pid(), self.what),
        }
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what))
    }

    /// Waits for the child to exit; panics if it is still running after `within`.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.what);
        wait_for(within, &what, || self.exited().ok_or("still running"))
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid`; panics naming both if that fails.
pub fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(target, sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// The environment variable that selects the server the suite runs against (a path to
/// a `redis-server` or `valkey-server`); without it, `redis-server` on PATH.
pub const SERVER_VAR: &str = "REDISREPD_TEST_SERVER";

/// The server the suite runs against: `$REDISREPD_TEST_SERVER`, else the redis-server on
/// PATH. Panics (never skips) when there is none.
pub fn redis_server() -> PathBuf {
    if let Some(path) = std::env::var_os(SERVER_VAR).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{SERVER_VAR}={} is not a file: point it at a redis-server or valkey-server",
            path.display()
        );
        return std::path::absolute(&path).unwrap_or(path);
    }
    which::which("redis-server").unwrap_or_else(|_| {
        panic!(
            "redis-server not found: the tests start real Redis servers; install it with \
             `sudo apt-get install redis-server` (Debian, Ubuntu)"
        )
    })
}

/// What `redis_server()` is (asked once): tests predict version-dependent behaviour
/// (full syncs after a master restart) from it.
pub fn test_server() -> redisrepd_core::server::Server {
    static SERVER: std::sync::OnceLock<redisrepd_core::server::Server> = std::sync::OnceLock::new();
    *SERVER.get_or_init(|| {
        redisrepd_io::server_detect::detect(&redis_server())
            .unwrap_or_else(|e| panic!("test server: {e}"))
    })
}

/// Whether a process name (`/proc/PID/comm`) is a server's.
pub fn is_server_comm(comm: &str) -> bool {
    // Also builds kept under their own names (`redis-server-6.2`, shown as 15 bytes).
    let comm = comm.trim();
    comm.starts_with("redis-server") || comm.starts_with("valkey-server")
}

/// A `redis-server <conf>` process, killed when dropped. Its stdout and stderr go to
/// `<conf>.log` (with `logfile ""`, that is its whole log).
pub struct RedisProc {
    pub proc: ProcGuard,
    pub log: PathBuf,
}

impl RedisProc {
    pub fn spawn(conf: &Path) -> RedisProc {
        let log = conf.with_extension("log");
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{log:?}: {e}"));
        let mut cmd = Command::new(redis_server());
        cmd.arg(conf)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file);
        let proc = ProcGuard::spawn(&format!("redis-server {}", conf.display()), &mut cmd);
        RedisProc { proc, log }
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server answers PING at `addr` (after AUTH with `password`).
    /// `Err(log)` when it exited first (a lost port race logs "Address already in use");
    /// panics if it neither answers nor exits within `within`.
    #[track_caller]
    pub fn wait_ready(
        &mut self,
        addr: SocketAddr,
        password: Option<&str>,
        within: Duration,
    ) -> Result<(), String> {
        let what = format!("{} to answer PING at {addr}", self.proc.what);
        wait_for(within, &what, || {
            if let Some(status) = self.proc.exited() {
                return Ok(Err(format!("exited ({status}):\n{}", self.log_text())));
            }
            ping(addr, password).map(Ok)
        })
    }
}

/// How long one Redis call may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `addr`, with AUTH when `password` is given, with connect/read/write timeouts.
pub fn connect(addr: SocketAddr, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    // Redis 7.0 has no CLIENT SETINFO: do not send it.
    let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    let info = redis::ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
        .into_connection_info()?
        .set_redis_settings(settings);
    let con = redis::Client::open(info)?.get_connection_with_timeout(REDIS_TIMEOUT)?;
    con.set_read_timeout(Some(REDIS_TIMEOUT))?;
    con.set_write_timeout(Some(REDIS_TIMEOUT))?;
    Ok(con)
}

/// Connects (with AUTH when `password` is given) and expects PONG to a PING.
pub fn ping(addr: SocketAddr, password: Option<&str>) -> redis::RedisResult<()> {
    let mut con = connect(addr, password)?;
    let pong: String = redis::cmd("PING").query(&mut con)?;
    assert_eq!(pong, "PONG");
    Ok(())
}

/// One INFO section as `field -> value`.
pub fn info(
    con: &mut redis::Connection,
    section: &str,
) -> redis::RedisResult<HashMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query(con)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim_end().to_owned()))
        .collect())
}

/// The value of one setting, as CONFIG GET returns it.
pub fn config_get(con: &mut redis::Connection, key: &str) -> redis::RedisResult<String> {
    let mut pair: HashMap<String, String> = redis::cmd("CONFIG").arg("GET").arg(key).query(con)?;
    Ok(pair.remove(key).unwrap_or_default())
}

// ----- network namespaces (tests/it/netns.rs, bench/faults.rs) --------------------------

/// Runs `ip ARGS...`; panics with its output when it fails.
#[track_caller]
pub fn ip(args: &[&str]) {
    let run = run(Command::new("ip").args(args), QUICK);
    assert_eq!(run.status.code(), Some(0), "ip {}\n{run}", args.join(" "));
}

/// Network namespaces that exist while this lives: on drop, every process left in them
/// is killed and they are deleted (which also removes the veth pair between them).
pub struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// Namespaces `a` and `b` (named `rrd-<pid>-...`, so that [`remove_orphans`] knows
    /// them) joined by a veth pair `va` (in `a`, `ips[0]`/24) and `vb` (in `b`, `ips[1]`/24),
    /// both up, with `lo` up in each.
    pub fn pair(names: [&str; 2], veths: [&str; 2], ips: [&str; 2]) -> Netns {
        let ([a, b], [va, vb]) = (names, veths);
        remove_orphans();
        let guard = Netns {
            names: vec![a.to_owned(), b.to_owned()],
        };
        for ns in &guard.names {
            // Left over from a run that was SIGKILLed with the same pid: start clean.
            remove_netns(ns);
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
        ]);
        for (ns, dev, addr) in [(a, va, ips[0]), (b, vb, ips[1])] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        guard
    }
}

/// Removes the namespaces of earlier test processes that died without cleaning up (a
/// SIGKILL, a CI timeout): `rrd-<pid>-a`/`-b` whose pid no longer exists.
fn remove_orphans() {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let owner = name
            .strip_prefix("rrd-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            remove_netns(name);
        }
    }
}

/// Kills every process in namespace `ns` and deletes it; quiet when it does not exist.
pub fn remove_netns(ns: &str) {
    let pids = Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.names {
            remove_netns(ns);
        }
    }
}

/// Runs `f` on a thread that has joined network namespace `ns`: connections it opens
/// belong to that namespace. A panic in `f` is the caller's panic.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path:?}: {e}"));
            f()
        });
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
