//! The benches' own layer over the testkit (crates/testkit; each bench includes this file
//! as `mod common`): talking to Redis through the library's own [`Endpoint`] and [`Info`],
//! so that they connect and read INFO exactly as the daemon does, and waits.

#![allow(dead_code)] // each bench uses part of it

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

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
        user: None,
        password: Some(Secret::new(password)),
        fallback: Vec::new(),
        tls: None,
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

/// The redisrepd binary cargo built for the benches.
pub const BIN: &str = env!("CARGO_BIN_EXE_redisrepd");

/// One run of the redisrepd CLI.
pub struct Run {
    pub args: String,
    /// `None`: killed at its deadline (or on Ctrl-C).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
}

impl Run {
    /// Exit 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    fn code_text(&self) -> String {
        self.code
            .map_or("killed at its deadline".to_owned(), |c| format!("exit {c}"))
    }

    /// The output on one line, for a table cell or an error.
    pub fn one_line(&self) -> String {
        let text = format!("{} {}", self.stdout.trim(), self.stderr.trim());
        format!(
            "`redisrepd {}`: {}: {}",
            self.args,
            self.code_text(),
            text.trim().replace('\n', " / ")
        )
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ redisrepd {} ({})\n{}{}",
            self.args,
            self.code_text(),
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `redisrepd --config toml ARGS` (output kept in `dir/cli.out` and `cli.err`), killed
/// after `deadline` or as soon as `stop` says so.
pub fn cli(
    dir: &std::path::Path,
    toml: &std::path::Path,
    args: &[&str],
    deadline: Duration,
    stop: &dyn Fn() -> bool,
) -> Run {
    use std::process::{Command, Stdio};
    let started = Instant::now();
    let out = dir.join("cli.out");
    let err = dir.join("cli.err");
    let files = std::fs::File::create(&out).and_then(|o| Ok((o, std::fs::File::create(&err)?)));
    let spawned = files.and_then(|(o, e)| {
        Command::new(BIN)
            .arg("--config")
            .arg(toml)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return Run {
                args: args.join(" "),
                code: None,
                stdout: String::new(),
                stderr: format!("cannot run {BIN}: {e}"),
                seconds: 0.0,
            };
        }
    };
    let until = started + deadline;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < until && !stop() => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Run {
        args: args.join(" "),
        code,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
    }
}
