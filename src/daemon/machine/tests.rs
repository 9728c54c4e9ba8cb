//! The machine on scripted inputs and a fake clock (`t0 + Duration`): no processes, no
//! sockets, no sleeping. Each test plays the runtime's part by hand.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::control::{Request, Response};

const S: Duration = Duration::from_secs(1);

/// The seed layout on one host `a`: a master and two replicas, with short timeouts.
const SEED: &str = r#"
[cluster]
name = "t"
password = "pw"
run_dir = "run"
data_dir = "data"

[supervise]
start_timeout = "10s"
shutdown_timeout = "5s"
restart_delay = "1s"
restart_delay_max = "8s"
crash_loop_limit = 3
crash_loop_window = "1m"
sync_timeout = "30s"
health_interval = "1s"

[redis]
save = ["3600 1"]

[[instance]]
name = "master"
host = "a"
bind = "127.0.0.1"
port = 7000

[[instance]]
name = "r1"
host = "a"
bind = "127.0.0.2"
port = 7001
replica_of = "master"

[[instance]]
name = "r2"
host = "a"
bind = "127.0.0.3"
port = 7002
replica_of = "master"
"#;

fn group(text: &str) -> Group {
    crate::config::parse(text, Path::new("/t/group.toml"), Path::new("/t"))
        .map(|c| c.group)
        .unwrap_or_else(|e| panic!("test config: {e}"))
}

/// A machine, a fake clock and the last effects.
struct H {
    m: Machine,
    now: Instant,
    next_id: RequestId,
}

impl H {
    fn new(text: &str, host: &str) -> H {
        Self::adopting(text, host, &[])
    }

    fn adopting(text: &str, host: &str, adopted: &[(&str, u32)]) -> H {
        let t0 = Instant::now();
        let adopted: Vec<(String, u32)> =
            adopted.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        H {
            m: Machine::new(group(text), host.to_owned(), &adopted, t0),
            now: t0,
            next_id: 0,
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Effect> {
        self.m.handle(input, self.now)
    }

    fn tick(&mut self) -> Vec<Effect> {
        self.feed(Input::Tick)
    }

    fn advance(&mut self, by: Duration) -> Vec<Effect> {
        self.now += by;
        self.tick()
    }

    /// The runtime's answer to a launch, a moment later (so probes asked before it are
    /// older than the process).
    fn launched(&mut self, name: &str, pid: u32) -> Vec<Effect> {
        self.now += Duration::from_millis(1);
        self.feed(Input::Launched {
            name: name.into(),
            pid,
            resumed_from_rdb: false,
        })
    }

    fn probe(&mut self, name: &str, info: &str) -> Vec<Effect> {
        self.probe_logged(name, info, None)
    }

    fn probe_logged(&mut self, name: &str, info: &str, logged: Option<SyncKind>) -> Vec<Effect> {
        self.feed(Input::Probe {
            name: name.into(),
            asked_at: self.now,
            result: Ok(Info::parse(info)),
            logged_sync: logged,
        })
    }

    fn probe_err(&mut self, name: &str, err: &str) -> Vec<Effect> {
        self.feed(Input::Probe {
            name: name.into(),
            asked_at: self.now,
            result: Err(err.into()),
            logged_sync: None,
        })
    }

    fn exited(&mut self, name: &str, pid: u32, how: &str) -> Vec<Effect> {
        self.feed(Input::Exited {
            name: name.into(),
            pid,
            how: how.into(),
            last_output: vec!["some line".into()],
            port_holder: None,
        })
    }

    fn request(&mut self, request: Request) -> (RequestId, Vec<Effect>) {
        let id = self.next_id;
        self.next_id += 1;
        (id, self.feed(Input::Request { id, request }))
    }

    fn kind(&self, name: &str) -> Kind {
        self.m
            .state(name)
            .map(State::kind)
            .expect("no such instance")
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.m.state(name).and_then(State::pid)
    }

    /// Brings the master up: launched as pid 100, answering; returns what its probe
    /// made the machine do.
    fn master_up(&mut self) -> Vec<Effect> {
        let fx = self.tick();
        assert!(launches(&fx).contains(&"master".to_owned()), "{fx:?}");
        self.launched("master", 100);
        let fx = self.probe("master", &master_info(100, &[]));
        assert_eq!(self.kind("master"), Kind::Running);
        fx
    }

    /// Takes replica `name` from waiting to running as `pid` (gate granted, launched,
    /// answering, listed online by the master with pid 100).
    fn replica_up(&mut self, name: &str, pid: u32, online: &[(&str, u16)]) {
        self.tick();
        self.feed(Input::ClaimResult {
            name: name.into(),
            granted: true,
            detail: String::new(),
            retry_after: Duration::ZERO,
        });
        self.launched(name, pid);
        self.probe(name, &replica_info(pid, 1000));
        self.probe("master", &master_info(100, online));
        assert_eq!(self.kind(name), Kind::Running, "{:?}", self.m.state(name));
    }
}

fn master_info(pid: u32, online: &[(&str, u16)]) -> String {
    master_info_with(pid, online, "online", 0)
}

fn master_info_with(pid: u32, replicas: &[(&str, u16)], state: &str, sync_full: i64) -> String {
    let mut s = format!(
        "role:master\r\nprocess_id:{pid}\r\nloading:0\r\nmaster_repl_offset:1000\r\nsync_full:{sync_full}\r\n"
    );
    for (i, (ip, port)) in replicas.iter().enumerate() {
        s.push_str(&format!(
            "slave{i}:ip={ip},port={port},state={state},offset=1000,lag=0\r\n"
        ));
    }
    s
}

fn replica_info(pid: u32, offset: i64) -> String {
    format!(
        "role:slave\r\nprocess_id:{pid}\r\nloading:0\r\nmaster_link_status:up\r\n\
         master_sync_in_progress:0\r\nmaster_repl_offset:{offset}\r\n"
    )
}

fn launches(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch(spec) => Some(spec.name.clone()),
            _ => None,
        })
        .collect()
}

