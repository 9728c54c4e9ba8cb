//! `[sentinel]`: parsing, defaults, the rules of `docs/reference/config.md`, the sentinels' paths.

use super::*;

/// The trio plus `[sentinel]` with the given quorum and nodes (`name, host, bind, port`).
fn with_sentinel(quorum: i64, nodes: &[(&str, &str, &str, u16)]) -> String {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(name, host, bind, port)| {
            format!(
                "  {{ name = \"{name}\", host = \"{host}\", bind = \"{bind}\", port = {port} }},\n"
            )
        })
        .collect();
    format!(
        "{CLUSTER}\n[sentinel]\nquorum = {quorum}\ndown_after = \"5s\"\nfailover_timeout = \"1m\"\nnodes = [\n{}]\n{}",
        nodes.concat(),
        trio()
    )
}

const THREE: &[(&str, &str, &str, u16)] = &[
    ("s1", "h", "10.0.0.1", 26379),
    ("s2", "h", "10.0.0.2", 26379),
    ("s3", "tie", "10.0.0.3", 26379),
];

#[test]
fn sentinel_section_is_parsed() {
    let g = ok(&with_sentinel(2, THREE)).group;
    let s = g.sentinel.as_ref().expect("[sentinel]");
    assert_eq!(s.quorum, 2);
    assert_eq!(s.down_after, Duration::from_secs(5));
    assert_eq!(s.failover_timeout, Duration::from_secs(60));
    assert_eq!(s.nodes.len(), 3);
    assert_eq!(
        s.nodes[2],
        SentinelNode {
            name: "s3".into(),
            host: "tie".into(),
            bind: "10.0.0.3".parse().unwrap(),
            port: 26379,
        }
    );
    assert_eq!(s.nodes[0].address(), "10.0.0.1:26379");
}

#[test]
fn no_sentinel_section_means_none() {
    assert_eq!(ok(&format!("{CLUSTER}{}", trio())).group.sentinel, None);
}

#[test]
fn durations_default_to_sentinels_own() {
    let text = with_sentinel(2, THREE)
        .replace("down_after = \"5s\"\n", "")
        .replace("failover_timeout = \"1m\"\n", "");
    let s = ok(&text).group.sentinel.unwrap();
    assert_eq!(s.down_after, Duration::from_secs(30));
    assert_eq!(s.failover_timeout, Duration::from_secs(180));
}

/// A node on a host that runs no instance is fine: the classic tie-breaker host.
#[test]
fn node_on_a_host_without_instances_is_accepted() {
    let g = ok(&with_sentinel(2, THREE)).group;
    assert_eq!(
        g.sentinel_nodes_on("tie")
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["s3"]
    );
    assert_eq!(g.sentinel_nodes_on("h").count(), 2);
    assert_eq!(g.sentinel_nodes_on("nowhere").count(), 0);
    assert_eq!(g.sentinel_node("s2").map(|n| n.port), Some(26379));
}

#[test]
fn fewer_nodes_than_quorum_is_rejected() {
    let text = with_sentinel(3, &THREE[..2]);
    one_problem(
        &text,
        &["key `sentinel.nodes`: lists 2 node(s) but `quorum` is 3"],
    );
}

#[test]
fn quorum_below_one_is_rejected() {
    for q in [0, -1] {
        one_problem(&with_sentinel(q, THREE), &["key `sentinel.quorum`: is "]);
        let err = try_parse(&with_sentinel(q, THREE)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{SOURCE}: key `sentinel.quorum`")),
            "{err}"
        );
    }
}

#[test]
fn two_nodes_on_one_address_are_rejected() {
    let text = with_sentinel(
        2,
        &[
            ("s1", "h", "10.0.0.1", 26379),
            ("s2", "h", "10.0.0.1", 26379),
            ("s3", "h", "10.0.0.3", 26379),
        ],
    );
    one_problem(
        &text,
        &[
            "key `sentinel.nodes`: node `s2`: 10.0.0.1:26379 on host `h`",
            "sentinel node `s1`",
        ],
    );
}

#[test]
fn node_on_an_instances_address_is_rejected() {
    let text = with_sentinel(
        2,
        &[
            ("s1", "h", "10.0.0.1", 6379),
            ("s2", "h", "10.0.0.2", 26379),
            ("s3", "h", "10.0.0.3", 26379),
        ],
    );
    one_problem(&text, &["node `s1`: 10.0.0.1:6379", "instance `m`"]);
}

#[test]
fn duplicate_node_names_are_rejected() {
    let text = with_sentinel(
        2,
        &[
            ("s1", "h", "10.0.0.1", 26379),
            ("s1", "h", "10.0.0.2", 26379),
            ("s3", "h", "10.0.0.3", 26379),
        ],
    );
    one_problem(
        &text,
        &["node `s1`: the name is also used by another sentinel node"],
    );
}

