//! `check` on the examples and on broken files (exit status, messages naming the key), and
//! the rule that no output of `check` or `render` shows the password.

use std::path::PathBuf;

use super::util::{Example, QUICK, Run, TestDir, chmod, redis_server, redisrepd, run};

const EXAMPLES: [&str; 4] = ["seed", "local", "cascade", "sentinel"];

/// An example copied unchanged (paths stay relative to the copy) into `dir`.
fn copy(dir: &TestDir, name: &str) -> (Example, PathBuf) {
    let ex = Example::load(name);
    let config = ex.write(dir);
    (ex, config)
}

fn check(config: &std::path::Path, args: &[&str]) -> Run {
    run(redisrepd(config).arg("check").args(args), QUICK)
}

/// The instance names of a printed plan, in order (`  1. master at ...`).
fn plan_order(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.trim_start().split_once(". "))
        .filter(|(n, _)| n.parse::<u32>().is_ok())
        .filter_map(|(_, rest)| rest.split(' ').next())
        .collect()
}

#[test]
fn check_accepts_every_example_and_prints_each_hosts_start_order() {
    let plans: &[(&str, &str, &[&str])] = &[
        ("seed", "master", &["master"]),
        ("seed", "slave", &["replica-6379", "replica-6380"]),
        ("local", "local", &["master", "replica-a", "replica-b"]),
        ("cascade", "east", &["master"]),
        ("cascade", "west", &["relay", "leaf"]),
        ("sentinel", "local", &["master", "replica-a", "replica-b"]),
    ];
    for name in EXAMPLES {
        let dir = TestDir::new();
        let (ex, config) = copy(&dir, name);
        for (_, host, order) in plans.iter().filter(|(n, _, _)| *n == name) {
            let out = check(&config, &["--host", host]);
            out.expect_code(0).expect_hidden(&ex.password);
            assert!(
                out.stdout.contains("configuration is valid"),
                "{name}: {out}"
            );
            assert!(
                out.stdout
                    .contains(&format!("host `{host}`, in start order:")),
                "{name}: {out}"
            );
            assert_eq!(
                plan_order(&out.stdout),
                *order,
                "{name} --host {host}: {out}"
            );
        }
        // Without --host: this machine's plan, or every host's when it runs none.
        check(&config, &[])
            .expect_code(0)
            .expect_hidden(&ex.password);
    }
}

#[test]
fn check_resolves_relative_paths_against_the_toml() {
    let dir = TestDir::new();
    let (_, config) = copy(&dir, "local");
    let out = check(&config, &["--host", "local"]);
    out.expect_code(0);
    for path in [
        "state/run/master.conf",
        "state/data/replica-b",
        "state/run/local.sock",
    ] {
        let full = dir.join(path).display().to_string();
        assert!(out.stdout.contains(&full), "{full}: {out}");
    }
}

#[test]
fn check_warns_on_stderr_and_succeeds() {
    let dir = TestDir::new();
    let (ex, config) = copy(&dir, "seed");
    let out = check(&config, &["--host", "master"]);
    out.expect_code(0).expect_hidden(&ex.password);
    assert!(
        out.stderr.contains(&format!(
            "redisrepd: warning: {}: instance `master`, key `min_replicas_to_write`: equals",
            config.display()
        )),
        "{out}"
    );
}

#[test]
fn check_warns_about_a_password_file_readable_by_others() {
    let dir = TestDir::new();
    let (ex, config) = copy(&dir, "cascade");
    chmod(&dir.join("cascade.password"), 0o644);
    let out = check(&config, &["--host", "east"]);
    out.expect_code(0).expect_hidden(&ex.password);
    assert!(out.stderr.contains("key `password_file`: "), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "chmod 600 {}",
            dir.join("cascade.password").display()
        )),
        "{out}"
    );
}

/// The first screen of a fresh clone: git checks every file out 0644, and the demo must
/// not greet a new user with a warning about its own example files. So `check` on the
/// example exactly as it is in the checkout (not a copy) gives no warning about a file.
/// (As root it does warn that the instances would run as root: true, and meant.)
#[test]
fn the_demo_example_as_checked_out_gives_no_warning() {
    let config = super::util::example_path("local.toml");
    let out = check(&config, &["--host", "local"]);
    out.expect_code(0);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.contains("no `user` in [cluster]"))
        .collect();
    assert_eq!(warnings, Vec::<&str>::new(), "{out}");
}

/// Points the example at the suite's server (`$REDISREPD_TEST_SERVER`), which `check`
/// asks about the `[redis]` directives.
fn use_test_server(ex: &mut Example) {
    ex.toml["cluster"].as_table_mut().unwrap().insert(
        "redis_server".into(),
        redis_server().display().to_string().into(),
    );
}

