//! Roles that change by request and by what the group says: failover, promote, learning
//! the actual master, a planned master restart, the endpoints' view.

use super::*;

#[test]
fn failover_swaps_roles_re_points_the_others_live_and_keeps_the_new_master() {
    let mut h = H::all_up(SEED);
    h.now += S;
    let (id, fx) = h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    assert!(failovers(&fx).is_empty(), "not before fresh INFO");
    let fx = probe_before(&mut h);
    assert_eq!(failovers(&fx), ["r1"]);
    // The master's other replica online goes with the switchover itself, to r1.
    let others: Vec<u16> = fx
        .iter()
        .find_map(|e| match e {
            Effect::Failover { others, .. } => Some(others.iter().map(|o| o.port).collect()),
            _ => None,
        })
        .unwrap_or_default();
    assert_eq!(others, [R2.1]);
    h.now += S / 10;
    let fx = h.role_changed("r1", Ok(()));
    assert_eq!(saved(&fx), ["r1"]);
    assert_eq!(h.m.actual_master(), "r1");
    // After FAILOVER: r1 master (new id bbb, old aaa as replid2), the old master follows
    // it; r2 still follows the old master.
    h.probe("master", &follower(100, R1, "bbb", 1000));
    h.probe("r2", &follower(202, M, "aaa", 1000));
    let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M]));
    // The live changes go one after another, parents first.
    let mut changes = Vec::new();
    while let Some((name, what)) = live(&fx).pop() {
        changes.push((name.clone(), what));
        fx = h.feed(Input::LiveApplied {
            name,
            result: Ok(()),
        });
    }
    assert!(
        changes.contains(&("r2".into(), "re-pointed to r1".into())),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|(n, what)| n == "master" && !what.contains("re-pointed")),
        "the old master follows r1 already: {changes:?}"
    );
    h.now += S / 10;
    let mut fx = h.probe("master", &follower(100, R1, "bbb", 1100));
    fx.extend(h.probe("r2", &follower(202, R1, "bbb", 1100)));
    fx.extend(h.probe("r1", &leader(201, "bbb", "aaa", 1100, &[M, R2])));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "r1: master now (switchover)"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("master: replica of r1") && l.contains("r2: replica of r1")),
        "{lines:?}"
    );
    // Status: configured roles from the file, the group follows r1.
    let status = h.m.status(h.now);
    let master = status.iter().find(|s| s.name == "master").expect("master");
    assert_eq!(master.configured_role, "master");
    assert_eq!(master.upstream.as_deref(), Some("r1"));
}

#[test]
fn failover_refuses_a_replica_out_of_sync_a_sub_replica_and_a_lost_quorum() {
    let text = SEED.replace("port = 7000\n", "port = 7000\nmin_replicas_to_write = 2\n");
    let mut h = H::all_up(&text);
    let refused = |h: &mut H, to: &str, master_online: &[(&str, u16)]| {
        h.now += S;
        let (id, _) = h.request(Request::Failover {
            to: Some(to.into()),
            force: false,
        });
        // r2's link is down: out of sync, not just reconnecting.
        h.probe("r1", &follower(201, M, "aaa", 1000));
        h.probe(
            "r2",
            &follower(202, M, "aaa", 1000).replace("link_status:up", "link_status:down"),
        );
        let fx = h.probe("master", &leader(100, "aaa", "0", 1000, master_online));
        assert!(failovers(&fx).is_empty());
        let (ok, lines) = done(&fx, id);
        assert!(!ok);
        lines.join("\n")
    };
    let why = refused(&mut h, "r2", &[R1]);
    assert!(why.contains("`r2` is not in sync"), "{why}");
    // r1 would have the old master and nobody else: 1 < min_replicas_to_write = 2.
    let why = refused(&mut h, "r1", &[R1]);
    assert!(why.contains("min_replicas_to_write = 2"), "{why}");
    let why = refused(&mut h, "master", &[R1, R2]);
    assert!(why.contains("the master already"), "{why}");
}