fn claims(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Claim { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn releases(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Release { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn shutdowns(fx: &[Effect]) -> Vec<(String, bool)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Shutdown { name, nosave, .. } => Some((name.clone(), *nosave)),
            _ => None,
        })
        .collect()
}

fn signals(fx: &[Effect]) -> Vec<(String, Sig)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Signal { name, sig, .. } => Some((name.clone(), *sig)),
            _ => None,
        })
        .collect()
}

fn reply(fx: &[Effect], id: RequestId) -> Option<&Response> {
    fx.iter().find_map(|e| match e {
        Effect::Reply { id: i, response } if *i == id => Some(response),
        _ => None,
    })
}

fn done(fx: &[Effect], id: RequestId) -> (bool, Vec<String>) {
    match reply(fx, id) {
        Some(Response::Done { ok, lines }) => (*ok, lines.clone()),
        other => panic!("no Done reply for {id}: {other:?} in {fx:?}"),
    }
}

fn notifies(fx: &[Effect]) -> Vec<Notify> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn last_error(h: &H, name: &str) -> String {
    h.m.status(h.now)
        .into_iter()
        .find(|s| s.name == name)
        .and_then(|s| s.last_error)
        .unwrap_or_default()
}

fn shutdown_ok(h: &mut H, name: &str, pid: u32) -> Vec<Effect> {
    let mut fx = h.feed(Input::ShutdownDone {
        name: name.into(),
        pid,
        result: Ok(()),
    });
    fx.extend(h.exited(name, pid, "exit code 0"));
    fx
}

// ----- start-up order and readiness ---------------------------------------------------

#[test]
fn the_master_is_launched_first_and_replicas_wait_for_it() {
    let mut h = H::new(SEED, "a");
    let fx = h.tick();
    assert_eq!(launches(&fx), ["master"]);
    assert!(claims(&fx).is_empty());
    assert!(last_error(&h, "r1").contains("waiting for upstream `master`"));
    // Launching until the runtime answers; nothing is launched twice meanwhile.
    assert_eq!(h.kind("master"), Kind::Launching);
    assert!(launches(&h.tick()).is_empty());
}

