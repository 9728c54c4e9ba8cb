//! The machine on scripted inputs and a fake clock (`t0 + Duration`): no processes, no
//! sockets, no sleeping. Each test plays the runtime's part by hand.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::control::{Request, Response};

mod batch;
mod catch_up;
mod changes;
mod crashes;
mod daemon;
mod pause;
mod reload;
mod roles;
mod sentinel;
mod startup;
mod stopping;

pub(super) const S: Duration = Duration::from_secs(1);

/// The seed layout on one host `a`: a master and two replicas, with short timeouts.
pub(super) const SEED: &str = r#"
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

/// `text` with `appendonly yes` for every instance.
pub(super) fn with_aof(text: &str) -> String {
    text.replace(
        "save = [\"3600 1\"]",
        "save = [\"3600 1\"]\nappendonly = \"yes\"",
    )
}

/// [`SEED`] with `r1` on host `b`.
pub(super) fn r1_on_b() -> String {
    SEED.replace(
        "host = \"a\"\nbind = \"127.0.0.2\"",
        "host = \"b\"\nbind = \"127.0.0.2\"",
    )
}

/// The server the tests' machines run: Debian 12's.
pub(super) const R70: Server = Server {
    kind: crate::server::Kind::Redis,
    version: crate::server::Version {
        major: 7,
        minor: 0,
        patch: 15,
    },
};

/// A reloaded file on the same server.
pub(super) fn loaded(group: Group) -> Loaded {
    Loaded {
        group,
        binary: PathBuf::from("/usr/bin/redis-server"),
        server: R70,
        remote_servers: Default::default(),
    }
}

pub(super) fn group(text: &str) -> Group {
    crate::config::parse(text, Path::new("/t/group.toml"), Path::new("/t"))
        .map(|c| c.group)
        .unwrap_or_else(|e| panic!("test config: {e}"))
}

/// A machine, a fake clock and the last effects.
pub(super) struct H {
    pub(super) m: Machine,
    pub(super) now: Instant,
    next_id: RequestId,
    /// What each replica's RDB resumes from, as the runtime would read it (default: no
    /// history, so its sync may be full).
    pub(super) histories: std::collections::HashMap<String, ReplPosition>,
}

impl H {
    pub(super) fn new(text: &str, host: &str) -> H {
        Self::adopting(text, host, &[])
    }

    pub(super) fn adopting(text: &str, host: &str, adopted: &[(&str, u32)]) -> H {
        let t0 = Instant::now();
        let adopted: Vec<(String, u32)> =
            adopted.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        H {
            m: Machine::new(
                group(text),
                host.to_owned(),
                (PathBuf::from("/usr/bin/redis-server"), R70),
                &adopted,
                t0,
            ),
            now: t0,
            next_id: 0,
            histories: Default::default(),
        }
    }

    /// A machine on host `a` of `text` with the master and both replicas running (pids
    /// 100, 201, 202), as [`up_all`] brings them up.
    pub(super) fn all_up(text: &str) -> H {
        let mut h = H::new(text, "a");
        up_all(&mut h);
        h
    }

    /// A machine on host `a` of [`r1_on_b`] with the master (pid 100) and `r2` (pid 202)
    /// running, and `r1`, on host `b`, not answering yet.
    pub(super) fn a_up_r1_on_b() -> H {
        let mut h = H::new(&r1_on_b(), "a");
        let fx = h.probe_err("r1", "connection refused");
        assert_eq!(launches(&fx), ["master"]);
        h.launched("master", 100);
        h.probe("master", &master_info(100, &[]));
        h.replica_up("r2", 202, &[R2]);
        h
    }

    /// A machine on host `a` of `text` with the master running and `r1` just launched as
    /// pid 201 (its gate place granted), not probed yet.
    pub(super) fn r1_launched(text: &str) -> H {
        let mut h = H::new(text, "a");
        h.master_up();
        h.tick();
        h.grant("r1");
        h.launched("r1", 201);
        h
    }

