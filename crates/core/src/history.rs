//! Replication histories and how they relate, judged the way PSYNC judges them. Pure.
//!
//! Every stream of writes a master serves carries a replication id; offsets count its
//! bytes and go on across a change of id. A server changes its id when it becomes master
//! (a promotion, `FAILOVER`, a restart from an RDB that carries an id): the old id becomes
//! its *second* id (`master_replid2`), valid up to `second_repl_offset`, and its replicas
//! follow it with a partial resync and take both ids. So a position `(id, offset)` — what
//! an RDB resumes from — lies on an instance's history when the id is its main id, or its
//! second id with the offset below `second_repl_offset` (that is PSYNC's own test), or
//! when a chain of such id changes seen earlier (a [`Lineage`]) leads from the id to one of
//! those. The catch-up of a crashed master asks exactly this of each replica: does it hold
//! everything the master's RDB holds, and more?

use serde::{Deserialize, Serialize};

use crate::info::Info;
use crate::rdb::ReplPosition;

/// What an instance's INFO says of its replication history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// `master_replid`: the history it is on now.
    pub id: String,
    /// `master_repl_offset`: how far along it is.
    pub offset: i64,
    /// `master_replid2` and `second_repl_offset`: the history it was on before its last
    /// change of id, shared up to (not including) that offset. `None` when it never
    /// changed (Redis reports forty zeros and -1).
    pub second: Option<(String, i64)>,
}

impl Ids {
    /// The ids and offsets in an INFO's replication section; `None` when they are missing.
    pub fn of(info: &Info) -> Option<Ids> {
        let id = info.get("master_replid")?.to_owned();
        let offset = info.repl_offset()?;
        let second = info
            .get("master_replid2")
            .zip(info.int("second_repl_offset"))
            .filter(|(id2, until)| *until >= 0 && !id2.bytes().all(|b| b == b'0'))
            .map(|(id2, until)| (id2.to_owned(), until));
        Some(Ids { id, offset, second })
    }
}

/// One change of replication id: `new` continues `old`, sharing its stream up to (not
/// including) offset `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub new: String,
    pub old: String,
    pub until: i64,
}

/// The changes of id a daemon has seen in any instance's INFO, oldest first, kept across
/// daemon restarts (in the topology file) so that an RDB older than several changes can
/// still be placed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    links: Vec<Link>,
}

/// How many changes of id are kept: each restart, failover or promotion makes one, and an
/// RDB older than this many is judged without them.
const KEPT_LINKS: usize = 64;

impl Lineage {
    /// A lineage from links kept earlier (oldest first).
    pub fn from_links(mut links: Vec<Link>) -> Lineage {
        if links.len() > KEPT_LINKS {
            links.drain(..links.len() - KEPT_LINKS);
        }
        Lineage { links }
    }

    /// The links, oldest first.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Records the change of id an instance's INFO shows, if it is new; true when it was.
    pub fn learn(&mut self, ids: &Ids) -> bool {
        let Some((old, until)) = &ids.second else {
            return false;
        };
        let link = Link {
            new: ids.id.clone(),
            old: old.clone(),
            until: *until,
        };
        if self.links.contains(&link) {
            return false;
        }
        self.links.push(link);
        if self.links.len() > KEPT_LINKS {
            self.links.remove(0);
        }
        true
    }
}

/// Whether a replica holds more than a position (an RDB's) on the same history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It holds everything up to the position and more: how that was known.
    Ahead(String),
    /// It is on the position's history but not past it, or it parted from that history
    /// before the position: catching up from it would lose what the RDB holds.
    NotAhead(String),
    /// Nothing known relates the two histories.
    Unrelated,
}

/// Judges a replica against the position an RDB resumes from, on the replica's INFO and
/// the changes of id seen before.
pub fn judge(rdb: &ReplPosition, replica: &Ids, lineage: &Lineage) -> Verdict {
    match place(
        &rdb.repl_id,
        rdb.offset,
        replica,
        lineage.links(),
        &mut Vec::new(),
    ) {
        Some(how) if replica.offset > rdb.offset => Verdict::Ahead(format!(
            "the RDB's history {} lies on {how}, and its offset {} is past the RDB's {}",
            short(&rdb.repl_id),
            replica.offset,
            rdb.offset
        )),
        Some(how) => Verdict::NotAhead(format!(
            "the RDB's history lies on {how}, but its offset {} is not past the RDB's {}",
            replica.offset, rdb.offset
        )),
        None if parted(&rdb.repl_id, rdb.offset, replica, lineage.links()) => {
            Verdict::NotAhead(format!(
                "it left the RDB's history {} before the RDB's offset {}",
                short(&rdb.repl_id),
                rdb.offset
            ))
        }
        None => Verdict::Unrelated,
    }
}