#[test]
fn a_launch_carries_the_rendered_config_and_its_paths() {
    let mut h = H::new(SEED, "a");
    let fx = h.tick();
    let Some(Effect::Launch(spec)) = fx.iter().find(|e| matches!(e, Effect::Launch(_))) else {
        panic!("{fx:?}")
    };
    assert!(spec.conf.expose().contains("port 7000"));
    assert!(spec.conf.expose().contains("requirepass pw"));
    assert_eq!(spec.conf_path, Path::new("/t/run/master.conf"));
    assert_eq!(spec.pid_path, Path::new("/t/run/master.pid"));
    assert!(spec.resume.is_none(), "a master never resumes with AOF off");
    assert!(
        !format!("{spec:?}").contains("pw\n"),
        "Debug hides the password"
    );
}

#[test]
fn running_only_once_it_answers_from_its_own_pid_with_its_data_loaded() {
    let mut h = H::new(SEED, "a");
    h.tick();
    let fx = h.launched("master", 100);
    assert!(fx.iter().any(|e| matches!(e, Effect::ProbeNow)), "{fx:?}");
    assert_eq!(h.kind("master"), Kind::Starting);
    h.probe("master", &master_info(999, &[])); // a foreign process on the port
    assert_eq!(h.kind("master"), Kind::Starting);
    h.probe(
        "master",
        &master_info(100, &[]).replace("loading:0", "loading:1"),
    );
    assert_eq!(h.kind("master"), Kind::Starting);
    h.probe("master", &master_info(100, &[]));
    assert_eq!(h.kind("master"), Kind::Running);
}

#[test]
fn a_replica_asks_its_upstream_for_a_gate_place_once_the_master_runs() {
    let mut h = H::new(SEED, "a");
    let mut fx = h.master_up();
    fx.extend(h.tick());
    assert_eq!(claims(&fx), ["r1"], "one replica asks, the other waits");
    assert!(
        launches(&fx).is_empty(),
        "no launch before the place is granted"
    );
    let fx = h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    assert_eq!(launches(&fx), ["r1"]);
}

#[test]
fn a_refused_claim_asks_again_after_the_jitter() {
    let one_replica = SEED[..SEED.find("[[instance]]\nname = \"r2\"").unwrap()].to_owned();
    let mut h = H::new(&one_replica, "a");
    assert_eq!(claims(&h.master_up()), ["r1"]);
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: false,
        detail: "1 replica(s) syncing".into(),
        retry_after: Duration::from_millis(300),
    });
    assert!(last_error(&h, "r1").contains("waiting in the sync gate of `master`"));
    assert!(claims(&h.advance(Duration::from_millis(100))).is_empty());
    let fx = h.advance(Duration::from_millis(250));
    assert!(claims(&fx).contains(&"r1".to_owned()), "{fx:?}");
}

#[test]
fn the_gate_never_admits_two_replicas_of_one_upstream_and_a_release_admits_the_next() {
    let mut h = H::new(SEED, "a");
    let mut claimed = claims(&h.master_up());
    for _ in 0..5 {
        claimed.extend(claims(&h.advance(S)));
    }
    assert_eq!(claimed, ["r1"]);
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r1", 201);
    h.probe("r1", &replica_info(201, 0));
    assert_eq!(h.kind("r1"), Kind::Syncing);
    for _ in 0..5 {
        assert!(claims(&h.advance(S)).is_empty(), "r2 waits while r1 syncs");
        assert_eq!(h.kind("r2"), Kind::Waiting);
    }
    h.probe("r1", &replica_info(201, 1000));
    let fx = h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert_eq!(h.kind("r1"), Kind::Running);
    assert_eq!(releases(&fx), ["r1"], "in sync: r1's place is given back");
    assert_eq!(claims(&fx), ["r2"], "and r2 asks for it");
}

#[test]
fn a_replica_of_another_daemon_syncing_from_the_upstream_counts_in_the_gate() {
    let mut h = H::new(SEED, "a");
    h.tick();
    h.launched("master", 100);
    // The master lists a replica this daemon does not run, still receiving its copy.
    h.probe(
        "master",
        &master_info_with(100, &[("127.0.0.9", 7009)], "send_bulk", 1),
    );
    let fx = h.tick();
    assert!(claims(&fx).is_empty(), "{fx:?}");
    assert!(last_error(&h, "r1").contains("1 replica(s) syncing"));
}

