//! Asking a sentinel: who the master is, the monitor's state, whether a failover could be
//! authorised, and to fail over (also safely, [`switchover`]). Blocking calls with timeouts
//! over the same authenticated connection as `redis_io` (run them off the supervisor
//! thread); the replies are read by pure parsers, unit-tested below, as is what the
//! sentinels' answers add up to ([`agreement`]). Whom an instance follows once Sentinel
//! names the master is `topology`'s job (`instance_at`, then `effective`).
//!
//! The master name is the cluster's `name` (`render::sentinel` monitors it under that name).

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{Group, Secret, SentinelNode};
use crate::endpoint::Endpoint;
use crate::redis_io::describe;
use crate::render::sentinel::SentinelSet;

/// How to reach a sentinel node: its address and the group's password (sentinels get
/// `requirepass` when the group has one).
pub fn endpoint(group: &Group, node: &SentinelNode) -> Endpoint {
    Endpoint {
        bind: node.bind,
        port: node.port,
        password: group.password().cloned(),
    }
}

/// Sends one command and returns its reply, errors as one line without the password.
fn query<T: redis::FromRedisValue>(
    ep: &Endpoint,
    timeout: Duration,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    let mut conn = ep.connect(timeout).map_err(describe)?;
    cmd.query(&mut conn).map_err(describe_reply)
}

/// A server's error reply as Redis wrote it (`NOGOODSLAVE No suitable replica ...`);
/// anything else as `redis_io` describes it.
fn describe_reply(e: redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => describe(e),
    }
}

/// `PING`: the sentinel answers (after AUTH).
pub fn ping(ep: &Endpoint, timeout: Duration) -> Result<(), String> {
    let pong: String = query(ep, timeout, &redis::cmd("PING"))?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("unexpected reply to PING: {pong}"))
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME name`: the master this sentinel names now; `None`
/// when it monitors no master of that name.
pub fn get_master_addr(
    ep: &Endpoint,
    name: &str,
    timeout: Duration,
) -> Result<Option<(IpAddr, u16)>, String> {
    let reply: Option<Vec<String>> = query(
        ep,
        timeout,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(name),
    )?;
    parse_master_addr(reply)
}

/// Reads the reply of `GET-MASTER-ADDR-BY-NAME`: nil, or `[ip, port]`.
pub fn parse_master_addr(reply: Option<Vec<String>>) -> Result<Option<(IpAddr, u16)>, String> {
    match reply.as_deref() {
        None | Some([]) => Ok(None),
        Some([ip, port]) => {
            let ip = ip
                .parse()
                .map_err(|_| format!("the sentinel named master address `{ip}`"))?;
            let port = port
                .parse()
                .map_err(|_| format!("the sentinel named master port `{port}`"))?;
            Ok(Some((ip, port)))
        }
        Some(other) => Err(format!("unexpected reply {other:?}")),
    }
}

/// `SENTINEL FAILOVER name`: asks this sentinel to fail over now, without asking the
/// others for agreement (it only gets the vote of a majority for the new epoch). Returns
/// once the failover *started*; watch [`get_master_addr`] for its end. An error names
/// the reason (`NOGOODSLAVE No suitable replica to promote`, `INPROG Failover already in
/// progress`).
pub fn failover(ep: &Endpoint, name: &str, timeout: Duration) -> Result<(), String> {
    let _: redis::Value = query(
        ep,
        timeout,
        redis::cmd("SENTINEL").arg("FAILOVER").arg(name),
    )?;
    Ok(())
}

/// What a sentinel says about the master it monitors (`SENTINEL MASTER name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterState {
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    /// `flags`: `master`, plus `s_down`, `o_down`, `failover_in_progress`, ...
    pub flags: Vec<String>,
    /// Other sentinels it knows for this master.
    pub num_other_sentinels: u32,
    /// Replicas it knows.
    pub num_replicas: u32,
    pub quorum: u32,
    pub config_epoch: u64,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    pub parallel_syncs: u32,
    /// `failover-state` while a failover runs (`wait_promotion`, ...).
    pub failover_state: Option<String>,
}