/// Writes the local example edited by `edit`, runs `check` (against the suite's server),
/// and expects exit 1 with every fragment on stderr, the file named, and nothing on
/// stdout.
fn rejected(edit: impl FnOnce(&mut Example), fragments: &[&str]) -> Run {
    let dir = TestDir::new();
    let mut ex = Example::load("local");
    use_test_server(&mut ex);
    edit(&mut ex);
    let config = ex.write(&dir);
    let out = check(&config, &["--host", "local"]);
    out.expect_code(1).expect_hidden(&ex.password);
    assert!(
        out.stderr
            .starts_with(&format!("redisrepd: {}: ", config.display())),
        "{out}"
    );
    for f in fragments {
        assert!(out.stderr.contains(f), "expected {f:?}\n{out}");
    }
    assert_eq!(out.stdout, "", "{out}");
    out
}

fn instance<'a>(ex: &'a mut Example, name: &str) -> &'a mut toml::Table {
    ex.instances_mut()
        .find(|i| i["name"].as_str() == Some(name))
        .unwrap()
}

#[test]
fn check_rejects_an_unknown_key() {
    rejected(
        |ex| {
            instance(ex, "replica-a").insert("prot".into(), 1.into());
        },
        &["in instance `replica-a`: ", "unknown field `prot`"],
    );
}

#[test]
fn check_rejects_replica_of_a_missing_instance() {
    rejected(
        |ex| {
            instance(ex, "replica-b").insert("replica_of".into(), "nosuch".into());
        },
        &["instance `replica-b`, key `replica_of`: names `nosuch`"],
    );
}

#[test]
fn check_rejects_a_managed_directive() {
    rejected(
        |ex| {
            let redis = ex.toml["redis"].as_table_mut().unwrap();
            redis.insert("requirepass".into(), "x".into());
        },
        &["key `redis.requirepass`: redisrepd manages `requirepass` itself"],
    );
    let mut redis = toml::Table::new();
    redis.insert("port".into(), 6000.into());
    rejected(
        |ex| {
            instance(ex, "master").insert("redis".into(), redis.into());
        },
        &["instance `master`, key `redis.port`: redisrepd manages `port` itself"],
    );
}

/// What the test server says about a misspelled directive: Redis 8.0 takes any unknown
/// directive for a module's and reports it once it has read the whole file.
fn unknown_directive_reason() -> &'static str {
    let server = super::util::test_server();
    if server.kind == redisrepd_core::server::Kind::Redis && server.version.major >= 8 {
        "unknown directive (it reports it as a module configuration"
    } else {
        "Bad directive or wrong number of arguments"
    }
}

#[test]
fn check_rejects_a_directive_the_server_rejects() {
    // Asked of the real redis-server: a misspelled directive and a malformed value, one in
    // [redis] and one in an instance's [instance.redis]; both reported, each by its key.
    // (Without a redis-server, check only warns: this test needs one.)
    redis_server();
    let mut redis = toml::Table::new();
    redis.insert("maxmemroy".into(), "1gb".into());
    let typo = format!("rejects `maxmemroy 1gb`: {}", unknown_directive_reason());
    let out = rejected(
        |ex| {
            instance(ex, "replica-a").insert("redis".into(), redis.into());
            let group = ex.toml["redis"].as_table_mut().unwrap();
            // (Not `save 3600`: Redis 6.2 takes it, ignoring the odd argument.)
            group.insert("maxmemory".into(), "lots".into());
        },
        &[
            "instance `replica-a`, key `redis.maxmemroy`: ",
            &typo,
            "key `redis.maxmemory`: ",
            "rejects `maxmemory lots`: argument must be a memory value",
        ],
    );
    assert_eq!(out.stderr.lines().count(), 2, "{out}");
}

/// The demo's typo in `[redis]`, on every server: rejected by its key, even with the
/// server's log silenced (Redis 8 reports unknown directives only in its log).
#[test]
fn check_rejects_a_typo_in_redis_on_every_server() {
    redis_server();
    let typo = format!("rejects `maxmemroy 1gb`: {}", unknown_directive_reason());
    for loglevel in ["notice", "warning"] {
        let out = rejected(
            |ex| {
                let group = ex.toml["redis"].as_table_mut().unwrap();
                group.insert("maxmemroy".into(), "1gb".into());
                group.insert("loglevel".into(), loglevel.into());
            },
            &[
                "key `redis.maxmemroy`: ",
                &typo,
                "check the directive's spelling",
            ],
        );
        assert_eq!(out.stderr.lines().count(), 1, "{out}");
    }
    // `nothing` exists from Redis 7.0 on (6.2 rejects the value itself).
    let server = super::util::test_server();
    if server.kind == redisrepd_core::server::Kind::Valkey || server.version.major >= 7 {
        rejected(
            |ex| {
                let group = ex.toml["redis"].as_table_mut().unwrap();
                group.insert("maxmemroy".into(), "1gb".into());
                group.insert("loglevel".into(), "nothing".into());
            },
            &["key `redis.maxmemroy`: ", &typo],
        );
    }
}

