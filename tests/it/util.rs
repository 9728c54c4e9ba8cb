//! The integration tests' own layer over the testkit (crates/testkit, re-exported here so
//! that tests say `util::connect`): the examples, the built binary, the server the suite
//! runs against and a `redis-server` process of a test's own.

#![allow(dead_code)] // each test module uses a different part

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use redisrepd_testkit::netns::{Netns, in_ns, ip};
pub use redisrepd_testkit::{
    ProcGuard, Run, TestDir, chmod, config_get, connect, connect_with_tls, free_port, info, kill,
    loopback_ip, loopback_ips, ping, ping_with, redis_under, run, wait_for, wait_until,
};

/// How long a verb that reads only the TOML may take.
pub const QUICK: Duration = Duration::from_secs(20);

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
        let what = format!("{} to answer PING at {addr}", self.proc.what());
        wait_for(within, &what, || {
            if let Some(status) = self.proc.exited() {
                return Ok(Err(format!("exited ({status}):\n{}", self.log_text())));
            }
            ping(addr, password).map(Ok)
        })
    }
}
