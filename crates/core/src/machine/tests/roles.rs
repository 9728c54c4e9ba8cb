//! Roles that change: failover, promote, learning the actual master, the guard before a
//! master starts, and the catch-up of a crashed master.

use super::*;

/// A replica's INFO that names its upstream and history.
pub(super) fn follower(pid: u32, up: (&str, u16), replid: &str, offset: i64) -> String {
    format!(
        "role:slave\r\nprocess_id:{pid}\r\nloading:0\r\nmaster_host:{}\r\nmaster_port:{}\r\n\
         master_link_status:up\r\nmaster_sync_in_progress:0\r\nmaster_replid:{replid}\r\n\
         master_repl_offset:{offset}\r\n",
        up.0, up.1
    )
}

/// A master's INFO with its history and backlog, listing `online` replicas.
pub(super) fn leader(
    pid: u32,
    replid: &str,
    replid2: &str,
    offset: i64,
    online: &[(&str, u16)],
) -> String {
    let mut s = format!(
        "role:master\r\nprocess_id:{pid}\r\nloading:0\r\nmaster_replid:{replid}\r\n\
         master_replid2:{replid2}\r\nsecond_repl_offset:{}\r\nmaster_repl_offset:{offset}\r\n\
         repl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\n\
         repl_backlog_histlen:{offset}\r\nmaster_failover_state:no-failover\r\n",
        offset + 1
    );
    for (i, (ip, port)) in online.iter().enumerate() {
        s.push_str(&format!(
            "slave{i}:ip={ip},port={port},state=online,offset={offset},lag=0\r\n"
        ));
    }
    s
}

pub(super) const M: (&str, u16) = ("127.0.0.1", 7000);
pub(super) const R1: (&str, u16) = ("127.0.0.2", 7001);
pub(super) const R2: (&str, u16) = ("127.0.0.3", 7002);

/// The config of the next launch of `name`: from `fx`, or after its gate place is
/// granted.
fn launch_conf(h: &mut H, fx: Vec<Effect>, name: &str) -> String {
    let find = |fx: &[Effect]| {
        fx.iter().find_map(|e| match e {
            Effect::Launch(spec) if spec.name == name => Some(spec.conf.expose().to_owned()),
            _ => None,
        })
    };
    if let Some(conf) = find(&fx) {
        return conf;
    }
    let fx = h.grant(name);
    find(&fx).unwrap_or_else(|| panic!("{name} not launched: {fx:?}"))
}

pub(super) fn up_all(h: &mut H) {
    h.master_up();
    h.replica_up("r1", 201, &[R1]);
    h.replica_up("r2", 202, &[R1, R2]);
}

