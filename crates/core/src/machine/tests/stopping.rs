//! Stopping: SHUTDOWN, its escalation and refusals; rolling restarts.

use std::time::Duration;

use super::*;
use crate::control::Request;

#[test]
fn a_stop_escalates_from_shutdown_to_sigterm_to_sigkill_on_its_deadlines() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, fx) = h.stop("master", false);
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)]);
    assert_eq!(h.kind("master"), Kind::ShuttingDown);
    assert!(signals(&h.advance(Duration::from_millis(4900))).is_empty());
    let fx = h.advance(Duration::from_millis(100));
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Term)]);
    assert_eq!(h.kind("master"), Kind::Terminating);
    assert!(signals(&h.advance(Duration::from_millis(4900))).is_empty());
    let fx = h.advance(Duration::from_millis(100));
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Kill)]);
    assert_eq!(h.kind("master"), Kind::Killing);
    let fx = h.exited("master", 100, "killed by SIGKILL");
    assert_eq!(h.kind("master"), Kind::Stopped);
    assert_eq!(done(&fx, id), (true, vec!["master: stopped".to_owned()]));
    assert!(launches(&h.advance(Duration::from_secs(60))).is_empty());
}

#[test]
fn an_unreachable_instance_gets_sigterm_at_once() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.stop("master", false);
    let fx = h.shutdown_done(
        "master",
        100,
        Err(ShutdownError::Unreachable("connection refused".into())),
    );
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Term)]);
    assert_eq!(h.kind("master"), Kind::Terminating);
}

#[test]
fn a_refused_final_save_leaves_it_running_and_the_stop_fails() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, _) = h.stop("master", false);
    let fx = h.save_refused("master", 100);
    assert_eq!(h.kind("master"), Kind::Running);
    assert!(
        signals(&fx).is_empty(),
        "nothing is killed: its writes are not saved"
    );
    let (ok, lines) = done(&fx, id);
    assert!(!ok);
    assert!(
        lines[0].contains("left running (nothing lost)"),
        "{lines:?}"
    );
    assert!(launches(&h.advance(Duration::from_secs(60))).is_empty());
}

#[test]
fn a_refused_final_save_with_force_shuts_down_without_saving() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, _) = h.stop("master", true);
    let fx = h.save_refused("master", 100);
    assert_eq!(shutdowns(&fx), [("master".to_owned(), true)]);
    let fx = shutdown_ok(&mut h, "master", 100);
    assert!(done(&fx, id).0);
}

#[test]
fn a_shutdown_result_for_a_stale_pid_is_ignored() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.stop("master", false);
    let fx = h.shutdown_done("master", 42, Err(ShutdownError::Refused("old news".into())));
    assert_eq!(h.kind("master"), Kind::ShuttingDown);
    assert!(fx.iter().all(|e| !matches!(e, Effect::Reply { .. })));
}

#[test]
fn an_exit_while_stopping_ends_the_stop_and_is_no_crash() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, _) = h.stop("master", false);
    let fx = h.exited("master", 100, "killed by SIGSEGV");
    assert_eq!(h.kind("master"), Kind::Stopped);
    assert!(done(&fx, id).0);
    assert!(launches(&h.advance(Duration::from_secs(30))).is_empty());
}

#[test]
fn stopping_a_replica_that_would_break_min_replicas_to_write_is_refused_unless_forced() {
    let text = SEED.replace("port = 7000\n", "port = 7000\nmin_replicas_to_write = 2\n");
    let mut h = H::all_up(&text);
    let (id, fx) = h.stop("r1", false);
    assert!(shutdowns(&fx).is_empty(), "not before a fresh INFO");
    let fx = probe_round(&mut h, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]);
    let (ok, lines) = done(&fx, id);
    assert!(!ok);
    assert!(lines[0].contains("min_replicas_to_write"), "{lines:?}");
    assert!(shutdowns(&fx).is_empty());
    assert_eq!(h.kind("r1"), Kind::Running);
    let (_, fx) = h.stop("r1", true);
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)]);
}

/// The master's INFO (listing `online`) and each replica's, all asked now: the answers to
/// the `ProbeNow` a guarded stop begins with.
fn probe_round(h: &mut H, online: &[(&str, u16)]) -> Vec<Effect> {
    let mut fx = h.probe("master", &master_info(100, online));
    for (name, pid) in [("r1", 201), ("r2", 202)] {
        if h.pid(name) == Some(pid) {
            fx.extend(h.probe(name, &replica_info(pid, 1000)));
        } else {
            fx.extend(h.probe_err(name, "connection refused"));
        }
    }
    fx
}

