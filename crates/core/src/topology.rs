//! The group's actual shape: which instance is the master now (after a failover, a
//! promotion or Sentinel's decision), how that rewrites who replicates from whom, how it is
//! learned from the instances' INFO, and how a daemon keeps it across its own restarts.
//! Pure: the machine decides with it, the runtime reads and writes the file.
//!
//! The TOML names the *configured* master. The *actual* master is an overlay on it:
//! [`effective`] turns the configured group into the group as it runs, so everything that
//! renders, starts, gates and orders instances follows the actual roles without knowing
//! about them.

use std::net::IpAddr;

use crate::config::{Group, Instance};
use crate::info::Info;

/// The group as it runs when `actual` is its master: `actual` replicates from nobody, the
/// configured master and every other direct replica of it replicate from `actual`, deeper
/// replicas keep their upstream. The master's `min_replicas_*` settings go with the role.
/// `None` or the configured master's own name gives the configured group back.
pub fn effective(configured: &Group, actual: Option<&str>) -> Group {
    let mut group = configured.clone();
    let old = configured.master().name.clone();
    let Some(new) = actual.filter(|a| *a != old && configured.instance(a).is_some()) else {
        return group;
    };
    let (to_write, max_lag) = {
        let m = configured.master();
        (m.min_replicas_to_write, m.min_replicas_max_lag)
    };
    for inst in &mut group.instances {
        if inst.name == new {
            inst.replica_of = None;
            inst.min_replicas_to_write = inst.min_replicas_to_write.or(to_write);
            inst.min_replicas_max_lag = inst.min_replicas_max_lag.or(max_lag);
        } else if inst.name == old || inst.replica_of.as_deref() == Some(old.as_str()) {
            inst.replica_of = Some(new.to_owned());
            if inst.name == old {
                inst.min_replicas_to_write = None;
                inst.min_replicas_max_lag = None;
            }
        }
    }
    group
}

/// The instance of `group` listening on `host:port`, as INFO names it.
pub fn instance_at<'a>(group: &'a Group, host: &str, port: u16) -> Option<&'a Instance> {
    let ip: IpAddr = host.parse().ok()?;
    group
        .instances
        .iter()
        .find(|i| i.port == port && (i.bind == ip || i.bind.is_unspecified()))
}

/// What one instance said when last asked, for [`learn`].
pub struct Seen<'a> {
    pub name: &'a str,
    /// Its INFO, or `None` when it did not answer.
    pub info: Option<&'a Info>,
}

/// Who the group's master is by what its instances say: `Some(name)` when that differs
/// from `current` and the group says so without doubt, else `None` (keep `current`).
///
/// An instance that reports `role:master` is the master when `current` does not (it
/// replicates from someone, or does not answer) and no other instance claims the role. Of
/// several that claim it, the one more replicas follow wins; with as many, the one
/// promoted from the other's history (its `master_replid2` is the other's replication id:
/// two masters after a promotion and a healed partition); a full tie keeps `current` —
/// never a guess. A master that no replica follows does not displace a `current` that
/// answers as master and is not older.
pub fn learn(group: &Group, current: &str, seen: &[Seen]) -> Option<String> {
    let claims: Vec<(&str, &Info)> = seen
        .iter()
        .filter_map(|s| Some((s.name, s.info?)))
        .filter(|(_, info)| info.role() == Some("master"))
        .collect();
    let masters: Vec<(&str, (usize, bool))> = claims
        .iter()
        .map(|(name, info)| {
            let promoted = info.get("master_replid2").is_some_and(|id2| {
                !id2.trim_matches('0').is_empty()
                    && claims
                        .iter()
                        .any(|(other, o)| other != name && o.get("master_replid") == Some(id2))
            });
            (*name, (following(group, name, seen), promoted))
        })
        .collect();
    let current_claims = masters.iter().find(|(n, _)| *n == current);
    let best = masters.iter().max_by_key(|(_, k)| *k)?;
    let unique = masters.iter().filter(|(_, k)| *k == best.1).count() == 1;
    match current_claims {
        None if masters.len() == 1 => Some(best.0.to_owned()),
        None if unique => Some(best.0.to_owned()),
        Some((_, mine)) if unique && best.1 > *mine && best.0 != current => Some(best.0.to_owned()),
        _ => None,
    }
}

/// A group with no master although every instance answers: they all replicate, from each
/// other in a loop (a stale `REPLICAOF` crossing a failover) or from elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMaster {
    /// What is wrong, for the log and status: the loop, or "none is master".
    pub what: String,
    /// Who should be master: the most advanced (highest offset; the configured master,
    /// then the first by name, on a tie).
    pub choose: String,
}