fn failovers(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Failover { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn made_master(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::MakeMaster { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn live(fx: &[Effect]) -> Vec<(String, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ApplyLive { name, change, .. } => Some((name.clone(), change.describe())),
            _ => None,
        })
        .collect()
}

/// Every instance answers as in the group before any change: the master with both.
fn probe_before(h: &mut H) -> Vec<Effect> {
    let mut fx = h.probe("r1", &follower(201, M, "aaa", 1000));
    fx.extend(h.probe("r2", &follower(202, M, "aaa", 1000)));
    fx.extend(h.probe("master", &leader(100, "aaa", "0", 1000, &[R1, R2])));
    fx
}

#[test]
fn failover_swaps_roles_re_points_the_others_live_and_keeps_the_new_master() {
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.now += S;
    let (id, fx) = h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    assert!(failovers(&fx).is_empty(), "not before fresh INFO");
    let fx = probe_before(&mut h);
    assert_eq!(failovers(&fx), ["r1"]);
    h.now += S / 10;
    let fx = h.feed(Input::RoleChanged {
        name: "r1".into(),
        result: Ok(()),
    });
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
    let mut h = H::new(&text, "a");
    up_all(&mut h);
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
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
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
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
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
    let fx = h.feed(Input::RoleChanged {
        name: "r2".into(),
        result: Ok(()),
    });
    assert_eq!(saved(&fx), ["r2"]);
}

#[test]
fn the_actual_master_is_learned_from_info_asked_after_the_last_change() {
    let text = SEED.replace(
        "host = \"a\"\nbind = \"127.0.0.2\"",
        "host = \"b\"\nbind = \"127.0.0.2\"",
    );
    let mut h = H::new(&text, "a");
    let fx = h.probe_err("r1", "connection refused");
    assert_eq!(launches(&fx), ["master"]);
    h.launched("master", 100);
    h.probe("master", &master_info(100, &[]));
    h.replica_up("r2", 202, &[R2]);
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
fn a_crashed_master_catches_up_from_the_replica_ahead_then_takes_the_role_back() {
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    // Its RDB is older than what both replicas acknowledged.
    h.histories.insert(
        "master".into(),
        ReplPosition {
            repl_id: "aaa".into(),
            offset: 500,
        },
    );
    h.probe("r1", &follower(201, M, "aaa", 1000));
    h.probe("r2", &follower(202, M, "aaa", 1200));
    let fx = crash(
        &mut h,
        &follower(201, M, "aaa", 1000),
        &follower(202, M, "aaa", 1200),
    );
    assert_eq!(made_master(&fx), ["r2"], "the most advanced one");
    assert!(launches(&fx).is_empty());
    let fx = h.feed(Input::RoleChanged {
        name: "r2".into(),
        result: Ok(()),
    });
    assert_eq!(saved(&fx), ["r2"]);
    // The master now starts as r2's replica.
    h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[]));
    let fx = h.tick();
    let conf = launch_conf(&mut h, fx, "master");
    assert!(conf.contains("replicaof 127.0.0.3 7002"), "{conf}");
    h.launched("master", 101);
    h.probe("master", &follower(101, R2, "ccc", 1200));
    // In sync, but r1 still follows the old master's address: no hand-back yet.
    h.probe("r1", &follower(201, M, "aaa", 1000));
    let fx = h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[M]));
    assert_eq!(h.kind("master"), Kind::Running);
    assert!(failovers(&fx).is_empty());
    // r1 follows r2 too: the role goes back.
    let mut fx = h.probe("r1", &follower(201, R2, "ccc", 1200));
    fx.extend(h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[M, R1])));
    assert_eq!(failovers(&fx), ["master"]);
    let fx = h.feed(Input::RoleChanged {
        name: "master".into(),
        result: Ok(()),
    });
    assert_eq!(saved(&fx), ["master"]);
    assert_eq!(h.m.actual_master(), "master");
}

#[test]
fn a_master_restarted_on_purpose_with_nothing_behind_starts_as_master() {
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.histories.insert(
        "master".into(),
        ReplPosition {
            repl_id: "aaa".into(),
            offset: 1000,
        },
    );
    h.now += S;
    // In place (forced): a planned restart would move the role away first.
    let (_, _) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: true,
    });
    let _ = shutdown_ok(&mut h, "master", 100);
    h.probe("r1", &follower(201, M, "aaa", 1000));
    let fx = h.probe("r2", &follower(202, M, "aaa", 1000));
    assert!(made_master(&fx).is_empty());
    assert_eq!(launches(&fx), ["master"]);
}

#[test]
fn a_crashed_master_with_aof_always_starts_from_its_aof() {
    let text = SEED.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"",
    );
    let mut h = H::new(&text, "a");
    up_all(&mut h);
    h.probe("r1", &follower(201, M, "aaa", 1000));
    h.probe("r2", &follower(202, M, "aaa", 1200));
    h.probe("master", &leader(100, "aaa", "0", 900, &[R1, R2]));
    let fx = crash(
        &mut h,
        &follower(201, M, "aaa", 1000),
        &follower(202, M, "aaa", 1200),
    );
    // Redis wrote and fsynced the AOF before it replied: it holds every acknowledged write.
    assert!(made_master(&fx).is_empty());
    assert_eq!(launches(&fx), ["master"]);
}

#[test]
fn a_crashed_master_with_aof_everysec_catches_up_from_its_last_history() {
    let text = SEED.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nappendonly = \"yes\"",
    );
    let mut h = H::new(&text, "a");
    up_all(&mut h);
    h.probe("master", &leader(100, "aaa", "0", 900, &[R1, R2]));
    h.probe("r1", &follower(201, M, "aaa", 1000));
    h.probe("r2", &follower(202, M, "aaa", 1200));
    let fx = crash(
        &mut h,
        &follower(201, M, "aaa", 1000),
        &follower(202, M, "aaa", 1200),
    );
    // Redis may have replied before it wrote the AOF (a slow fsync postpones the write).
    assert_eq!(made_master(&fx), ["r2"]);
}

