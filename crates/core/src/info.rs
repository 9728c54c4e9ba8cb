//! Parsing what Redis says about itself into the few facts the supervisor decides on:
//! `INFO` output, and the replica's own log line that names its last sync. Pure.

use std::net::IpAddr;

/// The parsed reply of `INFO` (its server, persistence, stats and replication fields).
///
/// The fields stay in the reply's text, found through a small hash table of their
/// places: parsing is three allocations, not two per field (a reply has ~170 fields; the
/// daemon parses one per instance every `health_interval`, and that was most of its idle
/// CPU with dozens of instances).
#[derive(Clone, Default)]
pub struct Info {
    /// The reply, as received.
    text: String,
    /// Each field's key and value as byte ranges of `text` (key start, key end = value
    /// start - 1, value end), in the order given, one per key (the last value given).
    index: Vec<(u32, u32, u32)>,
    /// Open addressing over `index`: a power of two at least twice its length; each slot
    /// 0 (empty) or an entry's position + 1.
    table: Vec<u32>,
    /// The `slaveN:` lines of a master (or of a replica that has sub-replicas).
    pub replicas: Vec<ReplicaLine>,
}

impl PartialEq for Info {
    fn eq(&self, other: &Info) -> bool {
        self.fields().eq(other.fields()) && self.replicas == other.replicas
    }
}

impl std::fmt::Debug for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Info")
            .field(
                "fields",
                &self.fields().collect::<std::collections::BTreeMap<_, _>>(),
            )
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// An instance's place in replication, as its INFO showed it: a role-changing command is
/// sent only while the instance is still where it was when the command was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    Master,
    ReplicaOf { host: String, port: u16 },
}

impl std::fmt::Display for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replication::Master => write!(f, "a master"),
            Replication::ReplicaOf { host, port } => write!(f, "a replica of {host}:{port}"),
        }
    }
}

/// What becomes of a `REPLICAOF` decided when the instance was `was` and its target
/// `target_was`, asked again right before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepointVerdict {
    /// It is already where it should go: nothing to send.
    AlreadyThere,
    /// Both are where they were: send it.
    Send,
    /// The group moved on (why): sending it now could close a replication loop.
    MovedOn(String),
}

/// Judges a re-point of an instance to `goal` (`Master` for `REPLICAOF NO ONE`): `now` is
/// the instance's place as asked right now, `target` the new upstream's place when decided
/// and as asked right now (`Err`: it could not be asked). An unknown `was` is not held
/// against it.
pub fn repoint_verdict(
    goal: &Replication,
    was: Option<&Replication>,
    now: Option<&Replication>,
    target: Option<(&Replication, Result<Option<Replication>, String>)>,
) -> RepointVerdict {
    if now == Some(goal) {
        return RepointVerdict::AlreadyThere;
    }
    if let (Some(was), Some(now)) = (was, now)
        && was != now
    {
        return RepointVerdict::MovedOn(format!("it was {was} when decided and is {now} now"));
    }
    match target {
        Some((was, Ok(Some(now)))) if now == *was => RepointVerdict::Send,
        Some((was, Ok(now))) => RepointVerdict::MovedOn(format!(
            "its new upstream was {was} when decided and is {} now",
            now.map_or_else(|| "unknown".to_owned(), |r| r.to_string())
        )),
        Some((_, Err(e))) => {
            RepointVerdict::MovedOn(format!("its new upstream cannot be asked where it is: {e}"))
        }
        None => RepointVerdict::Send,
    }
}

/// One `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLine {
    pub ip: String,
    pub port: u16,
    /// `wait_bgsave`, `send_bulk`, `online`, ...
    pub state: String,
    pub offset: i64,
    pub lag: i64,
}

impl ReplicaLine {
    /// True once the replica streams normally (not waiting for or receiving a bulk copy).
    pub fn is_online(&self) -> bool {
        self.state == "online"
    }
    /// Whether this line names the instance listening at `bind:port`.
    pub fn is(&self, bind: IpAddr, port: u16) -> bool {
        self.port == port && self.ip.parse::<IpAddr>().is_ok_and(|ip| ip == bind)
    }
}