#[test]
fn the_upstreams_probe_can_be_the_one_that_completes_a_replicas_sync() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.tick();
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r1", 201);
    // The replica's link is up, but the master's last INFO predates it.
    h.probe("r1", &replica_info(201, 1000));
    assert_eq!(h.kind("r1"), Kind::Syncing);
    h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert_eq!(
        h.kind("r1"),
        Kind::Running,
        "no second replica probe needed"
    );
}

#[test]
fn the_replicas_own_log_names_its_sync_in_the_restart_output() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.tick();
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r1", 201);
    h.now += Duration::from_millis(1500);
    h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    h.probe_logged("r1", &replica_info(201, 1000), Some(SyncKind::Partial));
    let status = h.m.status(h.now);
    let r1 = status.iter().find(|s| s.name == "r1").unwrap();
    assert_eq!(
        r1.last_sync.as_deref(),
        Some("partial resync, in sync 1.5s after start")
    );
}

#[test]
fn without_a_log_line_the_upstreams_sync_full_counter_tells_the_sync() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.tick();
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r1", 201);
    h.probe("r1", &replica_info(201, 1000));
    h.probe(
        "master",
        &master_info_with(100, &[("127.0.0.2", 7001)], "online", 1),
    );
    let status = h.m.status(h.now);
    let r1 = status.iter().find(|s| s.name == "r1").unwrap();
    assert!(r1.last_sync.as_deref().unwrap().starts_with("full sync"));
}

#[test]
fn a_replica_resumed_from_its_rdb_gets_aof_back_once_in_sync() {
    let text = SEED.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nappendonly = \"yes\"",
    );
    let mut h = H::new(&text, "a");
    assert_eq!(claims(&h.master_up()), ["r1"]);
    let fx = h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    let Some(Effect::Launch(spec)) = fx.iter().find(|e| matches!(e, Effect::Launch(_))) else {
        panic!("{fx:?}")
    };
    let resume = spec.resume.clone().expect("a replica with AOF may resume");
    assert_eq!(resume.rdb, Path::new("/t/data/r1/dump.rdb"));
    h.feed(Input::Launched {
        name: "r1".into(),
        pid: 201,
        resumed_from_rdb: true,
    });
    h.probe("r1", &replica_info(201, 1000));
    let fx = h.probe("master", &master_info(100, &[("127.0.0.2", 7001)]));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::RestoreAof { name, .. } if name == "r1")),
        "{fx:?}"
    );
}

#[test]
fn a_replica_not_in_sync_within_sync_timeout_gives_its_place_back_and_is_counted() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.tick();
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r1", 201);
    h.probe("r1", &replica_info(201, 0));
    let fx = h.advance(Duration::from_secs(31));
    assert_eq!(h.kind("r1"), Kind::Running);
    assert_eq!(releases(&fx), ["r1"]);
    let status = h.m.status(h.now);
    assert_eq!(
        status
            .iter()
            .find(|s| s.name == "r1")
            .unwrap()
            .sync_timeouts,
        1
    );
}

#[test]
fn a_start_timeout_kills_once_and_the_exit_counts_as_a_crash() {
    let mut h = H::new(SEED, "a");
    h.tick();
    h.launched("master", 100);
    let fx = h.advance(Duration::from_secs(11));
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Kill)]);
    assert!(
        signals(&h.advance(S)).is_empty(),
        "not killed again meanwhile"
    );
    h.exited("master", 100, "killed by SIGKILL");
    assert_eq!(h.kind("master"), Kind::Backoff);
    assert!(last_error(&h, "master").contains("killed by SIGKILL"));
}

#[test]
fn a_launch_that_fails_before_anything_ran_is_retried_with_backoff_but_never_fails() {
    let mut h = H::new(SEED, "a");
    for attempt in 1..=6u32 {
        let fx = h.advance(Duration::from_secs(9));
        assert_eq!(launches(&fx), ["master"], "attempt {attempt}");
        h.feed(Input::LaunchFailed {
            name: "master".into(),
            reason: "port 127.0.0.1:7000 is held by pid 5 (nc)".into(),
        });
        assert_eq!(h.kind("master"), Kind::Backoff);
    }
    assert!(last_error(&h, "master").contains("held by pid 5 (nc); retrying in"));
    assert_eq!(
        h.m.status(h.now)[0].restarts,
        0,
        "nothing ran: no restart counted"
    );
}

