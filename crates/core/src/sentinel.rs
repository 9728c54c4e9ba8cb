//! What sentinels' replies mean: who the master is, the monitor's state, whether a failover
//! could be authorised, and what several sentinels' answers add up to ([`agreement`]).
//! Pure parsers, unit-tested below; the calls are `redisrepd_io::sentinel_client`. Whom an instance follows once Sentinel
//! names the master is `topology`'s job (`instance_at`, then `effective`).
//!
//! The master name is the cluster's `name` (`render::sentinel` monitors it under that name).

use crate::config::{Group, SentinelNode};
use crate::endpoint::Endpoint;
use std::net::IpAddr;

/// How to reach a sentinel node: its address and the group's password (sentinels get
/// `requirepass` when the group has one).
pub fn endpoint(group: &Group, node: &SentinelNode) -> Endpoint {
    Endpoint {
        bind: node.bind,
        port: node.port,
        // A sentinel has no users of ours: its `requirepass` is the cluster password.
        user: None,
        password: group.password().cloned(),
        fallback: group.passwords().into_iter().skip(1).cloned().collect(),
        tls: group
            .tls
            .as_ref()
            .map(|t| std::sync::Arc::new(crate::endpoint::ClientTls::of(t))),
    }
}

/// New cluster passwords for a running sentinel (`sentinel_client::change_password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAuth {
    /// Every password its `default` user accepts, the one used first (none: no AUTH).
    pub accepted: Vec<crate::config::Secret>,
    /// Whether the first one changed: only then are `auth-pass` and `sentinel-pass` set
    /// (each set closes the sentinel's links, which a failover right after would miss).
    pub first_changed: bool,
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

/// What a sentinel says about one replica of the master it monitors (one entry of
/// `SENTINEL REPLICAS name`): what decides whether it would promote that replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaState {
    /// `name`: `ip:port`.
    pub name: String,
    /// `flags`: `slave`, plus `s_down`, `o_down`, `disconnected`, ...
    pub flags: Vec<String>,
    /// `master-link-status` as the replica's last INFO said (`err` until the sentinel has
    /// had one).
    pub master_link_ok: bool,
    /// `info-refresh`: ms since that INFO (0 also when there was none).
    pub info_refresh_ms: u64,
    /// `last-ok-ping-reply`: ms since the replica last answered a PING.
    pub last_ok_ping_ms: u64,
    /// `slave-priority` (0: never promoted).
    pub priority: u64,
}

/// How old a replica's INFO may be for Sentinel to promote it while the master is up
/// (`SENTINEL_INFO_PERIOD * 3` in Redis's sentinel.c).
const INFO_VALID_MS: u64 = 30_000;
/// How long ago a replica may have last answered a PING (`SENTINEL_PING_PERIOD * 5`).
const PING_VALID_MS: u64 = 5_000;

impl ReplicaState {
    /// Reads one entry of `SENTINEL REPLICAS` (a flat field/value list). Unknown fields are
    /// ignored; missing numbers read as the worst case.
    pub fn parse(pairs: &[String]) -> ReplicaState {
        let mut r = ReplicaState {
            info_refresh_ms: u64::MAX,
            last_ok_ping_ms: u64::MAX,
            priority: 100,
            ..ReplicaState::default()
        };
        for pair in pairs.chunks_exact(2) {
            let (key, value) = (pair[0].as_str(), pair[1].as_str());
            match key {
                "name" => r.name = value.to_owned(),
                "flags" => r.flags = value.split(',').map(str::to_owned).collect(),
                "master-link-status" => r.master_link_ok = value == "ok",
                "info-refresh" => r.info_refresh_ms = value.parse().unwrap_or(u64::MAX),
                "last-ok-ping-reply" => r.last_ok_ping_ms = value.parse().unwrap_or(u64::MAX),
                "slave-priority" | "replica-priority" => r.priority = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        r
    }

    /// Whether this sentinel would promote the replica now, the master being up: the
    /// checks of Sentinel's `sentinelSelectSlave`. It answers `SENTINEL FAILOVER` with
    /// `NOGOODSLAVE` while no replica passes them — as it does for up to ~10 s after a
    /// group starts: it learns the replicas from the master's INFO (every 10 s), and
    /// counts one only once it has connected to it and had its INFO.
    pub fn promotable(&self) -> bool {
        let bad_flag = self
            .flags
            .iter()
            .any(|f| matches!(f.as_str(), "s_down" | "o_down" | "disconnected"));
        !bad_flag
            && self.master_link_ok
            && self.info_refresh_ms <= INFO_VALID_MS
            && self.last_ok_ping_ms <= PING_VALID_MS
            && self.priority != 0
    }
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

    /// One `SENTINEL REPLICAS` entry as Redis 6.2-8.0 write it, with `changes` applied.
    fn replica(changes: &[(&str, &str)]) -> ReplicaState {
        let mut fields = vec![
            ("name", "127.0.0.3:7002"),
            ("flags", "slave"),
            ("last-ok-ping-reply", "120"),
            ("info-refresh", "800"),
            ("master-link-status", "ok"),
            ("slave-priority", "100"),
        ];
        for (k, v) in changes {
            match fields.iter_mut().find(|(key, _)| key == k) {
                Some(f) => f.1 = v,
                None => fields.push((k, v)),
            }
        }
        let flat: Vec<String> = fields
            .iter()
            .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
            .collect();
        ReplicaState::parse(&flat)
    }

    #[test]
    fn a_replica_is_promotable_once_the_sentinel_has_had_its_info() {
        assert!(replica(&[]).promotable());
        assert_eq!(replica(&[]).name, "127.0.0.3:7002");
        // Just learnt from the master's INFO: no link yet, no INFO of its own.
        let discovered = replica(&[
            ("flags", "slave,disconnected"),
            ("master-link-status", "err"),
            ("info-refresh", "0"),
        ]);
        assert!(!discovered.promotable());
        // Connected, but its INFO not read yet: Sentinel still says NOGOODSLAVE.
        let linked = replica(&[("master-link-status", "err"), ("info-refresh", "0")]);
        assert!(!linked.promotable());
        assert!(!replica(&[("flags", "slave,s_down")]).promotable());
        assert!(!replica(&[("info-refresh", "30001")]).promotable());
        assert!(!replica(&[("last-ok-ping-reply", "5001")]).promotable());
        assert!(!replica(&[("slave-priority", "0")]).promotable());
        // Fields missing: not promotable rather than guessed so.
        assert!(!ReplicaState::parse(&strings(&["flags", "slave"])).promotable());
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
