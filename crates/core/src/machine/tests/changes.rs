//! Changes of master as they are recorded (history, hook, dropped clients), and the
//! repairs: a replication loop, a replica under the wrong upstream, a stale re-point.

use super::*;

#[test]
fn a_replication_loop_is_repaired_by_making_the_most_advanced_master() {
    let mut h = H::all_up(SEED);
    // A stale re-point crossed a failover back: master and r1 replicate from each other.
    let probe_all = |h: &mut H| {
        let mut fx = h.probe("master", &follower(100, R1, "ccc", 1000));
        fx.extend(h.probe("r1", &follower(201, M, "ccc", 1000)));
        fx.extend(h.probe("r2", &follower(202, M, "ccc", 900)));
        fx
    };
    let fx = probe_all(&mut h);
    assert!(
        made_master(&fx).is_empty(),
        "not at once: a failover may be in flight"
    );
    h.now += 2 * S;
    assert!(made_master(&probe_all(&mut h)).is_empty());
    h.now += 4 * S;
    let fx = probe_all(&mut h);
    assert_eq!(
        made_master(&fx),
        ["master"],
        "as advanced as r1, and the configured master"
    );
    let fx = h.role_changed("master", Ok(()));
    assert!(made_master(&fx).is_empty());
    assert_eq!(h.m.actual_master(), "master");
}

#[test]
fn a_re_point_planned_before_the_master_changed_again_is_dropped_or_guarded() {
    let mut h = H::all_up(SEED);
    h.now += S;
    // r1 is master (a failover made by daemon b), while `master` still answers as master
    // (it is in the middle of that FAILOVER): this daemon plans to re-point `master`.
    let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[R2]));
    fx.extend(h.probe("r2", &follower(202, R1, "bbb", 1000)));
    fx.extend(h.probe("master", &leader(100, "aaa", "0", 1000, &[])));
    assert_eq!(h.m.actual_master(), "r1");
    // Before the re-point runs, the master took the role back and the group says so.
    h.now += S;
    fx.extend(h.probe("r1", &follower(201, M, "ccc", 1200)));
    fx.extend(h.probe("r2", &follower(202, M, "ccc", 1200)));
    fx.extend(h.probe("master", &leader(100, "ccc", "bbb", 1200, &[R1, R2])));
    fx.extend(h.tick());
    assert_eq!(h.m.actual_master(), "master");
    // The first change's steps go on (r1's settings applied), up to `master`'s re-point.
    for _ in 0..3 {
        for n in ["r1", "r2", "master"] {
            fx.extend(h.live_applied(n, Ok(())));
        }
        h.now += S;
        fx.extend(h.tick());
    }
    // Either the re-point of `master` to r1 was never handed out (dropped: planned for the
    // change of roles before), or it goes with what r1 was when decided — a master — so
    // that it is not sent now that r1 replicates.
    for e in &fx {
        if let Effect::ApplyLive {
            name,
            change,
            target,
            ..
        } = e
            && name == "master"
            && matches!(&change.repoint, Some(Some(up)) if up.name == "r1")
        {
            assert!(
                matches!(target, Some((_, crate::info::Replication::Master))),
                "{e:?}"
            );
        }
    }
}

#[test]
fn a_replica_left_under_the_wrong_upstream_is_re_pointed_once_settled() {
    // A daemon killed before it re-pointed r2 to r1 (the master again after a catch-up):
    // the new one keeps r1 from its file and finds r2 still under `master`.
    let mut h = H::all_up(SEED);
    h.m.restore_topology("r1");
    let probe_all = |h: &mut H| {
        let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M]));
        fx.extend(h.probe("master", &follower(100, R1, "bbb", 1000)));
        fx.extend(h.probe("r2", &follower(202, M, "bbb", 1000)));
        fx.extend(h.tick());
        fx
    };
    let fx = probe_all(&mut h);
    assert!(live(&fx).is_empty(), "not at once: {:?}", live(&fx));
    h.now += 3 * S;
    let fx = probe_all(&mut h);
    assert_eq!(
        live(&fx),
        [("r2".to_owned(), "re-pointed to r1".to_owned())]
    );
}

/// The changes of master recorded: (old, new, reason, replication id).
fn changes(fx: &[Effect]) -> Vec<(String, String, crate::changes::Reason, Option<String>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::MasterChanged(c) => {
                Some((c.old.clone(), c.new.clone(), c.reason, c.repl_id.clone()))
            }
            _ => None,
        })
        .collect()
}