// ----- crashes --------------------------------------------------------------------------

#[test]
fn crash_restarts_back_off_doubling_then_a_crash_loop_fails_with_the_reason() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let mut pid = 100;
    for (crash, delay) in [(1, 1u64), (2, 2)] {
        h.exited("master", pid, "killed by SIGKILL");
        assert_eq!(h.kind("master"), Kind::Backoff, "crash {crash}");
        assert!(launches(&h.advance(Duration::from_millis(delay * 1000 - 10))).is_empty());
        let fx = h.advance(Duration::from_millis(10));
        assert_eq!(launches(&fx), ["master"], "crash {crash}: after {delay}s");
        pid += 1;
        h.launched("master", pid);
        h.probe("master", &master_info(pid, &[]));
    }
    h.exited("master", pid, "exit code 1");
    let State::Failed { reason } = h.m.state("master").unwrap().clone() else {
        panic!("{:?}", h.m.state("master"))
    };
    assert!(reason.contains("crashed 3 times within 1m"), "{reason}");
    assert!(reason.contains("exit code 1"), "{reason}");
    assert!(reason.contains("last output: some line"), "{reason}");
    assert!(launches(&h.advance(Duration::from_secs(600))).is_empty());
    assert_eq!(h.m.status(h.now)[0].restarts, 2);
}

#[test]
fn crashes_older_than_the_window_do_not_count_toward_a_loop() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let mut pid = 100;
    for _ in 0..5 {
        h.exited("master", pid, "killed by SIGKILL");
        assert_eq!(h.kind("master"), Kind::Backoff);
        let fx = h.advance(Duration::from_secs(61));
        assert_eq!(launches(&fx), ["master"]);
        pid += 1;
        h.launched("master", pid);
        h.probe("master", &master_info(pid, &[]));
    }
}

#[test]
fn a_failed_instance_stays_stopped_until_an_operator_starts_it() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    for pid in 100..103 {
        h.exited("master", pid, "exit code 1");
        h.advance(Duration::from_secs(10));
        if h.kind("master") == Kind::Launching {
            h.launched("master", pid + 1);
        }
    }
    assert_eq!(h.kind("master"), Kind::Failed);
    let (id, fx) = h.request(Request::Start {
        instances: vec!["master".into()],
    });
    assert_eq!(launches(&fx), ["master"], "start clears the crash history");
    h.launched("master", 200);
    let fx = h.probe("master", &master_info(200, &[]));
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert_eq!(lines, ["master: running (pid 200)"]);
}

#[test]
fn an_unpersisted_master_with_replicas_is_never_relaunched() {
    let text = SEED.replace("save = [\"3600 1\"]", "save = [\"\"]\nappendonly = \"no\"");
    let mut h = H::new(&text, "a");
    h.master_up();
    h.exited("master", 100, "killed by SIGKILL");
    let State::Failed { reason } = h.m.state("master").unwrap().clone() else {
        panic!("{:?}", h.m.state("master"))
    };
    assert!(reason.contains("no persistence"), "{reason}");
    assert!(launches(&h.advance(Duration::from_secs(3600))).is_empty());
}

#[test]
fn an_unpersisted_master_without_replicas_is_restarted() {
    let text = SEED.replace("save = [\"3600 1\"]", "save = [\"\"]\nappendonly = \"no\"");
    let text = text[..text.find("[[instance]]\nname = \"r1\"").unwrap()].to_owned();
    let mut h = H::new(&text, "a");
    h.master_up();
    h.exited("master", 100, "killed by SIGKILL");
    assert_eq!(h.kind("master"), Kind::Backoff);
    assert_eq!(launches(&h.advance(S)), ["master"]);
}

#[test]
fn a_crash_that_could_not_bind_names_who_holds_the_port() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.feed(Input::Exited {
        name: "master".into(),
        pid: 100,
        how: "exit code 1".into(),
        last_output: vec![
            "Could not create server TCP listening socket: Address already in use".into(),
        ],
        port_holder: Some("pid 7 (nc -l)".into()),
    });
    assert_eq!(
        last_error(&h, "master"),
        "port 127.0.0.1:7000 is held by pid 7 (nc -l)"
    );
}

