//! Faults injected into a running group: processes killed or frozen, a port taken, a data
//! dir deleted, a missing redis-server, a password file changed under the daemon, and a
//! control socket fed garbage, silence and crowds.
//!
//! Each test ends with the daemon still answering `status`, and where a master can lose
//! data (it is killed) the group runs with `appendfsync always`, so no acknowledged write
//! may be missing afterwards: on the master, and on every replica once it is in sync.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::util;
use redisrepd_testkit::{Target, Writer, WriterOpts};

/// Persistence under which an acknowledged write survives a SIGKILL of its master.
const AOF_ALWAYS: &str = "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"\n";

use crate::util::kill;

fn key(i: u32) -> String {
    format!("key:{i}")
}

fn value(i: u32) -> String {
    format!("value-{i}")
}

/// `SET key:i value-i`; `Ok` only when Redis acknowledged it.
fn set(con: &mut redis::Connection, i: u32) -> redis::RedisResult<()> {
    redis::cmd("SET").arg(key(i)).arg(value(i)).query(con)
}

/// Writes keys `from..from + n` one after another; every write must be acknowledged.
fn write_all(c: &Cluster, from: u32, n: u32) -> Vec<u32> {
    let mut con = c.con("master");
    for i in from..from + n {
        set(&mut con, i).unwrap_or_else(|e| panic!("SET {}: {e}", key(i)));
    }
    (from..from + n).collect()
}

/// The acknowledged keys that `name` does not hold with the value written.
fn missing_on(c: &Cluster, name: &str, acked: &[u32]) -> Result<Vec<u32>, String> {
    let mut con = util::connect(c.addr(name), Some(PASSWORD)).map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    for chunk in acked.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| key(*i)).collect();
        let got: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        for (i, v) in chunk.iter().zip(got) {
            if v.as_deref() != Some(value(*i).as_str()) {
                missing.push(*i);
            }
        }
    }
    Ok(missing)
}

/// Waits until `name` holds every acknowledged key (a replica may still be catching up).
fn wait_all_present(c: &Cluster, name: &str, acked: &[u32]) {
    util::wait_for(
        UP,
        &format!("{} acknowledged keys on `{name}`", acked.len()),
        || match missing_on(c, name, acked)? {
            m if m.is_empty() => Ok(()),
            m => Err(format!(
                "{} missing, first {:?}\n{}",
                m.len(),
                &m[..m.len().min(10)],
                c.logs()
            )),
        },
    );
}

