//! Sentinel mode with the daemons: each host's daemon runs its sentinels, follows the
//! master they name, keeps what they learned across its own restart, asks them to fail
//! over before the master goes down, and refuses `promote`. The dead-host failover runs on
//! two layouts: every instance and sentinel on its own address, and the seed's (each host
//! one address, shared by its instances and sentinels, as on two real machines).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::roles::wait_master;
use crate::util;

const ALL: [&str; 3] = ["master", "r1", "r2"];

/// The seed layout (master on `a`, two replicas on `b`) with three sentinels: one on `a`,
/// two on `b`, quorum 2, quick detection.
pub(crate) fn sentinel_group() -> (Cluster, Vec<SocketAddr>) {
    sentinel_group_of(cluster::master_and_two_replicas())
}

/// [`sentinel_group`] on the instances of `builder` (e.g. with `[tls]`).
pub(crate) fn sentinel_group_of(builder: cluster::Builder) -> (Cluster, Vec<SocketAddr>) {
    let mut nodes = Vec::new();
    let mut lines = String::new();
    for (name, host) in [("s1", "a"), ("s2", "b"), ("s3", "b")] {
        let ip = util::loopback_ip();
        let port = util::free_port(ip);
        nodes.push(SocketAddr::new(ip, port));
        lines.push_str(&format!(
            "  {{ name = \"{name}\", host = \"{host}\", bind = \"{ip}\", port = {port} }},\n"
        ));
    }
    let section = format!(
        "\n[sentinel]\nquorum = 2\ndown_after = \"2s\"\nfailover_timeout = \"10s\"\nnodes = [\n{lines}]\n"
    );
    let mut c = builder.build();
    c.extra_sections = section;
    c.write_config();
    (c, nodes)
}

/// The same group on the seed's layout: host `a` has one address, for the master and s1;
/// host `b` another, for r1, r2, s2 and s3 (each on its own port). Sentinels and instances
/// of a host then share its address, as on two real machines.
fn seed_like_group() -> (Cluster, Vec<SocketAddr>) {
    let hosts = [("a", util::loopback_ip()), ("b", util::loopback_ip())];
    let ip_of = |host: &str| {
        hosts
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, ip)| *ip)
            .expect("host a or b")
    };
    let mut taken: Vec<SocketAddr> = Vec::new();
    let mut free = |ip: IpAddr| loop {
        let addr = SocketAddr::new(ip, util::free_port(ip));
        if !taken.contains(&addr) {
            taken.push(addr);
            return addr;
        }
    };
    let mut nodes = Vec::new();
    let mut lines = String::new();
    for (name, host) in [("s1", "a"), ("s2", "b"), ("s3", "b")] {
        let addr = free(ip_of(host));
        nodes.push(addr);
        lines.push_str(&format!(
            "  {{ name = \"{name}\", host = \"{host}\", bind = \"{}\", port = {} }},\n",
            addr.ip(),
            addr.port()
        ));
    }
    let mut c = cluster::master_and_two_replicas().build();
    for m in &mut c.members {
        let addr = free(ip_of(&m.host));
        m.ip = addr.ip();
        m.port = addr.port();
    }
    c.extra_sections = format!(
        "\n[sentinel]\nquorum = 2\ndown_after = \"2s\"\nfailover_timeout = \"10s\"\nnodes = [\n{lines}]\n"
    );
    c.write_config();
    (c, nodes)
}

/// The longest the two sentinels left may take to name a new master after the master's
/// host died: `down_after` (2 s) plus the election and promotion (~2 s measured), with room
/// for a slow machine. (`down_after` is 2 s, not 1 s: with 1 s Sentinel judges every new
/// master down before its first PING is answered, and once in ~30 runs the sentinels failed
/// over a second time right after the first; `check` warns about it.)
const FAILOVER: Duration = Duration::from_secs(30);

