//! What the daemon keeps on disk across its restarts: the topology and replication
//! history (`run_dir/<host>.topology`) and the maintenance pause (`run_dir/<host>.pause`).

use std::path::Path;
use std::time::Duration;

use tracing::{error, warn};

use super::Runtime;
use crate::files;

impl Runtime {
    /// Keeps the group's master and the replication history seen, as the machine says.
    pub(super) fn save_topology(&self) {
        let path = self.machine.group().topology_path(&self.host);
        let text = redisrepd_core::topology::format_file(&self.machine.kept());
        if let Err(e) = files::write_atomic(&path, text.as_bytes(), 0o644) {
            // The roles hold while this daemon runs; after a restart it learns
            // them again from the group, if it can reach it.
            error!("cannot keep the topology in {}: {e}", path.display());
        }
    }

    /// Keeps the pause's end (`remaining` from now), or removes the file (`None`).
    pub(super) fn save_pause(&self, remaining: Option<Duration>) {
        let path = self.machine.group().pause_path(&self.host);
        let result = match remaining {
            Some(d) => pause_until(d, jiff::Timestamp::now())
                .map_err(std::io::Error::other)
                .and_then(|until| files::write_atomic(&path, until.as_bytes(), 0o644)),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(e) = result {
            // The pause holds while this daemon runs; a restarted one would not
            // know of it.
            error!("cannot keep the pause in {}: {e}", path.display());
        }
    }
}

/// The pause file's text for a pause that ends `remaining` after `now`: the end, in UTC.
fn pause_until(remaining: Duration, now: jiff::Timestamp) -> Result<String, jiff::Error> {
    let until = now.checked_add(jiff::SignedDuration::try_from(remaining).unwrap_or_default())?;
    Ok(format!("{until}\n"))
}

/// How long the pause in a pause file's `text` still holds at `now`; `None` when it is
/// over.
fn pause_left(text: &str, now: jiff::Timestamp) -> Result<Option<Duration>, jiff::Error> {
    let until: jiff::Timestamp = text.trim().parse()?;
    let left = until.duration_since(now);
    Ok(Duration::try_from(left).ok().filter(|d| !d.is_zero()))
}

/// How long a kept pause still holds; `None` when there is none, it is over, or the file
/// cannot be read (then the daemon says so and runs unpaused).
pub(super) fn read_pause(path: &Path) -> Option<Duration> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(
                "cannot read the pause in {}: {e}; not paused",
                path.display()
            );
            return None;
        }
    };
    match pause_left(&text, jiff::Timestamp::now()) {
        Ok(left) => left,
        Err(e) => {
            warn!("{}: not a time ({e}); not paused", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_kept_pause_is_read_back_as_what_is_left() {
        let now = at("2026-01-02T10:00:00Z");
        let text = pause_until(Duration::from_secs(90), now).unwrap_or_default();
        assert_eq!(text, "2026-01-02T10:01:30Z\n");
        let later = at("2026-01-02T10:00:30Z");
        assert_eq!(
            pause_left(&text, later).ok().flatten(),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn an_ended_or_unreadable_pause_holds_nothing() {
        let now = at("2026-01-02T10:05:00Z");
        assert_eq!(pause_left("2026-01-02T10:01:30Z\n", now).ok(), Some(None));
        assert_eq!(pause_left("2026-01-02T10:05:00Z", now).ok(), Some(None));
        assert!(pause_left("tomorrow", now).is_err());
    }
}
