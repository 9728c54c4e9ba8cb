//! Reload: the diff applied, refusals, passwords in place.

use super::*;
use crate::control::Response;

#[test]
fn reload_applies_the_diff_and_leaves_the_rest_running() {
    let mut h = H::all_up(SEED);
    // r2 removed, r1 changed in a way only a restart applies, r3 added; the master
    // unchanged.
    let mut text = SEED[..SEED.find("[[instance]]\nname = \"r2\"").unwrap()].to_owned();
    text = text.replace(
        "replica_of = \"master\"\n",
        "replica_of = \"master\"\n[instance.redis]\ndatabases = \"32\"\n",
    );
    text.push_str(
        "\n[[instance]]\nname = \"r3\"\nhost = \"a\"\nbind = \"127.0.0.4\"\nport = 7003\nreplica_of = \"master\"\n",
    );
    let fx = h.feed(Input::ReloadRequested { id: Some(9) });
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::LoadConfig { id: Some(9), .. }))
    );
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(9),
        result: Ok(Box::new(loaded(group(&text)))),
    });
    assert_eq!(shutdowns(&fx), [("r2".to_owned(), false)], "removed first");
    let fx = shutdown_ok(&mut h, "r2", 202);
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)], "then changed");
    assert!(
        h.m.state("r2").is_none(),
        "a removed instance is forgotten once stopped"
    );
    shutdown_ok(&mut h, "r1", 201);
    h.grant("r1");
    h.launched("r1", 301);
    h.probe("r1", &replica_info(301, 1000));
    let fx = h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert_eq!(claims(&fx), ["r3"], "then added");
    h.grant("r3");
    h.launched("r3", 303);
    h.probe("r3", &replica_info(303, 1000));
    let fx = h.probe(
        "master",
        &master_info(100, &[("127.0.0.2", 7001), ("127.0.0.4", 7003)]),
    );
    let (ok, lines) = done(&fx, 9);
    assert!(ok, "{lines:?}");
    assert_eq!(
        lines[0],
        "reload: 0 changed live, 1 restarted, 1 added, 1 removed, 1 unchanged"
    );
    assert_eq!(h.pid("master"), Some(100), "unchanged: same process");
}

#[test]
fn a_reload_the_checker_refuses_changes_nothing() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(3),
        result: Err("bogus key".into()),
    });
    match reply(&fx, 3) {
        Some(Response::Error { message }) => {
            assert!(message.contains("reload refused, nothing changed: bogus key"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.pid("master"), Some(100));
}

#[test]
fn a_password_change_is_applied_in_place() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let fx = h.reload(1, &SEED.replace("\"pw\"", "\"pw2\""));
    let (change, endpoint) = fx
        .iter()
        .find_map(|e| match e {
            Effect::SetPassword {
                name,
                change,
                new_endpoint,
                ..
            } if name == "master" => Some((change.clone(), new_endpoint.clone())),
            _ => None,
        })
        .expect("SetPassword for the running master");
    let set: Vec<(&str, &str)> = change
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(set, [("masterauth", "pw2"), ("requirepass", "pw2")]);
    assert!(change.users.is_empty() && change.last.is_empty(), "no ACL");
    assert_eq!(endpoint.password.as_ref().map(|p| p.expose()), Some("pw2"));
    assert!(shutdowns(&fx).is_empty(), "no restart");
    let fx = h.feed(Input::PasswordSet {
        name: "master".into(),
        result: Ok(()),
    });
    let (ok, lines) = done(&fx, 1);
    assert!(
        ok && lines.contains(&"master: password changed in place".to_owned()),
        "{lines:?}"
    );
}

/// A reload that changes a directive and adds a sub-replica restarts nothing: the changed
/// directive and the parent's new `repl-diskless-sync-max-replicas` are set live.
#[test]
fn reload_applies_what_the_server_can_change_live_without_a_restart() {
    let mut h = H::all_up(SEED);
    let text = SEED.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nmaxmemory = \"64mb\"",
    ) + "\n[[instance]]\nname = \"leaf\"\nhost = \"a\"\nbind = \"127.0.0.4\"\nport = 7003\nreplica_of = \"r1\"\n";
    let fx = h.reload(4, &text);
    assert!(shutdowns(&fx).is_empty(), "nothing restarts: {fx:?}");
    // The added sub-replica starts first (through r1's gate) ...
    assert_eq!(claims(&fx), ["leaf"]);
    h.grant("leaf");
    h.launched("leaf", 303);
    h.probe("leaf", &replica_info(303, 1000));
    let fx = h.probe(
        "r1",
        &(replica_info(201, 1000)
            + "slave0:ip=127.0.0.4,port=7003,state=online,offset=1000,lag=0\r\n"),
    );
    // ... then the live changes, parents first.
    let live: Vec<(String, Vec<String>)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::ApplyLive { name, change, .. } => Some((
                name.clone(),
                change.set.iter().map(|(k, _)| k.clone()).collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        live,
        [("master".to_owned(), vec!["maxmemory".to_owned()])],
        "{fx:?}"
    );
    let mut fx = h.live_applied("master", Ok(()));
    let r1 = fx
        .iter()
        .find_map(|e| match e {
            Effect::ApplyLive { name, change, .. } if name == "r1" => Some(change.clone()),
            _ => None,
        })
        .expect("r1 next");
    let keys: Vec<&str> = r1.set.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["repl-diskless-sync-max-replicas", "maxmemory"]);
    fx = h.live_applied("r1", Ok(()));
    fx.extend(h.live_applied("r2", Ok(())));
    let (ok, lines) = done(&fx, 4);
    assert!(ok, "{lines:?}");
    assert_eq!(
        lines[0],
        "reload: 3 changed live, 0 restarted, 1 added, 0 removed, 0 unchanged"
    );
    assert!(
        lines.contains(&"master: set maxmemory live".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"r1: set repl-diskless-sync-max-replicas, maxmemory live".to_owned()),
        "{lines:?}"
    );
    assert_eq!(
        (h.pid("master"), h.pid("r1"), h.pid("r2")),
        (Some(100), Some(201), Some(202))
    );
}

