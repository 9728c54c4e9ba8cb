//! The `redisrepd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = redisrepd::cli::Cli::parse();
    redisrepd::run(cli)
}
