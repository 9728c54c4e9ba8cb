//! The sentinel.conf on strings: a first render, re-renders over files captured from real
//! sentinels after a failover (Redis 6.2, 7.0, Valkey 8.1), and the live SENTINEL SETs.

use std::path::Path;

use super::*;
use crate::config;

/// Captured after a failover from 127.0.0.51:17401 to 127.0.0.52:17402, written by the
/// sentinel on 127.0.0.61:27401 (`docs/reference/redis-facts.md` says how Sentinel rewrites it).
const REDIS_70: &str = include_str!("../fixtures/sentinel-redis-7.0.conf");
const VALKEY_81: &str = include_str!("../fixtures/sentinel-valkey-8.1.conf");
const REDIS_62: &str = include_str!("../fixtures/sentinel-redis-6.2.conf");

/// The layout the fixtures were captured from.
fn toml(quorum: u32, down_after: &str) -> String {
    format!(
        "[cluster]\nname = \"shop\"\npassword = \"s3cret\"\ndata_dir = \"/var/lib/r\"\n\
         [sentinel]\nquorum = {quorum}\ndown_after = \"{down_after}\"\nfailover_timeout = \"10s\"\n\
         nodes = [\n\
           {{ name = \"s1\", host = \"a\", bind = \"127.0.0.61\", port = 27401 }},\n\
           {{ name = \"s2\", host = \"a\", bind = \"127.0.0.62\", port = 27402 }},\n\
           {{ name = \"s3\", host = \"b\", bind = \"127.0.0.63\", port = 27403 }},\n]\n\
         [[instance]]\nname = \"m\"\nhost = \"a\"\nbind = \"127.0.0.51\"\nport = 17401\n\
         [[instance]]\nname = \"r\"\nhost = \"b\"\nbind = \"127.0.0.52\"\nport = 17402\nreplica_of = \"m\"\n"
    )
}

fn group_of(text: &str) -> Group {
    config::parse(text, Path::new("/etc/r/t.toml"), Path::new("/etc/r"))
        .unwrap_or_else(|e| panic!("{e}"))
        .group
}

fn group() -> Group {
    group_of(&toml(2, "1s"))
}

fn s1(g: &Group) -> &SentinelNode {
    g.sentinel_node("s1").unwrap()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn first_render_monitors_the_tomls_master() {
    let g = group();
    let text = render_sentinel(&g, s1(&g), None, Secrets::Show);
    assert_eq!(
        lines(&text),
        [
            "port 27401",
            "bind 127.0.0.61",
            "protected-mode no",
            "daemonize no",
            "dir \"/var/lib/r/s1\"",
            "logfile \"\"",
            "requirepass s3cret",
            "sentinel sentinel-pass s3cret",
            "sentinel announce-ip 127.0.0.61",
            "sentinel announce-port 27401",
            "sentinel monitor shop 127.0.0.51 17401 2",
            "sentinel auth-pass shop s3cret",
            "sentinel down-after-milliseconds shop 1000",
            "sentinel failover-timeout shop 10000",
            "sentinel parallel-syncs shop 1",
        ]
    );
}

#[test]
fn masked_render_hides_the_password() {
    let g = group();
    let text = render_sentinel(&g, s1(&g), Some(REDIS_70), Secrets::Mask);
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("sentinel auth-pass shop ********"), "{text}");
}

#[test]
fn without_a_password_no_auth_lines() {
    let g = group_of(&toml(2, "1s").replace("password = \"s3cret\"\n", ""));
    let text = render_sentinel(&g, s1(&g), None, Secrets::Show);
    assert!(!text.contains("pass"), "{text}");
}

#[test]
fn log_dir_gives_a_log_file() {
    let g = group_of(&toml(2, "1s").replace("data_dir", "log_dir = \"/var/log/r\"\ndata_dir"));
    let text = render_sentinel(&g, s1(&g), None, Secrets::Show);
    assert!(text.contains("logfile \"/var/log/r/s1.log\"\n"), "{text}");
}

