//! Why a waiting instance has not started yet, as a value: the machine decides on the
//! variant, `status` shows its text (`Display`), and tests match the variant.

use std::fmt;

/// What holds a waiting instance back (or the step it is on, on its way to its launch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// Nothing: it starts at the next step.
    Starting,
    /// Out of its backoff after a crash.
    RestartingAfterCrash,
    /// Out of its backoff after a start that failed before the process ran.
    RetryingStart,
    /// It crashed (or did not run when the daemon started) during the maintenance pause.
    Paused,
    /// The runtime reads where its RDB resumes replication.
    ReadingHistory,
    /// Its upstream `upstream` (at `address`) is not up, for `why`.
    Upstream {
        upstream: String,
        address: String,
        why: String,
    },
    /// Its upstream's sync gate is full: `syncing` replicas sync, `max` may.
    GateFull {
        upstream: String,
        syncing: usize,
        max: u32,
    },
    /// Its upstream refused it a place in the sync gate, saying `detail`.
    GateRefused { upstream: String, detail: String },
    /// It asked its upstream for a place in the sync gate; the answer is pending.
    AskingGate { upstream: String },
    /// Its upstream granted it a place: it launches at the next step.
    Granted { upstream: String },
    /// A master, before it starts as one: the group is asked who the master is.
    AskingWhoIsMaster,
    /// A master while a catch-up from a replica ahead of it is under way.
    CatchingUp,
    /// A master whose catch-up begins: `source` is made master for the moment.
    CatchUpBegins { source: String },
    /// Sentinel mode: the sentinels do not (yet) name this master.
    SentinelsDisagree,
    /// Sentinel mode: its replicas are ahead of its files, the sentinels are to fail over.
    SentinelFailover,
}

impl Blocker {
    /// Whether `status` shows it in place of the last error: what holds the instance back
    /// (its upstream, the gate, the sentinels) is news; a step on its way (asking for a
    /// place, reading its RDB) is not, and must not hide why its last attempt failed.
    pub fn is_news(&self) -> bool {
        matches!(
            self,
            Blocker::Upstream { .. }
                | Blocker::GateFull { .. }
                | Blocker::GateRefused { .. }
                | Blocker::SentinelsDisagree
        )
    }

    /// Whether it waits in its upstream's sync gate (full, or refused there).
    pub fn in_gate(&self) -> bool {
        matches!(self, Blocker::GateFull { .. } | Blocker::GateRefused { .. })
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Starting => f.write_str("starting"),
            Blocker::RestartingAfterCrash => f.write_str("restarting after a crash"),
            Blocker::RetryingStart => f.write_str("retrying the start"),
            Blocker::Paused => f.write_str(
                "held while the group is paused: starts on `redisrepd resume` (or `redisrepd start` it)",
            ),
            Blocker::ReadingHistory => f.write_str("reading the replication history in its RDB"),
            Blocker::Upstream {
                upstream,
                address,
                why,
            } => write!(f, "waiting for upstream `{upstream}` at {address}: {why}"),
            Blocker::GateFull {
                upstream,
                syncing,
                max,
            } => write!(
                f,
                "waiting in the sync gate of `{upstream}`: {syncing} replica(s) syncing, max_concurrent_syncs = {max}"
            ),
            Blocker::GateRefused { upstream, detail } => {
                write!(f, "waiting in the sync gate of `{upstream}`: {detail}")
            }
            Blocker::AskingGate { upstream } => {
                write!(f, "asking `{upstream}` for a place in its sync gate")
            }
            Blocker::Granted { upstream } => {
                write!(f, "granted a place in the sync gate of `{upstream}`")
            }
            Blocker::AskingWhoIsMaster => {
                f.write_str("asking the group who its master is before starting it as master")
            }
            Blocker::CatchingUp => f.write_str("catching up from a replica that is ahead of it"),
            Blocker::CatchUpBegins { source } => {
                write!(f, "catching up: making `{source}` master for the moment")
            }
            Blocker::SentinelsDisagree => {
                f.write_str("waiting for the sentinels to agree on the master")
            }
            Blocker::SentinelFailover => f.write_str(
                "its replicas have writes its files lack: waiting for the sentinels to fail over",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status` shows these texts: they are the contract, whatever the variants become.
    #[test]
    fn renders_the_texts_status_shows() {
        let up = || "master".to_owned();
        let cases = [
            (Blocker::Starting, "starting"),
            (
                Blocker::Upstream {
                    upstream: up(),
                    address: "127.0.0.1:7000".into(),
                    why: "not running yet".into(),
                },
                "waiting for upstream `master` at 127.0.0.1:7000: not running yet",
            ),
            (
                Blocker::GateFull {
                    upstream: up(),
                    syncing: 1,
                    max: 1,
                },
                "waiting in the sync gate of `master`: 1 replica(s) syncing, max_concurrent_syncs = 1",
            ),
            (
                Blocker::GateRefused {
                    upstream: up(),
                    detail: "full".into(),
                },
                "waiting in the sync gate of `master`: full",
            ),
            (
                Blocker::AskingGate { upstream: up() },
                "asking `master` for a place in its sync gate",
            ),
            (
                Blocker::Granted { upstream: up() },
                "granted a place in the sync gate of `master`",
            ),
            (
                Blocker::CatchUpBegins {
                    source: "r1".into(),
                },
                "catching up: making `r1` master for the moment",
            ),
        ];
        for (blocker, text) in cases {
            assert_eq!(blocker.to_string(), text);
        }
        // What `status` puts first is what starts with "waiting ".
        for b in [
            Blocker::SentinelsDisagree,
            Blocker::GateRefused {
                upstream: up(),
                detail: String::new(),
            },
        ] {
            assert!(b.is_news() && b.to_string().starts_with("waiting "), "{b}");
        }
        for b in [
            Blocker::Paused,
            Blocker::SentinelFailover,
            Blocker::CatchingUp,
        ] {
            assert!(
                !b.is_news() && !b.to_string().starts_with("waiting "),
                "{b}"
            );
        }
    }
}
