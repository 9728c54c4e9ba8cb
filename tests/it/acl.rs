//! ACL users (`[[user]]`): set on every instance, `default` off, redisrepd's own users
//! allowed only what they need, users changed live by `reload`, and passwords (a user's
//! and the cluster's) rotated without a refused client or a restart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::IntoConnectionInfo;

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::util;

const APP_PW: &str = "app-pw-Kx2-never-leak";
const APP_PW_NEW: &str = "app-pw-Rt7-new-never-leak";
const ALL: [&str; 3] = ["master", "r1", "r2"];
const APP_RULES: &str = "~* &* +@all -@admin -@dangerous";

/// Connects as `user` (AUTH user password; `None`: no AUTH at all).
fn connect_as(
    addr: SocketAddr,
    user: Option<(&str, &str)>,
) -> redis::RedisResult<redis::Connection> {
    let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some((user, password)) = user {
        settings = settings.set_username(user).set_password(password);
    }
    let info = redis::ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
        .into_connection_info()?
        .set_redis_settings(settings);
    let con = redis::Client::open(info)?
        .get_connection_with_timeout(redisrepd_testkit::redis::TIMEOUT)?;
    con.set_read_timeout(Some(redisrepd_testkit::redis::TIMEOUT))?;
    con.set_write_timeout(Some(redisrepd_testkit::redis::TIMEOUT))?;
    Ok(con)
}

/// Runs one command as `user` on `name`; the error's text when refused.
fn run_as(
    c: &Cluster,
    name: &str,
    user: Option<(&str, &str)>,
    cmd: &[&str],
) -> Result<redis::Value, String> {
    let mut con = connect_as(c.addr(name), user).map_err(|e| e.to_string())?;
    let mut command = redis::cmd(cmd[0]);
    for a in &cmd[1..] {
        command.arg(*a);
    }
    command.query(&mut con).map_err(|e| e.to_string())
}

/// `[[user]] app` with its password file(s) (written 0600 in the test dir).
fn app_user(files: &[&str]) -> String {
    let list: Vec<String> = files.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        "\n[[user]]\nname = \"app\"\npassword_files = [{}]\nrules = \"{APP_RULES}\"\n",
        list.join(", ")
    )
}

fn write_secret(c: &Cluster, file: &str, secret: &str) {
    let path = c.dir.write(file, format!("{secret}\n"));
    util::chmod(&path, 0o600);
}

/// The master and two replicas on host `a`, with `[[user]] app`.
fn group_with_app() -> Cluster {
    let mut c = cluster::one_host().build();
    write_secret(&c, "app.password", APP_PW);
    c.extra_sections = app_user(&["app.password"]);
    c.write_config();
    c
}

fn pids(c: &Cluster) -> Vec<u32> {
    ALL.iter().map(|n| c.pid(n)).collect()
}

/// INFO replication as redisrepd's own user (INFO is all it may read).
fn link_up(c: &Cluster, name: &str, password: &str) -> bool {
    run_as(
        c,
        name,
        Some(("redisrepd", password)),
        &["INFO", "replication"],
    )
    .ok()
    .and_then(|v| redis::from_redis_value::<String>(v).ok())
    .is_some_and(|t| t.contains("master_link_status:up"))
}

/// A refusal by the ACL (the crate words `NOPERM` its own way).
fn no_perm(e: &str) -> bool {
    e.contains("NOPERM") || e.contains("NoPerm")
}

fn reload(c: &Cluster) -> util::Run {
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    run
}

