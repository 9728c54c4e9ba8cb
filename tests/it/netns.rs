//! Two hosts for real: the seed layout (a master on host `master` at 192.168.100.101:6379,
//! two replicas on host `slave` at 192.168.100.102:6379 and :6380) in two network
//! namespaces made by the test and joined by a veth pair, one daemon in each. No traffic
//! leaves the namespaces; they are removed afterwards, also when the test fails.
//!
//! The daemons share one run_dir in the test's temp dir (Unix sockets work across network
//! namespaces), so the CLI finds both; whatever reads Redis (the CLI for a host without a
//! daemon, and the test itself) runs inside a namespace.
//!
//! The same two hosts with three sentinels (one beside the master, two beside the
//! replicas): cut off, the master's host loses the role to a replica, and its old master
//! rejoins as that replica's replica when the link comes back.
//!
//! Needs root (CI runs as root) and `ip` from iproute2.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::util::{self, Netns, ProcGuard, Run, in_ns, ip};

const MASTER_IP: &str = "192.168.100.101";
const SLAVE_IP: &str = "192.168.100.102";
const REPLICAS: [&str; 2] = ["replica-6379", "replica-6380"];

/// The command line of the redisrepd binary run inside `ns`.
fn redisrepd_in(ns: &str, config: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(util::bin())
        .arg("--config")
        .arg(config)
        .env_remove("REDISREPD_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM");
    cmd
}

/// `ip netns exec ns redisrepd daemon --host host` (ip execs, so the pid is the daemon's),
/// logging (appending) to `daemon-<host>.log`; waits for its control socket (it exists only
/// once it listens).
fn start_daemon(c: &Cluster, ns: &str, host: &str) -> ProcGuard {
    let log = c.dir.join(format!("daemon-{host}.log"));
    let file = File::options()
        .create(true)
        .append(true)
        .open(&log)
        .expect("daemon log");
    let mut cmd = redisrepd_in(ns, &c.config);
    cmd.args(["daemon", "--host", host])
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file);
    let mut proc = ProcGuard::spawn(&format!("daemon --host {host} in {ns}"), &mut cmd);
    let socket = c.run_dir().join(format!("{host}.sock"));
    util::wait_until(UP, &format!("the socket of host `{host}`"), || {
        if let Some(status) = proc.exited() {
            panic!(
                "daemon for `{host}` exited ({status}):\n{}",
                c.daemon_log(host)
            );
        }
        socket.exists()
    });
    proc
}

/// `redisrepd ARGS...` inside `ns`.
fn cli_in(c: &Cluster, ns: &str, args: &[&str]) -> Run {
    util::run(redisrepd_in(ns, &c.config).args(args), UP)
}

/// `status --json` inside `ns`, by instance name.
fn status_in(c: &Cluster, ns: &str) -> BTreeMap<String, Value> {
    cluster::parse_status(&cli_in(c, ns, &["status", "--json"]))
}

/// Both daemon logs' last lines, for failure messages.
fn logs(c: &Cluster) -> String {
    ["master", "slave"]
        .iter()
        .map(|h| {
            let log = c.daemon_log(h);
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- daemon {h}:\n{}\n", tail.join("\n"))
        })
        .collect()
}

/// Waits until `status` (run in `ns`) exits 0.
fn wait_healthy_in(c: &Cluster, ns: &str) {
    util::wait_for(UP, "every instance running and in sync", || {
        let run = cli_in(c, ns, &["status"]);
        if run.status.code() == Some(0) {
            Ok(())
        } else {
            Err(format!("{}\n{}", run.stdout, logs(c)))
        }
    });
}

/// An integer field of INFO `section` of the instance at `addr`, read from inside `ns`.
fn info_int(ns: &str, addr: SocketAddr, section: &str, field: &str) -> i64 {
    in_ns(ns, || {
        let mut con = util::connect(addr, Some(PASSWORD))
            .unwrap_or_else(|e| panic!("connecting to {addr} in {ns}: {e}"));
        util::info(&mut con, section)
            .unwrap_or_else(|e| panic!("INFO {section} of {addr}: {e}"))
            .get(field)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("INFO {section} of {addr} has no {field}"))
    })
}

