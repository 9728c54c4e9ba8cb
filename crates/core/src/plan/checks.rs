//! The refusals: a reload that would start a server on an RDB it cannot load, a stop that
//! would leave an upstream below its `min_replicas_to_write`.

use std::collections::HashSet;

use super::reload::ReloadDiff;
use crate::config::Group;
use crate::server::Server;

/// Refuses a reload that would (re)start an instance on a server that cannot load an RDB
/// it needs: its own dump (written by the server it runs now), or its upstream's full
/// sync while the upstream still runs its current server (replicas are restarted before
/// their upstream), or that would leave a replica of it on another host, not restarted
/// here, under a server with a newer RDB version than that replica can load. An older
/// replica under a newer upstream fails only after the whole transfer (`Can't handle RDB
/// format version`), so this is checked before anything changes.
///
/// The instances in `diff.changed` and `diff.added` will run `new_server`. `running` is
/// the server an instance reports in its INFO now (local or remote), where known; a local
/// instance that does not answer is taken to run `old_server`. An instance whose server is
/// unknown (down, on another host) is not checked.
pub fn check_servers(
    new: &Group,
    host: &str,
    diff: &ReloadDiff,
    old_server: &Server,
    new_server: &Server,
    running: &dyn Fn(&str) -> Option<Server>,
) -> Result<(), RdbRefusal> {
    let restarted: HashSet<&str> = diff
        .changed
        .iter()
        .chain(&diff.added)
        .map(String::as_str)
        .collect();
    let new_rdb = new_server.rdb_version();
    // What runs `name` now: its INFO, else the daemon's server for a local instance that
    // existed before the reload.
    let now = |name: &str, local_before: bool| {
        running(name).or_else(|| local_before.then_some(*old_server))
    };
    for inst in new.start_order(host) {
        if !restarted.contains(inst.name.as_str()) {
            continue;
        }
        let name = &inst.name;
        if diff.changed.contains(name)
            && let Some(cur) = now(name, true)
            && cur.rdb_version() > new_rdb
        {
            return Err(RdbRefusal::OwnData {
                name: name.clone(),
                current: cur,
                new_server: *new_server,
            });
        }
        if let Some(up) = new.upstream(inst) {
            let local_before = up.host == host && !diff.added.contains(&up.name);
            if let Some(cur) = now(&up.name, local_before)
                && cur.rdb_version() > new_rdb
            {
                return Err(RdbRefusal::UnderNewerUpstream {
                    name: name.clone(),
                    upstream: up.name.clone(),
                    current: cur,
                    new_server: *new_server,
                });
            }
        }
        for r in new.replicas_of(name) {
            if restarted.contains(r.name.as_str()) {
                continue;
            }
            if let Some(cur) = running(&r.name)
                && cur.rdb_version() < new_rdb
            {
                return Err(RdbRefusal::ReplicaCannotLoad {
                    name: name.clone(),
                    replica: r.name.clone(),
                    replica_host: r.host.clone(),
                    current: cur,
                    new_server: *new_server,
                });
            }
        }
    }
    Ok(())
}

/// Why [`check_servers`] refuses: which RDB could not be loaded, by whom. `current` is the
/// server that runs now (the one writing, or for a replica elsewhere, the one reading);
/// `new_server` the configured `redis_server`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdbRefusal {
    /// `name` would restart on a server older than the RDB its current server wrote.
    #[error(
        "`{name}` would restart on {new_server} and could not load its own data: `{name}` runs \
         {current}, which writes RDB version {}; {new_server} (the configured `redis_server`) \
         reads RDB versions up to {} only; a downgrade to an older RDB version is not \
         possible by restart",
        .current.rdb_version(),
        .new_server.rdb_version()
    )]
    OwnData {
        name: String,
        current: Server,
        new_server: Server,
    },
    /// Replica `name` would run a server older than its upstream's (it would fail only
    /// after the whole full-sync transfer).
    #[error(
        "replica `{name}` would run {new_server} under its upstream `{upstream}`, which runs \
         {current}, which writes RDB version {}; {new_server} (the configured `redis_server`) \
         reads RDB versions up to {} only; never put an older replica under a newer upstream: \
         upgrade replicas first, the master last",
        .current.rdb_version(),
        .new_server.rdb_version()
    )]
    UnderNewerUpstream {
        name: String,
        upstream: String,
        current: Server,
        new_server: Server,
    },
    /// `name` would run a server newer than its `replica` on another host can follow.
    #[error(
        "`{name}` would run {new_server} (RDB version {}), but its replica `{replica}` on host \
         `{replica_host}` runs {current}, which reads RDB versions up to {} only: upgrade \
         `{replica}` first (reload its host), then this one",
        .new_server.rdb_version(),
        .current.rdb_version()
    )]
    ReplicaCannotLoad {
        name: String,
        replica: String,
        replica_host: String,
        current: Server,
        new_server: Server,
    },
}

