//! Claiming a place in an upstream's sync gate, through the upstream itself.
//!
//! A claim is a connection to the upstream named `redisrepd-sync:<replica>`; it is held
//! for as long as the replica (re)syncs and released by closing it — also when the
//! daemon dies. Every daemon sees every claim in `CLIENT LIST`, and the upstream's client
//! ids order them, so daemons on different hosts pace each other without a coordinator
//! and without racing (see `gate::claim_admitted`). With `auto` the claim also reads what
//! the cost check needs (the upstream's full INFO, its replica buffer limit, and this
//! host's memory when the upstream runs here): `gate::claim_admitted_auto`.

use crate::redis_io::Client as _;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use super::Event;
use crate::redis_io::{
    Endpoint, client_id_on, client_list_on, client_setname_on, config_get_on, info_on,
};
use redisrepd_core::config::MaxSyncs;
use redisrepd_core::gate::{self, AutoInput, HostMemory, ReplicaBufferLimit, UpstreamMemory};
use redisrepd_core::machine::Input;

/// A pending or granted claim; dropping it releases the place.
pub struct ClaimHandle {
    _release: Sender<()>,
}

/// Asks `upstream` for a place for `replica` (`ip:port`) under `max_concurrent_syncs`
/// (`upstream_local`: it runs on this host, whose memory `auto` may read); the answer
/// arrives as [`Input::ClaimResult`] for instance `name`.
pub fn request(
    events: Sender<Event>,
    name: String,
    upstream: Endpoint,
    replica: String,
    (max_concurrent_syncs, upstream_local): (MaxSyncs, bool),
    timeout: Duration,
) -> ClaimHandle {
    let (release, released) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name(format!("claim-{name}"))
        .spawn(move || {
            let outcome = claim(
                &upstream,
                &replica,
                (max_concurrent_syncs, upstream_local),
                timeout,
            );
            let (granted, detail, conn) = match outcome {
                Ok((true, detail, conn)) => (true, detail, Some(conn)),
                Ok((false, detail, _)) => (false, detail, None),
                Err(e) => (false, format!("cannot ask the upstream: {e}"), None),
            };
            // Jitter, so that daemons on different hosts do not ask again in lockstep.
            let retry_after = Duration::from_millis(rand::random_range(100..400));
            let _ = events.send(Event::Machine(Input::ClaimResult {
                name,
                granted,
                detail,
                retry_after,
            }));
            if let Some(conn) = conn {
                hold(conn, released);
            }
        });
    ClaimHandle { _release: release }
}

/// Keeps the claim's connection open until the handle is dropped.
fn hold(conn: redis::Connection, released: Receiver<()>) {
    let _ = released.recv();
    drop(conn);
}

fn claim(
    upstream: &Endpoint,
    replica: &str,
    (max, upstream_local): (MaxSyncs, bool),
    timeout: Duration,
) -> redis::RedisResult<(bool, String, redis::Connection)> {
    let mut conn = upstream.connect(timeout)?;
    client_setname_on(&mut conn, &gate::claim_name(replica))?;
    let my_id = client_id_on(&mut conn)?;
    let list = client_list_on(&mut conn, "normal")?;
    // `auto` needs the memory, persistence, stats and server sections too: the default
    // set has them all.
    let section = (max != MaxSyncs::Auto).then_some("replication");
    let info = info_on(&mut conn, section)?;
    let claims = gate::parse_claims(&list);
    let unclaimed = info.syncing_replicas(|line| {
        claims
            .iter()
            .any(|c| c.replica == format!("{}:{}", line.ip, line.port))
    });
    let earlier = claims.iter().filter(|c| c.client_id < my_id).count();
    let (granted, detail) = match max {
        MaxSyncs::Fixed(max) => (
            gate::claim_admitted(&claims, my_id, unclaimed, max),
            format!(
                "{} replica(s) syncing or ahead in line, max_concurrent_syncs = {max}",
                unclaimed + earlier
            ),
        ),
        MaxSyncs::Auto => {
            let verdict = match UpstreamMemory::from_info(&info) {
                Some(upstream) => {
                    let input = AutoInput {
                        syncing: unclaimed + earlier,
                        upstream,
                        limit: buffer_limit(&mut conn),
                        host: upstream_local
                            .then(|| host_memory(info.process_id()))
                            .flatten(),
                    };
                    gate::claim_admitted_auto(&claims, my_id, unclaimed, &input)
                }
                // Cannot happen with a real server; then as with 1.
                None => gate::AutoVerdict {
                    admit: unclaimed + earlier == 0,
                    why: "auto: the upstream's INFO has no memory figures: one at a time"
                        .to_owned(),
                },
            };
            (
                verdict.admit,
                format!(
                    "{} replica(s) syncing or ahead in line, {}",
                    unclaimed + earlier,
                    verdict.why
                ),
            )
        }
    };
    Ok((granted, detail, conn))
}

/// The replica class of the upstream's `client-output-buffer-limit`; `None` when it
/// cannot be read (a renamed CONFIG): the gate assumes Redis's default.
fn buffer_limit(conn: &mut redis::Connection) -> Option<ReplicaBufferLimit> {
    let pair = config_get_on(conn, "client-output-buffer-limit").ok()?;
    ReplicaBufferLimit::parse(pair.get(1)?)
}

/// This host's memory as the upstream's process (`pid`, from its INFO) sees it:
/// `MemAvailable`, and the room left in its cgroup (v2) when that has a `memory.max`.
/// `None` when `/proc/meminfo` cannot be read: the gate then judges from INFO alone.
fn host_memory(pid: Option<u32>) -> Option<HostMemory> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let cgroup_room = pid.and_then(|pid| {
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let dir = std::path::Path::new("/sys/fs/cgroup").join(cgroup_v2_path(&membership)?);
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
        cgroup_room(&read("memory.max")?, &read("memory.current")?)
    });
    Some(HostMemory {
        mem_available: mem_available(&meminfo)?,
        cgroup_room,
    })
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The cgroup v2 path (`0::/system.slice/x.service`) of a `/proc/<pid>/cgroup`, relative.
fn cgroup_v2_path(membership: &str) -> Option<&str> {
    membership
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/'))
}

/// Room under a cgroup's `memory.max` (`max`: no limit, `None`).
fn cgroup_room(max: &str, current: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_figures_are_parsed() {
        let meminfo = "MemTotal:       24684000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(mem_available(meminfo), Some(2048 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(
            cgroup_v2_path("0::/system.slice/redisrepd.service\n"),
            Some("system.slice/redisrepd.service")
        );
        assert_eq!(cgroup_v2_path("0::/\n"), Some(""));
        assert_eq!(cgroup_v2_path("1:memory:/x\n"), None, "cgroup v1");
        assert_eq!(cgroup_room("max\n", "1000\n"), None);
        assert_eq!(cgroup_room("5000\n", "1000\n"), Some(4000));
        assert_eq!(cgroup_room("5000", "6000"), Some(0));
    }
}