/// Asks a sentinel of `c` with `f`, connected as the group's clients connect (TLS with
/// `[tls]`); `None` when it does not answer.
pub(crate) fn ask<T>(
    c: &Cluster,
    sentinel: SocketAddr,
    f: impl FnOnce(&mut redis::Connection) -> Option<T>,
) -> Option<T> {
    f(&mut c.connect(sentinel).ok()?)
}

/// A plaintext connection to a sentinel (the helpers below without a cluster at hand).
fn plain(sentinel: SocketAddr) -> Option<redis::Connection> {
    util::connect(sentinel, Some(PASSWORD)).ok()
}

/// What a sentinel names as master, by address.
pub(crate) fn named(sentinel: SocketAddr) -> Option<SocketAddr> {
    named_on(&mut plain(sentinel)?)
}

/// [`named`] on a connection.
pub(crate) fn named_on(con: &mut redis::Connection) -> Option<SocketAddr> {
    let reply: Vec<String> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg("test")
        .query(con)
        .ok()?;
    let ip: IpAddr = reply.first()?.parse().ok()?;
    Some(SocketAddr::new(ip, reply.get(1)?.parse().ok()?))
}

/// How many replicas and other sentinels a sentinel knows of its master.
pub(crate) fn known(sentinel: SocketAddr) -> Option<(usize, usize)> {
    known_on(&mut plain(sentinel)?)
}

/// [`known`] on a connection.
pub(crate) fn known_on(con: &mut redis::Connection) -> Option<(usize, usize)> {
    let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg("test")
        .query(con)
        .ok()?;
    let sentinels: Vec<redis::Value> = redis::cmd("SENTINEL")
        .arg("SENTINELS")
        .arg("test")
        .query(con)
        .ok()?;
    Some((replicas.len(), sentinels.len()))
}

/// The flags a sentinel gives its master (`SENTINEL MASTER`: `master`, or with
/// `s_down`, `o_down`, `disconnected`...).
pub(crate) fn master_flags(sentinel: SocketAddr) -> Option<String> {
    master_field(sentinel, "flags")
}

/// [`master_flags`] on a connection.
pub(crate) fn master_flags_on(con: &mut redis::Connection) -> Option<String> {
    master_field_on(con, "flags")
}

/// One field of `SENTINEL MASTER` for the group's master.
fn master_field(sentinel: SocketAddr, field: &str) -> Option<String> {
    master_field_on(&mut plain(sentinel)?, field)
}

/// [`master_field`] on a connection.
fn master_field_on(con: &mut redis::Connection, field: &str) -> Option<String> {
    let pairs: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg("test")
        .query(con)
        .ok()?;
    pairs
        .chunks_exact(2)
        .find(|kv| kv[0] == field)
        .map(|kv| kv[1].clone())
}

/// Whether every sentinel in `sentinels` names `want`, sees it up (no `s_down`: it gets
/// its PINGs answered) and knows both replicas and the other sentinels (Sentinel finds
/// replicas in the master's INFO, asked every 10 s: until then it has none to promote).
fn sentinels_agree_on(
    c: &Cluster,
    sentinels: &[SocketAddr],
    want: SocketAddr,
) -> Result<(), String> {
    let views: Vec<Option<SocketAddr>> = sentinels.iter().map(|s| ask(c, *s, named_on)).collect();
    let knows: Vec<Option<(usize, usize)>> =
        sentinels.iter().map(|s| ask(c, *s, known_on)).collect();
    let flags: Vec<Option<String>> = sentinels
        .iter()
        .map(|s| ask(c, *s, master_flags_on))
        .collect();
    let full = Some((2, sentinels.len() - 1));
    if views.iter().all(|v| *v == Some(want))
        && knows.iter().all(|k| *k == full)
        && flags.iter().all(|f| f.as_deref() == Some("master"))
    {
        Ok(())
    } else {
        Err(format!(
            "want {want}: named {views:?}, knows (replicas, sentinels) {knows:?}, flags \
             {flags:?}\n{}",
            c.logs()
        ))
    }
}

