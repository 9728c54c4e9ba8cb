//! The TOML's shape, the group's names, addresses and tree, [redis] directives.

use super::*;

// ---- TOML shape: syntax, unknown keys, missing keys, types ----

#[test]
fn syntax_error_shows_file_line_and_column() {
    let text = format!("{CLUSTER}{}port = = 3\n", trio());
    let err = try_parse(&text).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("{SOURCE}: ")), "{shown}");
    // CLUSTER is 3 lines, each instance 6 (a blank line first), the last one has 7.
    assert!(shown.contains("line 24, column 8"), "{shown}");
    assert!(shown.contains("in [[instance]] number 3: "), "{shown}");
}

#[test]
fn unknown_top_level_key_is_rejected() {
    let text = format!("{CLUSTER}[clutser]\nname = \"x\"\n{}", trio());
    one_problem(&text, &["unknown field `clutser`", "line 4"]);
}

#[test]
fn unknown_key_in_cluster_is_rejected() {
    let text = format!("{CLUSTER}pasword_file = \"pw\"\n{}", trio());
    one_problem(&text, &["unknown field `pasword_file`", "line 4"]);
}

#[test]
fn unknown_key_in_supervise_is_rejected_even_after_instances() {
    // [supervise] after the instances: the error must not be attributed to the last one.
    let text = format!("{CLUSTER}{}\n[supervise]\nstart_timout = \"5s\"\n", trio());
    let p = one_problem(&text, &["unknown field `start_timout`"]);
    assert!(!p.contains("instance"), "{p}");
}

#[test]
fn unknown_key_in_instance_names_the_instance() {
    let text = format!("{CLUSTER}{}prot = 6380\n", trio());
    let p = one_problem(&text, &["in instance `r2`: ", "unknown field `prot`"]);
    assert!(p.starts_with("in instance `r2`: "), "{p}");
}