/// Whether a position on history `id` lies on the replica's history; how, if so. `seen`
/// holds the ids already followed: the offset stays the same along a chain, so an id seen
/// twice (a cycle in a file edited by hand, or two paths to one id) adds nothing.
fn place<'a>(
    id: &'a str,
    offset: i64,
    replica: &Ids,
    links: &'a [Link],
    seen: &mut Vec<&'a str>,
) -> Option<String> {
    if id == replica.id {
        return Some("its replication id".to_owned());
    }
    if let Some((id2, until)) = &replica.second
        && id2 == id
        && offset < *until
    {
        return Some(format!("its second id (shared up to offset {until})"));
    }
    if seen.contains(&id) {
        return None;
    }
    seen.push(id);
    links
        .iter()
        .filter(|l| l.old == id && offset < l.until)
        .find_map(|l| {
            place(&l.new, offset, replica, links, seen).map(|how| {
                format!(
                    "{how}, through the change of id {} -> {} at offset {}",
                    short(&l.old),
                    short(&l.new),
                    l.until
                )
            })
        })
}

/// Whether the replica's history (or one it descends from) left `id` at or before
/// `offset`: then the two hold different writes past that point.
fn parted(id: &str, offset: i64, replica: &Ids, links: &[Link]) -> bool {
    if replica
        .second
        .as_ref()
        .is_some_and(|(id2, until)| id2 == id && offset >= *until)
    {
        return true;
    }
    links
        .iter()
        .filter(|l| l.old == id && offset >= l.until)
        .any(|l| place(&l.new, l.until - 1, replica, links, &mut vec![id]).is_some())
}