impl MasterState {
    /// Reads the field/value list `SENTINEL MASTER` answers (RESP2: a flat array).
    /// Unknown fields are ignored; missing numbers read 0.
    pub fn parse(pairs: &[String]) -> MasterState {
        let mut m = MasterState::default();
        for pair in pairs.chunks_exact(2) {
            let (key, value) = (pair[0].as_str(), pair[1].as_str());
            match key {
                "ip" => m.ip = value.parse().ok(),
                "port" => m.port = value.parse().ok(),
                "flags" => m.flags = value.split(',').map(str::to_owned).collect(),
                "num-other-sentinels" => m.num_other_sentinels = value.parse().unwrap_or(0),
                "num-slaves" => m.num_replicas = value.parse().unwrap_or(0),
                "quorum" => m.quorum = value.parse().unwrap_or(0),
                "config-epoch" => m.config_epoch = value.parse().unwrap_or(0),
                "down-after-milliseconds" => m.down_after_ms = value.parse().unwrap_or(0),
                "failover-timeout" => m.failover_timeout_ms = value.parse().unwrap_or(0),
                "parallel-syncs" => m.parallel_syncs = value.parse().unwrap_or(0),
                "failover-state" => m.failover_state = Some(value.to_owned()),
                _ => {}
            }
        }
        m
    }

    /// The master's address as this sentinel knows it.
    pub fn addr(&self) -> Option<(IpAddr, u16)> {
        Some((self.ip?, self.port?))
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// This sentinel thinks the master is down (subjectively).
    pub fn is_sdown(&self) -> bool {
        self.has_flag("s_down")
    }

    /// Enough sentinels agree the master is down (objectively).
    pub fn is_odown(&self) -> bool {
        self.has_flag("o_down")
    }

    /// A failover of this master is running.
    pub fn failover_in_progress(&self) -> bool {
        self.has_flag("failover_in_progress")
    }
}

/// `SENTINEL MASTER name`.
pub fn master_state(ep: &Endpoint, name: &str, timeout: Duration) -> Result<MasterState, String> {
    let pairs: Vec<String> = query(ep, timeout, redis::cmd("SENTINEL").arg("MASTER").arg(name))?;
    Ok(MasterState::parse(&pairs))
}

/// The answer of `SENTINEL CKQUORUM name`: can the sentinels reach `quorum` and the
/// majority a failover needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// Both quorum and majority can be reached now.
    pub ok: bool,
    /// Sentinels that answer, this one included, when the reply says.
    pub usable: Option<u32>,
    /// The sentinel's own words.
    pub message: String,
}

impl Quorum {
    /// Reads the reply: `OK 3 usable Sentinels. ...` or the error `NOQUORUM 1 usable
    /// Sentinels. ...`.
    pub fn parse(reply: Result<&str, &str>) -> Quorum {
        let (ok, text) = match reply {
            Ok(t) => (true, t),
            Err(t) => (false, t),
        };
        let text = text.trim();
        let rest = text
            .strip_prefix("OK")
            .or_else(|| text.strip_prefix("NOQUORUM"))
            .unwrap_or(text)
            .trim_start();
        let usable = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        Quorum {
            ok,
            usable,
            message: text.to_owned(),
        }
    }
}

/// `SENTINEL CKQUORUM name`. `Err` only when the sentinel cannot be asked (or monitors no
/// such master); a missing quorum is `Ok` with `ok: false`.
pub fn ckquorum(ep: &Endpoint, name: &str, timeout: Duration) -> Result<Quorum, String> {
    let mut conn = ep.connect(timeout).map_err(describe)?;
    let reply: redis::RedisResult<String> = redis::cmd("SENTINEL")
        .arg("CKQUORUM")
        .arg(name)
        .query(&mut conn);
    match reply {
        Ok(text) => Ok(Quorum::parse(Ok(&text))),
        Err(e) if e.code() == Some("NOQUORUM") => {
            let text = describe_reply(e);
            Ok(Quorum::parse(Err(&text)))
        }
        Err(e) => Err(describe_reply(e)),
    }
}

