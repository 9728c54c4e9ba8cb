//! Talking to a Redis instance: INFO probes, the authenticated SHUTDOWN, role and config
//! changes, and the few commands the sync-gate claims and backups send. Every Redis
//! command redisrepd sends to an instance is built here (Sentinel's are in
//! `sentinel_client`). Blocking calls with timeouts; run them off the supervisor thread.

use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use redisrepd_core::acl::{AclOp, AuthChange};
use redisrepd_core::config::Secret;
use redisrepd_core::endpoint::ClientTls;
use redisrepd_core::info::{Info, Replication};

pub use redisrepd_core::endpoint::{Endpoint, ShutdownError};

/// The name redisrepd gives its connections (`CLIENT SETNAME`); its sync-gate claims are
/// `redisrepd-sync:<replica>`.
pub const CLIENT_NAME: &str = "redisrepd";

/// The ids of the clients in a `CLIENT LIST` answer that a demoted master drops: every
/// one but redisrepd's (named [`CLIENT_NAME`]...), the sentinels' links (named
/// `sentinel-<id>-cmd` and `-pubsub`: they reconnect, but a failover in progress needs
/// them), and those that connected within the last second and did nothing but
/// authenticate yet. A redisrepd connection is in that state
/// between its AUTH and its SETNAME, and any such connection was opened at the demotion
/// or after it, to an instance that is a replica already: nothing stale to drop.
pub fn clients_to_drop(list: &str) -> Vec<u64> {
    list.lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            };
            let ours = field("name")
                .is_some_and(|n| n.starts_with(CLIENT_NAME) || n.starts_with("sentinel-"));
            let just_connected = field("age") == Some("0")
                && field("name").is_none_or(str::is_empty)
                && field("cmd").is_some_and(|c| ["NULL", "auth", "hello"].contains(&c));
            let id = field("id")?.parse().ok()?;
            (!ours && !just_connected).then_some(id)
        })
        .collect()
}

/// What redisrepd asks of an instance, on its [`Endpoint`] (the data lives in
/// `redisrepd_core::endpoint`, which the pure machine uses too; the talking is here).
pub trait Client {
    /// Opens an authenticated connection.
    fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection>;

    /// Closes the normal and pub/sub client connections of the instance but redisrepd's
    /// own (named [`CLIENT_NAME`]...) and this one; returns how many were closed.
    /// Replication links are of other types and stay.
    fn drop_clients(&self, timeout: Duration) -> redis::RedisResult<usize>;

    /// Reads `INFO` (its default sections: server, persistence, stats and replication are
    /// among them). Not `INFO server persistence stats replication`: several sections in
    /// one call came in Redis 7.0, and 6.2 answers it with a syntax error.
    fn info(&self, timeout: Duration) -> Result<Info, String>;

    /// `INFO`; from a sentinel, plus the master it names for `cluster` as the line
    /// `sentinel_master_addr:IP:PORT` (`SENTINEL GET-MASTER-ADDR-BY-NAME`: during a
    /// failover it already names the promoted replica, while INFO's `master0` still names
    /// the old master).
    fn info_or_sentinel(&self, cluster: &str, timeout: Duration) -> Result<Info, String>;

    /// Sends an authenticated `SHUTDOWN SAVE` (or `SHUTDOWN NOSAVE` when `nosave`) and
    /// waits for Redis to close the connection, which it does once the save is done. A
    /// refusal while the AOF is being rewritten, per INFO persistence asked just before or
    /// just after (a rewrite may end in between), is told apart from a failed save; the
    /// machine decides what to do about it.
    fn shutdown(&self, nosave: bool, timeout: Duration) -> Result<(), ShutdownError>;

    /// `REPLICAOF host port`, or `REPLICAOF NO ONE` when `to` is `None`.
    fn replicaof(&self, to: Option<(&str, u16)>, timeout: Duration) -> Result<(), String>;

    /// `CONFIG SET key value` on a connection of its own.
    fn config_set(&self, key: &str, value: &str, timeout: Duration) -> redis::RedisResult<()>;

    /// Where the instance replicates from now (`INFO replication`).
    fn replication(&self, timeout: Duration) -> redis::RedisResult<Option<Replication>>;