/// Replication offsets closer than this count as "in sync": a busy master moves on between
/// reading its INFO and the replica's.
pub const IN_SYNC_SLACK_BYTES: i64 = 1 << 20;

impl Info {
    /// Parses INFO text; unknown lines are kept as fields, malformed ones skipped.
    pub fn parse(text: &str) -> Info {
        Info::parse_owned(text.to_owned())
    }

    /// [`Info::parse`] of a reply already owned: kept as it is, not copied.
    pub fn parse_owned(owned: String) -> Info {
        let text = owned.as_str();
        let mut index = Vec::new();
        let mut replicas = Vec::new();
        // A reply longer than u32 offsets reach is no INFO: its fields past that are
        // dropped rather than misread.
        let mut at = 0usize;
        for raw in text.split_inclusive('\n') {
            let start = at;
            at += raw.len();
            let line = raw.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.starts_with("slave")
                && key[5..].chars().all(|c| c.is_ascii_digit())
                && key.len() > 5
            {
                if let Some(r) = parse_replica_line(value) {
                    replicas.push(r);
                }
                continue;
            }
            let (Ok(k0), Ok(k1), Ok(v1)) = (
                u32::try_from(start),
                u32::try_from(start + key.len()),
                u32::try_from(start + line.len()),
            ) else {
                break;
            };
            index.push((k0, k1, v1));
        }
        let key = |&(k0, k1, _): &(u32, u32, u32)| &text[k0 as usize..k1 as usize];
        let mut table = vec![0u32; (index.len() * 2).next_power_of_two().max(8)];
        let mask = table.len() - 1;
        let mut kept: Vec<(u32, u32, u32)> = Vec::with_capacity(index.len());
        for e in index {
            let mut slot = key_hash(key(&e)) & mask;
            loop {
                match table[slot] {
                    0 => {
                        kept.push(e);
                        // At most u32::MAX fields: their offsets are u32 too.
                        table[slot] = kept.len() as u32;
                        break;
                    }
                    // Given twice: the last value is kept, as a map insert would.
                    i if key(&kept[i as usize - 1]) == key(&e) => {
                        kept[i as usize - 1] = e;
                        break;
                    }
                    _ => slot = (slot + 1) & mask,
                }
            }
        }
        Info {
            text: owned,
            index: kept,
            table,
            replicas,
        }
    }