    /// Hands the machine an input; answers its history reads the way the runtime does
    /// (at once, before anything else), and returns every effect.
    pub(super) fn feed(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            for effect in self.m.handle(input, self.now) {
                if let Effect::ReadHistory { name, .. } = &effect {
                    let position = self.histories.get(name).cloned();
                    queue.push_back(Input::HistoryRead {
                        name: name.clone(),
                        position,
                    });
                }
                out.push(effect);
            }
        }
        out
    }

    pub(super) fn tick(&mut self) -> Vec<Effect> {
        self.feed(Input::Tick)
    }

    pub(super) fn advance(&mut self, by: Duration) -> Vec<Effect> {
        self.now += by;
        self.tick()
    }

    /// The runtime's answer to a launch, a moment later (so probes asked before it are
    /// older than the process).
    pub(super) fn launched(&mut self, name: &str, pid: u32) -> Vec<Effect> {
        self.now += Duration::from_millis(1);
        self.feed(Input::Launched {
            name: name.into(),
            pid,
            resumed_from_rdb: false,
        })
    }

    pub(super) fn probe(&mut self, name: &str, info: &str) -> Vec<Effect> {
        self.probe_logged(name, info, None)
    }

    pub(super) fn probe_logged(
        &mut self,
        name: &str,
        info: &str,
        logged: Option<SyncKind>,
    ) -> Vec<Effect> {
        self.feed(Input::Probe(Probe {
            name: name.into(),
            asked_at: self.now,
            result: Ok(Info::parse(info)),
            logged_sync: logged,
        }))
    }

    pub(super) fn probe_err(&mut self, name: &str, err: &str) -> Vec<Effect> {
        self.feed(Input::Probe(Probe {
            name: name.into(),
            asked_at: self.now,
            result: Err(err.into()),
            logged_sync: None,
        }))
    }

    /// Probes that queued up together, each asked `ago` before now (`Err`: the probe
    /// failed so), handed to the machine as one batch the way the runtime does;
    /// answers history reads as [`H::feed`] does.
    pub(super) fn batch_asked(
        &mut self,
        ago: Duration,
        probes: &[(&str, Result<String, &str>)],
    ) -> Vec<Effect> {
        let probes = probes
            .iter()
            .map(|(name, result)| Probe {
                name: (*name).into(),
                asked_at: self.now - ago,
                result: result
                    .as_ref()
                    .map(|i| Info::parse(i))
                    .map_err(|e| e.to_string()),
                logged_sync: None,
            })
            .collect();
        let mut out = Vec::new();
        for effect in self.m.handle_probes(probes, self.now) {
            if let Effect::ReadHistory { name, .. } = &effect {
                let position = self.histories.get(name).cloned();
                out.extend(self.feed(Input::HistoryRead {
                    name: name.clone(),
                    position,
                }));
            }
            out.push(effect);
        }
        out
    }

    /// [`H::batch_asked`] of probes asked now.
    pub(super) fn batch(&mut self, probes: &[(&str, Result<String, &str>)]) -> Vec<Effect> {
        self.batch_asked(Duration::ZERO, probes)
    }

    pub(super) fn exited(&mut self, name: &str, pid: u32, how: &str) -> Vec<Effect> {
        self.feed(Input::Exited {
            name: name.into(),
            pid,
            how: how.into(),
            last_output: vec!["some line".into()],
            port_holder: None,
        })
    }

    pub(super) fn request(&mut self, request: Request) -> (RequestId, Vec<Effect>) {
        let id = self.next_id;
        self.next_id += 1;
        (id, self.feed(Input::Request { id, request }))
    }

    pub(super) fn kind(&self, name: &str) -> Kind {
        self.m
            .state(name)
            .map(State::kind)
            .expect("no such instance")
    }

    /// Why the waiting instance `name` has not started (it must be waiting).
    pub(super) fn blocker(&self, name: &str) -> Blocker {
        match self.m.state(name) {
            Some(State::Waiting { reason, .. }) => reason.clone(),
            other => panic!("{name} is not waiting: {other:?}"),
        }
    }

    /// Whether `name` waits for its upstream `up` to come up.
    pub(super) fn waits_for_upstream(&self, name: &str, up: &str) -> bool {
        matches!(self.blocker(name), Blocker::Upstream { upstream, .. } if upstream == up)
    }

    pub(super) fn pid(&self, name: &str) -> Option<u32> {
        self.m.state(name).and_then(State::pid)
    }

    /// `redisrepd stop [--force] NAME`.
    pub(super) fn stop(&mut self, name: &str, force: bool) -> (RequestId, Vec<Effect>) {
        self.request(Request::Stop {
            instances: vec![name.into()],
            force,
        })
    }

    /// The outcome of the SHUTDOWN of `name` (as `pid`).
    pub(super) fn shutdown_done(
        &mut self,
        name: &str,
        pid: u32,
        result: Result<(), ShutdownError>,
    ) -> Vec<Effect> {
        self.feed(Input::ShutdownDone {
            name: name.into(),
            pid,
            result,
        })
    }

    /// `name` (as `pid`) answers SHUTDOWN that its final save failed.
    pub(super) fn save_refused(&mut self, name: &str, pid: u32) -> Vec<Effect> {
        let refused = ShutdownError::Refused("ERR Errors trying to SHUTDOWN".into());
        self.shutdown_done(name, pid, Err(refused))
    }

    /// The upstream grants `name` a place in its sync gate.
    pub(super) fn grant(&mut self, name: &str) -> Vec<Effect> {
        self.feed(Input::ClaimResult {
            name: name.into(),
            granted: true,
            detail: String::new(),
            retry_after: Duration::ZERO,
        })
    }

    /// The upstream refuses `name` a place in its sync gate, saying `detail`; it may ask
    /// again after `retry_after`.
    pub(super) fn refuse(
        &mut self,
        name: &str,
        detail: &str,
        retry_after: Duration,
    ) -> Vec<Effect> {
        self.feed(Input::ClaimResult {
            name: name.into(),
            granted: false,
            detail: detail.into(),
            retry_after,
        })
    }

    /// The answer to `Failover` or `MakeMaster` for `name`.
    pub(super) fn role_changed(&mut self, name: &str, result: Result<(), &str>) -> Vec<Effect> {
        self.feed(Input::RoleChanged {
            name: name.into(),
            result: result.map_err(str::to_owned),
        })
    }

    /// The answer to `ApplyLive` for `name`.
    pub(super) fn live_applied(
        &mut self,
        name: &str,
        result: Result<(), LiveFailure>,
    ) -> Vec<Effect> {
        self.feed(Input::LiveApplied {
            name: name.into(),
            result,
        })
    }

    /// `reload` as request `id`, the file now reading `text` (same server): the effects of
    /// the loaded file.
    pub(super) fn reload(&mut self, id: RequestId, text: &str) -> Vec<Effect> {
        self.feed(Input::ReloadRequested { id: Some(id) });
        self.feed(Input::ConfigLoaded {
            id: Some(id),
            result: Ok(Box::new(loaded(group(text)))),
        })
    }

    /// Brings the master up: launched as pid 100, answering; returns what its probe
    /// made the machine do.
    pub(super) fn master_up(&mut self) -> Vec<Effect> {
        let fx = self.tick();
        assert!(launches(&fx).contains(&"master".to_owned()), "{fx:?}");
        self.launched("master", 100);
        let fx = self.probe("master", &master_info(100, &[]));
        assert_eq!(self.kind("master"), Kind::Running);
        fx
    }

    /// Takes replica `name` from waiting to running as `pid` (gate granted, launched,
    /// answering, listed online by the master with pid 100).
    pub(super) fn replica_up(&mut self, name: &str, pid: u32, online: &[(&str, u16)]) {
        self.tick();
        self.grant(name);
        self.launched(name, pid);
        self.probe(name, &replica_info(pid, 1000));
        self.probe("master", &master_info(100, online));
        assert_eq!(self.kind(name), Kind::Running, "{:?}", self.m.state(name));
    }
}