#[test]
fn a_setting_the_server_refuses_live_restarts_the_instance_instead() {
    let mut h = H::all_up(SEED);
    let text = SEED.replace(
        "port = 7001\nreplica_of = \"master\"\n",
        "port = 7001\nreplica_of = \"master\"\n[instance.redis]\nsome-setting = \"x\"\n",
    );
    let fx = h.reload(5, &text);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::ApplyLive { name, .. } if name == "r1"))
    );
    let fx = h.live_applied(
        "r1",
        Err(LiveFailure::Refused(
            "`some-setting`: can't set immutable config".into(),
        )),
    );
    assert_eq!(
        shutdowns(&fx),
        [("r1".to_owned(), false)],
        "restarted instead"
    );
    shutdown_ok(&mut h, "r1", 201);
    h.grant("r1");
    h.launched("r1", 301);
    h.probe("r1", &replica_info(301, 1000));
    let fx = h.probe(
        "master",
        &master_info(100, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]),
    );
    let (ok, lines) = done(&fx, 5);
    assert!(ok, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("r1: restarted: not applied live")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("r1: running (pid 301)")),
        "{lines:?}"
    );
}

#[test]
fn a_live_change_that_could_not_be_asked_fails_the_step_and_restarts_nothing() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let text = SEED.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nmaxmemory = \"64mb\"",
    );
    h.reload(6, &text);
    let fx = h.live_applied(
        "master",
        Err(LiveFailure::Failed("cannot reach it: timed out".into())),
    );
    assert!(
        shutdowns(&fx).is_empty(),
        "a timeout is no reason to restart"
    );
    let (ok, lines) = done(&fx, 6);
    assert!(!ok);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cannot apply the change live")),
        "{lines:?}"
    );
}

#[test]
fn an_unpersisted_master_is_not_restarted_for_a_refused_live_change() {
    let text = SEED.replace("save = [\"3600 1\"]", "save = [\"\"]\nappendonly = \"no\"");
    let mut h = H::new(&text, "a");
    h.master_up();
    let changed = text.replace(
        "appendonly = \"no\"",
        "appendonly = \"no\"\nsome-setting = \"x\"",
    );
    h.reload(7, &changed);
    let fx = h.live_applied(
        "master",
        Err(LiveFailure::Refused("`some-setting`: unknown".into())),
    );
    assert!(shutdowns(&fx).is_empty(), "it would come back empty");
    let (ok, lines) = done(&fx, 7);
    assert!(!ok);
    assert!(
        lines.iter().any(|l| l.contains("no persistence")),
        "{lines:?}"
    );
}