    /// Coordinated switchover (Redis 6.2+): `FAILOVER TO <target> TIMEOUT <ms>` on this
    /// master, then waits until `target` reports itself master and this one replicates.
    /// Redis pauses writes meanwhile and aborts by itself (writes resume here) when the
    /// target does not catch up within `timeout`.
    fn failover(&self, target: &Endpoint, force: bool, timeout: Duration) -> Result<(), String>;

    /// Planned switchover in milliseconds (`redisrepd_core::switchover` says why it is safe):
    /// `CLIENT PAUSE WRITE` on this master, wait until `target` has applied its whole
    /// offset (asked every millisecond), `REPLICAOF NO ONE` on the target, `REPLICAOF
    /// target` here, `CLIENT UNPAUSE`. A target that does not catch up within `timeout`,
    /// or cannot (another upstream, link down), aborts it: writes resume here, roles
    /// unchanged, the reason said.
    fn switchover(
        &self,
        target: &Endpoint,
        others: &[Endpoint],
        timeout: Duration,
    ) -> Result<redisrepd_core::switchover::Timings, String>;

    /// [`Endpoint::switchover`] on connections already open to this master (`m`), to
    /// `target` (`t`) and to the master's other replicas (`others`).
    fn switchover_on(
        &self,
        m: redis::Connection,
        t: redis::Connection,
        others: Vec<redis::Connection>,
        target: &Endpoint,
        timeout: Duration,
    ) -> Result<redisrepd_core::switchover::Timings, String>;
}

/// A client for `bind:port`, plain or TLS: with TLS the server is verified against the
/// CA (its certificate must name `bind` as an IP address), and the first readable pair of
/// `tls.pairs` is presented when there is one. The files are read here, at each
/// connection, so rotated files take effect without a restart.
pub fn open_client(
    bind: std::net::IpAddr,
    port: u16,
    tls: Option<&ClientTls>,
    settings: RedisConnectionInfo,
) -> redis::RedisResult<redis::Client> {
    let Some(tls) = tls else {
        let info = ConnectionAddr::Tcp(bind.to_string(), port)
            .into_connection_info()?
            .set_redis_settings(settings);
        return redis::Client::open(info);
    };
    let io_error = |what: String, e: std::io::Error| {
        redis::RedisError::from(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    };
    let root = std::fs::read(&tls.ca_file)
        .map_err(|e| io_error(format!("reading {}", tls.ca_file.display()), e))?;
    let client_tls = tls.pairs.iter().find_map(|(cert, key)| {
        Some(redis::ClientTlsConfig {
            client_cert: std::fs::read(cert).ok()?,
            client_key: std::fs::read(key).ok()?,
        })
    });
    let info = ConnectionAddr::TcpTls {
        host: bind.to_string(),
        port,
        insecure: false,
        tls_params: None,
    }
    .into_connection_info()?
    .set_redis_settings(settings);
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert: Some(root),
        },
    )
}

