//! Effects carried out through Sentinel: a switchover it performs, and a reloaded
//! `[sentinel]` applied to a running sentinel. The commands are in
//! [`crate::sentinel_client`] and [`crate::redis_io`].

use std::time::Duration;

use super::Runtime;
use super::redis::answer_in_worker;
use crate::redis_io::{Client as _, Endpoint, client_unpause_on, replicaof_on};
use redisrepd_core::machine::Input;
use redisrepd_core::render::sentinel::SentinelSet;

impl Runtime {
    /// A switchover through Sentinel, answered with `SentinelAsked`.
    pub(super) fn sentinel_failover(
        &self,
        master: Endpoint,
        sentinels: Vec<Endpoint>,
        master_name: String,
    ) {
        answer_in_worker(&self.events, "sentinel-failover", move || {
            let result = sentinel_switchover(&master, &sentinels, &master_name);
            Input::SentinelAsked { result }
        });
    }

    /// `SENTINEL SET` each of `sets` on a running sentinel, then the new group password
    /// when `password` is `Some`; answered with `SentinelReconfigured`.
    pub(super) fn sentinel_reconfigure(
        &self,
        name: String,
        endpoint: Endpoint,
        sets: Vec<SentinelSet>,
        password: Option<redisrepd_core::sentinel::SentinelAuth>,
    ) {
        let cluster = self.machine.group().cluster.name.clone();
        answer_in_worker(&self.events, &format!("sentinel-set-{name}"), move || {
            let t = Duration::from_secs(5);
            let result =
                crate::sentinel_client::set(&endpoint, &cluster, &sets, t).and_then(|()| {
                    match &password {
                        Some(new) => crate::sentinel_client::change_password(
                            &endpoint,
                            &cluster,
                            (&new.accepted, new.first_changed),
                            t,
                        ),
                        None => Ok(()),
                    }
                });
            Input::SentinelReconfigured { name, result }
        });
    }
}

/// A switchover through Sentinel (`sentinel::switchover`: writes paused on the old
/// master until a replica has everything, then `SENTINEL FAILOVER`), after which the old
/// master follows the new one and takes writes no more (they get READONLY, never an
/// acknowledgement that Sentinel's later conversion would throw away), and is unpaused.
fn sentinel_switchover(
    master: &Endpoint,
    sentinels: &[Endpoint],
    name: &str,
) -> Result<(), String> {
    let pause = Duration::from_secs(30);
    let (ip, port) = crate::sentinel_client::switchover(master, sentinels, name, pause, pause / 2)?;
    let mut c = master
        .connect(Duration::from_secs(5))
        .map_err(|e| format!("the old master after the failover: {e}"))?;
    replicaof_on(&mut c, Some((&ip.to_string(), port)))
        .map_err(|e| format!("REPLICAOF on the old master: {e}"))?;
    client_unpause_on(&mut c).map_err(|e| format!("CLIENT UNPAUSE on the old master: {e}"))
}