#[test]
fn error_in_a_middle_instance_names_that_instance() {
    let text = format!(
        "{CLUSTER}{}{}replca_of = \"m\"\n{}",
        inst("m", "h", "10.0.0.1", 6379, None),
        inst("r1", "h", "10.0.0.2", 6379, None),
        inst("r2", "h", "10.0.0.2", 6380, Some("m")),
    );
    // The misspelt key is gone from what the rules see, so `r1` lacks `replica_of` too.
    let problems = problems(&text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("in instance `r1`: ")
            && problems[0].contains("unknown field `replca_of`"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("key `replica_of`: is missing"),
        "{problems:#?}"
    );
}

/// toml stops at the first problem of shape; `check` goes on and reports each, in the
/// file's order, each at its own line.
#[test]
fn every_problem_of_shape_is_reported_at_once() {
    let text = format!(
        "{CLUSTER}colour = \"blue\"\n{}frob = 1\n{}{}",
        inst("m", "h", "10.0.0.1", 6379, None),
        inst("r1", "h", "10.0.0.2", 6379, Some("m")).replace("6379", "70000"),
        inst("r2", "h", "10.0.0.2", 6380, Some("m")).replace("name = \"r2\"", "nmae = \"r2\""),
    );
    let problems = problems(&text);
    let expected = [
        "unknown field `colour`",
        "in instance `m`: ",
        "port 70000 is out of range",
        "unknown field `nmae`",
        "missing field `name`",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (p, e) in problems.iter().zip(expected) {
        assert!(p.contains(e), "{p:?} should contain {e:?}: {problems:#?}");
    }
    assert!(
        problems[1].contains("unknown field `frob`"),
        "{problems:#?}"
    );
    assert!(problems[2].contains("in instance `r1`"), "{problems:#?}");
}

/// A required key removed for its bad value is not reported missing as well, and a
/// syntax error is the only problem (what follows it cannot be read).
#[test]
fn a_bad_required_value_is_one_problem_and_syntax_stops_the_rest() {
    let text = format!(
        "{CLUSTER}{}{}",
        inst("m", "h", "10.0.0.1", 6379, None).replace("6379", "\"x\""),
        inst("r1", "h", "10.0.0.2", 6379, Some("m")).replace("6379", "0"),
    );
    let problems = problems(&text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("invalid type"), "{problems:#?}");
    assert!(
        problems[1].contains("port 0 is out of range"),
        "{problems:#?}"
    );
    let broken = format!("{CLUSTER}colour = \"blue\"\n{}[[instance\n", trio());
    one_problem(&broken, &["TOML parse error"]);
}

#[test]
fn missing_cluster_section_is_rejected() {
    one_problem(&trio(), &["missing field `cluster`"]);
}

#[test]
fn missing_cluster_name_is_rejected() {
    let text = format!("[cluster]\npassword = \"p\"\n{}", trio());
    one_problem(&text, &["missing field `name`"]);
}

/// Regression: a missing key is reported at the `[[instance]]` header of its table; that
/// header used to be counted as the previous instance's, so the wrong instance was named.
#[test]
fn missing_key_names_its_own_instance_not_the_previous_one() {
    let text = format!(
        "{CLUSTER}{}\n[[instance]]\nname = \"r1\"\nbind = \"10.0.0.2\"\nport = 6379\nreplica_of = \"m\"\n",
        inst("m", "h", "10.0.0.1", 6379, None)
    );
    one_problem(&text, &["in instance `r1`: ", "missing field `host`"]);
}

#[test]
fn missing_instance_name_says_which_instance() {
    let text = format!(
        "{CLUSTER}{}\n[[instance]]\nhost = \"h\"\nbind = \"10.0.0.2\"\nport = 6379\n",
        inst("m", "h", "10.0.0.1", 6379, None)
    );
    one_problem(
        &text,
        &["in [[instance]] number 2: ", "missing field `name`"],
    );
}

#[test]
fn no_instance_at_all_is_rejected() {
    one_problem(CLUSTER, &["key `instance`", "no [[instance]]"]);
}

#[test]
fn port_of_the_wrong_type_is_rejected() {
    let text = format!("{CLUSTER}{}", trio()).replace("port = 6380", "port = \"x\"");
    one_problem(&text, &["in instance `r2`: ", "invalid type: string \"x\""]);
}

#[test]
fn port_zero_and_too_large_are_rejected() {
    for bad in ["0", "65536", "-1"] {
        let text = format!("{CLUSTER}{}", trio()).replace("port = 6380", &format!("port = {bad}"));
        one_problem(
            &text,
            &["in instance `r2`: ", &format!("port {bad} is out of range")],
        );
    }
}

#[test]
fn bind_that_is_not_an_address_is_rejected() {
    let text = format!("{CLUSTER}{}", trio()).replace("\"10.0.0.1\"", "\"nope\"");
    one_problem(
        &text,
        &["in instance `m`: ", "bind = \"nope\"", "IP address"],
    );
}

#[test]
fn ipv6_bind_is_accepted() {
    let text = format!("{CLUSTER}{}", trio()).replace("\"10.0.0.1\"", "\"::1\"");
    let g = ok(&text).group;
    assert_eq!(g.instance("m").unwrap().address(), "[::1]:6379");
}

#[test]
fn bad_instance_name_is_rejected() {
    let text = format!("{CLUSTER}{}", trio()).replace("\"r1\"", "\"a b\"");
    one_problem(&text, &["in instance `a b`: ", "`a b` is not a valid name"]);
}

#[test]
fn bad_cluster_name_is_rejected() {
    let text = format!("{CLUSTER}{}", trio()).replace("name = \"t\"", "name = \"a/b\"");
    one_problem(&text, &["`a/b` is not a valid name", "line 2"]);
}

#[test]
fn bad_duration_is_rejected() {
    let text = format!("{CLUSTER}[supervise]\nrestart_delay = \"soon\"\n{}", trio());
    one_problem(&text, &["restart_delay = \"soon\"", "duration"]);
}

#[test]
fn redis_value_of_an_unsupported_type_is_rejected() {
    let text = format!(
        "{CLUSTER}[redis]\nmaxmemory = 1.5\nsave = [1, true]\n{}",
        trio()
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].starts_with("key `redis.maxmemory`: a float"), "{p:#?}");
    assert!(p[1].starts_with("key `redis.save`: a list"), "{p:#?}");
}

#[test]
fn redis_value_with_a_line_break_is_rejected() {
    let text = format!(
        "{CLUSTER}{}[instance.redis]\nmaxmemory = \"1gb\\nport 1\"\n",
        trio()
    );
    one_problem(
        &text,
        &["instance `r2`, key `redis.maxmemory`: ", "line break"],
    );
}

// ---- the group: names, addresses, the replication tree ----

#[test]
fn duplicate_instance_names_are_rejected() {
    let text = format!(
        "{CLUSTER}{}{}",
        inst("m", "h", "10.0.0.1", 6379, None),
        inst("m", "h", "10.0.0.2", 6379, Some("m")),
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.starts_with("instance `m`, key `name`: is used by more than one")),
        "{p:#?}"
    );
}