#[test]
fn an_exit_of_a_process_that_is_no_longer_the_instances_is_ignored() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.exited("master", 55, "exit code 0");
    assert_eq!(h.kind("master"), Kind::Running);
    assert_eq!(h.pid("master"), Some(100));
}

#[test]
fn an_adopted_instance_is_watched_not_launched_and_its_exit_is_a_crash() {
    let mut h = H::adopting(SEED, "a", &[("master", 100), ("r1", 201), ("r2", 202)]);
    let fx = h.tick();
    assert!(launches(&fx).is_empty(), "{fx:?}");
    assert_eq!(h.kind("master"), Kind::Starting);
    h.probe(
        "master",
        &master_info(100, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]),
    );
    h.probe("r1", &replica_info(201, 1000));
    h.probe("r2", &replica_info(202, 1000));
    assert_eq!(h.kind("r1"), Kind::Running);
    assert_eq!(h.kind("r2"), Kind::Running);
    let status = h.m.status(h.now);
    assert_eq!(
        status.iter().find(|s| s.name == "r1").unwrap().last_sync,
        None,
        "an adopted replica's sync was not seen"
    );
    h.exited(
        "r1",
        201,
        "exit status unknown: it was adopted from an earlier daemon",
    );
    assert_eq!(h.kind("r1"), Kind::Backoff);
    let fx = h.advance(S);
    assert!(
        claims(&fx).contains(&"r1".to_owned()),
        "{fx:?} {}",
        last_error(&h, "r1")
    );
}

// ----- stopping -------------------------------------------------------------------------

#[test]
fn a_stop_escalates_from_shutdown_to_sigterm_to_sigkill_on_its_deadlines() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, fx) = h.request(Request::Stop {
        instances: vec!["master".into()],
        force: false,
    });
    assert_eq!(shutdowns(&fx), [("master".to_owned(), false)]);
    assert_eq!(h.kind("master"), Kind::ShuttingDown);
    assert!(signals(&h.advance(Duration::from_millis(4900))).is_empty());
    let fx = h.advance(Duration::from_millis(100));
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Term)]);
    assert_eq!(h.kind("master"), Kind::Terminating);
    assert!(signals(&h.advance(Duration::from_millis(4900))).is_empty());
    let fx = h.advance(Duration::from_millis(100));
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Kill)]);
    assert_eq!(h.kind("master"), Kind::Killing);
    let fx = h.exited("master", 100, "killed by SIGKILL");
    assert_eq!(h.kind("master"), Kind::Stopped);
    assert_eq!(done(&fx, id), (true, vec!["master: stopped".to_owned()]));
    assert!(launches(&h.advance(Duration::from_secs(60))).is_empty());
}

#[test]
fn an_unreachable_instance_gets_sigterm_at_once() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.request(Request::Stop {
        instances: vec!["master".into()],
        force: false,
    });
    let fx = h.feed(Input::ShutdownDone {
        name: "master".into(),
        pid: 100,
        result: Err(ShutdownError::Unreachable("connection refused".into())),
    });
    assert_eq!(signals(&fx), [("master".to_owned(), Sig::Term)]);
    assert_eq!(h.kind("master"), Kind::Terminating);
}

#[test]
fn a_refused_final_save_leaves_it_running_and_the_stop_fails() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, _) = h.request(Request::Stop {
        instances: vec!["master".into()],
        force: false,
    });
    let fx = h.feed(Input::ShutdownDone {
        name: "master".into(),
        pid: 100,
        result: Err(ShutdownError::Refused(
            "ERR Errors trying to SHUTDOWN".into(),
        )),
    });
    assert_eq!(h.kind("master"), Kind::Running);
    assert!(
        signals(&fx).is_empty(),
        "nothing is killed: its writes are not saved"
    );
    let (ok, lines) = done(&fx, id);
    assert!(!ok);
    assert!(
        lines[0].contains("left running (nothing lost)"),
        "{lines:?}"
    );
    assert!(launches(&h.advance(Duration::from_secs(60))).is_empty());
}

