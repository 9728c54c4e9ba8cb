//! redisrepd: run a Redis master/replica group from one TOML file.
//!
//! Theory of operation. The TOML is read into a validated model (`config`); everything a
//! verb needs to *decide* is pure and lives in modules that do no IO (`config`, `render`,
//! `info`, `plan`, `gate`, `backoff`, `status`, `changes`, and the daemon's state machine
//! `daemon::machine`). The daemon (`daemon`) owns the processes: one supervisor thread
//! holds all instance state in the machine, which turns inputs (child exits, probe
//! results, control requests, signals, the time) into effects, and a runtime that carries
//! them out; small threads at the edges only send events. Every other verb is a client of
//! the daemon's control socket (`control`) or reads the TOML alone (`commands`).

pub mod backoff;
pub mod backup;
pub mod changes;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod doctor;
pub mod endpoint;
pub mod endpoints;
pub mod files;
pub mod gate;
pub mod haproxy;
pub mod history;
pub mod host;
pub mod http;
pub mod info;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod process;
pub mod rdb;
pub mod redis_io;
pub mod render;
pub mod sentinel;
pub mod server;
pub mod server_check;
pub mod status;
pub mod switchover;
pub mod topology;

use std::process::ExitCode;

/// Exit status: done.
pub const EXIT_OK: u8 = 0;
/// Exit status: failed; the message says what and why.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of `status` when an instance is not running or a replica not in sync.
pub const EXIT_DEGRADED: u8 = 3;

/// A usage error found after parsing (an instance name the file does not have): exit
/// status 2, as for the errors clap finds.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs one verb and maps its outcome to an exit status, printing errors as
/// `redisrepd: context: cause`.
pub fn run(cli: cli::Cli) -> ExitCode {
    let daemon = matches!(cli.verb, cli::Verb::Daemon { .. });
    logging::init(daemon);
    if !daemon {
        // A client piped into `head` should end quietly, as other CLI tools do. (Not the
        // daemon: a client hanging up on the control socket must not kill it.)
        // SAFETY: SIG_DFL installs no handler code; nothing else runs yet.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprint!("{}", error_lines(&format!("{err:#}")));
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
    }
}

/// `message` with every line starting `redisrepd: `: an error of several lines (every
/// problem of a file, toml's caret under a line) stays recognisable line by line.
pub fn error_lines(message: &str) -> String {
    message
        .lines()
        .map(|l| format!("redisrepd: {l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_line_of_an_error_is_prefixed() {
        assert_eq!(
            super::error_lines("f: one\n  |\nf: two"),
            "redisrepd: f: one\nredisrepd:   |\nredisrepd: f: two\n"
        );
    }
}
