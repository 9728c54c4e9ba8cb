//! The backup decisions on INFO texts and file names.

use super::*;
use crate::server::{Kind, Version};

fn group(extra: &str) -> Group {
    let text = format!(
        "[cluster]\nname = \"main\"\npassword = \"x\"\ndata_dir = \"/d\"\n\
         [[instance]]\nname = \"m\"\nhost = \"a\"\nbind = \"10.0.0.1\"\nport = 6379\n\
         [[instance]]\nname = \"r1\"\nhost = \"b\"\nbind = \"10.0.0.2\"\nport = 6379\nreplica_of = \"m\"\n\
         [[instance]]\nname = \"r2\"\nhost = \"c\"\nbind = \"10.0.0.3\"\nport = 6379\nreplica_of = \"m\"\n{extra}"
    );
    crate::config::parse(&text, Path::new("/etc/t.toml"), Path::new("/etc"))
        .unwrap()
        .group
}

const OFFSET: i64 = 1000;

fn master(online: &[&str]) -> Info {
    let mut t = format!("role:master\r\nmaster_repl_offset:{OFFSET}\r\n");
    for (i, ip) in online.iter().enumerate() {
        t.push_str(&format!(
            "slave{i}:ip={ip},port=6379,state=online,offset={OFFSET},lag=0\r\n"
        ));
    }
    Info::parse(&t)
}

fn replica(link: &str, syncing: bool) -> Info {
    Info::parse(&format!(
        "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:{link}\r\n\
         master_sync_in_progress:{}\r\nslave_repl_offset:{OFFSET}\r\nmaster_repl_offset:{OFFSET}\r\n",
        u8::from(syncing)
    ))
}

fn infos(list: Vec<(&str, Info)>) -> HashMap<String, Info> {
    list.into_iter().map(|(n, i)| (n.to_owned(), i)).collect()
}

#[test]
fn a_replica_in_sync_gives_the_backup_and_the_master_only_when_none_is() {
    let g = group("");
    let all = infos(vec![
        ("m", master(&["10.0.0.2", "10.0.0.3"])),
        ("r1", replica("up", false)),
        ("r2", replica("up", false)),
    ]);
    assert_eq!(choose_source(&g, &all).unwrap().name, "r1");
    // r1 syncing (the master does not list it online): r2.
    let all = infos(vec![
        ("m", master(&["10.0.0.3"])),
        ("r1", replica("down", true)),
        ("r2", replica("up", false)),
    ]);
    assert_eq!(choose_source(&g, &all).unwrap().name, "r2");
    // No replica in sync: the master.
    let all = infos(vec![("m", master(&[])), ("r1", replica("down", true))]);
    assert_eq!(choose_source(&g, &all).unwrap().name, "m");
    assert!(choose_source(&g, &HashMap::new()).is_err());
}

#[test]
fn after_a_failover_the_actual_master_is_chosen_when_no_replica_is_in_sync() {
    let g = group("");
    // r1 was promoted; m and r2 are down.
    let all = infos(vec![("r1", master(&[]))]);
    assert_eq!(choose_source(&g, &all).unwrap().name, "r1");
}

#[test]
fn from_is_obeyed_but_never_while_that_replica_is_syncing() {
    let g = group("[backup]\nfrom = \"r2\"\n");
    let mut all = infos(vec![
        ("m", master(&["10.0.0.2", "10.0.0.3"])),
        ("r1", replica("up", false)),
        ("r2", replica("up", false)),
    ]);
    assert_eq!(choose_source(&g, &all).unwrap().name, "r2");
    all.insert("r2".into(), replica("down", true));
    let err = choose_source(&g, &all).unwrap_err();
    assert!(err.contains("`r2`") && err.contains("syncing"), "{err}");
    all.remove("r2");
    assert!(
        choose_source(&g, &all)
            .unwrap_err()
            .contains("does not answer")
    );
}

#[test]
fn names_sort_by_time_and_pruning_touches_only_this_clusters_backups() {
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    assert_eq!(
        file_name("main", at("2026-12-02T08:01:02Z")),
        "main-20261202T080102Z.rdb"
    );
    let names: Vec<String> = [
        "main-20261202T080300Z.rdb",
        "main-20261202T080100Z.rdb",
        "main-20261202T080100Z.json",
        "main-20261202T080200Z.rdb",
        "main-x-20261202T070000Z.rdb",
        "other-20261202T070000Z.rdb",
        "main-2026120T080100Z.rdb",
        "main-20261202T080000Z.rdb.tmp",
        "notes.txt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        to_prune("main", &names, 1),
        ["main-20261202T080100Z.rdb", "main-20261202T080200Z.rdb"]
    );
    assert!(to_prune("main", &names, 3).is_empty());
    assert_eq!(
        to_prune("main-x", &names, 0),
        ["main-x-20261202T070000Z.rdb"]
    );
}

#[test]
fn an_aof_master_is_restored_with_an_aof_made_of_the_snapshot() {
    let server = |kind, v: &str| Server {
        kind,
        version: Version::parse(v).unwrap(),
    };
    let g = group("[redis]\nappendonly = \"yes\"\n");
    let m = g.instance("m").unwrap();
    let files = DataFiles::of(&g, m, &server(Kind::Redis, "7.0.15"));
    let layout = files.restored_layout();
    let paths: Vec<String> = layout
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/d/m/dump.rdb",
            "/d/m/appendonlydir/appendonly.aof.1.base.rdb",
            "/d/m/appendonlydir/appendonly.aof.manifest"
        ]
    );
    assert_eq!(
        layout[2].1.as_deref(),
        Some("file appendonly.aof.1.base.rdb seq 1 type b\n")
    );
    let files = DataFiles::of(&g, m, &server(Kind::Redis, "6.2.14"));
    let paths: Vec<PathBuf> = files
        .restored_layout()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        paths,
        [PathBuf::from("/d/m/dump.rdb"), "/d/m/appendonly.aof".into()]
    );
    let plain = group("");
    let files = DataFiles::of(
        &plain,
        plain.instance("m").unwrap(),
        &server(Kind::Valkey, "8.1.8"),
    );
    assert_eq!(files.restored_layout().len(), 1);
    assert_eq!(
        files.all().len(),
        3,
        "AOF files are set aside with AOF off too"
    );
}

#[test]
fn set_aside_names_never_reuse_an_earlier_one() {
    let taken = ["/d/dump.rdb.before-restore", "/d/dump.rdb.before-restore.2"];
    let p = aside_path(Path::new("/d/dump.rdb"), |p| {
        taken.iter().any(|t| Path::new(t) == p)
    });
    assert_eq!(p, PathBuf::from("/d/dump.rdb.before-restore.3"));
    assert_eq!(
        aside_path(Path::new("/d/x"), |_| false),
        PathBuf::from("/d/x.before-restore")
    );
}

#[test]
fn keys_are_summed_over_databases() {
    let i = Info::parse(
        "db0:keys=5,expires=0,avg_ttl=0\r\ndb3:keys=2,expires=1,avg_ttl=9\r\ndbx:keys=7\r\n",
    );
    assert_eq!(i.keys(), 7);
}
