//! The `redisrepd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match redisrepd::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own usage errors start `error: `; like every error of redisrepd, they
            // start `redisrepd: ` (the usage hint under them stays as it is). Help and
            // version go out as clap prints them.
            let text = e.render().to_string();
            match text.strip_prefix("error: ") {
                Some(rest) if e.use_stderr() => {
                    eprint!("redisrepd: {rest}");
                    return ExitCode::from(redisrepd::EXIT_USAGE);
                }
                _ => e.exit(),
            }
        }
    };
    redisrepd::run(cli)
}