#[test]
fn check_reports_every_problem_at_once() {
    let out = rejected(
        |ex| {
            instance(ex, "replica-b").insert("replica_of".into(), "nosuch".into());
            instance(ex, "master").insert("min_replicas_to_write".into(), 5.into());
            let redis = ex.toml["redis"].as_table_mut().unwrap();
            redis.insert("slaveof".into(), "x".into());
        },
        &[
            "key `redis.slaveof`",
            "instance `master`, key `min_replicas_to_write`: is 5",
            "instance `replica-b`, key `replica_of`",
        ],
    );
    assert_eq!(out.stderr.lines().count(), 3, "{out}");
}

#[test]
fn check_shows_line_and_column_of_a_syntax_error() {
    let dir = TestDir::new();
    let config = dir.write("bad.toml", "[cluster]\nname = \"x\nport = 1\n");
    let out = check(&config, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("line 2, column"), "{out}");
}

#[test]
fn check_of_a_missing_file_fails() {
    let dir = TestDir::new();
    let out = check(&dir.join("nope.toml"), &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot read the configuration"),
        "{out}"
    );
}

#[test]
fn no_output_of_check_or_render_shows_the_password() {
    for name in EXAMPLES {
        let dir = TestDir::new();
        let (ex, config) = copy(&dir, name);
        // A loose password file adds a warning that names the file: still not its content.
        let pw_file = dir.join(format!("{name}.password"));
        if pw_file.exists() {
            chmod(&pw_file, 0o644);
        }
        check(&config, &[])
            .expect_code(0)
            .expect_hidden(&ex.password);
        let names: Vec<String> = ex
            .instances()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect();
        for inst in &names {
            let masked = run(redisrepd(&config).args(["render", inst]), QUICK);
            masked.expect_code(0).expect_hidden(&ex.password);
            assert!(masked.stdout.contains("requirepass ********\n"), "{masked}");
            // The password the test looks for is the one Redis would get.
            let shown = run(
                redisrepd(&config).args(["render", inst, "--show-secrets"]),
                QUICK,
            );
            shown.expect_code(0);
            assert!(
                shown
                    .stdout
                    .contains(&format!("requirepass {}\n", ex.password)),
                "{shown}"
            );
        }
    }
}

#[test]
fn render_of_an_unknown_instance_lists_the_instances() {
    let dir = TestDir::new();
    let (_, config) = copy(&dir, "cascade");
    let out = run(redisrepd(&config).args(["render", "nosuch"]), QUICK);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("no instance `nosuch`; instances: `master`, `relay`, `leaf`"),
        "{out}"
    );
}

#[test]
fn usage_error_exits_2() {
    let dir = TestDir::new();
    let (_, config) = copy(&dir, "cascade");
    run(redisrepd(&config).arg("render"), QUICK).expect_code(2);
    let out = run(redisrepd(&config).args(["status", "--bogus"]), QUICK);
    out.expect_code(2);
    assert!(
        out.stderr
            .starts_with("redisrepd: unexpected argument '--bogus' found"),
        "{out}"
    );
}

/// The configuration the Debian package installs as /etc/redisrepd/redisrepd.toml (with
/// the password file its postinst writes) is valid as shipped.
#[test]
fn the_packaged_config_is_valid() {
    let dir = TestDir::new();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/redisrepd.toml"),
    )
    .expect("pkg/redisrepd.toml");
    let config = dir.write("redisrepd.toml", text);
    dir.write("password", "generated-by-postinst\n");
    for host in ["db1", "db2"] {
        let out = check(&config, &["--host", host]);
        out.expect_code(0);
        assert!(out.stdout.contains("configuration is valid"), "{out}");
    }
}

/// The probe never takes over what a live instance owns: a `unixsocket` is rewritten into
/// the probe's own directory (a value Redis parses, then cannot listen on), so `check`
/// accepts it and leaves the configured path alone.
#[test]
fn check_accepts_a_unixsocket_without_touching_it() {
    redis_server();
    let dir = TestDir::new();
    let live = dir.join("live.sock");
    let mut ex = Example::load("local");
    use_test_server(&mut ex);
    let redis = ex.toml["redis"].as_table_mut().unwrap();
    redis.insert("unixsocket".into(), live.display().to_string().into());
    redis.insert("loglevel".into(), "warning".into());
    let config = ex.write(&dir);
    check(&config, &["--host", "local"]).expect_code(0);
    assert!(!live.exists(), "check created the instance's socket");
}