/// Asserts that the daemon answers `status`: the CLI reaches it and exits 0 or 3, and
/// every instance has a state from its daemon (the CLI calls an instance that no daemon
/// reported, and that does not answer itself, `unreachable`). Returns the records.
#[track_caller]
fn assert_daemon_answers(c: &Cluster) -> BTreeMap<String, Value> {
    let run = c.cli(&["status", "--json"]);
    assert!(
        matches!(run.status.code(), Some(0 | 3)) && !run.stderr.contains("cannot talk to"),
        "status did not get an answer from the daemon\n{run}"
    );
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{run}"));
    let s: BTreeMap<String, Value> = doc["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| (i["name"].as_str().unwrap_or_default().to_owned(), i.clone()))
        .collect();
    assert_eq!(s.len(), c.members.len(), "{run}");
    for (name, rec) in &s {
        assert_ne!(
            rec["state"], "unreachable",
            "`{name}` is not reported by its daemon: {rec}"
        );
    }
    s
}

/// The status record of one instance.
fn record(c: &Cluster, name: &str) -> Value {
    c.status()
        .remove(name)
        .unwrap_or_else(|| panic!("`{name}` missing from status"))
}

/// Every warning and the last error of a record, as one string.
fn notes(rec: &Value) -> String {
    let mut out = rec["last_error"].as_str().unwrap_or_default().to_owned();
    for w in rec["warnings"].as_array().into_iter().flatten() {
        out.push_str(" | ");
        out.push_str(w.as_str().unwrap_or_default());
    }
    out
}

/// Waits until `name` runs again under a pid other than `old`; returns its record.
fn wait_restarted(c: &Cluster, name: &str, old: u32) -> Value {
    util::wait_for(UP, &format!("`{name}` running with a new pid"), || {
        let s = record(c, name);
        match s["pid"].as_u64() {
            Some(p) if p as u32 != old && s["state"] == "running" => Ok(s),
            _ => Err(format!("{s}\n{}", c.logs())),
        }
    })
}

#[test]
fn sigkill_of_the_master_loses_no_acknowledged_write() {
    let mut c = cluster::one_host().redis(AOF_ALWAYS).build();
    c.start_daemon("a");
    c.wait_healthy();
    let pid = c.pid("master");

    // Kill it in the middle of a stream of writes: some SETs are in flight.
    // As fast as the master answers (the keys of `set`), ending at the first failure.
    let opts = WriterOpts {
        prefix: "key:".to_owned(),
        value_prefix: "value-".to_owned(),
        pause: Duration::ZERO,
        stop_on_error: true,
        ..cluster::writer_opts()
    };
    let writer = Writer::start(Target::Fixed(c.addr("master")), opts);
    writer.wait_acked(300, UP);
    kill(pid, Signal::SIGKILL);
    let report = writer.finish_at_error(UP);
    assert!(
        report.last_error().is_some(),
        "the writer must have seen the master go away"
    );
    let mut acked: Vec<u32> = report
        .acked()
        .into_iter()
        .map(|n| u32::try_from(n).expect("fewer than 2^32 writes"))
        .collect();

    let s = wait_restarted(&c, "master", pid);
    assert_eq!(s["restarts"], 1, "{s}");
    // The restarted master takes writes again.
    acked.extend(write_all(&c, 2_000_000, 100));
    assert_eq!(
        missing_on(&c, "master", &acked).expect("reading the master"),
        Vec::<u32>::new(),
        "acknowledged writes lost on the master ({} acknowledged)",
        acked.len()
    );
    c.wait_healthy();
    for r in ["r1", "r2"] {
        wait_all_present(&c, r, &acked);
    }
    assert_daemon_answers(&c);
}

#[test]
fn sigkill_of_each_replica_loses_no_acknowledged_write() {
    let mut c = cluster::one_host().redis(AOF_ALWAYS).build();
    c.start_daemon("a");
    c.wait_healthy();
    let master_pid = c.pid("master");
    let mut acked = write_all(&c, 0, 200);
    let mut next = 200;
    for r in ["r1", "r2"] {
        let pid = c.pid(r);
        kill(pid, Signal::SIGKILL);
        // Written while the replica is down or coming back: it must catch up on them.
        acked.extend(write_all(&c, next, 200));
        next += 200;
        let s = wait_restarted(&c, r, pid);
        assert_eq!(s["restarts"], 1, "{s}");
        acked.extend(write_all(&c, next, 100));
        next += 100;
        c.wait_healthy();
        wait_all_present(&c, r, &acked);
    }
    assert_eq!(c.pid("master"), master_pid, "the master was left alone");
    assert_eq!(
        missing_on(&c, "master", &acked).expect("reading the master"),
        Vec::<u32>::new()
    );
    for r in ["r1", "r2"] {
        wait_all_present(&c, r, &acked);
    }
    assert_daemon_answers(&c);
}

#[test]
fn a_frozen_replica_makes_the_master_refuse_writes_and_status_says_why() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .with("min_replicas_to_write = 1\nmin_replicas_max_lag = 2")
        .instance("r1", "a", Some("master"))
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let r1_pid = c.pid("r1");
    let mut acked = write_all(&c, 0, 50);

    kill(r1_pid, Signal::SIGSTOP);
    // Frozen longer than min_replicas_max_lag: the master refuses writes. Writes until then
    // are acknowledged ones like any other.
    let mut con = c.con("master");
    let mut i = 1000;
    let started = Instant::now();
    let err = util::wait_for(UP, "the master to refuse writes", || {
        i += 1;
        match set(&mut con, i) {
            Ok(()) => {
                acked.push(i);
                Err("write accepted".to_owned())
            }
            Err(e) => Ok(e),
        }
    });
    let refused_after = started.elapsed();
    assert_eq!(err.code(), Some("NOREPLICAS"), "{err}");
    assert!(
        refused_after >= Duration::from_secs(1),
        "a replica frozen for less than min_replicas_max_lag still counts ({refused_after:?})"
    );

    let m = util::wait_for(UP, "status to say why the master refuses writes", || {
        let m = record(&c, "master");
        if notes(&m).contains("refusing writes: 0 good replicas, min_replicas_to_write = 1") {
            Ok(m)
        } else {
            Err(m.to_string())
        }
    });
    assert_eq!(m["state"], "running", "{m}");
    let r = util::wait_for(
        UP,
        "status to say the frozen replica does not answer",
        || {
            let r = record(&c, "r1");
            if notes(&r).contains("not answering INFO: timed out waiting for a reply") {
                Ok(r)
            } else {
                Err(r.to_string())
            }
        },
    );
    assert_eq!(r["pid"], r1_pid, "a frozen replica is not restarted: {r}");
    let run = c.cli(&["status", "--wide"]);
    run.expect_code(3);
    assert!(run.stdout.contains("refusing writes"), "{run}");

    kill(r1_pid, Signal::SIGCONT);
    util::wait_for(UP, "the master to accept writes again", || {
        i += 1;
        set(&mut con, i).map(|()| acked.push(i))
    });
    c.wait_healthy();
    wait_all_present(&c, "r1", &acked);
    let r = record(&c, "r1");
    assert_eq!(r["pid"], r1_pid, "{r}");
    assert_eq!(r["restarts"], 0, "{r}");
    util::wait_for(UP, "the refusal to leave the master's status", || {
        let m = record(&c, "master");
        if notes(&m).contains("refusing writes") {
            Err(m.to_string())
        } else {
            Ok(())
        }
    });
    assert_eq!(
        missing_on(&c, "master", &acked).expect("reading the master"),
        Vec::<u32>::new()
    );
    assert_daemon_answers(&c);
}

