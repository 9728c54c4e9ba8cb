//! Sentinel without the daemon: a master, a replica and three sentinels whose files
//! `render::sentinel` wrote, asked through `redisrepd_core::sentinel`. Checks that the rendered
//! files make a working Sentinel group, that it fails over when the master dies, that
//! Sentinel's own rewrites name the new master, and that a re-render over them keeps the
//! new master and the learned state (a restarted sentinel comes back as itself).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redisrepd_core::config::{Group, Secret, SentinelNode};
use redisrepd_core::render::sentinel::{learned, render_sentinel, split_args};
use redisrepd_core::render::{self, Secrets};
use redisrepd_core::sentinel;
use redisrepd_io::files;
use redisrepd_io::redis_io::Client as _;
use redisrepd_io::sentinel_client;

use crate::util::*;

const PASSWORD: &str = "sentinel-it-pw";
const ASK: Duration = Duration::from_secs(2);
const DOWN_AFTER_MS: u64 = 1000;
const FAILOVER_TIMEOUT_MS: u64 = 10_000;

/// A sentinel process started on its rendered file; killed when dropped.
struct SentinelProc {
    proc: ProcGuard,
    log: PathBuf,
}

impl SentinelProc {
    fn start(group: &Group, node: &SentinelNode, existing: Option<&str>, dir: &TestDir) -> Self {
        files::ensure_dir(&group.sentinel_dir(node), 0o700).expect("sentinel dir");
        let conf = group.sentinel_conf_path(node);
        let text = render_sentinel(group, node, existing, Secrets::Show);
        files::write_atomic(&conf, text.as_bytes(), 0o600).expect("writing sentinel.conf");
        let log = dir.join(format!("{}.log", node.name));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("sentinel log");
        let mut cmd = Command::new(redis_server());
        cmd.arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cloning a file handle"))
            .stderr(out);
        let proc = ProcGuard::spawn(&format!("sentinel {}", node.name), &mut cmd);
        SentinelProc { proc, log }
    }
}