#[test]
fn node_named_like_an_instance_is_rejected() {
    let text = with_sentinel(
        2,
        &[
            ("r1", "h", "10.0.0.1", 26379),
            ("s2", "h", "10.0.0.2", 26379),
            ("s3", "h", "10.0.0.3", 26379),
        ],
    );
    one_problem(
        &text,
        &["node `r1`: the name is also used by an [[instance]]"],
    );
}

#[test]
fn bad_node_fields_are_rejected() {
    let text = with_sentinel(1, &[("s 1", "h", "10.0.0.1", 26379)]);
    one_problem(&text, &["`s 1` is not a valid name"]);
    let text = with_sentinel(1, &[("s1", "h", "not-an-ip", 26379)]);
    one_problem(&text, &["invalid IP address"]);
    let text = with_sentinel(1, &[("s1", "", "10.0.0.1", 26379)]);
    one_problem(&text, &["node `s1`: `host` is empty"]);
    let text = with_sentinel(1, THREE).replace("quorum = 1", "quorum = 1\nquorm = 2");
    one_problem(&text, &["unknown field `quorm`"]);
}

#[test]
fn zero_durations_are_rejected() {
    let text = with_sentinel(2, THREE).replace("\"5s\"", "\"0s\"");
    one_problem(&text, &["key `sentinel.down_after`: must be at least 1ms"]);
}

#[test]
fn sentinel_paths_follow_the_instance_conventions() {
    let mut text = with_sentinel(2, THREE);
    text = text.replace(
        "password = \"secret\"\n",
        "password = \"secret\"\nrun_dir = \"/run/x\"\ndata_dir = \"/var/lib/x\"\nlog_dir = \"/var/log/x\"\n",
    );
    let g = ok(&text).group;
    let s1 = g.sentinel_node("s1").unwrap();
    assert_eq!(g.sentinel_dir(s1), Path::new("/var/lib/x/s1"));
    assert_eq!(
        g.sentinel_conf_path(s1),
        Path::new("/var/lib/x/s1/sentinel.conf")
    );
    assert_eq!(g.sentinel_pid_path(s1), Path::new("/run/x/s1.pid"));
    assert_eq!(
        g.sentinel_log_path(s1),
        Some(PathBuf::from("/var/log/x/s1.log"))
    );
}

/// A sentinel bound to loopback while another host is reached on a real address: the
/// other hosts could not reach it, and a 6.2 sentinel could not reach them. All on loopback
/// (one machine) is fine.
#[test]
fn a_loopback_node_among_remote_hosts_is_warned_about() {
    let text = with_sentinel(
        2,
        &[
            ("s1", "h", "127.0.0.1", 26379),
            ("s2", "tie", "10.0.0.3", 26379),
            ("s3", "tie", "10.0.0.3", 26380),
        ],
    );
    let w = one_warning(&text).to_string();
    for fragment in [
        "node `s1` binds 127.0.0.1, a loopback address",
        "node `s2` on host `tie` is at 10.0.0.3",
        "Redis 6.2",
        "an address of host `h`",
    ] {
        assert!(w.contains(fragment), "{w:?} should contain {fragment:?}");
    }
    let local = with_sentinel(
        2,
        &[
            ("s1", "h", "127.0.0.1", 26379),
            ("s2", "h", "127.0.0.1", 26380),
            ("s3", "h", "127.0.0.1", 26381),
        ],
    )
    .replace("10.0.0.1", "127.0.0.11")
    .replace("10.0.0.2", "127.0.0.12");
    assert!(ok(&local).warnings.is_empty(), "{:#?}", ok(&local).warnings);
    // The seed's layout on two machines: each node on its host's own address.
    assert!(ok(&with_sentinel(2, THREE)).warnings.is_empty());
}

/// With `down_after` at Sentinel's ping period (1 s) or below, Sentinel judges every new
/// master down before its first PING can be answered: warned about; 1.5 s is not.
#[test]
fn a_down_after_of_one_second_or_less_is_warned_about() {
    for short in ["1s", "500ms"] {
        let text = with_sentinel(2, THREE)
            .replace("down_after = \"5s\"", &format!("down_after = \"{short}\""));
        let w = one_warning(&text).to_string();
        assert!(
            w.contains("sentinel.down_after") && w.contains("use at least 2s"),
            "{w}"
        );
    }
    let text = with_sentinel(2, THREE).replace("down_after = \"5s\"", "down_after = \"1500ms\"");
    assert!(ok(&text).warnings.is_empty(), "{:#?}", ok(&text).warnings);
}
