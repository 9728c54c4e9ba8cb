//! Start-up order, the sync gate and readiness.

use std::path::Path;
use std::time::Duration;

use super::*;

#[test]
fn the_master_is_launched_first_and_replicas_wait_for_it() {
    let mut h = H::new(SEED, "a");
    let fx = h.tick();
    assert_eq!(launches(&fx), ["master"]);
    assert!(claims(&fx).is_empty());
    assert!(h.waits_for_upstream("r1", "master"));
    // `status` shows why it waits, in these words.
    assert_eq!(
        last_error(&h, "r1"),
        "waiting for upstream `master` at 127.0.0.1:7000: not running yet"
    );
    // Launching until the runtime answers; nothing is launched twice meanwhile.
    assert_eq!(h.kind("master"), Kind::Launching);
    assert!(launches(&h.tick()).is_empty());
}

#[test]
fn a_launch_carries_the_rendered_config_and_its_paths() {
    let mut h = H::new(SEED, "a");
    let fx = h.tick();
    let Some(Effect::Launch(spec)) = fx.iter().find(|e| matches!(e, Effect::Launch(_))) else {
        panic!("{fx:?}")
    };
    assert!(spec.conf.expose().contains("port 7000"));
    assert!(spec.conf.expose().contains("requirepass pw"));
    assert_eq!(spec.conf_path, Path::new("/t/run/master.conf"));
    assert_eq!(spec.pid_path, Path::new("/t/run/master.pid"));
    assert!(spec.resume.is_none(), "a master never resumes with AOF off");
    assert!(
        !format!("{spec:?}").contains("pw\n"),
        "Debug hides the password"
    );
}

#[test]
fn running_only_once_it_answers_from_its_own_pid_with_its_data_loaded() {
    let mut h = H::new(SEED, "a");
    h.tick();
    let fx = h.launched("master", 100);
    assert!(fx.iter().any(|e| matches!(e, Effect::ProbeNow)), "{fx:?}");
    assert_eq!(h.kind("master"), Kind::Starting);
    h.probe("master", &master_info(999, &[])); // a foreign process on the port
    assert_eq!(h.kind("master"), Kind::Starting);
    h.probe(
        "master",
        &master_info(100, &[]).replace("loading:0", "loading:1"),
    );
    assert_eq!(h.kind("master"), Kind::Starting);
    h.probe("master", &master_info(100, &[]));
    assert_eq!(h.kind("master"), Kind::Running);
}

#[test]
fn a_replica_asks_its_upstream_for_a_gate_place_once_the_master_runs() {
    let mut h = H::new(SEED, "a");
    let mut fx = h.master_up();
    fx.extend(h.tick());
    assert_eq!(claims(&fx), ["r1"], "one replica asks, the other waits");
    assert!(
        launches(&fx).is_empty(),
        "no launch before the place is granted"
    );
    let fx = h.grant("r1");
    assert_eq!(launches(&fx), ["r1"]);
}

#[test]
fn a_refused_claim_asks_again_after_the_jitter() {
    let one_replica = SEED[..SEED.find("[[instance]]\nname = \"r2\"").unwrap()].to_owned();
    let mut h = H::new(&one_replica, "a");
    assert_eq!(claims(&h.master_up()), ["r1"]);
    h.refuse("r1", "1 replica(s) syncing", Duration::from_millis(300));
    assert_eq!(
        h.blocker("r1"),
        Blocker::GateRefused {
            upstream: "master".into(),
            detail: "1 replica(s) syncing".into()
        }
    );
    assert!(claims(&h.advance(Duration::from_millis(100))).is_empty());
    let fx = h.advance(Duration::from_millis(250));
    assert!(claims(&fx).contains(&"r1".to_owned()), "{fx:?}");
}

#[test]
fn the_gate_never_admits_two_replicas_of_one_upstream_and_a_release_admits_the_next() {
    let mut h = H::new(SEED, "a");
    let mut claimed = claims(&h.master_up());
    for _ in 0..5 {
        claimed.extend(claims(&h.advance(S)));
    }
    assert_eq!(claimed, ["r1"]);
    h.grant("r1");
    h.launched("r1", 201);
    h.probe("r1", &replica_info(201, 0));
    assert_eq!(h.kind("r1"), Kind::Syncing);
    for _ in 0..5 {
        assert!(claims(&h.advance(S)).is_empty(), "r2 waits while r1 syncs");
        assert_eq!(h.kind("r2"), Kind::Waiting);
    }
    h.probe("r1", &replica_info(201, 1000));
    let fx = h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert_eq!(h.kind("r1"), Kind::Running);
    assert_eq!(releases(&fx), ["r1"], "in sync: r1's place is given back");
    assert_eq!(claims(&fx), ["r2"], "and r2 asks for it");
}

