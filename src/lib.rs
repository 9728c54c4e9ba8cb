//! redisrepd: run a Redis master/replica group from one TOML file.
//!
//! Theory of operation. Three crates: `redisrepd-core` decides (the config model,
//! rendering, plans, the sync gate, INFO and RDB parsing, the daemon's state machine) and
//! does no IO; `redisrepd-io` carries out (processes, files, Redis and Sentinel clients,
//! the control socket, HTTP, metrics, and the daemon's runtime around the machine); this
//! package is the binary: the command line ([`cli`]) and the verbs ([`commands`]), each a
//! client of the daemons' control socket, a reader of the TOML, or the daemon itself.

pub mod cli;
pub mod commands;

use std::process::ExitCode;

pub use redisrepd_core::{EXIT_DEGRADED, EXIT_FAILED, EXIT_OK, EXIT_USAGE};

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
    redisrepd_io::logging::init(daemon);
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
