//! An instance's life as states that carry their own data, and the one table of the
//! transitions allowed between them (`allowed`): every change goes through
//! `Machine::set_state`, which checks it here.

use std::time::Instant;

use super::Blocker;
use crate::rdb::ReplPosition;
use crate::status::StateLabel;

/// Where an instance is in its life. Data that only one state has lives in its variant.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running and not wanted.
    Stopped,
    /// Wanted, not started yet: waiting for its upstream, the sync gate or its port.
    Waiting {
        /// Why it has not started yet.
        reason: Blocker,
        not_before: Instant,
        /// This replica's place in its upstream's sync gate.
        gate: Gate,
        /// The coming start follows a crash, so it counts as a restart.
        after_crash: bool,
        /// For a replica: where the RDB it will load resumes replication, once read.
        history: History,
    },
    /// The runtime was asked to write the config and spawn the process; its answer
    /// (`Launched` or `LaunchFailed`) comes back before any other input.
    Launching { launch: Launch, after_crash: bool },
    /// Spawned (or adopted); not yet answering PING with its data loaded.
    Starting {
        pid: u32,
        deadline: Instant,
        launch: Launch,
        /// Killed for not answering within `start_timeout`; its exit ends this state.
        killed: bool,
    },
    /// A replica that answers but is not yet in sync with its upstream.
    Syncing {
        pid: u32,
        since: Instant,
        deadline: Instant,
        launch: Launch,
    },
    /// Up (and, for a replica, in sync when it got here).
    Running { pid: u32 },
    /// An authenticated SHUTDOWN (SAVE, or NOSAVE after a refused save with `force`) is
    /// under way; SIGTERM at `deadline`.
    ShuttingDown {
        pid: u32,
        deadline: Instant,
        force: bool,
        /// The final save was refused and `force` sent `SHUTDOWN NOSAVE`.
        nosave: bool,
        /// Redis refuses to exit while it rewrites its AOF: waiting for the rewrite.
        aof_wait: Option<AofWait>,
    },
    /// SIGTERM sent (Redis saves and exits as on SHUTDOWN); SIGKILL at `deadline`.
    Terminating { pid: u32, deadline: Instant },
    /// SIGKILL sent; sent again at `deadline` if it is somehow still there.
    Killing { pid: u32, deadline: Instant },
    /// Crashed or could not start; tried again after `until`.
    Backoff { until: Instant, after_crash: bool },
    /// Left stopped until an operator starts it.
    Failed { reason: String },
}

/// A stop waiting for an AOF rewrite: after a full sync with `appendonly yes`, Redis
/// refuses SHUTDOWN and SIGTERM alike until its initial AOF is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AofWait {
    /// When the first refusal came.
    pub since: Instant,
    /// When to send SHUTDOWN again; `None` while one is under way.
    pub retry: Option<Instant>,
}

/// What a waiting replica will resume from, read from its RDB before it is admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum History {
    /// Not read yet (the runtime reads it when asked, before the replica is admitted).
    NotRead,
    /// Read: the RDB's replication id and offset, or `None` (no RDB, no history in it, or
    /// it will load its AOF instead, from which no server resumes).
    Read(Option<ReplPosition>),
}

/// A replica's place in its upstream's sync gate, while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Not asked (yet, or again after a refusal).
    NotAsked,
    /// Asked the upstream; the answer is pending.
    Asking,
    /// Granted: held until the replica is in sync (or leaves these states).
    Granted,
}

/// What the machine remembers of one start, from launch until in sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// When it was spawned; `None` when adopted from an earlier daemon (its sync was not
    /// seen).
    pub at: Option<Instant>,
    /// Started with `appendonly no` to resume from its RDB: AOF goes back on once in sync.
    pub aof_to_restore: bool,
    /// The upstream's `sync_full` at launch: the fallback for telling which sync it got.
    pub sync_full_before: Option<i64>,
    /// Holds a place in its upstream's sync gate (released when it leaves these states).
    pub holds_place: bool,
    /// Admitted without a place: its resync was predicted partial (no fork, no copy).
    pub predicted_partial: bool,
}

