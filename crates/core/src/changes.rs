//! The group's changes of master as the daemons record them: why a change happened, the
//! record each daemon keeps (`run_dir/<host>.history`, JSON lines), and the merge of
//! several daemons' records into one history (`redisrepd history`). Pure: reading and
//! writing the file is the daemon's, asking the daemons is the verb's.
//!
//! Every daemon records each change of the group's master it makes or learns, so the same
//! change appears once per daemon: with its specific reason where it was made (`failover`
//! on the daemon that ran `FAILOVER`), as `learned` elsewhere, a little later. The merge
//! makes it one entry: two records are the same change when they name the same new master
//! with the same replication id (a master's id changes each time it becomes master), or,
//! when one id is unknown, the same old and new master within [`SAME_CHANGE_WINDOW`] on
//! different daemons.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How many changes a daemon keeps: the oldest go first.
pub const KEPT: usize = 1000;

/// How far apart two daemons' records of one change may be when a replication id is
/// unknown: a daemon learns a change within a few probes of it.
pub const SAME_CHANGE_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Why the group's master changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// `redisrepd failover`: a switchover with `FAILOVER`.
    Failover,
    /// `redisrepd promote`: the master was gone.
    Promote,
    /// A crashed master caught up from a replica ahead of it (both of its changes: to the
    /// replica for the moment, and back).
    CatchUp,
    /// The sentinels elected another master.
    Sentinel,
    /// `reload` of a file without the actual master: its configured master takes over.
    Reload,
    /// No instance was master (a replication loop): the most advanced one was made master.
    Repair,
    /// Another daemon (or an operator by hand) made the change; this daemon learned it from
    /// the instances' INFO.
    Learned,
    /// Not a change: the daemon started (its instances are up) and runs the hook once, so
    /// that what it maintains (a virtual IP) is in place after a reboot. Never in the
    /// history.
    Start,
}

impl Reason {
    /// The word `history` prints and `REDISREPD_REASON` carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Failover => "failover",
            Reason::Promote => "promote",
            Reason::CatchUp => "catch-up",
            Reason::Sentinel => "sentinel",
            Reason::Reload => "reload",
            Reason::Repair => "repair",
            Reason::Learned => "learned",
            Reason::Start => "start",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of the group's master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// When it was made or learned (UTC); after a merge, the earliest record's.
    pub time: jiff::Timestamp,
    pub old_master: String,
    pub new_master: String,
    pub reason: Reason,
    /// The new master's replication id once master (`master_replid`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repl_id: Option<String>,
    /// The hosts whose daemons recorded it.
    pub seen_by: Vec<String>,
}

/// The records of one daemon's file, oldest first; lines that cannot be read are skipped
/// and returned (with their number) for a warning.
pub fn parse_file(text: &str) -> (Vec<Change>, Vec<String>) {
    let mut changes = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Change>(line) {
            Ok(c) => changes.push(c),
            Err(e) => bad.push(format!("line {}: {e}", n + 1)),
        }
    }
    (changes, bad)
}