/// Waits until `status --json` names a master other than `old` (after a Sentinel
/// failover); returns it.
pub(crate) fn wait_master_moved(c: &Cluster, old: &str) -> String {
    util::wait_for(UP, &format!("a master other than `{old}`"), || {
        let doc: serde_json::Value = serde_json::from_str(&c.cli(&["status", "--json"]).stdout)
            .map_err(|e| e.to_string())?;
        match doc["master"].as_str() {
            Some(m) if m != old => Ok(m.to_owned()),
            other => Err(format!("{other:?}")),
        }
    })
}

/// Waits until the sentinels agree on `master` ([`sentinels_agree_on`]).
pub(crate) fn wait_sentinels_agree(c: &Cluster, sentinels: &[SocketAddr], master: &str) {
    let want = c.addr(master);
    util::wait_for(UP, &format!("the sentinels to name `{master}`"), || {
        sentinels_agree_on(c, sentinels, want)
    });
}

/// After a restart during which Sentinel may or may not fail over (to any instance):
/// waits until the sentinels agree on one instance and `status` names it master with every
/// instance healthy; returns its name.
fn wait_sentinels_settle(c: &Cluster, sentinels: &[SocketAddr]) -> String {
    util::wait_for(
        UP,
        "the sentinels and the daemons to settle on a master",
        || {
            let first = ask(c, sentinels[0], named_on).ok_or("s1 names no master")?;
            let name = ALL
                .into_iter()
                .find(|n| c.addr(n) == first)
                .ok_or_else(|| format!("s1 names {first}, no instance"))?;
            sentinels_agree_on(c, sentinels, first)?;
            let run = c.cli(&["status", "--json"]);
            let doc: serde_json::Value =
                serde_json::from_str(&run.stdout).map_err(|e| format!("{e}: {}", run.stdout))?;
            if doc["master"] == name && run.status.code() == Some(0) {
                Ok(name.to_owned())
            } else {
                Err(format!("the sentinels name `{name}`; status: {doc}"))
            }
        },
    )
}

/// Who of the group reports role master.
fn masters(c: &Cluster) -> Vec<String> {
    crate::roles::masters(c, &ALL)
}

/// The sentinel's `SENTINEL MYID`.
pub(crate) fn myid(sentinel: SocketAddr) -> Option<String> {
    myid_on(&mut plain(sentinel)?)
}

/// [`myid`] on a connection.
pub(crate) fn myid_on(con: &mut redis::Connection) -> Option<String> {
    redis::cmd("SENTINEL").arg("MYID").query(con).ok()
}

