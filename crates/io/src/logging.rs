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
        && stderr_is_journal()
        && let Ok(journald) = tracing_journald::layer()
    {
        // Fields keep their names: `journalctl -u redisrepd INSTANCE=replica-1`; levels map
        // to syslog's usual priorities (the crate's default makes INFO a notice).
        use tracing_journald::{Priority, PriorityMappings};
        let journald = journald
            .with_syslog_identifier("redisrepd".to_owned())
            .with_field_prefix(None)
            .with_priority_mappings(PriorityMappings {
                info: Priority::Informational,
                debug: Priority::Debug,
                trace: Priority::Debug,
                ..PriorityMappings::new()
            });
        let _ = registry.with(journald).try_init();
        return;
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    let _ = registry.with(fmt).try_init();
}

/// Whether stderr is the journal stream systemd connected: `JOURNAL_STREAM` holds its
/// `device:inode` (systemd.exec(5)); a child of the service whose stderr goes elsewhere
/// inherits the variable but must not log to the journal.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
    else {
        return false;
    };
    stream_matches(&stream.to_string_lossy(), meta.dev(), meta.ino())
}

/// Whether a `JOURNAL_STREAM` value (`device:inode`, decimal) names this device and inode.
fn stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::stream_matches;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(stream_matches("8:12345", 8, 12345));
        assert!(!stream_matches("8:12345", 8, 12346));
        assert!(!stream_matches("8:12345", 9, 12345));
        assert!(!stream_matches("", 8, 12345));
        assert!(!stream_matches("8", 8, 12345));
        assert!(!stream_matches("x:y", 8, 12345));
    }
}