#[test]
fn a_refused_final_save_with_force_shuts_down_without_saving() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, _) = h.request(Request::Stop {
        instances: vec!["master".into()],
        force: true,
    });
    let fx = h.feed(Input::ShutdownDone {
        name: "master".into(),
        pid: 100,
        result: Err(ShutdownError::Refused(
            "ERR Errors trying to SHUTDOWN".into(),
        )),
    });
    assert_eq!(shutdowns(&fx), [("master".to_owned(), true)]);
    let fx = shutdown_ok(&mut h, "master", 100);
    assert!(done(&fx, id).0);
}

#[test]
fn a_shutdown_result_for_a_stale_pid_is_ignored() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.request(Request::Stop {
        instances: vec!["master".into()],
        force: false,
    });
    let fx = h.feed(Input::ShutdownDone {
        name: "master".into(),
        pid: 42,
        result: Err(ShutdownError::Refused("old news".into())),
    });
    assert_eq!(h.kind("master"), Kind::ShuttingDown);
    assert!(fx.iter().all(|e| !matches!(e, Effect::Reply { .. })));
}

#[test]
fn an_exit_while_stopping_ends_the_stop_and_is_no_crash() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    let (id, _) = h.request(Request::Stop {
        instances: vec!["master".into()],
        force: false,
    });
    let fx = h.exited("master", 100, "killed by SIGSEGV");
    assert_eq!(h.kind("master"), Kind::Stopped);
    assert!(done(&fx, id).0);
    assert!(launches(&h.advance(Duration::from_secs(30))).is_empty());
}

#[test]
fn stopping_a_replica_that_would_break_min_replicas_to_write_is_refused_unless_forced() {
    let text = SEED.replace("port = 7000\n", "port = 7000\nmin_replicas_to_write = 2\n");
    let mut h = H::new(&text, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    h.replica_up("r2", 202, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]);
    let (id, fx) = h.request(Request::Stop {
        instances: vec!["r1".into()],
        force: false,
    });
    let (ok, lines) = done(&fx, id);
    assert!(!ok);
    assert!(lines[0].contains("min_replicas_to_write"), "{lines:?}");
    assert!(shutdowns(&fx).is_empty());
    assert_eq!(h.kind("r1"), Kind::Running);
    let (_, fx) = h.request(Request::Stop {
        instances: vec!["r1".into()],
        force: true,
    });
    assert_eq!(shutdowns(&fx), [("r1".to_owned(), false)]);
}

