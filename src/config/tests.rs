//! Unit tests of the config model: [`parse`] on strings for every rule of `spec/config.md`,
//! [`load`] on temp files for what needs the file system (the password file).

use std::os::unix::fs::PermissionsExt;

use super::*;

const SOURCE: &str = "/etc/redisrepd/test.toml";
const BASE: &str = "/etc/redisrepd";

/// `[cluster]` with an inline password, so that no test trips the no-password warning by
/// accident.
const CLUSTER: &str = "[cluster]\nname = \"t\"\npassword = \"secret\"\n";

/// One `[[instance]]` table; `extra` is appended verbatim (more keys, `[instance.redis]`).
fn inst(name: &str, host: &str, bind: &str, port: u16, replica_of: Option<&str>) -> String {
    let mut s = format!(
        "\n[[instance]]\nname = \"{name}\"\nhost = \"{host}\"\nbind = \"{bind}\"\nport = {port}\n"
    );
    if let Some(up) = replica_of {
        s.push_str(&format!("replica_of = \"{up}\"\n"));
    }
    s
}

/// A valid group: master `m` with replicas `r1` and `r2`, all on host `h`.
fn trio() -> String {
    [
        inst("m", "h", "10.0.0.1", 6379, None),
        inst("r1", "h", "10.0.0.2", 6379, Some("m")),
        inst("r2", "h", "10.0.0.2", 6380, Some("m")),
    ]
    .concat()
}

fn try_parse(text: &str) -> Result<Checked, ConfigError> {
    parse(text, Path::new(SOURCE), Path::new(BASE))
}

#[track_caller]
fn ok(text: &str) -> Checked {
    match try_parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid file, got:\n{e}\n--- file:\n{text}"),
    }
}

#[track_caller]
fn problems(text: &str) -> Vec<String> {
    match try_parse(text) {
        Ok(c) => panic!("expected errors, the file is valid: {c:?}\n--- file:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, Path::new(SOURCE));
            e.problems
        }
    }
}

/// Asserts the file fails with exactly one problem, which contains every fragment.
#[track_caller]
fn one_problem(text: &str, fragments: &[&str]) -> String {
    let problems = problems(text);
    assert_eq!(problems.len(), 1, "expected one problem: {problems:#?}");
    let p = &problems[0];
    for f in fragments {
        assert!(p.contains(f), "problem {p:?} should contain {f:?}");
    }
    p.clone()
}

/// The one warning of a valid file, displayed.
#[track_caller]
fn one_warning(text: &str) -> Problem {
    let warnings = ok(text).warnings;
    assert_eq!(warnings.len(), 1, "expected one warning: {warnings:#?}");
    warnings[0].clone()
}

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
    one_problem(&text, &["in instance `r1`: ", "unknown field `replca_of`"]);
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

// ---- passwords ----

#[test]
fn password_and_password_file_together_are_rejected() {
    let text = format!("{CLUSTER}password_file = \"pw\"\n{}", trio());
    one_problem(
        &text,
        &["key `password`: both `password` and `password_file` are set"],
    );
}

/// Regression: a `'` passed the checker, but Redis reads `requirepass it's` as an
/// unbalanced quote and refuses to start.
#[test]
fn inline_password_that_redis_conf_cannot_carry_is_rejected() {
    for bad in ["two words", "tab\\there", "it's", "say\\\"hi\\\""] {
        let text = format!("{CLUSTER}{}", trio()).replace("\"secret\"", &format!("\"{bad}\""));
        one_problem(&text, &["key `password`: contains whitespace or a quote"]);
    }
}

#[test]
fn no_password_warns() {
    let text = format!("[cluster]\nname = \"t\"\n{}", trio());
    let c = ok(&text);
    assert_eq!(c.group.cluster.password, PasswordSource::None);
    assert_eq!(c.group.password(), None);
    let w = one_warning(&text);
    assert_eq!(w.instance, None);
    assert!(
        w.to_string()
            .starts_with("key `password_file`: no password is set"),
        "{w}"
    );
}

