//! Sentinel mode: sentinels supervised like instances, the master they name obeyed, and
//! the master role moved through Sentinel before the master goes down.

use super::*;

/// SEED with three sentinels: s1 on this host `a`, s2 and s3 on `b`.
pub(super) fn text() -> String {
    format!(
        "{SEED}\n[sentinel]\nquorum = 2\ndown_after = \"1s\"\nfailover_timeout = \"10s\"\nnodes = [\n\
         {{ name = \"s1\", host = \"a\", bind = \"127.0.0.10\", port = 26379 }},\n\
         {{ name = \"s2\", host = \"b\", bind = \"127.0.0.11\", port = 26379 }},\n\
         {{ name = \"s3\", host = \"b\", bind = \"127.0.0.12\", port = 26379 }},\n]\n"
    )
}

/// A sentinel's INFO naming `master` (ip, port) for the cluster `t`.
pub(super) fn sentinel_info(pid: u32, master: (&str, u16)) -> String {
    format!(
        "redis_mode:sentinel\r\nprocess_id:{pid}\r\nmaster0:name=t,status=ok,address={}:{},slaves=2,sentinels=3\r\n\
         sentinel_master_addr:{}:{}\r\n",
        master.0, master.1, master.0, master.1
    )
}

const M: (&str, u16) = ("127.0.0.1", 7000);
const R1: (&str, u16) = ("127.0.0.2", 7001);

fn launched_sentinel(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch(spec) if spec.sentinel => Some(spec.name.clone()),
            _ => None,
        })
        .collect()
}

/// The other sentinels do not answer (and the local one is launching): the master starts
/// as the last known master.
fn no_sentinel_answers_then_master_up(h: &mut H) {
    h.tick();
    h.probe_err("s2", "connection refused");
    let fx = h.probe_err("s3", "connection refused");
    assert!(launches(&fx).contains(&"master".to_owned()), "{fx:?}");
    h.launched("master", 100);
    h.probe("master", &master_info(100, &[]));
}

#[test]
fn the_local_sentinel_starts_at_once_and_restarts_after_a_crash() {
    let mut h = H::new(&text(), "a");
    let fx = h.tick();
    assert_eq!(launched_sentinel(&fx), ["s1"]);
    h.launched("s1", 900);
    h.probe("s1", &sentinel_info(900, M));
    assert_eq!(h.kind("s1"), Kind::Running);
    h.exited("s1", 900, "killed by SIGKILL");
    assert_eq!(h.kind("s1"), Kind::Backoff);
    let fx = h.advance(2 * S);
    assert_eq!(launched_sentinel(&fx), ["s1"]);
}

#[test]
fn a_majority_of_the_sentinels_names_the_master_a_single_one_does_not() {
    let mut h = H::new(&text(), "a");
    h.tick();
    h.launched("s1", 900);
    h.probe("s1", &sentinel_info(900, M));
    h.now += S;
    // One sentinel names r1: not enough.
    let fx = h.probe("s2", &sentinel_info(901, R1));
    assert!(saved(&fx).is_empty());
    assert_eq!(h.m.actual_master(), "master");
    // A second one: a majority of three.
    let fx = h.probe("s3", &sentinel_info(902, R1));
    assert_eq!(saved(&fx), ["r1"]);
    assert_eq!(h.m.actual_master(), "r1");
    let recorded: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::MasterChanged(c) => Some((c.old.as_str(), c.new.as_str(), c.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [("master", "r1", crate::changes::Reason::Sentinel)]
    );
}

#[test]
fn a_master_waits_while_the_sentinels_disagree_and_starts_when_they_name_it() {
    let mut h = H::new(&text(), "a");
    // s1 (local) is launching; the others answer, disagreeing.
    h.tick();
    h.probe("s2", &sentinel_info(901, M));
    let fx = h.probe("s3", &sentinel_info(902, R1));
    assert!(launches(&fx).iter().all(|n| n != "master"), "{fx:?}");
    // s3 comes round: both name the master.
    let fx = h.probe("s3", &sentinel_info(902, M));
    assert!(launches(&fx).contains(&"master".to_owned()), "{fx:?}");
}

#[test]
fn failover_goes_through_sentinel_and_promote_is_refused() {
    let mut h = H::new(&text(), "a");
    no_sentinel_answers_then_master_up(&mut h);
    let (id, fx) = h.request(Request::Promote {
        instance: "r1".into(),
        force: false,
    });
    assert!(
        matches!(reply(&fx, id), Some(Response::Error { message }) if message.contains("Sentinel decides"))
    );
    let (id, fx) = h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    assert!(matches!(reply(&fx, id), Some(Response::Error { .. })));
    let (_, fx) = h.request(Request::Failover {
        to: None,
        force: false,
    });
    assert!(
        fx.iter().any(
            |e| matches!(e, Effect::SentinelFailover { master_name, .. } if master_name == "t")
        ),
        "{fx:?}"
    );
}

#[test]
fn restarting_the_master_asks_the_sentinels_to_move_the_role_first() {
    let mut h = H::new(&text(), "a");
    no_sentinel_answers_then_master_up(&mut h);
    h.replica_up("r1", 201, &[R1]);
    h.replica_up("r2", 202, &[R1, ("127.0.0.3", 7002)]);
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: false,
    });
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::SentinelFailover { .. })),
        "{fx:?}"
    );
    assert!(shutdowns(&fx).is_empty(), "not before the role moved");
    h.feed(Input::SentinelAsked { result: Ok(()) });
    // The sentinels name r1 now: the master is stopped (and comes back as r1's replica).
    h.now += S;
    h.probe("s1", &sentinel_info(900, R1));
    let mut fx = h.probe("s2", &sentinel_info(901, R1));
    assert_eq!(saved(&fx), ["r1"]);
    fx.extend(h.tick());
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)], "{fx:?}");
    assert!(reply(&fx, id).is_none(), "the restart goes on");
}

