//! Changes of master: handed to the recorder thread, which keeps the history and runs the
//! `[hooks]` program off the supervisor.

use std::time::Instant;

use super::Runtime;
use crate::daemon::recorder::Job;
use redisrepd_core::config::Group;
use redisrepd_core::machine::MasterChange;

impl Runtime {
    /// Hands a change of master to the recorder (none started: nothing is recorded).
    pub(super) fn record(&self, change: MasterChange) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let now = (Instant::now(), jiff::Timestamp::now());
        recorder.send(job(self.machine.group(), &self.host, change, now));
    }
}

/// The recorder's job for `change`, seen by `host`: its time in UTC (`now` is the same
/// moment on both clocks), the hook's environment.
fn job(
    group: &Group,
    host: &str,
    change: MasterChange,
    (now, now_utc): (Instant, jiff::Timestamp),
) -> Job {
    let ago = now.saturating_duration_since(change.at);
    let time = now_utc
        .checked_sub(jiff::SignedDuration::try_from(ago).unwrap_or_default())
        .unwrap_or(now_utc);
    let (addr, master_host) = group
        .instance(&change.new)
        .map(|i| (i.address(), i.host.clone()))
        .unwrap_or_default();
    let env = vec![
        ("REDISREPD_CLUSTER", group.cluster.name.clone()),
        ("REDISREPD_MASTER", change.new.clone()),
        ("REDISREPD_MASTER_ADDR", addr),
        ("REDISREPD_MASTER_HOST", master_host),
        ("REDISREPD_OLD_MASTER", change.old.clone()),
        ("REDISREPD_REASON", change.reason.to_string()),
        ("REDISREPD_HOST", host.to_owned()),
    ];
    Job {
        change: redisrepd_core::changes::Change {
            time,
            old_master: change.old,
            new_master: change.new,
            reason: change.reason,
            repl_id: change.repl_id,
            seen_by: vec![host.to_owned()],
        },
        endpoint: change.endpoint,
        history: group.history_path(host),
        hooks: group.hooks.clone(),
        env,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redisrepd_core::changes::Reason;
    use std::time::Duration;

    fn group() -> Group {
        let text = "[cluster]\nname = \"shop\"\npassword = \"s3cret-pw\"\nrun_dir = \"/run/r\"\n\
                    [[instance]]\nname = \"m\"\nhost = \"a\"\nbind = \"127.0.0.1\"\nport = 7000\n\
                    [[instance]]\nname = \"r\"\nhost = \"b\"\nbind = \"127.0.0.2\"\nport = 7001\n\
                    replica_of = \"m\"\n";
        redisrepd_core::config::parse(
            text,
            std::path::Path::new("/t.toml"),
            std::path::Path::new("/"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .group
    }

    #[test]
    fn a_change_goes_to_the_recorder_in_utc_with_the_hooks_environment() {
        let group = group();
        let now = Instant::now();
        let now_utc: jiff::Timestamp = "2026-01-02T10:00:05Z".parse().unwrap_or_default();
        let change = MasterChange {
            at: now.checked_sub(Duration::from_secs(5)).unwrap_or(now),
            old: "m".into(),
            new: "r".into(),
            reason: Reason::Failover,
            repl_id: None,
            endpoint: redisrepd_core::endpoint::Endpoint::of(&group, &group.instances[1]),
        };
        let job = job(&group, "a", change, (now, now_utc));
        assert_eq!(job.change.new_master, "r");
        assert_eq!(job.change.seen_by, ["a"]);
        if now.checked_sub(Duration::from_secs(5)).is_some() {
            assert_eq!(job.change.time.to_string(), "2026-01-02T10:00:00Z");
        }
        let env = |key: &str| {
            job.env
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(env("REDISREPD_CLUSTER"), Some("shop"));
        assert_eq!(env("REDISREPD_MASTER"), Some("r"));
        assert_eq!(env("REDISREPD_MASTER_ADDR"), Some("127.0.0.2:7001"));
        assert_eq!(env("REDISREPD_MASTER_HOST"), Some("b"));
        assert_eq!(env("REDISREPD_OLD_MASTER"), Some("m"));
        assert_eq!(env("REDISREPD_REASON"), Some("failover"));
        assert_eq!(env("REDISREPD_HOST"), Some("a"));
        assert!(
            job.env.iter().all(|(_, v)| !v.contains("s3cret")),
            "never the password"
        );
        assert_eq!(job.history, group.history_path("a"));
    }
}