#[test]
fn inline_password_is_kept_and_never_debug_printed() {
    let c = ok(&format!("{CLUSTER}{}", trio()));
    assert_eq!(c.group.password().map(Secret::expose), Some("secret"));
    let debug = format!("{c:?}");
    assert!(!debug.contains("secret"), "{debug}");
}

// ---- persistence ----

#[test]
fn unpersisted_master_with_replicas_warns() {
    let text = format!(
        "{CLUSTER}[redis]\nsave = \"\"\nappendonly = \"no\"\n{}",
        trio()
    );
    let w = one_warning(&text);
    assert_eq!(w.instance.as_deref(), Some("m"));
    assert_eq!(w.key, "redis.save");
    assert!(
        w.to_string()
            .starts_with("instance `m`, key `redis.save`: master `m` has no persistence"),
        "{w}"
    );
}

#[test]
fn persisted_master_does_not_warn() {
    for redis in [
        "save = \"\"\nappendonly = \"yes\"\n",
        "save = \"\"\nappendonly = true\n",
        "save = \"900 1\"\nappendonly = \"no\"\n",
        "save = [\"900 1\", \"300 10\"]\n",
        "appendonly = \"no\"\n", // no `save`: Redis's default snapshots apply
        "",
    ] {
        let text = format!("{CLUSTER}[redis]\n{redis}{}", trio());
        let c = ok(&text);
        assert!(c.warnings.is_empty(), "{redis:?}: {:#?}", c.warnings);
    }
}

#[test]
fn unpersisted_master_without_replicas_does_not_warn() {
    let text = format!(
        "{CLUSTER}[redis]\nsave = \"\"\n{}",
        inst("m", "h", "10.0.0.1", 6379, None)
    );
    assert!(ok(&text).warnings.is_empty());
}

#[test]
fn master_override_of_save_counts() {
    let text = format!(
        "{CLUSTER}[redis]\nsave = \"\"\n{}{}{}",
        inst("r1", "h", "10.0.0.2", 6379, Some("m")),
        inst("m", "h", "10.0.0.1", 6379, None),
        "[instance.redis]\nsave = \"60 1\"\n",
    );
    let c = ok(&text);
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    let g = &c.group;
    assert!(g.persists(g.instance("m").unwrap()));
    assert!(!g.persists(g.instance("r1").unwrap()));
}

#[test]
fn persists_follows_save_and_appendonly() {
    for (redis, expected) in [
        ("", true),
        ("save = \"3600 1\"\n", true),
        ("save = \"\"\n", false),
        ("save = [\"\"]\n", false),
        ("save = \"\\\"\\\"\"\n", false), // save "\"\"", quoted the redis.conf way
        ("save = \"\"\nappendonly = \"yes\"\n", true),
        ("save = \"\"\nappendonly = \"YES\"\n", true),
        ("save = \"\"\nappendonly = false\n", false),
    ] {
        let text = format!(
            "{CLUSTER}[redis]\n{redis}{}",
            inst("m", "h", "10.0.0.1", 6379, None)
        );
        let g = ok(&text).group;
        assert_eq!(g.persists(&g.instances[0]), expected, "{redis:?}");
    }
}

// ---- several problems at once ----

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!(
        "{CLUSTER}password_file = \"pw\"\n[redis]\nport = 1\n{}",
        trio()
    )
    .replacen("replica_of = \"m\"", "replica_of = \"nosuch\"", 1);
    let err = try_parse(&text).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    for line in &lines {
        assert!(line.starts_with(&format!("{SOURCE}: ")), "{shown}");
    }
    assert!(lines[0].contains("key `password`"), "{shown}");
    assert!(lines[1].contains("key `redis.port`"), "{shown}");
    assert!(
        lines[2].contains("instance `r1`, key `replica_of`"),
        "{shown}"
    );
}

