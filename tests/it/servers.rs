//! What the selected server (`REDISREPD_TEST_SERVER`) does, measured on a bare master and replica
//! without redisrepd, against what `redisrepd_core::server::Server` says of it: partial resync
//! after a replica restart from RDB, after a restart from AOF, after a master restart; FAILOVER;
//! SHUTDOWN flags. Prints one `server-table:` line (the table in docs/servers.md is made of these
//! lines, one per server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::util::{self, RedisProc, TestDir};

const START: Duration = Duration::from_secs(20);
const SYNC: Duration = Duration::from_secs(60);

/// One bare server: its conf, data dir and process.
struct Node {
    addr: SocketAddr,
    conf: PathBuf,
    dir: PathBuf,
    proc: Option<RedisProc>,
}

impl Node {
    fn new(root: &TestDir, name: &str) -> Node {
        let ip = util::loopback_ip();
        let addr = SocketAddr::new(ip, util::free_port(ip));
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("data dir");
        Node {
            addr,
            conf: root.join(format!("{name}.conf")),
            dir,
            proc: None,
        }
    }

    /// Writes the conf and starts the server (its log starts anew).
    fn start(&mut self, replica_of: Option<SocketAddr>, aof: bool) {
        let mut text = format!(
            "port {}\nbind {}\ndir \"{}\"\nlogfile \"\"\nsave 3600 1\nappendonly {}\n\
             repl-diskless-sync-delay 0\nreplica-announce-ip {}\n",
            self.addr.port(),
            self.addr.ip(),
            // The master lists a replica by its connection's source address (127.0.0.1),
            // and FAILOVER hands over to that address: announce the real one.
            self.dir.display(),
            if aof { "yes" } else { "no" },
            self.addr.ip()
        );
        if let Some(up) = replica_of {
            text.push_str(&format!("replicaof {} {}\n", up.ip(), up.port()));
        }
        std::fs::write(&self.conf, text).expect("conf");
        let mut p = RedisProc::spawn(&self.conf);
        p.wait_ready(self.addr, None, START)
            .unwrap_or_else(|log| panic!("{} did not start: {log}", self.addr));
        self.proc = Some(p);
    }

    fn con(&self) -> redis::Connection {
        util::connect(self.addr, None).unwrap_or_else(|e| panic!("{}: {e}", self.addr))
    }

    fn info(&self, section: &str) -> std::collections::HashMap<String, String> {
        util::info(&mut self.con(), section).expect("INFO")
    }

    /// `SHUTDOWN SAVE` (again while refused: a replica writing its first AOF refuses to
    /// exit until it is done), then waits for the process to exit.
    fn stop(&mut self) {
        util::wait_for(SYNC, &format!("{} to accept SHUTDOWN", self.addr), || {
            let Ok(mut con) = util::connect(self.addr, None) else {
                return Ok(());
            };
            match redis::cmd("SHUTDOWN")
                .arg("SAVE")
                .query::<redis::Value>(&mut con)
            {
                // `wait_for` backs off between tries.
                Err(e) if e.code().is_some() => Err(e.to_string()),
                _ => Ok(()),
            }
        });
        if let Some(mut p) = self.proc.take() {
            p.proc.wait_exit(SYNC);
        }
    }

    fn log(&self) -> String {
        self.proc
            .as_ref()
            .map(RedisProc::log_text)
            .unwrap_or_default()
    }

    /// Waits until this replica is linked, in sync, and has logged how it synced.
    fn wait_synced(&self) -> &'static str {
        util::wait_for(SYNC, &format!("replica {} in sync", self.addr), || {
            let log = self.log();
            let linked = self
                .info("replication")
                .get("master_link_status")
                .map(String::as_str)
                == Some("up");
            if !linked {
                return Err(log);
            }
            sync_kind(&log).ok_or(log)
        })
    }

    fn role(&self) -> String {
        self.info("replication")
            .get("role")
            .cloned()
            .unwrap_or_default()
    }
}

/// How a replica's log says it synced: `partial`, `full`, or not yet. Redis 8.0 copies a
/// full sync over a second connection (its "rdb channel") and logs no `Full resync from`.
fn sync_kind(log: &str) -> Option<&'static str> {
    if log.contains("accepted a Partial Resynchronization") {
        Some("partial")
    } else if log.contains("Full resync from")
        || log.contains("Starting to receive RDB and replication stream in parallel")
    {
        Some("full")
    } else {
        None
    }
}

