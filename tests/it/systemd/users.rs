//! Instances as `user`, the control socket's peer check, where the password must not
//! show, `check`'s warnings, completions and the man page, READY without a master.

use super::*;

/// A root daemon with `user` set, under the unit's capability bounding set and
/// NoNewPrivileges: every instance runs as the user, its group and its supplementary
/// groups, without capabilities; the instance's own paths belong to the user while the
/// top directories stay root's (mode 0711); a replica restarted gracefully resumes from
/// its RDB (CAP_DAC_READ_SEARCH); a stop that must escalate to signals works (CAP_KILL);
/// the password is in no argv, environment, log or file others may read.
#[test]
fn instances_run_as_the_user_under_the_units_capabilities() {
    require_root("starting instances as another user");
    let user = test_user();
    let mut c = cluster::one_host()
        .cluster(&format!("user = \"{TEST_USER}\"\nlog_dir = \"log\""))
        .supervise("shutdown_timeout", "\"1s\"")
        .redis("save = [\"3600 1\"]\nappendonly = \"yes\"\n")
        .build();
    // tempfile makes the test dir 0700 root: the user must be able to reach its paths.
    util::chmod(c.dir.path(), 0o755);
    let (sandbox, cap_mask) = unit_sandbox();
    c.start_daemon_wrapped("a", &sandbox, |_| {});
    c.wait_socket("a");
    c.wait_healthy();

    let daemon = c.daemon("a").proc.pid();
    assert_eq!(
        proc_status(daemon, "Uid")[0],
        "0",
        "the daemon runs as root"
    );
    let bounding = u64::from_str_radix(&proc_status(daemon, "CapBnd")[0], 16).expect("hex");
    assert_eq!(
        bounding, cap_mask,
        "the daemon runs with the unit's bounding set"
    );
    assert_eq!(proc_status(daemon, "NoNewPrivs"), ["1"]);

    let pids = c.redis_pids();
    assert_eq!(pids.len(), 3, "{}", c.logs());
    let (uid, gid) = (user.uid.to_string(), user.gid.to_string());
    for &pid in &pids {
        assert_eq!(proc_status(pid, "Uid"), [uid.as_str(); 4], "redis {pid}");
        assert_eq!(proc_status(pid, "Gid"), [gid.as_str(); 4], "redis {pid}");
        let groups = proc_status(pid, "Groups");
        assert!(
            groups.contains(&user.extra_gid.to_string()) && groups.contains(&gid),
            "redis {pid} has the user's groups: {groups:?}"
        );
        assert_eq!(proc_status(pid, "CapEff"), ["0000000000000000"]);
    }

    for top in ["run", "data", "log"] {
        assert_eq!(owner_and_mode(&c.dir.join(top)), (0, 0o711), "{top}/");
    }
    for name in ["master", "r1", "r2"] {
        let uid = user.uid.as_raw();
        assert_eq!(owner_and_mode(&c.data_dir(name)).0, uid, "data/{name}");
        assert_eq!(
            owner_and_mode(&c.run_dir().join(format!("{name}.conf"))),
            (uid, 0o600),
            "run/{name}.conf"
        );
        let log = c.dir.join("log").join(format!("{name}.log"));
        assert_eq!(owner_and_mode(&log).0, uid, "log/{name}.log");
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("Ready to accept connections"),
            "{log:?}: {text}"
        );
    }

    // A graceful restart of a replica with AOF resumes from its RDB (a partial resync):
    // the daemon compares the RDB's and the AOF's dates in the user's data dir, which
    // root may read only with CAP_DAC_READ_SEARCH (else: a silent full sync).
    let run = c.cli(&["restart", "r2"]);
    let r2_log = || fs::read_to_string(c.dir.join("log/r2.log")).unwrap_or_default();
    assert!(
        run.status.success()
            && run.stdout.contains("r2: running")
            && run.stdout.contains("partial resync"),
        "{run}\n--- log/r2.log:\n{}",
        r2_log()
    );

    // A stop that SHUTDOWN cannot do (the process is frozen) escalates to SIGTERM and
    // SIGKILL, signals to a process of another user: CAP_KILL.
    let r1 = c.pid("r1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(r1 as i32), Signal::SIGSTOP)
        .expect("SIGSTOP r1");
    let run = c.cli(&["stop", "r1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("r1: stopped"), "{run}");
    let log = c.daemon_log("a");
    assert!(
        log.contains("SIGKILL"),
        "the stop escalated to SIGKILL:\n{log}"
    );
    c.cli(&["start", "r1"]).expect_code(0);
    c.wait_healthy();

    // A new password, applied in place by a reload: neither shows anywhere it must not.
    let new_password = "pw-Rot4-never-leak";
    c.dir.write("password", format!("{new_password}\n"));
    let run = c.cli(&["reload"]);
    assert!(
        run.status.success() && run.stdout.matches("password changed in place").count() == 3,
        "{run}\n{}",
        c.logs()
    );
    util::ping(c.addr("master"), Some(new_password)).expect("the new password works");
    let mut pids = c.redis_pids();
    pids.push(daemon);
    for password in [PASSWORD, new_password] {
        assert_password_hidden(&c, &pids, password);
    }

    assert_eq!(c.stop_daemon("a").code(), Some(0), "{}", c.logs());
    assert!(c.redis_pids().is_empty(), "every instance stopped");
    for name in ["master", "r1", "r2"] {
        let rdb = c.data_dir(name).join("dump.rdb");
        assert_eq!(owner_and_mode(&rdb).0, user.uid.as_raw(), "{rdb:?}");
    }
}

/// The control socket serves root and the daemon's own user, and refuses anyone else by
/// the peer's credentials, even when the file system lets them connect.
#[test]
fn control_socket_serves_root_and_the_daemons_user_only() {
    require_root("running the daemon and clients as other users");
    let user = test_user();
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    // The daemon runs as the test user, as if started by it: it owns the test dir.
    chown_tree(c.dir.path(), user.uid, user.gid);
    c.start_daemon_with("a", |cmd| {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    });
    c.wait_socket("a");
    c.wait_state("master", "running"); // root is served

    let as_user = |uid: Uid, gid: Gid, config: &Path, args: &[&str]| {
        let mut cmd = util::redisrepd(config);
        cmd.args(args).uid(uid.as_raw()).gid(gid.as_raw());
        util::run(&mut cmd, QUICK)
    };
    // The daemon's own user is served.
    let run = as_user(user.uid, user.gid, &c.config, &["reload", "--host", "a"]);
    run.expect_code(0);
    assert!(run.stdout.contains("nothing to do"), "{run}");

    // Anyone else is refused by the daemon itself: open the file system to them first,
    // and give them a copy of the TOML they may read (without the password file).
    let nobody = nobody();
    let public = public_toml(&c);
    util::chmod(c.dir.path(), 0o711);
    util::chmod(&c.run_dir(), 0o711);
    util::chmod(&c.run_dir().join("a.sock"), 0o666);
    let run = as_user(nobody.uid, nobody.gid, &public, &["reload", "--host", "a"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("permission denied: only root and the daemon's user may control it"),
        "{run}"
    );
    let run = as_user(nobody.uid, nobody.gid, &public, &["stop", "master"]);
    run.expect_code(1);
    assert!(run.stderr.contains("permission denied"), "{run}");
    assert_eq!(c.status()["master"]["state"], "running", "nothing changed");
}

/// A daemon that is not root cannot run instances as someone else: it refuses to start.
#[test]
fn a_daemon_without_root_refuses_another_user() {
    require_root("running the daemon as another user");
    let user = test_user();
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .cluster("user = \"nobody\"")
        .build();
    chown_tree(c.dir.path(), user.uid, user.gid);
    c.start_daemon_with("a", |cmd| {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    });
    let status = c.daemon("a").proc.wait_exit(UP);
    assert_eq!(status.code(), Some(1));
    let log = c.daemon_log("a");
    assert!(
        log.contains(&format!("the daemon runs as uid {}, not root", user.uid))
            && log.contains("cannot run instances as `nobody`"),
        "{log}"
    );
    assert!(c.redis_pids().is_empty());
}

/// `check` warns when run as root about a file without `user` (the daemon would run the
/// instances as root), and about a `user` this machine does not have; not otherwise.
#[test]
fn check_warns_about_instances_as_root() {
    require_root("checking as root and as nobody");
    let c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let warning =
        "no `user` in [cluster]: a daemon started as root runs the Redis instances as root";
    let run = c.cli(&["check", "--host", "a"]);
    run.expect_code(0);
    assert!(run.stderr.contains(warning), "{run}");

    let with_user = |user: &str| {
        let text = c
            .toml_text()
            .replace("[cluster]\n", &format!("[cluster]\nuser = \"{user}\"\n"));
        let path = c.dir.write(format!("{user}.toml"), text);
        util::run(util::redisrepd(&path).args(["check", "--host", "a"]), QUICK)
    };
    let run = with_user("nobody");
    run.expect_code(0);
    assert!(!run.stderr.contains("`user`"), "{run}");
    let run = with_user("no-such-user-rrd");
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("key `user`: no user `no-such-user-rrd` on this machine"),
        "{run}"
    );

    // Not root: no word about root.
    let nobody = nobody();
    let public = public_toml(&c);
    util::chmod(c.dir.path(), 0o755);
    let mut cmd = util::redisrepd(&public);
    cmd.args(["check", "--host", "a"])
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw());
    let run = util::run(&mut cmd, QUICK);
    run.expect_code(0);
    assert!(!run.stderr.contains(warning), "{run}");
}

// ----- operator comforts --------------------------------------------------------------

/// `completions SHELL` prints a script naming every verb (bash's parses), `man` a roff
/// page; an unknown shell is a usage error.
#[test]
fn completions_and_man_page() {
    let verbs = [
        "daemon", "start", "stop", "restart", "status", "reload", "check", "render",
    ];
    let dir = TestDir::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = util::run(
            Command::new(util::bin()).args(["completions", shell]),
            QUICK,
        );
        run.expect_code(0);
        for verb in verbs {
            assert!(run.stdout.contains(verb), "{shell} completion lacks {verb}");
        }
        if shell == "bash" {
            let script = dir.write("redisrepd.bash", &run.stdout);
            util::run(Command::new("bash").arg("-n").arg(&script), QUICK).expect_code(0);
        }
    }
    util::run(
        Command::new(util::bin()).args(["completions", "tcsh"]),
        QUICK,
    )
    .expect_code(2);

    let run = util::run(Command::new(util::bin()).arg("man"), QUICK);
    run.expect_code(0);
    assert!(run.stdout.contains(".TH redisrepd 1"), "{run}");
    for verb in verbs {
        assert!(run.stdout.contains(verb), "the man page lacks {verb}");
    }
}

/// A replica whose master's host is down does not hold READY=1 back: systemd's start job
/// would otherwise wait for another machine.
#[test]
fn ready_does_not_wait_for_a_master_on_a_host_that_is_down() {
    let mut c = cluster::master_and_two_replicas().build();
    let notes = Listener::bind(&c.dir.join("notify.sock"), None);
    let socket = notes.path.clone();
    c.start_daemon_with("b", |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket);
    });
    c.wait_socket("b");
    notes.wait_line("READY=1", 0);
    let s = c.status();
    assert_eq!(s["r1"]["state"], "starting", "{}", s["r1"]);
    assert!(
        s["r1"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("waiting for upstream `master`")),
        "{}",
        s["r1"]
    );
}
