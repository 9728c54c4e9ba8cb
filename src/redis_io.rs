//! Talking to a Redis instance: INFO probes and the authenticated SHUTDOWN. Blocking calls
//! with timeouts; run them off the supervisor thread.

use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::info::Info;

pub use crate::endpoint::{Endpoint, ShutdownError};

// The data lives in `endpoint` (the pure machine uses it too); the talking is here.
impl Endpoint {
    /// Opens an authenticated connection.
    pub fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(pw) = &self.password {
            settings = settings.set_password(pw.expose());
        }
        let info = ConnectionAddr::Tcp(self.bind.to_string(), self.port)
            .into_connection_info()?
            .set_redis_settings(settings);
        let conn = redis::Client::open(info)?.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(conn)
    }

    /// Reads `INFO` (its default sections: server, persistence, stats and replication are
    /// among them). Not `INFO server persistence stats replication`: several sections in
    /// one call came in Redis 7.0, and 6.2 answers it with a syntax error.
    pub fn info(&self, timeout: Duration) -> Result<Info, String> {
        let mut conn = self.connect(timeout).map_err(describe)?;
        let text: String = redis::cmd("INFO").query(&mut conn).map_err(describe)?;
        Ok(Info::parse(&text))
    }

    /// `INFO`; from a sentinel, plus the master it names for `cluster` as the line
    /// `sentinel_master_addr:IP:PORT` (`SENTINEL GET-MASTER-ADDR-BY-NAME`: during a
    /// failover it already names the promoted replica, while INFO's `master0` still names
    /// the old master).
    pub fn info_or_sentinel(&self, cluster: &str, timeout: Duration) -> Result<Info, String> {
        let mut conn = self.connect(timeout).map_err(describe)?;
        let mut text: String = redis::cmd("INFO").query(&mut conn).map_err(describe)?;
        let info = Info::parse(&text);
        let sentinel = info.get("redis_mode") == Some("sentinel")
            || info.get("server_mode") == Some("sentinel");
        if !sentinel {
            return Ok(info);
        }
        let addr: Option<Vec<String>> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(cluster)
            .query(&mut conn)
            .map_err(describe)?;
        if let Some([ip, port]) = addr.as_deref() {
            text.push_str(&format!("\r\nsentinel_master_addr:{ip}:{port}\r\n"));
        }
        Ok(Info::parse(&text))
    }

    /// Sends an authenticated `SHUTDOWN SAVE` (or `SHUTDOWN NOSAVE` when `nosave`) and
    /// waits for Redis to close the connection, which it does once the save is done. A
    /// refusal while the AOF is being rewritten, per INFO persistence asked just before or
    /// just after (a rewrite may end in between), is told apart from a failed save; the
    /// machine decides what to do about it.
    pub fn shutdown(&self, nosave: bool, timeout: Duration) -> Result<(), ShutdownError> {
        let mut conn = self
            .connect(timeout.min(Duration::from_secs(5)))
            .map_err(|e| ShutdownError::Unreachable(describe(e)))?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| ShutdownError::Unreachable(describe(e)))?;
        let mode = if nosave { "NOSAVE" } else { "SAVE" };
        let before = rewriting_aof(&mut conn);
        // Success is the connection closing: Redis exits without replying. The caller
        // confirms the exit from the child's status, not from this.
        let refusal = match redis::cmd("SHUTDOWN")
            .arg(mode)
            .query::<redis::Value>(&mut conn)
        {
            Err(e) if e.code().is_some() => e.to_string(),
            Err(e) if e.is_timeout() => return Err(ShutdownError::Timeout),
            Err(_) => return Ok(()),
            Ok(v) => format!("unexpected reply {v:?}"),
        };
        if before || rewriting_aof(&mut conn) {
            return Err(ShutdownError::RewritingAof(refusal));
        }
        Err(ShutdownError::Refused(refusal))
    }
}

impl Endpoint {
    /// `REPLICAOF host port`, or `REPLICAOF NO ONE` when `to` is `None`.
    pub fn replicaof(&self, to: Option<(&str, u16)>, timeout: Duration) -> Result<(), String> {
        let mut conn = self.connect(timeout).map_err(describe)?;
        replicaof_cmd(to).query::<()>(&mut conn).map_err(describe)
    }