#[test]
fn a_failover_asked_while_one_runs_or_while_the_target_reconnects_says_try_again() {
    let group = group(SEED);
    let inst = |n: &str| group.instance(n).expect("instance").clone();
    let (master, r1) = (inst("master"), inst("r1"));
    let plain = Info::parse(&leader(100, "aaa", "0", 1000, &[R1, R2]));
    assert_eq!(
        super::super::roles::failover_running("master", &plain),
        None
    );
    for state in ["waiting-for-sync", "failover-in-progress"] {
        let busy = Info::parse(&leader(100, "aaa", "0", 1000, &[R1, R2]).replace(
            "failover_state:no-failover",
            &format!("failover_state:{state}"),
        ));
        let why = super::super::roles::failover_running("master", &busy).expect(state);
        assert!(why.contains(state), "{why}");
    }
    // No field (a server without FAILOVER): nothing runs.
    assert_eq!(
        super::super::roles::failover_running("master", &Info::parse("role:master\r\n")),
        None
    );

    let unlisted = Info::parse(&leader(100, "aaa", "0", 1000, &[R2]));
    let up = Info::parse(&follower(201, M, "aaa", 1000));
    let down = Info::parse(&follower(201, M, "aaa", 1000).replace("status:up", "status:down"));
    let elsewhere = Info::parse(&follower(201, R2, "aaa", 1000));
    let rn =
        |m: &Info, t: Option<&Info>| super::super::roles::target_reconnecting(&master, m, &r1, t);
    // Link up, not listed: just reconnected.
    assert!(rn(&unlisted, Some(&up)).is_some_and(|w| w.contains("not list it online yet")));
    // Listed online: nothing to wait for. Link down, under another upstream, or its INFO
    // unknown: not a moment's wait (the other refusals say why).
    assert_eq!(rn(&plain, Some(&up)), None);
    assert_eq!(rn(&unlisted, Some(&down)), None);
    assert_eq!(rn(&unlisted, Some(&elsewhere)), None);
    assert_eq!(rn(&unlisted, None), None);

    // Through the machine: both refusals end with "try again".
    let mut h = H::all_up(SEED);
    let ask = |h: &mut H, master_info: String| {
        h.now += S;
        let (id, _) = h.request(Request::Failover {
            to: Some("r1".into()),
            force: false,
        });
        h.probe("r1", &follower(201, M, "aaa", 1000));
        h.probe("r2", &follower(202, M, "aaa", 1000));
        let fx = h.probe("master", &master_info);
        assert!(failovers(&fx).is_empty());
        let (ok, lines) = done(&fx, id);
        assert!(!ok);
        lines.join("\n")
    };
    let why = ask(
        &mut h,
        leader(100, "aaa", "0", 1000, &[R1, R2]).replace(
            "failover_state:no-failover",
            "failover_state:failover-in-progress",
        ),
    );
    assert!(
        why.contains("in a FAILOVER already") && why.contains("try again"),
        "{why}"
    );
    let why = ask(&mut h, leader(100, "aaa", "0", 1000, &[R2]));
    assert!(
        why.contains("not list it online yet") && why.contains("try again"),
        "{why}"
    );
    // Once listed, it goes.
    h.now += S;
    h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    let fx = probe_before(&mut h);
    assert_eq!(failovers(&fx), ["r1"]);
}

