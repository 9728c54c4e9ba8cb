//! Roles that change: the group's actual master (learned from the instances' INFO, kept
//! across daemon restarts), the switchover (`failover`), the promotion of a replica when
//! the master is gone (`promote`), the guard that never starts a second master while the
//! group can be reached, and the catch-up of a crashed master from a replica that has
//! writes its files lack.
//!
//! The catch-up is a promotion and a switchover in a row: the most advanced replica is made
//! master (`REPLICAOF NO ONE`: it keeps the old history as its second replication id), the
//! crashed master starts as its replica and resyncs (partially when the backlog covers the
//! gap), and once in sync it gets the role back with `FAILOVER`, so no write a replica
//! acknowledged is lost. Every daemon follows each change by what the instances say.

mod catch_up;
mod learn;
mod switch;

#[cfg(test)]
pub(super) use switch::{failover_running, target_reconnecting};

use std::time::{Duration, Instant};

use crate::changes::Reason;

/// How long `FAILOVER` may wait for its target to catch up before Redis aborts it (writes
/// then resume on the old master).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a failed hand-back waits before it is tried again.
const HAND_BACK_RETRY: Duration = Duration::from_secs(5);

/// A role change the machine asked for (a `FAILOVER`, `REPLICAOF NO ONE`, `SENTINEL
/// FAILOVER`): under way, or how the last one ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Asked {
    /// None asked since the daemon started.
    Never,
    /// Asked; the answer is pending.
    UnderWay,
    /// How the last one ended.
    Ended(Result<(), String>),
}

/// The group's roles as this daemon knows them: the actual master, the replication history
/// seen, and the changes of role under way (a failover, a promotion, a catch-up, a
/// repair).
pub(super) struct Roles {
    /// The group's actual master.
    pub(super) actual: String,
    /// A failover or promotion under way, or how the last one ended.
    pub(super) change: Asked,
    /// What the role change under way is, for the history: failover, promote or repair.
    pub(super) change_why: Reason,
    /// The master a `FAILOVER` under way demotes: once it is done, a local one drops its
    /// clients at once (its INFO would say so only at the next probe).
    pub(super) failover_from: Option<String>,
    /// Sentinel mode: how the last `SENTINEL FAILOVER` request went.
    pub(super) sentinel_failover: Asked,
    /// A crashed master catching up from a replica that is ahead of it.
    pub(super) catch_up: Option<CatchUp>,
    /// A master whose catch-up could not begin: it starts from its own files this time.
    pub(super) no_catch_up: Option<String>,
    /// When the actual master last changed: INFO asked before says nothing of the new
    /// roles.
    pub(super) changed_at: Option<Instant>,
    /// Counts the changes of the group's master this daemon made or followed: every
    /// re-point carries the one it was planned for.
    pub(super) generation: u64,
    /// The changes of replication id seen in any instance's INFO (and kept across
    /// restarts): a crashed master's RDB is placed on its replicas' histories through them.
    pub(super) lineage: crate::history::Lineage,
    /// Each local master's last replication id, as its INFO or the topology file said.
    pub(super) last_ids: std::collections::BTreeMap<String, String>,
    /// Since when every instance answers and none is master (a loop, most likely).
    pub(super) no_master_since: Option<Instant>,
    /// Since when a local replica runs under another upstream than the group's.
    pub(super) drift_since: Option<Instant>,
}

impl Roles {
    /// The roles of a new machine: `actual` is master, nothing under way, no history.
    pub(super) fn new(actual: String) -> Roles {
        Roles {
            actual,
            change: Asked::Never,
            change_why: Reason::Failover,
            failover_from: None,
            sentinel_failover: Asked::Never,
            catch_up: None,
            no_catch_up: None,
            changed_at: None,
            generation: 0,
            lineage: crate::history::Lineage::default(),
            last_ids: std::collections::BTreeMap::new(),
            no_master_since: None,
            drift_since: None,
        }
    }

    /// A failover, promotion or repair was asked for `why`; its answer is pending.
    pub(super) fn begin_change(&mut self, why: Reason) {
        self.change = Asked::UnderWay;
        self.change_why = why;
    }

    /// Whether a role change or a catch-up is under way.
    pub(super) fn busy(&self) -> bool {
        self.change == Asked::UnderWay || self.catch_up.is_some()
    }

    /// What the topology file keeps: the actual master and the replication history seen.
    pub(super) fn kept(&self) -> crate::topology::Kept {
        crate::topology::Kept {
            master: self.actual.clone(),
            last_ids: self.last_ids.clone(),
            lineage: self.lineage.clone(),
        }
    }
}

/// A crashed master catching up from the replica that is ahead of it.
pub(super) struct CatchUp {
    /// The crashed master.
    master: String,
    /// The replica it catches up from (master for the moment).
    source: String,
    phase: Phase,
    /// Hand-backs that failed.
    retries: u32,
    /// When it began: INFO asked before says nothing about it.
    began: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `REPLICAOF NO ONE` sent to the source.
    Promoting,
    /// The master runs as the source's replica, until in sync and the other replicas
    /// follow the source too (since then), so that all share the history the master will
    /// hand on: none needs a full sync after the hand-back.
    Following(Instant),
    /// `FAILOVER TO master` sent to the source.
    HandingBack,
    /// A hand-back failed: try again then.
    Retry(Instant),
}
