//! `[tls]` against real servers: every instance's and sentinel's port speaks TLS only. They
//! refuse plaintext, a client that does not trust the group's CA and (with `client_auth`
//! "yes", the default) one that presents no certificate or one another CA signed;
//! replication and Sentinel run over TLS; the verbs (`status`, `restart --all`,
//! `failover --to`, `promote`, `reload`) work through it as they do in plaintext, losing no
//! acknowledged write. The certificates are made with the real `openssl` (testkit's
//! `Pki`, the commands of docs/security.md).
//!
//! A server built without TLS (Valkey's embedded wheel, a Redis built without
//! BUILD_TLS=yes) cannot run them: each test then returns at once, saying why
//! ([`skipped`]).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::Signal;
use redisrepd_testkit::{Pki, Target, TlsFiles, Writer};

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::roles::{masters, wait_all_have, wait_master};
use crate::util;

const ALL: [&str; 3] = ["master", "r1", "r2"];

/// True (after saying why) when the suite's server has no TLS: the calling test returns.
fn skipped() -> bool {
    static NOTED: std::sync::Once = std::sync::Once::new();
    let Some(why) = no_tls() else {
        return false;
    };
    let test = std::thread::current().name().unwrap_or("tls").to_owned();
    eprintln!("{test}: skipped: {why}");
    // Once per process past the harness's capture, so that a plain `cargo test` shows it.
    NOTED.call_once(|| {
        let _ = writeln!(std::io::stderr(), "tls:: tests skipped: {why}");
    });
    true
}

/// Why the suite's server cannot serve TLS, `None` when it can; found once per process
/// by [`probe_tls`].
fn no_tls() -> Option<&'static str> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(probe_tls).as_deref()
}

/// Starts the suite's server TLS-only, as a `[tls]` group renders it (`port 0`,
/// `tls-port`, the certificate files, `tls-replication yes`), and waits until it answers a
/// TLS PING (`None`: it serves TLS) or exits. Only the exits that say the build has no
/// TLS are a reason to skip (Valkey without its TLS module logs "Failed finding TLS
/// support."; Redis 6.2 without BUILD_TLS refuses `tls-port` as a "Bad directive"): any
/// other failure panics with the server's log, so that a broken setup is not taken for a
/// missing feature.
fn probe_tls() -> Option<String> {
    let server = util::redis_server();
    let dir = util::TestDir::new();
    let pki = Pki::create(&dir.join("tls"));
    let ip = util::loopback_ip();
    let (cert, key) = pki.issue("redis", &[ip]);
    for attempt in 0..5 {
        let port = util::free_port(ip);
        let conf = format!(
            "port 0\ntls-port {port}\nbind {ip}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\nsave \"\"\n\
             appendonly no\ndir {}\nlogfile \"\"\n",
            cert.display(),
            key.display(),
            pki.ca().display(),
            dir.path().display()
        );
        let path = dir.write(format!("probe-{attempt}.conf"), conf);
        let mut proc = util::RedisProc::spawn(&path);
        let addr = SocketAddr::new(ip, port);
        let anonymous = pki.anonymous();
        let what = format!(
            "{} to answer a TLS PING at {addr} or exit",
            server.display()
        );
        let outcome = util::wait_for(Duration::from_secs(20), &what, || {
            if let Some(status) = proc.proc.exited() {
                return Ok(Err(status));
            }
            util::ping_with(addr, None, Some(&anonymous)).map(Ok)
        });
        let Err(status) = outcome else {
            return None;
        };
        let log = proc.log_text();
        if log.contains("Address already in use") {
            continue;
        }
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("Failed finding TLS support"))
        {
            // The message without the pid, role and time before it.
            let said = line.split_once(" # ").map_or(line, |(_, m)| m).trim();
            return Some(format!(
                "{} has no TLS support (it logs \"{said}\")",
                server.display()
            ));
        }
        if log.contains("Bad directive") && log.contains("tls-port") {
            return Some(format!(
                "{} was built without TLS (it refuses `tls-port` as a bad directive; build \
                 it with BUILD_TLS=yes, as .ci/servers does)",
                server.display()
            ));
        }
        panic!(
            "{} exited ({status}) when started TLS-only, for no reason that means it lacks \
             TLS:\n{log}",
            server.display()
        );
    }
    panic!("5 ports in a row were taken before the TLS probe's server bound them");
}

