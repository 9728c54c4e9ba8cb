//! Reload: the diff applied, refusals, passwords in place.

use std::time::Duration;

use super::*;
use crate::control::Response;

#[test]
fn reload_applies_the_diff_and_leaves_the_rest_running() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    h.replica_up("r2", 202, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]);
    // r2 removed, r1 changed (maxmemory), r3 added; the master unchanged.
    let mut text = SEED[..SEED.find("[[instance]]\nname = \"r2\"").unwrap()].to_owned();
    text = text.replace(
        "replica_of = \"master\"\n",
        "replica_of = \"master\"\n[instance.redis]\nmaxmemory = \"64mb\"\n",
    );
    text.push_str(
        "\n[[instance]]\nname = \"r3\"\nhost = \"a\"\nbind = \"127.0.0.4\"\nport = 7003\nreplica_of = \"master\"\n",
    );
    let fx = h.feed(Input::ReloadRequested { id: Some(9) });
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::LoadConfig { id: Some(9) }))
    );
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(9),
        result: Ok(Box::new(group(&text))),
    });
    assert_eq!(shutdowns(&fx), [("r2".to_owned(), false)], "removed first");
    let fx = shutdown_ok(&mut h, "r2", 202);
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)], "then changed");
    assert!(
        h.m.state("r2").is_none(),
        "a removed instance is forgotten once stopped"
    );
    shutdown_ok(&mut h, "r1", 201);
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r1", 301);
    h.probe("r1", &replica_info(301, 1000));
    let fx = h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert_eq!(claims(&fx), ["r3"], "then added");
    h.feed(Input::ClaimResult {
        name: "r3".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
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
        "reload: 1 added, 1 removed, 1 changed, 1 unchanged"
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
    h.feed(Input::ReloadRequested { id: Some(1) });
    let fx = h.feed(Input::ConfigLoaded {
        id: Some(1),
        result: Ok(Box::new(group(&SEED.replace("\"pw\"", "\"pw2\"")))),
    });
    let set = fx
        .iter()
        .find_map(|e| match e {
            Effect::SetPassword { name, new, .. } if name == "master" => new.clone(),
            _ => None,
        })
        .expect("SetPassword for the running master");
    assert_eq!(set.expose(), "pw2");
    assert!(shutdowns(&fx).is_empty(), "no restart");
    let fx = h.feed(Input::PasswordSet {
        name: "master".into(),
        result: Ok(Some(set)),
    });
    let (ok, lines) = done(&fx, 1);
    assert!(
        ok && lines.contains(&"master: password changed in place".to_owned()),
        "{lines:?}"
    );
}