impl Client for Endpoint {
    /// Opens an authenticated connection: with `password`, then, if the server refuses it,
    /// with each `fallback` in turn.
    fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let mut result = connect_with(self, self.password.as_ref(), timeout);
        for pw in &self.fallback {
            match &result {
                Err(e) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
                    result = connect_with(self, Some(pw), timeout);
                }
                _ => break,
            }
        }
        result
    }

    /// Closes the normal and pub/sub client connections of the instance but redisrepd's
    /// own (named [`CLIENT_NAME`]...) and this one; returns how many were closed.
    /// Replication links are of other types and stay.
    fn drop_clients(&self, timeout: Duration) -> redis::RedisResult<usize> {
        let mut conn = self.connect(timeout)?;
        let mut ids = Vec::new();
        for kind in ["normal", "pubsub"] {
            ids.extend(clients_to_drop(&client_list_on(&mut conn, kind)?));
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            // An id gone meanwhile answers "No such client": not an error here.
            pipe.cmd("CLIENT").arg("KILL").arg("ID").arg(*id).ignore();
        }
        if !ids.is_empty() {
            let _: redis::RedisResult<()> = pipe.query(&mut conn);
        }
        Ok(ids.len())
    }

    /// Reads `INFO` (its default sections: server, persistence, stats and replication are
    /// among them). Not `INFO server persistence stats replication`: several sections in
    /// one call came in Redis 7.0, and 6.2 answers it with a syntax error.
    fn info(&self, timeout: Duration) -> Result<Info, String> {
        let mut conn = self.connect(timeout).map_err(describe)?;
        let text: String = redis::cmd("INFO").query(&mut conn).map_err(describe)?;
        Ok(Info::parse(&text))
    }

    /// `INFO`; from a sentinel, plus the master it names for `cluster` as the line
    /// `sentinel_master_addr:IP:PORT` (`SENTINEL GET-MASTER-ADDR-BY-NAME`: during a
    /// failover it already names the promoted replica, while INFO's `master0` still names
    /// the old master).
    fn info_or_sentinel(&self, cluster: &str, timeout: Duration) -> Result<Info, String> {
        let mut conn = self.connect(timeout).map_err(describe)?;
        info_or_sentinel_on(&mut conn, cluster).map_err(describe)
    }

    /// Sends an authenticated `SHUTDOWN SAVE` (or `SHUTDOWN NOSAVE` when `nosave`) and
    /// waits for Redis to close the connection, which it does once the save is done. A
    /// refusal while the AOF is being rewritten, per INFO persistence asked just before or
    /// just after (a rewrite may end in between), is told apart from a failed save; the
    /// machine decides what to do about it.
    fn shutdown(&self, nosave: bool, timeout: Duration) -> Result<(), ShutdownError> {
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

    /// `REPLICAOF host port`, or `REPLICAOF NO ONE` when `to` is `None`.
    fn replicaof(&self, to: Option<(&str, u16)>, timeout: Duration) -> Result<(), String> {
        let mut conn = self.connect(timeout).map_err(describe)?;
        replicaof_on(&mut conn, to).map_err(describe)
    }

    fn config_set(&self, key: &str, value: &str, timeout: Duration) -> redis::RedisResult<()> {
        let mut c = self.connect(timeout)?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut c)
    }

    fn replication(&self, timeout: Duration) -> redis::RedisResult<Option<Replication>> {
        replication_on(&mut self.connect(timeout)?)
    }

    /// Coordinated switchover (Redis 6.2+): `FAILOVER TO <target> TIMEOUT <ms>` on this
    /// master, then waits until `target` reports itself master and this one replicates.
    /// Redis pauses writes meanwhile and aborts by itself (writes resume here) when the
    /// target does not catch up within `timeout`.
    fn failover(&self, target: &Endpoint, force: bool, timeout: Duration) -> Result<(), String> {
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

    /// Planned switchover in milliseconds (`redisrepd_core::switchover` says why it is safe):
    /// `CLIENT PAUSE WRITE` on this master, wait until `target` has applied its whole
    /// offset (asked every millisecond), `REPLICAOF NO ONE` on the target, `REPLICAOF
    /// target` here, `CLIENT UNPAUSE`. A target that does not catch up within `timeout`,
    /// or cannot (another upstream, link down), aborts it: writes resume here, roles
    /// unchanged, the reason said.
    fn switchover(
        &self,
        target: &Endpoint,
        others: &[Endpoint],
        timeout: Duration,
    ) -> Result<redisrepd_core::switchover::Timings, String> {
        let io = Duration::from_secs(2);
        let m = self.connect(io).map_err(describe)?;
        // Connected before the pause, so that no connect counts in it.
        let t = target
            .connect(io)
            .map_err(|e| format!("the target: {}", describe(e)))?;
        // Best effort: a replica not reached here is re-pointed by its own daemon.
        let others = others
            .iter()
            .filter_map(|o| o.connect(Duration::from_millis(500)).ok())
            .collect();
        self.switchover_on(m, t, others, target, timeout)
    }

    /// [`Endpoint::switchover`] on connections already open to this master (`m`) and to
    /// `target` (`t`).
    fn switchover_on(
        &self,
        mut m: redis::Connection,
        mut t: redis::Connection,
        others: Vec<redis::Connection>,
        target: &Endpoint,
        timeout: Duration,
    ) -> Result<redisrepd_core::switchover::Timings, String> {
        use redisrepd_core::switchover::{CatchUp, PAUSE_MARGIN, POLL, Timings, catch_up};
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
            let _ = client_unpause_on(m);
        };
        let abort = |m: &mut redis::Connection, why: String| -> Result<Timings, String> {
            unpause(m);
            Err(format!(
                "{why}; switchover aborted: writes go on at the old master, roles unchanged"
            ))
        };
        let offset = match info_on(&mut m, Some("replication")).map(|i| i.repl_offset()) {
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
            let info = match info_on(&mut t, Some("replication")) {
                Ok(info) => info,
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
        if let Err(e) = replicaof_on(&mut t, None) {
            // It may still run it (a frozen target answers late): point it back at the
            // master on a fresh connection, which it reads after the first.
            let _ = target.replicaof(Some((&master_host, self.port)), io);
            return abort(
                &mut m,
                format!("REPLICAOF NO ONE on the target: {}", describe(e)),
            );
        }
        let target_host = target.bind.to_string();
        // The other replicas follow the new master before the old one turns replica and
        // drops them (Redis 6.2 does; one that reconnects to it mid-handshake may lose its
        // cached master and full-sync). They resync partially: the target holds the whole
        // offset, and they have the old master's id as the target's second id.
        for mut o in others {
            let _ = o.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = replicaof_on(&mut o, Some((&target_host, target.port)));
        }
        // The target is master now. Until this one follows it, it must stay paused (its
        // pause outlasts this by PAUSE_MARGIN): a write here would be lost.
        let mut last = String::new();
        for _ in 0..3 {
            match replicaof_on(&mut m, Some((&target_host, target.port))) {
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

/// One attempt of [`Client::connect`], with `password`.
fn connect_with(
    ep: &Endpoint,
    password: Option<&Secret>,
    timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(pw) = password {
        settings = settings.set_password(pw.expose());
        if let Some(user) = &ep.user {
            settings = settings.set_username(user);
        }
    }
    let mut conn = open_client(ep.bind, ep.port, ep.tls.as_deref(), settings)?
        .get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    // Named, so that a demoted master's client drop spares the connections of
    // redisrepd's daemons and verbs (see [`Endpoint::drop_clients`]). A server that
    // refuses it (an ACL without CLIENT) still serves the connection; one that did not
    // answer in time does not (a late reply would be taken for the next command's).
    match redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(CLIENT_NAME)
        .query::<()>(&mut conn)
    {
        Err(e) if e.code().is_none() => Err(e),
        _ => Ok(conn),
    }
}

/// `REPLICAOF host port`, or `REPLICAOF NO ONE` when `to` is `None`, on a connection
/// already open.
pub fn replicaof_on(
    conn: &mut redis::Connection,
    to: Option<(&str, u16)>,
) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("REPLICAOF");
    match to {
        Some((host, port)) => cmd.arg(host).arg(port),
        None => cmd.arg("NO").arg("ONE"),
    };
    cmd.query(conn)
}

/// `INFO` (its default sections) or `INFO <section>`, on a connection already open.
pub fn info_on(conn: &mut redis::Connection, section: Option<&str>) -> redis::RedisResult<Info> {
    let mut cmd = redis::cmd("INFO");
    if let Some(section) = section {
        cmd.arg(section);
    }
    let text: String = cmd.query(conn)?;
    Ok(Info::parse_owned(text))
}

/// Where the instance replicates from now (`INFO replication`), on a connection already
/// open.
pub fn replication_on(conn: &mut redis::Connection) -> redis::RedisResult<Option<Replication>> {
    info_on(conn, Some("replication")).map(|i| i.replication())
}

/// `CLIENT UNPAUSE`.
pub fn client_unpause_on(conn: &mut redis::Connection) -> redis::RedisResult<()> {
    redis::cmd("CLIENT").arg("UNPAUSE").query(conn)
}

/// `CLIENT SETNAME name`.
pub fn client_setname_on(conn: &mut redis::Connection, name: &str) -> redis::RedisResult<()> {
    redis::cmd("CLIENT").arg("SETNAME").arg(name).query(conn)
}

/// `CLIENT ID`: this connection's id, which orders it among the server's clients.
pub fn client_id_on(conn: &mut redis::Connection) -> redis::RedisResult<u64> {
    redis::cmd("CLIENT").arg("ID").query(conn)
}

/// `CLIENT LIST TYPE kind` (`normal`, `pubsub`...): the raw text, one client a line.
pub fn client_list_on(conn: &mut redis::Connection, kind: &str) -> redis::RedisResult<String> {
    redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg(kind)
        .query(conn)
}

/// `CONFIG GET key`: the `[key, value]` pairs the server answers.
pub fn config_get_on(conn: &mut redis::Connection, key: &str) -> redis::RedisResult<Vec<String>> {
    redis::cmd("CONFIG").arg("GET").arg(key).query(conn)
}

/// Why `CONFIG SET` did not take a setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigSetError {
    /// The server answered with an error: it will not take this setting at runtime.
    #[error("`{key}`: {why}")]
    Refused { key: String, why: String },
    /// It could not be asked (connection lost, timed out): nothing follows from that.
    #[error("`{key}`: {why}")]
    Failed { key: String, why: String },
}

/// `CONFIG SET key value`, on a connection already open, telling a refusal by the server
/// from a failure to ask it.
pub fn config_set_on(
    conn: &mut redis::Connection,
    key: &str,
    value: &str,
) -> Result<(), ConfigSetError> {
    let set = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query::<()>(conn);
    match set {
        Ok(()) => Ok(()),
        // An error reply: the server will not take it at runtime.
        Err(e) if e.code().is_some() => Err(ConfigSetError::Refused {
            key: key.to_owned(),
            why: e.detail().unwrap_or("refused").to_owned(),
        }),
        Err(e) => Err(ConfigSetError::Failed {
            key: key.to_owned(),
            why: e.to_string(),
        }),
    }
}

/// `CONFIG SET k1 v1 k2 v2 ...`: one change, all or nothing (Redis 7.0 and later). A
/// server that takes one pair at a time (6.2 answers "wrong number of arguments") gets
/// them one by one: same paths re-read rotated files either way; new paths for both
/// certificate and key may then be refused, and the instance is restarted instead.
pub fn config_set_many_on(
    conn: &mut redis::Connection,
    pairs: &[(&str, &str)],
) -> Result<(), ConfigSetError> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("SET");
    for (k, v) in pairs {
        cmd.arg(*k).arg(*v);
    }
    let keys = pairs.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    match cmd.query::<()>(conn) {
        Ok(()) => Ok(()),
        Err(e) if pairs.len() > 1 && e.detail().is_some_and(|d| d.contains("wrong number")) => {
            for (k, v) in pairs {
                config_set_on(conn, k, v)?;
            }
            Ok(())
        }
        Err(e) if e.code().is_some() => Err(ConfigSetError::Refused {
            key: keys,
            why: e.detail().unwrap_or("refused").to_owned(),
        }),
        Err(e) => Err(ConfigSetError::Failed {
            key: keys,
            why: e.to_string(),
        }),
    }
}

/// Applies an [`AuthChange`] on a connection already open: `ACL SETUSER` of the new and
/// changed users, the `CONFIG SET`s (`masteruser`, `masterauth`, `requirepass`), then the
/// `ACL DELUSER`s and `default`'s `ACL SETUSER`. The first refusal ends it, named
/// (never with a password: the arguments are not echoed). An `ACL DELUSER` of the user
/// this connection is authenticated as is answered, then the server closes it: it must
/// come last (`AuthChange` puts it there). The `CLIENT KILL USER`s are left out: this
/// connection may be one of those users' (`default`, turned off), with no right left;
/// the caller sends them over a connection as the new user ([`auth_op_on`]).
pub fn auth_change_on(conn: &mut redis::Connection, change: &AuthChange) -> Result<(), String> {
    for op in &change.users {
        auth_op_on(conn, op)?;
    }
    for (key, value) in &change.config {
        config_set_on(conn, key, value.expose()).map_err(|e| format!("CONFIG SET {e}"))?;
    }
    for op in &change.last {
        if !matches!(op, AclOp::KillClients { .. }) {
            auth_op_on(conn, op)?;
        }
    }
    Ok(())
}

/// One `ACL SETUSER`, `ACL DELUSER` or `CLIENT KILL USER`.
pub fn auth_op_on(conn: &mut redis::Connection, op: &AclOp) -> Result<(), String> {
    let args = op.args();
    let mut cmd = redis::cmd(&args[0]);
    for arg in &args[1..] {
        cmd.arg(arg);
    }
    let what = match op {
        AclOp::SetUser { name, .. } => format!("ACL SETUSER {name}"),
        AclOp::DelUser { name } => format!("ACL DELUSER {name}"),
        AclOp::KillClients { name } => format!("CLIENT KILL USER {name}"),
    };
    cmd.query::<redis::Value>(conn)
        .map(|_| ())
        .map_err(|e| match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{what}: {code} {detail}"),
            _ => format!("{what}: {}", describe(e)),
        })
}

/// Why `BGSAVE` did not start.
#[derive(Debug, thiserror::Error)]
pub enum BgsaveError {
    /// A save or an AOF rewrite is under way: ask again once it has ended.
    #[error("{0}")]
    InProgress(redis::RedisError),
    /// Anything else.
    #[error("{0}")]
    Failed(redis::RedisError),
}

/// `BGSAVE`, on a connection already open.
pub fn bgsave_on(conn: &mut redis::Connection) -> Result<(), BgsaveError> {
    match redis::cmd("BGSAVE").query::<String>(conn) {
        Ok(_) => Ok(()),
        // Redis says it only in words: "Background save already in progress",
        // "Background append only file rewriting in progress"...
        Err(e) if e.to_string().contains("in progress") => Err(BgsaveError::InProgress(e)),
        Err(e) => Err(BgsaveError::Failed(e)),
    }
}

/// [`Endpoint::info_or_sentinel`] on a connection already open (the prober keeps one
/// per instance).
pub fn info_or_sentinel_on(
    conn: &mut redis::Connection,
    cluster: &str,
) -> redis::RedisResult<Info> {
    let text: String = redis::cmd("INFO").query(conn)?;
    let info = Info::parse_owned(text);
    let sentinel =
        info.get("redis_mode") == Some("sentinel") || info.get("server_mode") == Some("sentinel");
    if !sentinel {
        return Ok(info);
    }
    let mut text = info.text().to_owned();
    let addr: Option<Vec<String>> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(cluster)
        .query(conn)?;
    if let Some([ip, port]) = addr.as_deref() {
        text.push_str(&format!("\r\nsentinel_master_addr:{ip}:{port}\r\n"));
    }
    Ok(Info::parse(&text))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demoted_master_drops_every_client_but_redisrepds() {
        let list = "id=3 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=8 name= age=9 flags=N cmd=get\n\
                    id=4 addr=127.0.0.1:5001 laddr=127.0.0.1:6379 fd=9 name=redisrepd age=0 flags=N cmd=info\n\
                    id=5 addr=127.0.0.1:5002 laddr=127.0.0.1:6379 fd=10 name=redisrepd-sync:r1 age=3 flags=N\n\
                    id=7 addr=127.0.0.1:5003 laddr=127.0.0.1:6379 fd=11 name=app age=1 flags=P cmd=subscribe\n\
                    id=8 addr=127.0.0.1:5004 laddr=127.0.0.1:6379 fd=12 name= age=0 flags=N cmd=auth\n\
                    id=9 addr=127.0.0.1:5005 laddr=127.0.0.1:6379 fd=13 name= age=0 flags=N cmd=NULL\n\
                    id=10 addr=127.0.0.1:5006 laddr=127.0.0.1:6379 fd=14 name= age=3 flags=N cmd=auth\n\
                    id=11 addr=127.0.0.1:5007 laddr=127.0.0.1:6379 fd=15 name= age=0 flags=N cmd=ping\n\
                    id=12 addr=127.0.0.1:5008 laddr=127.0.0.1:6379 fd=16 name=sentinel-1a2b3c4d-cmd age=9 flags=N cmd=ping\n";
        // Not redisrepd's (4, 5), nor a sentinel's link (12), nor connections a moment old
        // that only authenticated (8, 9): a redisrepd connection between AUTH and SETNAME
        // looks so.
        assert_eq!(clients_to_drop(list), [3, 7, 10, 11]);
        assert!(clients_to_drop("").is_empty());
    }
}