/// Applies `render::sentinel::live_changes` to a running sentinel, one `SENTINEL SET`
/// each (Sentinel rewrites its file after each); stops at the first refusal.
pub fn set(
    ep: &Endpoint,
    name: &str,
    sets: &[SentinelSet],
    timeout: Duration,
) -> Result<(), String> {
    if sets.is_empty() {
        return Ok(());
    }
    let mut conn = ep.connect(timeout).map_err(describe)?;
    for s in sets {
        let mut cmd = redis::cmd("SENTINEL");
        for arg in &s.args(name)[1..] {
            cmd.arg(arg);
        }
        let _: redis::Value = cmd
            .query(&mut conn)
            .map_err(|e| format!("SENTINEL SET {name} {}: {}", s.option, describe_reply(e)))?;
    }
    Ok(())
}

/// Sets a new group password (or none) on a running sentinel, as `reload` must after the
/// password file changed: the sentinel's own (`ACL SETUSER default`, what `requirepass`
/// sets), the one it gives the other sentinels (`SENTINEL CONFIG SET sentinel-pass`) and
/// the one it gives the instances (`SENTINEL SET name auth-pass`). Measured on Redis 6.2,
/// 7.0 and Valkey 8.1; `CONFIG SET requirepass` does not exist in sentinel mode. This
/// connection, already authenticated, stays usable; the sentinel rewrites its file.
pub fn change_password(
    ep: &Endpoint,
    name: &str,
    new: Option<&Secret>,
    timeout: Duration,
) -> Result<(), String> {
    let mut conn = ep.connect(timeout).map_err(describe)?;
    let pw = new.map(Secret::expose).unwrap_or("");
    let mut own = redis::cmd("ACL");
    own.arg("SETUSER").arg("default").arg("resetpass");
    match new {
        Some(s) => own.arg(format!(">{}", s.expose())),
        None => own.arg("nopass"),
    };
    let steps = [
        ("SENTINEL SET auth-pass", {
            let mut c = redis::cmd("SENTINEL");
            c.arg("SET").arg(name).arg("auth-pass").arg(pw);
            c
        }),
        ("SENTINEL CONFIG SET sentinel-pass", {
            let mut c = redis::cmd("SENTINEL");
            c.arg("CONFIG").arg("SET").arg("sentinel-pass").arg(pw);
            c
        }),
        // Last: the sentinel's own password, so that a refusal above leaves it reachable
        // with the old one.
        ("ACL SETUSER default", own),
    ];
    for (what, cmd) in steps {
        let _: redis::Value = cmd
            .query(&mut conn)
            .map_err(|e| format!("{what}: {}", describe_reply(e)))?;
    }
    Ok(())
}

/// Moves the master role away from a master that is up, through Sentinel, without losing
/// an acknowledged write (measured: a bare `SENTINEL FAILOVER` leaves the old master
/// taking writes for ~11 s until Sentinel converts it, and they are lost; see
/// notes/facts-sentinel.md):
///
/// 1. `CLIENT PAUSE <pause> WRITE` on the master (writes wait, reads go on);
/// 2. waits until an online replica has the master's offset ([`caught_up`]);
/// 3. `SENTINEL FAILOVER name` on the first sentinel that accepts it;
/// 4. waits until a sentinel names another master, and returns it.
///
/// The old master stays paused: the caller must, within `pause`, either SHUTDOWN it
/// (restart/stop: the paused clients see the connection close, unanswered) or make it a
/// replica of the new master (`REPLICAOF`, then `CLIENT UNPAUSE`). When this fails before
/// Sentinel accepted the failover, the master is unpaused; after, it is left paused (two
/// masters taking writes would be worse). Blocking: polls every 10 ms until `within`.
/// Only call it when a replica is in sync: Sentinel promotes a replica that has not
/// finished its first sync, data set empty (measured).
pub fn switchover(
    master: &Endpoint,
    sentinels: &[Endpoint],
    name: &str,
    pause: Duration,
    within: Duration,
) -> Result<(IpAddr, u16), String> {
    let deadline = std::time::Instant::now() + within;
    let step = Duration::from_millis(10);
    let ask = within.min(Duration::from_secs(5));
    let mut conn = master.connect(ask).map_err(describe)?;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis().to_string())
        .arg("WRITE")
        .query(&mut conn)
        .map_err(|e| format!("CLIENT PAUSE on the master: {}", describe_reply(e)))?;
    let unpause = |conn: &mut redis::Connection, why: String| {
        let _: redis::RedisResult<redis::Value> = redis::cmd("CLIENT").arg("UNPAUSE").query(conn);
        Err(why)
    };
    loop {
        let text: Result<String, _> = redis::cmd("INFO").arg("replication").query(&mut conn);
        match text {
            Ok(t) if caught_up(&crate::info::Info::parse(&t)) => break,
            Ok(_) if std::time::Instant::now() < deadline => std::thread::sleep(step),
            Ok(_) => {
                return unpause(
                    &mut conn,
                    format!("no replica caught up with the master within {within:?}"),
                );
            }
            Err(e) => return unpause(&mut conn, format!("INFO on the master: {}", describe(e))),
        }
    }
    let old = (master.bind, master.port);
    let mut refusals = Vec::new();
    let accepted = sentinels.iter().any(|ep| match failover(ep, name, ask) {
        Ok(()) => true,
        Err(e) => {
            refusals.push(format!("{ep:?}: {e}"));
            false
        }
    });
    if !accepted {
        return unpause(
            &mut conn,
            format!("no sentinel started the failover: {}", refusals.join("; ")),
        );
    }
    loop {
        for ep in sentinels {
            if let Ok(Some(new)) = get_master_addr(ep, name, ask)
                && new != old
            {
                return Ok(new);
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "Sentinel accepted the failover but named no new master within {within:?}; \
                 the old master stays paused"
            ));
        }
        std::thread::sleep(step);
    }
}

