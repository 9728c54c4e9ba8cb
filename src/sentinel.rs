//! Asking a sentinel: who the master is, the monitor's state, whether a failover could be
//! authorised, and to fail over. Blocking calls with timeouts over the same authenticated
//! connection as `redis_io` (run them off the supervisor thread); the replies are read by
//! pure parsers, unit-tested below.
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

/// `SENTINEL MYID`: this sentinel's id (kept across restarts by `render::sentinel`).
pub fn myid(ep: &Endpoint, timeout: Duration) -> Result<String, String> {
    query(ep, timeout, redis::cmd("SENTINEL").arg("MYID"))
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
