//! Sentinel without the daemon: a master, a replica and three sentinels whose files
//! `render::sentinel` wrote, asked through `redisrepd::sentinel`. Checks that the rendered
//! files make a working Sentinel group, that it fails over when the master dies, that
//! Sentinel's own rewrites name the new master, and that a re-render over them keeps the
//! new master and the learned state (a restarted sentinel comes back as itself).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redisrepd::config::{Group, Secret, SentinelNode};
use redisrepd::render::sentinel::{learned, render_sentinel};
use redisrepd::render::{self, Secrets};
use redisrepd::{files, sentinel};

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

#[test]
fn rendered_sentinels_fail_over_and_keep_what_they_learned() {
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
    let group = redisrepd::config::parse(&text, &toml_path, dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .group;
    let (old_master, new_master) = (addr_of(&group, "m"), addr_of(&group, "r"));
    let nodes = &group.sentinel.as_ref().expect("[sentinel]").nodes;
    let eps: Vec<_> = nodes
        .iter()
        .map(|n| sentinel::endpoint(&group, n))
        .collect();

    let master = start_instance(&group, "m", &dir);
    let _replica = start_instance(&group, "r", &dir);
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
    let mut sentinels: Vec<SentinelProc> = nodes
        .iter()
        .map(|n| SentinelProc::start(&group, n, None, &dir))
        .collect();
    for (node, ep) in nodes.iter().zip(&eps) {
        let what = format!(
            "{} to know the 2 other sentinels, the replica and the master",
            node.name
        );
        wait_for(Duration::from_secs(30), &what, || {
            let m = sentinel::master_state(ep, "shop", ASK)?;
            let named = sentinel::get_master_addr(ep, "shop", ASK)?;
            if m.num_other_sentinels == 2 && m.num_replicas == 1 && named == Some(old_master) {
                Ok(m)
            } else {
                Err(format!("{m:?}, names {named:?}"))
            }
        });
    }
    eprintln!("sentinels agreed after {:?}", started.elapsed());
    let q = sentinel::ckquorum(&eps[0], "shop", ASK).expect("CKQUORUM");
    assert!(q.ok && q.usable == Some(3), "{q:?}");
    let ids: Vec<String> = eps
        .iter()
        .map(|ep| sentinel::myid(ep, ASK).expect("SENTINEL MYID"))
        .collect();

    // The master dies: within down_after and the election, every sentinel names the
    // replica, and the replica is a master.
    master.proc.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let within =
        Duration::from_millis(DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) + Duration::from_secs(10);
    for (node, ep) in nodes.iter().zip(&eps) {
        let what = format!("{} to name the replica as master", node.name);
        wait_for(within, &what, || {
            match sentinel::get_master_addr(ep, "shop", ASK) {
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
            let id = sentinel::myid(&eps[0], ASK)?;
            let m = sentinel::master_state(&eps[0], "shop", ASK)?;
            if id == ids[0] && m.addr() == Some(new_master) && m.num_other_sentinels == 2 {
                Ok(())
            } else {
                Err(format!("id {id}, {m:?}"))
            }
        },
    );
    for ep in &eps[1..] {
        let m = sentinel::master_state(ep, "shop", ASK).expect("SENTINEL MASTER");
        assert_eq!(
            m.num_other_sentinels, 2,
            "no duplicate of the restarted sentinel: {m:?}"
        );
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