/// The learned state read from each captured file.
#[test]
fn learned_state_is_read_from_real_files() {
    for (what, file) in [("7.0", REDIS_70), ("valkey", VALKEY_81), ("6.2", REDIS_62)] {
        let l = learned(file, "shop");
        assert_eq!(l.myid.as_ref().map(String::len), Some(40), "{what}");
        // The Valkey sentinels ran on a while after the failover and voted once more.
        assert!(l.current_epoch.is_some_and(|e| e >= 1), "{what}");
        assert_eq!(l.config_epoch, Some(1), "{what}");
        assert!(l.leader_epoch.is_some_and(|e| e >= 1), "{what}");
        assert_eq!(
            l.master,
            Some(("127.0.0.52".parse().unwrap(), 17402)),
            "{what}: the new master"
        );
        assert_eq!(
            l.known_replicas,
            [("127.0.0.51".parse().unwrap(), 17401)],
            "{what}"
        );
        let mut peers: Vec<u16> = l.known_sentinels.iter().map(|s| s.1).collect();
        peers.sort();
        assert_eq!(peers, [27402, 27403], "{what}");
        assert!(
            l.known_sentinels.iter().all(|s| s.2.len() == 40),
            "{what}: runids unquoted: {:?}",
            l.known_sentinels
        );
    }
    assert_eq!(learned(REDIS_70, "other").master, None);
    assert_eq!(
        learned(REDIS_70, "other").myid,
        learned(REDIS_70, "shop").myid
    );
}

/// After a failover the re-render keeps the new master, the id, the epochs and the peers,
/// and writes the TOML's settings fresh (none of CONFIG REWRITE's own block).
#[test]
fn re_render_keeps_the_new_master_and_the_learned_state() {
    let g = group();
    let myid = learned(REDIS_70, "shop").myid.unwrap();
    let text = render_sentinel(&g, s1(&g), Some(REDIS_70), Secrets::Show);
    let l = lines(&text);
    assert!(
        l.contains(&"sentinel monitor shop 127.0.0.52 17402 2"),
        "{text}"
    );
    assert!(!text.contains("127.0.0.51 17401 2"), "{text}");
    assert!(
        l.contains(&format!("sentinel myid {myid}").as_str()),
        "{text}"
    );
    for kept in [
        "sentinel config-epoch shop 1",
        "sentinel leader-epoch shop 1",
        "sentinel current-epoch 1",
        "sentinel known-replica shop 127.0.0.51 17401",
    ] {
        assert!(l.contains(&kept), "{kept} missing:\n{text}");
    }
    assert_eq!(
        l.iter()
            .filter(|l| l.starts_with("sentinel known-sentinel shop"))
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains("user default"), "{text}");
    assert!(!text.contains("latency-tracking"), "{text}");
    // Rendering again over the render changes nothing: the state is a fixed point.
    assert_eq!(
        render_sentinel(&g, s1(&g), Some(&text), Secrets::Show),
        text
    );
}

#[test]
fn valkey_quoted_values_are_written_bare() {
    let g = group();
    let text = render_sentinel(&g, s1(&g), Some(VALKEY_81), Secrets::Show);
    let ours = render_sentinel(&g, s1(&g), Some(REDIS_62), Secrets::Show);
    assert!(
        !text.contains("known-sentinel shop 127.0.0.62 27402 \""),
        "{text}"
    );
    assert_eq!(text.lines().count(), ours.lines().count());
}

#[test]
fn changed_settings_are_rendered_over_the_learned_ones() {
    let g = group_of(&toml(3, "5s"));
    let text = render_sentinel(&g, s1(&g), Some(REDIS_70), Secrets::Show);
    assert!(
        text.contains("sentinel monitor shop 127.0.0.52 17402 3\n"),
        "{text}"
    );
    assert!(
        text.contains("sentinel down-after-milliseconds shop 5000\n"),
        "{text}"
    );
}

