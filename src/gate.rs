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
}
