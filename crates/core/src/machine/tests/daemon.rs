//! systemd, the daemon's own shutdown, status requests.

use std::time::Duration;

use super::*;
use crate::control::{Request, Response};

#[test]
fn ready_is_sent_once_when_the_masters_run_and_the_replicas_were_started() {
    let mut h = H::new(SEED, "a");
    let mut sent = Vec::new();
    sent.extend(notifies(&h.tick()));
    h.launched("master", 100);
    sent.extend(notifies(&h.probe("master", &master_info(100, &[]))));
    assert!(!sent.contains(&Notify::Ready), "replicas not started yet");
    h.tick();
    h.grant("r1");
    sent.extend(notifies(&h.launched("r1", 201)));
    assert!(!sent.contains(&Notify::Ready), "r2 still waits in the gate");
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    h.replica_up("r2", 202, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]);
    sent.clear();
    for _ in 0..3 {
        sent.extend(notifies(&h.advance(S)));
    }
    // Ready went out exactly once over the whole start-up.
    let mut h2 = H::new(SEED, "a");
    let mut all = notifies(&h2.tick());
    h2.launched("master", 100);
    all.extend(notifies(&h2.probe("master", &master_info(100, &[]))));
    for (name, pid, online) in [
        ("r1", 201, vec![("127.0.0.2", 7001)]),
        ("r2", 202, vec![("127.0.0.2", 7001), ("127.0.0.3", 7002)]),
    ] {
        all.extend(notifies(&h2.tick()));
        all.extend(notifies(&h2.grant(name)));
        all.extend(notifies(&h2.launched(name, pid)));
        all.extend(notifies(&h2.probe(name, &replica_info(pid, 1000))));
        all.extend(notifies(&h2.probe("master", &master_info(100, &online))));
    }
    for _ in 0..3 {
        all.extend(notifies(&h2.advance(S)));
    }
    assert_eq!(
        all.iter().filter(|n| **n == Notify::Ready).count(),
        1,
        "{all:?}"
    );
    assert!(
        all.contains(&Notify::Status("3/3 online".into())),
        "{all:?}"
    );
}

#[test]
fn ready_is_not_held_back_by_a_replica_whose_upstream_host_is_down() {
    // Host b runs only replicas of a master on host a, which is down.
    let mut h = H::new(r1_on_b().as_str(), "b");
    let mut fx = h.tick();
    assert!(launches(&fx).is_empty());
    fx.extend(h.probe_err("master", "connection refused"));
    assert!(notifies(&fx).contains(&Notify::Ready), "{fx:?}");
    assert!(h.waits_for_upstream("r1", "master"));
}

#[test]
fn sigterm_stops_the_replicas_together_then_the_master_and_a_second_sigterm_does_not_wait() {
    let mut h = H::all_up(SEED);
    let fx = h.feed(Input::Terminate);
    assert!(notifies(&fx).contains(&Notify::Stopping));
    let mut first = shutdowns(&fx);
    first.sort();
    assert_eq!(
        first,
        [("r1".to_owned(), false), ("r2".to_owned(), false)],
        "the replicas at once, the master after them"
    );
    let fx = shutdown_ok(&mut h, "r2", 202);
    assert!(shutdowns(&fx).is_empty(), "the master waits for r1: {fx:?}");
    let fx = h.feed(Input::Terminate);
    assert_eq!(
        shutdowns(&fx),
        [("master".to_owned(), false)],
        "a second signal: the rest at once, still saving"
    );
    shutdown_ok(&mut h, "r1", 201);
    let fx = shutdown_ok(&mut h, "master", 100);
    assert!(fx.iter().any(|e| matches!(e, Effect::Exit(0))), "{fx:?}");
    assert!(h.tick().is_empty(), "nothing after the exit");
}

#[test]
fn sigterm_stops_the_master_once_every_replica_is_stopped() {
    let mut h = H::all_up(SEED);
    h.feed(Input::Terminate);
    shutdown_ok(&mut h, "r1", 201);
    let fx = shutdown_ok(&mut h, "r2", 202);
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)], "{fx:?}");
}

