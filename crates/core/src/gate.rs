//! The sync gate: how many replicas of one upstream may be (re)syncing at once. Pure.
//!
//! Daemons on different hosts pace each other without a coordinator by counting what the
//! upstream itself reports: its replicas that are connected but not yet online. To that
//! each daemon adds the replicas it started itself that are not yet in sync (they may not
//! have connected yet), taking care not to count one of its own twice.
//!
//! The limit is a number, or `auto` ([`auto_admits`]): one more full sync while the
//! upstream's memory can afford it, judged from figures the caller reads (its INFO, its
//! replica buffer limit, and this host's memory when the upstream runs here).

use crate::info::{Info, ReplicaLine};

/// Replicas of one upstream that are syncing: `ours_in_flight` (started by this daemon,
/// not yet in sync) plus the upstream's not-online replicas that are not among them.
pub fn syncing(
    ours_in_flight: usize,
    upstream: Option<&Info>,
    is_ours_in_flight: impl Fn(&ReplicaLine) -> bool,
) -> usize {
    ours_in_flight + upstream.map_or(0, |info| info.syncing_replicas(is_ours_in_flight))
}

/// Whether one more replica may start syncing.
pub fn admits(syncing: usize, max_concurrent_syncs: u32) -> bool {
    syncing < max_concurrent_syncs as usize
}

/// A daemon's claim on a place in an upstream's gate, as the upstream lists it in
/// `CLIENT LIST` (`name=redisrepd-sync:<ip>:<port>`): the upstream's client id orders
/// claims, so daemons on different hosts agree on who came first without talking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub client_id: u64,
    /// The replica the claim is for, `ip:port`.
    pub replica: String,
}

/// The client name that marks a claim for the replica at `replica` (`ip:port`).
pub fn claim_name(replica: &str) -> String {
    format!("{CLAIM_PREFIX}{}", replica.replace(':', "_"))
}

/// Every client name of a claim starts with this.
pub const CLAIM_PREFIX: &str = "redisrepd-sync:";

/// Reads the claims out of `CLIENT LIST` output.
pub fn parse_claims(client_list: &str) -> Vec<Claim> {
    let mut claims: Vec<Claim> = client_list
        .lines()
        .filter_map(|line| {
            let mut id = None;
            let mut name = None;
            for field in line.split(' ') {
                if let Some(v) = field.strip_prefix("id=") {
                    id = v.parse().ok();
                } else if let Some(v) = field.strip_prefix("name=") {
                    name = v.strip_prefix(CLAIM_PREFIX).map(|r| r.replace('_', ":"));
                }
            }
            Some(Claim {
                client_id: id?,
                replica: name?,
            })
        })
        .collect();
    claims.sort_by_key(|c| c.client_id);
    claims
}

/// Whether the claim with `my_id` is within the gate: the upstream's syncing replicas
/// that hold no claim, plus the claims made before mine, leave a place for me.
pub fn claim_admitted(
    claims: &[Claim],
    my_id: u64,
    syncing_unclaimed: usize,
    max_concurrent_syncs: u32,
) -> bool {
    let earlier = claims.iter().filter(|c| c.client_id < my_id).count();
    syncing_unclaimed + earlier < max_concurrent_syncs as usize
}