#[test]
fn supervise_problems_are_all_reported() {
    let text = format!(
        "{CLUSTER}[supervise]\nstart_timeout = \"0s\"\nrestart_delay = \"10s\"\n\
         restart_delay_max = \"5s\"\ncrash_loop_limit = 0\nmax_concurrent_syncs = 0\n{}",
        trio()
    );
    let p = problems(&text);
    assert_eq!(
        p.iter()
            .map(|p| p.split(':').next().unwrap())
            .collect::<Vec<_>>(),
        [
            "key `supervise.start_timeout`",
            "key `supervise.restart_delay_max`",
            "key `supervise.crash_loop_limit`",
            "key `supervise.max_concurrent_syncs`",
        ]
    );
}

// ---- defaults and paths ----

#[test]
fn defaults_are_applied() {
    let g = ok(&format!("{CLUSTER}{}", trio())).group;
    assert_eq!(g.source, Path::new(SOURCE));
    assert_eq!(g.cluster.name, "t");
    assert_eq!(g.cluster.redis_server, "redis-server");
    assert_eq!(g.cluster.run_dir, Path::new("/run/redisrepd"));
    assert_eq!(g.cluster.data_dir, Path::new("/var/lib/redisrepd"));
    assert_eq!(g.cluster.log_dir, None);
    assert_eq!(g.cluster.user, None);
    assert_eq!(g.supervise, Supervise::default());
    let s = Supervise::default();
    assert_eq!(s.start_timeout, Duration::from_secs(30));
    assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(s.restart_delay, Duration::from_secs(1));
    assert_eq!(s.restart_delay_max, Duration::from_secs(60));
    assert_eq!(s.crash_loop_limit, 5);
    assert_eq!(s.crash_loop_window, Duration::from_secs(300));
    assert_eq!(s.max_concurrent_syncs, 1);
    assert_eq!(s.sync_timeout, Duration::from_secs(600));
    assert_eq!(s.health_interval, Duration::from_secs(1));
}

#[test]
fn durations_in_human_form() {
    let text = format!(
        "{CLUSTER}[supervise]\nstart_timeout = \"500ms\"\nshutdown_timeout = \"1m 30s\"\n\
         restart_delay = \"2s\"\nrestart_delay_max = \"1h\"\ncrash_loop_window = \"5m\"\n\
         sync_timeout = \"1m30s\"\nhealth_interval = \"250ms\"\ncrash_loop_limit = 3\n\
         max_concurrent_syncs = 2\n{}",
        trio()
    );
    let s = ok(&text).group.supervise;
    assert_eq!(
        s,
        Supervise {
            start_timeout: Duration::from_millis(500),
            shutdown_timeout: Duration::from_secs(90),
            restart_delay: Duration::from_secs(2),
            restart_delay_max: Duration::from_secs(3600),
            crash_loop_limit: 3,
            crash_loop_window: Duration::from_secs(300),
            max_concurrent_syncs: 2,
            sync_timeout: Duration::from_secs(90),
            health_interval: Duration::from_millis(250),
        }
    );
}

#[test]
fn relative_paths_are_resolved_against_the_base_dir() {
    let text = format!(
        "[cluster]\nname = \"t\"\npassword_file = \"secret/pw\"\nrun_dir = \"state/run\"\n\
         data_dir = \"/srv/data\"\nlog_dir = \"../log\"\nredis_server = \"bin/redis-server\"\n\
         user = \"redis\"\n{}",
        trio()
    );
    let g = ok(&text).group;
    let c = &g.cluster;
    assert_eq!(
        c.password,
        PasswordSource::File {
            path: PathBuf::from("/etc/redisrepd/secret/pw"),
            secret: None
        }
    );
    assert_eq!(g.password(), None, "parse does not read the password file");
    assert_eq!(c.run_dir, Path::new("/etc/redisrepd/state/run"));
    assert_eq!(c.data_dir, Path::new("/srv/data"));
    assert_eq!(
        c.log_dir.as_deref(),
        Some(Path::new("/etc/redisrepd/../log"))
    );
    assert_eq!(c.redis_server, "/etc/redisrepd/bin/redis-server");
    assert_eq!(c.user.as_deref(), Some("redis"));
    let m = g.instance("m").unwrap();
    assert_eq!(g.conf_path(m), Path::new("/etc/redisrepd/state/run/m.conf"));
    assert_eq!(g.pid_path(m), Path::new("/etc/redisrepd/state/run/m.pid"));
    assert_eq!(g.data_path(m), Path::new("/srv/data/m"));
    assert_eq!(
        g.log_path(m).as_deref(),
        Some(Path::new("/etc/redisrepd/../log/m.log"))
    );
    assert_eq!(
        g.socket_path("h"),
        Path::new("/etc/redisrepd/state/run/h.sock")
    );
}