pub(super) fn master_info(pid: u32, online: &[(&str, u16)]) -> String {
    master_info_with(pid, online, "online", 0)
}

pub(super) fn master_info_with(
    pid: u32,
    replicas: &[(&str, u16)],
    state: &str,
    sync_full: i64,
) -> String {
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

pub(super) fn replica_info(pid: u32, offset: i64) -> String {
    format!(
        "role:slave\r\nprocess_id:{pid}\r\nloading:0\r\nmaster_link_status:up\r\n\
         master_sync_in_progress:0\r\nmaster_repl_offset:{offset}\r\n"
    )
}

pub(super) fn launches(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch(spec) => Some(spec.name.clone()),
            _ => None,
        })
        .collect()
}

/// The actual masters the machine asked to keep (`SaveTopology`).
pub(super) fn saved(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::SaveTopology { master } => Some(master.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn claims(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Claim { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn releases(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Release { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn shutdowns(fx: &[Effect]) -> Vec<(String, bool)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Shutdown { name, nosave, .. } => Some((name.clone(), *nosave)),
            _ => None,
        })
        .collect()
}

pub(super) fn signals(fx: &[Effect]) -> Vec<(String, Sig)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Signal { name, sig, .. } => Some((name.clone(), *sig)),
            _ => None,
        })
        .collect()
}