#[test]
fn the_daemon_exits_one_when_an_instance_was_left_running_because_its_save_failed() {
    let text = SEED[..SEED.find("[[instance]]\nname = \"r1\"").unwrap()].to_owned();
    let mut h = H::new(&text, "a");
    h.master_up();
    h.feed(Input::Terminate);
    let fx = h.save_refused("master", 100);
    assert!(fx.iter().any(|e| matches!(e, Effect::Exit(1))), "{fx:?}");
}

#[test]
fn requests_are_refused_while_shutting_down_but_status_is_answered() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.feed(Input::Terminate);
    let (id, fx) = h.request(Request::Start { instances: vec![] });
    assert!(
        matches!(reply(&fx, id), Some(Response::Error { message }) if message.contains("shutting down"))
    );
    let (id, _) = h.request(Request::Status);
    let fx = h.advance(Duration::from_secs(4));
    assert!(matches!(reply(&fx, id), Some(Response::Status { .. })));
}

#[test]
fn a_request_naming_an_instance_of_another_host_is_refused() {
    let mut h = H::new(SEED, "a");
    let (id, fx) = h.stop("nope", false);
    assert!(
        matches!(reply(&fx, id), Some(Response::Error { message }) if message.contains("`nope` is not run by this daemon (host `a`)"))
    );
}

#[test]
fn status_is_answered_from_probes_asked_after_the_request() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    h.tick();
    h.grant("r2");
    h.launched("r2", 202);
    h.probe("r2", &replica_info(202, 0));
    assert_eq!(h.kind("r2"), Kind::Syncing);
    h.now += Duration::from_millis(10);
    let (id, fx) = h.request(Request::Status);
    assert!(fx.iter().any(|e| matches!(e, Effect::ProbeNow)));
    assert!(
        reply(&fx, id).is_none(),
        "not from probes older than the question"
    );
    let both = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];
    assert!(reply(&h.probe("master", &master_info(100, &both)), id).is_none());
    assert!(reply(&h.probe("r1", &replica_info(201, 1000)), id).is_none());
    let fx = h.probe("r2", &replica_info(202, 1000));
    let Some(Response::Status { instances, .. }) = reply(&fx, id) else {
        panic!("{fx:?}")
    };
    let r2 = instances.iter().find(|s| s.name == "r2").unwrap();
    assert_eq!(r2.state, crate::status::StateLabel::Running);
    assert_eq!(r2.master_link_status.as_deref(), Some("up"));
}

#[test]
fn a_status_request_is_answered_after_a_while_even_when_an_instance_does_not_answer() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let asked = h.now;
    let (id, _) = h.request(Request::Status);
    assert!(reply(&h.advance(Duration::from_secs(2)), id).is_none());
    assert!(h.m.next_deadline(h.now) <= asked + Duration::from_secs(3));
    let fx = h.advance(Duration::from_secs(1));
    assert!(
        matches!(reply(&fx, id), Some(Response::Status { .. })),
        "{fx:?}"
    );
}

#[test]
fn a_silent_running_instance_is_reported_not_killed() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.probe_err("master", "timed out waiting for a reply");
    let fx = h.advance(Duration::from_secs(60));
    assert!(signals(&fx).is_empty());
    let status = h.m.status(h.now);
    assert!(
        status[0]
            .warnings
            .iter()
            .any(|w| w.contains("not answering INFO"))
    );
    assert_eq!(h.kind("master"), Kind::Running);
}

#[test]
fn a_stopped_replica_gives_its_gate_place_back() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.tick();
    assert_eq!(h.kind("r1"), Kind::Waiting);
    let (_, fx) = h.stop("r1", false);
    assert_eq!(releases(&fx), ["r1"]);
    assert_eq!(h.kind("r1"), Kind::Stopped);
    // A late answer to the claim changes nothing.
    h.grant("r1");
    assert_eq!(h.kind("r1"), Kind::Stopped);
}

#[test]
fn the_machine_asks_to_probe_every_local_instance_and_every_other_one() {
    let text = r1_on_b();
    let mut h = H::new(&text, "b");
    let fx = h.tick();
    let targets = fx
        .iter()
        .find_map(|e| match e {
            Effect::ProbeTargets(t) => Some(t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()),
            _ => None,
        })
        .expect("targets");
    assert_eq!(targets, ["r1", "master", "r2"]);
    assert!(
        !h.tick()
            .iter()
            .any(|e| matches!(e, Effect::ProbeTargets(_))),
        "only on change"
    );
}