#[test]
fn a_refused_reload_leaves_the_actual_master_as_it_was() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    // The master renamed, on an older server: its replicas could not load their own data
    // after the restart the new server needs, so the reload is refused.
    let text = SEED
        .replace("name = \"master\"", "name = \"boss\"")
        .replace("replica_of = \"master\"", "replica_of = \"boss\"");
    let mut l = loaded(group(&text));
    l.server = crate::server::Server {
        kind: crate::server::Kind::Redis,
        version: crate::server::Version {
            major: 6,
            minor: 2,
            patch: 14,
        },
    };
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(4),
        result: Ok(Box::new(l)),
    });
    match reply(&fx, 4) {
        Some(Response::Error { message }) => {
            assert!(
                message.contains("reload refused, nothing changed"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.m.actual_master(), "master");
    assert!(shutdowns(&fx).is_empty());
}

#[test]
fn a_reload_without_the_actual_master_records_the_change_as_reload() {
    let mut h = H::all_up(SEED);
    h.m.restore_topology("r1");
    // The new file has no r1 any more: its own master takes over.
    let text = SEED.replace(
        "[[instance]]\nname = \"r1\"\nhost = \"a\"\nbind = \"127.0.0.2\"\nport = 7001\nreplica_of = \"master\"\n",
        "",
    );
    assert_ne!(text, SEED);
    let fx = h.reload(1, &text);
    let got: Vec<(String, String, crate::changes::Reason)> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::MasterChanged(c) => Some((c.old.clone(), c.new.clone(), c.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [("r1".into(), "master".into(), crate::changes::Reason::Reload)]
    );
}

#[test]
fn a_reload_judges_a_remote_replicas_server_by_the_answer_asked_for_it() {
    // r1 and r2 run on host b, whose reload just moved them to Redis 8.0; this daemon's
    // last probes of them, from before their restart, still say 7.0.
    let text = r1_on_b();
    let text = text.replace(
        "host = \"a\"\nbind = \"127.0.0.3\"",
        "host = \"b\"\nbind = \"127.0.0.3\"",
    );
    let mut h = master_with_remote_replicas_probed_on_7_0(&text);
    let r80 = crate::server::Server {
        kind: crate::server::Kind::Redis,
        version: crate::server::Version {
            major: 8,
            minor: 0,
            patch: 2,
        },
    };
    let mut l = loaded(group(&text));
    l.server = r80;
    l.remote_servers = [("r1".to_owned(), r80), ("r2".to_owned(), r80)].into();
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(4),
        result: Ok(Box::new(l)),
    });
    if let Some(Response::Error { message }) = reply(&fx, 4) {
        panic!("refused on a stale probe: {message}");
    }
    // Without that answer the stale probe decides, and refuses: the safe side.
    let mut h = master_with_remote_replicas_probed_on_7_0(&text);
    let mut l = loaded(group(&text));
    l.server = r80;
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(4),
        result: Ok(Box::new(l)),
    });
    match reply(&fx, 4) {
        Some(Response::Error { message }) => {
            assert!(message.contains("upgrade `r1` first"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

/// Host `a` of `text` (r1 and r2 on host b) with its master running, and r1 and r2
/// probed as replicas on Redis 7.0.
fn master_with_remote_replicas_probed_on_7_0(text: &str) -> H {
    let mut h = H::new(text, "a");
    let mut fx = h.tick();
    for (name, pid) in [("r1", 201), ("r2", 202)] {
        fx.extend(h.probe(
            name,
            &format!("{}redis_version:7.0.15\r\n", replica_info(pid, 1000)),
        ));
    }
    fx.extend(h.tick());
    assert!(launches(&fx).contains(&"master".to_owned()), "{fx:?}");
    h.launched("master", 100);
    h.probe(
        "master",
        &master_info(100, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]),
    );
    assert_eq!(h.kind("master"), Kind::Running);
    h
}