    /// Coordinated switchover (Redis 6.2+): `FAILOVER TO <target> TIMEOUT <ms>` on this
    /// master, then waits until `target` reports itself master and this one replicates.
    /// Redis pauses writes meanwhile and aborts by itself (writes resume here) when the
    /// target does not catch up within `timeout`.
    pub fn failover(
        &self,
        target: &Endpoint,
        force: bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let io = Duration::from_secs(5);
        let mut conn = self.connect(io).map_err(describe)?;
        let mut cmd = redis::cmd("FAILOVER");
        cmd.arg("TO")
            .arg(target.bind.to_string())
            .arg(target.port)
            .arg("TIMEOUT")
            .arg(timeout.as_millis() as u64);
        if force {
            cmd.arg("FORCE");
        }
        cmd.query::<()>(&mut conn).map_err(describe)?;
        let deadline = std::time::Instant::now() + timeout + io;
        loop {
            let old = self.info(io);
            let new = target.info(io);
            if let (Ok(old), Ok(new)) = (&old, &new)
                && old.role() == Some("replica")
                && new.role() == Some("master")
            {
                return Ok(());
            }
            // Back to no failover while still master: Redis gave up (the target did not
            // catch up in time) and writes go on here.
            if let Ok(old) = &old
                && old.role() == Some("master")
                && old.get("master_failover_state") == Some("no-failover")
                && new.as_ref().is_ok_and(|n| n.role() != Some("master"))
                && std::time::Instant::now() > deadline - io
            {
                return Err("FAILOVER was aborted by the server: the target did not catch up in time; writes go on at the old master".to_owned());
            }
            if std::time::Instant::now() > deadline {
                // With FORCE a master can stay stuck in `failover-in-progress`, writes
                // paused, for good (measured: 10 minutes): end it ourselves.
                let aborted = self
                    .connect(io)
                    .and_then(|mut c| redis::cmd("FAILOVER").arg("ABORT").query::<()>(&mut c));
                if aborted.is_ok() {
                    return Err(
                        "the roles did not swap in time; FAILOVER ABORT sent: writes go on at the old master"
                            .to_owned(),
                    );
                }
                return Err(format!(
                    "the roles did not swap within {}s (old master: {}, target: {})",
                    (timeout + io).as_secs(),
                    old.map_or_else(|e| e, |i| i.role().unwrap_or("?").to_owned()),
                    new.map_or_else(|e| e, |i| i.role().unwrap_or("?").to_owned()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Endpoint {
    /// Planned switchover in milliseconds (`crate::switchover` says why it is safe):
    /// `CLIENT PAUSE WRITE` on this master, wait until `target` has applied its whole
    /// offset (asked every millisecond), `REPLICAOF NO ONE` on the target, `REPLICAOF
    /// target` here, `CLIENT UNPAUSE`. A target that does not catch up within `timeout`,
    /// or cannot (another upstream, link down), aborts it: writes resume here, roles
    /// unchanged, the reason said.
    pub fn switchover(
        &self,
        target: &Endpoint,
        timeout: Duration,
    ) -> Result<crate::switchover::Timings, String> {
        let io = Duration::from_secs(2);
        let m = self.connect(io).map_err(describe)?;
        // Connected before the pause, so that no connect counts in it.
        let t = target
            .connect(io)
            .map_err(|e| format!("the target: {}", describe(e)))?;
        self.switchover_on(m, t, target, timeout)
    }

    /// [`Endpoint::switchover`] on connections already open to this master (`m`) and to
    /// `target` (`t`).
    pub fn switchover_on(
        &self,
        mut m: redis::Connection,
        mut t: redis::Connection,
        target: &Endpoint,
        timeout: Duration,
    ) -> Result<crate::switchover::Timings, String> {
        use crate::switchover::{CatchUp, PAUSE_MARGIN, POLL, Timings, catch_up};
        use std::time::Instant;
        let io = Duration::from_secs(2);
        let pause_ms = (timeout + PAUSE_MARGIN).as_millis() as u64;
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(pause_ms)
            .arg("WRITE")
            .query::<()>(&mut m)
            .map_err(|e| format!("CLIENT PAUSE on the master: {}", describe(e)))?;
        let paused_at = Instant::now();
        let unpause = |m: &mut redis::Connection| {
            let _ = redis::cmd("CLIENT").arg("UNPAUSE").query::<()>(m);
        };
        let abort = |m: &mut redis::Connection, why: String| -> Result<Timings, String> {
            unpause(m);
            Err(format!(
                "{why}; switchover aborted: writes go on at the old master, roles unchanged"
            ))
        };
        let offset = match redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut m)
            .map(|t| Info::parse(&t).repl_offset())
        {
            Ok(Some(o)) => o,
            Ok(None) => return abort(&mut m, "the master reports no replication offset".into()),
            Err(e) => return abort(&mut m, format!("INFO on the master: {}", describe(e))),
        };
        let master_host = self.bind.to_string();
        let deadline = paused_at + timeout;
        loop {
            // Each ask gets at most what is left, so a frozen target ends the wait on time.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return abort(
                    &mut m,
                    format!(
                        "the target did not catch up within {} ms",
                        timeout.as_millis()
                    ),
                );
            }
            let _ = t.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let info = match redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut t)
            {
                Ok(text) => Info::parse(&text),
                Err(e) => return abort(&mut m, format!("the target: {}", describe(e))),
            };
            match catch_up(&info, (&master_host, self.port), offset) {
                CatchUp::Done => break,
                CatchUp::Behind(_) => std::thread::sleep(POLL),
                CatchUp::Cannot(why) => return abort(&mut m, why),
            }
        }
        let caught_up = paused_at.elapsed();
        let _ = t.set_read_timeout(Some(io));
        if let Err(e) = replicaof_cmd(None).query::<()>(&mut t) {
            // It may still run it (a frozen target answers late): point it back at the
            // master on a fresh connection, which it reads after the first.
            let _ = target.replicaof(Some((&master_host, self.port)), io);
            return abort(
                &mut m,
                format!("REPLICAOF NO ONE on the target: {}", describe(e)),
            );
        }
        let target_host = target.bind.to_string();
        // The target is master now. Until this one follows it, it must stay paused (its
        // pause outlasts this by PAUSE_MARGIN): a write here would be lost.
        let mut last = String::new();
        for _ in 0..3 {
            match replicaof_cmd(Some((&target_host, target.port))).query::<()>(&mut m) {
                Ok(()) => {
                    unpause(&mut m);
                    return Ok(Timings {
                        catch_up: caught_up,
                        paused: paused_at.elapsed(),
                    });
                }
                Err(e) => {
                    last = describe(e);
                    if let Ok(c) = self.connect(io) {
                        m = c;
                    }
                }
            }
        }
        Err(format!(
            "the target is master now, but the old master refused to follow it ({last}); it \
             stays paused for writes until its pause ends: make it a replica by hand \
             (REPLICAOF {target_host} {})",
            target.port
        ))
    }
}

/// The `REPLICAOF` command: `host port`, or `NO ONE` when `to` is `None`.
pub fn replicaof_cmd(to: Option<(&str, u16)>) -> redis::Cmd {
    let mut cmd = redis::cmd("REPLICAOF");
    match to {
        Some((host, port)) => cmd.arg(host).arg(port),
        None => cmd.arg("NO").arg("ONE"),
    };
    cmd
}

/// Whether an AOF rewrite is in progress on this connection's server.
/// Whether INFO persistence shows an AOF rewrite running or waiting for its turn (a
/// sentinel, which has no such section, is not rewriting).
fn rewriting_aof(conn: &mut redis::Connection) -> bool {
    redis::cmd("INFO")
        .arg("persistence")
        .query::<String>(conn)
        .is_ok_and(|text| {
            let info = Info::parse(&text);
            info.get("aof_rewrite_in_progress") == Some("1")
                || info.get("aof_rewrite_scheduled") == Some("1")
        })
}

/// One line for a Redis error, never carrying the password (the crate does not echo it).
pub(crate) fn describe(e: redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_timeout() {
        // The OS says "Resource temporarily unavailable": the server accepted the
        // connection but did not answer (frozen, e.g. SIGSTOP, or overloaded).
        "timed out waiting for a reply".to_owned()
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "authentication failed (wrong or missing password)".to_owned()
    } else {
        e.to_string()
    }
}