#[test]
fn promote_is_refused_while_the_master_answers_or_another_replica_is_ahead() {
    let mut h = H::all_up(SEED);
    h.now += S;
    let (id, _) = h.request(Request::Promote {
        instance: "r1".into(),
        force: false,
    });
    let fx = probe_before(&mut h);
    let (ok, lines) = done(&fx, id);
    assert!(
        !ok && lines.join(" ").contains("the master `master` answers"),
        "{lines:?}"
    );

    // The master is gone; r2 has more than r1.
    h.now += S;
    let (id, _) = h.request(Request::Promote {
        instance: "r1".into(),
        force: false,
    });
    h.probe_err("master", "connection refused");
    h.probe("r1", &follower(201, M, "aaa", 900));
    let fx = h.probe("r2", &follower(202, M, "aaa", 1000));
    let (ok, lines) = done(&fx, id);
    assert!(!ok, "{lines:?}");
    assert!(lines.join(" ").contains("`r2` (1000 > 900)"), "{lines:?}");

    // r2 is promoted.
    h.now += S;
    h.request(Request::Promote {
        instance: "r2".into(),
        force: false,
    });
    h.probe_err("master", "connection refused");
    h.probe("r1", &follower(201, M, "aaa", 900));
    let fx = h.probe("r2", &follower(202, M, "aaa", 1000));
    assert_eq!(made_master(&fx), ["r2"]);
    let fx = h.role_changed("r2", Ok(()));
    assert_eq!(saved(&fx), ["r2"]);
}

#[test]
fn the_actual_master_is_learned_from_info_asked_after_the_last_change() {
    let mut h = H::a_up_r1_on_b();
    // Someone failed over to r1 (another daemon, or by hand).
    h.now += S;
    let mut fx = h.probe("r2", &follower(202, R1, "bbb", 1000));
    fx.extend(h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M, R2])));
    fx.extend(h.probe("master", &follower(100, R1, "bbb", 1000)));
    assert_eq!(saved(&fx), ["r1"]);
    assert_eq!(h.m.actual_master(), "r1");
    // INFO asked before the change says nothing: the old master still a master there.
    let fx = h.feed(Input::Probe(Probe {
        name: "master".into(),
        asked_at: h.now - S,
        result: Ok(Info::parse(&leader(100, "aaa", "0", 900, &[R2]))),
        logged_sync: None,
    }));
    assert!(saved(&fx).is_empty());
    assert_eq!(h.m.actual_master(), "r1");
}

#[test]
fn a_master_starts_as_a_replica_when_the_group_follows_another() {
    let text = SEED
        .replace(
            "host = \"a\"\nbind = \"127.0.0.2\"",
            "host = \"b\"\nbind = \"127.0.0.2\"",
        )
        .replace(
            "host = \"a\"\nbind = \"127.0.0.3\"",
            "host = \"b\"\nbind = \"127.0.0.3\"",
        );
    let mut h = H::new(&text, "a");
    let fx = h.tick();
    assert!(
        launches(&fx).is_empty(),
        "not before the others say who the master is"
    );
    // r1 was promoted while this host was down.
    h.probe_err("master", "connection refused");
    h.probe("r2", &follower(202, R1, "bbb", 1000));
    let fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[R2]));
    assert_eq!(saved(&fx), ["r1"]);
    let mut fx = fx;
    fx.extend(h.tick());
    let conf = launch_conf(&mut h, fx, "master");
    assert!(conf.contains("replicaof 127.0.0.2 7001"), "{conf}");
}

#[test]
fn a_planned_master_restart_moves_the_role_away_and_back() {
    let mut h = H::all_up(SEED);
    h.now += S;
    // Both replicas online in the master's INFO: r2 is the most advanced.
    h.probe("master", &leader(100, "aaa", "0", 1000, &[R1, R2]));
    let (_, fx) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: false,
    });
    assert!(shutdowns(&fx).is_empty(), "not stopped as master: {fx:?}");
    assert!(
        failovers(&fx).is_empty(),
        "decided on INFO asked now: {fx:?}"
    );
    let fx = probe_before(&mut h);
    assert!(shutdowns(&fx).is_empty(), "not stopped as master: {fx:?}");
    assert_eq!(failovers(&fx).len(), 1, "{fx:?}");
}