#[test]
fn users_are_set_on_every_instance_and_default_is_off() {
    let mut c = group_with_app();
    let check = c.cli(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{check}");
    let render = c.cli(&["render", "r1"]);
    assert_eq!(render.status.code(), Some(0), "{render}");
    assert!(
        render
            .stdout
            .contains("user app reset on >******** ~* &* +@all"),
        "{render}"
    );
    assert!(render.stdout.contains("user default reset off"), "{render}");
    assert!(
        render.stdout.contains("masteruser redisrepd-replication"),
        "{render}"
    );
    assert!(!render.stdout.contains("requirepass"), "{render}");
    render.expect_hidden(APP_PW).expect_hidden(PASSWORD);

    c.start_daemon("a");
    c.wait_healthy();
    c.cli(&["status"]).expect_hidden(APP_PW);
    for n in ALL {
        // No AUTH, or the cluster password as `default`: refused.
        let none = run_as(&c, n, None, &["PING"]).unwrap_err();
        assert!(none.contains("NOAUTH"), "{n}: {none}");
        let default = run_as(&c, n, Some(("default", PASSWORD)), &["PING"]).unwrap_err();
        assert!(default.contains("AuthenticationFailed"), "{n}: {default}");
        // The application's user reads (and writes, on the master); not CONFIG.
        run_as(&c, n, Some(("app", APP_PW)), &["GET", "k"]).expect("app reads");
        let config = run_as(&c, n, Some(("app", APP_PW)), &["CONFIG", "GET", "port"]);
        assert!(no_perm(&config.unwrap_err()), "{n}");
        // The daemons' user: INFO yes, data no.
        let me = Some(("redisrepd", PASSWORD));
        run_as(&c, n, me, &["INFO"]).expect("INFO as redisrepd");
        for cmd in [
            &["GET", "k"][..],
            &["FLUSHALL"],
            &["KEYS", "*"],
            &["SET", "k", "v"],
        ] {
            let e = run_as(&c, n, me, cmd).unwrap_err();
            assert!(no_perm(&e), "{n} {cmd:?}: {e}");
        }
        // Replication's user only replicates.
        let e = run_as(&c, n, Some(("redisrepd-replication", PASSWORD)), &["INFO"]);
        assert!(no_perm(&e.unwrap_err()), "{n}");
        // The file says it all, 0600.
        let conf = c.run_dir().join(format!("{n}.conf"));
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains(&format!("user app reset on >{APP_PW} ")),
            "{n}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{n}");
    }
    // Replication works as redisrepd-replication.
    run_as(&c, "master", Some(("app", APP_PW)), &["SET", "k", "v"]).expect("SET");
    for r in ["r1", "r2"] {
        util::wait_until(UP, "the key on the replica", || {
            run_as(&c, r, Some(("app", APP_PW)), &["GET", "k"])
                .is_ok_and(|v| v == redis::Value::BulkString(b"v".to_vec()))
        });
        assert!(link_up(&c, r, PASSWORD), "{r}");
    }
    // Never in a log or an argv.
    let logs = c.daemon_log("a");
    assert!(
        !logs.contains(APP_PW) && !logs.contains(PASSWORD),
        "a password in the log"
    );
    for pid in c.redis_pids() {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv = String::from_utf8_lossy(&argv);
        assert!(!argv.contains(APP_PW) && !argv.contains(PASSWORD), "{argv}");
    }
}

#[test]
fn reload_adds_changes_and_removes_users_live() {
    let mut c = group_with_app();
    c.start_daemon("a");
    c.wait_healthy();
    let before = pids(&c);
    // Add `ops` (read only), and take writes away from `app`.
    write_secret(&c, "ops.password", "ops-pw-1");
    c.extra_sections = format!(
        "{}\n[[user]]\nname = \"ops\"\npassword_file = \"ops.password\"\nrules = \"~* +@read\"\n",
        app_user(&["app.password"]).replace(APP_RULES, "~* +@read +@connection")
    );
    c.write_config();
    let run = reload(&c);
    assert!(run.stdout.contains("3 changed live, 0 restarted"), "{run}");
    for n in ALL {
        run_as(&c, n, Some(("ops", "ops-pw-1")), &["GET", "k"]).expect("ops reads");
        let e = run_as(&c, n, Some(("app", APP_PW)), &["SET", "k", "v"]).unwrap_err();
        assert!(no_perm(&e), "{n}: {e}");
        let conf = std::fs::read_to_string(c.run_dir().join(format!("{n}.conf"))).unwrap();
        assert!(conf.contains("user ops reset on"), "{n}");
    }
    // Remove `ops`: refused everywhere, its open connections closed.
    let mut open = connect_as(c.addr("master"), Some(("ops", "ops-pw-1"))).unwrap();
    c.extra_sections = app_user(&["app.password"]);
    c.write_config();
    reload(&c);
    for n in ALL {
        let e = run_as(&c, n, Some(("ops", "ops-pw-1")), &["GET", "k"]).unwrap_err();
        assert!(e.contains("AuthenticationFailed"), "{n}: {e}");
        run_as(&c, n, Some(("app", APP_PW)), &["GET", "k"]).expect("app");
    }
    assert!(
        redis::cmd("PING").query::<String>(&mut open).is_err(),
        "closed"
    );
    assert_eq!(pids(&c), before, "nothing restarted");
    c.wait_healthy();
}

