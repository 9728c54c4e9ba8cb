//! `[sentinel]`: its own settings, and its nodes against the group.

use std::collections::{HashMap, HashSet};

use super::Validator;
use crate::config::model::{Group, Sentinel, SentinelNode};
use crate::config::raw::RawSentinel;
impl Validator {
    /// `[sentinel]` on its own: quorum, durations, each node's host.
    pub(super) fn sentinel(&mut self, raw: RawSentinel) -> Sentinel {
        let quorum = match u32::try_from(raw.quorum) {
            Ok(q) if q >= 1 => q,
            _ => {
                self.error(
                    None,
                    "sentinel.quorum",
                    format!(
                        "is {}: at least 1 sentinel must agree that the master is down",
                        raw.quorum
                    ),
                );
                1
            }
        };
        let s = Sentinel {
            quorum,
            down_after: raw.down_after.unwrap_or(Sentinel::DEFAULT_DOWN_AFTER),
            failover_timeout: raw
                .failover_timeout
                .unwrap_or(Sentinel::DEFAULT_FAILOVER_TIMEOUT),
            nodes: raw
                .nodes
                .into_iter()
                .map(|n| SentinelNode {
                    name: n.name.into_string(),
                    host: n.host,
                    bind: n.bind,
                    port: n.port.0,
                })
                .collect(),
        };
        // Sentinel counts in milliseconds; below one it would read 0 and refuse to start.
        for (key, value) in [
            ("down_after", s.down_after),
            ("failover_timeout", s.failover_timeout),
        ] {
            if value.as_millis() == 0 {
                self.error(
                    None,
                    &format!("sentinel.{key}"),
                    "must be at least 1ms (Sentinel counts in milliseconds)",
                );
            }
        }
        // Sentinel PINGs each instance every min(down_after, 1 s), and times a new link
        // (a new master after each failover, every instance when a sentinel starts) from
        // its creation, sending its first PING only 1 s after it. With down_after at 1 s
        // or less it judges that instance down before the answer can come: a moment of
        // `+sdown` each time, and when the other sentinels agree, a second failover
        // (measured on 7.0: 1 test run in ~30).
        if s.down_after <= Sentinel::PING_PERIOD && s.down_after.as_millis() > 0 {
            self.warn(
                None,
                "sentinel.down_after",
                format!(
                    "is {}ms: Sentinel sends its first PING to a new master only 1 s after it \
                     learns of it, so with down_after at 1s or less it judges every new master \
                     down for a moment, and may fail over a second time right after a \
                     failover; use at least 2s",
                    s.down_after.as_millis()
                ),
            );
        }
        if raw.quorum >= 1 && (s.nodes.len() as i64) < raw.quorum {
            self.error(
                None,
                "sentinel.nodes",
                format!(
                    "lists {} node(s) but `quorum` is {}: that many sentinels could never \
                     agree; add nodes or lower `quorum`",
                    s.nodes.len(),
                    raw.quorum
                ),
            );
        }
        for n in &s.nodes {
            if n.host.is_empty() {
                self.error(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}`: `host` is empty: name the host whose daemon runs it",
                        n.name
                    ),
                );
            }
        }
        s
    }

    /// The rules between sentinel nodes and instances: names and addresses are shared.
    /// A node's host need not run an instance: a third host with only a sentinel is the
    /// usual tie-breaker.
    pub(super) fn sentinel_nodes(&mut self, g: &Group) {
        let Some(s) = &g.sentinel else { return };
        let mut names: HashSet<&str> = g.instances.iter().map(|i| i.name.as_str()).collect();
        let instance_names = names.clone();
        for n in &s.nodes {
            if !names.insert(&n.name) {
                let other = if instance_names.contains(n.name.as_str()) {
                    "an [[instance]]"
                } else {
                    "another sentinel node"
                };
                self.error(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}`: the name is also used by {other}: names must be unique \
                         (they name pid, log and data files)",
                        n.name
                    ),
                );
            }
        }
        let mut addresses: HashMap<(&str, std::net::IpAddr, u16), String> = g
            .instances
            .iter()
            .map(|i| {
                (
                    (i.host.as_str(), i.bind, i.port),
                    format!("instance `{}`", i.name),
                )
            })
            .collect();
        for n in &s.nodes {
            let key = (n.host.as_str(), n.bind, n.port);
            if let Some(other) = addresses.get(&key) {
                self.error(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}`: {} on host `{}` is also used by {other}: give one of them \
                         another port",
                        n.name,
                        n.address(),
                        n.host
                    ),
                );
            } else {
                addresses.insert(key, format!("sentinel node `{}`", n.name));
            }
        }
        // A sentinel announces its `bind` to the others (`announce-ip`), and Redis 6.2 also
        // sends its own connections from it (the first `bind` address: there is no
        // `bind-source-addr` before 7.0). A loopback address serves only when everything
        // on the other hosts is on loopback too (one machine, as in tests).
        for n in s.nodes.iter().filter(|n| n.bind.is_loopback()) {
            let remote = g
                .instances
                .iter()
                .filter(|i| i.host != n.host && !i.bind.is_loopback())
                .map(|i| {
                    format!(
                        "instance `{}` on host `{}` is at {}",
                        i.name, i.host, i.bind
                    )
                })
                .chain(
                    s.nodes
                        .iter()
                        .filter(|o| o.host != n.host && !o.bind.is_loopback())
                        .map(|o| {
                            format!("node `{}` on host `{}` is at {}", o.name, o.host, o.bind)
                        }),
                )
                .next();
            if let Some(remote) = remote {
                self.warn(
                    None,
                    "sentinel.nodes",
                    format!(
                        "node `{}` binds {}, a loopback address, while {remote}: the other \
                         hosts cannot reach it (it announces its `bind`), and on Redis 6.2 its \
                         own connections leave from that address and reach no other host; \
                         bind it to an address of host `{}` that the other hosts reach",
                        n.name, n.bind, n.host
                    ),
                );
            }
        }
    }
}