fn write_keys(node: &Node, from: u32, n: u32) {
    let mut con = node.con();
    for i in from..from + n {
        redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query::<()>(&mut con)
            .expect("SET");
    }
}

#[test]
fn the_server_does_what_its_version_table_says() {
    let server = util::test_server();
    let root = TestDir::new();
    let mut m = Node::new(&root, "m");
    let mut r = Node::new(&root, "r");
    m.start(None, false);
    r.start(Some(m.addr), false);
    r.wait_synced();
    write_keys(&m, 0, 100);

    // A replica restarted from its RDB (SHUTDOWN SAVE) resumes partially.
    r.stop();
    write_keys(&m, 100, 100);
    r.start(Some(m.addr), false);
    let replica_rdb = r.wait_synced();

    // The same from its AOF: switched on, then stopped and started with AOF.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query::<()>(&mut r.con())
        .expect("CONFIG SET appendonly yes");
    util::wait_for(SYNC, "the replica's AOF written", || {
        let p = r.info("persistence");
        let done = p.get("aof_enabled").map(String::as_str) == Some("1")
            && p.get("aof_rewrite_in_progress").map(String::as_str) == Some("0")
            && p.get("aof_rewrite_scheduled").map(String::as_str) == Some("0");
        if done { Ok(()) } else { Err(format!("{p:?}")) }
    });
    write_keys(&m, 200, 100);
    r.stop();
    r.start(Some(m.addr), true);
    let replica_aof = r.wait_synced();
    // Back to RDB-only for the rest.
    r.stop();
    r.start(Some(m.addr), false);
    r.wait_synced();

    // The master restarted from its RDB.
    m.stop();
    m.start(None, false);
    // The replica's log is kept across the master restart: wait for a new sync line.
    let before = r.log();
    let master_restart = util::wait_for(
        SYNC,
        "the replica to resync with the restarted master",
        || {
            let log = r.log();
            let new = log.get(before.len()..).unwrap_or_default();
            let linked = r
                .info("replication")
                .get("master_link_status")
                .map(String::as_str)
                == Some("up");
            match sync_kind(new) {
                Some(kind) if linked => Ok(kind),
                _ => Err(new.to_owned()),
            }
        },
    );

    // SHUTDOWN ABORT: "no shutdown in progress" where the flags exist, a syntax error
    // where they do not.
    let abort = redis::cmd("SHUTDOWN")
        .arg("ABORT")
        .query::<redis::Value>(&mut m.con());
    let abort_error = abort.err().map(|e| e.to_string()).unwrap_or_default();
    let shutdown_flags = !abort_error.to_lowercase().contains("syntax error");

    // FAILOVER: the replica becomes master, the master its replica.
    let failover = redis::cmd("FAILOVER").query::<()>(&mut m.con());
    let failover_ok = failover.is_ok()
        && util::wait_for(SYNC, "FAILOVER to swap the roles", || {
            if r.role() == "master" && m.role() == "slave" {
                Ok(true)
            } else {
                let tail = |l: String| l.lines().rev().take(8).collect::<Vec<_>>().join("\n");
                Err(format!(
                    "r: {}, m: {}\n--- m:\n{}\n--- r:\n{}",
                    r.role(),
                    m.role(),
                    tail(m.log()),
                    tail(r.log())
                ))
            }
        });
    let failover_resync = if failover_ok { m.wait_synced() } else { "-" };
    let keys: i64 = redis::cmd("DBSIZE").query(&mut r.con()).expect("DBSIZE");

    println!(
        "server-table: {server}: replica restart from RDB: {replica_rdb}; from AOF: \
         {replica_aof}; master restart: {master_restart}; FAILOVER: {} ({failover_resync}); \
         SHUTDOWN NOW|FORCE|ABORT: {}",
        if failover_ok { "yes" } else { "no" },
        if shutdown_flags { "yes" } else { "no" }
    );
    assert_eq!(keys, 300, "every write survived on the new master");
    assert_eq!(replica_rdb, "partial", "{server}");
    assert_eq!(
        master_restart == "partial",
        server.master_restart_keeps_replid(),
        "{server}: master restart {master_restart}"
    );
    assert_eq!(
        shutdown_flags,
        server.has_shutdown_flags(),
        "{server}: {abort_error}"
    );
    assert_eq!(failover_ok, server.has_failover(), "{server}: {failover:?}");
}