/// The master's restart as the group says when its turn comes: a failover by hand
/// (or another daemon's) made r1 master since the request.
#[test]
fn a_planned_master_restart_overtaken_by_a_change_of_master_moves_no_role() {
    let mut h = H::all_up(SEED);
    h.now += S;
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: false,
    });
    assert!(failovers(&fx).is_empty(), "{fx:?}");
    let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M, R2]));
    fx.extend(h.probe("r2", &follower(202, R1, "bbb", 1000)));
    fx.extend(h.probe("master", &follower(100, R1, "bbb", 1000)));
    assert_eq!(h.m.actual_master(), "r1");
    assert!(failovers(&fx).is_empty(), "{fx:?}");
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)], "{fx:?}");
    let mut fx = shutdown_ok(&mut h, "master", 100);
    h.now += S;
    fx.extend(h.tick());
    if claims(&fx).contains(&"master".to_owned()) {
        fx.extend(h.grant("master"));
    }
    assert_eq!(launches(&fx), ["master"], "{fx:?}");
    let mut fx = h.launched("master", 400);
    fx.extend(h.probe("master", &follower(400, R1, "bbb", 1100)));
    fx.extend(h.probe("r1", &leader(201, "bbb", "aaa", 1100, &[M, R2])));
    assert!(failovers(&fx).is_empty(), "no move back: {fx:?}");
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with(
            "master: not the group's master any more (`r1` is): it restarts as a replica"
        )),
        "{lines:?}"
    );
    assert_eq!(h.m.actual_master(), "r1");
}

/// `restart master` (planned): the role moved to r2 (the most advanced, last listed), the
/// old master stopped and launched again as pid 400 under r2, not probed yet. The
/// request's id, and the machine.
fn master_restarting_with_the_role_on_r2() -> (RequestId, H) {
    let mut h = H::all_up(SEED);
    h.now += S;
    let (id, _) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: false,
    });
    let fx = probe_before(&mut h);
    assert_eq!(failovers(&fx), ["r2"], "the most advanced, last listed");
    h.now += S / 10;
    h.role_changed("r2", Ok(()));
    assert_eq!(h.m.actual_master(), "r2");
    let mut fx = h.probe("r2", &leader(202, "bbb", "aaa", 1000, &[M, R1]));
    fx.extend(h.probe("r1", &follower(201, R2, "bbb", 1000)));
    fx.extend(h.probe("master", &follower(100, R2, "bbb", 1000)));
    // Its live changes (r1 and the old master now under r2), then the stop.
    while let Some((name, _)) = live(&fx).pop() {
        fx = h.live_applied(&name, Ok(()));
    }
    if shutdowns(&fx).is_empty() {
        h.now += S / 10;
        fx = h.probe("r2", &leader(202, "bbb", "aaa", 1000, &[M, R1]));
        fx.extend(h.probe("r1", &follower(201, R2, "bbb", 1000)));
        fx.extend(h.probe("master", &follower(100, R2, "bbb", 1000)));
    }
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)], "{fx:?}");
    let mut fx = shutdown_ok(&mut h, "master", 100);
    h.now += S;
    fx.extend(h.tick());
    if claims(&fx).contains(&"master".to_owned()) {
        fx.extend(h.grant("master"));
    }
    assert_eq!(launches(&fx), ["master"], "{fx:?}");
    h.launched("master", 400);
    (id, h)
}

