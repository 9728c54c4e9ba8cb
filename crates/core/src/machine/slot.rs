//! One local instance's slot: its state and what the supervisor remembers of it across
//! states (crashes, notes, samples, counters).

use std::collections::VecDeque;
use std::time::Instant;

use super::{Blocker, LiveFailure, State};
use crate::backoff::CrashHistory;
use crate::endpoint::Endpoint;
use crate::info::SyncKind;

/// One local instance.
pub(super) struct Slot {
    pub(super) state: State,
    /// What the operator wants: running or not.
    pub(super) wanted: bool,
    /// How to reach it, with the password it was started with (a password file changed
    /// on disk must not lock us out of stopping it).
    pub(super) endpoint: Endpoint,
    pub(super) crashes: CrashHistory,
    pub(super) restarts: u32,
    /// Starts in a row that failed before the process ran (port taken, cannot write).
    pub(super) failed_starts: u32,
    pub(super) last_error: Option<String>,
    /// The `last_error` a crash or a failed start left: it goes once the instance is up
    /// again (the crash stays in the log and the restart count), unless another note
    /// replaced it meanwhile.
    pub(super) clears_when_up: Option<String>,
    pub(super) last_sync: Option<String>,
    pub(super) sync_timeouts: u32,
    /// Recent (time, master_repl_offset) samples, for the write rate.
    pub(super) offsets: VecDeque<(Instant, i64)>,
    /// The last change in place from a reload (password, live config).
    pub(super) in_place: InPlace,
    /// The sync its own log last named, since its last launch.
    pub(super) logged_sync: Option<SyncKind>,
    /// As a master, the replication id and offset its last INFO reported: what its
    /// replicas share with it after it crashed.
    pub(super) last_history: Option<(String, i64)>,
    /// Its AOF may lack acknowledged writes: after a full sync Redis writes a new AOF from
    /// scratch, and writes made before that rewrite ends are in no file the next start
    /// loads. Set by a logged full sync or a rewrite seen under way, cleared by a probe
    /// that shows none.
    pub(super) aof_incomplete: bool,
    /// How many replicas were online (per its own INFO) when an operation stopped it, and
    /// its role then: a restart in the same role is done when they are back, so that the
    /// next step (a replica's restart, with its min-replicas check) does not find them
    /// still reconnecting. (In another role, as after a switchover, they went elsewhere.)
    pub(super) replicas_before_stop: Option<(usize, String)>,
    /// Not running when a daemon started into a kept pause: it waits for `resume` (or an
    /// operator's `start`), as a crash during the pause would.
    pub(super) held_by_pause: bool,
    /// Its last INFO said `role:master` (since its launch or adoption): a later one that
    /// says replica means it was demoted, and its clients are dropped.
    pub(super) seen_as_master: bool,
    pub(super) counters: Counters,
}

/// A change in place (a new password, live settings): asked and not answered yet, or
/// how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InPlace {
    /// Asked of the runtime; its answer is pending.
    UnderWay,
    /// Done, or why not (also: nothing to do, the instance does not run).
    Done(Result<(), LiveFailure>),
}

/// What happened to one instance since the daemon started: what only the supervisor
/// knows, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Syncs of this replica after a launch, by kind.
    pub full_syncs: u64,
    pub partial_syncs: u64,
    /// Stops that ended with a saved exit (SHUTDOWN SAVE, or SIGTERM, on which Redis saves).
    pub stops_saved: u64,
    /// Stops that ended with `SHUTDOWN NOSAVE` after a refused save (`--force`).
    pub stops_nosave: u64,
    /// Stops refused because the final save failed: left running.
    pub stops_refused: u64,
    /// Stops that needed SIGKILL.
    pub stops_killed: u64,
    /// Replicas admitted as a sure partial resync that needed a full sync after all.
    pub mispredicted_syncs: u64,
}

impl Slot {
    /// A slot for an instance reached at `endpoint`: wanted, waiting to start at `now`,
    /// with nothing remembered yet.
    pub(super) fn new(endpoint: Endpoint, now: Instant) -> Slot {
        Slot {
            state: State::waiting(Blocker::Starting, now, false),
            wanted: true,
            endpoint,
            crashes: CrashHistory::default(),
            restarts: 0,
            failed_starts: 0,
            last_error: None,
            clears_when_up: None,
            last_sync: None,
            sync_timeouts: 0,
            offsets: VecDeque::new(),
            in_place: InPlace::Done(Ok(())),
            logged_sync: None,
            last_history: None,
            aof_incomplete: false,
            replicas_before_stop: None,
            held_by_pause: false,
            seen_as_master: false,
            counters: Counters::default(),
        }
    }

    /// Up again (running, in sync for a replica): the note its crash or failed start left
    /// is no news any more, unless a later note replaced it (kept, then).
    pub(super) fn forget_cleared_note(&mut self) {
        if let Some(note) = self.clears_when_up.take()
            && self.last_error.as_ref() == Some(&note)
        {
            self.last_error = None;
        }
    }
}