/// The first characters of an id, enough to tell ids apart in a log line.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(id: &str, offset: i64) -> ReplPosition {
        ReplPosition {
            repl_id: id.to_owned(),
            offset,
        }
    }

    fn ids(id: &str, offset: i64, second: Option<(&str, i64)>) -> Ids {
        Ids {
            id: id.to_owned(),
            offset,
            second: second.map(|(s, u)| (s.to_owned(), u)),
        }
    }

    fn lineage(links: &[(&str, &str, i64)]) -> Lineage {
        Lineage::from_links(
            links
                .iter()
                .map(|(new, old, until)| Link {
                    new: (*new).to_owned(),
                    old: (*old).to_owned(),
                    until: *until,
                })
                .collect(),
        )
    }

    fn ahead(v: &Verdict) -> bool {
        matches!(v, Verdict::Ahead(_))
    }

    #[test]
    fn ids_come_from_info_and_a_never_changed_history_has_no_second_id() {
        let info = Info::parse(
            "master_replid:aaa\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n\
             master_repl_offset:10\r\nsecond_repl_offset:-1\r\n",
        );
        assert_eq!(Ids::of(&info), Some(ids("aaa", 10, None)));
        let info = Info::parse(
            "master_replid:bbb\r\nmaster_replid2:aaa\r\nmaster_repl_offset:50\r\n\
             second_repl_offset:11\r\n",
        );
        assert_eq!(Ids::of(&info), Some(ids("bbb", 50, Some(("aaa", 11)))));
        assert_eq!(Ids::of(&Info::parse("role:master\r\n")), None);
    }

    /// (RDB id, RDB offset, replica id, replica offset, replica second id and offset,
    /// links seen, ahead?) — every sequence of issue 18 among them.
    #[test]
    fn a_replica_is_ahead_of_an_rdb_as_psync_would_judge_it() {
        type Case<'a> = (
            &'a str,
            &'a str,
            i64,
            &'a str,
            i64,
            Option<(&'a str, i64)>,
            &'a [(&'a str, &'a str, i64)],
            bool,
        );
        let cases: &[Case] = &[
            // A master that never restarted: same main id, replica past the RDB.
            ("never restarted", "aaa", 100, "aaa", 2100, None, &[], true),
            (
                "never restarted, nothing new",
                "aaa",
                100,
                "aaa",
                100,
                None,
                &[],
                false,
            ),
            (
                "replica behind the RDB",
                "aaa",
                100,
                "aaa",
                80,
                None,
                &[],
                false,
            ),
            // Restarted once gracefully: the RDB names the old id, the replicas moved to
            // the new main id and keep the old one as their second id (up to 101).
            (
                "after a graceful restart",
                "aaa",
                100,
                "bbb",
                2100,
                Some(("aaa", 101)),
                &[],
                true,
            ),
            // The RDB was saved past the point the replica left that history.
            (
                "parted before the RDB",
                "aaa",
                300,
                "bbb",
                2100,
                Some(("aaa", 101)),
                &[],
                false,
            ),
            // Failover and back: aaa -> bbb (the replica promoted) -> ccc (the master took
            // the role back); the replicas know only ccc and bbb, the RDB names aaa.
            (
                "after failover and back",
                "aaa",
                100,
                "ccc",
                2100,
                Some(("bbb", 900)),
                &[("bbb", "aaa", 500)],
                true,
            ),
            // The same without the link: nothing relates them (the caller decides).
            (
                "failover and back, link unknown",
                "aaa",
                100,
                "ccc",
                2100,
                Some(("bbb", 900)),
                &[],
                false,
            ),
            // A catch-up before the crash, then a daemon restart: links kept in the file.
            (
                "three changes since the RDB",
                "aaa",
                100,
                "ddd",
                5000,
                Some(("ccc", 3000)),
                &[("bbb", "aaa", 101), ("ccc", "bbb", 2000)],
                true,
            ),
            // Other direction: the RDB is on a newer history than the replica, which is
            // still on the old one (it never resynced after the master's restart).
            (
                "replica on the older history",
                "bbb",
                500,
                "aaa",
                400,
                None,
                &[("bbb", "aaa", 101)],
                false,
            ),
            // A promoted replica's history that split off the RDB's before its offset.
            (
                "split before the RDB's offset",
                "aaa",
                700,
                "ccc",
                5000,
                None,
                &[("ccc", "aaa", 600)],
                false,
            ),
            // Unrelated ids, no link.
            ("unrelated", "zzz", 100, "aaa", 5000, None, &[], false),
        ];
        for (what, rid, roff, id, off, second, links, want) in cases {
            let v = judge(&pos(rid, *roff), &ids(id, *off, *second), &lineage(links));
            assert_eq!(ahead(&v), *want, "{what}: {v:?}");
        }
    }

    #[test]
    fn a_verdict_says_which_history_decided_and_tells_parted_from_unrelated() {
        let v = judge(
            &pos("aaa", 100),
            &ids("bbb", 2100, Some(("aaa", 101))),
            &Lineage::default(),
        );
        let Verdict::Ahead(why) = v else {
            panic!("{v:?}")
        };
        assert!(why.contains("second id"), "{why}");
        let v = judge(
            &pos("aaa", 100),
            &ids("ccc", 2100, None),
            &lineage(&[("bbb", "aaa", 500), ("ccc", "bbb", 900)]),
        );
        let Verdict::Ahead(why) = v else {
            panic!("{v:?}")
        };
        assert!(why.contains("aaa -> bbb"), "{why}");
        assert_eq!(
            judge(
                &pos("aaa", 300),
                &ids("bbb", 2100, Some(("aaa", 101))),
                &Lineage::default()
            ),
            Verdict::NotAhead(
                "it left the RDB's history aaa before the RDB's offset 300".to_owned()
            )
        );
        assert_eq!(
            judge(&pos("zzz", 1), &ids("aaa", 2, None), &Lineage::default()),
            Verdict::Unrelated
        );
    }

    #[test]
    fn a_lineage_learns_each_change_once_keeps_the_newest_and_survives_a_cycle() {
        let mut l = Lineage::default();
        assert!(!l.learn(&ids("aaa", 1, None)));
        assert!(l.learn(&ids("bbb", 1, Some(("aaa", 5)))));
        assert!(!l.learn(&ids("bbb", 9, Some(("aaa", 5)))));
        for n in 0..100 {
            l.learn(&ids(&format!("n{n}"), 1, Some(("x", n))));
        }
        assert_eq!(l.links().len(), KEPT_LINKS);
        assert_eq!(l.links().last().map(|k| k.new.as_str()), Some("n99"));
        // A hand-edited file with a cycle ends, unrelated.
        let cyc = lineage(&[("bbb", "aaa", 50), ("aaa", "bbb", 50)]);
        assert_eq!(
            judge(&pos("aaa", 1), &ids("zzz", 9, None), &cyc),
            Verdict::Unrelated
        );
    }
}