fn dropped(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::DropClients { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failover_is_recorded_once_and_the_demoted_master_drops_its_clients_at_once() {
    use crate::changes::Reason;
    let mut h = H::all_up(SEED);
    h.now += S;
    h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    let fx = probe_before(&mut h);
    assert_eq!(failovers(&fx), ["r1"]);
    assert!(dropped(&fx).is_empty(), "not while it is master");
    h.now += S / 10;
    let fx = h.role_changed("r1", Ok(()));
    // INFO asked before FAILOVER knows nothing of r1's new id: the runtime asks it.
    assert_eq!(
        changes(&fx),
        [("master".into(), "r1".into(), Reason::Failover, None)]
    );
    assert_eq!(dropped(&fx), ["master"]);
    // Its next probes say replica: nothing more is dropped, nothing recorded again.
    let mut fx = h.probe("master", &follower(100, R1, "bbb", 1000));
    fx.extend(h.probe("r2", &follower(202, M, "aaa", 1000)));
    fx.extend(h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M])));
    fx.extend(h.probe("master", &follower(100, R1, "bbb", 1000)));
    assert!(dropped(&fx).is_empty(), "{fx:?}");
    assert!(changes(&fx).is_empty(), "{fx:?}");
}

#[test]
fn a_change_learned_from_the_group_is_recorded_with_the_new_masters_id_and_drops_clients() {
    use crate::changes::Reason;
    let mut h = H::a_up_r1_on_b();
    // Another daemon failed over to r1: the local old master says replica now.
    h.now += S;
    let mut fx = h.probe("r2", &follower(202, R1, "bbb", 1000));
    fx.extend(h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M, R2])));
    fx.extend(h.probe("master", &follower(100, R1, "bbb", 1000)));
    assert_eq!(
        changes(&fx),
        [(
            "master".into(),
            "r1".into(),
            Reason::Learned,
            Some("bbb".into())
        )]
    );
    assert_eq!(dropped(&fx), ["master"], "{fx:?}");
    // A replica that was never master drops nothing; a relaunched process neither.
    let fx = h.probe("r2", &follower(202, R1, "bbb", 1100));
    assert!(dropped(&fx).is_empty());
}

#[test]
fn a_promotion_and_a_catch_up_are_recorded_with_their_reasons() {
    use crate::changes::Reason;
    let mut h = H::all_up(SEED);
    h.now += S;
    h.request(Request::Promote {
        instance: "r2".into(),
        force: false,
    });
    h.probe_err("master", "connection refused");
    h.probe("r1", &follower(201, M, "aaa", 900));
    h.probe("r2", &follower(202, M, "aaa", 1000));
    let fx = h.role_changed("r2", Ok(()));
    assert_eq!(
        changes(&fx),
        [("master".into(), "r2".into(), Reason::Promote, None)]
    );
    assert!(
        dropped(&fx).is_empty(),
        "a promotion demotes nobody it can reach"
    );

    // The catch-up: two changes, both `catch-up`.
    let mut h = H::all_up(SEED);
    h.probe("r1", &follower(201, M, "aaa", 1000));
    h.probe("r2", &follower(202, M, "aaa", 1200));
    let fx = crash(
        &mut h,
        &follower(201, M, "aaa", 1000),
        &follower(202, M, "aaa", 1200),
    );
    assert_eq!(made_master(&fx), ["r2"]);
    let mut all = h.role_changed("r2", Ok(()));
    h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[]));
    let fx = h.tick();
    launch_conf(&mut h, fx, "master");
    h.launched("master", 101);
    h.probe("master", &follower(101, R2, "ccc", 1200));
    h.probe("r1", &follower(201, R2, "ccc", 1200));
    let fx = h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[M, R1]));
    assert_eq!(failovers(&fx), ["master"]);
    all.extend(h.role_changed("master", Ok(())));
    let got: Vec<(String, String, Reason)> = changes(&all)
        .into_iter()
        .map(|(o, n, r, _)| (o, n, r))
        .collect();
    assert_eq!(
        got,
        [
            ("master".into(), "r2".into(), Reason::CatchUp),
            ("r2".into(), "master".into(), Reason::CatchUp)
        ]
    );
    assert_eq!(dropped(&all), ["r2"], "the source handed the role back");
}

#[test]
fn once_its_instances_are_up_the_daemon_runs_the_hook_once_for_the_master_it_knows() {
    use crate::changes::Reason;
    let text = SEED
        .split("[[instance]]\nname = \"r1\"")
        .next()
        .expect("the master alone");
    let mut h = H::new(text, "a");
    let fx = h.master_up();
    assert!(notifies(&fx).contains(&Notify::Ready), "{fx:?}");
    assert_eq!(
        changes(&fx),
        [("master".into(), "master".into(), Reason::Start, None)]
    );
    let fx = h.probe("master", &master_info(100, &[]));
    assert!(changes(&fx).is_empty(), "once: {fx:?}");
}