/// Whether a master's `INFO replication` lists an online replica at its own offset: with
/// writes paused, that replica has every acknowledged write.
pub fn caught_up(master: &crate::info::Info) -> bool {
    master.repl_offset().is_some_and(|offset| {
        master
            .replicas
            .iter()
            .any(|r| r.is_online() && r.offset >= offset)
    })
}

/// `SENTINEL MYID`: this sentinel's id (kept across restarts by `render::sentinel`).
pub fn myid(ep: &Endpoint, timeout: Duration) -> Result<String, String> {
    query(ep, timeout, redis::cmd("SENTINEL").arg("MYID"))
}

/// What the sentinels say together, for `status` and for choosing an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// Sentinels that answered.
    pub reachable: usize,
    /// The master most of the answering sentinels name, and how many name it (ties: the
    /// first named, in node order).
    pub master: Option<((IpAddr, u16), usize)>,
    /// At least `quorum` sentinels answered (else `status` exits 3).
    pub quorum_reachable: bool,
}

/// Sums up each node's answer to [`get_master_addr`] (in node order).
pub fn agreement(answers: &[Result<Option<(IpAddr, u16)>, String>], quorum: u32) -> Agreement {
    let reachable = answers.iter().filter(|a| a.is_ok()).count();
    let mut counts: Vec<((IpAddr, u16), usize)> = Vec::new();
    for addr in answers
        .iter()
        .filter_map(|a| a.as_ref().ok().copied().flatten())
    {
        match counts.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, n)) => *n += 1,
            None => counts.push((addr, 1)),
        }
    }
    let mut master: Option<((IpAddr, u16), usize)> = None;
    for c in counts {
        if master.is_none_or(|(_, best)| c.1 > best) {
            master = Some(c);
        }
    }
    Agreement {
        reachable,
        master,
        quorum_reachable: reachable >= quorum as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn master_addr_reply() {
        assert_eq!(parse_master_addr(None), Ok(None));
        assert_eq!(
            parse_master_addr(Some(strings(&["127.0.0.52", "17402"]))),
            Ok(Some(("127.0.0.52".parse().unwrap(), 17402)))
        );
        assert!(parse_master_addr(Some(strings(&["x", "1"]))).is_err());
        assert!(parse_master_addr(Some(strings(&["127.0.0.1"]))).is_err());
    }

    /// A reply captured from Redis 7.0.15 (abridged to what is parsed, plus neighbours).
    #[test]
    fn master_state_reply() {
        let reply = strings(&[
            "name",
            "shop",
            "ip",
            "127.0.0.51",
            "port",
            "17401",
            "runid",
            "ce33",
            "flags",
            "s_down,o_down,master,failover_in_progress",
            "link-pending-commands",
            "0",
            "down-after-milliseconds",
            "1000",
            "config-epoch",
            "3",
            "num-slaves",
            "1",
            "num-other-sentinels",
            "2",
            "quorum",
            "2",
            "failover-timeout",
            "10000",
            "parallel-syncs",
            "1",
            "failover-state",
            "wait_promotion",
        ]);
        let m = MasterState::parse(&reply);
        assert_eq!(m.addr(), Some(("127.0.0.51".parse().unwrap(), 17401)));
        assert!(m.is_sdown() && m.is_odown() && m.failover_in_progress());
        assert_eq!(m.num_other_sentinels, 2);
        assert_eq!(m.num_replicas, 1);
        assert_eq!(m.quorum, 2);
        assert_eq!(m.config_epoch, 3);
        assert_eq!(m.down_after_ms, 1000);
        assert_eq!(m.failover_timeout_ms, 10000);
        assert_eq!(m.parallel_syncs, 1);
        assert_eq!(m.failover_state.as_deref(), Some("wait_promotion"));
        let healthy = MasterState::parse(&strings(&["flags", "master"]));
        assert!(!healthy.is_sdown() && !healthy.is_odown() && !healthy.failover_in_progress());
        assert_eq!(healthy.addr(), None);
    }

    #[test]
    fn caught_up_needs_an_online_replica_at_the_masters_offset() {
        let info = |lines: &str| crate::info::Info::parse(&format!("role:master\r\n{lines}"));
        let ahead = "master_repl_offset:100\r\nslave0:ip=10.0.0.2,port=6379,state=online,offset=100,lag=0\r\n";
        assert!(caught_up(&info(ahead)));
        let behind = "master_repl_offset:100\r\nslave0:ip=10.0.0.2,port=6379,state=online,offset=99,lag=0\r\n";
        assert!(!caught_up(&info(behind)));
        let syncing = "master_repl_offset:100\r\nslave0:ip=10.0.0.2,port=6379,state=send_bulk,offset=100,lag=0\r\n";
        assert!(!caught_up(&info(syncing)));
        assert!(!caught_up(&info("master_repl_offset:100\r\n")));
        let two = format!("{behind}slave1:ip=10.0.0.3,port=6379,state=online,offset=100,lag=0\r\n");
        assert!(caught_up(&info(&two)));
    }

    fn a(s: &str) -> (IpAddr, u16) {
        let (ip, port) = s.split_once(':').unwrap();
        (ip.parse().unwrap(), port.parse().unwrap())
    }

    #[test]
    fn agreement_counts_the_answers() {
        let m = a("10.0.0.1:6379");
        let r = a("10.0.0.2:6379");
        let all = agreement(&[Ok(Some(m)), Ok(Some(m)), Ok(Some(m))], 2);
        assert_eq!(all.reachable, 3);
        assert_eq!(all.master, Some((m, 3)));
        assert!(all.quorum_reachable);
        let split = agreement(&[Ok(Some(m)), Ok(Some(r)), Ok(Some(r))], 2);
        assert_eq!(split.master, Some((r, 2)));
        let lonely = agreement(
            &[Ok(Some(m)), Err("connection refused".into()), Ok(None)],
            2,
        );
        assert_eq!(lonely.reachable, 2);
        assert_eq!(lonely.master, Some((m, 1)));
        assert!(lonely.quorum_reachable);
        let none = agreement(&[Err("x".into()), Err("y".into()), Ok(None)], 2);
        assert_eq!(none.master, None);
        assert!(!none.quorum_reachable);
    }

    #[test]
    fn ckquorum_reply() {
        let ok = Quorum::parse(Ok(
            "OK 3 usable Sentinels. Quorum and failover authorization can be reached",
        ));
        assert!(ok.ok);
        assert_eq!(ok.usable, Some(3));
        let no = Quorum::parse(Err(
            "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the \
             specified quorum for this master",
        ));
        assert!(!no.ok);
        assert_eq!(no.usable, Some(1));
        assert!(no.message.starts_with("NOQUORUM 1 usable"));
    }
}