#[test]
fn the_endpoints_master_is_the_sentinels_majority_or_the_last_one_when_none_answers() {
    use crate::endpoints::GroupMaster;
    let mut h = H::new(&text(), "a");
    h.tick();
    // None answers: the last master they named (the file's, here).
    h.probe_err("s2", "connection refused");
    h.probe_err("s3", "connection refused");
    let named = |h: &H| match h.m.endpoint_view(h.now).master {
        GroupMaster::Named { name, by } => Ok((name, by)),
        GroupMaster::Unknown(why) => Err(why),
    };
    let (name, by) = named(&h).unwrap();
    assert_eq!(name, "master");
    assert!(by.contains("none answers"), "{by}");
    // They answer and disagree: no master.
    h.now += S;
    h.probe("s2", &sentinel_info(901, R1));
    h.probe("s3", &sentinel_info(902, M));
    let why = named(&h).unwrap_err();
    assert!(why.contains("do not agree"), "{why}");
    // A majority names r1.
    h.probe("s3", &sentinel_info(902, R1));
    assert_eq!(
        named(&h).unwrap(),
        ("r1".to_owned(), "named by a majority of the sentinels")
    );
}

/// Certificates rotated in place: the instances load them again live (`CONFIG SET` of the
/// same paths, together), and the local sentinel, which cannot, restarts after them.
#[test]
fn rotated_certificates_are_set_live_on_instances_and_restart_the_sentinel() {
    let text = format!(
        "{}\n[tls]\ncert_file = \"tls/r.crt\"\nkey_file = \"tls/r.key\"\nca_file = \"tls/ca.crt\"\n",
        text()
    );
    let mut h = H::new(&text, "a");
    no_sentinel_answers_then_master_up(&mut h);
    h.launched("s1", 900);
    h.probe("s1", &sentinel_info(900, M));
    assert_eq!(h.kind("s1"), Kind::Running);
    let mut rotated = group(&text);
    if let Some(tls) = rotated.tls.as_mut() {
        tls.contents = Some(7);
    }
    h.feed(Input::ReloadRequested { id: Some(5) });
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(5),
        result: Ok(Box::new(loaded(rotated))),
    });
    let live: Vec<(String, Vec<(String, String)>)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::ApplyLive { name, change, .. } => Some((
                name.clone(),
                change
                    .set
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        live,
        [(
            "master".to_owned(),
            vec![
                ("tls-cert-file".to_owned(), "/t/tls/r.crt".to_owned()),
                ("tls-key-file".to_owned(), "/t/tls/r.key".to_owned()),
                ("tls-ca-cert-file".to_owned(), "/t/tls/ca.crt".to_owned()),
            ]
        )],
        "{fx:?}"
    );
    assert!(shutdowns(&fx).is_empty(), "nothing restarts before: {fx:?}");
    let fx = h.live_applied("master", Ok(()));
    assert_eq!(shutdowns(&fx), [("s1".to_owned(), false)], "{fx:?}");
}