#[test]
fn a_replica_of_another_daemon_syncing_from_the_upstream_counts_in_the_gate() {
    let mut h = H::new(SEED, "a");
    h.tick();
    h.launched("master", 100);
    // The master lists a replica this daemon does not run, still receiving its copy.
    h.probe(
        "master",
        &master_info_with(100, &[("127.0.0.9", 7009)], "send_bulk", 1),
    );
    let fx = h.tick();
    assert!(claims(&fx).is_empty(), "{fx:?}");
    assert!(
        matches!(h.blocker("r1"), Blocker::GateFull { syncing: 1, .. }),
        "{:?}",
        h.blocker("r1")
    );
}

#[test]
fn the_upstreams_probe_can_be_the_one_that_completes_a_replicas_sync() {
    let mut h = H::r1_launched(SEED);
    // The replica's link is up, but the master's last INFO predates it.
    h.probe("r1", &replica_info(201, 1000));
    assert_eq!(h.kind("r1"), Kind::Syncing);
    h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert_eq!(
        h.kind("r1"),
        Kind::Running,
        "no second replica probe needed"
    );
}

#[test]
fn the_replicas_own_log_names_its_sync_in_the_restart_output() {
    let mut h = H::r1_launched(SEED);
    h.now += Duration::from_millis(1500);
    h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    h.probe_logged("r1", &replica_info(201, 1000), Some(SyncKind::Partial));
    let status = h.m.status(h.now);
    let r1 = status.iter().find(|s| s.name == "r1").unwrap();
    assert_eq!(
        r1.last_sync.as_deref(),
        Some("partial resync, in sync 1.5s after start")
    );
}

#[test]
fn without_a_log_line_the_upstreams_sync_full_counter_tells_the_sync() {
    let mut h = H::r1_launched(SEED);
    h.probe("r1", &replica_info(201, 1000));
    h.probe(
        "master",
        &master_info_with(100, &[("127.0.0.2", 7001)], "online", 1),
    );
    let status = h.m.status(h.now);
    let r1 = status.iter().find(|s| s.name == "r1").unwrap();
    assert!(r1.last_sync.as_deref().unwrap().starts_with("full sync"));
}

#[test]
fn a_replica_resumed_from_its_rdb_gets_aof_back_once_in_sync() {
    let text = with_aof(SEED);
    let mut h = H::new(&text, "a");
    assert_eq!(claims(&h.master_up()), ["r1"]);
    let fx = h.grant("r1");
    let Some(Effect::Launch(spec)) = fx.iter().find(|e| matches!(e, Effect::Launch(_))) else {
        panic!("{fx:?}")
    };
    let resume = spec.resume.clone().expect("a replica with AOF may resume");
    assert_eq!(resume.rdb, Path::new("/t/data/r1/dump.rdb"));
    h.feed(Input::Launched {
        name: "r1".into(),
        pid: 201,
        resumed_from_rdb: true,
    });
    h.probe("r1", &replica_info(201, 1000));
    let fx = h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::RestoreAof { name, .. } if name == "r1")),
        "{fx:?}"
    );
}

#[test]
fn a_replica_not_in_sync_within_sync_timeout_gives_its_place_back_and_is_counted() {
    let mut h = H::r1_launched(SEED);
    h.probe("r1", &replica_info(201, 0));
    let fx = h.advance(Duration::from_secs(31));
    assert_eq!(h.kind("r1"), Kind::Running);
    assert_eq!(releases(&fx), ["r1"]);
    let status = h.m.status(h.now);
    assert_eq!(
        status
            .iter()
            .find(|s| s.name == "r1")
            .unwrap()
            .sync_timeouts,
        1
    );
}

#[test]
fn a_start_timeout_kills_once_and_the_exit_counts_as_a_crash() {
    let mut h = H::new(SEED, "a");
    h.tick();
    h.launched("master", 100);
    let fx = h.advance(Duration::from_secs(11));
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Kill)]);
    assert!(
        signals(&h.advance(S)).is_empty(),
        "not killed again meanwhile"
    );
    h.exited("master", 100, "killed by SIGKILL");
    assert_eq!(h.kind("master"), Kind::Backoff);
    assert!(last_error(&h, "master").contains("killed by SIGKILL"));
}