/// The testkit's writer on `w:<n>`, over the group's TLS, following the master by ROLE.
fn writer(c: &Cluster) -> Writer {
    let addrs = ALL.iter().map(|n| c.addr(n)).collect();
    Writer::start(Target::Master(addrs), c.writer_opts())
}

/// Every address a test certificate lists (see `cluster::Builder::build`).
fn test_ips() -> Vec<IpAddr> {
    std::iter::once(IpAddr::from([127, 0, 0, 1]))
        .chain(util::loopback_ips())
        .collect()
}

/// `what` at `addr` answers the group's TLS client, and refuses plaintext: the
/// connection fails (no Redis reply, not even an error one).
#[track_caller]
fn assert_tls_only(c: &Cluster, what: &str, addr: SocketAddr) {
    c.ping(addr)
        .unwrap_or_else(|e| panic!("{what} at {addr} over TLS: {e}\n{}", c.logs()));
    match util::ping(addr, Some(PASSWORD)) {
        Ok(()) => panic!("{what} at {addr} answered a plaintext PING"),
        Err(e) => assert!(
            e.code().is_none(),
            "{what} at {addr}: a plaintext client got a Redis reply, not a refused \
             connection: {e}"
        ),
    }
}

/// A CONFIG GET value of an instance.
fn config(c: &Cluster, name: &str, key: &str) -> String {
    util::config_get(&mut c.con(name), key)
        .unwrap_or_else(|e| panic!("CONFIG GET {key} on `{name}`: {e}"))
}

fn start(c: &mut Cluster) {
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
}

#[test]
fn a_tls_group_speaks_only_tls_checks_every_client_and_replicates_over_tls() {
    if skipped() {
        return;
    }
    let mut c = cluster::master_and_two_replicas().tls().build();
    start(&mut c);
    let status = c.status();
    for n in ALL {
        assert_eq!(status[n]["state"], "running", "{n}: {}", status[n]);
    }

    // Each instance: TLS only on its port, TLS replication, client certificates required.
    let tls = c.tls.clone().expect("[tls]");
    let group_client = tls.client();
    let stranger = Pki::create(&c.dir.join("stranger"));
    stranger.issue("redis", &test_ips());
    for n in ALL {
        let addr = c.addr(n);
        assert_tls_only(&c, n, addr);
        assert_eq!(config(&c, n, "port"), "0", "{n}: no plaintext port");
        assert_eq!(config(&c, n, "tls-port"), addr.port().to_string(), "{n}");
        assert_eq!(config(&c, n, "tls-replication"), "yes", "{n}");
        assert_eq!(config(&c, n, "tls-auth-clients"), "yes", "{n}");

        // A client that trusts another CA does not accept the instance's certificate.
        let distrust = TlsFiles {
            ca: stranger.ca(),
            client: group_client.client.clone(),
        };
        let e = util::ping_with(addr, Some(PASSWORD), Some(&distrust))
            .expect_err("a client trusting another CA must refuse the server");
        // (Both CAs have the same name, so rustls reads it as a bad signature; a CA of
        // another name reads as UnknownIssuer.)
        assert!(
            e.to_string().contains("invalid peer certificate"),
            "{n}: the client refuses the server's certificate: {e}"
        );
        // With client_auth "yes": no certificate, or one another CA signed, is refused.
        let e = util::ping_with(addr, Some(PASSWORD), Some(&tls.pki.anonymous()))
            .expect_err("a client without a certificate must be refused");
        assert!(
            e.to_string().contains("CertificateRequired"),
            "{n}: the server asks for a certificate: {e}"
        );
        let foreign = TlsFiles {
            ca: tls.pki.ca(),
            client: stranger.client("redis").client,
        };
        let e = util::ping_with(addr, Some(PASSWORD), Some(&foreign))
            .expect_err("a client certificate of another CA must be refused");
        assert!(
            e.to_string().contains("UnknownCA"),
            "{n}: the server refuses the client's certificate: {e}"
        );
    }

    // Replication: the master listens on nothing but its TLS port (above), so the
    // replicas' links, up and carrying writes, are TLS; it lists them at their TLS ports.
    c.set("master", "over-tls", "1");
    wait_all_have(&c, &ALL, &["over-tls".to_owned()]);
    let master = c.info("master", "replication");
    for r in ["r1", "r2"] {
        let i = c.info(r, "replication");
        assert_eq!(i["master_link_status"], "up", "{r}: {i:?}");
        assert_eq!(i["master_port"], c.addr("master").port().to_string(), "{r}");
        let port = format!("port={},", c.addr(r).port());
        assert!(
            master
                .iter()
                .any(|(k, v)| k.starts_with("slave") && v.contains(&port) && v.contains("online")),
            "the master lists `{r}` online at its TLS port: {master:?}"
        );
    }

    // A daemon killed and started again adopts its running instances, probing them over
    // TLS: same pids, healthy.
    let pids: Vec<u32> = ["r1", "r2"].iter().map(|n| c.pid(n)).collect();
    let mut daemon = c.take_daemon("b").expect("daemon b");
    daemon.proc.signal(Signal::SIGKILL);
    daemon.proc.wait_exit(UP);
    c.start_daemon("b");
    c.wait_healthy();
    let after: Vec<u32> = ["r1", "r2"].iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "adopted, not restarted");
}

