//! Maintenance pause: nothing automatic until `resume` or the deadline; operators' verbs
//! still work; kept across restarts by the runtime (`SavePause`).

use super::*;
use crate::control::Request;

const HOUR: Duration = Duration::from_secs(3600);

fn pause(h: &mut H, length: Duration) -> Vec<Effect> {
    let (id, fx) = h.request(Request::Pause {
        for_ms: length.as_millis() as u64,
    });
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    fx
}

fn saved_pause(fx: &[Effect]) -> Vec<Option<Duration>> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::SavePause { remaining } => Some(*remaining),
            _ => None,
        })
        .collect()
}

#[test]
fn a_crash_while_paused_waits_for_resume_and_the_pause_is_kept() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let fx = pause(&mut h, HOUR);
    assert_eq!(saved_pause(&fx), [Some(HOUR)]);
    h.exited("master", 100, "killed by SIGKILL");
    let fx = h.advance(60 * S);
    assert!(launches(&fx).is_empty(), "{fx:?}");
    assert_eq!(h.blocker("master"), Blocker::Paused);
    let (id, fx) = h.request(Request::Status);
    let _ = fx;
    let fx = h.advance(5 * S);
    let Some(Response::Status { paused_for_ms, .. }) = reply(&fx, id) else {
        panic!("{fx:?}")
    };
    assert_eq!(*paused_for_ms, Some((HOUR - 65 * S).as_millis() as u64));
    let (id, fx) = h.request(Request::Resume);
    let (ok, lines) = done(&fx, id);
    assert!(ok);
    assert!(
        lines
            .iter()
            .any(|l| l == "master: held while paused, starting"),
        "{lines:?}"
    );
    assert_eq!(saved_pause(&fx), [None]);
    assert_eq!(launches(&fx), ["master"]);
}

#[test]
fn the_deadline_ends_the_pause_by_itself() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    pause(&mut h, 30 * S);
    h.exited("master", 100, "killed by SIGKILL");
    assert!(launches(&h.advance(29 * S)).is_empty());
    assert!(h.m.next_deadline(h.now) <= h.now + S);
    let fx = h.advance(S);
    assert_eq!(saved_pause(&fx), [None]);
    assert_eq!(launches(&fx), ["master"]);
}

#[test]
fn a_daemon_started_into_a_kept_pause_adopts_but_starts_nothing_until_resume() {
    let mut h = H::adopting(SEED, "a", &[("master", 100)]);
    h.m.restore_pause(h.now + HOUR);
    let fx = h.tick();
    assert!(launches(&fx).is_empty(), "{fx:?}");
    h.probe("master", &master_info(100, &[]));
    assert_eq!(h.kind("master"), Kind::Running, "adopted");
    assert!(launches(&h.advance(10 * S)).is_empty());
    assert_eq!(h.blocker("r1"), Blocker::Paused);
    let (id, fx) = h.request(Request::Resume);
    let (_, lines) = done(&fx, id);
    assert_eq!(
        lines,
        [
            "a: resumed",
            "r1: held while paused, starting",
            "r2: held while paused, starting"
        ]
    );
    assert_eq!(
        claims(&fx),
        ["r1"],
        "through the gate, one at a time: {fx:?}"
    );
}

#[test]
fn a_pause_restored_from_the_file_holds_and_an_operator_start_still_works() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.m.restore_pause(h.now + HOUR);
    h.exited("master", 100, "killed by SIGKILL");
    assert!(launches(&h.advance(10 * S)).is_empty());
    let (_, fx) = h.request(Request::Start {
        instances: vec!["master".into()],
    });
    assert_eq!(launches(&fx), ["master"], "the operator asked");
}

#[test]
fn paused_the_view_follows_the_group_but_nothing_is_re_pointed_until_resume() {
    let mut h = H::all_up(SEED);
    pause(&mut h, HOUR);
    // Someone failed over to r1 by hand; r2 still replicates from `master`.
    h.now += S;
    let probe_all = |h: &mut H| {
        let mut fx = h.probe("r1", &leader(201, "bbb", "aaa", 1000, &[M]));
        fx.extend(h.probe("master", &follower(100, R1, "bbb", 1000)));
        fx.extend(h.probe("r2", &follower(202, M, "bbb", 1000)));
        fx.extend(h.tick());
        fx
    };
    let fx = probe_all(&mut h);
    assert_eq!(h.m.actual_master(), "r1", "the view follows");
    assert!(live(&fx).is_empty(), "{:?}", live(&fx));
    h.now += 10 * S;
    let fx = probe_all(&mut h);
    assert!(live(&fx).is_empty(), "no drift repair while paused");
    h.request(Request::Resume);
    let mut fx = probe_all(&mut h);
    h.now += 3 * S;
    fx.extend(probe_all(&mut h));
    assert_eq!(
        live(&fx),
        [("r2".to_owned(), "re-pointed to r1".to_owned())]
    );
}

#[test]
fn paused_sentinels_get_a_down_after_of_a_year_and_theirs_back_on_resume() {
    use super::sentinel::{sentinel_info, text};
    let down_after = |fx: &[Effect]| -> Vec<(String, String)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::SentinelReconfigure { name, sets, .. } => Some(
                    sets.iter()
                        .map(|s| (name.clone(), format!("{} {}", s.option, s.value)))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let mut h = H::new(&text(), "a");
    h.tick();
    h.launched("s1", 900);
    h.probe("s1", &sentinel_info(900, M));
    assert_eq!(h.kind("s1"), Kind::Running);
    let fx = pause(&mut h, HOUR);
    assert_eq!(
        down_after(&fx),
        [(
            "s1".to_owned(),
            "down-after-milliseconds 31536000000".to_owned()
        )]
    );
    // A sentinel restarted while paused renders the TOML's value: it is held again.
    h.exited("s1", 900, "killed by SIGKILL");
    h.advance(2 * S);
    h.launched("s1", 901);
    let fx = h.probe("s1", &sentinel_info(901, M));
    assert_eq!(down_after(&fx).len(), 1, "{fx:?}");
    let (_, fx) = h.request(Request::Resume);
    assert_eq!(
        down_after(&fx),
        [("s1".to_owned(), "down-after-milliseconds 1000".to_owned())]
    );
}