/// The seed with `min_replicas_to_write = 1` on the master, both replicas up.
fn guarded_seed() -> H {
    let text = SEED.replace("port = 7000\n", "port = 7000\nmin_replicas_to_write = 1\n");
    H::all_up(&text)
}

const BOTH: [(&str, u16); 2] = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];

#[test]
fn the_min_replicas_guard_counts_every_replica_of_one_command_as_gone_and_stops_none() {
    let mut h = guarded_seed();
    let (id, fx) = h.request(Request::Stop {
        instances: vec!["r1".into(), "r2".into()],
        force: false,
    });
    assert!(fx.iter().any(|e| matches!(e, Effect::ProbeNow)), "{fx:?}");
    assert!(shutdowns(&fx).is_empty());
    let fx = probe_round(&mut h, &BOTH);
    let (ok, lines) = done(&fx, id);
    assert!(!ok);
    assert!(
        lines[0].contains("leaves `master` with 0 good replica(s)")
            && lines[0].contains("stopped by the same command"),
        "{lines:?}"
    );
    assert!(shutdowns(&fx).is_empty(), "nothing stopped: {fx:?}");
    assert_eq!((h.kind("r1"), h.kind("r2")), (Kind::Running, Kind::Running));
}

#[test]
fn the_min_replicas_guard_counts_a_replica_stopped_just_before_though_the_master_still_lists_it() {
    let mut h = guarded_seed();
    let (first, _) = h.stop("r1", false);
    let fx = probe_round(&mut h, &BOTH);
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)], "r2 stays good");
    // The second stop comes while the first is under way, and runs once it is done.
    let (second, fx) = h.stop("r2", false);
    assert!(shutdowns(&fx).is_empty());
    h.now += Duration::from_millis(5);
    let fx = shutdown_ok(&mut h, "r1", 201);
    assert!(done(&fx, first).0);
    assert!(
        fx.iter().any(|e| matches!(e, Effect::ProbeNow)),
        "the second stop asks a fresh INFO: {fx:?}"
    );
    // The master has not noticed yet: its INFO still lists r1 online.
    h.now += Duration::from_millis(5);
    let fx = probe_round(&mut h, &BOTH);
    let (ok, lines) = done(&fx, second);
    assert!(!ok, "{lines:?}");
    assert!(lines[0].contains("0 good replica(s)"), "{lines:?}");
    assert!(shutdowns(&fx).is_empty());
    assert_eq!(h.kind("r2"), Kind::Running);
}

#[test]
fn the_min_replicas_guard_decides_on_an_info_asked_after_the_command() {
    let mut h = guarded_seed();
    // The cached INFO lists both; by now r2's link is down, which only a fresh one says.
    let (id, fx) = h.stop("r1", false);
    assert!(shutdowns(&fx).is_empty(), "not on the cached INFO");
    h.now += Duration::from_millis(5);
    let fx = probe_round(&mut h, &[("127.0.0.2", 7001)]);
    let (ok, lines) = done(&fx, id);
    assert!(!ok && lines[0].contains("0 good replica(s)"), "{lines:?}");
    assert!(shutdowns(&fx).is_empty());
}

#[test]
fn stopping_the_master_with_its_replicas_is_not_held_by_its_min_replicas() {
    let mut h = guarded_seed();
    let (_, fx) = h.request(Request::Stop {
        instances: vec![],
        force: false,
    });
    let mut fx = fx;
    fx.extend(probe_round(&mut h, &BOTH));
    assert_eq!(shutdowns(&fx), [("r2".to_owned(), false)], "{fx:?}");
    let fx = shutdown_ok(&mut h, "r2", 202);
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)], "{fx:?}");
}