/// A crash with r2 ahead: the catch-up asks r2 to become master.
fn crash_with_r2_ahead(h: &mut H) -> Vec<Effect> {
    up_all(h);
    crash(
        h,
        &follower(201, M, "aaa", 1000),
        &follower(202, M, "aaa", 1200),
    )
}

#[test]
fn a_catch_up_that_cannot_begin_starts_the_master_from_its_files_once() {
    let mut h = H::new(SEED, "a");
    let fx = crash_with_r2_ahead(&mut h);
    assert_eq!(made_master(&fx), ["r2"]);
    let mut fx = h.feed(Input::RoleChanged {
        name: "r2".into(),
        result: Err("ERR unknown command 'REPLICAOF'".into()),
    });
    fx.extend(h.tick());
    assert!(made_master(&fx).is_empty(), "not asked again");
    assert_eq!(launches(&fx), ["master"]);
    assert_eq!(h.m.actual_master(), "master");
}

#[test]
fn a_catch_up_whose_source_is_gone_ends_and_the_group_is_followed_again() {
    let mut h = H::new(SEED, "a");
    crash_with_r2_ahead(&mut h);
    h.feed(Input::RoleChanged {
        name: "r2".into(),
        result: Ok(()),
    });
    h.now += S / 10;
    h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[]));
    let mut fx = h.tick();
    if launches(&fx).is_empty() {
        fx = h.grant("master");
    }
    assert_eq!(launches(&fx), ["master"]);
    h.launched("master", 101);
    h.probe("master", &follower(101, R2, "ccc", 1200));
    h.probe("r1", &follower(201, R2, "ccc", 1200));
    let fx = h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[M, R1]));
    assert_eq!(failovers(&fx), ["master"]);
    // The hand-back fails, and r2 stops being master (someone failed over to r1).
    h.feed(Input::RoleChanged {
        name: "master".into(),
        result: Err("ERR FAILOVER is not valid when server is a replica.".into()),
    });
    h.now += S;
    h.probe("r2", &follower(202, R1, "ddd", 1300));
    h.probe("master", &follower(101, R1, "ddd", 1300));
    let fx = h.probe("r1", &leader(201, "ddd", "ccc", 1300, &[M, R2]));
    assert!(
        failovers(&fx).is_empty(),
        "no hand-back to a source that is no master"
    );
    // Learning works again: r1 is the master now.
    h.now += S / 10;
    h.probe("r2", &follower(202, R1, "ddd", 1300));
    h.probe("master", &follower(101, R1, "ddd", 1300));
    h.probe("r1", &leader(201, "ddd", "ccc", 1300, &[M, R2]));
    assert_eq!(h.m.actual_master(), "r1");
}

/// A replica's INFO with its second id: it followed a change of id of its upstream.
fn follower2(pid: u32, up: (&str, u16), ids: (&str, &str, i64), offset: i64) -> String {
    format!(
        "{}master_replid2:{}\r\nsecond_repl_offset:{}\r\n",
        follower(pid, up, ids.0, offset),
        ids.1,
        ids.2
    )
}

/// The master crashes with its RDB at `aaa`/500 (an AOF master ignores it) and the
/// replicas then report `r1` and `r2`: the effects of the last probe.
fn crash(h: &mut H, r1: &str, r2: &str) -> Vec<Effect> {
    h.histories.insert(
        "master".into(),
        ReplPosition {
            repl_id: "aaa".into(),
            offset: 500,
        },
    );
    h.exited("master", 100, "killed by SIGKILL");
    h.now += 2 * S;
    h.tick();
    h.probe_err("master", "connection refused");
    h.probe("r1", r1);
    h.probe("r2", r2)
}

/// Who is made master for the catch-up after [`crash`].
fn crash_with(h: &mut H, r1: &str, r2: &str) -> Vec<String> {
    made_master(&crash(h, r1, r2))
}

#[test]
fn a_master_restarted_once_then_crashed_catches_up_from_the_replicas_second_id() {
    // Issue 18's sequence: the RDB names `aaa` (the graceful restart's save); since then the
    // master runs on `bbb` and its replicas keep `aaa` as their second id, up to 501.
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.probe("master", &leader(100, "bbb", "aaa", 2500, &[R1, R2]));
    let r1 = follower2(201, M, ("bbb", "aaa", 501), 2500);
    let r2 = follower2(202, M, ("bbb", "aaa", 501), 2400);
    assert_eq!(crash_with(&mut h, &r1, &r2), ["r1"]);
}

