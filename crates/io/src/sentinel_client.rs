//! Asking a sentinel: who the master is, the monitor's state, whether a failover could be
//! authorised, and to fail over (also safely, [`switchover`]). Blocking calls with timeouts
//! over the same authenticated connection as `redis_io` (run them off the supervisor
//! thread); the replies are read by the pure parsers of [`redisrepd_core::sentinel`].
//!
//! The master name is the cluster's `name` (`render::sentinel` monitors it under that name).

use crate::redis_io::Client as _;
use std::net::IpAddr;
use std::time::Duration;

use redisrepd_core::config::Secret;
use redisrepd_core::endpoint::Endpoint;
use redisrepd_core::render::sentinel::SentinelSet;
use redisrepd_core::sentinel::{MasterState, Quorum, ReplicaState, caught_up, parse_master_addr};

use crate::redis_io::describe;

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

/// The sentinels that would promote a replica now (step 1 of [`switchover`]): waits up to
/// `within` for at least one, asking every 100 ms. `Err` names what each one says.
fn sentinels_ready<'a>(
    sentinels: &'a [Endpoint],
    name: &str,
    ask: Duration,
    within: Duration,
) -> Result<Vec<&'a Endpoint>, String> {
    let start = std::time::Instant::now();
    let deadline = start + within;
    loop {
        let mut views = Vec::new();
        let mut ready = Vec::new();
        for ep in sentinels {
            match replicas(ep, name, ask) {
                Ok(list) if list.iter().any(ReplicaState::promotable) => ready.push(ep),
                Ok(list) => {
                    let seen: Vec<String> = list
                        .iter()
                        .map(|r| format!("{} ({})", r.name, r.flags.join(",")))
                        .collect();
                    views.push(format!("{ep:?}: knows [{}]", seen.join(", ")));
                }
                Err(e) => views.push(format!("{ep:?}: {e}")),
            }
        }
        if !ready.is_empty() {
            if !views.is_empty() || start.elapsed() >= Duration::from_millis(100) {
                tracing::info!(
                    waited_ms = start.elapsed().as_millis() as u64,
                    "{} of {} sentinels would promote a replica",
                    ready.len(),
                    sentinels.len()
                );
            }
            return Ok(ready);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "no sentinel would promote a replica within {within:?} (none it knows is \
                 connected, answering, with a fresh INFO and a priority above 0): {}",
                views.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
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

/// `SENTINEL MASTER name`.
pub fn master_state(ep: &Endpoint, name: &str, timeout: Duration) -> Result<MasterState, String> {
    let pairs: Vec<String> = query(ep, timeout, redis::cmd("SENTINEL").arg("MASTER").arg(name))?;
    Ok(MasterState::parse(&pairs))
}

/// `SENTINEL REPLICAS name`: the replicas this sentinel knows, as it sees them.
pub fn replicas(ep: &Endpoint, name: &str, timeout: Duration) -> Result<Vec<ReplicaState>, String> {
    let entries: Vec<Vec<String>> = query(
        ep,
        timeout,
        redis::cmd("SENTINEL").arg("REPLICAS").arg(name),
    )?;
    Ok(entries.iter().map(|e| ReplicaState::parse(e)).collect())
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

/// Sets new group passwords (or none) on a running sentinel, as `reload` must after the
/// password file changed: the sentinel's own (`ACL SETUSER default`, what `requirepass`
/// sets: every one of `new`, so that both work while one rotates), the one it gives the
/// other sentinels (`SENTINEL CONFIG SET sentinel-pass`) and the one it gives the
/// instances (`SENTINEL SET name auth-pass`), the first of `new` for both, set only when
/// `first_changed` (each set closes the sentinel's links to the instances). Measured on Redis 6.2,
/// 7.0 and Valkey 8.1; `CONFIG SET requirepass` does not exist in sentinel mode. This
/// connection, already authenticated, stays usable; the sentinel rewrites its file.
pub fn change_password(
    ep: &Endpoint,
    name: &str,
    (new, first_changed): (&[Secret], bool),
    timeout: Duration,
) -> Result<(), String> {
    let mut conn = ep.connect(timeout).map_err(describe)?;
    let pw = new.first().map(Secret::expose).unwrap_or("");
    let mut own = redis::cmd("ACL");
    own.arg("SETUSER").arg("default").arg("resetpass");
    if new.is_empty() {
        own.arg("nopass");
    }
    for s in new {
        own.arg(format!(">{}", s.expose()));
    }
    let mut steps = vec![
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
    if !first_changed {
        steps.drain(..2);
    }
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
/// 1. waits until a sentinel would promote one of the replicas ([`ReplicaState::promotable`]):
///    right after a start Sentinel refuses with `NOGOODSLAVE` for up to ~10 s, and that
///    wait must not be spent with writes paused;
/// 2. `CLIENT PAUSE <pause> WRITE` on the master (writes wait, reads go on);
/// 3. waits until an online replica has the master's offset ([`caught_up`]);
/// 4. `SENTINEL FAILOVER name` on the first sentinel that accepts it, those of step 1 first;
/// 5. waits until a sentinel names another master, and returns it.
///
/// The old master stays paused: the caller must, within `pause`, either SHUTDOWN it
/// (restart/stop: the paused clients see the connection close, unanswered) or make it a
/// replica of the new master (`REPLICAOF`, then `CLIENT UNPAUSE`). When this fails before
/// Sentinel accepted the failover, the master is unpaused; after, it is left paused (two
/// masters taking writes would be worse). Blocking: step 1 waits up to `within`, then the
/// rest up to `within` again, polling every 10 ms while writes are paused.
/// Only call it when a replica is in sync: Sentinel promotes a replica that has not
/// finished its first sync, data set empty (measured).
pub fn switchover(
    master: &Endpoint,
    sentinels: &[Endpoint],
    name: &str,
    pause: Duration,
    within: Duration,
) -> Result<(IpAddr, u16), String> {
    let step = Duration::from_millis(10);
    let ask = within.min(Duration::from_secs(5));
    let ready = sentinels_ready(sentinels, name, ask, within)?;
    let deadline = std::time::Instant::now() + within;
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
            Ok(t) if caught_up(&redisrepd_core::info::Info::parse(&t)) => break,
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
    let (first, rest): (Vec<&Endpoint>, Vec<&Endpoint>) =
        sentinels.iter().partition(|ep| ready.contains(ep));
    let accepted = first
        .into_iter()
        .chain(rest)
        .any(|ep| match failover(ep, name, ask) {
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

/// `SENTINEL MYID`: this sentinel's id (kept across restarts by `render::sentinel`).
pub fn myid(ep: &Endpoint, timeout: Duration) -> Result<String, String> {
    query(ep, timeout, redis::cmd("SENTINEL").arg("MYID"))
}
