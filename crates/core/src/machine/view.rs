//! What the health endpoints decide on (`crate::endpoints::View`): the machine's last
//! probe of every instance of the group and who the group's master is, published by the
//! runtime after every input so that HTTP threads never ask the supervisor.

use std::time::Instant;

use super::Machine;
use crate::endpoints::{GroupMaster, Member, Probe, View};

impl Machine {
    /// The view the endpoints decide on, as of `now`.
    pub fn endpoint_view(&self, now: Instant) -> View {
        let interval = self.group.supervise.health_interval;
        let members = self
            .group
            .instances
            .iter()
            .map(|inst| Member {
                name: inst.name.clone(),
                bind: inst.bind,
                port: inst.port,
                upstream: inst.replica_of.clone(),
                probe: self.seen.infos.get(&inst.name).map(|p| Probe {
                    at: p.at,
                    result: p.result.clone(),
                }),
            })
            .collect();
        View {
            cluster: self.group.cluster.name.clone(),
            master: self.group_master(now),
            members,
            max_age: interval + 2 * super::probe_timeout(interval),
        }
    }

    /// Without Sentinel, the daemons' actual master; with it, the master a majority of
    /// the sentinels name — or the last one they named when none answers (they cannot
    /// have failed over then), and none while they answer but disagree.
    fn group_master(&self, now: Instant) -> GroupMaster {
        let Some(s) = &self.group.sentinel else {
            return GroupMaster::Named {
                name: self.roles.actual.clone(),
                by: "the daemons' view",
            };
        };
        if let Some(name) = self.sentinels_master(now) {
            return GroupMaster::Named {
                name,
                by: "named by a majority of the sentinels",
            };
        }
        let answering = s
            .nodes
            .iter()
            .any(|n| self.fresh_info(&n.name, now).is_some());
        if answering {
            GroupMaster::Unknown(
                "the sentinels do not agree on a master (a failover may be under way)".into(),
            )
        } else {
            GroupMaster::Named {
                name: self.roles.actual.clone(),
                by: "last named by the sentinels; none answers now",
            }
        }
    }
}