#[test]
fn a_launch_that_fails_before_anything_ran_is_retried_with_backoff_but_never_fails() {
    let mut h = H::new(SEED, "a");
    for attempt in 1..=6u32 {
        let fx = h.advance(Duration::from_secs(9));
        assert_eq!(launches(&fx), ["master"], "attempt {attempt}");
        h.feed(Input::LaunchFailed {
            name: "master".into(),
            reason: "port 127.0.0.1:7000 is held by pid 5 (nc)".into(),
        });
        assert_eq!(h.kind("master"), Kind::Backoff);
    }
    assert!(last_error(&h, "master").contains("held by pid 5 (nc); retrying in"));
    assert_eq!(
        h.m.status(h.now)[0].restarts,
        0,
        "nothing ran: no restart counted"
    );
}

#[test]
fn syncs_are_counted_by_kind_and_gate_waits_are_reported() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let report = h.m.report();
    let waiting: Vec<_> = report
        .iter()
        .filter_map(|r| {
            r.waiting_in_gate_of
                .as_deref()
                .map(|u| (r.name.as_str(), u))
        })
        .collect();
    assert_eq!(
        waiting,
        [("r1", "master"), ("r2", "master")],
        "r1 asks, r2 waits behind it"
    );
    h.tick();
    h.grant("r1");
    h.launched("r1", 201);
    h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    h.probe_logged("r1", &replica_info(201, 1000), Some(SyncKind::Full));
    let report = h.m.report();
    let r1 = report.iter().find(|r| r.name == "r1").unwrap();
    assert!(r1.up);
    assert_eq!((r1.counters.full_syncs, r1.counters.partial_syncs), (1, 0));
    let r2 = report.iter().find(|r| r.name == "r2").unwrap();
    assert_eq!(r2.waiting_in_gate_of.as_deref(), Some("master"));
}

/// The master's INFO with its replication history: id `aaa`, a backlog holding offsets 1
/// to 1000.
fn with_history(info: String) -> String {
    info + "master_replid:aaa\r\nmaster_replid2:0000\r\nsecond_repl_offset:-1\r\n\
            repl_backlog_active:1\r\nrepl_backlog_size:1048576\r\n\
            repl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:1000\r\n"
}

#[test]
fn a_replica_sure_to_resync_partially_is_admitted_while_another_holds_the_gate() {
    let mut h = H::new(SEED, "a");
    h.histories.insert(
        "r2".into(),
        crate::rdb::ReplPosition {
            repl_id: "aaa".into(),
            offset: 900,
        },
    );
    h.tick();
    h.launched("master", 100);
    let fx = h.probe("master", &with_history(master_info(100, &[])));
    assert_eq!(
        claims(&fx),
        ["r1"],
        "r1 has no history: it asks for a place"
    );
    assert_eq!(
        launches(&fx),
        ["r2"],
        "r2 resumes from the backlog: no place needed"
    );
    let Some(State::Launching { launch, .. }) = h.m.state("r2") else {
        panic!("{:?}", h.m.state("r2"))
    };
    assert!(launch.predicted_partial && !launch.holds_place);
    // r1 gets its place and syncs; r2, partial, never counted against it.
    h.grant("r1");
    h.launched("r1", 201);
    h.launched("r2", 202);
    h.probe("r2", &replica_info(202, 1000));
    let both = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];
    h.probe("master", &with_history(master_info(100, &both)));
    assert_eq!(h.kind("r2"), Kind::Running);
}

#[test]
fn a_replica_whose_history_the_upstream_lacks_waits_in_the_gate() {
    let mut h = H::new(SEED, "a");
    for (name, id) in [("r1", "aaa"), ("r2", "zzz")] {
        h.histories.insert(
            name.into(),
            crate::rdb::ReplPosition {
                repl_id: id.into(),
                offset: 900,
            },
        );
    }
    h.tick();
    h.launched("master", 100);
    // r1 resumes; r2's history is another one: it needs a place, and gets one at once
    // (r1, partial, does not hold the gate).
    let fx = h.probe("master", &with_history(master_info(100, &[])));
    assert_eq!(launches(&fx), ["r1"]);
    assert_eq!(claims(&fx), ["r2"]);
}