#[test]
fn a_rolling_restart_takes_one_at_a_time_deepest_first_and_the_master_last() {
    let mut h = H::all_up(SEED);
    let both = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];
    // Forced, so the master restarts in place (a planned one moves the role away first:
    // `a_planned_master_restart_moves_the_role_away_and_back`).
    let (id, fx) = h.request(Request::Restart {
        instances: vec![],
        force: true,
    });
    assert_eq!(shutdowns(&fx), [("r2".to_owned(), false)], "one at a time");
    let mut order = vec!["r2".to_owned()];
    let mut fx = shutdown_ok(&mut h, "r2", 202);
    assert!(shutdowns(&fx).is_empty(), "r2 must be back before the next");
    assert_eq!(claims(&fx), ["r2"]);
    h.grant("r2");
    h.launched("r2", 302);
    h.probe("r2", &replica_info(302, 1000));
    fx = h.probe("master", &master_info(100, &both));
    order.extend(shutdowns(&fx).into_iter().map(|(n, _)| n));
    fx = shutdown_ok(&mut h, "r1", 201);
    h.grant("r1");
    h.launched("r1", 301);
    h.probe("r1", &replica_info(301, 1000));
    fx.extend(h.probe("master", &master_info(100, &both)));
    order.extend(shutdowns(&fx).into_iter().map(|(n, _)| n));
    fx = shutdown_ok(&mut h, "master", 100);
    assert!(
        launches(&fx).is_empty(),
        "not before the replicas say who the master is"
    );
    h.probe("r1", &replica_info(301, 1000));
    fx = h.probe("r2", &replica_info(302, 1000));
    assert_eq!(launches(&fx), ["master"]);
    h.launched("master", 400);
    fx.extend(h.probe("master", &master_info(400, &both)));
    assert_eq!(order, ["r2", "r1", "master"]);
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[test]
fn each_stop_outcome_is_counted_for_metrics() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let stop = |h: &mut H, force| {
        h.request(Request::Stop {
            instances: vec!["master".into()],
            force,
        })
    };
    let start = |h: &mut H, pid| {
        h.request(Request::Start {
            instances: vec!["master".into()],
        });
        h.launched("master", pid);
        h.probe("master", &master_info(pid, &[]));
    };
    let refused = || {
        Err(ShutdownError::Refused(
            "ERR Errors trying to SHUTDOWN".into(),
        ))
    };
    // Saved.
    stop(&mut h, false);
    shutdown_ok(&mut h, "master", 100);
    start(&mut h, 101);
    // Refused, then forced without saving.
    stop(&mut h, false);
    h.shutdown_done("master", 101, refused());
    stop(&mut h, true);
    h.shutdown_done("master", 101, refused());
    shutdown_ok(&mut h, "master", 101);
    start(&mut h, 102);
    // Killed.
    stop(&mut h, false);
    h.advance(Duration::from_secs(5));
    h.advance(Duration::from_secs(5));
    h.exited("master", 102, "killed by SIGKILL");
    let report = h.m.report();
    let c = &report.iter().find(|r| r.name == "master").unwrap().counters;
    assert_eq!(
        (
            c.stops_saved,
            c.stops_refused,
            c.stops_nosave,
            c.stops_killed
        ),
        (1, 1, 1, 1),
        "{c:?}"
    );
}

/// Review finding: a stop that arrived while a launch was under way left the spawned
/// process unsupervised.
#[test]
fn a_stop_during_a_launch_stops_what_the_launch_started() {
    let mut h = H::new(SEED, "a");
    let fx = h.tick();
    assert_eq!(launches(&fx), ["master"]);
    assert_eq!(h.kind("master"), Kind::Launching);
    let (id, _) = h.stop("master", false);
    assert_eq!(
        h.kind("master"),
        Kind::Launching,
        "the launch is answered first"
    );
    let fx = h.launched("master", 100);
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)], "{fx:?}");
    let fx = shutdown_ok(&mut h, "master", 100);
    assert_eq!(h.kind("master"), Kind::Stopped);
    assert!(done(&fx, id).0);
    assert!(launches(&h.advance(Duration::from_secs(30))).is_empty());
}

#[test]
fn a_launch_that_failed_after_a_stop_is_not_retried() {
    let mut h = H::new(SEED, "a");
    h.tick();
    h.stop("master", false);
    h.feed(Input::LaunchFailed {
        name: "master".into(),
        reason: "port taken".into(),
    });
    assert_eq!(h.kind("master"), Kind::Stopped);
    assert!(launches(&h.advance(Duration::from_secs(30))).is_empty());
}

/// `name` (as `pid`) answers SHUTDOWN that it is rewriting its AOF.
fn aof_refused(h: &mut H, name: &str, pid: u32) -> Vec<Effect> {
    h.shutdown_done(
        name,
        pid,
        Err(ShutdownError::RewritingAof(
            "ERR Errors trying to SHUTDOWN. Check logs.".into(),
        )),
    )
}

