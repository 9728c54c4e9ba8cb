//! Clients follow the master: the daemons' health endpoints over real sockets, and a real
//! HAProxy (`/usr/sbin/haproxy`) running the config `redisrepd haproxy` prints, in front
//! of a group whose master moves (`failover` and back, `promote` after the master's host
//! died, a crashed master's catch-up) while a client writes through it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::roles::{masters, wait_all_have, wait_master};
use crate::util::{self, ProcGuard};
use redisrepd_testkit::{Target, Writer, WriterOpts};

/// Where Debian's haproxy package puts it (`.ci/run` installs it).
const HAPROXY: &str = "/usr/sbin/haproxy";

/// `GET path` over HTTP/1.1: the status code and the body as JSON (`Null` when not JSON).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Value)> {
    let (code, body) = redisrepd_testkit::http_get(addr, path)?;
    Ok((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// Gives every host's daemon an HTTP endpoint (`[http] listen` as a table: each host on
/// the address of its first instance, a free port); returns them by host.
fn with_http(c: &mut Cluster) -> BTreeMap<String, SocketAddr> {
    let mut by_host: BTreeMap<String, SocketAddr> = BTreeMap::new();
    for m in &c.members {
        by_host
            .entry(m.host.clone())
            .or_insert_with(|| SocketAddr::new(m.ip, util::free_port(m.ip)));
    }
    let table: Vec<String> = by_host
        .iter()
        .map(|(h, a)| format!("{h} = \"{a}\""))
        .collect();
    c.extra_sections = format!("[http]\nlisten = {{ {} }}\n", table.join(", "));
    c.write_config();
    by_host
}

/// Waits until `path` at `addr` answers `code`; returns the body.
#[track_caller]
fn wait_code(addr: SocketAddr, path: &str, code: u16) -> Value {
    util::wait_for(
        UP,
        &format!("{path} at {addr} to answer {code}"),
        || match get(addr, path) {
            Ok((got, body)) if got == code => Ok(body),
            Ok((got, body)) => Err(format!("{got} {body}")),
            Err(e) => Err(e.to_string()),
        },
    )
}

#[test]
fn endpoints_answer_for_every_instance_from_every_daemon() {
    let mut c = cluster::master_and_two_replicas().build();
    let http = with_http(&mut c);
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    for addr in http.values() {
        wait_code(*addr, "/master/master", 200);
        let (code, body) = get(*addr, "/master/r1").unwrap();
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["reason"], "a replica (of `master`)");
        wait_code(*addr, "/replica/r1", 200);
        wait_code(*addr, "/replica/r2", 200);
        let (code, body) = get(*addr, "/replica/master").unwrap();
        assert_eq!(code, 503, "{body}");
        let (code, body) = get(*addr, "/health/r2").unwrap();
        assert_eq!(
            (code, &body["role"]),
            (200, &Value::from("replica")),
            "{body}"
        );
        let (code, body) = get(*addr, "/master/nope").unwrap();
        assert_eq!(code, 404, "{body}");
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .contains("no instance `nope`"),
            "{body}"
        );
        // /metrics still works beside them.
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK") && out.contains("redisrepd_instance_up"));
    }

    // `status` shows each host's endpoint.
    let run = c.cli(&["status", "--json"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let shown: Vec<(String, String, Value)> = doc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_owned(),
                e["address"].as_str().unwrap().to_owned(),
                e["error"].clone(),
            )
        })
        .collect();
    let want: Vec<(String, String, Value)> = http
        .iter()
        .map(|(h, a)| (h.clone(), a.to_string(), Value::Null))
        .collect();
    assert_eq!(shown, want, "{doc}");
    let table = c.cli(&["status"]).stdout;
    assert!(
        table.contains(&format!(
            "http endpoint of host a: http://{} (listening)",
            http["a"]
        )),
        "{table}"
    );

    // Concurrent checks, as a load balancer with many backends makes them, while silent
    // clients hold connections open: all answered, and the supervisor goes on (status).
    let _silent: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(http["b"]).unwrap())
        .collect();
    let addr = http["b"];
    let started = Instant::now();
    let threads: Vec<JoinHandle<Vec<u16>>> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let path = if i % 2 == 0 {
                    "/master/master"
                } else {
                    "/health/r1"
                };
                (0..10)
                    .map(|_| get(addr, path).map_or(0, |(c, _)| c))
                    .collect()
            })
        })
        .collect();
    for t in threads {
        let codes = t.join().unwrap();
        assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    c.cli(&["status"]).expect_code(0);

    // A replica's lag against max_lag, under writes to the master.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, addr) = (stop.clone(), c.addr("master"));
        std::thread::spawn(move || {
            let mut con = util::connect(addr, Some(PASSWORD)).unwrap();
            let value = "v".repeat(1000);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("lag:{n}"))
                    .arg(&value)
                    .query(&mut con);
                n += 1;
            }
        })
    };
    let body = util::wait_for(UP, "a 503 for a replica behind max_lag=0", || {
        match get(addr, "/replica/r1?max_lag=0") {
            Ok((503, b)) if b["reason"].as_str().unwrap_or("").contains("bytes behind") => Ok(b),
            Ok((code, b)) => Err(format!("{code} {b}")),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(body["lag_bytes"].as_i64().unwrap() > 0, "{body}");
    wait_code(addr, "/replica/r1?max_lag=100000000", 200);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Someone runs REPLICAOF NO ONE on r2 by hand: it says role:master, yet it is not the
    // group's master; every answer that shows it master is a 503 (until the daemon puts
    // it back under the master).
    let mut con = c.con("r2");
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut con)
        .unwrap();
    for addr in http.values() {
        let body = util::wait_for(UP, "an answer that shows r2 as master", || {
            match get(*addr, "/master/r2") {
                Ok((code, b)) if b["role"] == "master" => Ok((code, b)),
                Ok((code, b)) => Err(format!("{code} {b}")),
                Err(e) => Err(e.to_string()),
            }
        });
        assert_eq!(body.0, 503, "{}", body.1);
        assert!(
            body.1["reason"]
                .as_str()
                .unwrap()
                .starts_with("says role:master, but the group's master is `master`"),
            "{}",
            body.1
        );
        assert_eq!(get(*addr, "/master/master").unwrap().0, 200);
    }
    c.wait_healthy();
}

#[test]
fn an_http_address_in_use_is_logged_and_shown_and_the_daemon_runs() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let taken = std::net::TcpListener::bind((util::loopback_ip(), 0)).unwrap();
    let addr = taken.local_addr().unwrap();
    c.extra_sections = format!("[http]\nlisten = \"{addr}\"\n");
    c.write_config();
    c.start_daemon("a");
    c.wait_healthy();
    let run = c.cli(&["status", "--json"]);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let e = &doc["endpoints"][0];
    assert_eq!(e["address"], addr.to_string(), "{doc}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("cannot listen on {addr}")),
        "{doc}"
    );
    assert!(
        c.daemon_log("a")
            .contains(&format!("cannot listen on {addr}"))
    );
    // Once the address is free, the daemon takes it.
    drop(taken);
    wait_code(addr, "/master/master", 200);
}

