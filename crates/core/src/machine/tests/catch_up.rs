//! The guard before a master starts and the catch-up of a crashed master from a replica
//! that has writes its files lack: which RDB history relates to which replica's.

use super::*;

#[test]
fn a_crashed_master_catches_up_from_the_replica_ahead_then_takes_the_role_back() {
    let mut h = H::all_up(SEED);
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
    let fx = h.role_changed("r2", Ok(()));
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
    let fx = h.role_changed("master", Ok(()));
    assert_eq!(saved(&fx), ["master"]);
    assert_eq!(h.m.actual_master(), "master");
}

#[test]
fn a_master_restarted_on_purpose_with_nothing_behind_starts_as_master() {
    let mut h = H::all_up(SEED);
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
    let mut h = H::all_up(&text);
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
    let text = with_aof(SEED);
    let mut h = H::all_up(&text);
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
    let mut fx = h.role_changed("r2", Err("ERR unknown command 'REPLICAOF'"));
    fx.extend(h.tick());
    assert!(made_master(&fx).is_empty(), "not asked again");
    assert_eq!(launches(&fx), ["master"]);
    assert_eq!(h.m.actual_master(), "master");
}

#[test]
fn a_catch_up_whose_source_is_gone_ends_and_the_group_is_followed_again() {
    let mut h = H::new(SEED, "a");
    crash_with_r2_ahead(&mut h);
    h.role_changed("r2", Ok(()));
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
    h.role_changed(
        "master",
        Err("ERR FAILOVER is not valid when server is a replica."),
    );
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

/// Who is made master for the catch-up after [`crash`].
fn crash_with(h: &mut H, r1: &str, r2: &str) -> Vec<String> {
    made_master(&crash(h, r1, r2))
}

#[test]
fn a_master_restarted_once_then_crashed_catches_up_from_the_replicas_second_id() {
    // Issue 18's sequence: the RDB names `aaa` (the graceful restart's save); since then the
    // master runs on `bbb` and its replicas keep `aaa` as their second id, up to 501.
    let mut h = H::all_up(SEED);
    h.probe("master", &leader(100, "bbb", "aaa", 2500, &[R1, R2]));
    let r1 = follower2(201, M, ("bbb", "aaa", 501), 2500);
    let r2 = follower2(202, M, ("bbb", "aaa", 501), 2400);
    assert_eq!(crash_with(&mut h, &r1, &r2), ["r1"]);
}

#[test]
fn a_replica_that_left_the_rdbs_history_before_its_offset_is_not_ahead() {
    let mut h = H::all_up(SEED);
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
    let mut h = H::all_up(SEED);
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
    let mut h = H::all_up(SEED);
    // The master last served `ccc`; how its RDB's `aaa` led there was never seen.
    h.probe("master", &leader(100, "ccc", "bbb", 2500, &[R1, R2]));
    let r1 = follower2(201, M, ("ccc", "bbb", 1501), 2500);
    let r2 = follower2(202, M, ("ccc", "bbb", 1501), 2500);
    assert_eq!(crash_with(&mut h, &r1, &r2), ["r1"]);
    // Replicas on a history unknown to all: the RDB is loaded.
    let mut h = H::all_up(SEED);
    let r1 = follower2(201, M, ("zzz", "yyy", 1501), 2500);
    let r2 = follower2(202, M, ("zzz", "yyy", 1501), 2500);
    assert!(crash_with(&mut h, &r1, &r2).is_empty());
}

/// An AOF master (`appendfsync always`) that full-synced as a replica (after a failover)
/// and is master again, its AOF rewrite `over` or not, crashes with both replicas on its
/// history: who is made master for the catch-up.
fn aof_master_crash_after_full_sync(over: bool) -> Vec<String> {
    let text = SEED.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"",
    );
    let mut h = H::all_up(&text);
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