#[test]
fn a_stop_refused_while_the_initial_aof_is_written_asks_again_and_stops_once_it_is_done() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    let (id, fx) = h.stop("r1", false);
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)]);
    let fx = aof_refused(&mut h, "r1", 201);
    assert_eq!(h.kind("r1"), Kind::ShuttingDown, "not a failed save");
    assert!(reply(&fx, id).is_none() && signals(&fx).is_empty());
    assert_eq!(last_error(&h, "r1"), "");
    // Asked again a moment later, and again while the rewrite goes on.
    assert!(h.m.next_deadline(h.now) <= h.now + Duration::from_millis(200));
    let fx = h.advance(Duration::from_millis(200));
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)]);
    assert!(
        shutdowns(&h.advance(Duration::from_millis(200))).is_empty(),
        "one at a time"
    );
    aof_refused(&mut h, "r1", 201);
    let fx = h.advance(Duration::from_millis(200));
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)]);
    // The rewrite is done: SHUTDOWN goes through.
    let fx = shutdown_ok(&mut h, "r1", 201);
    assert_eq!(h.kind("r1"), Kind::Stopped);
    assert_eq!(done(&fx, id), (true, vec!["r1: stopped".to_owned()]));
    let c = &h.m.slots["r1"].counters;
    assert_eq!((c.stops_saved, c.stops_refused), (1, 0));
}

#[test]
fn a_stop_still_waiting_for_the_aof_at_shutdown_timeout_is_left_running_not_killed() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    let (id, _) = h.stop("r1", false);
    let mut fx = aof_refused(&mut h, "r1", 201);
    // The rewrite outlasts shutdown_timeout (5 s): asked every 200 ms meanwhile.
    for _ in 0..40 {
        if reply(&fx, id).is_some() {
            break;
        }
        fx = h.advance(Duration::from_millis(200));
        if !shutdowns(&fx).is_empty() {
            fx.extend(aof_refused(&mut h, "r1", 201));
        }
        assert!(signals(&fx).is_empty(), "SIGTERM is refused alike: {fx:?}");
    }
    let (ok, lines) = done(&fx, id);
    assert!(!ok);
    assert!(
        lines[0].contains("left running (nothing lost)")
            && lines[0].contains("still rewriting its AOF after shutdown_timeout (5.0s)"),
        "{lines:?}"
    );
    assert_eq!(h.kind("r1"), Kind::Running);
    assert!(launches(&h.advance(Duration::from_secs(60))).is_empty());
}

#[test]
fn a_forced_stop_still_waiting_for_the_aof_at_shutdown_timeout_escalates() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (_, _) = h.stop("master", true);
    aof_refused(&mut h, "master", 100);
    h.now += Duration::from_secs(5);
    let fx = aof_refused(&mut h, "master", 100);
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Term)]);
    assert_eq!(h.kind("master"), Kind::Terminating);
}

#[test]
fn a_refused_nosave_is_not_sent_again_and_again() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.stop("master", true);
    let fx = h.save_refused("master", 100);
    assert_eq!(shutdowns(&fx), [("master".to_owned(), true)]);
    let fx = h.save_refused("master", 100);
    assert!(shutdowns(&fx).is_empty(), "{fx:?}");
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Term)]);
}

#[test]
fn a_shutdown_asked_again_that_never_answers_ends_in_sigterm_not_in_a_busy_loop() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.stop("master", false);
    h.now += Duration::from_millis(4700);
    aof_refused(&mut h, "master", 100);
    let fx = h.advance(Duration::from_millis(200));
    assert_eq!(
        shutdowns(&fx),
        [("master".to_owned(), false)],
        "before the deadline"
    );
    let fx = h.advance(Duration::from_millis(200));
    assert!(shutdowns(&fx).is_empty() && signals(&fx).is_empty());
    assert!(
        h.m.next_deadline(h.now) > h.now,
        "nothing to do until its answer is due"
    );
    let fx = h.advance(Duration::from_millis(4900));
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Term)]);
}

/// `restart master` with both replicas online: it is stopped, and launched again as pid
/// 400. The request's id, and the machine.
fn restart_master_relaunched() -> (RequestId, H) {
    let mut h = H::all_up(SEED);
    // In place (forced): a planned restart would move the role away first.
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: true,
    });
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)]);
    let mut fx = shutdown_ok(&mut h, "master", 100);
    h.now += S;
    fx.extend(h.tick());
    fx.extend(h.probe("r1", &replica_info(201, 1000)));
    fx.extend(h.probe("r2", &replica_info(202, 1000)));
    assert_eq!(launches(&fx), ["master"], "{fx:?}");
    h.launched("master", 400);
    (id, h)
}