/// The role moved away for the master's restart, then somebody moved it on (to r1):
/// it is not taken back from r1.
#[test]
fn a_planned_master_restart_does_not_take_the_role_back_from_a_later_change() {
    let (id, mut h) = master_restarting_with_the_role_on_r2();
    // Meanwhile r1 became master (a failover by hand); master still runs under r2,
    // which follows r1 and lists it.
    h.now += S;
    let mut r2 = follower(202, R1, "ccc", 1100);
    r2.push_str("slave0:ip=127.0.0.1,port=7000,state=online,offset=1100,lag=0\r\n");
    let mut fx = h.probe("r1", &leader(201, "ccc", "bbb", 1100, &[R2]));
    fx.extend(h.probe("r2", &r2));
    fx.extend(h.probe("master", &follower(400, R2, "ccc", 1100)));
    assert_eq!(h.m.actual_master(), "r1");
    let mut next = live(&fx);
    while let Some((name, _)) = next.pop() {
        let more = h.live_applied(&name, Ok(()));
        next = live(&more);
        fx.extend(more);
    }
    h.now += S / 10;
    fx.extend(h.probe("r1", &leader(201, "ccc", "bbb", 1100, &[R2])));
    fx.extend(h.probe("r2", &r2));
    fx.extend(h.probe("master", &follower(400, R2, "ccc", 1100)));
    assert!(failovers(&fx).is_empty(), "not handed back: {fx:?}");
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with(
            "master: the role is not handed back: the group's master changed meanwhile (`r1`"
        )),
        "{lines:?}"
    );
    assert_eq!(h.m.actual_master(), "r1");
}

#[test]
fn a_master_restart_with_no_replica_online_is_in_place_and_says_so() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: false,
    });
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)]);
    let mut fx = shutdown_ok(&mut h, "master", 100);
    fx.extend(h.tick());
    h.launched("master", 400);
    fx.extend(h.probe("master", &master_info(400, &[])));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert!(
        lines[0].contains("restarts in place, no replica is online"),
        "{lines:?}"
    );
}

#[test]
fn the_endpoint_view_lists_every_instance_with_its_last_probe_and_the_actual_master() {
    let mut h = H::new(SEED, "a");
    h.tick();
    let v = h.m.endpoint_view(h.now);
    assert!(
        v.members.iter().all(|m| m.probe.is_none()),
        "nothing probed yet"
    );
    let names: Vec<&str> = v.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["master", "r1", "r2"]);
    assert_eq!(v.members[1].upstream.as_deref(), Some("master"));
    assert_eq!(
        v.master,
        crate::endpoints::GroupMaster::Named {
            name: "master".into(),
            by: "the daemons' view"
        }
    );
    // health_interval 1 s plus twice the probe's 1 s timeout.
    assert_eq!(v.max_age, 3 * S);
    h.probe_err("r2", "connection refused");
    let v = h.m.endpoint_view(h.now);
    let r2 = v.members.iter().find(|m| m.name == "r2").unwrap();
    let probe = r2.probe.as_ref().expect("probed");
    assert_eq!(probe.at, h.now);
    assert_eq!(probe.result.as_ref().unwrap_err(), "connection refused");
}

#[test]
fn one_failed_probe_of_a_replica_does_not_turn_its_live_re_point_into_a_restart() {
    let mut h = H::all_up(SEED);
    h.now += S;
    h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    probe_before(&mut h);
    h.now += S / 10;
    h.role_changed("r1", Ok(()));
    h.probe("master", &follower(100, R1, "bbb", 1000));
    h.probe("r2", &follower(202, M, "aaa", 1000));
    // r2's newest probe met a reset connection (a client drop on the old master, a busy
    // machine); its answer just before still says where it stands.
    h.probe_err("r2", "Connection reset by peer");
    let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M]));
    let mut changes = Vec::new();
    while let Some((name, what)) = live(&fx).pop() {
        changes.push((name.clone(), what));
        fx = h.feed(Input::LiveApplied {
            name,
            result: Ok(()),
        });
    }
    assert!(
        changes.contains(&("r2".into(), "re-pointed to r1".into())),
        "{changes:?}"
    );
    assert!(shutdowns(&fx).is_empty(), "no restart: {fx:?}");
}

