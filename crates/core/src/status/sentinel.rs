//! The sentinels as `status` shows them (Sentinel mode): one record per node, and what
//! they say together.

use serde::{Deserialize, Serialize};

/// One sentinel node as `status` shows it (Sentinel mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentinelStatus {
    pub name: String,
    pub host: String,
    pub address: String,
    /// It answered.
    pub reachable: bool,
    /// The instance it names as master (its address when that is no instance).
    pub master: Option<String>,
    /// The configuration epoch of the master it monitors.
    pub config_epoch: Option<u64>,
    /// Replicas and other sentinels it knows.
    pub replicas: Option<u32>,
    pub other_sentinels: Option<u32>,
    pub error: Option<String>,
}

/// What the sentinels say together: how many answer, what most of them name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentinelSummary {
    pub quorum: u32,
    pub reachable: usize,
    pub master: Option<String>,
    /// How many name `master`.
    pub agree: usize,
    pub nodes: Vec<SentinelStatus>,
}

impl SentinelSummary {
    /// Sums the nodes up.
    pub fn of(quorum: u32, nodes: Vec<SentinelStatus>) -> SentinelSummary {
        let reachable = nodes.iter().filter(|n| n.reachable).count();
        let mut counts: Vec<(String, usize)> = Vec::new();
        for m in nodes.iter().filter_map(|n| n.master.clone()) {
            match counts.iter_mut().find(|(k, _)| *k == m) {
                Some((_, c)) => *c += 1,
                None => counts.push((m, 1)),
            }
        }
        let best = counts.iter().max_by_key(|(_, c)| *c).cloned();
        SentinelSummary {
            quorum,
            reachable,
            agree: best.as_ref().map_or(0, |(_, c)| *c),
            master: best.map(|(m, _)| m),
            nodes,
        }
    }

    /// Fewer than `quorum` sentinels answer: no failover could be authorised.
    pub fn degraded(&self) -> bool {
        self.reachable < self.quorum as usize
    }

    /// The sentinels' lines of the human table.
    pub fn table(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::NOTHING);
        t.set_header([
            "SENTINEL",
            "HOST",
            "ADDRESS",
            "STATE",
            "NAMES MASTER",
            "EPOCH",
            "KNOWS",
        ]);
        let dash = || "-".to_owned();
        for n in &self.nodes {
            t.add_row([
                n.name.clone(),
                n.host.clone(),
                n.address.clone(),
                if n.reachable {
                    "running".to_owned()
                } else {
                    format!("unreachable: {}", n.error.clone().unwrap_or_default())
                },
                n.master.clone().unwrap_or_else(dash),
                n.config_epoch.map_or_else(dash, |e| e.to_string()),
                match (n.replicas, n.other_sentinels) {
                    (Some(r), Some(s)) => format!("{r} replicas, {s} sentinels"),
                    _ => dash(),
                },
            ]);
        }
        let mut out = format!("{t}\n");
        out.push_str(&format!(
            "sentinels: {}/{} answer (quorum {}); {} name {}\n",
            self.reachable,
            self.nodes.len(),
            self.quorum,
            self.agree,
            self.master.as_deref().unwrap_or("no master"),
        ));
        if self.degraded() {
            out.push_str(
                "warning: fewer sentinels answer than the quorum: no failover can happen\n",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, master: Option<&str>) -> SentinelStatus {
        SentinelStatus {
            name: name.into(),
            host: "h".into(),
            address: "127.0.0.1:1".into(),
            reachable: master.is_some(),
            master: master.map(str::to_owned),
            config_epoch: Some(1),
            replicas: Some(2),
            other_sentinels: Some(2),
            error: master.is_none().then(|| "connection refused".to_owned()),
        }
    }

    #[test]
    fn the_summary_counts_who_answers_and_what_most_name() {
        let s = SentinelSummary::of(
            2,
            vec![
                node("s1", Some("r1")),
                node("s2", Some("r1")),
                node("s3", None),
            ],
        );
        assert_eq!((s.reachable, s.agree), (2, 2));
        assert_eq!(s.master.as_deref(), Some("r1"));
        assert!(!s.degraded());
        assert!(
            s.table().contains("2/3 answer (quorum 2); 2 name r1"),
            "{}",
            s.table()
        );
        let s = SentinelSummary::of(
            2,
            vec![node("s1", Some("m")), node("s2", None), node("s3", None)],
        );
        assert!(s.degraded());
        assert!(s.table().contains("fewer sentinels answer than the quorum"));
    }
}