#[test]
fn bare_redis_server_name_is_kept_for_path_lookup() {
    let text = format!("{CLUSTER}redis_server = \"redis7-server\"\n{}", trio());
    assert_eq!(ok(&text).group.cluster.redis_server, "redis7-server");
}

// ---- the replication tree ----

/// A cascade listed deepest first: leaf -> relay -> master, plus a second replica of the
/// master on the master's host.
fn cascade() -> Group {
    let text = format!(
        "{CLUSTER}{}{}{}{}",
        inst("leaf", "west", "10.0.0.2", 6380, Some("relay")),
        inst("relay", "west", "10.0.0.2", 6379, Some("master")),
        inst("master", "east", "10.0.0.1", 6379, None),
        inst("near", "east", "10.0.0.1", 6380, Some("master")),
    );
    ok(&text).group
}

fn names<'a>(list: impl IntoIterator<Item = &'a Instance>) -> Vec<&'a str> {
    list.into_iter().map(|i| i.name.as_str()).collect()
}

#[test]
fn start_order_is_master_then_parents_before_children() {
    let g = cascade();
    assert_eq!(
        names(g.start_order_all()),
        ["master", "relay", "near", "leaf"]
    );
    assert_eq!(names(g.start_order("west")), ["relay", "leaf"]);
    assert_eq!(names(g.start_order("east")), ["master", "near"]);
    assert!(g.start_order("nowhere").is_empty());
}

#[test]
fn stop_order_is_deepest_first() {
    let g = cascade();
    assert_eq!(names(g.stop_order("west")), ["leaf", "relay"]);
    assert_eq!(names(g.stop_order("east")), ["near", "master"]);
}

#[test]
fn depth_counts_hops_from_the_master() {
    let g = cascade();
    let depth = |n: &str| g.depth(g.instance(n).unwrap());
    assert_eq!(depth("master"), 0);
    assert_eq!(depth("relay"), 1);
    assert_eq!(depth("near"), 1);
    assert_eq!(depth("leaf"), 2);
}

#[test]
fn tree_accessors() {
    let g = cascade();
    assert_eq!(g.master().name, "master");
    assert_eq!(names(g.replicas_of("master")), ["relay", "near"]);
    assert_eq!(names(g.replicas_of("relay")), ["leaf"]);
    assert!(g.replicas_of("leaf").next().is_none());
    let leaf = g.instance("leaf").unwrap();
    assert_eq!(g.upstream(leaf).map(|i| i.name.as_str()), Some("relay"));
    assert_eq!(g.upstream(g.master()), None);
    assert_eq!(g.hosts(), ["west", "east"]);
    assert!(g.instance("nosuch").is_none());
}

// ---- load: the file system part ----

/// Writes `password_file = "pw"` TOML plus the password file (`None`: no file) in a temp
/// dir and loads it.
fn load_with_password_file(
    content: Option<&str>,
    mode: u32,
) -> (tempfile::TempDir, Result<Checked, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("group.toml");
    std::fs::write(
        &toml,
        format!(
            "[cluster]\nname = \"t\"\npassword_file = \"pw\"\n{}",
            trio()
        ),
    )
    .unwrap();
    if let Some(content) = content {
        let pw = dir.path().join("pw");
        std::fs::write(&pw, content).unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let result = load(&toml);
    (dir, result)
}

#[test]
fn load_reads_the_password_file() {
    let (dir, result) = load_with_password_file(Some("hunter2\n"), 0o600);
    let c = result.unwrap();
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    assert_eq!(c.group.password().map(Secret::expose), Some("hunter2"));
    assert_eq!(c.group.source, dir.path().join("group.toml"));
    assert_eq!(c.group.cluster.run_dir, Path::new("/run/redisrepd"));
}

#[test]
fn load_rejects_a_missing_password_file() {
    let (dir, result) = load_with_password_file(None, 0);
    let err = result.unwrap_err();
    let shown = err.to_string();
    let pw = dir.path().join("pw");
    assert_eq!(err.problems.len(), 1, "{shown}");
    assert!(
        shown.starts_with(&format!(
            "{}: key `password_file`: cannot read `{}`",
            dir.path().join("group.toml").display(),
            pw.display()
        )),
        "{shown}"
    );
}

#[test]
fn load_rejects_a_password_file_that_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pw")).unwrap();
    let toml = dir.path().join("group.toml");
    std::fs::write(
        &toml,
        format!(
            "[cluster]\nname = \"t\"\npassword_file = \"pw\"\n{}",
            trio()
        ),
    )
    .unwrap();
    let shown = load(&toml).unwrap_err().to_string();
    assert!(
        shown.contains("key `password_file`: cannot read"),
        "{shown}"
    );
}