#[test]
fn same_host_bind_and_port_is_rejected() {
    let text = format!("{CLUSTER}{}", trio()).replace("port = 6380", "port = 6379");
    one_problem(
        &text,
        &[
            "instance `r2`, key `port`: ",
            "10.0.0.2:6379 on host `h`",
            "instance `r1`",
        ],
    );
}

#[test]
fn same_bind_and_port_on_different_hosts_is_accepted() {
    // Two hosts may both use a private address such as 10.0.0.2: no clash.
    let text = format!("{CLUSTER}{}", trio())
        .replacen("host = \"h\"", "host = \"a\"", 2)
        .replace("port = 6380", "port = 6379");
    ok(&text);
}

#[test]
fn replica_of_an_unknown_instance_is_rejected() {
    let text =
        format!("{CLUSTER}{}", trio()).replacen("replica_of = \"m\"", "replica_of = \"nosuch\"", 1);
    one_problem(
        &text,
        &["instance `r1`, key `replica_of`: names `nosuch`, which is not an instance"],
    );
}

#[test]
fn replica_of_itself_is_rejected() {
    let text =
        format!("{CLUSTER}{}", trio()).replacen("replica_of = \"m\"", "replica_of = \"r1\"", 1);
    one_problem(
        &text,
        &["instance `r1`, key `replica_of`: names the instance itself"],
    );
}

#[test]
fn replica_of_cycle_is_rejected_once() {
    let text = format!(
        "{CLUSTER}{}{}{}",
        inst("m", "h", "10.0.0.1", 6379, None),
        inst("c", "h", "10.0.0.2", 6379, Some("b")),
        inst("b", "h", "10.0.0.2", 6380, Some("c")),
    );
    // Reported once, from the alphabetically first member.
    one_problem(
        &text,
        &["instance `b`, key `replica_of`: forms a cycle (b -> c -> b)"],
    );
}

#[test]
fn no_master_is_rejected() {
    let text = format!(
        "{CLUSTER}{}{}",
        inst("a", "h", "10.0.0.1", 6379, Some("b")),
        inst("b", "h", "10.0.0.2", 6379, Some("a")),
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with(
            "key `replica_of`: every instance has `replica_of`, so there is no master"
        ),
        "{p:#?}"
    );
    assert!(
        p[1].starts_with("instance `a`, key `replica_of`: forms a cycle (a -> b -> a)"),
        "{p:#?}"
    );
}

#[test]
fn two_masters_are_rejected() {
    let text = format!("{CLUSTER}{}", trio()).replacen("replica_of = \"m\"\n", "", 1);
    one_problem(
        &text,
        &[
            "instance `r1`, key `replica_of`: is missing",
            "second master beside `m`",
        ],
    );
}

#[test]
fn min_replicas_to_write_above_the_replica_count_is_rejected() {
    let text = format!("{CLUSTER}{}", trio()).replace(
        "port = 6379\n\n",
        "port = 6379\nmin_replicas_to_write = 3\n\n",
    );
    one_problem(
        &text,
        &[
            "instance `m`, key `min_replicas_to_write`: ",
            "is 3 but only 2 instance(s) replicate from `m`",
        ],
    );
}

#[test]
fn min_replicas_to_write_on_a_leaf_is_rejected() {
    let text = format!("{CLUSTER}{}min_replicas_to_write = 1\n", trio());
    one_problem(
        &text,
        &["instance `r2`, key `min_replicas_to_write`: is 1 but only 0"],
    );
}

#[test]
fn min_replicas_to_write_equal_to_the_replica_count_warns() {
    let text = format!("{CLUSTER}{}", trio()).replace(
        "port = 6379\n\n",
        "port = 6379\nmin_replicas_to_write = 2\n\n",
    );
    let w = one_warning(&text);
    assert_eq!(w.instance.as_deref(), Some("m"));
    assert_eq!(w.key, "min_replicas_to_write");
    assert!(
        w.to_string()
            .starts_with("instance `m`, key `min_replicas_to_write`: equals the number"),
        "{w}"
    );
}

#[test]
fn min_replicas_to_write_below_the_replica_count_is_quiet() {
    let text = format!("{CLUSTER}{}", trio()).replace(
        "port = 6379\n\n",
        "port = 6379\nmin_replicas_to_write = 1\nmin_replicas_max_lag = 10\n\n",
    );
    let c = ok(&text);
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    let m = c.group.instance("m").unwrap();
    assert_eq!(m.min_replicas_to_write, Some(1));
    assert_eq!(m.min_replicas_max_lag, Some(10));
}

