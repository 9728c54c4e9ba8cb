//! Temp dirs, file modes, loopback addresses and free ports.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory of its own for one test, removed when dropped. Its path is short (under the
/// system temp dir) so that Unix sockets inside it fit the 108-byte limit.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// A new `rrd-*` dir under the system temp dir; `REDISREPD_KEEP_TEST_DIRS=1` keeps it
    /// (logs, configs) for a post-mortem.
    pub fn new() -> TestDir {
        let mut dir = tempfile::Builder::new()
            .prefix("rrd-")
            .tempdir()
            .expect("creating a temp dir");
        if std::env::var_os("REDISREPD_KEEP_TEST_DIRS").is_some() {
            dir.disable_cleanup(true);
        }
        TestDir(dir)
    }

    /// The dir itself.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// A path inside the dir.
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

impl Default for TestDir {
    fn default() -> TestDir {
        TestDir::new()
    }
}

/// An empty `redisrepd-<what>-<pid>` in the temp dir (a leftover of an earlier run with
/// the same pid is removed): a bench's dir, kept or removed by the bench itself.
pub fn fresh_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redisrepd-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {dir:?}: {e}"));
    dir
}

/// Sets a file's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {path:?}: {e}"));
}

/// A loopback address for one instance: 127.A.B.C, where A.B comes from the process id (so
/// parallel test processes, as under nextest, rarely meet) and C counts calls in this
/// process (wrapping after 250, which only makes a port race more likely, see
/// [`free_port`]). Linux routes all of 127.0.0.0/8 to `lo`; 127.0.0.x is left to others.
pub fn loopback_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loopback_nth(NEXT.fetch_add(1, Ordering::Relaxed) % 250)
}

/// Every address [`loopback_ip`] can return in this process (250 of them): what a test
/// certificate lists as IP subjectAltNames, so that it fits every instance a test makes.
pub fn loopback_ips() -> Vec<IpAddr> {
    (0..250).map(loopback_nth).collect()
}

fn loopback_nth(n: u32) -> IpAddr {
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
/// port when the server fails with "Address already in use".
pub fn free_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("binding {ip}:0: {e}"));
    listener.local_addr().expect("local_addr").port()
}

/// [`free_port`] on 127.0.0.1.
pub fn free_local_port() -> u16 {
    free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// `GET path` over plain HTTP/1.1 (5 s to connect, 10 s to read): the status code (0 when
/// the reply has none) and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_owned()))
}