/// `max_concurrent_syncs = "auto"`: what the upstream's INFO says about its memory.
///
/// The cost of one more full sync is counted in two parts:
///
/// - **the fork's copy-on-write**: a server runs one child at a time, so replicas that
///   attach to the same BGSAVE (or wait together for the next diskless transfer) share
///   one fork, and those that cannot attach wait for the next one: however many sync, at
///   most one fork copies pages at any moment. It is reserved once, less what the
///   running fork has already copied (that is already in the memory figures).
/// - **the replication buffers** the upstream keeps for syncing replicas until they are
///   online: at worst each grows to the replica `client-output-buffer-limit` (beyond it
///   the replica is dropped). Redis 7.0 and later (and Valkey) keep one buffer that all
///   replicas share, so it is charged once; Redis 6.2 copies it per replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamMemory {
    /// `used_memory`.
    pub used_memory: u64,
    /// `used_memory_rss`.
    pub used_memory_rss: u64,
    /// `rdb_last_cow_size`: what the last finished fork copied; 0 before the first.
    /// Counted only above half of `used_memory`: see `auto_cost`.
    pub last_cow: u64,
    /// A fork runs now (`rdb_bgsave_in_progress` or `aof_rewrite_in_progress`).
    pub fork_running: bool,
    /// `current_cow_size`: what the running fork has copied so far (Redis 6.2 has none).
    pub current_cow: u64,
    /// `mem_clients_slaves`: the replication buffers held for replicas now.
    pub replica_buffers: u64,
    /// `maxmemory`, 0 for none.
    pub maxmemory: u64,
    /// `total_system_memory`, 0 when the server does not know it.
    pub total_system_memory: u64,
    /// One replication buffer shared by all replicas (Redis >= 7.0, Valkey).
    pub shared_buffer: bool,
}

impl UpstreamMemory {
    /// From INFO with the server, memory, persistence and stats sections; `None` when
    /// it lacks `used_memory` (another section was asked).
    pub fn from_info(info: &Info) -> Option<UpstreamMemory> {
        let int = |key: &str| info.int(key).and_then(|v| u64::try_from(v).ok());
        let major = info
            .get("redis_version")
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            .unwrap_or(0);
        Some(UpstreamMemory {
            used_memory: int("used_memory")?,
            used_memory_rss: int("used_memory_rss").unwrap_or(0),
            last_cow: int("rdb_last_cow_size").unwrap_or(0),
            fork_running: info.int("rdb_bgsave_in_progress") == Some(1)
                || info.int("aof_rewrite_in_progress") == Some(1),
            current_cow: int("current_cow_size").unwrap_or(0),
            replica_buffers: int("mem_clients_slaves").unwrap_or(0),
            maxmemory: int("maxmemory").unwrap_or(0),
            total_system_memory: int("total_system_memory").unwrap_or(0),
            // Valkey reports redis_version 7.2.4: it shares the buffer too.
            shared_buffer: major >= 7,
        })
    }
}

/// The replica class of `client-output-buffer-limit`, in bytes; 0 is "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaBufferLimit {
    pub hard: u64,
    pub soft: u64,
}

impl ReplicaBufferLimit {
    /// Redis's default: `replica 256mb 64mb 60`.
    pub const DEFAULT: ReplicaBufferLimit = ReplicaBufferLimit {
        hard: 256 << 20,
        soft: 64 << 20,
    };

    /// The replica class from `CONFIG GET client-output-buffer-limit`'s value
    /// (`normal 0 0 0 slave 268435456 67108864 60 pubsub ...`, bytes).
    pub fn parse(value: &str) -> Option<ReplicaBufferLimit> {
        let words: Vec<&str> = value.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| matches!(*w, "slave" | "replica"))?;
        Some(ReplicaBufferLimit {
            hard: words.get(at + 1)?.parse().ok()?,
            soft: words.get(at + 2)?.parse().ok()?,
        })
    }

    /// The most one syncing replica's buffer may cost: the hard limit, else the soft
    /// one; with neither, nothing bounds it but the data: as much as the data set.
    fn per_replica(self, used_memory: u64) -> u64 {
        [self.hard, self.soft]
            .into_iter()
            .find(|&l| l > 0)
            .unwrap_or(used_memory)
    }

    /// The smaller of the limits that are set (a replica over the soft limit for its
    /// seconds is dropped too); `None` when neither is.
    fn tightest(self) -> Option<u64> {
        [self.hard, self.soft].into_iter().filter(|&l| l > 0).min()
    }
}

