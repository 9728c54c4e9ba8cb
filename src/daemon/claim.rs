//! Claiming a place in an upstream's sync gate, through the upstream itself.
//!
//! A claim is a connection to the upstream named `redisrepd-sync:<replica>`; it is held
//! for as long as the replica (re)syncs and released by closing it — also when the
//! daemon dies. Every daemon sees every claim in `CLIENT LIST`, and the upstream's client
//! ids order them, so daemons on different hosts pace each other without a coordinator
//! and without racing (see `gate::claim_admitted`).

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use super::Event;
use crate::gate;
use crate::info::Info;
use crate::redis_io::Endpoint;

/// A pending or granted claim; dropping it releases the place.
pub struct ClaimHandle {
    _release: Sender<()>,
}

/// Asks `upstream` for a place for `replica` (`ip:port`); the answer arrives as
/// [`Event::ClaimResult`] for instance `name`.
pub fn request(
    events: Sender<Event>,
    name: String,
    upstream: Endpoint,
    replica: String,
    max_concurrent_syncs: u32,
    timeout: Duration,
) -> ClaimHandle {
    let (release, released) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name(format!("claim-{name}"))
        .spawn(move || {
            let outcome = claim(&upstream, &replica, max_concurrent_syncs, timeout);
            let (granted, detail, conn) = match outcome {
                Ok((true, detail, conn)) => (true, detail, Some(conn)),
                Ok((false, detail, _)) => (false, detail, None),
                Err(e) => (false, format!("cannot ask the upstream: {e}"), None),
            };
            let _ = events.send(Event::ClaimResult {
                name,
                granted,
                detail,
            });
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
    max: u32,
    timeout: Duration,
) -> redis::RedisResult<(bool, String, redis::Connection)> {
    let mut conn = upstream.connect(timeout)?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(gate::claim_name(replica))
        .query::<()>(&mut conn)?;
    let my_id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut conn)?;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query(&mut conn)?;
    let info_text: String = redis::cmd("INFO").arg("replication").query(&mut conn)?;
    let claims = gate::parse_claims(&list);
    let info = Info::parse(&info_text);
    let unclaimed = info.syncing_replicas(|line| {
        claims
            .iter()
            .any(|c| c.replica == format!("{}:{}", line.ip, line.port))
    });
    let earlier = claims.iter().filter(|c| c.client_id < my_id).count();
    let granted = gate::claim_admitted(&claims, my_id, unclaimed, max);
    let detail = format!(
        "{} replica(s) syncing or ahead in line, max_concurrent_syncs = {max}",
        unclaimed + earlier
    );
    Ok((granted, detail, conn))
}