#[test]
fn a_replica_that_left_the_rdbs_history_before_its_offset_is_not_ahead() {
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    // It left `aaa` at 301, before the RDB's 500: what the RDB holds past 300 it lacks.
    let r1 = follower2(201, M, ("bbb", "aaa", 301), 2500);
    let r2 = follower2(202, M, ("bbb", "aaa", 301), 2400);
    assert!(crash_with(&mut h, &r1, &r2).is_empty());
    assert_eq!(h.kind("master"), Kind::Launching);
}

#[test]
fn after_failover_and_back_the_changes_of_id_seen_place_the_rdb() {
    // aaa -> bbb (r1 promoted at 801) -> ccc (the master took the role back at 1501): the
    // replicas know ccc and bbb only; the daemon saw the change to bbb on the way (in r1's
    // INFO once it followed the master again).
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    let fx = h.probe("r1", &follower2(201, M, ("bbb", "aaa", 801), 900));
    assert!(fx.iter().any(|e| matches!(e, Effect::SaveHistory)));
    let r1 = follower2(201, M, ("ccc", "bbb", 1501), 3000);
    let r2 = follower2(202, M, ("ccc", "bbb", 1501), 3100);
    assert_eq!(crash_with(&mut h, &r1, &r2), ["r2"]);
}

#[test]
fn the_history_kept_in_the_topology_file_serves_after_a_daemon_restart() {
    use crate::history::{Lineage, Link};
    let link = |new: &str, old: &str, until| Link {
        new: new.into(),
        old: old.into(),
        until,
    };
    // A new daemon: no INFO of its own from before, only the file.
    let mut h = H::new(SEED, "a");
    h.m.restore_history(
        [("master".to_owned(), "ccc".to_owned())].into(),
        Lineage::from_links(vec![link("bbb", "aaa", 801), link("ccc", "bbb", 1501)]),
    );
    up_all(&mut h);
    let r1 = follower2(201, M, ("ddd", "ccc", 2001), 3000);
    let r2 = follower2(202, M, ("ddd", "ccc", 2001), 2900);
    assert_eq!(crash_with(&mut h, &r1, &r2), ["r1"]);
    let kept = h.m.kept();
    assert_eq!(
        kept.lineage.links().len(),
        3,
        "the replicas' change of id joins: {kept:?}"
    );
}

#[test]
fn an_rdb_nothing_relates_to_the_replicas_keeps_their_data_when_they_hold_the_masters_last_history()
{
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    // The master last served `ccc`; how its RDB's `aaa` led there was never seen.
    h.probe("master", &leader(100, "ccc", "bbb", 2500, &[R1, R2]));
    let r1 = follower2(201, M, ("ccc", "bbb", 1501), 2500);
    let r2 = follower2(202, M, ("ccc", "bbb", 1501), 2500);
    assert_eq!(crash_with(&mut h, &r1, &r2), ["r1"]);
    // Replicas on a history unknown to all: the RDB is loaded.
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    let r1 = follower2(201, M, ("zzz", "yyy", 1501), 2500);
    let r2 = follower2(202, M, ("zzz", "yyy", 1501), 2500);
    assert!(crash_with(&mut h, &r1, &r2).is_empty());
}

#[test]
fn a_replication_loop_is_repaired_by_making_the_most_advanced_master() {
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
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
    let fx = h.feed(Input::RoleChanged {
        name: "master".into(),
        result: Ok(()),
    });
    assert!(made_master(&fx).is_empty());
    assert_eq!(h.m.actual_master(), "master");
}

#[test]
fn a_re_point_planned_before_the_master_changed_again_is_dropped_or_guarded() {
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
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
            fx.extend(h.feed(Input::LiveApplied {
                name: n.into(),
                result: Ok(()),
            }));
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

/// An AOF master (`appendfsync always`) that full-synced as a replica (after a failover)
/// and is master again, its AOF rewrite `over` or not, crashes with both replicas on its
/// history: who is made master for the catch-up.
fn aof_master_crash_after_full_sync(over: bool) -> Vec<String> {
    let text = SEED.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"",
    );
    let mut h = H::new(&text, "a");
    up_all(&mut h);
    let info = leader(100, "ccc", "bbb", 900, &[R1, R2]);
    h.probe_logged("master", &info, Some(SyncKind::Full));
    if over {
        h.now += S;
        h.probe(
            "master",
            &(info + "aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n"),
        );
    }
    let (r1, r2) = (follower(201, M, "ccc", 1000), follower(202, M, "ccc", 1200));
    h.probe("r1", &r1);
    h.probe("r2", &r2);
    crash_with(&mut h, &r1, &r2)
}