/// Memory on the upstream's own host, when that is this daemon's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    /// `MemAvailable` of `/proc/meminfo`.
    pub mem_available: u64,
    /// `memory.max - memory.current` of the upstream's cgroup (v2), when it has a limit.
    pub cgroup_room: Option<u64>,
}

/// Everything `auto` decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoInput {
    /// Replicas syncing or ahead in line, not counting the one asking.
    pub syncing: usize,
    pub upstream: UpstreamMemory,
    /// `None` when it could not be read: Redis's default is assumed.
    pub limit: Option<ReplicaBufferLimit>,
    /// `None`: the upstream runs on another host, only its INFO is known.
    pub host: Option<HostMemory>,
}

/// `auto`'s answer: admitted or not, and why, in words for the log and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoVerdict {
    pub admit: bool,
    pub why: String,
}

/// Bytes in megabytes, for messages: a cost rounded up.
fn mb(bytes: u64) -> String {
    format!("{} MB", bytes.div_ceil(1 << 20))
}

/// Bytes in megabytes, for messages: room rounded down.
fn mb_floor(bytes: u64) -> String {
    format!("{} MB", bytes >> 20)
}

/// What the next full sync is estimated to cost beyond what the memory figures already
/// hold, with `syncing + 1` replicas syncing: (fork copy-on-write, replica buffers).
fn auto_cost(input: &AutoInput) -> (u64, u64) {
    let up = &input.upstream;
    // No fork measured yet (the first since the server started): assume every page is
    // copied, the worst case for a write load spread over the keyspace. A measurement
    // comes from another moment: maybe a quieter one, or a smaller data set (the first
    // sync of a master that was empty then measures next to nothing), so it counts only
    // above half of used_memory.
    let cow = if up.last_cow > 0 {
        up.last_cow.max(up.used_memory / 2)
    } else {
        up.used_memory
    }
    .max(up.current_cow);
    let cow = if up.fork_running {
        cow.saturating_sub(up.current_cow)
    } else {
        cow
    };
    let per = input
        .limit
        .unwrap_or(ReplicaBufferLimit::DEFAULT)
        .per_replica(up.used_memory);
    let n = input.syncing as u64 + 1;
    let buffers = if up.shared_buffer {
        per
    } else {
        per.saturating_mul(n)
    };
    (cow, buffers.saturating_sub(up.replica_buffers))
}

/// `max_concurrent_syncs = "auto"`: whether one more full sync may start. Always when
/// nothing syncs (never slower than 1). Otherwise while the replication buffers are below
/// half their limit (past it the syncing replicas are at risk of being dropped, and one
/// more transfer slows them all) and the estimated cost of `syncing + 1` syncs (see
/// [`UpstreamMemory`]) fits the headroom.
///
/// The headroom is the host's when the upstream runs on this daemon's host:
/// `MemAvailable`, and its cgroup's room under `memory.max`. For an upstream on another
/// host only its INFO is known, and other processes there are not: half of what its
/// `total_system_memory` leaves beside the larger of its RSS and its `maxmemory` (the
/// data may grow to that). Without `total_system_memory`, one sync at a time.
///
/// It grows with `syncing`, so it is monotone: a claim admitted at some place in line
/// means every earlier one fits too, which keeps daemons on different hosts consistent.
pub fn auto_admits(input: &AutoInput) -> AutoVerdict {
    let verdict = |admit, why: String| AutoVerdict { admit, why };
    if input.syncing == 0 {
        return verdict(true, "auto: nothing else syncing".to_owned());
    }
    let up = &input.upstream;
    let limit = input.limit.unwrap_or(ReplicaBufferLimit::DEFAULT);
    if let Some(tight) = limit.tightest()
        && up.replica_buffers.saturating_mul(2) >= tight
    {
        return verdict(
            false,
            format!(
                "auto: replica output buffers hold {}, half their limit of {} or more",
                mb(up.replica_buffers),
                mb(tight)
            ),
        );
    }
    let headroom = match input.host {
        Some(host) => host
            .cgroup_room
            .map_or(host.mem_available, |room| room.min(host.mem_available)),
        None if up.total_system_memory == 0 => {
            return verdict(
                false,
                format!(
                    "auto: the upstream is on another host and reports no total_system_memory: \
                     one sync at a time ({} syncing)",
                    input.syncing
                ),
            );
        }
        None => {
            up.total_system_memory
                .saturating_sub(up.used_memory_rss.max(up.maxmemory))
                / 2
        }
    };
    let (cow, buffers) = auto_cost(input);
    let need = cow.saturating_add(buffers);
    let n = input.syncing + 1;
    let whose = if input.host.is_some() {
        "headroom"
    } else {
        "headroom (INFO only, another host)"
    };
    let detail = format!(
        "{whose} {} {} {n} syncs' estimated {} (fork copy-on-write {}, replica buffers {})",
        mb_floor(headroom),
        if need <= headroom { ">=" } else { "<" },
        mb(need),
        mb(cow),
        mb(buffers)
    );
    verdict(need <= headroom, format!("auto: {detail}"))
}