/// SETs `k:i = v:i` for `range` on the instance at `addr`, from inside `ns`.
fn write_keys(ns: &str, addr: SocketAddr, range: std::ops::Range<u32>) {
    in_ns(ns, || {
        let mut con = util::connect(addr, Some(PASSWORD))
            .unwrap_or_else(|e| panic!("connecting to {addr} in {ns}: {e}"));
        for i in range {
            let _: () = redis::cmd("SET")
                .arg(format!("k:{i}"))
                .arg(format!("v:{i}"))
                .query(&mut con)
                .unwrap_or_else(|e| panic!("SET k:{i} on {addr}: {e}"));
        }
    });
}

/// Whether the instance at `addr` holds `k:i = v:i` for all of `range` (read from `ns`).
fn has_keys(ns: &str, addr: SocketAddr, range: std::ops::Range<u32>) -> Result<(), String> {
    in_ns(ns, || {
        let mut con = util::connect(addr, Some(PASSWORD)).map_err(|e| e.to_string())?;
        let keys: Vec<String> = range.clone().map(|i| format!("k:{i}")).collect();
        let got: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        let missing: Vec<u32> = range
            .zip(got)
            .filter(|(i, v)| v.as_deref() != Some(format!("v:{i}").as_str()))
            .map(|(i, _)| i)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{addr} lacks {} keys, e.g. {:?}",
                missing.len(),
                &missing[..1]
            ))
        }
    })
}

/// The pids the `slave` daemon reports for the replicas.
fn replica_pids(c: &Cluster, ns: &str) -> Vec<u64> {
    let s = status_in(c, ns);
    REPLICAS
        .iter()
        .map(|r| {
            s[*r]["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("`{r}` has no pid: {}", s[*r]))
        })
        .collect()
}

/// The seed layout at the seed addresses (`master` on MASTER_IP:6379, the replicas on
/// SLAVE_IP:6379 and :6380), with `extra_sections` after the instances.
fn seed_layout(extra_sections: &str) -> Cluster {
    // Redis 7.0 cannot resume replication after loading an AOF, so RDB only. A short
    // repl-timeout (with pings more often than that) makes a cut link show within seconds.
    let mut c = cluster::Builder::new()
        .instance("master", "master", None)
        .instance(REPLICAS[0], "slave", Some("master"))
        .instance(REPLICAS[1], "slave", Some("master"))
        .redis(
            "save = [\"3600 1\"]\nappendonly = \"no\"\nrepl-timeout = 4\n\
             repl-ping-replica-period = 1\n",
        )
        .build();
    for (m, (ip, port)) in
        c.members
            .iter_mut()
            .zip([(MASTER_IP, 6379), (SLAVE_IP, 6379), (SLAVE_IP, 6380)])
    {
        m.ip = ip.parse().expect("an IP");
        m.port = port;
    }
    c.extra_sections = extra_sections.to_owned();
    c.write_config();
    c
}

/// Whether this process may make namespaces; panics saying what is missing otherwise.
fn require_root_and_ip() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it creates network namespaces and a veth pair (run `cargo \
         test` as root, as CI does)"
    );
    assert!(
        which::which("ip").is_ok(),
        "`ip` not found: install iproute2 (`apt-get install iproute2`)"
    );
}