fn logs(sentinels: &[SentinelProc]) -> String {
    sentinels
        .iter()
        .map(|s| std::fs::read_to_string(&s.log).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// Starts one instance from its rendered redis.conf and waits until it answers.
fn start_instance(group: &Group, name: &str, dir: &TestDir) -> RedisProc {
    let inst = group.instance(name).expect("instance");
    files::ensure_dir(&group.data_path(inst), 0o700).expect("data dir");
    let conf = render::render(group, inst, &test_server(), Secrets::Show);
    let path = dir.write(format!("{name}.conf"), conf);
    let mut proc = RedisProc::spawn(&path);
    let addr = SocketAddr::new(inst.bind, inst.port);
    if let Err(log) = proc.wait_ready(addr, Some(PASSWORD), Duration::from_secs(20)) {
        panic!("{name} did not start: {log}");
    }
    proc
}

fn addr_of(group: &Group, name: &str) -> (IpAddr, u16) {
    let i = group.instance(name).expect("instance");
    (i.bind, i.port)
}

/// A master `m`, its replica `r` (in sync) and three sentinels `s1`-`s3` on files
/// `render_sentinel` wrote, all agreeing on `m`. Everything is killed when dropped.
struct Setup {
    group: Group,
    old_master: (IpAddr, u16),
    new_master: (IpAddr, u16),
    eps: Vec<redisrepd_core::endpoint::Endpoint>,
    ids: Vec<String>,
    // Dropped in this order: sentinels first, so that none fails over while the
    // instances go.
    sentinels: Vec<SentinelProc>,
    master: RedisProc,
    _replica: RedisProc,
    dir: TestDir,
}

impl Setup {
    fn start() -> Setup {
        let dir = TestDir::new();
        let (m_ip, r_ip) = (loopback_ip(), loopback_ip());
        let nodes: Vec<(IpAddr, u16)> = (0..3)
            .map(|_| {
                let a = loopback_ip();
                (a, free_port(a))
            })
            .collect();
        let node_lines: String = nodes
            .iter()
            .enumerate()
            .map(|(n, (a, p))| {
                format!(
                    "  {{ name = \"s{}\", host = \"h{n}\", bind = \"{a}\", port = {p} }},\n",
                    n + 1
                )
            })
            .collect();
        let text = format!(
            "[cluster]\nname = \"shop\"\npassword = \"{PASSWORD}\"\nrun_dir = \"{run}\"\n\
             data_dir = \"{data}\"\nredis_server = \"{server}\"\n\
             [redis]\nsave = \"\"\nappendonly = \"no\"\n\
             [sentinel]\nquorum = 2\ndown_after = \"{DOWN_AFTER_MS}ms\"\n\
             failover_timeout = \"{FAILOVER_TIMEOUT_MS}ms\"\nnodes = [\n{node_lines}]\n\
             [[instance]]\nname = \"m\"\nhost = \"h0\"\nbind = \"{m_ip}\"\nport = {mp}\n\
             [[instance]]\nname = \"r\"\nhost = \"h1\"\nbind = \"{r_ip}\"\nport = {rp}\nreplica_of = \"m\"\n",
            run = dir.join("run").display(),
            data = dir.join("data").display(),
            server = redis_server().display(),
            mp = free_port(m_ip),
            rp = free_port(r_ip),
        );
        let toml_path = dir.write("g.toml", &text);
        let group = redisrepd_core::config::parse(&text, &toml_path, dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .group;
        let (old_master, new_master) = (addr_of(&group, "m"), addr_of(&group, "r"));
        let nodes = group.sentinel.clone().expect("[sentinel]").nodes;
        let eps: Vec<_> = nodes
            .iter()
            .map(|n| sentinel::endpoint(&group, n))
            .collect();

        let master = start_instance(&group, "m", &dir);
        let replica = start_instance(&group, "r", &dir);
        // Sentinel finds replicas in the master's INFO, and promotes none that never synced
        // (measured: `-failover-abort-no-good-slave`, retried every 2 × failover_timeout):
        // start it once the replica is in sync.
        let r_addr = SocketAddr::new(new_master.0, new_master.1);
        wait_until(Duration::from_secs(30), "the replica to be in sync", || {
            connect(r_addr, Some(PASSWORD))
                .and_then(|mut c| info(&mut c, "replication"))
                .is_ok_and(|i| i.get("master_link_status").map(String::as_str) == Some("up"))
        });

        let started = Instant::now();
        let sentinels: Vec<SentinelProc> = nodes
            .iter()
            .map(|n| SentinelProc::start(&group, n, None, &dir))
            .collect();
        for (node, ep) in nodes.iter().zip(&eps) {
            let what = format!(
                "{} to know the 2 other sentinels, the replica and the master",
                node.name
            );
            wait_for(Duration::from_secs(30), &what, || {
                let m = sentinel_client::master_state(ep, "shop", ASK)?;
                let named = sentinel_client::get_master_addr(ep, "shop", ASK)?;
                if m.num_other_sentinels == 2 && m.num_replicas == 1 && named == Some(old_master) {
                    Ok(m)
                } else {
                    Err(format!("{m:?}, names {named:?}"))
                }
            });
        }
        eprintln!("sentinels agreed after {:?}", started.elapsed());
        let q = sentinel_client::ckquorum(&eps[0], "shop", ASK).expect("CKQUORUM");
        assert!(q.ok && q.usable == Some(3), "{q:?}");
        let ids: Vec<String> = eps
            .iter()
            .map(|ep| sentinel_client::myid(ep, ASK).expect("SENTINEL MYID"))
            .collect();
        Setup {
            group,
            old_master,
            new_master,
            eps,
            ids,
            sentinels,
            master,
            _replica: replica,
            dir,
        }
    }
}

#[test]
fn rendered_sentinels_fail_over_and_keep_what_they_learned() {
    // Bound in reverse: locals drop last-bound first, so the processes go before the dir.
    let Setup {
        dir,
        _replica,
        master,
        mut sentinels,
        ids,
        eps,
        new_master,
        old_master,
        group,
    } = Setup::start();
    let nodes = &group.sentinel.as_ref().expect("[sentinel]").nodes;
    let r_addr = SocketAddr::new(new_master.0, new_master.1);

    // The master dies: within down_after and the election, every sentinel names the
    // replica, and the replica is a master.
    master.proc.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let within =
        Duration::from_millis(DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) + Duration::from_secs(10);
    for (node, ep) in nodes.iter().zip(&eps) {
        let what = format!("{} to name the replica as master", node.name);
        wait_for(within, &what, || {
            match sentinel_client::get_master_addr(ep, "shop", ASK) {
                Ok(Some(a)) if a == new_master => Ok(()),
                other => Err(format!("{other:?}\n{}", logs(&sentinels))),
            }
        });
    }
    eprintln!(
        "failover: all sentinels named the new master {:?} after the kill",
        killed.elapsed()
    );
    wait_until(Duration::from_secs(10), "the replica to be master", || {
        connect(r_addr, Some(PASSWORD))
            .and_then(|mut c| info(&mut c, "replication"))
            .is_ok_and(|i| i.get("role").map(String::as_str) == Some("master"))
    });

    // Sentinel rewrote its file: it names the new master.
    let monitor = format!("sentinel monitor shop {} {} 2", new_master.0, new_master.1);
    for node in nodes {
        let path = group.sentinel_conf_path(node);
        let what = format!("{} to name the new master", path.display());
        wait_for(Duration::from_secs(10), &what, || {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            if text.contains(&monitor) {
                Ok(())
            } else {
                Err(text)
            }
        });
    }

    // A re-render over Sentinel's file keeps the new master, the id and the peers.
    for (n, node) in nodes.iter().enumerate() {
        let existing = read(&group.sentinel_conf_path(node));
        let again = render_sentinel(&group, node, Some(&existing), Secrets::Show);
        assert!(again.contains(&format!("{monitor}\n")), "{again}");
        let l = learned(&again, "shop");
        assert_eq!(l.myid.as_deref(), Some(ids[n].as_str()), "{again}");
        assert_eq!(l.known_sentinels.len(), 2, "{again}");
        assert!(l.config_epoch.is_some_and(|e| e >= 1), "{again}");
        assert!(
            !again.contains(&format!(" {} {} 2", old_master.0, old_master.1)),
            "{again}"
        );
    }

    // A sentinel killed and restarted on the re-render comes back as itself, following
    // the new master, and the others still count it.
    let node = &nodes[0];
    sentinels[0].proc.signal(nix::sys::signal::Signal::SIGKILL);
    sentinels[0].proc.wait_exit(Duration::from_secs(10));
    let existing = read(&group.sentinel_conf_path(node));
    sentinels[0] = SentinelProc::start(&group, node, Some(&existing), &dir);
    wait_for(
        Duration::from_secs(30),
        "s1 to come back as itself on the new master",
        || {
            let id = sentinel_client::myid(&eps[0], ASK)?;
            let m = sentinel_client::master_state(&eps[0], "shop", ASK)?;
            if id == ids[0] && m.addr() == Some(new_master) && m.num_other_sentinels == 2 {
                Ok(())
            } else {
                Err(format!("id {id}, {m:?}"))
            }
        },
    );
    for ep in &eps[1..] {
        let m = sentinel_client::master_state(ep, "shop", ASK).expect("SENTINEL MASTER");
        assert_eq!(
            m.num_other_sentinels, 2,
            "no duplicate of the restarted sentinel: {m:?}"
        );
    }
    // A new password reaches a running sentinel live: its own, the one it gives its peers
    // and the one it gives the instances.
    let new = Secret::new("sentinel-it-pw2");
    sentinel_client::change_password(&eps[0], "shop", (std::slice::from_ref(&new), true), ASK)
        .expect("changing the password");
    let mut with_new = eps[0].clone();
    with_new.password = Some(new);
    assert_eq!(
        sentinel_client::myid(&with_new, ASK).as_deref(),
        Ok(ids[0].as_str())
    );
    let refused =
        sentinel_client::myid(&eps[0], ASK).expect_err("the old password must be refused");
    assert!(refused.contains("authentication failed"), "{refused}");
    let path = group.sentinel_conf_path(node);
    wait_until(
        Duration::from_secs(10),
        "s1 to write the new password",
        || {
            // Valkey quotes the values ("..."), Redis does not: compare arguments.
            let lines: Vec<Vec<String>> = read(&path).lines().filter_map(split_args).collect();
            let has = |want: &[&str]| lines.iter().any(|l| l == want);
            has(&["sentinel", "auth-pass", "shop", "sentinel-it-pw2"])
                && has(&["sentinel", "sentinel-pass", "sentinel-it-pw2"])
        },
    );
}

/// A planned switchover through Sentinel while a client writes: `sentinel::switchover`
/// pauses the master's writes, lets the replica catch up, has Sentinel promote it; the old
/// master is then shut down (what `restart` of the master does): every write the old
/// master acknowledged is on the new master.
#[test]
fn switchover_loses_no_acknowledged_write() {
    let setup = Setup::start();
    let old = redisrepd_core::endpoint::Endpoint {
        bind: setup.old_master.0,
        port: setup.old_master.1,
        user: None,
        password: Some(Secret::new(PASSWORD)),
        fallback: Vec::new(),
        tls: None,
    };
    let m_addr = SocketAddr::new(setup.old_master.0, setup.old_master.1);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            // One connection, INCR until the old master stops answering: the last reply
            // is the last acknowledged write.
            let Ok(mut con) = connect(m_addr, Some(PASSWORD)) else {
                return;
            };
            while let Ok(n) = redis::cmd("INCR").arg("k").query::<i64>(&mut con) {
                acked.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    wait_until(Duration::from_secs(10), "the writer to write", || {
        acked.load(std::sync::atomic::Ordering::SeqCst) > 100
    });
    let started = Instant::now();
    let new = sentinel_client::switchover(
        &old,
        &setup.eps,
        "shop",
        Duration::from_secs(30),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("switchover: {e}\n{}", logs(&setup.sentinels)));
    assert_eq!(new, setup.new_master);
    old.shutdown(true, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("SHUTDOWN of the old master: {e}"));
    eprintln!("switchover: writes paused {:?}", started.elapsed());
    writer.join().expect("the writer thread");
    let last = acked.load(std::sync::atomic::Ordering::SeqCst);
    let r_addr = SocketAddr::new(new.0, new.1);
    let mut con = connect(r_addr, Some(PASSWORD)).expect("connecting to the new master");
    let on_new: i64 = redis::cmd("GET").arg("k").query(&mut con).expect("GET k");
    assert!(
        on_new >= last,
        "acknowledged up to {last}, the new master has {on_new}: writes lost"
    );
    let role = info(&mut con, "replication").expect("INFO");
    assert_eq!(role.get("role").map(String::as_str), Some("master"));
    drop(setup);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