// ---- redis directives ----

#[test]
fn every_managed_directive_is_rejected_in_redis() {
    for (key, instead) in MANAGED_DIRECTIVES {
        let text = format!("{CLUSTER}[redis]\n\"{key}\" = \"x\"\n{}", trio());
        one_problem(
            &text,
            &[&format!(
                "key `redis.{key}`: redisrepd manages `{key}` itself; use {instead}"
            )],
        );
    }
}

#[test]
fn every_managed_directive_is_rejected_in_instance_redis() {
    for (key, instead) in MANAGED_DIRECTIVES {
        let text = format!("{CLUSTER}{}[instance.redis]\n\"{key}\" = \"x\"\n", trio());
        one_problem(
            &text,
            &[&format!(
                "instance `r2`, key `redis.{key}`: redisrepd manages `{key}` itself; use {instead}"
            )],
        );
    }
}

#[test]
fn managed_directive_in_other_spelling_is_rejected() {
    // Redis matches directive names case-insensitively; `_` is a likely slip for `-`.
    let text = format!("{CLUSTER}[redis]\nMin_Slaves_To_Write = 1\n{}", trio());
    one_problem(
        &text,
        &["key `redis.Min_Slaves_To_Write`: redisrepd manages `min-slaves-to-write`"],
    );
}

#[test]
fn redis_values_become_directives_in_file_order() {
    let text = format!(
        "{CLUSTER}[redis]\nsave = [\"3600 1\", \"300 100\"]\nappendonly = true\nhz = 20\n\
         maxmemory-policy = \"noeviction\"\n{}",
        trio()
    );
    let g = ok(&text).group;
    let d = |key: &str, values: &[&str]| Directive {
        key: key.to_owned(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    assert_eq!(
        g.redis,
        vec![
            d("save", &["3600 1", "300 100"]),
            d("appendonly", &["yes"]),
            d("hz", &["20"]),
            d("maxmemory-policy", &["noeviction"]),
        ]
    );
}

#[test]
fn instance_directive_overrides_group_directive() {
    let text = format!(
        "{CLUSTER}[redis]\nmaxmemory = \"1gb\"\n{}[instance.redis]\nMAXMEMORY = \"2gb\"\n",
        trio()
    );
    let g = ok(&text).group;
    let value = |name: &str| g.directive(g.instance(name).unwrap(), "maxmemory").unwrap();
    assert_eq!(value("r2"), ["2gb"]);
    assert_eq!(value("r1"), ["1gb"]);
    assert_eq!(g.directive(g.instance("r1").unwrap(), "hz"), None);
}

#[test]
fn backup_defaults_and_values() {
    let g = ok(&format!("{CLUSTER}{}", trio())).group;
    assert_eq!(g.backup.dir, PathBuf::from(Backup::DEFAULT_DIR));
    assert_eq!(
        (g.backup.every, g.backup.keep),
        (None, Backup::DEFAULT_KEEP)
    );
    let text = format!(
        "{CLUSTER}{}\n[backup]\ndir = \"backups\"\nevery = \"1h\"\nkeep = 3\nfrom = \"r2\"\n\
         upload = [\"rclone\", \"copy\"]\nupload_timeout = \"2m\"\n",
        trio()
    );
    let b = ok(&text).group.backup;
    assert_eq!(b.dir, PathBuf::from(BASE).join("backups"));
    assert_eq!(b.every, Some(Duration::from_secs(3600)));
    assert_eq!((b.keep, b.from.as_deref()), (3, Some("r2")));
    assert_eq!(b.upload, ["rclone", "copy"]);
    assert_eq!(b.upload_timeout, Duration::from_secs(120));
}

#[test]
fn backup_mistakes_are_reported_together() {
    let text = format!(
        "{CLUSTER}{}\n[backup]\nkeep = 0\nfrom = \"nobody\"\nupload = []\nevery = \"10ms\"\n",
        trio()
    );
    let p = problems(&text);
    assert_eq!(p.len(), 4, "{p:?}");
    for key in [
        "backup.keep",
        "backup.from",
        "backup.upload",
        "backup.every",
    ] {
        assert!(p.iter().any(|l| l.contains(key)), "{key}: {p:?}");
    }
}
