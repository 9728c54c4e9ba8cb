//! Probes handed over as one batch (`Machine::handle_probes`, as the runtime does with
//! the answers of a round that queued up): the same outcome as one by one, with one step.

use super::*;

/// A machine with the master running and `r1` just launched (its gate place granted).
fn r1_launched() -> H {
    let mut h = H::r1_launched(SEED);
    assert_eq!(h.kind("r1"), Kind::Starting);
    h.now += Duration::from_millis(10);
    h
}

#[test]
fn a_round_in_one_batch_ends_where_one_probe_at_a_time_does() {
    // Either order of the round's answers: the replica's own, then its master's, which
    // shows it in sync; or the master's first.
    let round = [
        ("r1", replica_info(201, 1000)),
        ("master", master_info(100, &[R1])),
    ];
    for reversed in [false, true] {
        let mut order = round.to_vec();
        if reversed {
            order.reverse();
        }
        let mut one_by_one = r1_launched();
        let mut fx_one = Vec::new();
        for (name, info) in &order {
            fx_one.extend(one_by_one.probe(name, info));
        }
        let mut batched = r1_launched();
        let probes: Vec<(&str, Result<String, &str>)> =
            order.iter().map(|(n, i)| (*n, Ok(i.clone()))).collect();
        let fx_batch = batched.batch(&probes);
        for name in ["master", "r1", "r2"] {
            assert_eq!(
                batched.kind(name),
                one_by_one.kind(name),
                "{name}, {order:?}"
            );
        }
        assert_eq!(batched.kind("r1"), Kind::Running, "{order:?}");
        // The next replica asks for its place at the step after the batch.
        assert_eq!(claims(&fx_batch), claims(&fx_one), "{order:?}");
        assert_eq!(claims(&fx_batch), ["r2"], "{order:?}");
    }
}

#[test]
fn a_batch_of_one_is_a_probe() {
    let mut one = r1_launched();
    let mut batched = r1_launched();
    let fx_one = one.probe("r1", &replica_info(201, 1000));
    let fx_batch = batched.batch(&[("r1", Ok(replica_info(201, 1000)))]);
    assert_eq!(format!("{fx_batch:?}"), format!("{fx_one:?}"));
    assert_eq!(batched.kind("r1"), Kind::Syncing);
}

#[test]
fn a_status_is_answered_by_the_first_batch_asked_after_it() {
    let mut h = H::all_up(SEED);
    h.now += Duration::from_millis(10);
    let (id, fx) = h.request(Request::Status);
    assert!(fx.iter().any(|e| matches!(e, Effect::ProbeNow)));
    let round = |h: &mut H, ago| {
        h.batch_asked(
            ago,
            &[
                ("master", Ok(master_info(100, &[R1, R2]))),
                ("r1", Ok(replica_info(201, 1000))),
                ("r2", Ok(replica_info(202, 1000))),
            ],
        )
    };
    // A round asked before the question (under way when it came) does not answer it.
    let fx = round(&mut h, Duration::from_millis(5));
    assert!(reply(&fx, id).is_none(), "{fx:?}");
    // Nor one that misses an instance.
    let fx = h.batch(&[
        ("master", Ok(master_info(100, &[R1, R2]))),
        ("r1", Ok(replica_info(201, 1000))),
    ]);
    assert!(reply(&fx, id).is_none(), "{fx:?}");
    let fx = h.batch(&[("r2", Err("timed out waiting for a reply"))]);
    let Some(Response::Status { instances, .. }) = reply(&fx, id) else {
        panic!("{fx:?}")
    };
    // Every instance was asked after the question, r2 too (its answer a timeout).
    assert_eq!(instances.len(), 3, "{instances:?}");
}

#[test]
fn a_change_of_master_seen_in_one_batch_is_learned_once() {
    let text = r1_on_b();
    let mut h = H::new(&text, "a");
    let fx = h.probe_err("r1", "connection refused");
    assert_eq!(launches(&fx), ["master"]);
    h.launched("master", 100);
    h.probe("master", &master_info(100, &[]));
    h.replica_up("r2", 202, &[R2]);
    // Someone failed over to r1 (another daemon, or by hand): the whole round at once.
    h.now += S;
    let fx = h.batch(&[
        ("r2", Ok(follower(202, R1, "bbb", 1000))),
        (
            "r1",
            Ok(leader(201, "bbb", "aaa", 1000, &[("127.0.0.1", 7000), R2])),
        ),
        ("master", Ok(follower(100, R1, "bbb", 1000))),
    ]);
    assert_eq!(saved(&fx), ["r1"]);
    assert_eq!(h.m.actual_master(), "r1");
}