/// Host `a` (the master's) dies: its daemon, the master and sentinel s1, all SIGKILLed.
/// The two sentinels on `b` must elect a replica within [`FAILOVER`], and no write both
/// replicas acknowledged may be lost; when `a` comes back its old master rejoins as a
/// replica and s1 as itself. Returns the new master and the sentinels' ids.
pub(crate) fn dead_master_host(
    c: &mut Cluster,
    sentinels: &[SocketAddr],
) -> (String, Vec<Option<String>>) {
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    wait_sentinels_agree(c, sentinels, "master");
    let ids: Vec<Option<String>> = sentinels.iter().map(|s| ask(c, *s, myid_on)).collect();

    // Writes every replica acknowledged.
    let mut con = c.con("master");
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(1)
            .query(&mut con)
            .expect("SET");
    }
    let got: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(5000)
        .query(&mut con)
        .expect("WAIT");
    assert_eq!(got, 2);
    drop(con);

    // Host a goes down: its daemon, the master and sentinel s1, all SIGKILLed.
    let master_pid = c.pid("master");
    let mut daemon = c.take_daemon("a").expect("daemon a");
    daemon.proc.signal(Signal::SIGKILL);
    daemon.proc.wait_exit(UP);
    let s1_pid = std::fs::read_to_string(c.run_dir().join("s1.pid"))
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        })
        .expect("s1 pid file");
    util::kill(master_pid, Signal::SIGKILL);
    util::kill(s1_pid, Signal::SIGKILL);
    let died = Instant::now();

    // The two sentinels on b elect a new master among r1, r2; writes work there.
    let new_master = util::wait_for(FAILOVER, "a new master named by the sentinels", || {
        let named: Vec<Option<SocketAddr>> = sentinels[1..]
            .iter()
            .map(|s| ask(c, *s, named_on))
            .collect();
        match named[0] {
            Some(a) if a != c.addr("master") && named.iter().all(|n| *n == Some(a)) => ["r1", "r2"]
                .into_iter()
                .find(|n| c.addr(n) == a)
                .map(str::to_owned)
                .ok_or_else(|| format!("{a} is no replica")),
            _ => {
                let flags: Vec<Option<String>> = sentinels[1..]
                    .iter()
                    .map(|s| ask(c, *s, master_flags_on))
                    .collect();
                Err(format!("named {named:?}, flags {flags:?}\n{}", c.logs()))
            }
        }
    });
    eprintln!(
        "sentinel_mode: master host killed → s2, s3 name `{new_master}` after {:.2?}",
        died.elapsed()
    );
    util::wait_until(UP, "the new master to take writes", || {
        let mut con = c.con(&new_master);
        redis::cmd("SET")
            .arg("after")
            .arg(1)
            .query::<()>(&mut con)
            .is_ok()
    });

    // Host a comes back: the old master rejoins as a replica, s1 as itself.
    c.start_daemon("a");
    wait_master(c, &new_master);
    wait_sentinels_agree(c, sentinels, &new_master);
    assert_eq!(masters(c), std::slice::from_ref(&new_master), "one master");
    assert_eq!(
        sentinels
            .iter()
            .map(|s| ask(c, *s, myid_on))
            .collect::<Vec<_>>(),
        ids,
        "each sentinel is still itself"
    );
    let all: Vec<String> = keys.iter().cloned().chain(["after".to_owned()]).collect();
    for name in ALL {
        util::wait_for(
            UP,
            &format!("`{name}` to have every acknowledged write"),
            || {
                let mut con = c.con(name);
                let missing = all
                    .iter()
                    .filter(|k| {
                        !redis::cmd("EXISTS")
                            .arg(k)
                            .query::<bool>(&mut con)
                            .unwrap_or(false)
                    })
                    .count();
                if missing == 0 {
                    Ok(())
                } else {
                    Err(format!("{missing} missing"))
                }
            },
        );
    }
    (new_master, ids)
}

#[test]
fn the_sentinels_fail_over_a_dead_master_host_and_it_rejoins_as_a_replica() {
    let (mut c, sentinels) = sentinel_group();
    let (_, ids) = dead_master_host(&mut c, &sentinels);

    // What the sentinels learned survives a daemon restart (their files are re-rendered
    // over what Sentinel wrote). Host b holds the master now and stops it with the rest
    // (a daemon's own stop asks for no failover); Sentinel may or may not fail over while
    // it is away or while its instances start again (a master down longer than
    // `down_after`: seen moving to host a's instance, and once from r1 to r2 after the
    // restart). Either way, once settled: one master, the one the sentinels name.
    assert!(c.stop_daemon("b").success());
    c.start_daemon("b");
    c.wait_healthy();
    let final_master = wait_sentinels_settle(&c, &sentinels);
    assert_eq!(masters(&c), std::slice::from_ref(&final_master));
    assert_eq!(sentinels.iter().map(|s| myid(*s)).collect::<Vec<_>>(), ids);
    // Sentinel rewrote its file (password inside) many times: still private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.dir.join("data/s2/sentinel.conf"))
        .expect("s2 conf")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "sentinel.conf mode {mode:o}");
    let conf = std::fs::read_to_string(c.dir.join("data/s2/sentinel.conf")).expect("s2 conf");
    let a = c.addr(&final_master);
    assert!(
        conf.contains(&format!("sentinel monitor test {} {}", a.ip(), a.port())),
        "{conf}"
    );
}