/// [`claim_admitted`] for `auto`: the claim's place in line (the unclaimed syncing
/// replicas and the claims made before it) must pass [`auto_admits`] as that many
/// syncing. `input.syncing` is ignored.
pub fn claim_admitted_auto(
    claims: &[Claim],
    my_id: u64,
    syncing_unclaimed: usize,
    input: &AutoInput,
) -> AutoVerdict {
    let earlier = claims.iter().filter(|c| c.client_id < my_id).count();
    auto_admits(&AutoInput {
        syncing: syncing_unclaimed + earlier,
        ..input.clone()
    })
}

/// What a replica's next sync will be, predicted before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// Its upstream will continue its history from the backlog: no fork, no copy. Such a
    /// replica is admitted without a place in the gate.
    SurePartial,
    /// A full sync, or one that may become full: it needs a place.
    MaybeFull,
}

/// Predicts the sync of a replica that will load an RDB resuming from `rdb` (`None`: no
/// replication history, or it will load its AOF), from its upstream's INFO, the way the
/// upstream will judge its `PSYNC <repl-id> <offset + 1>`: the id must be the upstream's
/// current one, or its previous one with the offset not past where that history ended
/// (`second_repl_offset`), and the backlog must still hold the next byte. Near the
/// backlog's oldest byte (within a quarter of a full backlog) it may be gone by the time
/// the replica asks: not sure.
pub fn predict(rdb: Option<&crate::rdb::ReplPosition>, upstream: &Info) -> Prediction {
    let Some(rdb) = rdb else {
        return Prediction::MaybeFull;
    };
    let int = |key: &str| upstream.get(key).and_then(|v| v.parse::<i64>().ok());
    let next = rdb.offset + 1;
    let same_history = upstream.get("master_replid") == Some(rdb.repl_id.as_str())
        || (upstream.get("master_replid2") == Some(rdb.repl_id.as_str())
            && int("second_repl_offset").is_some_and(|end| next <= end));
    let (Some(1), Some(first), Some(len), Some(size), Some(top)) = (
        int("repl_backlog_active"),
        int("repl_backlog_first_byte_offset"),
        int("repl_backlog_histlen"),
        int("repl_backlog_size"),
        upstream.repl_offset(),
    ) else {
        return Prediction::MaybeFull;
    };
    let margin = if len >= size { size / 4 } else { 0 };
    let in_backlog = next >= first + margin && next <= first + len && next <= top + 1;
    if same_history && in_backlog {
        Prediction::SurePartial
    } else {
        Prediction::MaybeFull
    }
}