#[test]
fn seed_layout_on_two_hosts_survives_a_cut_link_and_a_master_reboot() {
    require_root_and_ip();
    let pid = std::process::id();
    let (na, nb) = (format!("rrd-{pid}-a"), format!("rrd-{pid}-b"));
    let (va, vb) = (format!("rrd{pid}a"), format!("rrd{pid}b"));
    // Declared first, dropped last: after the daemons and every redis-server are gone.
    let _netns = Netns::pair([&na, &nb], [&va, &vb], [MASTER_IP, SLAVE_IP]);

    let c = seed_layout("");
    let master = c.addr("master");
    let replicas: Vec<SocketAddr> = REPLICAS.iter().map(|r| c.addr(r)).collect();

    let mut master_daemon = start_daemon(&c, &na, "master");
    let _slave_daemon = start_daemon(&c, &nb, "slave");
    wait_healthy_in(&c, &nb);
    let pids = replica_pids(&c, &nb);
    write_keys(&na, master, 0..100);
    for r in &replicas {
        util::wait_for(UP, &format!("the first keys on {r}"), || {
            has_keys(&nb, *r, 0..100)
        });
    }
    let full_before = info_int(&na, master, "stats", "sync_full");
    let partial_before = info_int(&na, master, "stats", "sync_partial_ok");

    // Cut the link. The master keeps taking writes; the replicas notice within
    // repl-timeout, keep serving what they have, and are left alone.
    let cut = Instant::now();
    ip(&["-n", &nb, "link", "set", &vb, "down"]);
    write_keys(&na, master, 100..150);
    util::wait_for(UP, "both replicas to see their link down", || {
        let s = status_in(&c, &nb);
        if REPLICAS
            .iter()
            .all(|r| s[*r]["master_link_status"] == "down")
        {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    let noticed = cut.elapsed();
    for r in &replicas {
        has_keys(&nb, *r, 0..100).expect("a cut-off replica still serves reads");
    }
    let s = status_in(&c, &nb);
    for r in REPLICAS {
        assert_eq!(s[r]["state"], "running", "{}", s[r]);
        assert_eq!(s[r]["restarts"], 0, "{}", s[r]);
    }
    assert_eq!(replica_pids(&c, &nb), pids, "replicas are not restarted");
    cli_in(&c, &nb, &["status"]).expect_code(3);

    // Restore it: both resume with a partial resync and get the writes they missed.
    let restored = Instant::now();
    ip(&["-n", &nb, "link", "set", &vb, "up"]);
    wait_healthy_in(&c, &nb);
    for r in &replicas {
        util::wait_for(
            UP,
            &format!("the keys written during the cut on {r}"),
            || has_keys(&nb, *r, 0..150),
        );
    }
    let resynced = restored.elapsed();
    assert!(
        info_int(&na, master, "stats", "sync_partial_ok") >= partial_before + 2,
        "both replicas resynced partially\n{}",
        logs(&c)
    );
    assert_eq!(
        info_int(&na, master, "stats", "sync_full"),
        full_before,
        "no full sync after the link came back\n{}",
        logs(&c)
    );
    assert_eq!(replica_pids(&c, &nb), pids, "replicas are not restarted");

    // "Reboot" the master host: its daemon stops the master (SHUTDOWN SAVE), then comes
    // back. The replicas wait, serving reads, and resume partially.
    let master_pid = status_in(&c, &nb)["master"]["pid"].clone();
    master_daemon.signal(Signal::SIGTERM);
    let status = master_daemon.wait_exit(UP);
    assert_eq!(status.code(), Some(0), "{}", logs(&c));
    assert!(
        in_ns(&na, || util::connect(master, Some(PASSWORD)).is_err()),
        "the master is down with its host"
    );
    let s = status_in(&c, &nb);
    assert_eq!(s["master"]["state"], "unreachable", "{}", s["master"]);
    for r in &replicas {
        has_keys(&nb, *r, 0..150).expect("replicas serve reads while the master is away");
    }
    let rebooted = Instant::now();
    master_daemon = start_daemon(&c, &na, "master");
    wait_healthy_in(&c, &nb);
    let back = rebooted.elapsed();
    assert_ne!(status_in(&c, &nb)["master"]["pid"], master_pid);
    // Before Redis 7.0 a restarted master takes a new replication id: every replica
    // full-syncs (docs/reference/redis-facts.md).
    let server = util::test_server();
    let (full, partial) = if server.master_restart_keeps_replid() {
        (0, 2)
    } else {
        (2, 0)
    };
    assert_eq!(
        info_int(&na, master, "stats", "sync_full"),
        full,
        "full syncs served by the rebooted master on {server}\n{}",
        logs(&c)
    );
    assert!(
        info_int(&na, master, "stats", "sync_partial_ok") >= partial,
        "partial resyncs on {server}\n{}",
        logs(&c)
    );
    has_keys(&na, master, 0..150).expect("the master kept its data over the reboot");
    write_keys(&na, master, 150..160);
    for r in &replicas {
        util::wait_for(UP, &format!("new writes on {r}"), || {
            has_keys(&nb, *r, 0..160)
        });
    }
    assert_eq!(replica_pids(&c, &nb), pids, "replicas are not restarted");
    eprintln!(
        "netns: link cut noticed after {noticed:.1?}; in sync {resynced:.1?} after the link \
         came back; healthy {back:.1?} after the master host's daemon started again"
    );
    drop(master_daemon);
}

/// The sentinels of the Sentinel test: name, host, address. One beside the master, two
/// beside the replicas: cut off, the master's host has no majority.
const SENTINELS: [(&str, &str, &str, u16); 3] = [
    ("s1", "master", MASTER_IP, 26379),
    ("s2", "slave", SLAVE_IP, 26379),
    ("s3", "slave", SLAVE_IP, 26380),
];

/// The longest a failover may take after the master's host is cut off: `down_after` (2 s)
/// plus the election (~2.3 s measured), with room for a slow machine.
const FAILOVER: Duration = Duration::from_secs(30);

/// How long the group may take to have one master again after the link comes back.
const REJOIN: Duration = Duration::from_secs(30);

/// What an instance says it is, read from inside `ns`: its role and, for a replica, the
/// master it follows.
fn role(ns: &str, addr: SocketAddr) -> Result<(String, Option<SocketAddr>), String> {
    in_ns(ns, || {
        let mut con = util::connect(addr, Some(PASSWORD)).map_err(|e| format!("{addr}: {e}"))?;
        let info = util::info(&mut con, "replication").map_err(|e| format!("{addr}: {e}"))?;
        let role = info.get("role").cloned().unwrap_or_default();
        let upstream = match (info.get("master_host"), info.get("master_port")) {
            (Some(h), Some(p)) => Some(SocketAddr::new(
                h.parse()
                    .map_err(|e| format!("{addr}: master_host {h}: {e}"))?,
                p.parse()
                    .map_err(|e| format!("{addr}: master_port {p}: {e}"))?,
            )),
            _ => None,
        };
        Ok((role, upstream))
    })
}

/// SETs `k:i = v:i` for `range` on `addr` from inside `ns`, then `WAIT replicas`: returns
/// how many replicas acknowledged them.
fn write_acked(ns: &str, addr: SocketAddr, range: std::ops::Range<u32>, replicas: i64) -> i64 {
    in_ns(ns, || {
        let mut con = util::connect(addr, Some(PASSWORD))
            .unwrap_or_else(|e| panic!("connecting to {addr} in {ns}: {e}"));
        for i in range {
            let _: () = redis::cmd("SET")
                .arg(format!("k:{i}"))
                .arg(format!("v:{i}"))
                .query(&mut con)
                .unwrap_or_else(|e| panic!("SET k:{i} on {addr}: {e}"));
        }
        redis::cmd("WAIT")
            .arg(replicas)
            .arg(5000)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("WAIT on {addr}: {e}"))
    })
}

/// Waits until every sentinel (namespace, address) names `want` as the master and knows
/// both replicas and the two other sentinels. Sentinel finds replicas in the master's INFO,
/// asked every 10 s: until then it has none to promote.
fn wait_sentinels_know(c: &Cluster, sentinels: &[(&str, SocketAddr)], want: SocketAddr) {
    util::wait_for(
        UP,
        &format!("the sentinels to name {want}, knowing all"),
        || {
            let views: Vec<_> = sentinels
                .iter()
                .map(|(ns, s)| {
                    in_ns(ns, || {
                        (
                            crate::sentinel_mode::named(*s),
                            crate::sentinel_mode::known(*s),
                        )
                    })
                })
                .collect();
            if views.iter().all(|v| *v == (Some(want), Some((2, 2)))) {
                Ok(())
            } else {
                Err(format!(
                    "(named, (replicas, sentinels)): {views:?}\n{}",
                    logs(c)
                ))
            }
        },
    );
}

/// Each sentinel's `SENTINEL MYID`.
fn sentinel_ids(sentinels: &[(&str, SocketAddr)]) -> Vec<Option<String>> {
    sentinels
        .iter()
        .map(|(ns, s)| in_ns(ns, || crate::sentinel_mode::myid(*s)))
        .collect()
}

/// Exactly one master in the group, `want`, and every other instance its replica (each
/// read from its own namespace).
fn one_master(instances: &[(&str, SocketAddr)], want: SocketAddr) -> Result<(), String> {
    let roles: Vec<_> = instances.iter().map(|(ns, a)| (*a, role(ns, *a))).collect();
    let ok = roles.iter().all(|(a, r)| match r {
        Ok((role, _)) if *a == want => role == "master",
        Ok((role, up)) => role == "slave" && *up == Some(want),
        Err(_) => false,
    });
    if ok {
        Ok(())
    } else {
        Err(format!("want {want} the only master; roles: {roles:?}"))
    }
}

#[test]
fn sentinel_fails_over_when_the_master_host_is_cut_off_and_the_old_master_rejoins() {
    require_root_and_ip();
    let pid = std::process::id();
    // Not the names of the other test here: both may run at once in one process.
    let (na, nb) = (format!("rrd-{pid}-sa"), format!("rrd-{pid}-sb"));
    let (va, vb) = (format!("rrd{pid}sa"), format!("rrd{pid}sb"));
    // Declared first, dropped last: after the daemons and every server are gone.
    let _netns = Netns::pair([&na, &nb], [&va, &vb], [MASTER_IP, SLAVE_IP]);
    let ns_of = |host: &str| {
        if host == "master" {
            na.clone()
        } else {
            nb.clone()
        }
    };

    let nodes: String = SENTINELS
        .iter()
        .map(|(name, host, ip, port)| {
            format!(
                "  {{ name = \"{name}\", host = \"{host}\", bind = \"{ip}\", port = {port} }},\n"
            )
        })
        .collect();
    let c = seed_layout(&format!(
        "\n[sentinel]\nquorum = 2\ndown_after = \"2s\"\nfailover_timeout = \"10s\"\n\
         nodes = [\n{nodes}]\n"
    ));
    let sentinel_ns: Vec<String> = SENTINELS.iter().map(|s| ns_of(s.1)).collect();
    let sentinels: Vec<(&str, SocketAddr)> = SENTINELS
        .iter()
        .zip(&sentinel_ns)
        .map(|((_, _, ip, port), ns)| {
            (
                ns.as_str(),
                SocketAddr::new(ip.parse().expect("an IP"), *port),
            )
        })
        .collect();
    let master = c.addr("master");
    let instances: Vec<(&str, SocketAddr)> = std::iter::once((na.as_str(), master))
        .chain(REPLICAS.iter().map(|r| (nb.as_str(), c.addr(r))))
        .collect();

    let master_daemon = start_daemon(&c, &na, "master");
    let mut slave_daemon = start_daemon(&c, &nb, "slave");
    wait_healthy_in(&c, &nb);
    wait_sentinels_know(&c, &sentinels, master);
    let ids = sentinel_ids(&sentinels);
    assert!(ids.iter().all(Option::is_some), "{ids:?}");

    // Writes both replicas acknowledged: none of them may be lost.
    assert_eq!(
        write_acked(&na, master, 0..300, 2),
        2,
        "both replicas acknowledge\n{}",
        logs(&c)
    );

    // Cut the master's host off. s2 and s3 are a majority: they fail over to a replica.
    let cut = Instant::now();
    ip(&["-n", &nb, "link", "set", &vb, "down"]);
    let (new_master, named_after) =
        util::wait_for(FAILOVER, "s2 and s3 to name a replica as master", || {
            let views: Vec<Option<SocketAddr>> = sentinels[1..]
                .iter()
                .map(|(ns, s)| in_ns(ns, || crate::sentinel_mode::named(*s)))
                .collect();
            match views[0] {
                Some(a) if a != master && views.iter().all(|v| *v == Some(a)) => REPLICAS
                    .iter()
                    .find(|r| c.addr(r) == a)
                    .map(|r| (r.to_string(), cut.elapsed()))
                    .ok_or_else(|| format!("{a} is no replica")),
                _ => Err(format!("{views:?}\n{}", logs(&c))),
            }
        });
    let new_addr = c.addr(&new_master);
    util::wait_for(
        FAILOVER.saturating_sub(cut.elapsed()),
        &format!("`{new_master}` to take writes within {FAILOVER:?} of the cut"),
        || {
            in_ns(&nb, || {
                let mut con = util::connect(new_addr, Some(PASSWORD)).map_err(|e| e.to_string())?;
                redis::cmd("SET")
                    .arg("k:300")
                    .arg("v:300")
                    .query::<()>(&mut con)
                    .map_err(|e| format!("{e}\n{}", logs(&c)))
            })
        },
    );
    let writable = cut.elapsed();
    eprintln!(
        "netns sentinel: link down → s2+s3 name `{new_master}` after {named_after:.2?}, \
         it takes writes after {writable:.2?}"
    );
    assert!(
        writable <= FAILOVER,
        "the new master took writes {writable:.2?} after the cut (limit {FAILOVER:?})"
    );
    // Writes go on there; the other replica follows it (Sentinel re-points it).
    write_keys(&nb, new_addr, 301..400);
    let other = REPLICAS
        .iter()
        .find(|r| **r != new_master)
        .expect("two replicas");
    util::wait_for(UP, &format!("`{other}` to follow `{new_master}`"), || {
        has_keys(&nb, c.addr(other), 0..400)
    });
    // The old master, alone with s1, does not know yet.
    let old_role = role(&na, master);

    // The link comes back: the old master must become a replica of the new one.
    let up = Instant::now();
    ip(&["-n", &nb, "link", "set", &vb, "up"]);
    util::wait_for(
        REJOIN,
        &format!("one master, `{new_master}`, within {REJOIN:?} of the link coming back"),
        || one_master(&instances, new_addr).map_err(|e| format!("{e}\n{}", logs(&c))),
    );
    let rejoined = up.elapsed();
    util::wait_for(
        UP,
        "the old master to hold every acknowledged write and those made since",
        || has_keys(&na, master, 0..400),
    );
    let synced = up.elapsed();
    eprintln!(
        "netns sentinel: old master while cut off: {old_role:?}; link up → one master \
         after {rejoined:.2?}, the old master in sync after {synced:.2?}"
    );
    wait_sentinels_know(&c, &sentinels, new_addr);
    wait_healthy_in(&c, &nb);
    for (ns, a) in &instances {
        util::wait_for(UP, &format!("every acknowledged write on {a}"), || {
            has_keys(ns, *a, 0..400)
        });
    }
    assert_eq!(
        sentinel_ids(&sentinels),
        ids,
        "each sentinel is still itself"
    );

    // What the sentinels learned survives a restart of the daemon beside the replicas.
    // That host holds the master now and stops it with the rest (a daemon's own stop asks
    // for no failover); Sentinel may or may not fail over to the old master while it is
    // away. Either way one master afterwards, the one the sentinels name.
    slave_daemon.signal(Signal::SIGTERM);
    let status = slave_daemon.wait_exit(UP);
    assert_eq!(status.code(), Some(0), "{}", logs(&c));
    let _ = std::fs::remove_file(c.run_dir().join("slave.sock"));
    slave_daemon = start_daemon(&c, &nb, "slave");
    wait_healthy_in(&c, &nb);
    let named_now =
        in_ns(&nb, || crate::sentinel_mode::named(sentinels[1].1)).expect("s2 names a master");
    assert!(named_now == master || named_now == new_addr, "{named_now}");
    wait_sentinels_know(&c, &sentinels, named_now);
    assert_eq!(
        sentinel_ids(&sentinels),
        ids,
        "each sentinel is still itself after the daemon restart"
    );
    one_master(&instances, named_now).unwrap_or_else(|e| panic!("{e}\n{}", logs(&c)));
    for (ns, a) in &instances {
        util::wait_for(UP, &format!("every write on {a} after the restart"), || {
            has_keys(ns, *a, 0..400)
        });
    }
    drop(slave_daemon);
    drop(master_daemon);
}

/// The virtual IP of the VIP test, and the device it lives on in each namespace.
const VIP: &str = "192.168.100.200";
const VIP_DEV: &str = "vip0";

/// Whether `ns` has the VIP on its device (`ip addr show`).
fn has_vip(ns: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "addr", "show", "dev", VIP_DEV])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.contains(&format!("inet {VIP}/"))
}

