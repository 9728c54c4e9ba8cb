//! What follows a change of master, against real servers: the `[hooks] on_role_change`
//! program on every daemon (its environment, a failing and a hanging one), the demoted
//! master's clients dropped while its replicas stay linked, and `history` merged across
//! daemons and kept across a daemon restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::roles::wait_master;
use crate::util;

/// A hook that appends its whole environment, one `KEY=VALUE;` line per run, to
/// `runs-<host>.log` in the test dir.
fn env_hook(c: &Cluster) -> String {
    let log_dir = c.dir.path().display().to_string();
    let script = c.dir.write(
        "hook.sh",
        format!(
            "#!/bin/sh\necho \"hook for $REDISREPD_MASTER\"\n\
             env | sort | tr '\\n' ';' >> {log_dir}/runs-$REDISREPD_HOST.log\n\
             echo >> {log_dir}/runs-$REDISREPD_HOST.log\n"
        ),
    );
    util::chmod(&script, 0o755);
    format!(
        "[hooks]\non_role_change = [\"{}\"]\ntimeout = \"5s\"\n",
        script.display()
    )
}

/// Each run's environment as `KEY=VALUE` pairs, from `runs-<host>.log`: the runs for a
/// change when `start` is false, else the runs at daemon start.
fn runs_of(c: &Cluster, host: &str, start: bool) -> Vec<Vec<String>> {
    std::fs::read_to_string(c.dir.join(format!("runs-{host}.log")))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| l.contains("REDISREPD_REASON=start;") == start)
        .map(|l| {
            l.split(';')
                .filter(|kv| !kv.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The runs for a change.
fn runs(c: &Cluster, host: &str) -> Vec<Vec<String>> {
    runs_of(c, host, false)
}

/// Waits until host's daemon ran the hook at its start `n` times in all.
fn wait_starts(c: &Cluster, host: &str, n: usize) -> Vec<Vec<String>> {
    util::wait_until(UP, &format!("{n} start run(s) on host `{host}`"), || {
        runs_of(c, host, true).len() >= n
    });
    runs_of(c, host, true)
}

fn wait_runs(c: &Cluster, host: &str, n: usize) -> Vec<Vec<String>> {
    util::wait_until(UP, &format!("{n} hook run(s) on host `{host}`"), || {
        runs(c, host).len() >= n
    });
    runs(c, host)
}

fn history(c: &Cluster) -> Vec<serde_json::Value> {
    let run = c.cli(&["history", "--json"]);
    assert_eq!(run.status.code(), Some(0), "{run}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("history --json");
    doc["changes"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_daemon_runs_the_hook_once_per_change_and_history_merges_them() {
    let mut c = cluster::master_and_two_replicas().build();
    c.extra_sections = env_hook(&c);
    c.write_config();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    // Once at start, for the master each daemon knows (a VIP is put in place).
    for host in ["a", "b"] {
        let env = wait_starts(&c, host, 1).remove(0);
        for want in ["REDISREPD_MASTER=master", "REDISREPD_OLD_MASTER=master"] {
            assert!(env.contains(&want.to_owned()), "{env:?}");
        }
    }
    assert!(runs(&c, "a").is_empty() && runs(&c, "b").is_empty());

    c.cli(&["failover", "--to", "r1"]).expect_code(0);
    wait_master(&c, "r1");
    let r1 = c.addr("r1");
    for host in ["a", "b"] {
        let got = wait_runs(&c, host, 1);
        let env = &got[0];
        for want in [
            "REDISREPD_CLUSTER=test".to_owned(),
            "REDISREPD_MASTER=r1".to_owned(),
            format!("REDISREPD_MASTER_ADDR={r1}"),
            "REDISREPD_MASTER_HOST=b".to_owned(),
            "REDISREPD_OLD_MASTER=master".to_owned(),
            format!("REDISREPD_HOST={host}"),
        ] {
            assert!(env.contains(&want), "host {host}: no {want} in {env:?}");
        }
        let reason = env
            .iter()
            .find_map(|kv| kv.strip_prefix("REDISREPD_REASON="))
            .unwrap_or_default();
        assert!(["failover", "learned"].contains(&reason), "{env:?}");
        // A clean environment: PATH and ours, never the password.
        assert!(
            env.iter().all(|kv| kv.starts_with("REDISREPD_")
                || ["PATH=", "PWD=", "SHLVL=", "_="]
                    .iter()
                    .any(|p| kv.starts_with(p))),
            "{env:?}"
        );
        assert!(!env.iter().any(|kv| kv.contains(PASSWORD)), "{env:?}");
        let log = c.daemon_log(host);
        assert!(log.contains("on_role_change: hook for r1"), "{log}");
    }
    let reasons: Vec<String> = ["a", "b"]
        .iter()
        .map(|h| runs(&c, h)[0].join(";"))
        .filter(|e| e.contains("REDISREPD_REASON=failover"))
        .collect();
    assert_eq!(reasons.len(), 1, "the daemon that ran FAILOVER says so");

    c.cli(&["failover", "--to", "master"]).expect_code(0);
    wait_master(&c, "master");
    for host in ["a", "b"] {
        let got = wait_runs(&c, host, 2);
        assert!(got[1].contains(&"REDISREPD_MASTER=master".to_owned()));
    }

    // Two changes, once each, with their specific reason; seen by both daemons.
    let h = history(&c);
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(
        (h[0]["old_master"].as_str(), h[0]["new_master"].as_str()),
        (Some("master"), Some("r1"))
    );
    assert_eq!(
        (h[1]["old_master"].as_str(), h[1]["new_master"].as_str()),
        (Some("r1"), Some("master"))
    );
    for e in &h {
        assert_eq!(e["reason"], "failover", "{h:#?}");
        assert_eq!(e["seen_by"], serde_json::json!(["a", "b"]), "{h:#?}");
        assert!(
            e["repl_id"].as_str().is_some_and(|id| id.len() == 40),
            "{h:#?}"
        );
    }
    let table = c.cli(&["history"]);
    assert_eq!(table.status.code(), Some(0), "{table}");
    assert_eq!(table.stdout.lines().count(), 3, "{}", table.stdout);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(c.run_dir().join("a.history"))
            .expect("a.history")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);

    // Kept across a daemon restart; a stopped daemon's file is read directly.
    assert!(c.stop_daemon("b").success());
    assert_eq!(history(&c).len(), 2);
    c.start_daemon("b");
    c.wait_healthy();
    wait_starts(&c, "b", 2);
    assert_eq!(history(&c), h, "a start is no change");
    assert_eq!(
        runs(&c, "b").len(),
        2,
        "no hook for a change it already knew"
    );
}

/// A bare connection (AUTH, then one command) that is left idle.
fn idle_client(addr: SocketAddr, command: &str) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "AUTH {PASSWORD}\r\n{command}\r\n").expect("write");
    let mut buf = [0u8; 256];
    let mut got = String::new();
    // +OK, then the command's answer.
    while got.matches("\r\n").count() < 2 {
        let n = s.read(&mut buf).expect("answer");
        assert!(n > 0, "closed before answering: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s
}

/// Waits for the server to close `s`; how long that took from `since`.
fn closed_within(s: &mut TcpStream, since: Instant, limit: Duration) -> Result<Duration, String> {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(since.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(since.elapsed());
            }
            Err(e) => return Err(format!("still open after {limit:?}: {e}")),
        }
    }
}

#[test]
fn a_demoted_master_drops_its_clients_and_keeps_its_replicas_linked() {
    let mut c = cluster::master_and_two_replicas().build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let full_before: i64 = ["master", "r1", "r2"]
        .iter()
        .map(|n| c.info_int(n, "stats", "sync_full"))
        .sum();
    let mut writer = idle_client(c.addr("master"), "PING");
    let mut subscriber = idle_client(c.addr("master"), "SUBSCRIBE news");
    let mut on_replica = idle_client(c.addr("r2"), "PING");

    let run = c.cli(&["failover", "--to", "r1"]);
    let returned = Instant::now();
    run.expect_code(0);
    let limit = Duration::from_secs(2);
    let took =
        closed_within(&mut writer, returned, limit).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    closed_within(&mut subscriber, returned, limit).unwrap_or_else(|e| panic!("pubsub: {e}"));
    eprintln!("the old master's client was closed {took:?} after `failover` returned");
    // A replica that was never master keeps its clients.
    write!(on_replica, "PING\r\n").expect("write");
    let mut buf = [0u8; 64];
    let n = on_replica
        .read(&mut buf)
        .expect("the replica's client still answered");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("PONG"));
    util::wait_until(UP, "the drop in daemon a's log", || {
        c.daemon_log("a").contains("demoted: closed")
    });

    wait_master(&c, "r1");
    let full_after: i64 = ["master", "r1", "r2"]
        .iter()
        .map(|n| c.info_int(n, "stats", "sync_full"))
        .sum();
    assert_eq!(
        full_after,
        full_before,
        "no full sync\n{}",
        c.daemon_log("a")
            .lines()
            .filter(|l| !l.contains(":M ") && !l.contains(":S ") && !l.contains(":C "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for replica in ["master", "r2"] {
        let info = c.info(replica, "replication");
        assert_eq!(
            info.get("master_link_status").map(String::as_str),
            Some("up")
        );
    }
    // A new client of the old master is a replica's client, and stays.
    let mut again = c.con("master");
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut again).expect("ROLE");
    assert!(format!("{role:?}").contains("slave"), "{role:?}");
}

/// `GET /metrics` from a daemon's metrics endpoint.
fn scrape(addr: SocketAddr) -> String {
    util::wait_for(
        UP,
        "a metrics scrape",
        || -> Result<String, std::io::Error> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        },
    )
}

#[test]
fn a_failing_and_a_hanging_hook_are_logged_and_counted_and_the_daemon_goes_on() {
    let mut c = cluster::one_host().build();
    // Fails for r1; hangs for master (killed after 1 s, with what it started). The sleep
    // is this process's own (its pid as the fraction): the check below looks at every
    // process on the machine, where another copy of the suite may run this test too.
    let sleep = format!("sleep 61.{}", std::process::id());
    let script = c.dir.write(
        "hook.sh",
        format!(
            "#!/bin/sh\ncase \"$REDISREPD_REASON:$REDISREPD_MASTER\" in\n  start:*) exit 0 ;;\n  \
             *:r1) echo giving up >&2; exit 3 ;;\n  *) echo waiting; {sleep}; exit 0 ;;\nesac\n"
        ),
    );
    util::chmod(&script, 0o755);
    c.extra_sections = format!(
        "[hooks]\non_role_change = [\"{}\"]\ntimeout = \"1s\"\n",
        script.display()
    );
    c.write_config();
    let ip = util::loopback_ip();
    let metrics = SocketAddr::new(ip, util::free_port(ip));
    c.start_daemon_with("a", |cmd| {
        cmd.arg("--metrics").arg(metrics.to_string());
    });
    c.wait_socket("a");
    c.wait_healthy();

    c.cli(&["failover", "--to", "r1"]).expect_code(0);
    wait_master(&c, "r1");
    util::wait_until(UP, "the failed hook in the log", || {
        c.daemon_log("a").contains("on_role_change: failed")
    });
    c.cli(&["failover", "--to", "master"]).expect_code(0);
    wait_master(&c, "master");
    util::wait_until(UP, "the hung hook killed", || {
        c.daemon_log("a").contains("still running after 1s: killed")
    });
    let log = c.daemon_log("a");
    assert!(log.contains("on_role_change: giving up"), "{log}");
    assert!(log.contains("on_role_change: waiting"), "{log}");
    let text = scrape(metrics);
    for want in [
        r#"redisrepd_hook_runs_total{result="failed"} 1"#,
        r#"redisrepd_hook_runs_total{result="timeout"} 1"#,
        r#"redisrepd_hook_runs_total{result="ok"} 1"#,
    ] {
        assert!(text.contains(want), "no {want}:\n{text}");
    }
    // The killed hook's `sleep` went with it.
    let sleepers = std::process::Command::new("pgrep")
        .args(["-f", &format!("^{sleep}$")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    assert!(sleepers.is_empty(), "left behind: {sleepers}");
    // The daemon goes on: another change works.
    c.cli(&["failover", "--to", "r1"]).expect_code(0);
    wait_master(&c, "r1");
    c.wait_healthy();
}

#[test]
fn check_names_a_hook_that_is_not_executable() {
    let c = cluster::one_host().build();
    let script = c.dir.write("hook.sh", "#!/bin/sh\n");
    util::chmod(&script, 0o644);
    let mut c = c;
    c.extra_sections = format!("[hooks]\non_role_change = [\"{}\"]\n", script.display());
    c.write_config();
    let run = c.cli(&["check", "--host", "a"]);
    assert_ne!(run.status.code(), Some(0), "{run}");
    assert!(
        run.stderr.contains("key `hooks.on_role_change`")
            && run.stderr.contains("is not executable"),
        "{run}"
    );
    // A daemon started with it runs the instances all the same, and says what is wrong.
    c.start_daemon("a");
    c.wait_healthy();
    let log = c.daemon_log("a");
    assert!(
        log.contains("key `hooks.on_role_change`") && log.contains("is not executable"),
        "{log}"
    );
}

#[test]
fn reload_applies_a_changed_hook_and_refuses_one_that_is_not_executable() {
    let mut c = cluster::one_host().build();
    let hook = |c: &Cluster, name: &str, mode: u32| {
        let out = c.dir.join(format!("{name}.log"));
        let script = c.dir.write(
            format!("{name}.sh"),
            format!(
                "#!/bin/sh\necho \"$REDISREPD_MASTER\" >> {}\n",
                out.display()
            ),
        );
        util::chmod(&script, mode);
        format!("[hooks]\non_role_change = [\"{}\"]\n", script.display())
    };
    c.extra_sections = hook(&c, "first", 0o755);
    c.write_config();
    c.start_daemon("a");
    c.wait_healthy();

    let first = || std::fs::read_to_string(c.dir.join("first.log")).unwrap_or_default();
    util::wait_until(UP, "the first hook's run at start", || {
        first() == "master\n"
    });

    c.extra_sections = hook(&c, "second", 0o755);
    c.write_config();
    c.cli(&["reload"]).expect_code(0);
    c.cli(&["failover", "--to", "r1"]).expect_code(0);
    util::wait_until(UP, "the second hook's run", || {
        std::fs::read_to_string(c.dir.join("second.log")).is_ok_and(|t| t == "r1\n")
    });
    assert_eq!(first(), "master\n", "the replaced hook ran");

    c.extra_sections = hook(&c, "third", 0o644);
    c.write_config();
    let run = c.cli(&["reload"]);
    assert_ne!(run.status.code(), Some(0), "{run}");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("key `hooks.on_role_change`") && said.contains("is not executable"),
        "{run}"
    );
    // Refused: the daemon keeps the hook it had.
    c.cli(&["failover", "--to", "master"]).expect_code(0);
    util::wait_until(UP, "the second hook's second run", || {
        std::fs::read_to_string(c.dir.join("second.log")).is_ok_and(|t| t == "r1\nmaster\n")
    });
}

/// Runs examples/move-vip with `ip` (and `arping` when `with_arping`) faked in `dir`.
fn move_vip(dir: &util::TestDir, with_arping: bool, host: &str, args: &[&str]) -> util::Run {
    let bin = dir.join(if with_arping { "bin-arping" } else { "bin" });
    std::fs::create_dir_all(&bin).expect("bin dir");
    let (log, state) = (dir.join("calls.log"), dir.join("vip-is-here"));
    let fake_ip = format!(
        "#!/bin/sh\necho \"ip $*\" >> {log}\ncase \"$*\" in\n\
         \"-o addr show dev eth0\") [ -f {state} ] && echo '2: eth0    inet 10.0.0.200/24 scope global eth0' ;;\n\
         \"addr add 10.0.0.200/24 dev eth0\") : > {state} ;;\n\
         \"addr del 10.0.0.200/24 dev eth0\") /bin/rm -f {state} ;;\nesac\nexit 0\n",
        log = log.display(),
        state = state.display()
    );
    let ip = dir.write(bin.join("ip"), fake_ip);
    util::chmod(&ip, 0o755);
    if with_arping {
        let arping = dir.write(
            bin.join("arping"),
            format!("#!/bin/sh\necho \"arping $*\" >> {}\n", log.display()),
        );
        util::chmod(&arping, 0o755);
    }
    // Only these on PATH: a real `ip` or `arping` must not touch this machine's network.
    let grep = which::which("grep").expect("grep");
    let _ = std::os::unix::fs::symlink(grep, bin.join("grep"));
    let mut cmd = std::process::Command::new(util::example_path("move-vip"));
    cmd.args(args)
        .env_clear()
        .env("PATH", &bin)
        .env("REDISREPD_HOST", host)
        .env("REDISREPD_MASTER_HOST", "a")
        .env("REDISREPD_MASTER", "r1");
    util::run(&mut cmd, UP)
}

#[test]
fn move_vip_adds_and_announces_on_the_masters_host_and_removes_elsewhere() {
    let dir = util::TestDir::new();
    let calls = || std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    let vip = ["10.0.0.200/24", "eth0"];
    let run = move_vip(&dir, true, "a", &vip);
    run.expect_code(0);
    assert!(run.stdout.contains("added 10.0.0.200 to eth0"), "{run}");
    assert!(run.stdout.contains("announced 10.0.0.200"), "{run}");
    assert!(
        calls().contains("ip addr add 10.0.0.200/24 dev eth0"),
        "{}",
        calls()
    );
    assert!(
        calls().contains("arping -q -U -c 2 -I eth0 10.0.0.200"),
        "{}",
        calls()
    );
    // Again: already there, announced again, not added twice.
    let run = move_vip(&dir, true, "a", &vip);
    assert!(run.stdout.contains("is on eth0 already"), "{run}");
    assert_eq!(calls().matches("addr add").count(), 1);
    // Another host removes it; without arping the master's host says it skipped.
    move_vip(&dir, true, "b", &vip).expect_code(0);
    assert!(
        calls().contains("ip addr del 10.0.0.200/24 dev eth0"),
        "{}",
        calls()
    );
    let run = move_vip(&dir, false, "a", &vip);
    run.expect_code(0);
    assert!(run.stdout.contains("arping not found"), "{run}");
    // Usage.
    let run = move_vip(&dir, false, "a", &["10.0.0.200"]);
    run.expect_code(2);
    assert!(run.stderr.contains("usage: move-vip"), "{run}");
}