/// A client that opens a fresh connection for every write (so every write authenticates)
/// with whatever password `password` holds now; counts refusals.
struct Client {
    password: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    refused: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(addr: SocketAddr, user: &'static str, password: &str) -> Client {
        Client::start_with(addr, user, password, |n| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(format!("c:{n}")).arg(n);
            cmd
        })
    }

    /// [`Client::start`] sending `command(n)` for the n-th write.
    fn start_with(
        addr: SocketAddr,
        user: &'static str,
        password: &str,
        command: fn(u64) -> redis::Cmd,
    ) -> Client {
        let password = Arc::new(Mutex::new(password.to_owned()));
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (p, s, w, r) = (
            password.clone(),
            stop.clone(),
            writes.clone(),
            refused.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let pw = p.lock().unwrap().clone();
                let result = connect_as(addr, Some((user, &pw)))
                    .and_then(|mut con| command(n).query::<redis::Value>(&mut con));
                match result {
                    Ok(_) => {
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => r.lock().unwrap().push(e.to_string()),
                }
                n += 1;
                // Pacing the client, not waiting for a condition: a steady trickle of logins.
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Client {
            password,
            stop,
            writes,
            refused,
            thread: Some(thread),
        }
    }

    fn switch(&self, password: &str) {
        *self.password.lock().unwrap() = password.to_owned();
    }

    /// Waits for `more` writes from now.
    fn wait_more(&self, more: u64) {
        let goal = self.writes.load(Ordering::Relaxed) + more;
        util::wait_until(UP, "the client's writes", || {
            self.writes.load(Ordering::Relaxed) >= goal
        });
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let refused = self.refused.lock().unwrap().clone();
        (self.writes.load(Ordering::Relaxed), refused)
    }
}

#[test]
fn a_user_password_rotates_without_a_refused_client_or_a_restart() {
    let mut c = group_with_app();
    c.start_daemon("a");
    c.wait_healthy();
    let before = pids(&c);
    let client = Client::start(c.addr("master"), "app", APP_PW);
    client.wait_more(20);
    // 1. The new password first, the old second: both work everywhere.
    write_secret(&c, "app.password.new", APP_PW_NEW);
    c.extra_sections = app_user(&["app.password.new", "app.password"]);
    c.write_config();
    let run = reload(&c);
    run.expect_hidden(APP_PW_NEW);
    client.wait_more(20);
    for n in ALL {
        for pw in [APP_PW, APP_PW_NEW] {
            run_as(&c, n, Some(("app", pw)), &["GET", "k"]).expect("both passwords");
        }
    }
    // 2. Move the client.
    client.switch(APP_PW_NEW);
    client.wait_more(20);
    // 3. Remove the old one: refused from now on.
    c.extra_sections = app_user(&["app.password.new"]);
    c.write_config();
    reload(&c);
    client.wait_more(20);
    let (writes, refused) = client.finish();
    assert!(
        refused.is_empty(),
        "{} refused of {writes}: {refused:?}",
        refused.len()
    );
    for n in ALL {
        let e = run_as(&c, n, Some(("app", APP_PW)), &["GET", "k"]).unwrap_err();
        assert!(e.contains("AuthenticationFailed"), "{n}: {e}");
    }
    assert_eq!(pids(&c), before, "nothing restarted");
}

/// `[cluster] password_files`: the new cluster password first, `reload` (both accepted;
/// redisrepd, replication and Sentinel use the new one), then the old one removed.
fn rotate_cluster_password(c: &mut Cluster, client_user: &'static str, client_pw: &str) {
    c.cluster_extra = "password_files = [\"password\"]\n".to_owned();
    c.write_config();
    c.start_daemon("a");
    c.wait_healthy();
    let before = pids(c);
    let client = Client::start(c.addr("master"), client_user, client_pw);
    client.wait_more(20);
    const NEW: &str = "cluster-pw-Hq3-new-never-leak";
    write_secret(c, "password.new", NEW);
    c.cluster_extra = "password_files = [\"password.new\", \"password\"]\n".to_owned();
    c.write_config();
    reload(c).expect_hidden(NEW);
    client.wait_more(20);
    let me = if client_user == "default" {
        "default"
    } else {
        "redisrepd"
    };
    for n in ALL {
        for pw in [PASSWORD, NEW] {
            run_as(c, n, Some((me, pw)), &["INFO", "server"]).expect("both passwords");
        }
        let auth = run_as(c, n, Some((me, NEW)), &["CONFIG", "GET", "masterauth"]);
        if me == "default" {
            let v: Vec<String> = redis::from_redis_value(auth.unwrap()).unwrap();
            assert_eq!(v[1], NEW, "{n}: replication switched to the new password");
        }
    }
    if client_user == "default" {
        client.switch(NEW);
    }
    client.wait_more(20);
    c.cluster_extra = "password_files = [\"password.new\"]\n".to_owned();
    c.write_config();
    reload(c);
    client.wait_more(20);
    let (writes, refused) = client.finish();
    assert!(
        refused.is_empty(),
        "{} refused of {writes}: {refused:?}",
        refused.len()
    );
    for n in ALL {
        let e = run_as(c, n, Some((me, PASSWORD)), &["INFO", "server"]).unwrap_err();
        assert!(e.contains("AuthenticationFailed"), "{n}: {e}");
    }
    // A replica restarted now authenticates to its master with the new password.
    let run = c.cli(&["restart", "r1"]);
    assert_eq!(run.status.code(), Some(0), "{run}");
    c.wait_healthy();
    assert!(link_up_as(c, "r1", me, NEW), "r1 replicates");
    let after = pids(c);
    assert_eq!(after[0], before[0], "the master did not restart");
    assert_eq!(after[2], before[2], "r2 did not restart");
}

fn link_up_as(c: &Cluster, name: &str, user: &str, password: &str) -> bool {
    run_as(c, name, Some((user, password)), &["INFO", "replication"])
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .is_some_and(|t| t.contains("master_link_status:up"))
}

#[test]
fn the_cluster_password_rotates_without_users_and_no_client_is_refused() {
    let mut c = cluster::one_host().build();
    rotate_cluster_password(&mut c, "default", PASSWORD);
}

#[test]
fn the_cluster_password_rotates_with_users_and_no_client_is_refused() {
    let mut c = group_with_app();
    rotate_cluster_password(&mut c, "app", APP_PW);
}

#[test]
fn check_names_each_bad_user() {
    let c = cluster::one_host().build();
    write_secret(&c, "a.pw", "a-pw");
    util::chmod(&c.dir.write("unreadable.pw", "x\n"), 0o000);
    let users = "\n[[user]]\nname = \"three\"\npassword_files = [\"a.pw\", \"a.pw\", \"a.pw\"]\nrules = \"+get\"\n\
                 \n[[user]]\nname = \"dup\"\npassword_file = \"a.pw\"\nrules = \"+get\"\n\
                 \n[[user]]\nname = \"dup\"\npassword_file = \"a.pw\"\nrules = \"+get\"\n\
                 \n[[user]]\nname = \"redisrepd\"\npassword_file = \"a.pw\"\nrules = \"+get\"\n\
                 \n[[user]]\nname = \"pw-in-rules\"\npassword_file = \"a.pw\"\nrules = \"+get >secret\"\n";
    c.dir
        .write("group.toml", format!("{}{users}", c.toml_text()));
    let run = c.cli(&["check"]);
    assert_ne!(run.status.code(), Some(0), "{run}");
    for want in [
        "key `user.three.password_files`: lists 3 files: at most two",
        "key `user.dup`: is declared by more than one [[user]]",
        "key `user.redisrepd`: `redisrepd` is taken",
        "key `user.pw-in-rules.rules`: `>` sets or clears passwords",
    ] {
        assert!(run.stderr.contains(want), "{want}\n{run}");
    }
    run.expect_hidden("secret");
    // A file that cannot be read, and rules the server refuses: each named.
    let users =
        "\n[[user]]\nname = \"locked\"\npassword_file = \"unreadable.pw\"\nrules = \"+get\"\n";
    c.dir
        .write("group.toml", format!("{}{users}", c.toml_text()));
    let run = c.cli(&["check"]);
    // root reads any file: only a non-root run sees the refusal.
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            run.stderr
                .contains("key `user.locked.password_file`: cannot read"),
            "{run}"
        );
    }
    let users = "\n[[user]]\nname = \"typo\"\npassword_file = \"a.pw\"\nrules = \"+gett ~*\"\n\
                 \n[[user]]\nname = \"fine\"\npassword_file = \"a.pw\"\nrules = \"+get ~*\"\n\
                 \n[[user]]\nname = \"syntax\"\npassword_file = \"a.pw\"\nrules = \"~* bogus\"\n";
    c.dir
        .write("group.toml", format!("{}{users}", c.toml_text()));
    let run = c.cli(&["check"]);
    assert_ne!(run.status.code(), Some(0), "{run}");
    assert!(run.stderr.contains("key `user.typo.rules`"), "{run}");
    assert!(run.stderr.contains("'+gett'"), "{run}");
    assert!(run.stderr.contains("key `user.syntax.rules`"), "{run}");
    assert!(!run.stderr.contains("user.fine"), "{run}");
    // Key permissions by access and selectors came with Redis 7.0 (Valkey has them all).
    let users =
        "\n[[user]]\nname = \"sel\"\npassword_file = \"a.pw\"\nrules = \"%R~x (~y +get)\"\n";
    c.dir
        .write("group.toml", format!("{}{users}", c.toml_text()));
    let run = c.cli(&["check"]);
    let server = util::test_server();
    let old = server.kind == redisrepd_core::server::Kind::Redis && server.version.major < 7;
    if old {
        assert!(run.stderr.contains("key `user.sel.rules`"), "{run}");
        assert!(
            run.stderr.contains("no `%R~`/`%W~` key permissions"),
            "{run}"
        );
    } else {
        assert_eq!(run.status.code(), Some(0), "{server}: {run}");
    }
}