    /// The reply as received.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every field (but the `slaveN` lines), by key.
    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut all: Vec<(&str, &str)> = self.unordered().collect();
        all.sort_unstable();
        all.into_iter()
    }

    /// Every field (but the `slaveN` lines), in the order given.
    fn unordered(&self) -> impl Iterator<Item = (&str, &str)> {
        self.index.iter().map(|&(k0, k1, v1)| {
            (
                &self.text[k0 as usize..k1 as usize],
                &self.text[k1 as usize + 1..v1 as usize],
            )
        })
    }

    /// A raw field.
    pub fn get(&self, key: &str) -> Option<&str> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut slot = key_hash(key) & mask;
        loop {
            let i = self.table[slot];
            if i == 0 {
                return None;
            }
            let (k0, k1, v1) = self.index[i as usize - 1];
            if &self.text[k0 as usize..k1 as usize] == key {
                return Some(&self.text[k1 as usize + 1..v1 as usize]);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The keys of every database, from the keyspace section (`db0:keys=5,expires=0,...`).
    pub fn keys(&self) -> i64 {
        self.unordered()
            .filter(|(k, _)| {
                k.len() > 2 && k.starts_with("db") && k[2..].bytes().all(|b| b.is_ascii_digit())
            })
            .filter_map(|(_, v)| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("keys="))?
                    .parse::<i64>()
                    .ok()
            })
            .sum()
    }

    /// A field as an integer (`None` when absent or not a number).
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }

    /// `master` or `slave` as Redis reports it; `replica` is what we show for `slave`.
    pub fn role(&self) -> Option<&'static str> {
        match self.get("role")? {
            "master" => Some("master"),
            "slave" => Some("replica"),
            _ => None,
        }
    }
    /// True while the data set is being loaded from disk or a sync.
    pub fn loading(&self) -> bool {
        self.int("loading") == Some(1)
    }
    /// `up` or `down` on a replica.
    pub fn master_link_up(&self) -> Option<bool> {
        self.get("master_link_status").map(|s| s == "up")
    }
    /// True while a replica receives a bulk copy.
    pub fn sync_in_progress(&self) -> bool {
        self.int("master_sync_in_progress") == Some(1)
    }
    /// Whom it replicates from, as far as INFO says: a master, or a replica of an address.
    pub fn replication(&self) -> Option<Replication> {
        match self.role()? {
            "master" => Some(Replication::Master),
            _ => Some(Replication::ReplicaOf {
                host: self.get("master_host")?.to_owned(),
                port: u16::try_from(self.int("master_port")?).ok()?,
            }),
        }
    }
    /// The replication offset this instance has reached.
    pub fn repl_offset(&self) -> Option<i64> {
        self.int("master_repl_offset")
    }
    /// Full syncs this instance has served as a master since it started.
    pub fn sync_full(&self) -> i64 {
        self.int("sync_full").unwrap_or(0)
    }
    /// Partial resyncs it has accepted.
    pub fn sync_partial_ok(&self) -> i64 {
        self.int("sync_partial_ok").unwrap_or(0)
    }
    /// Forks (BGSAVE, AOF rewrite, full syncs) since it started.
    pub fn total_forks(&self) -> i64 {
        self.int("total_forks").unwrap_or(0)
    }
    /// The server's pid.
    pub fn process_id(&self) -> Option<u32> {
        self.get("process_id")?.parse().ok()
    }
    /// `repl_backlog_size` in bytes.
    pub fn backlog_size(&self) -> Option<i64> {
        self.int("repl_backlog_size")
    }
    /// Seconds since the server started.
    pub fn uptime_s(&self) -> Option<i64> {
        self.int("uptime_in_seconds")
    }
    /// `min_slaves_good_slaves`: replicas that count for `min-replicas-to-write` (online,
    /// lag within `min-replicas-max-lag`); Redis reports it only when both are set.
    pub fn good_replicas(&self) -> Option<i64> {
        self.int("min_slaves_good_slaves")
    }

    /// The line of `upstream`'s INFO that names the replica at `bind:port`.
    pub fn replica(&self, bind: IpAddr, port: u16) -> Option<&ReplicaLine> {
        self.replicas.iter().find(|r| r.is(bind, port))
    }

    /// Whether this replica is in sync with `upstream`: link up, no sync in progress, not
    /// loading, listed online by the upstream, and its offset close to the upstream's.
    /// (`master_sync_in_progress` alone flaps between two attempts.)
    pub fn in_sync_with(&self, upstream: &Info, bind: IpAddr, port: u16) -> bool {
        let listed_online = upstream
            .replica(bind, port)
            .is_some_and(ReplicaLine::is_online);
        let close = match (self.repl_offset(), upstream.repl_offset()) {
            (Some(mine), Some(theirs)) => theirs - mine <= IN_SYNC_SLACK_BYTES,
            _ => false,
        };
        self.master_link_up() == Some(true)
            && !self.sync_in_progress()
            && !self.loading()
            && listed_online
            && close
    }

    /// Replicas of this upstream that are connected but not yet online (waiting for or
    /// receiving a copy), excluding the ones `skip` says are counted elsewhere. Counted by
    /// address: with dual-channel replication Valkey lists a syncing replica twice
    /// (`type=rdb-channel` and `type=main-channel`).
    pub fn syncing_replicas(&self, skip: impl Fn(&ReplicaLine) -> bool) -> usize {
        let mut seen: Vec<(&str, u16)> = Vec::new();
        for r in self.replicas.iter().filter(|r| !r.is_online() && !skip(r)) {
            if !seen.contains(&(r.ip.as_str(), r.port)) {
                seen.push((r.ip.as_str(), r.port));
            }
        }
        seen.len()
    }
}