#[test]
fn a_rolling_restart_takes_one_at_a_time_deepest_first_and_the_master_last() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    h.replica_up("r2", 202, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]);
    let both = [("127.0.0.2", 7001), ("127.0.0.3", 7002)];
    let (id, fx) = h.request(Request::Restart {
        instances: vec![],
        force: false,
    });
    assert_eq!(shutdowns(&fx), [("r2".to_owned(), false)], "one at a time");
    let mut order = vec!["r2".to_owned()];
    let mut fx = shutdown_ok(&mut h, "r2", 202);
    assert!(shutdowns(&fx).is_empty(), "r2 must be back before the next");
    assert_eq!(claims(&fx), ["r2"]);
    h.feed(Input::ClaimResult {
        name: "r2".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r2", 302);
    h.probe("r2", &replica_info(302, 1000));
    fx = h.probe("master", &master_info(100, &both));
    order.extend(shutdowns(&fx).into_iter().map(|(n, _)| n));
    fx = shutdown_ok(&mut h, "r1", 201);
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    h.launched("r1", 301);
    h.probe("r1", &replica_info(301, 1000));
    fx.extend(h.probe("master", &master_info(100, &both)));
    order.extend(shutdowns(&fx).into_iter().map(|(n, _)| n));
    fx = shutdown_ok(&mut h, "master", 100);
    h.launched("master", 400);
    fx.extend(h.probe("master", &master_info(400, &both)));
    assert_eq!(order, ["r2", "r1", "master"]);
    let (ok, lines) = done(&fx, id);
    assert!(ok, "{lines:?}");
    assert_eq!(lines.len(), 6, "{lines:?}");
}

// ----- reload ---------------------------------------------------------------------------

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

// ----- systemd, daemon shutdown, status ----------------------------------------------------

#[test]
fn ready_is_sent_once_when_the_masters_run_and_the_replicas_were_started() {
    let mut h = H::new(SEED, "a");
    let mut sent = Vec::new();
    sent.extend(notifies(&h.tick()));
    h.launched("master", 100);
    sent.extend(notifies(&h.probe("master", &master_info(100, &[]))));
    assert!(!sent.contains(&Notify::Ready), "replicas not started yet");
    h.tick();
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
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
        all.extend(notifies(&h2.feed(Input::ClaimResult {
            name: name.into(),
            granted: true,
            detail: String::new(),
            retry_after: Duration::ZERO,
        })));
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
    let mut h = H::new(
        SEED.replace(
            "host = \"a\"\nbind = \"127.0.0.2\"",
            "host = \"b\"\nbind = \"127.0.0.2\"",
        )
        .as_str(),
        "b",
    );
    let mut fx = h.tick();
    assert!(launches(&fx).is_empty());
    fx.extend(h.probe_err("master", "connection refused"));
    assert!(notifies(&fx).contains(&Notify::Ready), "{fx:?}");
    assert!(last_error(&h, "r1").contains("waiting for upstream `master`"));
}

#[test]
fn sigterm_stops_replicas_first_and_a_second_sigterm_stops_the_rest_at_once() {
    let mut h = H::new(SEED, "a");
    h.master_up();
    h.replica_up("r1", 201, &[("127.0.0.2", 7001)]);
    h.replica_up("r2", 202, &[("127.0.0.2", 7001), ("127.0.0.3", 7002)]);
    let fx = h.feed(Input::Terminate);
    assert!(notifies(&fx).contains(&Notify::Stopping));
    assert_eq!(shutdowns(&fx), [("r2".to_owned(), false)]);
    let fx = h.feed(Input::Terminate);
    let mut second = shutdowns(&fx);
    second.sort();
    assert_eq!(
        second,
        [("master".to_owned(), false), ("r1".to_owned(), false)],
        "the rest at once, still saving"
    );
    shutdown_ok(&mut h, "r2", 202);
    shutdown_ok(&mut h, "r1", 201);
    let fx = shutdown_ok(&mut h, "master", 100);
    assert!(fx.iter().any(|e| matches!(e, Effect::Exit(0))), "{fx:?}");
    assert!(h.tick().is_empty(), "nothing after the exit");
}

#[test]
fn the_daemon_exits_one_when_an_instance_was_left_running_because_its_save_failed() {
    let text = SEED[..SEED.find("[[instance]]\nname = \"r1\"").unwrap()].to_owned();
    let mut h = H::new(&text, "a");
    h.master_up();
    h.feed(Input::Terminate);
    let fx = h.feed(Input::ShutdownDone {
        name: "master".into(),
        pid: 100,
        result: Err(ShutdownError::Refused(
            "ERR Errors trying to SHUTDOWN".into(),
        )),
    });
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
    let (id, fx) = h.request(Request::Stop {
        instances: vec!["nope".into()],
        force: false,
    });
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
    h.feed(Input::ClaimResult {
        name: "r2".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
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
    let (_, fx) = h.request(Request::Stop {
        instances: vec!["r1".into()],
        force: false,
    });
    assert_eq!(releases(&fx), ["r1"]);
    assert_eq!(h.kind("r1"), Kind::Stopped);
    // A late answer to the claim changes nothing.
    h.feed(Input::ClaimResult {
        name: "r1".into(),
        granted: true,
        detail: String::new(),
        retry_after: Duration::ZERO,
    });
    assert_eq!(h.kind("r1"), Kind::Stopped);
}

#[test]
fn the_machine_asks_to_probe_every_local_instance_and_remote_upstreams() {
    let text = SEED.replace(
        "host = \"a\"\nbind = \"127.0.0.2\"",
        "host = \"b\"\nbind = \"127.0.0.2\"",
    );
    let mut h = H::new(&text, "b");
    let fx = h.tick();
    let targets = fx
        .iter()
        .find_map(|e| match e {
            Effect::ProbeTargets(t) => Some(t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()),
            _ => None,
        })
        .expect("targets");
    assert_eq!(targets, ["r1", "master"]);
    assert!(
        !h.tick()
            .iter()
            .any(|e| matches!(e, Effect::ProbeTargets(_))),
        "only on change"
    );
}