#[test]
fn load_rejects_an_empty_password_file() {
    for content in ["", "\n", "\nsecond-line\n"] {
        let (_dir, result) = load_with_password_file(Some(content), 0o600);
        let shown = result.unwrap_err().to_string();
        assert!(
            shown.contains("key `password_file`: `") && shown.contains("` is empty"),
            "{content:?}: {shown}"
        );
    }
}

#[test]
fn load_rejects_a_password_that_redis_conf_cannot_carry() {
    for bad in ["two words\n", "it's\n", "say\"hi\"\n"] {
        let (_dir, result) = load_with_password_file(Some(bad), 0o600);
        let shown = result.unwrap_err().to_string();
        assert!(shown.contains("key `password_file`: "), "{bad:?}: {shown}");
        assert!(
            shown.contains("contains whitespace or a quote"),
            "{bad:?}: {shown}"
        );
    }
}

#[test]
fn load_warns_about_a_password_file_readable_by_others() {
    let (dir, result) = load_with_password_file(Some("hunter2"), 0o644);
    let c = result.unwrap();
    assert_eq!(c.group.password().map(Secret::expose), Some("hunter2"));
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    let w = &c.warnings[0];
    assert_eq!(w.key, "password_file");
    let shown = w.to_string();
    let pw = dir.path().join("pw");
    assert!(shown.starts_with("key `password_file`: "), "{shown}");
    assert!(shown.contains("mode 644"), "{shown}");
    assert!(
        shown.contains(&format!("chmod 600 {}", pw.display())),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn load_warns_about_a_group_readable_password_file() {
    let (_dir, result) = load_with_password_file(Some("hunter2"), 0o640);
    assert_eq!(result.unwrap().warnings.len(), 1);
}

#[test]
fn load_of_a_missing_file_says_how_to_point_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let shown = load(&missing).unwrap_err().to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: cannot read the configuration",
            missing.display()
        )),
        "{shown}"
    );
    assert!(shown.contains("--config"), "{shown}");
}

#[test]
fn load_errors_never_contain_the_password() {
    // A file that fails after the password is known must not echo it.
    let (_dir, result) = load_with_password_file(Some("hunter2 x"), 0o600);
    assert!(!result.unwrap_err().to_string().contains("hunter2"));
}

#[test]
fn metrics_listen_is_an_address_and_port() {
    let g = ok(&format!(
        "{CLUSTER}[metrics]\nlisten = \"127.0.0.1:9765\"\n{}",
        trio()
    ))
    .group;
    assert_eq!(g.metrics.listen, Some("127.0.0.1:9765".parse().unwrap()));
    let g = ok(&format!("{CLUSTER}{}", trio())).group;
    assert_eq!(g.metrics.listen, None);
    one_problem(
        &format!("{CLUSTER}[metrics]\nlisten = \"127.0.0.1\"\n{}", trio()),
        &[
            "line 5",
            "`127.0.0.1` is not an address and port: write ADDR:PORT",
        ],
    );
    one_problem(
        &format!("{CLUSTER}[metrics]\nport = 1\n{}", trio()),
        &["unknown field `port`"],
    );
}