/// Refuses taking `name` down when its upstream would be left with fewer good replicas
/// than its `min_replicas_to_write` (every write would fail meanwhile). `good_others` is
/// the number of the upstream's other replicas that are online now.
pub fn check_quorum(group: &Group, name: &str, good_others: usize) -> Result<(), String> {
    let Some(inst) = group.instance(name) else {
        return Ok(());
    };
    let Some(up) = group.upstream(inst) else {
        return Ok(());
    };
    let Some(min) = up.min_replicas_to_write.filter(|m| *m > 0) else {
        return Ok(());
    };
    if good_others >= min as usize {
        return Ok(());
    }
    Err(format!(
        "refused: taking `{name}` down leaves `{}` with {good_others} good replica(s), fewer \
         than its min_replicas_to_write = {min}, so every write to it would fail meanwhile; \
         use --force to do it anyway",
        up.name
    ))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{CASCADE, LOCAL, R70, group, server};
    use super::super::reload::reload_diff;
    use super::*;

    #[test]
    fn a_downgrade_below_the_rdb_version_is_refused() {
        use crate::server::Kind;
        let g = group(LOCAL);
        let r62 = server(Kind::Redis, 6, 2);
        let r74 = server(Kind::Redis, 7, 4);
        let v81 = server(Kind::Valkey, 8, 1);
        let none = |_: &str| None;
        let diff = reload_diff(&g, &g, "a", &R70, &r62);
        let err = check_servers(&g, "a", &diff, &R70, &r62, &none).unwrap_err();
        assert_eq!(
            err,
            RdbRefusal::OwnData {
                name: "m".into(),
                current: R70,
                new_server: r62
            }
        );
        assert_eq!(
            err.to_string(),
            "`m` would restart on redis 6.2.0 and could not load its own data: `m` runs redis \
             7.0.15, which writes RDB version 10; redis 6.2.0 (the configured `redis_server`) \
             reads RDB versions up to 9 only; a downgrade to an older RDB version is not \
             possible by restart"
        );
        // Redis 7.4 (RDB 12) to Valkey 8.1 (RDB 11): refused too.
        let diff = reload_diff(&g, &g, "a", &r74, &v81);
        assert!(matches!(
            check_servers(&g, "a", &diff, &r74, &v81, &none),
            Err(RdbRefusal::OwnData { .. })
        ));
        // Valkey 8.1 to Redis 7.2 (both RDB 11): allowed.
        let r72 = server(Kind::Redis, 7, 2);
        let diff = reload_diff(&g, &g, "a", &v81, &r72);
        assert!(check_servers(&g, "a", &diff, &v81, &r72, &none).is_ok());
    }

    #[test]
    fn an_older_replica_is_never_put_under_a_newer_upstream() {
        use crate::server::Kind;
        // r1 and r2 on host b, the master on host a already runs Valkey 8.1 (RDB 11),
        // b's replicas still run 6.2 (their INFO says so) and are moved to 7.0 (RDB 10).
        let g = group(&LOCAL.replace(
            "host = \"a\"\nbind = \"127.0.0.1\"\nport = 2",
            "host = \"b\"\nbind = \"127.0.0.1\"\nport = 2",
        ));
        let r62 = server(Kind::Redis, 6, 2);
        let v81 = server(Kind::Valkey, 8, 1);
        let running = |name: &str| match name {
            "m" => Some(v81),
            _ => Some(r62),
        };
        let diff = reload_diff(&g, &g, "b", &r62, &R70);
        assert_eq!(diff.changed, ["r1"]);
        let err = check_servers(&g, "b", &diff, &r62, &R70, &running).unwrap_err();
        assert_eq!(
            err,
            RdbRefusal::UnderNewerUpstream {
                name: "r1".into(),
                upstream: "m".into(),
                current: v81,
                new_server: R70
            }
        );
        assert_eq!(
            err.to_string(),
            "replica `r1` would run redis 7.0.15 under its upstream `m`, which runs valkey \
             8.1.0, which writes RDB version 11; redis 7.0.15 (the configured `redis_server`) \
             reads RDB versions up to 10 only; never put an older replica under a newer \
             upstream: upgrade replicas first, the master last"
        );
        // The master's host upgrading first while its replica on b still runs 6.2.
        let diff = reload_diff(&g, &g, "a", &r62, &R70);
        assert_eq!(diff.changed, ["m", "r2"]);
        let running = |name: &str| match name {
            "r1" => Some(r62),
            _ => None,
        };
        let err = check_servers(&g, "a", &diff, &r62, &R70, &running).unwrap_err();
        assert_eq!(
            err,
            RdbRefusal::ReplicaCannotLoad {
                name: "m".into(),
                replica: "r1".into(),
                replica_host: "b".into(),
                current: r62,
                new_server: R70
            }
        );
        assert_eq!(
            err.to_string(),
            "`m` would run redis 7.0.15 (RDB version 10), but its replica `r1` on host `b` runs \
             redis 6.2.0, which reads RDB versions up to 9 only: upgrade `r1` first (reload its \
             host), then this one"
        );
        // Once r1 runs 7.0, the master's host may follow.
        let running = |name: &str| match name {
            "r1" => Some(R70),
            _ => None,
        };
        assert!(check_servers(&g, "a", &diff, &r62, &R70, &running).is_ok());
    }

    #[test]
    fn quorum_refuses_only_below_min_replicas() {
        let g = group(CASCADE);
        let err = check_quorum(&g, "r1", 0).unwrap_err();
        assert!(
            err.contains("min_replicas_to_write = 1") && err.contains("--force"),
            "{err}"
        );
        assert!(check_quorum(&g, "r1", 1).is_ok());
        assert!(
            check_quorum(&g, "leaf", 0).is_ok(),
            "r1 has no min_replicas_to_write"
        );
        assert!(check_quorum(&g, "m", 0).is_ok(), "a master has no upstream");
    }
}