#[test]
fn a_master_with_aof_that_crashed_while_its_aof_was_rewritten_catches_up() {
    // Crashed before the AOF that Redis rewrites after a full sync was complete.
    assert_eq!(aof_master_crash_after_full_sync(false), ["r2"]);
    // Once a probe shows the rewrite over, the AOF is trusted again.
    assert!(aof_master_crash_after_full_sync(true).is_empty());
}

#[test]
fn a_replica_left_under_the_wrong_upstream_is_re_pointed_once_settled() {
    // A daemon killed before it re-pointed r2 to r1 (the master again after a catch-up):
    // the new one keeps r1 from its file and finds r2 still under `master`.
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
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
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.now += S;
    h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    let fx = probe_before(&mut h);
    assert_eq!(failovers(&fx), ["r1"]);
    assert!(dropped(&fx).is_empty(), "not while it is master");
    h.now += S / 10;
    let fx = h.feed(Input::RoleChanged {
        name: "r1".into(),
        result: Ok(()),
    });
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
    let text = SEED.replace(
        "host = \"a\"\nbind = \"127.0.0.2\"",
        "host = \"b\"\nbind = \"127.0.0.2\"",
    );
    let mut h = H::new(&text, "a");
    h.probe_err("r1", "connection refused");
    h.launched("master", 100);
    h.probe("master", &master_info(100, &[]));
    h.replica_up("r2", 202, &[R2]);
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
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.now += S;
    h.request(Request::Promote {
        instance: "r2".into(),
        force: false,
    });
    h.probe_err("master", "connection refused");
    h.probe("r1", &follower(201, M, "aaa", 900));
    h.probe("r2", &follower(202, M, "aaa", 1000));
    let fx = h.feed(Input::RoleChanged {
        name: "r2".into(),
        result: Ok(()),
    });
    assert_eq!(
        changes(&fx),
        [("master".into(), "r2".into(), Reason::Promote, None)]
    );
    assert!(
        dropped(&fx).is_empty(),
        "a promotion demotes nobody it can reach"
    );

    // The catch-up: two changes, both `catch-up`.
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.probe("r1", &follower(201, M, "aaa", 1000));
    h.probe("r2", &follower(202, M, "aaa", 1200));
    let fx = crash(
        &mut h,
        &follower(201, M, "aaa", 1000),
        &follower(202, M, "aaa", 1200),
    );
    assert_eq!(made_master(&fx), ["r2"]);
    let mut all = h.feed(Input::RoleChanged {
        name: "r2".into(),
        result: Ok(()),
    });
    h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[]));
    let fx = h.tick();
    launch_conf(&mut h, fx, "master");
    h.launched("master", 101);
    h.probe("master", &follower(101, R2, "ccc", 1200));
    h.probe("r1", &follower(201, R2, "ccc", 1200));
    let fx = h.probe("r2", &leader(202, "ccc", "aaa", 1200, &[M, R1]));
    assert_eq!(failovers(&fx), ["master"]);
    all.extend(h.feed(Input::RoleChanged {
        name: "master".into(),
        result: Ok(()),
    }));
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

#[test]
fn a_planned_master_restart_moves_the_role_away_and_back() {
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.now += S;
    // Both replicas online in the master's INFO: r2 is the most advanced.
    h.probe("master", &leader(100, "aaa", "0", 1000, &[R1, R2]));
    let (id, fx) = h.request(Request::Restart {
        instances: vec!["master".into()],
        force: false,
    });
    assert!(shutdowns(&fx).is_empty(), "not stopped as master: {fx:?}");
    assert_eq!(failovers(&fx).len(), 1, "{fx:?}");
    let _ = id;
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
    let mut h = H::new(SEED, "a");
    up_all(&mut h);
    h.now += S;
    h.request(Request::Failover {
        to: Some("r1".into()),
        force: false,
    });
    probe_before(&mut h);
    h.now += S / 10;
    h.feed(Input::RoleChanged {
        name: "r1".into(),
        result: Ok(()),
    });
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
