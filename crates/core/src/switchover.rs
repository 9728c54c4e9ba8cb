//! The planned switchover (`redisrepd failover`) in milliseconds: pause writes on the
//! master, wait until the target has applied the master's whole replication offset, make
//! the target master, make the old master its replica, unpause.
//!
//! Why not Redis's `FAILOVER TO`: it waits for the target's `REPLCONF ACK`, which replicas
//! send once a second, so writes stop for 0.6–1 s each way (measured, bench/README). The
//! target's own INFO says at once how far it has applied the stream; asked every
//! millisecond, the pause lasts as long as the last bytes take to arrive plus four
//! commands.
//!
//! Why nothing is lost: `CLIENT PAUSE ... WRITE` (6.2+) stops every write command, and
//! with them expiry, eviction and the master's PINGs into the stream; so the offset read
//! after the pause is final, and the target is promoted only once it has applied all of
//! it. The old master stays paused until it is a replica: no write reaches it as master
//! after the target took over. Everyone resyncs partially: the target keeps the old
//! history as its second replication id.
//!
//! This module holds the pure decisions; `redisrepd_io::redis_io` runs the commands.

use std::time::Duration;

use crate::info::Info;

/// How often the target is asked how far it has applied the stream.
pub const POLL: Duration = Duration::from_millis(1);

/// Extra time the master's `CLIENT PAUSE` lasts beyond the catch-up deadline: if the
/// daemon dies in the middle, the master resumes writes by itself then.
pub const PAUSE_MARGIN: Duration = Duration::from_secs(5);

/// What the target's INFO says about the catch-up to `offset` (the paused master's
/// `master_repl_offset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// It has applied everything: promote it.
    Done,
    /// Still this many bytes behind.
    Behind(i64),
    /// It cannot catch up from this master: abort now, with the reason.
    Cannot(String),
}

/// Judges the target's INFO against the paused master's offset. The target must still
/// replicate from `master` (`ip`, `port`) over a live link; `slave_repl_offset` is what it
/// has applied.
pub fn catch_up(info: &Info, master: (&str, u16), offset: i64) -> CatchUp {
    if info.role() != Some("replica") {
        return CatchUp::Cannot(format!(
            "the target is {} now, not a replica",
            info.role().unwrap_or("of an unknown role")
        ));
    }
    let host = info.get("master_host").unwrap_or("");
    let port = info.int("master_port").unwrap_or(0);
    if host != master.0 || port != i64::from(master.1) {
        return CatchUp::Cannot(format!(
            "the target replicates from {host}:{port}, not from the master {}:{}",
            master.0, master.1
        ));
    }
    if info.get("master_link_status") != Some("up") {
        return CatchUp::Cannot("the target's link to the master is down".to_owned());
    }
    let applied = info
        .int("slave_repl_offset")
        .or_else(|| info.repl_offset())
        .unwrap_or(-1);
    if applied >= offset {
        CatchUp::Done
    } else {
        CatchUp::Behind(offset - applied)
    }
}

/// How a switchover ended, for the log and the verb's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// From `CLIENT PAUSE` until the target had applied the master's offset.
    pub catch_up: Duration,
    /// From `CLIENT PAUSE` until the old master was unpaused as a replica: how long
    /// writes waited.
    pub paused: Duration,
}

impl Timings {
    /// "writes paused 4.2 ms (catch-up 1.1 ms)".
    pub fn describe(&self) -> String {
        format!(
            "writes paused {:.1} ms (catch-up {:.1} ms)",
            self.paused.as_secs_f64() * 1000.0,
            self.catch_up.as_secs_f64() * 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(host: &str, port: u16, link: &str, applied: i64) -> Info {
        Info::parse(&format!(
            "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{link}\r\n\
             slave_repl_offset:{applied}\r\nmaster_repl_offset:{applied}\r\n"
        ))
    }

    const M: (&str, u16) = ("127.0.0.1", 7000);

    #[test]
    fn done_once_the_target_applied_the_paused_offset() {
        assert_eq!(
            catch_up(&replica("127.0.0.1", 7000, "up", 1000), M, 1000),
            CatchUp::Done
        );
        assert_eq!(
            catch_up(&replica("127.0.0.1", 7000, "up", 1200), M, 1000),
            CatchUp::Done
        );
        assert_eq!(
            catch_up(&replica("127.0.0.1", 7000, "up", 990), M, 1000),
            CatchUp::Behind(10)
        );
    }

    #[test]
    fn a_target_elsewhere_or_cut_off_cannot_catch_up() {
        let other = catch_up(&replica("127.0.0.9", 7000, "up", 1000), M, 1000);
        assert!(
            matches!(&other, CatchUp::Cannot(why) if why.contains("127.0.0.9:7000")),
            "{other:?}"
        );
        let down = catch_up(&replica("127.0.0.1", 7000, "down", 1000), M, 1000);
        assert!(matches!(down, CatchUp::Cannot(_)), "{down:?}");
        let master = Info::parse("role:master\r\nmaster_repl_offset:1000\r\n");
        assert!(matches!(catch_up(&master, M, 1000), CatchUp::Cannot(_)));
    }

    #[test]
    fn timings_read_in_milliseconds() {
        let t = Timings {
            catch_up: Duration::from_micros(1100),
            paused: Duration::from_micros(4250),
        };
        assert_eq!(t.describe(), "writes paused 4.2 ms (catch-up 1.1 ms)");
    }
}