#[test]
fn a_taken_port_is_named_and_retried_until_released() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .build();
    let r1 = c.addr("r1");
    let squatter = TcpListener::bind(r1).expect("binding r1's port before the daemon");
    c.start_daemon("a");
    c.wait_state("master", "running");
    let me = std::process::id().to_string();
    let first = util::wait_for(UP, "status to name who holds r1's port", || {
        let s = record(&c, "r1");
        let why = s["last_error"].as_str().unwrap_or_default().to_owned();
        if why.contains(&format!("port {r1} is held by pid {me}")) && why.contains("retrying in") {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    assert!(
        matches!(first["state"].as_str(), Some("backoff" | "starting")),
        "{first}"
    );
    assert_eq!(first["pid"], Value::Null, "{first}");
    // It keeps trying (with backoff), and keeps saying why: each attempt is logged.
    util::wait_until(UP, "another attempt to start r1", || {
        c.daemon_log("a").matches("is held by pid").count() >= 2
    });
    assert!(
        c.daemon_log("a").contains("is held by pid"),
        "the daemon logs the holder"
    );
    let run = c.cli(&["status", "--wide"]);
    run.expect_code(3);
    assert!(
        run.stdout.contains(&format!("is held by pid {me}")),
        "{run}"
    );
    assert_eq!(c.status()["master"]["state"], "running");

    drop(squatter);
    c.wait_healthy();
    assert_eq!(
        record(&c, "r1")["restarts"],
        0,
        "attempts that never ran are not restarts"
    );
    assert_daemon_answers(&c);
}

#[test]
fn a_deleted_data_dir_fails_the_stop_and_keeps_the_data_until_forced() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    c.start_daemon("a");
    c.wait_state("master", "running");
    let pid = c.pid("master");
    let acked = write_all(&c, 0, 100);
    std::fs::remove_dir_all(c.data_dir("master")).expect("deleting the data dir");

    let run = c.cli(&["stop", "master"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("redisrepd: master: stop failed, left running")
            && run.stderr.contains("--force"),
        "{run}"
    );
    let s = record(&c, "master");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["pid"], pid, "{s}");
    assert!(
        notes(&s).contains("final save failed"),
        "status says why: {s}"
    );
    assert_eq!(
        missing_on(&c, "master", &acked).expect("the data is still readable"),
        Vec::<u32>::new()
    );
    // Still refused on a second try: nothing changed.
    c.cli(&["stop", "master"]).expect_code(1);
    assert_eq!(c.redis_pids(), vec![pid]);
    assert_daemon_answers(&c);

    let run = c.cli(&["stop", "--force", "master"]);
    run.expect_code(0);
    assert!(run.stdout.contains("master: stopped"), "{run}");
    assert_eq!(record(&c, "master")["state"], "stopped");
    util::wait_until(UP, "the master's process to be gone", || {
        c.redis_pids().is_empty()
    });
    assert!(
        c.daemon_log("a").contains("SHUTDOWN NOSAVE"),
        "the forced stop is logged as losing unsaved writes"
    );
    let run = c.cli(&["status", "--json"]);
    assert!(run.stdout.contains("\"stopped\""), "{run}");
}

#[test]
fn a_missing_or_unexecutable_redis_server_is_refused_at_daemon_start() {
    let dir = util::TestDir::new();
    let copy = dir.join("redis-server-0644");
    std::fs::copy(util::redis_server(), &copy).expect("copying redis-server");
    util::chmod(&copy, 0o644);
    for (server, says) in [
        ("/nonexistent/redis-server".to_owned(), "is not found"),
        (copy.display().to_string(), "is not executable (mode 644)"),
    ] {
        let c = cluster::Builder::new()
            .cluster(&format!("redis_server = \"{server}\""))
            .instance("master", "a", None)
            .build();
        let mut cmd = util::redisrepd(&c.config);
        cmd.args(["daemon", "--host", "a"]);
        let run = util::run(&mut cmd, UP);
        run.expect_code(1);
        assert!(
            run.stderr.contains("key `redis_server`")
                && run.stderr.contains(&format!("`{server}` {says}"))
                && run.stderr.contains("set `redis_server` in [cluster]"),
            "{run}"
        );
        assert!(
            !c.run_dir().join("a.sock").exists(),
            "no socket left behind"
        );
        assert!(c.redis_pids().is_empty());
    }
}

#[test]
fn a_password_file_changed_or_removed_under_the_daemon_does_not_lock_it_out() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let master_pid = c.pid("master");
    c.dir.write("password", "pw-someone-changed-it\n");

    // The daemon keeps the password each instance was started with.
    c.wait_healthy();
    let run = c.cli(&["stop", "r1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("r1: stopped"), "{run}");
    assert!(c.data_dir("r1").join("dump.rdb").exists(), "it saved");
    let s = assert_daemon_answers(&c);
    assert_eq!(s["r1"]["state"], "stopped");
    assert_eq!(s["master"]["state"], "running");
    // Started again, it gets the password it was configured with when the daemon started:
    // the one its master and sibling still use.
    c.cli(&["start", "r1"]).expect_code(0);
    c.wait_healthy();
    assert_eq!(c.pid("master"), master_pid);

    // Emptied (an editor half-way through a save) or deleted: the CLI warns and still
    // gets through to the daemon.
    std::fs::write(c.dir.join("password"), "").expect("emptying the password file");
    let run = c.cli(&["status"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("warning") && run.stderr.contains("is empty"),
        "{run}"
    );
    std::fs::remove_file(c.dir.join("password")).expect("deleting the password file");
    let run = c.cli(&["stop", "--all"]);
    run.expect_code(0);
    assert!(run.stderr.contains("cannot read"), "{run}");
    assert!(c.redis_pids().is_empty(), "{run}");
    let s = assert_daemon_answers(&c);
    assert!(s.values().all(|r| r["state"] == "stopped"), "{s:?}");
}

/// One raw request line on the control socket of host `a`; the reply line.
fn raw_request(c: &Cluster, line: &[u8]) -> String {
    let mut s = UnixStream::connect(c.run_dir().join("a.sock")).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    s.write_all(line).expect("writing the request");
    let mut reply = String::new();
    BufReader::new(&s)
        .read_line(&mut reply)
        .expect("reading the reply");
    reply
}

#[test]
fn the_control_socket_survives_garbage_oversized_lines_and_idle_clients() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    c.start_daemon("a");
    c.wait_state("master", "running");
    let pid = c.pid("master");

    let reply = raw_request(&c, b"{\"op\": \"status\"\n");
    assert!(
        reply.contains("\"reply\":\"error\"") && reply.contains("malformed request"),
        "{reply}"
    );
    // Just over the limit, sent whole (it fits in the socket buffer), then the newline.
    let mut big = vec![b' '; 64 * 1024 + 10];
    big.push(b'\n');
    let reply = raw_request(&c, &big);
    assert!(
        reply.contains("\"reply\":\"error\"") && reply.contains("longer than 65536 bytes"),
        "{reply}"
    );

    // A client that connects and never writes does not hold up anybody else...
    let socket = c.run_dir().join("a.sock");
    let idle = UnixStream::connect(&socket).expect("connecting");
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let connected = Instant::now();
    // A client that trickles a byte every 200 ms and never ends its line is cut off at
    // the same limit: the timeout is for the whole request, not for each read.
    let trickler = UnixStream::connect(&socket).expect("connecting");
    trickler
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let trickle = {
        let mut w = trickler.try_clone().expect("cloning the stream");
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(30);
            // Pacing, not waiting for a condition: the point is to be slow.
            while Instant::now() < until && w.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let s = assert_daemon_answers(&c);
    assert_eq!(s["master"]["pid"], pid);
    assert_eq!(
        raw_request(&c, b"{\"op\":\"status\"}\n")
            .split_once("\"reply\":\"")
            .map(|(_, r)| &r[..6]),
        Some("status")
    );
    // ...and is sent away with an error once the daemon's request timeout (5 s) is up.
    let mut reply = String::new();
    let read = BufReader::new(&idle).read_line(&mut reply);
    let waited = connected.elapsed();
    assert!(read.is_ok(), "{read:?} {reply}");
    assert!(
        reply.contains("no request within the time limit"),
        "{reply}"
    );
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(25),
        "the idle client waited {waited:?}"
    );
    let mut reply = String::new();
    let read = BufReader::new(&trickler).read_line(&mut reply);
    let waited = connected.elapsed();
    assert!(read.is_ok(), "{read:?} {reply}");
    assert!(
        reply.contains("no request within the time limit"),
        "{reply}"
    );
    assert!(
        waited < Duration::from_secs(25),
        "the trickling client was served for {waited:?}"
    );
    drop(trickler);
    trickle.join().expect("the trickling thread panicked");
    c.wait_state("master", "running");
    assert_eq!(c.pid("master"), pid);
    assert_daemon_answers(&c);
}

#[test]
fn twenty_clients_at_once_are_all_answered() {
    let mut c = cluster::one_host().build();
    c.start_daemon("a");
    c.wait_healthy();
    let pids: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    let socket = c.run_dir().join("a.sock");
    let (tx, rx) = mpsc::channel();
    let barrier = Arc::new(std::sync::Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (socket, tx, barrier) = (socket.clone(), tx.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let reply = (|| -> std::io::Result<String> {
                    let mut s = UnixStream::connect(&socket)?;
                    s.set_read_timeout(Some(Duration::from_secs(60)))?;
                    s.write_all(b"{\"op\":\"status\"}\n")?;
                    let mut reply = String::new();
                    BufReader::new(&s).read_line(&mut reply)?;
                    Ok(reply)
                })();
                let _ = tx.send(reply.map_err(|e| e.to_string()));
            })
        })
        .collect();
    drop(tx);
    for t in threads {
        t.join().expect("a client thread panicked");
    }
    let replies: Vec<Result<String, String>> = rx.iter().collect();
    assert_eq!(replies.len(), 20);
    for r in &replies {
        let reply = r
            .as_ref()
            .unwrap_or_else(|e| panic!("a client failed: {e}"));
        let doc: Value = serde_json::from_str(reply).unwrap_or_else(|e| panic!("{e}: {reply}"));
        assert_eq!(doc["reply"], "status", "{reply}");
        assert_eq!(
            doc["instances"].as_array().map(Vec::len),
            Some(3),
            "{reply}"
        );
    }
    // Nothing changed underneath.
    c.wait_healthy();
    let after: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    assert_eq!(after, pids);
    assert_daemon_answers(&c);
}
