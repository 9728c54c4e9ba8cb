//! What the two benchmarks share (each includes this file as `mod common`): free ports,
//! their temp dir, and talking to Redis through the library's own [`Endpoint`] and
//! [`Info`], so that they connect and read INFO exactly as the daemon does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redisrepd_core::config::Secret;
use redisrepd_core::endpoint::Endpoint;
use redisrepd_core::info::Info;
use redisrepd_io::redis_io::Client as _;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An empty `redisrepd-<what>-<pid>` in the temp dir (a leftover of an earlier run with
/// the same pid is removed).
pub fn fresh_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redisrepd-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

/// An authenticated connection to `addr` within `timeout`, then `io` as its read and
/// write timeout (room for slow replies).
pub fn connect(
    addr: SocketAddr,
    password: &str,
    timeout: Duration,
    io: Duration,
) -> redis::RedisResult<redis::Connection> {
    let c = Endpoint {
        bind: addr.ip(),
        port: addr.port(),
        password: Some(Secret::new(password)),
    }
    .connect(timeout)?;
    c.set_read_timeout(Some(io))?;
    c.set_write_timeout(Some(io))?;
    Ok(c)
}

/// `INFO section` of `addr` (connected as by [`connect`]), parsed by the library.
pub fn info(
    addr: SocketAddr,
    password: &str,
    section: &str,
    timeout: Duration,
    io: Duration,
) -> Result<Info, String> {
    let mut c = connect(addr, password, timeout, io).map_err(|e| e.to_string())?;
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut c)
        .map_err(|e| e.to_string())?;
    Ok(Info::parse(&text))
}

/// A numeric INFO field, 0 when absent.
pub fn int(info: &Info, key: &str) -> i64 {
    info.int(key).unwrap_or(0)
}

/// Calls `f` every 20 ms until it succeeds, `within` passes or `stop` is set; the error
/// carries `f`'s last complaint.
pub fn wait_for<T>(
    within: Duration,
    stop: &AtomicBool,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let until = Instant::now() + within;
    loop {
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= until {
            return Err(format!("still not so after {within:?}: {last}"));
        }
        if stop.load(Ordering::Relaxed) {
            return Err(format!("interrupted while waiting: {last}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