/// Whether every instance answers and none is master; who should be, if so.
pub fn no_master(group: &Group, seen: &[Seen]) -> Option<NoMaster> {
    if seen.len() != group.instances.len() || seen.iter().any(|s| s.info.is_none()) {
        return None;
    }
    if seen
        .iter()
        .any(|s| s.info.is_some_and(|i| i.role() != Some("replica")))
    {
        return None;
    }
    let up = |name: &str| {
        seen.iter()
            .find(|s| s.name == name)
            .and_then(|s| s.info)
            .and_then(|i| upstream_of(group, i))
            .map(|u| u.name.as_str())
    };
    let what = seen
        .iter()
        .find_map(|s| {
            let mut path = vec![s.name];
            let mut at = s.name;
            while let Some(next) = up(at) {
                if let Some(i) = path.iter().position(|p| *p == next) {
                    let mut cycle: Vec<&str> = path[i..].to_vec();
                    cycle.push(next);
                    return Some(format!("replication loop: {}", cycle.join(" -> ")));
                }
                path.push(next);
                at = next;
            }
            None
        })
        .unwrap_or_else(|| "no master: every instance answers as a replica".to_owned());
    let master = &group.master().name;
    let choose = seen
        .iter()
        .max_by_key(|s| {
            (
                s.info.and_then(Info::repl_offset).unwrap_or(-1),
                s.name == master.as_str(),
                std::cmp::Reverse(s.name),
            )
        })?
        .name
        .to_owned();
    Some(NoMaster { what, choose })
}

/// How many of the answering instances replicate from `name` by their INFO.
fn following(group: &Group, name: &str, seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| s.name != name)
        .filter_map(|s| s.info)
        .filter(|info| upstream_of(group, info).is_some_and(|u| u.name == name))
        .count()
}

/// The instance an INFO says it replicates from (`master_host`/`master_port`).
pub fn upstream_of<'a>(group: &'a Group, info: &Info) -> Option<&'a Instance> {
    if info.role() != Some("replica") {
        return None;
    }
    let port = info.int("master_port")?;
    instance_at(group, info.get("master_host")?, u16::try_from(port).ok()?)
}

/// What a daemon keeps in `run_dir/<host>.topology` across its restarts: the group's
/// actual master, and the replication history it saw — each local master's last
/// replication id and the changes of id seen in any instance's INFO — so that a crashed
/// master's RDB can be judged after a daemon restart or a host reboot as well.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    pub master: String,
    /// Local masters' last replication id, by instance name.
    pub last_ids: std::collections::BTreeMap<String, String>,
    pub lineage: crate::history::Lineage,
}

/// The topology file's text: TOML so an operator can read it.
pub fn format_file(kept: &Kept) -> String {
    let mut text = format!(
        "# Written by redisrepd: the group's actual master, kept across daemon restarts.\n\
         master = {}\n",
        toml::Value::String(kept.master.clone())
    );
    if kept.last_ids.is_empty() && kept.lineage.links().is_empty() {
        return text;
    }
    let mut history = toml::Table::new();
    let ids: toml::Table = kept
        .last_ids
        .iter()
        .map(|(n, id)| (n.clone(), toml::Value::String(id.clone())))
        .collect();
    history.insert("last_ids".into(), toml::Value::Table(ids));
    let links = kept
        .lineage
        .links()
        .iter()
        .filter_map(|l| toml::Value::try_from(l).ok())
        .collect();
    history.insert("links".into(), toml::Value::Array(links));
    let mut table = toml::Table::new();
    table.insert("history".into(), toml::Value::Table(history));
    text.push_str(
        "\n# The replication history seen: each local master's last id, and the changes of id\n\
         # (newest last). A crashed master's RDB is judged against them.\n",
    );
    text.push_str(&toml::to_string(&table).unwrap_or_default());
    text
}