/// Sentinel with users: the sentinels monitor the instances as redisrepd's Sentinel user
/// (`sentinel auth-user`), and a failover through them moves the role, the old master
/// following the new one as the replication user.
#[test]
fn a_sentinel_group_with_users_fails_over() {
    use crate::sentinel_mode::{sentinel_group, wait_sentinels_agree};
    let (mut c, sentinels) = sentinel_group();
    write_secret(&c, "app.password", APP_PW);
    c.extra_sections.push_str(&app_user(&["app.password"]));
    c.write_config();
    let render = c.cli(&["render", "s1"]);
    assert!(
        render
            .stdout
            .contains("sentinel auth-user test redisrepd-sentinel"),
        "{render}"
    );
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    // Agreeing means each sentinel reached the master, found both replicas in its INFO
    // and the other sentinels through its hello channel: all as its own user.
    wait_sentinels_agree(&c, &sentinels, "master");
    for s in &sentinels {
        util::wait_until(UP, "the sentinel's replicas to be ready", || {
            replicas_ready(*s, PASSWORD)
        });
    }
    let run = c.cli(&["failover"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    let new = crate::sentinel_mode::wait_master_moved(&c, "master");
    crate::roles::wait_master(&c, &new);
    wait_sentinels_agree(&c, &sentinels, &new);
    util::wait_until(UP, "the old master to follow the new one", || {
        link_up(&c, "master", PASSWORD)
    });
    // The application's user writes on the new master.
    run_as(
        &c,
        &new,
        Some(("app", APP_PW)),
        &["SET", "after", "failover"],
    )
    .expect("SET");
}

/// Users turned on, then off again, by `reload` on a running group: nothing restarts,
/// replication stays up, and the daemon keeps reaching every instance (as its own user,
/// then as `default` again).
#[test]
fn users_are_turned_on_and_off_by_reload_without_a_restart() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let before = pids(&c);
    let full_syncs = c.info_int("master", "stats", "sync_full");
    write_secret(&c, "app.password", APP_PW);
    c.extra_sections = app_user(&["app.password"]);
    c.write_config();
    let run = reload(&c);
    assert!(run.stdout.contains("3 changed live, 0 restarted"), "{run}");
    assert!(run.stdout.contains("default's connections closed"), "{run}");
    // The replicas' links, closed with `default`'s connections, come back as the
    // replication user, and resync partially.
    c.wait_healthy();
    let stats = run_as(
        &c,
        "master",
        Some(("redisrepd", PASSWORD)),
        &["INFO", "stats"],
    )
    .ok()
    .and_then(|v| redis::from_redis_value::<String>(v).ok())
    .unwrap_or_default();
    assert!(
        stats.contains(&format!("sync_full:{full_syncs}\r\n")),
        "no full resync: {stats}"
    );
    for n in ALL {
        let e = run_as(&c, n, Some(("default", PASSWORD)), &["PING"]).unwrap_err();
        assert!(e.contains("AuthenticationFailed"), "{n}: {e}");
        run_as(&c, n, Some(("app", APP_PW)), &["GET", "k"]).expect("app");
        let conf = std::fs::read_to_string(c.run_dir().join(format!("{n}.conf"))).unwrap();
        assert!(conf.contains("masteruser redisrepd-replication"), "{n}");
    }
    c.wait_healthy();
    // A replica restarted now authenticates as the replication user.
    let run = c.cli(&["restart", "r1"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    c.wait_healthy();
    assert!(link_up(&c, "r1", PASSWORD));
    let mid = pids(&c);
    assert_eq!((mid[0], mid[2]), (before[0], before[2]));
    // And off again: `default` with the cluster password, the users gone.
    c.extra_sections.clear();
    c.write_config();
    let run = reload(&c);
    assert!(run.stdout.contains("3 changed live, 0 restarted"), "{run}");
    for n in ALL {
        run_as(&c, n, Some(("default", PASSWORD)), &["GET", "k"])
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        let e = run_as(&c, n, Some(("app", APP_PW)), &["GET", "k"]).unwrap_err();
        assert!(e.contains("AuthenticationFailed"), "{n}: {e}");
        let e = run_as(&c, n, Some(("redisrepd", PASSWORD)), &["INFO"]).unwrap_err();
        assert!(e.contains("AuthenticationFailed"), "{n}: {e}");
    }
    c.wait_healthy();
    assert_eq!(pids(&c), mid, "nothing restarted");
    let run = c.cli(&["restart", "r2"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    c.wait_healthy();
}

/// The cluster password of a Sentinel group rotates: the sentinels accept both passwords
/// meanwhile (a client asking them is never refused), and fail over with the new one.
#[test]
fn the_cluster_password_of_a_sentinel_group_rotates_and_no_sentinel_client_is_refused() {
    use crate::sentinel_mode::{sentinel_group, wait_sentinels_agree};
    let (mut c, sentinels) = sentinel_group();
    c.cluster_extra = "password_files = [\"password\"]\n".to_owned();
    c.write_config();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    wait_sentinels_agree(&c, &sentinels, "master");
    let client = Client::start_with(sentinels[1], "default", PASSWORD, |_| {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg("test");
        cmd
    });
    client.wait_more(20);
    const NEW: &str = "cluster-pw-Sn4-new-never-leak";
    write_secret(&c, "password.new", NEW);
    c.cluster_extra = "password_files = [\"password.new\", \"password\"]\n".to_owned();
    c.write_config();
    let render = c.cli(&["render", "s2"]);
    assert!(
        render
            .stdout
            .contains("user default reset on >******** >******** ~* &* +@all"),
        "{render}"
    );
    render.expect_hidden(NEW);
    reload(&c).expect_hidden(NEW);
    for s in &sentinels {
        for pw in [PASSWORD, NEW] {
            let mut con = connect_as(*s, Some(("default", pw))).expect("both passwords");
            redis::cmd("PING").query::<String>(&mut con).expect("PING");
        }
    }
    client.switch(NEW);
    client.wait_more(20);
    c.cluster_extra = "password_files = [\"password.new\"]\n".to_owned();
    c.write_config();
    reload(&c);
    client.wait_more(20);
    let (writes, refused) = client.finish();
    assert!(
        refused.is_empty(),
        "{} refused of {writes}: {refused:?}",
        refused.len()
    );
    for s in &sentinels {
        assert!(
            connect_as(*s, Some(("default", PASSWORD))).is_err(),
            "{s}: the old one"
        );
    }
    // The sentinels reach the instances with the new password: a failover goes through,
    // once each sentinel has its links to both replicas up again (a changed `auth-pass`
    // closed them). The suite's sentinel helpers ask with the old password: not here.
    for s in &sentinels {
        util::wait_until(UP, "the sentinel's replicas to be ready", || {
            replicas_ready(*s, NEW)
        });
    }
    let run = c.cli(&["failover"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    let new = crate::sentinel_mode::wait_master_moved(&c, "master");
    crate::roles::wait_master(&c, &new);
}

/// On two hosts, reloaded one after the other: between the two reloads each daemon still
/// reaches every instance (the second password is its fallback), a replica restarted on
/// the host not yet reloaded still authenticates to the master, and the client is never
/// refused.
#[test]
fn the_cluster_password_rotates_host_by_host() {
    let mut c = cluster::master_and_two_replicas().build();
    write_secret(&c, "app.password", APP_PW);
    c.extra_sections = app_user(&["app.password"]);
    c.cluster_extra = "password_files = [\"password\"]\n".to_owned();
    c.write_config();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let client = Client::start(c.addr("master"), "app", APP_PW);
    client.wait_more(20);
    const NEW: &str = "cluster-pw-Hb5-new-never-leak";
    write_secret(&c, "password.new", NEW);
    for files in ["\"password.new\", \"password\"", "\"password.new\""] {
        c.cluster_extra = format!("password_files = [{files}]\n");
        c.write_config();
        let run = c.cli(&["reload", "--host", "a"]);
        assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
        c.wait_healthy();
        if files.contains(", ") {
            // A replica of the host not reloaded yet restarts with the old `masterauth`.
            let run = c.cli(&["restart", "r1"]);
            assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
            c.wait_healthy();
        }
        let run = c.cli(&["reload", "--host", "b"]);
        assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
        c.wait_healthy();
        client.wait_more(20);
    }
    let (writes, refused) = client.finish();
    assert!(
        refused.is_empty(),
        "{} refused of {writes}: {refused:?}",
        refused.len()
    );
    assert!(link_up_as(&c, "r1", "redisrepd", NEW));
    assert!(link_up_as(&c, "r2", "redisrepd", NEW));
}

/// Whether a sentinel sees both replicas of `test` as plain, connected replicas (flags
/// `slave` only, link to the master `ok`): a failover then has one to promote.
fn replicas_ready(sentinel: SocketAddr, password: &str) -> bool {
    let Ok(mut con) = connect_as(sentinel, Some(("default", password))) else {
        return false;
    };
    let Ok(replicas) = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg("test")
        .query::<Vec<Vec<String>>>(&mut con)
    else {
        return false;
    };
    let field = |r: &[String], key: &str| {
        r.chunks(2)
            .find(|kv| kv[0] == key)
            .and_then(|kv| kv.get(1).cloned())
    };
    replicas.len() == 2
        && replicas.iter().all(|r| {
            field(r, "flags").as_deref() == Some("slave")
                && field(r, "master-link-status").as_deref() == Some("ok")
        })
}

/// Users turned on by `reload` in a running Sentinel group: the sentinels take their
/// `auth-user` live (no restart) and still fail over.
#[test]
fn users_turned_on_in_a_sentinel_group_reach_the_sentinels_live() {
    use crate::sentinel_mode::{sentinel_group, wait_sentinels_agree};
    let (mut c, sentinels) = sentinel_group();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    wait_sentinels_agree(&c, &sentinels, "master");
    let before = pids(&c);
    write_secret(&c, "app.password", APP_PW);
    c.extra_sections.push_str(&app_user(&["app.password"]));
    c.write_config();
    let run = reload(&c);
    for s in ["s1", "s2", "s3"] {
        assert!(
            run.stdout
                .contains(&format!("{s}: SENTINEL SET auth-user live")),
            "{run}"
        );
    }
    c.wait_healthy();
    wait_sentinels_agree(&c, &sentinels, "master");
    for s in &sentinels {
        util::wait_until(UP, "the sentinel's replicas to be ready", || {
            replicas_ready(*s, PASSWORD)
        });
    }
    assert_eq!(pids(&c), before, "nothing restarted");
    let run = c.cli(&["failover"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    let new = crate::sentinel_mode::wait_master_moved(&c, "master");
    crate::roles::wait_master(&c, &new);
    wait_sentinels_agree(&c, &sentinels, &new);
}