/// A client in `ns` that writes `w:<n>` through the VIP, reconnecting after any error, and
/// records the longest time between two acknowledged writes.
struct VipWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Writes acknowledged so far, for waiting on progress instead of on time.
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    handle: std::thread::JoinHandle<(u64, Duration)>,
}

impl VipWriter {
    fn start(ns: &str, vip: SocketAddr) -> VipWriter {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked_so_far = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (ns, flag, counter) = (ns.to_owned(), stop.clone(), acked_so_far.clone());
        let handle = std::thread::spawn(move || {
            in_ns(&ns, || {
                let (mut acked, mut longest) = (0u64, Duration::ZERO);
                let mut last = Instant::now();
                let mut con = None;
                while !flag.load(Ordering::Relaxed) {
                    if con.is_none() {
                        con = util::connect(vip, Some(PASSWORD)).ok();
                    }
                    let Some(c) = con.as_mut() else {
                        // Pacing reconnects while the VIP moves, not waiting for a condition.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let set: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(format!("w:{acked}"))
                        .arg("v")
                        .query(c);
                    match set {
                        Ok(()) => {
                            acked += 1;
                            counter.store(acked, Ordering::Relaxed);
                            longest = longest.max(last.elapsed());
                            last = Instant::now();
                        }
                        // READONLY, a closed connection: reconnect (the VIP may have moved).
                        Err(_) => con = None,
                    }
                }
                (acked, longest)
            })
        });
        VipWriter {
            stop,
            acked: acked_so_far,
            handle,
        }
    }

    /// Waits until `more` writes beyond those acknowledged now have been acknowledged.
    fn wait_for_more(&self, more: u64) {
        let target = self.acked.load(std::sync::atomic::Ordering::Relaxed) + more;
        util::wait_for(UP, &format!("{more} more writes through the VIP"), || {
            let now = self.acked.load(std::sync::atomic::Ordering::Relaxed);
            if now >= target {
                Ok(())
            } else {
                Err(format!("{now} acknowledged, want {target}"))
            }
        });
    }

    fn finish(self) -> (u64, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().expect("writer")
    }
}

#[test]
fn the_vip_hook_moves_the_address_to_the_new_masters_host() {
    require_root_and_ip();
    let pid = std::process::id();
    let (na, nb) = (format!("rrd-{pid}-va"), format!("rrd-{pid}-vb"));
    let (va, vb) = (format!("rrd{pid}va"), format!("rrd{pid}vb"));
    let _netns = Netns::pair([&na, &nb], [&va, &vb], [MASTER_IP, SLAVE_IP]);
    // The same device name on both hosts (the hook's argument is the group's), and a
    // replica may listen on the VIP before it has it.
    for (ns, dev) in [(&na, &va), (&nb, &vb)] {
        ip(&["-n", ns, "link", "set", dev, "down"]);
        ip(&["-n", ns, "link", "set", dev, "name", VIP_DEV]);
        ip(&["-n", ns, "link", "set", VIP_DEV, "up"]);
        let run = util::run(
            Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "sysctl",
                "-w",
                "net.ipv4.ip_nonlocal_bind=1",
            ]),
            UP,
        );
        assert_eq!(run.status.code(), Some(0), "{run}");
    }
    let hook = util::example_path("move-vip");
    let mut c = cluster::Builder::new()
        .instance("m", "master", None)
        .with(&format!("extra_bind = [\"{VIP}\"]"))
        .instance("r", "slave", Some("m"))
        .with(&format!("extra_bind = [\"{VIP}\"]"))
        .build();
    for (m, ip) in c.members.iter_mut().zip([MASTER_IP, SLAVE_IP]) {
        m.ip = ip.parse().expect("an IP");
        m.port = 6379;
    }
    c.extra_sections = format!(
        "[hooks]\non_role_change = [\"{}\", \"{VIP}/24\", \"{VIP_DEV}\"]\ntimeout = \"5s\"\n",
        hook.display()
    );
    c.write_config();
    let _a = start_daemon(&c, &na, "master");
    let _b = start_daemon(&c, &nb, "slave");
    wait_healthy_in(&c, &nb);
    // Each daemon runs the hook once at start: the VIP goes to the master's host.
    util::wait_until(UP, "the VIP on the master's host", || {
        has_vip(&na) && !has_vip(&nb)
    });
    let vip: SocketAddr = format!("{VIP}:6379").parse().expect("VIP address");
    let writer = VipWriter::start(&na, vip);
    writer.wait_for_more(20); // some writes before the change

    let started = Instant::now();
    cli_in(&c, &nb, &["failover", "--to", "r"]).expect_code(0);
    util::wait_until(UP, "the VIP on the new master's host only", || {
        has_vip(&nb) && !has_vip(&na)
    });
    let moved = started.elapsed();
    // A client through the VIP reaches the new master, from the old master's host.
    util::wait_for(UP, "the new master through the VIP", || {
        in_ns(&na, || {
            let mut con = util::connect(vip, Some(PASSWORD)).map_err(|e| e.to_string())?;
            let info = util::info(&mut con, "replication").map_err(|e| e.to_string())?;
            match info.get("role").map(String::as_str) {
                Some("master") => Ok(()),
                other => Err(format!("role {other:?}")),
            }
        })
    });
    util::wait_for(UP, "a write through the VIP", || {
        in_ns(&na, || {
            let mut con = util::connect(vip, Some(PASSWORD)).map_err(|e| e.to_string())?;
            redis::cmd("SET")
                .arg("through-vip")
                .arg("1")
                .query::<()>(&mut con)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })
    });
    // The writer's own connection, too, reaches the new master through the VIP.
    writer.wait_for_more(20);
    let (acked, gap) = writer.finish();
    assert!(acked > 0);
    for host in ["master", "slave"] {
        let log = c.daemon_log(host);
        assert!(log.contains("on_role_change: done"), "{host}:\n{log}");
    }
    let log_b = c.daemon_log("slave");
    assert!(
        log_b.contains(&format!("added {VIP} to {VIP_DEV}")),
        "{log_b}"
    );
    // arping sends two packets a second apart: the hook may still be running.
    util::wait_until(UP, "the gratuitous ARP sent, or its skip said", || {
        let log = c.daemon_log("slave");
        log.contains("announced ") || log.contains("arping not found")
    });
    let log_b = c.daemon_log("slave");
    assert!(
        !log_b.contains("arping failed") && !log_b.contains("not announced on"),
        "{log_b}"
    );

    // And back.
    cli_in(&c, &nb, &["failover", "--to", "m"]).expect_code(0);
    util::wait_until(UP, "the VIP back on the first host", || {
        has_vip(&na) && !has_vip(&nb)
    });
    eprintln!(
        "vip: moved {moved:.1?} after `failover` began; a client writing through the VIP \
         ({acked} writes) waited at most {gap:.2?} between two acknowledged writes"
    );
}
