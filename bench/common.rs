//! The benches' own layer over the testkit (crates/testkit; each bench includes this file
//! as `mod common`): talking to Redis through the library's own [`Endpoint`] and [`Info`],
//! so that they connect and read INFO exactly as the daemon does, and waits.

#![allow(dead_code)] // each bench uses part of it

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use redisrepd_core::config::Secret;
use redisrepd_core::endpoint::Endpoint;
use redisrepd_core::info::Info;
use redisrepd_io::redis_io::Client as _;

/// The flags the benches that make temp dirs share (`#[command(flatten)]`).
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Keep the temp dirs (configs, data, logs).
    #[arg(long)]
    pub keep: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

#[allow(unused_imports)] // not every bench uses them
pub use redisrepd_testkit::{free_local_port as free_port, fresh_dir};

/// How a bench reaches its instances: what each bench's own `connect`/`info` pair
/// differed by. Each bench has one as a constant (`REDIS`).
#[derive(Clone, Copy)]
pub struct Redis {
    /// The instances' password.
    pub password: &'static str,
    /// How long [`Redis::info`] may take to connect.
    pub info_within: Duration,
    /// Read and write timeout of every connection (room for slow replies).
    pub io: Duration,
}

impl Redis {
    /// An authenticated connection to `addr` within `timeout`.
    pub fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> redis::RedisResult<redis::Connection> {
        connect(addr, self.password, timeout, self.io)
    }

    /// `INFO section` of `addr`, parsed by the library, or why not (naming `addr`).
    pub fn info(&self, addr: SocketAddr, section: &str) -> Result<Info, String> {
        info(addr, self.password, section, self.info_within, self.io)
            .map_err(|e| format!("{addr}: {e}"))
    }
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
    let text = redisrepd_testkit::info_text(&mut c, section).map_err(|e| e.to_string())?;
    Ok(Info::parse(&text))
}

/// A numeric INFO field, 0 when absent.
pub fn int(info: &Info, key: &str) -> i64 {
    info.int(key).unwrap_or(0)
}

/// [`redisrepd_testkit::try_wait_for`] a condition: polls `f` until it succeeds, `within`
/// passes or `stop` is set; the error carries `f`'s last complaint.
pub fn wait_for<T>(
    within: Duration,
    stop: &AtomicBool,
    f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    redisrepd_testkit::try_wait_for("the condition", within, stop, f)
}

/// Polls `f` until it gives a value; panics naming `what` after `within`.
#[track_caller]
pub fn wait_some<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    redisrepd_testkit::wait_for(within, what, || f().ok_or("not yet"))
}
