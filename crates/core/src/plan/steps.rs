//! The steps an operation is carried out by, and the orders of start, stop and restart.

use std::collections::HashSet;

use super::live::LiveChange;
use crate::config::Group;

/// One thing the supervisor does for an operation, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Authenticated SHUTDOWN (saving); `force` skips the quorum check and, if the final
    /// save fails, shuts down without saving.
    Stop { name: String, force: bool },
    /// Mark the instance wanted; it passes the sync gate and starts.
    Start { name: String },
    /// Wait until it is running (a replica: in sync with its upstream).
    AwaitReady { name: String },
    /// Change the passwords and ACL users of a running instance in place (`ACL SETUSER`,
    /// `ACL DELUSER`, `CONFIG SET masterauth` ...), and write its new redis.conf:
    /// replication links stay up, because AUTH happens only on connect.
    SetPassword {
        name: String,
        change: crate::acl::AuthChange,
    },
    /// Apply a changed config to a running instance without a restart (`CONFIG SET`,
    /// `REPLICAOF`), and write its new redis.conf so a later start agrees. Should the
    /// server refuse a setting at runtime, or a new upstream not be sure to resync
    /// partially, the instance is restarted instead (through the sync gate).
    ApplyLive { name: String, change: LiveChange },
    /// Ask every instance the daemon probes for a fresh INFO and wait for the answers
    /// (or a few seconds), so the next step decides on facts no older than itself.
    AwaitProbes { name: String },
    /// Coordinated switchover: `FAILOVER TO` on the current master, making `name` master.
    Failover { name: String, force: bool },
    /// The master is gone: make `name` master (`REPLICAOF NO ONE`).
    Promote { name: String, force: bool },
    /// Wait until every instance that answers follows the actual topology (`name` is its
    /// master), and report who follows whom.
    AwaitTopology { name: String },
    /// Sentinel mode: ask the sentinels to fail over (`SENTINEL FAILOVER`) and wait until
    /// they name a master other than `name`; with `force`, a failover that does not happen
    /// does not stop the operation (the stop of `name` goes on).
    SentinelFailover { name: String, force: bool },
}

impl Step {
    /// The instance the step is about.
    pub fn name(&self) -> &str {
        match self {
            Step::Stop { name, .. }
            | Step::Start { name }
            | Step::AwaitReady { name }
            | Step::SetPassword { name, .. }
            | Step::ApplyLive { name, .. }
            | Step::AwaitProbes { name }
            | Step::Failover { name, .. }
            | Step::Promote { name, .. }
            | Step::AwaitTopology { name }
            | Step::SentinelFailover { name, .. } => name,
        }
    }
}

/// Names sorted parents first (master, then each level of replicas), file order within a
/// level; unknown names are dropped (the caller reports them).
pub(super) fn parents_first<'a>(group: &'a Group, names: &[String]) -> Vec<&'a str> {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    group
        .start_order_all()
        .into_iter()
        .filter(|i| wanted.contains(i.name.as_str()))
        .map(|i| i.name.as_str())
        .collect()
}

/// Start: parents first, each waited for, so a replica never races its upstream.
pub fn start(group: &Group, names: &[String]) -> Vec<Step> {
    parents_first(group, names)
        .into_iter()
        .flat_map(|n| {
            [
                Step::Start { name: n.to_owned() },
                Step::AwaitReady { name: n.to_owned() },
            ]
        })
        .collect()
}

/// Stop: deepest replicas first, masters last.
pub fn stop(group: &Group, names: &[String], force: bool) -> Vec<Step> {
    let mut order = parents_first(group, names);
    order.reverse();
    order
        .into_iter()
        .map(|n| Step::Stop {
            name: n.to_owned(),
            force,
        })
        .collect()
}

/// Rolling restart: one instance at a time, deepest first, master last; each is back (in
/// sync, for a replica) before the next goes down, so at most one is ever away.
pub fn restart(group: &Group, names: &[String], force: bool) -> Vec<Step> {
    let mut order = parents_first(group, names);
    order.reverse();
    order
        .into_iter()
        .flat_map(|n| {
            [
                Step::Stop {
                    name: n.to_owned(),
                    force,
                },
                Step::Start { name: n.to_owned() },
                Step::AwaitReady { name: n.to_owned() },
            ]
        })
        .collect()
}