#[test]
fn a_wrong_prediction_is_counted_and_then_holds_the_gate() {
    let one_replica_more = SEED.to_owned()
        + "\n[[instance]]\nname = \"r3\"\nhost = \"a\"\nbind = \"127.0.0.4\"\nport = 7003\nreplica_of = \"master\"\n";
    let mut h = H::new(&one_replica_more, "a");
    h.histories.insert(
        "r1".into(),
        crate::rdb::ReplPosition {
            repl_id: "aaa".into(),
            offset: 900,
        },
    );
    h.tick();
    h.launched("master", 100);
    let fx = h.probe("master", &with_history(master_info(100, &[])));
    assert_eq!(launches(&fx), ["r1"]);
    assert_eq!(claims(&fx), ["r2"]);
    h.launched("r1", 201);
    // The master's backlog moved on meanwhile: r1 is full-syncing after all.
    h.probe(
        "r1",
        &replica_info(201, 0).replace("master_sync_in_progress:0", "master_sync_in_progress:1"),
    );
    assert_eq!(h.kind("r1"), Kind::Syncing);
    let report = h.m.report();
    let r1 = report.iter().find(|r| r.name == "r1").unwrap();
    assert_eq!(r1.counters.mispredicted_syncs, 1);
    assert!(
        h.m.state("r1").unwrap().in_flight(),
        "it counts against the gate now"
    );
    // r2 is refused its place; r3 may not even ask while r1 and r2's claim are in flight.
    h.refuse("r2", "1 replica(s) syncing", Duration::from_millis(200));
    let fx = h.advance(Duration::from_millis(300));
    assert!(claims(&fx).is_empty(), "{fx:?}");
    assert!(
        matches!(h.blocker("r2"), Blocker::GateFull { syncing: 1, .. }),
        "{:?}",
        h.blocker("r2")
    );
    let status = h.m.status(h.now);
    assert_eq!(
        status
            .iter()
            .find(|s| s.name == "r1")
            .unwrap()
            .sync_mispredictions,
        1
    );
}

#[test]
fn instances_on_their_way_up_are_probed_every_tenth_of_a_second() {
    let mut h = H::new(SEED, "a");
    h.tick();
    assert!(
        h.m.next_deadline(h.now) >= h.now + Duration::from_millis(500),
        "nothing coming up"
    );
    h.launched("master", 100);
    let probes_now = |fx: &[Effect]| fx.iter().filter(|e| matches!(e, Effect::ProbeNow)).count();
    let due = h.m.next_deadline(h.now);
    assert!(
        due <= h.now + Duration::from_millis(100),
        "{:?}",
        due - h.now
    );
    assert_eq!(probes_now(&h.advance(Duration::from_millis(100))), 1);
    assert_eq!(probes_now(&h.advance(Duration::from_millis(50))), 0);
    assert_eq!(probes_now(&h.advance(Duration::from_millis(50))), 1);
    h.probe("master", &master_info(100, &[]));
    assert_eq!(h.kind("master"), Kind::Running);
    // Running, and the replicas wait in the gate: back to health_interval.
    assert_eq!(probes_now(&h.advance(Duration::from_millis(100))), 0);
    assert_eq!(probes_now(&h.advance(Duration::from_millis(100))), 0);
}

#[test]
fn a_resumed_replica_that_times_out_syncing_still_gets_aof_back() {
    let text = with_aof(SEED);
    let mut h = H::new(&text, "a");
    h.master_up();
    h.grant("r1");
    h.feed(Input::Launched {
        name: "r1".into(),
        pid: 201,
        resumed_from_rdb: true,
    });
    h.probe("r1", &replica_info(201, 0));
    assert_eq!(h.kind("r1"), Kind::Syncing);
    let fx = h.advance(Duration::from_secs(31));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::RestoreAof { name, .. } if name == "r1")),
        "{fx:?}"
    );
}

#[test]
fn no_prediction_from_an_old_upstream_info() {
    let mut h = H::new(SEED, "a");
    h.histories.insert(
        "r2".into(),
        crate::rdb::ReplPosition {
            repl_id: "aaa".into(),
            offset: 900,
        },
    );
    h.tick();
    h.launched("master", 100);
    let asked = h.now;
    h.now += Duration::from_secs(3);
    // An answer to a probe asked three seconds ago: the backlog may have moved on since.
    let fx = h.feed(Input::Probe(Probe {
        name: "master".into(),
        asked_at: asked,
        result: Ok(Info::parse(&with_history(master_info(100, &[])))),
        logged_sync: None,
    }));
    assert!(!launches(&fx).contains(&"r2".to_owned()), "{fx:?}");
    // A fresh probe, and it goes.
    let fx = h.probe("master", &with_history(master_info(100, &[])));
    assert_eq!(launches(&fx), ["r2"]);
}