pub(super) fn reply(fx: &[Effect], id: RequestId) -> Option<&Response> {
    fx.iter().find_map(|e| match e {
        Effect::Reply { id: i, response } if *i == id => Some(response),
        _ => None,
    })
}

pub(super) fn done(fx: &[Effect], id: RequestId) -> (bool, Vec<String>) {
    match reply(fx, id) {
        Some(Response::Done { ok, lines, .. }) => (*ok, lines.clone()),
        other => panic!("no Done reply for {id}: {other:?} in {fx:?}"),
    }
}

pub(super) fn notifies(fx: &[Effect]) -> Vec<Notify> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn last_error(h: &H, name: &str) -> String {
    h.m.status(h.now)
        .into_iter()
        .find(|s| s.name == name)
        .and_then(|s| s.last_error)
        .unwrap_or_default()
}

pub(super) fn shutdown_ok(h: &mut H, name: &str, pid: u32) -> Vec<Effect> {
    let mut fx = h.shutdown_done(name, pid, Ok(()));
    fx.extend(h.exited(name, pid, "exit code 0"));
    fx
}

// ----- INFO of a group in roles: the master at M, replicas at R1 and R2 --------------

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

pub(super) fn up_all(h: &mut H) {
    h.master_up();
    h.replica_up("r1", 201, &[R1]);
    h.replica_up("r2", 202, &[R1, R2]);
}

pub(super) fn failovers(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Failover { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn made_master(fx: &[Effect]) -> Vec<String> {
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

/// The config of the next launch of `name`: from `fx`, or after its gate place is
/// granted.
pub(super) fn launch_conf(h: &mut H, fx: Vec<Effect>, name: &str) -> String {
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

/// Every instance answers as in the group before any change: the master with both.
pub(super) fn probe_before(h: &mut H) -> Vec<Effect> {
    let mut fx = h.probe("r1", &follower(201, M, "aaa", 1000));
    fx.extend(h.probe("r2", &follower(202, M, "aaa", 1000)));
    fx.extend(h.probe("master", &leader(100, "aaa", "0", 1000, &[R1, R2])));
    fx
}

/// The master crashes with its RDB at `aaa`/500 (an AOF master ignores it) and the
/// replicas then report `r1` and `r2`: the effects of the last probe.
pub(super) fn crash(h: &mut H, r1: &str, r2: &str) -> Vec<Effect> {
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