#[test]
fn check_names_a_host_missing_from_the_http_table() {
    let mut c = cluster::master_and_two_replicas().build();
    let a = c.addr("master");
    c.extra_sections = format!("[http]\nlisten = {{ a = \"{}:9765\" }}\n", a.ip());
    c.write_config();
    let run = c.cli(&["check", "--host", "a"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "group.toml: key `http.listen`: no address for host `b`, which runs instances"
        ),
        "{}",
        run.stderr
    );
}

/// A master and two replicas on two hosts whose daemons serve HTTP, both running and
/// healthy, and HAProxy in front of them.
fn haproxy_group() -> (Cluster, Haproxy) {
    let mut c = cluster::master_and_two_replicas().build();
    with_http(&mut c);
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    let hp = Haproxy::start(&c);
    (c, hp)
}

/// A real HAProxy on the generated config; killed (and reaped) on drop.
struct Haproxy {
    _proc: ProcGuard,
    /// The write frontend.
    writes: SocketAddr,
    /// The read frontend.
    reads: SocketAddr,
    cfg: PathBuf,
}

impl Haproxy {
    fn start(c: &Cluster) -> Haproxy {
        assert!(
            std::path::Path::new(HAPROXY).exists(),
            "{HAPROXY} is missing: `apt-get install haproxy`"
        );
        let ip = util::loopback_ip();
        let writes = SocketAddr::new(ip, util::free_port(ip));
        let reads = SocketAddr::new(ip, util::free_port(ip));
        let run = c.cli(&[
            "haproxy",
            "--bind",
            &writes.to_string(),
            "--replicas-bind",
            &reads.to_string(),
        ]);
        run.expect_code(0);
        let cfg = c.dir.write("haproxy.cfg", &run.stdout);
        let check = util::run(
            Command::new(HAPROXY).arg("-c").arg("-f").arg(&cfg),
            Duration::from_secs(30),
        );
        assert_eq!(
            check.status.code(),
            Some(0),
            "haproxy -c refused it:\n{}{}\n{}",
            check.stdout,
            check.stderr,
            run.stdout
        );
        let log = std::fs::File::create(c.dir.join("haproxy.log")).unwrap();
        let proc = ProcGuard::spawn(
            "haproxy",
            Command::new(HAPROXY)
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        Haproxy {
            _proc: proc,
            writes,
            reads,
            cfg,
        }
    }
}

/// A client that writes `w:<n>` through HAProxy, one at a time: a write counts as
/// acknowledged on OK (and, with `wait` > 0, when `WAIT wait 2000` says that many replicas
/// have it). On any error it reconnects after a backoff (10 ms, doubled after each failure
/// in a row up to 160 ms), as a pooled client would: a second without a master costs a
/// handful of failed attempts, not fifty.
fn writer(hp: &Haproxy, wait: i64) -> Writer {
    let opts = WriterOpts {
        wait: (wait, Duration::from_millis(2000)),
        backoff: (Duration::from_millis(10), Duration::from_millis(160)),
        ..cluster::writer_opts()
    };
    Writer::start(Target::Fixed(hp.writes), opts)
}

/// After an event that began at `began`: no stretch without an acknowledged write longer
/// than `limit` from then on (the first stretch counts from `began`), and at most a
/// handful of failed writes; prints what it measured.
#[track_caller]
fn check_resumed(w: &Writer, what: &str, began: Instant, limit: Duration) {
    w.wait_more(50, UP);
    let end = Instant::now();
    let gap = w.longest_gap(began, end);
    let errors = w.errors(began, end);
    eprintln!(
        "{what}: longest write gap {} ms, {} failed writes: {:?}",
        gap.as_millis(),
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(gap <= limit, "{what}: no acknowledged write for {gap:?}");
    assert!(
        errors.len() <= MAX_ERRORS,
        "{what}: {} failed writes: {errors:?}",
        errors.len()
    );
}

/// "A handful": with the writer's backoff, about two seconds of failures.
const MAX_ERRORS: usize = 15;

/// Every acknowledged key is on `names`.
fn nothing_lost(c: &Cluster, names: &[&str], acked: &[String]) {
    assert!(!acked.is_empty());
    wait_all_have(c, names, acked);
}

const ALL: [&str; 3] = ["master", "r1", "r2"];

#[test]
fn writes_through_haproxy_follow_a_failover_and_back() {
    let (c, hp) = haproxy_group();
    let w = writer(&hp, 0);
    w.wait_more(100, UP);
    for to in ["r1", "master"] {
        let began = Instant::now();
        c.cli(&["failover", "--to", to]).expect_code(0);
        check_resumed(
            &w,
            &format!("failover --to {to}"),
            began,
            Duration::from_secs(2),
        );
    }
    // The read frontend reaches an in-sync replica.
    let mut con = util::connect(hp.reads, Some(PASSWORD))
        .unwrap_or_else(|e| panic!("read frontend of {}: {e}", hp.cfg.display()));
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con).expect("ROLE");
    assert!(
        matches!(&role[0], redis::Value::BulkString(b) if b == b"slave"),
        "{role:?}"
    );
    let acked = w.finish().acked_keys();
    wait_master(&c, "master");
    nothing_lost(&c, &ALL, &acked);
}

#[test]
fn writes_through_haproxy_follow_a_promote_after_the_masters_host_died() {
    let (mut c, hp) = haproxy_group();
    // WAIT 2: a write counts once both replicas have it, so the master's death loses none.
    let w = writer(&hp, 2);
    w.wait_more(100, UP);
    let master_pid = c.pid("master");
    let mut daemon = c.take_daemon("a").expect("daemon a");
    daemon.proc.signal(Signal::SIGKILL);
    daemon.proc.wait_exit(UP);
    util::kill(master_pid, Signal::SIGKILL);
    let died = Instant::now();
    // An operator takes longer than HAProxy to see the master gone: promote once HAProxy
    // refuses writes for want of a master (the dead one is marked down).
    util::wait_until(UP, "HAProxy to have marked the master down", || {
        !w.errors(died + Duration::from_millis(800), Instant::now())
            .is_empty()
    });
    // Writes to the new master count on its OK: what is measured is how soon HAProxy
    // sends them there, not how soon the other replica follows it.
    w.set_wait(0);
    // The replica with the most (a write in flight may have reached only one): promote
    // refuses the other, rightly.
    let offset = |n: &str| c.info_int(n, "replication", "master_repl_offset");
    let (new, other) = if offset("r2") > offset("r1") {
        ("r2", "r1")
    } else {
        ("r1", "r2")
    };
    let began = Instant::now();
    c.cli(&["promote", new]).expect_code(0);
    check_resumed(&w, &format!("promote {new}"), began, Duration::from_secs(2));
    let acked = w.finish().acked_keys();
    assert_eq!(masters(&c, &[new, other]), [new]);
    nothing_lost(&c, &[new, other], &acked);
    // The old master's host comes back: it rejoins as a replica, and stays out of HAProxy.
    c.start_daemon("a");
    wait_master(&c, new);
    nothing_lost(&c, &ALL, &acked);
}

#[test]
fn writes_through_haproxy_follow_a_crashed_masters_catch_up() {
    let (c, hp) = haproxy_group();
    // WAIT 1: a write counts once a replica has it; the catch-up keeps those.
    let w = writer(&hp, 1);
    w.wait_more(100, UP);
    let began = Instant::now();
    util::kill(c.pid("master"), Signal::SIGKILL);
    // The catch-up ends with the role handed back to the master: writes follow it.
    wait_master(&c, "master");
    check_resumed(
        &w,
        "master crash and catch-up",
        began,
        Duration::from_secs(2),
    );
    let acked = w.finish().acked_keys();
    nothing_lost(&c, &ALL, &acked);
}

#[test]
fn in_sentinel_mode_the_master_is_the_one_the_sentinels_name() {
    let (mut c, nodes) = crate::sentinel_mode::sentinel_group();
    let sentinels = c.extra_sections.clone();
    let http = with_http(&mut c);
    c.extra_sections = format!("{sentinels}\n{}", c.extra_sections);
    c.write_config();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    // Each sentinel names the master and knows the replicas and the other sentinels.
    crate::sentinel_mode::wait_sentinels_agree(&c, &nodes, "master");
    for addr in http.values() {
        let body = wait_code(*addr, "/master/master", 200);
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .contains("named by a majority of the sentinels"),
            "{body}"
        );
    }
    // `failover` is SENTINEL FAILOVER: the endpoints follow the sentinels' choice.
    let run = c.cli(&["failover"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}\n{}",
        run.stdout,
        run.stderr,
        c.logs()
    );
    let moved = masters(&c, &ALL);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_ne!(moved[0], "master");
    wait_master(&c, &moved[0]);
    for addr in http.values() {
        wait_code(*addr, &format!("/master/{}", moved[0]), 200);
        wait_code(*addr, "/master/master", 503);
        wait_code(*addr, "/replica/master", 200);
    }
}
