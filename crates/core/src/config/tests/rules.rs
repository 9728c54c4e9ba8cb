//! Passwords, persistence, several problems at once, defaults and paths, the tree, load.

use super::*;

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

#[test]
fn max_concurrent_syncs_is_a_count_or_auto() {
    let with = |value: &str| {
        format!(
            "{CLUSTER}[supervise]\nmax_concurrent_syncs = {value}\n{}",
            trio()
        )
    };
    let syncs = |value: &str| ok(&with(value)).group.supervise.max_concurrent_syncs;
    assert_eq!(syncs("\"auto\""), MaxSyncs::Auto);
    assert_eq!(syncs("3"), MaxSyncs::Fixed(3));
    assert_eq!(MaxSyncs::Auto.to_string(), "auto");
    assert_eq!(MaxSyncs::Fixed(3).to_string(), "3");
    for (value, says) in [
        ("0", "is 0: at least 1"),
        ("-2", "is -2: at least 1"),
        ("4294967296", "is 4294967296, too large"),
        ("\"Auto\"", "is \"Auto\""),
        ("\"4\"", "is \"4\""),
        ("2.5", "is a float"),
        ("true", "is a boolean"),
    ] {
        let p = problems(&with(value));
        assert_eq!(p.len(), 1, "{value}: {p:?}");
        assert!(
            p[0].starts_with("key `supervise.max_concurrent_syncs`: ") && p[0].contains(says),
            "{value}: {p:?}"
        );
        assert!(
            p[0].contains("an integer of at least 1") && p[0].contains("or \"auto\""),
            "says what is allowed: {p:?}"
        );
    }
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
    assert_eq!(s.max_concurrent_syncs, MaxSyncs::Fixed(1));
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
            max_concurrent_syncs: MaxSyncs::Fixed(2),
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

#[test]
fn metrics_listen_is_an_address_and_port() {
    let g = ok(&format!(
        "{CLUSTER}[metrics]\nlisten = \"127.0.0.1:9765\"\n{}",
        trio()
    ))
    .group;
    assert_eq!(
        g.http.listen,
        Some(HttpListen::Every("127.0.0.1:9765".parse().unwrap()))
    );
    assert_eq!(
        g.http.address("any"),
        Some("127.0.0.1:9765".parse().unwrap())
    );
    let g = ok(&format!("{CLUSTER}{}", trio())).group;
    assert_eq!(g.http.listen, None);
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

#[test]
fn hooks_take_a_program_its_arguments_and_a_timeout() {
    let g = ok(&format!(
        "{CLUSTER}[hooks]\non_role_change = [\"bin/move-vip\", \"eth0\"]\ntimeout = \"3s\"\n{}",
        trio()
    ))
    .group;
    let hook = g.hooks.on_role_change.expect("hook");
    assert!(hook.program.is_absolute(), "{}", hook.program.display());
    assert!(hook.program.ends_with("bin/move-vip"));
    assert_eq!(hook.args, ["eth0"]);
    assert_eq!(g.hooks.timeout, std::time::Duration::from_secs(3));
    let g = ok(&format!("{CLUSTER}{}", trio())).group;
    assert_eq!(g.hooks, crate::config::Hooks::default());
    assert_eq!(g.hooks.timeout, std::time::Duration::from_secs(10));
    let g = ok(&format!(
        "{CLUSTER}[hooks]\non_role_change = [\"logger\"]\n{}",
        trio()
    ))
    .group;
    assert_eq!(
        g.hooks.on_role_change.map(|h| h.program),
        Some("logger".into()),
        "a bare name is looked up on PATH"
    );
    one_problem(
        &format!("{CLUSTER}[hooks]\non_role_change = []\n{}", trio()),
        &["key `hooks.on_role_change`: names no program"],
    );
    one_problem(
        &format!("{CLUSTER}[hooks]\ntimeout = \"0s\"\n{}", trio()),
        &["key `hooks.timeout`: must be longer than zero"],
    );
}

#[test]
fn http_listen_is_one_address_or_one_per_host_that_runs_instances() {
    let hosts: Vec<String> = ok(&format!("{CLUSTER}{}", trio()))
        .group
        .hosts()
        .iter()
        .map(|h| h.to_string())
        .collect();
    let table: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{h} = \"127.0.0.{}:9765\"", i + 1))
        .collect();
    let g = ok(&format!(
        "{CLUSTER}[http]\nlisten = {{ {} }}\n{}",
        table.join(", "),
        trio()
    ))
    .group;
    for (i, h) in hosts.iter().enumerate() {
        let want: std::net::SocketAddr = format!("127.0.0.{}:9765", i + 1).parse().unwrap();
        assert_eq!(g.http.address(h), Some(want));
    }
    assert_eq!(g.http.address("elsewhere"), None);
    // A host left out of the table: named, with what to write.
    let missing = &hosts[hosts.len() - 1];
    let partial = table[..table.len() - 1].join(", ");
    one_problem(
        &format!("{CLUSTER}[http]\nlisten = {{ {partial} }}\n{}", trio()),
        &[
            "key `http.listen`",
            &format!("no address for host `{missing}`, which runs instances"),
            &format!("`{missing} = \"ADDR:PORT\"`"),
        ],
    );
    // A host that runs nothing (a typo).
    one_problem(
        &format!(
            "{CLUSTER}[http]\nlisten = {{ {}, dbx = \"127.0.0.9:1\" }}\n{}",
            table.join(", "),
            trio()
        ),
        &["key `http.listen`", "host `dbx` runs no instance"],
    );
    one_problem(
        &format!("{CLUSTER}[http]\nlisten = {{ a = \"x\" }}\n{}", trio()),
        &["host `a`: `x` is not an address and port"],
    );
    one_problem(
        &format!("{CLUSTER}[http]\nlisten = 5\n{}", trio()),
        &["write one address for every host"],
    );
    one_problem(
        &format!(
            "{CLUSTER}[http]\nlisten = \"127.0.0.1:1\"\n[metrics]\nlisten = \"127.0.0.1:2\"\n{}",
            trio()
        ),
        &["[metrics] is the older name of [http]"],
    );
}