#[test]
fn over_tls_a_rolling_restart_and_a_failover_and_back_lose_no_acknowledged_write() {
    if skipped() {
        return;
    }
    let mut c = cluster::master_and_two_replicas().tls().build();
    start(&mut c);
    let pids: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    let w = writer(&c);
    w.wait_acked(100, UP);

    let run = c.cli(&["restart", "--all"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    wait_master(&c, "master");
    for (n, old) in ALL.iter().zip(&pids) {
        assert_ne!(c.pid(n), *old, "`{n}` restarted");
    }
    w.wait_more(100, UP);

    let run = c.cli(&["failover", "--to", "r1"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    assert!(run.stdout.contains("r1: master now"), "{run}");
    wait_master(&c, "r1");
    assert_eq!(masters(&c, &ALL), ["r1"], "one master");
    w.wait_more(100, UP);

    let run = c.cli(&["failover", "--to", "master"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    wait_master(&c, "master");
    assert_eq!(masters(&c, &ALL), ["master"], "one master");
    w.wait_more(100, UP);

    let report = w.finish();
    let acked = report.acked_keys();
    wait_all_have(&c, &ALL, &acked);
    eprintln!(
        "tls: {} writes acknowledged, longest gap {:?}",
        acked.len(),
        report.longest_gap()
    );
}

#[test]
fn over_tls_promote_after_the_master_is_killed_then_it_rejoins_as_a_replica() {
    if skipped() {
        return;
    }
    let mut c = cluster::master_and_two_replicas().tls().build();
    start(&mut c);
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let mut con = c.con("master");
    for k in &keys {
        redis::cmd("SET")
            .arg(k)
            .arg("v")
            .query::<()>(&mut con)
            .expect("SET");
    }
    let got: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(5000)
        .query(&mut con)
        .expect("WAIT");
    assert_eq!(got, 2, "both replicas acknowledged");
    drop(con);

    // The master's host goes down: its daemon and the master, SIGKILLed.
    let master_pid = c.pid("master");
    let mut daemon = c.take_daemon("a").expect("daemon a");
    daemon.proc.signal(Signal::SIGKILL);
    daemon.proc.wait_exit(UP);
    util::kill(master_pid, Signal::SIGKILL);
    util::wait_until(UP, "the master gone", || c.ping(c.addr("master")).is_err());

    let run = c.cli(&["promote", "r1"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    assert_eq!(masters(&c, &["r1", "r2"]), ["r1"]);
    util::wait_until(UP, "r2 to follow r1", || {
        let i = c.info("r2", "replication");
        i.get("master_port").map(String::as_str) == Some(&c.addr("r1").port().to_string())
            && i.get("master_link_status").map(String::as_str) == Some("up")
    });
    c.set("r1", "after-promote", "1");

    // The host comes back: the old master starts as r1's replica, over TLS.
    c.start_daemon("a");
    wait_master(&c, "r1");
    assert_eq!(masters(&c, &ALL), ["r1"], "never two masters");
    let all: Vec<String> = keys
        .into_iter()
        .chain(["after-promote".to_owned()])
        .collect();
    wait_all_have(&c, &ALL, &all);
    assert_tls_only(&c, "the old master", c.addr("master"));
}

#[test]
fn over_tls_reload_applies_changed_directives_live() {
    if skipped() {
        return;
    }
    let mut c = cluster::master_and_two_replicas().tls().build();
    start(&mut c);
    let pids: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    let anonymous = c.tls.as_ref().expect("[tls]").pki.anonymous();
    assert!(
        util::ping_with(c.addr("r1"), Some(PASSWORD), Some(&anonymous)).is_err(),
        "client_auth \"yes\": no certificate, no connection"
    );

    // A [redis] directive and client_auth change: both are applied by CONFIG SET.
    c.redis.push_str("maxmemory = \"64mb\"\n");
    if let Some(tls) = c.tls.as_mut() {
        tls.client_auth = Some("optional".to_owned());
    }
    c.write_config();
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    for n in ALL {
        assert!(
            run.stdout
                .contains(&format!("{n}: set tls-auth-clients, maxmemory live")),
            "{run}"
        );
    }
    c.wait_healthy();
    let after: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "nothing restarted");
    for n in ALL {
        assert_eq!(config(&c, n, "maxmemory"), (64 << 20).to_string(), "{n}");
        assert_eq!(config(&c, n, "tls-auth-clients"), "optional", "{n}");
        util::ping_with(c.addr(n), Some(PASSWORD), Some(&anonymous)).unwrap_or_else(|e| {
            panic!("{n}: client_auth \"optional\" takes a client without a certificate: {e}")
        });
        let conf = std::fs::read_to_string(c.run_dir().join(format!("{n}.conf")))
            .unwrap_or_else(|e| panic!("{n}.conf: {e}"));
        assert!(
            conf.contains("maxmemory 64mb") && conf.contains("tls-auth-clients optional"),
            "{n}: the file on disk agrees: {conf}"
        );
        assert_tls_only(&c, n, c.addr(n));
    }
    c.set("master", "after-reload", "1");
    wait_all_have(&c, &ALL, &["after-reload".to_owned()]);
}

#[test]
fn with_client_auth_no_clients_need_no_certificate_and_the_port_stays_tls_only() {
    if skipped() {
        return;
    }
    let mut c = cluster::master_and_two_replicas()
        .tls_client_auth("no")
        .build();
    assert!(
        c.tls_client().expect("[tls]").client.is_none(),
        "the suite's client presents no certificate here"
    );
    start(&mut c);
    for n in ALL {
        assert_tls_only(&c, n, c.addr(n));
        assert_eq!(config(&c, n, "tls-auth-clients"), "no", "{n}");
    }
    c.set("master", "no-client-cert", "1");
    wait_all_have(&c, &ALL, &["no-client-cert".to_owned()]);
    // The verbs connect without a certificate too.
    let run = c.cli(&["failover", "--to", "r1"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    wait_master(&c, "r1");

    // Certificates required from now on, by reload: the servers ask for one, and the
    // daemons' and verbs' new connections present theirs.
    let pids: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    if let Some(tls) = c.tls.as_mut() {
        tls.client_auth = Some("yes".to_owned());
    }
    c.write_config();
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    let anonymous = c.tls.as_ref().expect("[tls]").pki.anonymous();
    for n in ALL {
        assert_eq!(config(&c, n, "tls-auth-clients"), "yes", "{n}");
        assert!(
            util::ping_with(c.addr(n), Some(PASSWORD), Some(&anonymous)).is_err(),
            "{n}: no certificate, no connection"
        );
    }
    let run = c.cli(&["failover", "--to", "master"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    wait_master(&c, "master");
    let after: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "nothing restarted");
}

#[test]
fn sentinel_mode_over_tls_with_a_certificate_per_host_fails_over_a_dead_master_host() {
    if skipped() {
        return;
    }
    let (mut c, sentinels) = crate::sentinel_mode::sentinel_group_of(
        cluster::master_and_two_replicas().tls_per_host(&["a", "b"]),
    );
    // Starts the group, SIGKILLs host a (its daemon, the master, s1), waits for s2 and s3
    // to promote a replica, and for host a to rejoin: every acknowledged write kept.
    let (new_master, _) = crate::sentinel_mode::dead_master_host(&mut c, &sentinels);
    assert_ne!(new_master, "master");

    // `failover` asks Sentinel (SENTINEL FAILOVER) over TLS: the role moves again.
    let run = c.cli(&["failover"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    let moved = masters(&c, &ALL);
    assert_eq!(moved.len(), 1, "one master: {moved:?}");
    assert_ne!(moved[0], new_master, "the role moved");
    wait_master(&c, &moved[0]);
    crate::sentinel_mode::wait_sentinels_agree(&c, &sentinels, &moved[0]);

    for (n, s) in sentinels.iter().enumerate() {
        assert_tls_only(&c, &format!("sentinel s{}", n + 1), *s);
    }
    for n in ALL {
        assert_tls_only(&c, n, c.addr(n));
    }
    for node in ["s1", "s2", "s3"] {
        let conf = std::fs::read_to_string(c.dir.join(format!("data/{node}/sentinel.conf")))
            .unwrap_or_else(|e| panic!("{node}'s sentinel.conf: {e}"));
        assert!(
            conf.lines().any(|l| l == "port 0") && conf.contains("tls-replication yes"),
            "{node}: {conf}"
        );
    }
}

/// Rotates the group's pair in place: a new one, issued by the same CA as `redis2`, copied
/// over `redis.crt` and `redis.key`, each file replaced whole (rename), as an operator's
/// `install` does.
fn rotate_in_place(pki: &Pki) {
    pki.issue("redis2", &test_ips());
    for (from, to) in [("redis2.crt", "redis.crt"), ("redis2.key", "redis.key")] {
        let tmp = pki.path(&format!("{to}.new"));
        std::fs::copy(pki.path(from), &tmp).expect("copy the new file");
        std::fs::rename(&tmp, pki.path(to)).expect("rename it into place");
    }
}

/// What `openssl s_client` says of the certificate `addr` presents to a client of `files`
/// (its `-brief` lines: "Peer certificate: CN = ...", "Verification: OK").
fn peer_certificate(addr: SocketAddr, files: &TlsFiles) -> String {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_client", "-brief", "-verify_return_error", "-connect"])
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(&files.ca);
    if let Some((cert, key)) = &files.client {
        cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl s_client: {e}"));
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// Certificates rotated in place (same paths, new contents): `reload` has every instance
/// load them again live, nothing restarts, and a client that connects anew every 100 ms
/// meanwhile is never refused; afterwards every instance presents the new certificate,
/// which verifies.
#[test]
fn certificates_rotated_in_place_are_loaded_live_and_no_client_is_refused() {
    if skipped() {
        return;
    }
    let mut c = cluster::master_and_two_replicas().tls().build();
    start(&mut c);
    let pids: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    let pki = c.tls.as_ref().expect("[tls]").pki.clone();
    // The clients' own pair is not rotated: a client never reads a half-written pair.
    pki.issue("app", &test_ips());
    let app = pki.client("app");
    for n in ALL {
        let seen = peer_certificate(c.addr(n), &app);
        assert!(seen.contains("CN = redis\n"), "{n} before: {seen}");
    }

    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let tried = std::sync::Arc::new(AtomicU32::new(0));
    let addrs: Vec<SocketAddr> = ALL.iter().map(|n| c.addr(n)).collect();
    let reconnecting = {
        let (stop, tried, app) = (stop.clone(), tried.clone(), app.clone());
        std::thread::spawn(move || {
            let (mut tries, mut refused) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for addr in &addrs {
                    tries += 1;
                    tried.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = util::ping_with(*addr, Some(PASSWORD), Some(&app)) {
                        refused.push(format!("{addr}: {e}"));
                    }
                }
                // Pacing the client, not waiting for a condition: reconnects every 100 ms.
                std::thread::sleep(Duration::from_millis(100));
            }
            (tries, refused)
        })
    };

    rotate_in_place(&pki);
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    for n in ALL {
        assert!(
            run.stdout.contains(&format!(
                "{n}: set tls-cert-file, tls-key-file, tls-ca-cert-file live"
            )),
            "{run}"
        );
    }
    c.wait_healthy();
    // A few more rounds of the reconnecting client on the new certificates.
    let now = tried.load(Ordering::Relaxed);
    util::wait_until(UP, "three more rounds of the reconnecting client", || {
        tried.load(Ordering::Relaxed) >= now + 9
    });
    stop.store(true, Ordering::Relaxed);
    let (tries, refused) = reconnecting.join().expect("the reconnecting client");
    assert!(tries >= 9, "the client connected {tries} times");
    assert!(
        refused.is_empty(),
        "refused during the rotation: {refused:?}"
    );
    let after: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "nothing restarted");
    for n in ALL {
        let seen = peer_certificate(c.addr(n), &app);
        assert!(
            seen.contains("CN = redis2\n") && seen.contains("Verification: OK"),
            "{n} after: {seen}"
        );
    }
    c.set("master", "after-rotation", "1");
    wait_all_have(&c, &ALL, &["after-rotation".to_owned()]);

    // A rotation to new paths: the file names the new pair, and `reload` sets the paths
    // live in one CONFIG SET (a certificate set alone would not match the old key); the
    // files read differ too, so the CA's path is set again with them.
    pki.issue("redis3", &test_ips());
    if let Some(tls) = c.tls.as_mut() {
        tls.pair = "redis3".to_owned();
    }
    c.write_config();
    // Redis 6.2 takes one setting per CONFIG SET: a new certificate path set alone does
    // not match the old key, the server refuses it, and the instance restarts on the new
    // files instead (docs/security.md says so).
    let one_at_a_time = c.info("master", "server")["redis_version"].starts_with("6.");
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    for n in ALL {
        let line = if one_at_a_time {
            format!("{n}: restarted: not applied live")
        } else {
            format!("{n}: set tls-cert-file, tls-key-file, tls-ca-cert-file live")
        };
        assert!(run.stdout.contains(&line), "{run}");
    }
    c.wait_healthy();
    for n in ALL {
        assert_eq!(
            config(&c, n, "tls-cert-file"),
            pki.path("redis3.crt").display().to_string(),
            "{n}"
        );
        let seen = peer_certificate(c.addr(n), &app);
        assert!(seen.contains("CN = redis3\n"), "{n} on new paths: {seen}");
    }
    if one_at_a_time {
        return;
    }
    let after: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids, "nothing restarted");
}

/// The pid in `run_dir/<name>.pid` (a sentinel's).
fn pid_file(c: &Cluster, name: &str) -> u32 {
    std::fs::read_to_string(c.run_dir().join(format!("{name}.pid")))
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or_else(|| panic!("{name}'s pid file"))
}

/// Sentinel cannot load certificates again: a rotation restarts each host's sentinels one
/// at a time (the instances take theirs live), and they come back on the new certificate,
/// knowing the same master, their peers and the replicas.
#[test]
fn rotated_certificates_restart_the_sentinels_one_at_a_time() {
    if skipped() {
        return;
    }
    let (mut c, sentinels) =
        crate::sentinel_mode::sentinel_group_of(cluster::master_and_two_replicas().tls());
    start(&mut c);
    crate::sentinel_mode::wait_sentinels_agree(&c, &sentinels, "master");
    let nodes = ["s1", "s2", "s3"];
    let before: Vec<u32> = nodes.iter().map(|n| pid_file(&c, n)).collect();
    let pids: Vec<u32> = ALL.iter().map(|n| c.pid(n)).collect();
    let pki = c.tls.as_ref().expect("[tls]").pki.clone();
    rotate_in_place(&pki);
    let run = c.cli(&["reload"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    for n in nodes {
        assert!(
            run.stdout.contains(&format!(
                "{n}: sentinel restarting: its [tls] files changed"
            )),
            "{run}"
        );
    }
    // Host b restarts s2, then s3: s3 is stopped only once the new s2 runs.
    let b = c.daemon_log("b");
    let s2_back = b
        .rfind("sentinel running instance=s2")
        .unwrap_or_else(|| panic!("s2 back in b's log:\n{b}"));
    let s3_stopping = b
        .rfind("stopping: SHUTDOWN SAVE instance=s3")
        .unwrap_or_else(|| panic!("s3 stopped in b's log:\n{b}"));
    assert!(s2_back < s3_stopping, "s3 stopped before s2 was back:\n{b}");
    let after: Vec<u32> = nodes.iter().map(|n| pid_file(&c, n)).collect();
    for (i, n) in nodes.iter().enumerate() {
        assert_ne!(after[i], before[i], "{n} restarted");
    }
    assert_eq!(
        ALL.iter().map(|n| c.pid(n)).collect::<Vec<_>>(),
        pids,
        "the instances did not restart"
    );
    let app = pki.client("redis");
    for (n, addr) in nodes.iter().zip(&sentinels) {
        let seen = peer_certificate(*addr, &app);
        assert!(
            seen.contains("CN = redis2\n") && seen.contains("Verification: OK"),
            "{n} after: {seen}"
        );
    }
    crate::sentinel_mode::wait_sentinels_agree(&c, &sentinels, "master");
    c.wait_healthy();
}

/// `[tls]` and `[[user]]` together, in Sentinel mode: the daemons (as `redisrepd`), the
/// replicas (as `redisrepd-replication`) and the sentinels (as `redisrepd-sentinel`) all
/// authenticate over TLS; `default` is off; a Sentinel failover moves the role and the
/// application's user writes on the new master.
#[test]
fn tls_with_acl_users_in_sentinel_mode_fails_over() {
    if skipped() {
        return;
    }
    let (mut c, sentinels) =
        crate::sentinel_mode::sentinel_group_of(cluster::master_and_two_replicas().tls());
    let pw = c.dir.write("app.password", "app-over-tls-pw\n");
    util::chmod(&pw, 0o600);
    c.extra_sections.push_str(
        "\n[[user]]\nname = \"app\"\npassword_file = \"app.password\"\nrules = \"~* &* +@all -@admin -@dangerous\"\n",
    );
    c.write_config();
    start(&mut c);
    crate::sentinel_mode::wait_sentinels_agree(&c, &sentinels, "master");
    let client = c.tls_client().expect("[tls]");
    let app = |name: &str| {
        let mut con = util::connect_with_tls(c.addr(name), None, Some(&client), UP, UP)
            .unwrap_or_else(|e| panic!("TLS to `{name}`: {e}"));
        redis::cmd("AUTH")
            .arg("app")
            .arg("app-over-tls-pw")
            .query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("AUTH app on `{name}`: {e}"));
        con
    };
    // `default` is off: the cluster password alone opens nothing.
    let mut anon = util::connect_with_tls(c.addr("master"), None, Some(&client), UP, UP)
        .expect("TLS to the master");
    let refused = redis::cmd("AUTH").arg(PASSWORD).query::<()>(&mut anon);
    assert!(refused.is_err(), "default is off: {refused:?}");
    redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query::<()>(&mut app("master"))
        .expect("SET as app");
    let run = c.cli(&["failover"]);
    assert_eq!(run.status.code(), Some(0), "{run}\n{}", c.logs());
    let new = crate::sentinel_mode::wait_master_moved(&c, "master");
    crate::sentinel_mode::wait_sentinels_agree(&c, &sentinels, &new);
    c.wait_healthy();
    let mut con = app(&new);
    redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query::<()>(&mut con)
        .expect("SET as app on the new master");
    let before: Option<String> = redis::cmd("GET")
        .arg("before")
        .query(&mut con)
        .expect("GET");
    assert_eq!(before.as_deref(), Some("1"));
}