/// A planned restart of the group's `master` (not forced): the role moves first to its
/// most up-to-date replica with the switchover, the master restarts as that one's
/// replica (from the RDB its SHUTDOWN SAVE wrote: a partial resync, AOF or not), and the
/// role comes back the same way. Writes wait milliseconds twice instead of being refused
/// for the master's save and load, and no replica full-syncs against a master that came
/// back from its AOF with a new replication id. Other steps are left as they are.
///
/// The move is decided when its turn comes, on INFO asked then (`AwaitProbes` first): the
/// group's master may have changed since this plan was made (the machine drops both moves
/// when `master` is not the master any more, and the move back when the group moved on
/// meanwhile).
pub fn restart_master_away(steps: Vec<Step>, master: &str) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len() + 5);
    let mut i = 0;
    while i < steps.len() {
        let triple = matches!(
            &steps[i..],
            [Step::Stop { name: a, force: false }, Step::Start { name: b }, Step::AwaitReady { name: c }, ..]
                if a == master && b == master && c == master
        );
        if triple {
            out.push(Step::AwaitProbes {
                name: master.to_owned(),
            });
            out.push(Step::Failover {
                name: String::new(),
                force: false,
            });
            out.push(Step::AwaitTopology {
                name: String::new(),
            });
            out.extend(steps[i..i + 3].iter().cloned());
            out.push(Step::Failover {
                name: master.to_owned(),
                force: false,
            });
            out.push(Step::AwaitTopology {
                name: master.to_owned(),
            });
            i += 3;
        } else {
            out.push(steps[i].clone());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{CASCADE, group, names};
    use super::*;

    #[test]
    fn a_planned_master_restart_moves_the_role_away_and_back_around_it() {
        let stop = |n: &str, force| Step::Stop {
            name: n.into(),
            force,
        };
        let start = |n: &str| Step::Start { name: n.into() };
        let ready = |n: &str| Step::AwaitReady { name: n.into() };
        let steps = vec![stop("r1", false), start("r1"), ready("r1")];
        let mut all = steps.clone();
        all.extend([stop("m", false), start("m"), ready("m")]);
        let away = restart_master_away(all, "m");
        assert_eq!(away[..3], steps[..]);
        assert_eq!(
            away[3..],
            [
                Step::AwaitProbes { name: "m".into() },
                Step::Failover {
                    name: String::new(),
                    force: false
                },
                Step::AwaitTopology {
                    name: String::new()
                },
                stop("m", false),
                start("m"),
                ready("m"),
                Step::Failover {
                    name: "m".into(),
                    force: false
                },
                Step::AwaitTopology { name: "m".into() },
            ]
        );
        // Forced, or only stopped: as they were.
        let forced = vec![stop("m", true), start("m"), ready("m")];
        assert_eq!(restart_master_away(forced.clone(), "m"), forced);
        let stopped = vec![stop("m", false)];
        assert_eq!(restart_master_away(stopped.clone(), "m"), stopped);
    }

    #[test]
    fn restart_goes_deepest_first_master_last_one_at_a_time() {
        let g = group(CASCADE);
        let steps = restart(&g, &names(&["m", "r1", "leaf", "r2"]), false);
        let stops: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Stop { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(stops, ["leaf", "r2", "r1", "m"]);
        assert_eq!(steps.len(), 12);
        assert_eq!(
            steps[1],
            Step::Start {
                name: "leaf".into()
            }
        );
        assert_eq!(
            steps[2],
            Step::AwaitReady {
                name: "leaf".into()
            }
        );
    }

    #[test]
    fn start_goes_parents_first() {
        let g = group(CASCADE);
        let steps = start(&g, &names(&["leaf", "r1"]));
        assert_eq!(steps[0], Step::Start { name: "r1".into() });
        assert_eq!(
            steps[2],
            Step::Start {
                name: "leaf".into()
            }
        );
    }
}