/// The replication history a topology file keeps; empty when it has none or cannot be
/// read (the history is then learned from the instances again).
pub fn parse_history(
    text: &str,
) -> (
    std::collections::BTreeMap<String, String>,
    crate::history::Lineage,
) {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Default::default();
    };
    let Some(history) = table.get("history").and_then(|h| h.as_table()) else {
        return Default::default();
    };
    let ids = history
        .get("last_ids")
        .and_then(|t| t.as_table())
        .map(|t| {
            t.iter()
                .filter_map(|(n, v)| v.as_str().map(|id| (n.clone(), id.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let links = history
        .get("links")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.clone().try_into::<crate::history::Link>().ok())
                .collect()
        })
        .unwrap_or_default();
    (ids, crate::history::Lineage::from_links(links))
}

/// The master a topology file names, if it is readable and names an instance of `group`.
pub fn parse_file(text: &str, group: &Group) -> Result<String, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
    let name = table
        .get("master")
        .and_then(|v| v.as_str())
        .ok_or("no `master = \"NAME\"` line")?;
    if group.instance(name).is_none() {
        return Err(format!("names `{name}`, which is not in the file any more"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn group() -> Group {
        let text = r#"
[cluster]
name = "t"
run_dir = "/tmp/run"
data_dir = "/tmp/data"
[[instance]]
name = "m"
host = "a"
bind = "127.0.0.1"
port = 1
min_replicas_to_write = 1
[[instance]]
name = "r1"
host = "b"
bind = "127.0.0.2"
port = 2
replica_of = "m"
[[instance]]
name = "r2"
host = "b"
bind = "127.0.0.2"
port = 3
replica_of = "m"
[[instance]]
name = "r3"
host = "b"
bind = "127.0.0.2"
port = 4
replica_of = "r1"
"#;
        crate::config::parse(text, Path::new("t.toml"), Path::new("/"))
            .map(|c| c.group)
            .expect("valid")
    }

    fn up(g: &Group, name: &str) -> Option<String> {
        g.instance(name).and_then(|i| i.replica_of.clone())
    }

    #[test]
    fn the_configured_master_gives_the_group_unchanged() {
        let g = group();
        assert_eq!(effective(&g, None), g);
        assert_eq!(effective(&g, Some("m")), g);
        assert_eq!(effective(&g, Some("gone")), g);
    }

    #[test]
    fn a_replica_made_master_takes_the_old_master_and_its_siblings() {
        let g = effective(&group(), Some("r1"));
        assert_eq!(up(&g, "r1"), None);
        assert_eq!(up(&g, "m").as_deref(), Some("r1"));
        assert_eq!(up(&g, "r2").as_deref(), Some("r1"));
        assert_eq!(up(&g, "r3").as_deref(), Some("r1"));
        assert_eq!(g.master().name, "r1");
        // The write guard goes with the role.
        assert_eq!(
            g.instance("r1").and_then(|i| i.min_replicas_to_write),
            Some(1)
        );
        assert_eq!(g.instance("m").and_then(|i| i.min_replicas_to_write), None);
        // Still a tree: the master first, each replica after its upstream.
        let order: Vec<&str> = g
            .start_order_all()
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(order[0], "r1");
    }

    #[test]
    fn a_sub_replica_made_master_keeps_the_tree_a_tree() {
        let g = effective(&group(), Some("r3"));
        assert_eq!(up(&g, "r3"), None);
        assert_eq!(up(&g, "m").as_deref(), Some("r3"));
        assert_eq!(up(&g, "r1").as_deref(), Some("r3"));
        assert_eq!(g.depth(g.instance("r2").expect("r2")), 1);
    }

    fn at<'a>(name: &'a str, info: Option<&'a Info>) -> Seen<'a> {
        Seen { name, info }
    }

    fn info(text: &str) -> Info {
        Info::parse(&text.replace(' ', "\r\n"))
    }

    fn slave_of(port: u16) -> Info {
        info(&format!(
            "role:slave master_host:127.0.0.{} master_port:{port} master_link_status:up",
            if port == 1 { 1 } else { 2 }
        ))
    }

    #[test]
    fn learns_the_promoted_replica_when_the_master_is_gone_or_follows_it() {
        let g = group();
        let master = info("role:master");
        let r2 = slave_of(2);
        // m does not answer; r1 is master and r2 follows it.
        let seen = [at("m", None), at("r1", Some(&master)), at("r2", Some(&r2))];
        assert_eq!(learn(&g, "m", &seen).as_deref(), Some("r1"));
        // m answers as a replica of r1 (after FAILOVER).
        let m = slave_of(2);
        let seen = [at("m", Some(&m)), at("r1", Some(&master))];
        assert_eq!(learn(&g, "m", &seen).as_deref(), Some("r1"));
    }

    #[test]
    fn keeps_the_current_master_when_it_answers_or_when_in_doubt() {
        let g = group();
        let master = info("role:master");
        let r1 = slave_of(1);
        let seen = [at("m", Some(&master)), at("r1", Some(&r1))];
        assert_eq!(learn(&g, "m", &seen), None);
        // Nobody answers: nothing is learned.
        let seen = [at("m", None), at("r1", None)];
        assert_eq!(learn(&g, "m", &seen), None);
        // Two masters, nobody follows either: keep.
        let seen = [at("m", Some(&master)), at("r1", Some(&master))];
        assert_eq!(learn(&g, "m", &seen), None);
        // m is gone, r1 and r2 both claim it, nobody follows: a tie is no answer.
        let seen = [
            at("m", None),
            at("r1", Some(&master)),
            at("r2", Some(&master)),
        ];
        assert_eq!(learn(&g, "m", &seen), None);
    }

    #[test]
    fn a_master_back_alone_does_not_displace_the_one_the_group_follows() {
        let g = group();
        let master = info("role:master");
        let r2 = slave_of(2);
        let m = slave_of(2);
        // current = r1 (after a promotion); the old master m came back as master alone.
        let seen = [
            at("m", Some(&master)),
            at("r1", Some(&master)),
            at("r2", Some(&r2)),
        ];
        assert_eq!(learn(&g, "r1", &seen), None);
        // ... and when our view is still m while the group follows r1, r1 wins.
        assert_eq!(learn(&g, "m", &seen).as_deref(), Some("r1"));
        let seen = [at("m", Some(&m)), at("r1", Some(&master))];
        assert_eq!(learn(&g, "r1", &seen), None);
    }

    #[test]
    fn of_two_masters_followed_alike_the_promoted_one_wins() {
        let g = group();
        // After a partition: m kept running as master (history aaa); r1 was promoted
        // (new id bbb, aaa as its second id). Nobody follows either.
        let old = info("role:master master_replid:aaa master_replid2:0000000000");
        let new = info("role:master master_replid:bbb master_replid2:aaa");
        let seen = [at("m", Some(&old)), at("r1", Some(&new))];
        assert_eq!(learn(&g, "m", &seen).as_deref(), Some("r1"));
        assert_eq!(learn(&g, "r1", &seen), None);
    }

    #[test]
    fn the_file_round_trips_and_a_stale_name_is_an_error() {
        let g = group();
        let kept = |m: &str| Kept {
            master: m.to_owned(),
            ..Kept::default()
        };
        assert_eq!(
            parse_file(&format_file(&kept("r1")), &g),
            Ok("r1".to_owned())
        );
        assert!(
            parse_file(&format_file(&kept("gone")), &g)
                .unwrap_err()
                .contains("`gone`")
        );
        assert!(parse_file("master = ", &g).is_err());
    }

    #[test]
    fn the_file_keeps_the_replication_history_and_an_older_file_has_none() {
        use crate::history::{Ids, Lineage};
        let mut lineage = Lineage::default();
        lineage.learn(&Ids {
            id: "bbb".into(),
            offset: 9,
            second: Some(("aaa".into(), 101)),
        });
        let kept = Kept {
            master: "m".into(),
            last_ids: [("m".to_owned(), "bbb".to_owned())].into(),
            lineage,
        };
        let text = format_file(&kept);
        assert_eq!(parse_file(&text, &group()), Ok("m".to_owned()));
        assert_eq!(
            parse_history(&text),
            (kept.last_ids.clone(), kept.lineage.clone())
        );
        let old = "master = \"m\"\n";
        assert_eq!(parse_history(old), Default::default());
        assert_eq!(parse_history("not toml ["), Default::default());
    }

    #[test]
    fn a_loop_or_no_master_is_seen_only_when_every_instance_answers() {
        let g = group();
        let rep = |up: (&str, u16), offset: i64| {
            info(&format!(
                "role:slave master_host:{} master_port:{} master_repl_offset:{offset}",
                up.0, up.1
            ))
        };
        let (m, r1, r2, r3) = (
            rep(("127.0.0.2", 2), 100),
            rep(("127.0.0.1", 1), 100),
            rep(("127.0.0.1", 1), 90),
            rep(("127.0.0.2", 2), 100),
        );
        let seen = [
            at("m", Some(&m)),
            at("r1", Some(&r1)),
            at("r2", Some(&r2)),
            at("r3", Some(&r3)),
        ];
        let nm = no_master(&g, &seen).expect("a loop");
        assert_eq!(nm.what, "replication loop: m -> r1 -> m");
        assert_eq!(
            nm.choose, "m",
            "as advanced as r1 and r3: the configured master"
        );
        let r1_ahead = rep(("127.0.0.1", 1), 200);
        let seen = [
            at("m", Some(&m)),
            at("r1", Some(&r1_ahead)),
            at("r2", Some(&r2)),
            at("r3", Some(&r3)),
        ];
        assert_eq!(
            no_master(&g, &seen).map(|n| n.choose).as_deref(),
            Some("r1")
        );
        // One does not answer (a master down is not this), or one is master: nothing.
        let seen = [
            at("m", None),
            at("r1", Some(&r1)),
            at("r2", Some(&r2)),
            at("r3", Some(&r3)),
        ];
        assert_eq!(no_master(&g, &seen), None);
        let master = info("role:master master_repl_offset:100");
        let seen = [
            at("m", Some(&master)),
            at("r1", Some(&r1)),
            at("r2", Some(&r2)),
            at("r3", Some(&r3)),
        ];
        assert_eq!(no_master(&g, &seen), None);
    }
}