/// `r2` (with `r1` on host b) restarted by request and launched again under the master
/// as pid 302, answering but not yet in sync. The request's id, and the machine.
fn r2_restarting_under_the_master() -> (RequestId, H) {
    let mut h = H::a_up_r1_on_b();
    h.now += S;
    h.probe("r1", &follower(201, M, "aaa", 1000));
    h.probe("master", &leader(100, "aaa", "0", 1000, &[R1, R2]));
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["r2".into()],
        force: false,
    });
    assert_eq!(shutdowns(&fx), [("r2".to_owned(), false)], "{fx:?}");
    shutdown_ok(&mut h, "r2", 202);
    h.tick();
    h.grant("r2");
    h.launched("r2", 302);
    h.probe("r2", &follower(302, M, "aaa", 1000));
    assert_eq!(h.kind("r2"), Kind::Syncing);
    (id, h)
}

#[test]
fn a_replica_restarted_while_the_master_changes_is_in_sync_through_its_old_upstream_then_re_pointed()
 {
    // Found by the fault checker (seed 7500, `restart --all`): another daemon's failover
    // came while `r2` restarted here. It runs under the old master, which now follows
    // the new one: that is in sync, and the re-point comes once the restart is done,
    // rather than after `sync_timeout`.
    let (id, mut h) = r2_restarting_under_the_master();
    // Meanwhile r1 became master elsewhere; the old master follows it and lists r2.
    h.now += S;
    let mut old_master = follower(100, R1, "bbb", 1000);
    old_master.push_str("slave0:ip=127.0.0.3,port=7002,state=online,offset=1000,lag=0\r\n");
    let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M]));
    fx.extend(h.probe("r2", &follower(302, M, "bbb", 1000)));
    fx.extend(h.probe("master", &old_master));
    assert_eq!(h.m.actual_master(), "r1");
    assert_eq!(h.kind("r2"), Kind::Running, "{:?}", h.m.state("r2"));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    // Then the queued re-point, live (its resync with r1 is sure to be partial), after
    // the old master's own settings.
    h.now += S / 10;
    let mut changes = live(&fx);
    fx.extend(h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M])));
    fx.extend(h.probe("r2", &follower(302, M, "bbb", 1000)));
    fx.extend(h.probe("master", &old_master));
    changes.extend(live(&fx));
    while let Some((name, _)) = live(&fx).pop() {
        fx = h.live_applied(&name, Ok(()));
        changes.extend(live(&fx));
    }
    assert!(
        changes.contains(&("r2".into(), "re-pointed to r1".into())),
        "{changes:?}"
    );
}

/// The same, but the old master is not in sync with the new one (its link is down): `r2`
/// has not got the group's data through it, and is not in sync.
#[test]
fn a_replica_under_an_old_upstream_not_in_sync_with_the_new_master_is_not_in_sync() {
    let (id, mut h) = r2_restarting_under_the_master();
    h.now += S;
    let old_master = follower(100, R1, "bbb", 1000)
        .replace("master_link_status:up", "master_link_status:down")
        + "slave0:ip=127.0.0.3,port=7002,state=online,offset=1000,lag=0\r\n";
    let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[]));
    fx.extend(h.probe("r2", &follower(302, M, "bbb", 1000)));
    fx.extend(h.probe("master", &old_master));
    assert_eq!(h.m.actual_master(), "r1");
    assert_eq!(h.kind("r2"), Kind::Syncing, "{:?}", h.m.state("r2"));
    assert!(reply(&fx, id).is_none(), "{fx:?}");
}

/// A planned master restart with nobody moving the role meanwhile: the role goes to the
/// most advanced replica and comes back to the restarted master.
#[test]
fn a_planned_master_restart_hands_the_role_back() {
    let (id, mut h) = master_restarting_with_the_role_on_r2();
    h.now += S;
    let mut fx = h.probe("master", &follower(400, R2, "bbb", 1100));
    fx.extend(h.probe("r1", &follower(201, R2, "bbb", 1100)));
    fx.extend(h.probe("r2", &leader(202, "bbb", "aaa", 1100, &[M, R1])));
    assert_eq!(failovers(&fx), ["master"], "handed back: {fx:?}");
    assert!(reply(&fx, id).is_none(), "not before the role is back");
}
