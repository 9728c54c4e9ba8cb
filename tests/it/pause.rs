//! `pause` / `resume`: a replica SIGKILLed while paused stays down (also across a daemon
//! restart, which keeps the pause), `status` says paused and until when, and `resume`
//! brings it back. The Sentinel side is in `sentinel_mode`.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cluster::{self, UP};
use crate::util::{self, kill};

#[test]
fn a_crash_while_paused_is_left_alone_until_resume_also_across_a_daemon_restart() {
    let mut c = cluster::master_and_two_replicas()
        .supervise("restart_delay", "\"100ms\"")
        .supervise("health_interval", "\"200ms\"")
        .build();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let run = c.cli(&["pause", "--for", "1h"]);
    run.expect_code(0);
    assert!(run.stdout.contains("a: paused for 1h"), "{run}");
    assert!(run.stdout.contains("b: paused for 1h"), "{run}");
    c.cli(&["pause", "--for", "soon"]).expect_code(2);

    let pid = c.pid("r1");
    kill(pid, Signal::SIGKILL);
    util::wait_until(UP, "daemon b to hold r1 for the pause", || {
        c.daemon_log("b")
            .contains("the group is paused: not restarted")
    });
    // Ten times its restart delay and many health intervals: nothing comes back.
    std::thread::sleep(Duration::from_secs(1));
    let run = c.cli(&["status"]);
    run.expect_code(3);
    assert!(run.stdout.contains("paused until "), "{run}");
    let s = c.status();
    assert_eq!(s["r1"]["pid"], serde_json::Value::Null, "{}", s["r1"]);
    let doc: serde_json::Value =
        serde_json::from_str(&c.cli(&["status", "--json"]).stdout).expect("status --json");
    assert!(doc["paused_until"].is_string(), "{doc}");

    // A new daemon for host b keeps the pause (run_dir/b.pause) and r1 stays down.
    let mut d = c.take_daemon("b").expect("daemon b");
    d.proc.signal(Signal::SIGKILL);
    d.proc.wait_exit(UP);
    c.start_daemon("b");
    util::wait_until(UP, "the new daemon b to read the pause", || {
        c.daemon_log("b").contains("the group is paused for")
    });
    // A window, not a wait: that nothing comes back has no event to wait for.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.status()["r1"]["pid"], serde_json::Value::Null);

    let run = c.cli(&["resume"]);
    run.expect_code(0);
    assert!(run.stdout.contains("b: resumed"), "{run}");
    assert!(
        run.stdout.contains("r1: held while paused, starting"),
        "{run}"
    );
    c.wait_healthy();
    let doc: serde_json::Value =
        serde_json::from_str(&c.cli(&["status", "--json"]).stdout).expect("status --json");
    assert!(doc["paused_until"].is_null(), "{doc}");
    assert!(!c.run_dir().join("b.pause").exists());
}

#[test]
fn a_short_pause_ends_by_itself_and_the_crashed_replica_comes_back() {
    let mut c = cluster::one_host()
        .supervise("restart_delay", "\"100ms\"")
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    c.cli(&["pause", "--for", "3s"]).expect_code(0);
    kill(c.pid("r2"), Signal::SIGKILL);
    util::wait_until(UP, "the pause to end by itself", || {
        c.daemon_log("a").contains("the pause reached its deadline")
    });
    c.wait_healthy();
}