/// The file's text: one JSON object per line.
pub fn format_file(changes: &[Change]) -> String {
    let mut text = String::new();
    for c in changes {
        if let Ok(line) = serde_json::to_string(c) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// `kept` with `change` added, at most [`KEPT`] of them.
pub fn append(mut kept: Vec<Change>, change: Change) -> Vec<Change> {
    kept.push(change);
    let excess = kept.len().saturating_sub(KEPT);
    kept.drain(..excess);
    kept
}

/// Whether `a` (a merged entry) and `b` (one daemon's record) are the same change.
fn same(a: &Change, b: &Change) -> bool {
    if a.new_master != b.new_master || b.seen_by.iter().any(|h| a.seen_by.contains(h)) {
        return false;
    }
    match (&a.repl_id, &b.repl_id) {
        (Some(x), Some(y)) => x == y,
        _ => {
            a.old_master == b.old_master
                && b.time.duration_since(a.time).abs() <= SAME_CHANGE_WINDOW
        }
    }
}

/// The daemons' records as one history, oldest first: each change once, with the earliest
/// time any daemon recorded it, the specific reason over `learned`, the replication id
/// when any knew it, and every host that recorded it.
pub fn merge(records: Vec<Vec<Change>>) -> Vec<Change> {
    let mut all: Vec<Change> = records.into_iter().flatten().collect();
    all.sort_by_key(|c| c.time);
    let mut merged: Vec<Change> = Vec::new();
    for c in all {
        match merged.iter_mut().find(|m| same(m, &c)) {
            Some(m) => {
                if m.reason == Reason::Learned && c.reason != Reason::Learned {
                    m.reason = c.reason;
                    m.old_master = c.old_master.clone();
                }
                if m.repl_id.is_none() {
                    m.repl_id = c.repl_id.clone();
                }
                for h in c.seen_by {
                    if !m.seen_by.contains(&h) {
                        m.seen_by.push(h);
                    }
                }
            }
            None => merged.push(c),
        }
    }
    for m in &mut merged {
        m.seen_by.sort();
    }
    merged
}

/// The table `history` prints.
pub fn render_table(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no change of master recorded\n".to_owned();
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(["TIME (UTC)", "FROM", "TO", "REASON", "SEEN BY"]);
    for c in changes {
        let time = c.time.strftime("%Y-%m-%d %H:%M:%S").to_string();
        t.add_row([
            time,
            c.old_master.clone(),
            c.new_master.clone(),
            c.reason.to_string(),
            c.seen_by.join(","),
        ]);
    }
    let mut out = String::new();
    for line in t.to_string().lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn change(
        secs: i64,
        old: &str,
        new: &str,
        reason: Reason,
        id: Option<&str>,
        host: &str,
    ) -> Change {
        Change {
            time: at(secs),
            old_master: old.into(),
            new_master: new.into(),
            reason,
            repl_id: id.map(str::to_owned),
            seen_by: vec![host.into()],
        }
    }

    #[test]
    fn the_same_change_seen_by_two_daemons_is_one_entry_with_the_specific_reason() {
        let a = vec![
            change(0, "m", "r1", Reason::Failover, None, "a"),
            change(10, "r1", "m", Reason::Failover, Some("id2"), "a"),
        ];
        let b = vec![
            change(1, "m", "r1", Reason::Learned, Some("id1"), "b"),
            change(9, "r1", "m", Reason::Learned, Some("id2"), "b"),
        ];
        let h = merge(vec![b, a]);
        assert_eq!(h.len(), 2, "{h:#?}");
        assert_eq!(
            (h[0].reason, h[0].time, h[0].repl_id.as_deref()),
            (Reason::Failover, at(0), Some("id1"))
        );
        assert_eq!(h[0].seen_by, ["a", "b"]);
        assert_eq!((h[1].reason, h[1].time), (Reason::Failover, at(9)));
        assert_eq!(h[1].new_master, "m");
    }

    #[test]
    fn back_and_forth_changes_stay_apart() {
        // Two daemons, three quick changes m -> r1 -> m -> r1 with unknown ids: each
        // daemon's records pair up one to one, in order.
        let a = vec![
            change(0, "m", "r1", Reason::Failover, None, "a"),
            change(2, "r1", "m", Reason::Failover, None, "a"),
            change(4, "m", "r1", Reason::Failover, None, "a"),
        ];
        let b = vec![
            change(1, "m", "r1", Reason::Learned, None, "b"),
            change(3, "r1", "m", Reason::Learned, None, "b"),
            change(5, "m", "r1", Reason::Learned, None, "b"),
        ];
        let h = merge(vec![a, b]);
        let summary: Vec<(i64, &str)> = h
            .iter()
            .map(|c| (c.time.as_second() - 1_800_000_000, c.new_master.as_str()))
            .collect();
        assert_eq!(summary, [(0, "r1"), (2, "m"), (4, "r1")]);
        assert!(h.iter().all(|c| c.seen_by == ["a", "b"]), "{h:#?}");
    }

    #[test]
    fn different_ids_or_times_far_apart_are_different_changes() {
        let h = merge(vec![
            vec![change(0, "m", "r1", Reason::Failover, Some("x"), "a")],
            vec![change(1, "m", "r1", Reason::Learned, Some("y"), "b")],
            vec![change(100, "m", "r1", Reason::Learned, None, "c")],
        ]);
        assert_eq!(h.len(), 3, "{h:#?}");
        // The same id seen again after a daemon restart on one host is one change.
        let h = merge(vec![
            vec![change(0, "m", "r1", Reason::Learned, Some("x"), "a")],
            vec![change(50, "m", "r1", Reason::Learned, Some("x"), "b")],
        ]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_file_round_trips_skips_bad_lines_and_keeps_the_newest() {
        let c = change(0, "m", "r1", Reason::CatchUp, Some("x"), "a");
        let text = format_file(std::slice::from_ref(&c));
        assert!(text.contains("\"reason\":\"catch-up\""), "{text}");
        let (back, bad) = parse_file(&format!("{text}garbage\n\n"));
        assert_eq!(back, std::slice::from_ref(&c));
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("line 2"), "{bad:?}");
        let mut kept = Vec::new();
        for i in 0..(KEPT as i64 + 5) {
            kept = append(kept, change(i, "m", "r1", Reason::Learned, None, "a"));
        }
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].time, at(5));
    }

    #[test]
    fn the_table_names_each_change() {
        let t = render_table(&[change(0, "m", "r1", Reason::Promote, None, "b")]);
        assert!(t.contains("TIME (UTC)"), "{t}");
        let row = t.lines().nth(1).unwrap_or_default();
        assert!(
            row.contains("m") && row.contains("r1") && row.contains("promote"),
            "{t}"
        );
        assert_eq!(render_table(&[]), "no change of master recorded\n");
    }
}
