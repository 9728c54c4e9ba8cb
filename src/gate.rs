//! The sync gate: how many replicas of one upstream may be (re)syncing at once. Pure.
//!
//! Daemons on different hosts pace each other without a coordinator by counting what the
//! upstream itself reports: its replicas that are connected but not yet online. To that
//! each daemon adds the replicas it started itself that are not yet in sync (they may not
//! have connected yet), taking care not to count one of its own twice.

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