/// The seed's layout (each host one address, shared by its instances and sentinels): the
/// sentinels beside the replicas must see the master up from the start and fail over when
/// its host dies, on every server.
#[test]
fn on_the_seed_layout_the_sentinels_fail_over_a_dead_master_host() {
    let (mut c, sentinels) = seed_like_group();
    let (new_master, _) = dead_master_host(&mut c, &sentinels);
    assert_ne!(new_master, "master");
}

#[test]
fn failover_restart_and_promote_go_through_sentinel() {
    let (mut c, sentinels) = sentinel_group();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    wait_sentinels_agree(&c, &sentinels, "master");

    // Status shows the sentinels.
    let run = c.cli(&["status", "--json"]);
    assert_eq!(run.status.code(), Some(0), "{}", run.stdout);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["sentinels"]["reachable"], 3, "{doc}");
    assert_eq!(doc["sentinels"]["master"], "master", "{doc}");
    assert_eq!(doc["sentinels"]["agree"], 3, "{doc}");
    let table = c.cli(&["status"]).stdout;
    assert!(
        table.contains("sentinels: 3/3 answer (quorum 2); 3 name master"),
        "{table}"
    );

    // `render` shows a sentinel's file, password masked, Sentinel's id kept.
    let run = c.cli(&["render", "s2"]);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("sentinel myid "), "{}", run.stdout);
    run.expect_hidden(PASSWORD);

    let run = c.cli(&["promote", "r1"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(format!("{}{}", run.stdout, run.stderr).contains("Sentinel decides"));
    let run = c.cli(&["failover", "--to", "r1"]);
    assert_eq!(run.status.code(), Some(1));

    // `failover` is SENTINEL FAILOVER.
    let run = c.cli(&["failover"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        c.logs()
    );
    let moved = masters(&c);
    assert_eq!(moved.len(), 1);
    assert_ne!(moved[0], "master");
    wait_master(&c, &moved[0]);
    wait_sentinels_agree(&c, &sentinels, &moved[0]);

    // A rolling restart moves the role away from the current master before restarting it.
    let run = c.cli(&["restart", "--all"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        c.logs()
    );
    assert!(
        run.stdout.contains("SENTINEL FAILOVER away from"),
        "{}",
        run.stdout
    );
    c.wait_healthy();
    let now = masters(&c);
    assert_eq!(now.len(), 1, "one master");
    wait_sentinels_agree(&c, &sentinels, &now[0]);

    // Fewer sentinels answering than the quorum: status exits 3 and says why.
    let pids: Vec<u32> = ["s2", "s3"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(c.run_dir().join(format!("{n}.pid")))
                .ok()
                .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse().ok()))
                .expect("sentinel pid file")
        })
        .collect();
    for pid in &pids {
        util::kill(*pid, Signal::SIGSTOP);
    }
    let run = c.cli(&["status"]);
    for pid in &pids {
        util::kill(*pid, Signal::SIGCONT);
    }
    assert_eq!(run.status.code(), Some(3), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("fewer sentinels answer than the quorum"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_reloaded_sentinel_section_applies_live_and_keeps_what_sentinel_learned() {
    let (mut c, sentinels) = sentinel_group();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    wait_sentinels_agree(&c, &sentinels, "master");
    let ids: Vec<Option<String>> = sentinels.iter().map(|s| myid(*s)).collect();
    let pids: Vec<String> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| std::fs::read_to_string(c.run_dir().join(format!("{n}.pid"))).unwrap_or_default())
        .collect();
    c.extra_sections = c
        .extra_sections
        .replace("quorum = 2", "quorum = 3")
        .replace("down_after = \"2s\"", "down_after = \"3s\"");
    c.write_config();
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("s1: SENTINEL SET quorum, down-after-milliseconds live"),
        "{}",
        run.stdout
    );
    for s in &sentinels {
        util::wait_until(UP, "the new quorum in the sentinel", || {
            let Ok(mut con) = util::connect(*s, Some(PASSWORD)) else {
                return false;
            };
            let pairs: Vec<String> = redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg("test")
                .query(&mut con)
                .unwrap_or_default();
            pairs.windows(2).any(|w| w[0] == "quorum" && w[1] == "3")
                && pairs
                    .windows(2)
                    .any(|w| w[0] == "down-after-milliseconds" && w[1] == "3000")
        });
    }
    assert_eq!(sentinels.iter().map(|s| myid(*s)).collect::<Vec<_>>(), ids);
    let after: Vec<String> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| std::fs::read_to_string(c.run_dir().join(format!("{n}.pid"))).unwrap_or_default())
        .collect();
    assert_eq!(pids, after, "no sentinel restarted");
    // Sentinel wrote it into its own file, which the next start keeps.
    let conf = std::fs::read_to_string(c.dir.join("data/s1/sentinel.conf")).expect("conf");
    let m = c.addr("master");
    assert!(
        conf.contains(&format!("sentinel monitor test {} {} 3", m.ip(), m.port())),
        "{conf}"
    );
    assert!(
        conf.contains("sentinel down-after-milliseconds test 3000"),
        "{conf}"
    );

    // A sentinel is stopped, started and restarted by name, like an instance.
    let run = c.cli(&["stop", "s3"]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(myid(sentinels[2]).is_none(), "s3 is stopped");
    let run = c.cli(&["start", "s3"]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    let run = c.cli(&["restart", "s1"]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    let s1_pid = std::fs::read_to_string(c.run_dir().join("s1.pid")).unwrap_or_default();
    assert_ne!(s1_pid, pids[0], "s1 restarted");
    assert_eq!(
        sentinels.iter().map(|s| myid(*s)).collect::<Vec<_>>(),
        ids,
        "still themselves"
    );
}

/// `down-after-milliseconds` a sentinel holds for the group's master.
fn down_after_ms(sentinel: SocketAddr) -> Option<String> {
    master_field(sentinel, "down-after-milliseconds")
}

#[test]
fn paused_the_sentinels_do_not_fail_over_a_frozen_master_and_resume_restores_them() {
    let (mut c, sentinels) = sentinel_group();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    wait_sentinels_agree(&c, &sentinels, "master");
    c.cli(&["pause", "--for", "1h"]).expect_code(0);
    let held = |want: &str| {
        let views: Vec<Option<String>> = sentinels.iter().map(|s| down_after_ms(*s)).collect();
        if views.iter().all(|v| v.as_deref() == Some(want)) {
            Ok(())
        } else {
            Err(format!("down-after-milliseconds: {views:?}"))
        }
    };
    util::wait_for(UP, "every sentinel to hold failovers", || {
        held("31536000000")
    });
    // Frozen, the master answers nothing: unpaused, the sentinels fail it over after
    // `down_after` (2 s) plus an election (~2 s measured). Twice that: still master.
    let master = c.pid("master");
    util::kill(master, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(8));
    let named_now: Vec<Option<SocketAddr>> = sentinels.iter().map(|s| named(*s)).collect();
    let flags: Vec<Option<String>> = sentinels.iter().map(|s| master_flags(*s)).collect();
    util::kill(master, Signal::SIGCONT);
    assert!(
        named_now.iter().all(|n| *n == Some(c.addr("master"))),
        "a sentinel moved the master while paused: {named_now:?}\n{}",
        c.logs()
    );
    assert!(
        flags
            .iter()
            .all(|f| f.as_deref().is_some_and(|f| !f.contains("o_down"))),
        "{flags:?}"
    );
    c.cli(&["resume"]).expect_code(0);
    util::wait_for(UP, "every sentinel to fail over again", || held("2000"));
    c.wait_healthy();
    assert_eq!(masters(&c), ["master"]);
}