/// A master's restart is done when the replicas it had are back: a replica restart
/// right after it (with its min-replicas check) must not find them still reconnecting.
#[test]
fn a_master_restart_is_done_when_its_replicas_are_back() {
    let (id, mut h) = restart_master_relaunched();
    let both = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];
    // Up, but its replicas have not reconnected yet: not done.
    let mut fx = h.probe("master", &master_info(400, &[]));
    h.now += S;
    fx.extend(h.probe("master", &master_info(400, &both[..1])));
    assert!(reply(&fx, id).is_none(), "{fx:?}");
    let fx = h.probe("master", &master_info(400, &both));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert!(
        lines[1].starts_with("master: running (pid 400), 2 replica(s) back in"),
        "{lines:?}"
    );
}

#[test]
fn replicas_back_waits_within_the_limit_then_says_how_many_are_missing() {
    use super::super::steps::{ReplicasBack, replicas_back};
    let limit = 10 * S;
    for (before, back, waited, want) in [
        (2, Some(2), S, ReplicasBack::Back),
        (2, Some(3), S, ReplicasBack::Back),
        (2, Some(1), S, ReplicasBack::Waiting),
        (2, None, S, ReplicasBack::Waiting),
        (2, Some(1), 11 * S, ReplicasBack::Missing(1)),
        (2, None, 11 * S, ReplicasBack::Missing(0)),
        (1, Some(1), 11 * S, ReplicasBack::Back),
    ] {
        assert_eq!(
            replicas_back(before, back, waited, limit),
            want,
            "{before} {back:?} {waited:?}"
        );
    }
}

/// Back in another role (a switchover moved the master away before the stop): its old
/// replicas follow someone else, and the restart does not wait for them.
#[test]
fn a_restart_back_in_another_role_does_not_wait_for_old_replicas() {
    let (id, mut h) = restart_master_relaunched();
    let fx = h.probe("master", &replica_info(400, 1000));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1], "master: running (pid 400)", "{lines:?}");
}

/// A replica that still had a replica when it was stopped (Sentinel re-points them one by
/// one after a switchover) but that the group puts none under: nothing to wait for.
#[test]
fn a_restart_waits_only_for_replicas_the_group_puts_under_it() {
    let mut h = H::all_up(SEED);
    h.probe(
        "r1",
        &(replica_info(201, 1000)
            + "slave0:ip=127.0.0.3,port=7002,state=online,offset=1000,lag=0\r\n"),
    );
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["r1".into()],
        force: false,
    });
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)]);
    let fx = shutdown_ok(&mut h, "r1", 201);
    assert_eq!(claims(&fx), ["r1"]);
    h.grant("r1");
    h.launched("r1", 301);
    let mut fx = h.probe("r1", &replica_info(301, 1000));
    let both = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];
    fx.extend(h.probe("master", &master_info(100, &both)));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert!(lines[1].starts_with("r1: running (pid 301)"), "{lines:?}");
    assert!(!lines[1].contains("back"), "{lines:?}");
}

/// A replica stopped just before its master's restart, while the master's last INFO still
/// lists it online (stops back to back): the restart does not wait for it to come back.
#[test]
fn a_master_restart_does_not_wait_for_a_replica_stopped_just_before() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let both = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];
    h.replica_up("r1", 201, &both[..1]);
    h.replica_up("r2", 202, &both);
    h.stop("r2", true);
    shutdown_ok(&mut h, "r2", 202);
    assert_eq!(h.kind("r2"), Kind::Stopped);
    // The master's INFO, asked before r2 went, still lists both.
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: true,
    });
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)]);
    let mut fx = shutdown_ok(&mut h, "master", 100);
    h.now += S;
    fx.extend(h.tick());
    fx.extend(h.probe("r1", &replica_info(201, 1000)));
    assert_eq!(launches(&fx), ["master"], "{fx:?}");
    h.launched("master", 400);
    let fx = h.probe("master", &master_info(400, &both[..1]));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert!(
        lines[1].starts_with("master: running (pid 400), 1 replica(s) back in"),
        "{lines:?}"
    );
}