/// [`predict`] for a running replica re-pointed live (`REPLICAOF`): the same history and
/// a next byte the upstream's backlog still holds, but no upper bound. The replica's INFO
/// may have been asked a moment after the upstream's, with writes flowing: then it is
/// "ahead" of that snapshot by what arrived meanwhile, which the upstream has by the time
/// the replica asks.
pub fn predict_repoint(replica: &crate::rdb::ReplPosition, upstream: &Info) -> Prediction {
    let int = |key: &str| upstream.get(key).and_then(|v| v.parse::<i64>().ok());
    let next = replica.offset + 1;
    let same_history = upstream.get("master_replid") == Some(replica.repl_id.as_str())
        || (upstream.get("master_replid2") == Some(replica.repl_id.as_str())
            && int("second_repl_offset").is_some_and(|end| next <= end));
    let (Some(1), Some(first), Some(len), Some(size)) = (
        int("repl_backlog_active"),
        int("repl_backlog_first_byte_offset"),
        int("repl_backlog_histlen"),
        int("repl_backlog_size"),
    ) else {
        return Prediction::MaybeFull;
    };
    let margin = if len >= size { size / 4 } else { 0 };
    if same_history && next >= first + margin {
        Prediction::SurePartial
    } else {
        Prediction::MaybeFull
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ours_and_the_upstreams_without_double_counting() {
        let info = Info::parse(
            "slave0:ip=10.0.0.2,port=1,state=wait_bgsave,offset=0,lag=0\n\
             slave1:ip=10.0.0.3,port=1,state=send_bulk,offset=0,lag=0\n\
             slave2:ip=10.0.0.4,port=1,state=online,offset=9,lag=0\n",
        );
        // One of ours is in flight and already listed (10.0.0.2): counted once.
        assert_eq!(syncing(1, Some(&info), |r| r.ip == "10.0.0.2"), 2);
        assert_eq!(syncing(0, None, |_| false), 0);
        assert_eq!(syncing(2, None, |_| false), 2);
        assert!(admits(0, 1));
        assert!(!admits(1, 1));
        assert!(admits(1, 2));
    }

    #[test]
    fn the_earliest_claims_win_the_places() {
        let list = "id=7 addr=1.2.3.4:5 name=redisrepd-sync:10.0.0.3_6380 age=0\n\
                    id=3 addr=1.2.3.4:6 name=redisrepd-sync:10.0.0.2_6379 age=0\n\
                    id=5 addr=1.2.3.4:7 name= age=0\n";
        let claims = parse_claims(list);
        assert_eq!(claims.len(), 2);
        assert_eq!(claims[0].replica, "10.0.0.2:6379");
        assert_eq!(claim_name("10.0.0.2:6379"), "redisrepd-sync:10.0.0.2_6379");
        assert!(claim_admitted(&claims, 3, 0, 1));
        assert!(!claim_admitted(&claims, 7, 0, 1), "a later claim waits");
        assert!(claim_admitted(&claims, 7, 0, 2));
        assert!(
            !claim_admitted(&claims, 3, 1, 1),
            "an unclaimed sync holds the place"
        );
    }

    const MB: u64 = 1 << 20;
    const GB: u64 = 1 << 30;

    /// An idle Redis 7 master holding `used` bytes, with a measured fork.
    fn mem(used: u64) -> UpstreamMemory {
        UpstreamMemory {
            used_memory: used,
            used_memory_rss: used + used / 10,
            last_cow: used / 4,
            total_system_memory: 16 * GB,
            shared_buffer: true,
            ..UpstreamMemory::default()
        }
    }

    fn local(available: u64) -> Option<HostMemory> {
        Some(HostMemory {
            mem_available: available,
            cgroup_room: None,
        })
    }

    /// (case, syncing, upstream, limit, host, admitted, words in the reason)
    type Case = (
        &'static str,
        usize,
        UpstreamMemory,
        Option<ReplicaBufferLimit>,
        Option<HostMemory>,
        bool,
        &'static str,
    );

    #[test]
    fn auto_decides_from_headroom_and_buffers() {
        let limit = Some(ReplicaBufferLimit::DEFAULT);
        let old = |m: UpstreamMemory| UpstreamMemory {
            shared_buffer: false,
            ..m
        };
        let forking = |m: UpstreamMemory, copied| UpstreamMemory {
            fork_running: true,
            current_cow: copied,
            ..m
        };
        let buffered = |m: UpstreamMemory, b| UpstreamMemory {
            replica_buffers: b,
            ..m
        };
        let unmeasured = |m: UpstreamMemory| UpstreamMemory { last_cow: 0, ..m };
        let caged = |available, room| {
            Some(HostMemory {
                mem_available: available,
                cgroup_room: Some(room),
            })
        };
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("nothing syncing: always, even without room",
                0, mem(10 * GB), limit, local(0), true, "nothing else syncing"),
            ("empty master, shared buffer: one 256 MB buffer fits",
                5, mem(MB), limit, local(2 * GB), true, "headroom 2048 MB >= 6 syncs' estimated 257 MB"),
            ("shared buffer: the charge does not grow with the syncing",
                29, mem(MB), limit, local(300 * MB), true, "30 syncs' estimated 257 MB"),
            ("Redis 6.2: a buffer per replica",
                5, old(mem(MB)), limit, local(GB), false, "headroom 1024 MB < 6 syncs' estimated 1537 MB"),
            ("Redis 6.2: three fit in 1 GB",
                2, old(mem(MB)), limit, local(GB), true, "769 MB"),
            ("a big data set's fork does not fit",
                1, mem(4 * GB), limit, local(GB), false, "fork copy-on-write 2048 MB, replica buffers 256 MB"),
            ("a measured fork counts above half of used_memory",
                1, UpstreamMemory { last_cow: 3 * GB, ..mem(4 * GB) }, limit, local(GB), false, "fork copy-on-write 3072 MB"),
            ("no fork measured yet: all of used_memory",
                1, unmeasured(mem(GB)), limit, local(GB), false, "fork copy-on-write 1024 MB"),
            ("a running fork shares: only what it has not copied yet",
                1, forking(mem(4 * GB), 900 * MB), limit, local(2 * GB), true, "fork copy-on-write 1148 MB"),
            ("buffers in use are already in MemAvailable",
                1, buffered(mem(MB), 20 * MB), limit, local(300 * MB), true, "replica buffers 236 MB"),
            ("buffers at half the soft limit: wait",
                1, buffered(mem(MB), 32 * MB), limit, local(100 * GB), false, "replica output buffers hold 32 MB, half their limit of 64 MB"),
            ("unknown limit: Redis's default",
                1, mem(MB), None, local(200 * MB), false, "replica buffers 256 MB"),
            ("no limits: as much as the data set",
                1, mem(100 * MB), Some(ReplicaBufferLimit { hard: 0, soft: 0 }), local(GB), true, "replica buffers 100 MB"),
            ("the cgroup's room is tighter than the host's",
                1, mem(MB), limit, caged(10 * GB, 200 * MB), false, "headroom 200 MB <"),
            ("another host: half of what total_system_memory leaves",
                1, mem(MB), limit, None, true, "headroom (INFO only, another host) 8191 MB"),
            ("another host: maxmemory counts as used",
                1, UpstreamMemory { maxmemory: 15 * GB + 600 * MB, ..mem(MB) }, limit, None, false, "headroom (INFO only, another host) 212 MB <"),
            ("another host without total_system_memory: one at a time",
                1, UpstreamMemory { total_system_memory: 0, ..mem(MB) }, limit, None, false, "one sync at a time"),
        ];
        for (case, syncing, upstream, limit, host, admit, why) in table {
            let v = auto_admits(&AutoInput {
                syncing,
                upstream,
                limit,
                host,
            });
            assert_eq!(v.admit, admit, "{case}: {}", v.why);
            assert!(v.why.starts_with("auto: "), "{case}: {}", v.why);
            assert!(v.why.contains(why), "{case}: {}", v.why);
        }
    }

    #[test]
    fn auto_is_monotone_in_the_syncing() {
        // Once a place in line fails, every later one fails too (the claims rely on it).
        for shared in [false, true] {
            let input = |syncing| AutoInput {
                syncing,
                upstream: UpstreamMemory {
                    shared_buffer: shared,
                    ..mem(100 * MB)
                },
                limit: Some(ReplicaBufferLimit::DEFAULT),
                host: local(3 * GB),
            };
            let admitted: Vec<bool> = (0..20).map(|n| auto_admits(&input(n)).admit).collect();
            let first_no = admitted.iter().position(|a| !a).unwrap_or(20);
            assert!(admitted[first_no..].iter().all(|a| !a), "{admitted:?}");
            assert!(admitted[0]);
            assert_eq!(first_no < 20, !shared, "{admitted:?}");
        }
    }

    #[test]
    fn auto_claims_take_their_place_in_line() {
        let list = "id=3 name=redisrepd-sync:10.0.0.2_6379\n\
                    id=5 name=redisrepd-sync:10.0.0.3_6379\n\
                    id=7 name=redisrepd-sync:10.0.0.4_6379\n";
        let claims = parse_claims(list);
        // Redis 6.2, 1 GB: three places (each 256 MB of buffer, plus a 4 MB fork).
        let input = AutoInput {
            syncing: 99,
            upstream: UpstreamMemory {
                shared_buffer: false,
                ..mem(8 * MB)
            },
            limit: Some(ReplicaBufferLimit::DEFAULT),
            host: local(GB),
        };
        assert!(claim_admitted_auto(&claims, 3, 0, &input).admit, "first");
        assert!(claim_admitted_auto(&claims, 5, 0, &input).admit);
        assert!(claim_admitted_auto(&claims, 7, 0, &input).admit);
        assert!(
            !claim_admitted_auto(&claims, 7, 1, &input).admit,
            "an unclaimed sync ahead"
        );
        assert!(claim_admitted_auto(&claims, 3, 1, &input).admit);
        // Another daemon's claim with a later id never gets in while an earlier one waits.
        let tight = AutoInput {
            host: local(600 * MB),
            ..input
        };
        let ok: Vec<bool> = [3, 5, 7]
            .iter()
            .map(|&id| claim_admitted_auto(&claims, id, 0, &tight).admit)
            .collect();
        assert_eq!(ok, [true, true, false]);
    }

    #[test]
    fn memory_figures_from_info_and_config() {
        let info = Info::parse(
            "redis_version:6.2.14\r\nused_memory:1000\r\nused_memory_rss:2000\r\n\
             rdb_last_cow_size:300\r\nrdb_bgsave_in_progress:1\r\nmem_clients_slaves:40\r\n\
             maxmemory:0\r\ntotal_system_memory:9000\r\n",
        );
        let m = UpstreamMemory::from_info(&info).unwrap();
        assert_eq!(
            m,
            UpstreamMemory {
                used_memory: 1000,
                used_memory_rss: 2000,
                last_cow: 300,
                fork_running: true,
                current_cow: 0,
                replica_buffers: 40,
                maxmemory: 0,
                total_system_memory: 9000,
                shared_buffer: false,
            }
        );
        let valkey =
            Info::parse("redis_version:7.2.4\r\nvalkey_version:8.1.1\r\nused_memory:5\r\n");
        assert!(UpstreamMemory::from_info(&valkey).unwrap().shared_buffer);
        assert_eq!(
            UpstreamMemory::from_info(&Info::parse("role:master\r\n")),
            None
        );
        assert_eq!(
            ReplicaBufferLimit::parse(
                "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
            ),
            Some(ReplicaBufferLimit::DEFAULT)
        );
        assert_eq!(
            ReplicaBufferLimit::parse("normal 0 0 0 replica 0 0 0"),
            Some(ReplicaBufferLimit { hard: 0, soft: 0 })
        );
        assert_eq!(ReplicaBufferLimit::parse("normal 0 0 0"), None);
    }

    fn upstream(replid: &str, replid2: &str, second: i64, first: i64, len: i64) -> Info {
        Info::parse(&format!(
            "master_replid:{replid}\r\nmaster_replid2:{replid2}\r\nsecond_repl_offset:{second}\r\n\
             repl_backlog_active:1\r\nrepl_backlog_size:1048576\r\n\
             repl_backlog_first_byte_offset:{first}\r\nrepl_backlog_histlen:{len}\r\n\
             master_repl_offset:{}\r\n",
            first + len - 1
        ))
    }

    fn at(id: &str, offset: i64) -> crate::rdb::ReplPosition {
        crate::rdb::ReplPosition {
            repl_id: id.into(),
            offset,
        }
    }

    #[test]
    fn a_replica_within_the_upstreams_backlog_resumes_partially() {
        let up = upstream("aaa", "000", -1, 1, 5000);
        assert_eq!(
            predict(Some(&at("aaa", 4000)), &up),
            Prediction::SurePartial
        );
        assert_eq!(
            predict(Some(&at("aaa", 5000)), &up),
            Prediction::SurePartial,
            "nothing new"
        );
    }

    #[test]
    fn another_history_or_none_means_a_full_sync() {
        let up = upstream("aaa", "000", -1, 1, 5000);
        assert_eq!(predict(Some(&at("bbb", 4000)), &up), Prediction::MaybeFull);
        assert_eq!(
            predict(None, &up),
            Prediction::MaybeFull,
            "no RDB, or it loads its AOF"
        );
        assert_eq!(
            predict(Some(&at("aaa", 4000)), &Info::default()),
            Prediction::MaybeFull
        );
    }

    #[test]
    fn the_previous_history_counts_up_to_where_it_ended() {
        // A restarted master (or a promoted replica) keeps the old id as replid2.
        let up = upstream("new", "old", 3001, 1, 5000);
        assert_eq!(
            predict(Some(&at("old", 3000)), &up),
            Prediction::SurePartial
        );
        assert_eq!(predict(Some(&at("old", 3001)), &up), Prediction::MaybeFull);
    }

    #[test]
    fn bytes_gone_from_the_backlog_or_about_to_go_mean_maybe_full() {
        // A full 1 MiB backlog holding offsets 10_000_001 ..= 11_048_576.
        let up = upstream("aaa", "000", -1, 10_000_001, 1_048_576);
        assert_eq!(
            predict(Some(&at("aaa", 9_000_000)), &up),
            Prediction::MaybeFull,
            "gone"
        );
        assert_eq!(
            predict(Some(&at("aaa", 10_000_100)), &up),
            Prediction::MaybeFull,
            "at the oldest end: may be gone when it asks"
        );
        assert_eq!(
            predict(Some(&at("aaa", 10_900_000)), &up),
            Prediction::SurePartial
        );
    }

    #[test]
    fn a_live_repoint_may_be_ahead_of_the_upstreams_snapshot_but_not_off_its_history() {
        let up = Info::parse(
            "master_replid:bbb\r\nmaster_replid2:aaa\r\nsecond_repl_offset:1001\r\n\
             master_repl_offset:1500\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\n\
             repl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:1500\r\n",
        );
        let at = |id: &str, offset| crate::rdb::ReplPosition {
            repl_id: id.into(),
            offset,
        };
        // On the new history, asked a moment later: ahead of the snapshot, still sure.
        assert_eq!(
            predict_repoint(&at("bbb", 1600), &up),
            Prediction::SurePartial
        );
        assert_eq!(predict(Some(&at("bbb", 1600)), &up), Prediction::MaybeFull);
        // On the old history up to the switch: sure; past it: not.
        assert_eq!(
            predict_repoint(&at("aaa", 1000), &up),
            Prediction::SurePartial
        );
        assert_eq!(
            predict_repoint(&at("aaa", 1200), &up),
            Prediction::MaybeFull
        );
        assert_eq!(predict_repoint(&at("zzz", 10), &up), Prediction::MaybeFull);
    }
}