/// A `redis_server` that says it is `version_line` (a script: `--version` is all that
/// `check` and `render` run).
fn fake_server(dir: &TestDir, version_line: &str) -> String {
    let path = dir.write("fake-server", format!("#!/bin/sh\necho '{version_line}'\n"));
    chmod(&path, 0o755);
    path.display().to_string()
}

#[test]
fn check_and_render_follow_the_configured_server() {
    let dir = TestDir::new();
    let mut ex = Example::load("local");
    let fake = fake_server(&dir, "Redis server v=6.2.14 sha=0 malloc=libc bits=64");
    ex.toml["cluster"]
        .as_table_mut()
        .unwrap()
        .insert("redis_server".into(), fake.clone().into());
    let config = ex.write(&dir);
    let out = check(&config, &["--host", "local"]);
    out.expect_code(0);
    assert!(out.stdout.contains("server: redis 6.2.14"), "{out}");
    let master = ex.instances().next().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let rendered = run(redisrepd(&config).args(["render", &master]), QUICK);
    rendered.expect_code(0);
    assert!(rendered.stdout.contains("replicaof") || rendered.stdout.contains("port"));
    assert!(
        !rendered.stdout.contains("repl-diskless-sync-max-replicas"),
        "Redis 6.2 refuses it\n{rendered}"
    );

    // Not installed here: the newest Redis, with a note.
    ex.toml["cluster"]
        .as_table_mut()
        .unwrap()
        .insert("redis_server".into(), "/nonexistent/valkey-server".into());
    let config = ex.write(&dir);
    let rendered = run(redisrepd(&config).args(["render", &master]), QUICK);
    rendered.expect_code(0);
    assert!(
        rendered.stderr.contains("not installed here") && rendered.stderr.contains("redis 8.0.0"),
        "{rendered}"
    );
    assert!(
        rendered.stdout.contains("repl-diskless-sync-max-replicas"),
        "{rendered}"
    );

    // Too old: refused, naming the key.
    let old = TestDir::new();
    let fake = fake_server(&old, "Redis server v=6.0.16 sha=0 malloc=libc bits=64");
    ex.toml["cluster"]
        .as_table_mut()
        .unwrap()
        .insert("redis_server".into(), fake.into());
    let config = ex.write(&dir);
    let out = check(&config, &["--host", "local"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("key `redis_server`")
            && out.stderr.contains("redis 6.0.16 is not supported"),
        "{out}"
    );
}

/// Several independent problems in one file come at once, each at its own line, and
/// every line of the error starts with `redisrepd: `.
#[test]
fn check_reports_two_unknown_keys_and_a_bad_port_at_once() {
    let dir = TestDir::new();
    let (_, config) = copy(&dir, "local");
    let text = std::fs::read_to_string(&config).expect("the copy");
    let text = text
        .replacen("[cluster]\n", "[cluster]\ncolour = \"blue\"\n", 1)
        .replacen("port = 17380", "port = 70000\nfrob = 1", 1);
    std::fs::write(&config, text).expect("writing the file");
    let out = check(&config, &["--host", "local"]);
    out.expect_code(1);
    for fragment in [
        "unknown field `colour`",
        "in instance `replica-a`",
        "port 70000 is out of range",
        "unknown field `frob`",
    ] {
        assert!(out.stderr.contains(fragment), "{fragment}: {out}");
    }
    assert!(!out.stderr.contains("missing field"), "{out}");
    assert!(
        out.stderr.lines().all(|l| l.starts_with("redisrepd: ")),
        "{out}"
    );
}

/// An instance name the file does not have is a usage error (exit 2) for every verb that
/// takes one, and the message lists the instances there are.
#[test]
fn an_unknown_instance_is_a_usage_error_naming_the_known_ones() {
    let dir = TestDir::new();
    let (_, config) = copy(&dir, "local");
    let verbs: [&[&str]; 8] = [
        &["start", "nosuch"],
        &["stop", "nosuch"],
        &["restart", "nosuch"],
        &["status", "nosuch"],
        &["status", "--json", "nosuch"],
        &["failover", "--to", "nosuch"],
        &["promote", "nosuch"],
        &["render", "nosuch"],
    ];
    for args in verbs {
        let out = run(redisrepd(&config).args(args), QUICK);
        out.expect_code(2);
        assert!(
            out.stderr.starts_with("redisrepd: ")
                && out.stderr.contains(
                    "no instance `nosuch`; instances: `master`, `replica-a`, `replica-b`"
                ),
            "{args:?}: {out}"
        );
    }
}