/// FNV-1a of an INFO key, for [`Info`]'s table: keys are short and few.
fn key_hash(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

fn parse_replica_line(value: &str) -> Option<ReplicaLine> {
    let mut ip = None;
    let mut port = None;
    let mut state = None;
    let mut offset = 0;
    let mut lag = 0;
    for part in value.split(',') {
        let (k, v) = part.split_once('=')?;
        match k {
            "ip" => ip = Some(v.to_owned()),
            "port" => port = v.parse().ok(),
            "state" => state = Some(v.to_owned()),
            "offset" => offset = v.parse().unwrap_or(0),
            "lag" => lag = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(ReplicaLine {
        ip: ip?,
        port: port?,
        state: state?,
        offset,
        lag,
    })
}

/// How a replica caught up with its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Full,
    Partial,
}

impl SyncKind {
    /// For status lines.
    pub fn label(self) -> &'static str {
        match self {
            SyncKind::Full => "full sync",
            SyncKind::Partial => "partial resync",
        }
    }
}

/// Recognises the replica's own account of a sync in one log line (Valkey says `primary`
/// where Redis says `master`).
pub fn sync_kind_of(line: &str) -> Option<SyncKind> {
    if line.contains("Full resync from master") || line.contains("Full resync from primary") {
        Some(SyncKind::Full)
    } else if line.contains("Master accepted a Partial Resynchronization")
        || line.contains("Primary accepted a Partial Resynchronization")
    {
        Some(SyncKind::Partial)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_re_point_is_sent_only_while_both_are_where_they_were() {
        use Replication::{Master, ReplicaOf};
        let of = |port| ReplicaOf {
            host: "127.0.0.1".into(),
            port,
        };
        let goal = of(2);
        // Already there.
        assert_eq!(
            repoint_verdict(&goal, Some(&Master), Some(&of(2)), None),
            RepointVerdict::AlreadyThere
        );
        // Unchanged, target unchanged: send.
        assert_eq!(
            repoint_verdict(
                &goal,
                Some(&of(1)),
                Some(&of(1)),
                Some((&Master, Ok(Some(Master))))
            ),
            RepointVerdict::Send
        );
        // The instance became master meanwhile (a failover back): not sent.
        assert!(matches!(
            repoint_verdict(&goal, Some(&of(2)), Some(&Master), None),
            RepointVerdict::MovedOn(_)
        ));
        // Decided while it was still master (mid-FAILOVER), and the target has since
        // become its replica: sending would close a loop.
        assert!(matches!(
            repoint_verdict(
                &goal,
                Some(&Master),
                Some(&Master),
                Some((&Master, Ok(Some(of(1)))))
            ),
            RepointVerdict::MovedOn(_)
        ));
        assert!(matches!(
            repoint_verdict(
                &goal,
                None,
                Some(&Master),
                Some((&Master, Err("refused".into())))
            ),
            RepointVerdict::MovedOn(_)
        ));
        assert_eq!(
            repoint_verdict(&goal, None, None, None),
            RepointVerdict::Send
        );
    }

    const MASTER: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave0:ip=127.0.0.2,port=7001,state=online,offset=1234,lag=0\r\n\
        slave1:ip=127.0.0.3,port=7002,state=wait_bgsave,offset=0,lag=0\r\n\
        master_repl_offset:1300\r\n# Stats\r\nsync_full:3\r\nsync_partial_ok:1\r\ntotal_forks:7\r\n";
    const REPLICA: &str = "role:slave\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\n\
        loading:0\r\nmaster_repl_offset:1290\r\nslave_repl_offset:1290\r\n";

    #[test]
    fn parses_master_fields_and_replica_lines() {
        let info = Info::parse(MASTER);
        assert_eq!(info.role(), Some("master"));
        assert_eq!(info.replicas.len(), 2);
        assert_eq!(info.replicas[1].state, "wait_bgsave");
        assert_eq!(info.sync_full(), 3);
        assert_eq!(info.total_forks(), 7);
        assert_eq!(info.syncing_replicas(|_| false), 1);
        assert_eq!(info.syncing_replicas(|r| r.port == 7002), 0);
    }

    #[test]
    fn fields_are_found_by_key_as_a_map_would_keep_them() {
        let text = "# Server\r\nredis_version:7.0.15\r\nrole:slave\r\nempty:\r\n\
                    url:http://x:1\r\nno colon here\r\nrole:master\r\n\r\n# Keyspace\n\
                    db0:keys=5,expires=0\ndb3:keys=2,expires=1\nlast:1";
        let info = Info::parse(text);
        // The last of a key given twice, as a map insert keeps it.
        assert_eq!(info.get("role"), Some("master"));
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("empty"), Some(""));
        assert_eq!(info.get("url"), Some("http://x:1"));
        assert_eq!(info.get("last"), Some("1"));
        assert_eq!(info.get("no colon here"), None);
        assert_eq!(info.get("missing"), None);
        assert_eq!(info.get(""), None);
        assert_eq!(info.keys(), 7);
        // Equal by fields, whatever their order in the text.
        let a = Info::parse("a:1\r\nb:2\r\n");
        assert_eq!(a, Info::parse("b:2\na:1\n"));
        assert_ne!(a, Info::parse("a:1\r\nb:3\r\n"));
        assert_eq!(Info::default().get("a"), None);
        assert_eq!(
            format!("{a:?}"),
            r#"Info { fields: {"a": "1", "b": "2"}, replicas: [] }"#
        );
        // Many fields (the table's collisions), each found, a key given twice its last.
        let many: String = (0..500).map(|i| format!("k{i}:{i}\r\n")).collect();
        let info = Info::parse(&format!("{many}k7:again\r\n"));
        for i in (0..500).filter(|i| *i != 7) {
            assert_eq!(info.int(&format!("k{i}")), Some(i), "k{i}");
        }
        assert_eq!(info.get("k7"), Some("again"));
        assert_eq!(info.get("k500"), None);
    }

    #[test]
    fn replica_in_sync_needs_link_listing_and_offset() {
        let master = Info::parse(MASTER);
        let replica = Info::parse(REPLICA);
        let ip2: IpAddr = "127.0.0.2".parse().unwrap();
        let ip3: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(replica.role(), Some("replica"));
        assert!(replica.in_sync_with(&master, ip2, 7001));
        assert!(
            !replica.in_sync_with(&master, ip3, 7002),
            "listed as wait_bgsave"
        );
        let behind = Info::parse(
            &REPLICA
                .replace("master_repl_offset:1290", "master_repl_offset:0")
                .replace("slave_repl_offset:1290", "slave_repl_offset:0"),
        );
        let far_master =
            Info::parse(&MASTER.replace("master_repl_offset:1300", "master_repl_offset:99999999"));
        assert!(!behind.in_sync_with(&far_master, ip2, 7001));
        let flapping =
            Info::parse(&REPLICA.replace("master_sync_in_progress:0", "master_sync_in_progress:1"));
        assert!(!flapping.in_sync_with(&master, ip2, 7001));
        let down = Info::parse(&REPLICA.replace("up", "down"));
        assert!(!down.in_sync_with(&master, ip2, 7001));
    }

    #[test]
    fn a_dual_channel_sync_counts_once() {
        // Valkey 8.1 with dual-channel-replication-enabled, one replica mid-sync (measured).
        let info = Info::parse(
            "role:master\r\nconnected_slaves:2\r\n\
             slave0:ip=127.0.0.1,port=7202,state=wait_bgsave,offset=0,lag=0,type=rdb-channel\r\n\
             slave1:ip=127.0.0.1,port=7202,state=bg_transfer,offset=0,lag=0,type=main-channel\r\n\
             replicas_waiting_psync:0\r\n",
        );
        assert_eq!(info.replicas.len(), 2);
        assert_eq!(info.syncing_replicas(|_| false), 1);
        assert_eq!(info.syncing_replicas(|r| r.port == 7202), 0);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let info = Info::parse("garbage\nslave0:ip=1\nslaveX:foo\nloading:1\n");
        assert!(info.replicas.is_empty());
        assert!(info.loading());
        assert_eq!(info.get("slaveX"), Some("foo"));
    }
}