/// The states without their data: for the transition table and for status labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stopped,
    Waiting,
    Launching,
    Starting,
    Syncing,
    Running,
    ShuttingDown,
    Terminating,
    Killing,
    Backoff,
    Failed,
}

impl State {
    /// Waiting to start, nothing asked or read yet.
    pub fn waiting(reason: Blocker, not_before: Instant, after_crash: bool) -> State {
        State::Waiting {
            reason,
            not_before,
            gate: Gate::NotAsked,
            after_crash,
            history: History::NotRead,
        }
    }

    /// The state without its data.
    pub fn kind(&self) -> Kind {
        match self {
            State::Stopped => Kind::Stopped,
            State::Waiting { .. } => Kind::Waiting,
            State::Launching { .. } => Kind::Launching,
            State::Starting { .. } => Kind::Starting,
            State::Syncing { .. } => Kind::Syncing,
            State::Running { .. } => Kind::Running,
            State::ShuttingDown { .. } => Kind::ShuttingDown,
            State::Terminating { .. } => Kind::Terminating,
            State::Killing { .. } => Kind::Killing,
            State::Backoff { .. } => Kind::Backoff,
            State::Failed { .. } => Kind::Failed,
        }
    }

    /// The pid of its process, in every state that has one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            State::Starting { pid, .. }
            | State::Syncing { pid, .. }
            | State::Running { pid }
            | State::ShuttingDown { pid, .. }
            | State::Terminating { pid, .. }
            | State::Killing { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Whether it holds (or has asked for) a place in its upstream's sync gate.
    pub fn holds_gate_place(&self) -> bool {
        match self {
            State::Waiting { gate, .. } => *gate != Gate::NotAsked,
            State::Launching { launch, .. }
            | State::Starting { launch, .. }
            | State::Syncing { launch, .. } => launch.holds_place,
            _ => false,
        }
    }

    /// Whether it counts against its upstream's gate: on its way to being in sync by a
    /// sync that may fork and copy (a predicted partial resync does not count).
    pub fn in_flight(&self) -> bool {
        match self {
            State::Waiting { gate, .. } => *gate != Gate::NotAsked,
            State::Launching { launch, .. }
            | State::Starting { launch, .. }
            | State::Syncing { launch, .. } => !launch.predicted_partial,
            _ => false,
        }
    }

    /// Whether a stop is under way (SHUTDOWN, SIGTERM or SIGKILL).
    pub fn stopping(&self) -> bool {
        matches!(
            self,
            State::ShuttingDown { .. } | State::Terminating { .. } | State::Killing { .. }
        )
    }
}

impl Kind {
    /// The state as `status` names it (spec/cli.md).
    pub fn label(self) -> StateLabel {
        match self {
            Kind::Stopped => StateLabel::Stopped,
            Kind::Waiting | Kind::Launching | Kind::Starting => StateLabel::Starting,
            Kind::Syncing => StateLabel::Syncing,
            Kind::Running => StateLabel::Running,
            Kind::ShuttingDown | Kind::Terminating | Kind::Killing => StateLabel::Stopping,
            Kind::Backoff => StateLabel::Backoff,
            Kind::Failed => StateLabel::Failed,
        }
    }
}

/// Every allowed change of state. A state may always be replaced by one of its own kind
/// (new data: a reason, a deadline).
const TRANSITIONS: &[(Kind, &[Kind])] = {
    use Kind::*;
    &[
        // Started (request, reload) or left stopped.
        (Stopped, &[Waiting]),
        (Waiting, &[Launching, Stopped, Backoff]),
        // The runtime's answer: spawned, or could not (port taken, cannot write).
        (Launching, &[Starting, Backoff, Stopped]),
        // Answers; crashed; stopped; exited while not wanted.
        (
            Starting,
            &[Syncing, Running, ShuttingDown, Backoff, Failed, Stopped],
        ),
        (Syncing, &[Running, ShuttingDown, Backoff, Failed, Stopped]),
        (Running, &[ShuttingDown, Backoff, Failed, Stopped]),
        // Exited; its save failed (left running); no answer: SIGTERM.
        (ShuttingDown, &[Stopped, Running, Terminating]),
        (Terminating, &[Stopped, Killing]),
        (Killing, &[Stopped]),
        (Backoff, &[Waiting, Stopped]),
        (Failed, &[Waiting, Stopped]),
    ]
};

/// Whether `from` may become `to`.
pub fn allowed(from: Kind, to: Kind) -> bool {
    from == to
        || TRANSITIONS
            .iter()
            .any(|(f, tos)| *f == from && tos.contains(&to))
}

/// The transition table as a Mermaid `stateDiagram-v2`, for docs/ARCHITECTURE.md (a test
/// checks that the document shows exactly this). A state's change to its own kind (new
/// data) is not drawn.
pub fn diagram() -> String {
    // A new machine's instances wait to start; those an earlier daemon left running are
    // adopted as starting (`Machine::new`).
    let mut out =
        String::from("stateDiagram-v2\n    [*] --> Waiting\n    [*] --> Starting: adopted\n");
    for (from, tos) in TRANSITIONS {
        for to in tos.iter().filter(|to| *to != from) {
            out.push_str(&format!("    {from:?} --> {to:?}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ARCHITECTURE.md");
    const BEGIN: &str = "<!-- state-diagram:begin -->";
    const END: &str = "<!-- state-diagram:end -->";

    /// The section between the markers, as the document should have it.
    fn section() -> String {
        format!("{BEGIN}\n```mermaid\n{}```\n{END}", diagram())
    }

    #[test]
    fn the_architecture_doc_shows_the_state_diagram_of_the_table() {
        let doc = std::fs::read_to_string(DOC).expect("docs/ARCHITECTURE.md");
        let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("docs/ARCHITECTURE.md has no {BEGIN} ... {END} section");
        };
        let shown = &doc[b..e + END.len()];
        if shown == section() {
            return;
        }
        if std::env::var("UPDATE_DIAGRAM").is_ok() {
            let updated = format!("{}{}{}", &doc[..b], section(), &doc[e + END.len()..]);
            std::fs::write(DOC, updated).expect("write docs/ARCHITECTURE.md");
            return;
        }
        panic!(
            "docs/ARCHITECTURE.md's state diagram differs from the transition table in \
             crates/core/src/machine/state.rs; regenerate it with \
             `UPDATE_DIAGRAM=1 cargo test -p redisrepd-core diagram`"
        );
    }

    #[test]
    fn a_stop_escalates_only_forward() {
        assert!(allowed(Kind::ShuttingDown, Kind::Terminating));
        assert!(allowed(Kind::Terminating, Kind::Killing));
        assert!(!allowed(Kind::Killing, Kind::Terminating));
        assert!(!allowed(Kind::Terminating, Kind::ShuttingDown));
        assert!(!allowed(Kind::Killing, Kind::Running));
    }

    #[test]
    fn nothing_runs_without_being_launched() {
        for from in [Kind::Stopped, Kind::Backoff, Kind::Failed, Kind::Waiting] {
            assert!(!allowed(from, Kind::Running), "{from:?}");
            assert!(!allowed(from, Kind::Starting), "{from:?}");
        }
        assert!(allowed(Kind::Waiting, Kind::Launching));
        assert!(allowed(Kind::Launching, Kind::Starting));
    }

    #[test]
    fn every_kind_has_a_row() {
        use Kind::*;
        for k in [
            Stopped,
            Waiting,
            Launching,
            Starting,
            Syncing,
            Running,
            ShuttingDown,
            Terminating,
            Killing,
            Backoff,
            Failed,
        ] {
            assert!(TRANSITIONS.iter().any(|(f, _)| *f == k), "{k:?}");
        }
    }
}
