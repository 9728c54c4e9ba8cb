//! Log setup: the journal under systemd, plain text on stderr otherwise, colour only on a
//! terminal.

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. Client verbs log warnings only; the daemon logs info.
/// `REDISREPD_LOG=debug` raises the level.
pub fn init(daemon: bool) {
    let level = match std::env::var("REDISREPD_LOG").as_deref() {
        Ok("debug") => LevelFilter::DEBUG,
        Ok("trace") => LevelFilter::TRACE,
        Ok("warn") => LevelFilter::WARN,
        _ if daemon => LevelFilter::INFO,
        _ => LevelFilter::WARN,
    };
    let filter = Targets::new().with_default(level);
    let registry = tracing_subscriber::registry().with(filter);
    if daemon
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = registry
            .with(journald.with_syslog_identifier("redisrepd".to_owned()))
            .try_init();
        return;
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    let _ = registry.with(fmt).try_init();
}