/// A learned master that is no longer an instance of the group (its address changed in the
/// TOML) falls back to the TOML's master; forgotten instances and nodes are dropped.
#[test]
fn stale_addresses_are_dropped() {
    let text = toml(2, "1s")
        .replace("127.0.0.52\"\nport = 17402", "127.0.0.72\"\nport = 17402")
        .replace(
            "bind = \"127.0.0.62\", port = 27402",
            "bind = \"127.0.0.82\", port = 27402",
        );
    let g = group_of(&text);
    let out = render_sentinel(&g, s1(&g), Some(REDIS_70), Secrets::Show);
    assert!(
        out.contains("sentinel monitor shop 127.0.0.51 17401 2\n"),
        "{out}"
    );
    assert!(
        !out.contains("known-replica shop 127.0.0.51"),
        "the master is no replica: {out}"
    );
    assert!(!out.contains("127.0.0.62"), "{out}");
    assert!(
        out.contains("known-sentinel shop 127.0.0.63 27403 "),
        "{out}"
    );
}

/// A renamed cluster is a new monitor: only the sentinel's own id and epoch survive.
#[test]
fn renamed_cluster_keeps_only_the_sentinels_own_state() {
    let g = group_of(&toml(2, "1s").replace("name = \"shop\"", "name = \"shop2\""));
    let out = render_sentinel(&g, s1(&g), Some(REDIS_70), Secrets::Show);
    assert!(
        out.contains("sentinel monitor shop2 127.0.0.51 17401 2\n"),
        "{out}"
    );
    assert!(out.contains("sentinel myid "), "{out}");
    assert!(out.contains("sentinel current-epoch 1\n"), "{out}");
    assert!(!out.contains("config-epoch"), "{out}");
    assert!(!out.contains("known-"), "{out}");
}

#[test]
fn split_args_reads_redis_quoting() {
    let s = |l: &str| split_args(l).unwrap();
    assert_eq!(s("  sentinel myid abc "), ["sentinel", "myid", "abc"]);
    assert_eq!(s("dir \"/a b/c\\\"d\""), ["dir", "/a b/c\"d"]);
    assert_eq!(s("x 'it\\'s' \"\\x41\\n\""), ["x", "it's", "A\n"]);
    assert!(s("# a comment").is_empty());
    assert!(s("").is_empty());
    assert_eq!(split_args("x \"open"), None);
}

#[test]
fn live_changes_are_sentinel_sets() {
    let old = group();
    assert!(live_changes(&old, &old).is_empty());
    let new = group_of(&toml(3, "5s").replace("\"10s\"", "\"1m\""));
    let sets = live_changes(&old, &new);
    assert_eq!(
        sets.iter()
            .map(|s| s.args("shop").join(" "))
            .collect::<Vec<_>>(),
        [
            "SENTINEL SET shop quorum 3",
            "SENTINEL SET shop down-after-milliseconds 5000",
            "SENTINEL SET shop failover-timeout 60000",
        ]
    );
    let mut syncs = group();
    syncs.supervise.max_concurrent_syncs = config::MaxSyncs::Fixed(2);
    assert_eq!(
        live_changes(&old, &syncs),
        [SentinelSet {
            option: "parallel-syncs",
            value: "2".into()
        }]
    );
    // `auto` is 1 to Sentinel, which cannot judge a sync's cost: no change from 1.
    let mut auto = group();
    auto.supervise.max_concurrent_syncs = config::MaxSyncs::Auto;
    assert_eq!(parallel_syncs(&auto), 1);
    assert!(live_changes(&old, &auto).is_empty());
    assert_eq!(
        live_changes(&syncs, &auto),
        [SentinelSet {
            option: "parallel-syncs",
            value: "1".into()
        }]
    );
    let renamed = group_of(&toml(3, "1s").replace("name = \"shop\"", "name = \"x\""));
    assert!(live_changes(&old, &renamed).is_empty());
}
