//! How the instances of one host differ between two versions of the file, and the steps
//! that carry a reload out.

use super::live::{LiveChange, live_change, reload_tls_files};
use super::steps::{Step, parents_first, restart, start, stop};
use crate::acl;
use crate::config::Group;
use crate::render::{self, Secrets};
use crate::server::Server;

/// How the instances of one host differ between two versions of the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Running instances whose passwords or ACL users change ([`Self::auth`]): applied in
    /// place, before anything else, no restart.
    pub password_only: Vec<String>,
    /// What changes in passwords and ACL users, the same on every instance.
    pub auth: acl::AuthChange,
    /// Changed in ways the running server takes at runtime: applied live, no restart.
    pub live: Vec<(String, LiveChange)>,
    /// Why each of `changed` needs a restart.
    pub restart_reasons: Vec<(String, String)>,
    pub unchanged: Vec<String>,
}

impl ReloadDiff {
    /// The reply's first line: how many instances took the change live, restart, were added,
    /// removed, or are unchanged (each instance counted once: a password set in place
    /// before a restart counts as restarted).
    pub fn summary(&self) -> String {
        let mut live: Vec<&str> = self
            .password_only
            .iter()
            .chain(self.live.iter().map(|(n, _)| n))
            .map(String::as_str)
            .filter(|n| !self.changed.iter().any(|c| c == n))
            .collect();
        live.sort_unstable();
        live.dedup();
        format!(
            "reload: {} changed live, {} restarted, {} added, {} removed, {} unchanged",
            live.len(),
            self.changed.len(),
            self.added.len(),
            self.removed.len(),
            self.unchanged.len()
        )
    }
}

/// Compares what each instance of `host` would run with: the server, the generated
/// redis.conf (which carries address, password, upstream and directives) and where it
/// lives. `old_server` is what runs now, `new_server` what the new file's `redis_server`
/// is (a binary upgraded in place at the same path is a change too).
pub fn reload_diff(
    old: &Group,
    new: &Group,
    host: &str,
    old_server: &Server,
    new_server: &Server,
) -> ReloadDiff {
    let mut diff = ReloadDiff {
        auth: acl::auth_change(old, new),
        ..ReloadDiff::default()
    };
    for inst in new.start_order(host) {
        match old.instance(&inst.name).filter(|o| o.host == host) {
            None => diff.added.push(inst.name.clone()),
            Some(prev) => {
                let same_process = old.conf_path(prev) == new.conf_path(inst)
                    && old.cluster.redis_server == new.cluster.redis_server
                    && old_server == new_server
                    && old.cluster.user == new.cluster.user;
                let name = inst.name.clone();
                if !same_process {
                    diff.restart_reasons.push((
                        name.clone(),
                        "its server, user or config path changed".to_owned(),
                    ));
                    diff.changed.push(name);
                    continue;
                }
                // Passwords and users first, in place, on every instance; what else
                // changed follows live or by a restart.
                let auth = !diff.auth.is_empty();
                if auth {
                    diff.password_only.push(name.clone());
                }
                let (before, after) = (
                    render::render(old, prev, old_server, Secrets::Show),
                    render::render(new, inst, new_server, Secrets::Show),
                );
                if without_auth(&before) == without_auth(&after) {
                    if !auth {
                        diff.unchanged.push(name);
                    }
                    continue;
                }
                match live_change(&before, &after).map(|c| named(c, inst)) {
                    // The password step writes the new file.
                    Ok(change) if change.is_empty() && auth => {}
                    Ok(change) => diff.live.push((name, change)),
                    Err(why) => {
                        diff.restart_reasons.push((name.clone(), why));
                        diff.changed.push(name);
                    }
                }
            }
        }
    }
    for inst in old.stop_order(host) {
        if new.instance(&inst.name).is_none_or(|n| n.host != host) {
            diff.removed.push(inst.name.clone());
        }
    }
    // Certificates rotated in place (new contents, same paths) leave the rendered config as
    // it was: every instance that keeps running loads them again, live.
    if let (Some(o), Some(n)) = (&old.tls, &new.tls)
        && o.contents != n.contents
    {
        for name in std::mem::take(&mut diff.unchanged) {
            diff.live.push((name, LiveChange::default()));
        }
        for (name, change) in &mut diff.live {
            if let Some(inst) = new.instance(name) {
                reload_tls_files(
                    change,
                    &render::render(new, inst, new_server, Secrets::Show),
                );
            }
        }
    }
    diff
}

/// A rendered redis.conf without the lines of passwords and users
/// ([`super::live::AUTH_KEYS`]): what is left changes live or by a restart.
fn without_auth(conf: &str) -> String {
    conf.lines()
        .filter(|l| {
            let key = l.split(' ').next().unwrap_or("").to_ascii_lowercase();
            !super::live::AUTH_KEYS.contains(&key.as_str())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names the new upstream of a live change by its instance.
fn named(mut change: LiveChange, inst: &crate::config::Instance) -> LiveChange {
    if let (Some(Some(up)), Some(name)) = (&mut change.repoint, &inst.replica_of) {
        up.name = name.clone();
    }
    change
}

/// The steps that apply a reload: change passwords in place, stop removed instances,
/// restart changed ones (rolling, through the gate), start added ones, then apply live
/// changes parents first (a replica re-pointed to an added instance finds it up).
pub fn reload(old: &Group, new: &Group, diff: &ReloadDiff) -> Vec<Step> {
    let mut steps: Vec<Step> = diff
        .password_only
        .iter()
        .map(|n| Step::SetPassword {
            name: n.clone(),
            change: diff.auth.clone(),
        })
        .collect();
    steps.extend(stop(old, &diff.removed, false));
    steps.extend(restart(new, &diff.changed, false));
    steps.extend(start(new, &diff.added));
    let live_names: Vec<String> = diff.live.iter().map(|(n, _)| n.clone()).collect();
    for name in parents_first(new, &live_names) {
        if let Some((_, change)) = diff.live.iter().find(|(n, _)| n == name) {
            steps.push(Step::ApplyLive {
                name: name.to_owned(),
                change: change.clone(),
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::super::checks::check_servers;
    use super::super::fixtures::{CASCADE, LOCAL, R70, group, server};
    use super::super::live::Upstream;
    use super::*;

    #[test]
    fn reload_diff_finds_added_removed_changed() {
        let old = group(CASCADE);
        let new_text = CASCADE
            .replace("port = 3", "port = 33")
            .replace("name = \"leaf\"", "name = \"leaf2\"");
        let new = group(&new_text);
        let diff = reload_diff(&old, &new, "b", &R70, &R70);
        assert_eq!(diff.added, ["leaf2"]);
        assert_eq!(diff.removed, ["leaf"]);
        assert_eq!(diff.changed, ["r2"]);
        assert_eq!(diff.unchanged, ["r1"]);
        assert_eq!(
            diff.summary(),
            "reload: 0 changed live, 1 restarted, 1 added, 1 removed, 1 unchanged"
        );
        let steps = reload(&old, &new, &diff);
        assert_eq!(
            steps[0],
            Step::Stop {
                name: "leaf".into(),
                force: false
            }
        );
    }

    #[test]
    fn a_new_password_is_applied_in_place() {
        let old = group(CASCADE);
        let new = group(&CASCADE.replace("password = \"pw\"", "password = \"pw2\""));
        let diff = reload_diff(&old, &new, "b", &R70, &R70);
        assert_eq!(diff.password_only, ["r1", "r2", "leaf"]);
        assert!(diff.changed.is_empty());
        let steps = reload(&old, &new, &diff);
        assert_eq!(
            steps[0],
            Step::SetPassword {
                name: "r1".into(),
                change: diff.auth.clone()
            }
        );
        assert_eq!(steps.len(), 3, "no restart");
    }

    #[test]
    fn a_server_change_restarts_everything_replicas_first() {
        use crate::server::Kind;
        let g = group(LOCAL);
        let (r62, v81) = (server(Kind::Redis, 6, 2), server(Kind::Valkey, 8, 1));
        let diff = reload_diff(&g, &g, "a", &R70, &v81);
        assert_eq!(diff.changed, ["m", "r1", "r2"], "{diff:?}");
        let stops: Vec<String> = reload(&g, &g, &diff)
            .into_iter()
            .filter_map(|s| match s {
                Step::Stop { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(stops, ["r2", "r1", "m"]);
        let running = |_: &str| None;
        assert!(check_servers(&g, "a", &diff, &R70, &v81, &running).is_ok());
        assert!(check_servers(&g, "a", &diff, &r62, &R70, &running).is_ok());
        let same = reload_diff(&g, &g, "a", &R70, &R70);
        assert!(same.changed.is_empty());
    }

    #[test]
    fn runtime_settings_change_live_and_the_rest_restarts() {
        let old = group(CASCADE);
        let text = CASCADE.replace(
            "port = 2\nreplica_of = \"m\"",
            "port = 2\nreplica_of = \"m\"\n[instance.redis]\nmaxmemory = \"1gb\"\nsave = [\"60 1\", \"10 100\"]",
        );
        let diff = reload_diff(&old, &group(&text), "b", &R70, &R70);
        let live: Vec<&str> = diff.live.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(live, ["r1"]);
        let (_, change) = &diff.live[0];
        let set: Vec<(&str, &str)> = change
            .set
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(set, [("maxmemory", "1gb"), ("save", "60 1 10 100")]);
        assert_eq!(change.describe(), "set maxmemory, save live");
        // A new port or a removed directive needs a restart; a new upstream is REPLICAOF.
        let diff = reload_diff(
            &group(&text),
            &group(&text.replace("port = 2\n", "port = 22\n")),
            "b",
            &R70,
            &R70,
        );
        assert_eq!(diff.changed, ["r1"]);
        assert_eq!(diff.restart_reasons[0].1, "`port` changed");
        let leaf = &diff.live.iter().find(|(n, _)| n == "leaf").expect("leaf").1;
        assert_eq!(
            leaf.describe(),
            "re-pointed to r1",
            "the leaf follows r1's new port"
        );
        let moved = text.replace(
            "port = 4\nreplica_of = \"r1\"",
            "port = 4\nreplica_of = \"r2\"",
        );
        let diff = reload_diff(&group(&text), &group(&moved), "b", &R70, &R70);
        assert!(diff.changed.is_empty());
        let live: Vec<&str> = diff.live.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            live,
            ["r1", "r2", "leaf"],
            "their pacing directive follows, live"
        );
        let leaf = &diff.live[2].1;
        assert_eq!(leaf.describe(), "re-pointed to r2");
        assert_eq!(
            leaf.repoint,
            Some(Some(Upstream {
                name: "r2".into(),
                host: "127.0.0.1".into(),
                port: 3
            }))
        );
        assert_eq!(diff.live[0].1.set[0].1.expose(), "0", "back to the default");
        let diff = reload_diff(&group(&text), &old, "b", &R70, &R70);
        assert_eq!(
            diff.changed,
            ["r1"],
            "maxmemory removed: back to the default by a restart"
        );
    }

    #[test]
    fn a_password_and_another_change_set_the_password_first() {
        let old = group(CASCADE);
        let new = group(
            &CASCADE
                .replace("password = \"pw\"", "password = \"pw2\"")
                .replace(
                    "port = 2\nreplica_of = \"m\"",
                    "port = 2\nreplica_of = \"m\"\n[instance.redis]\nmaxmemory = \"1gb\"",
                ),
        );
        let diff = reload_diff(&old, &new, "b", &R70, &R70);
        assert_eq!(diff.password_only, ["r1", "r2", "leaf"]);
        let steps = reload(&old, &new, &diff);
        assert!(matches!(&steps[0], Step::SetPassword { .. }), "{steps:?}");
        let Some(Step::ApplyLive { name, change }) = steps.last() else {
            panic!("{steps:?}")
        };
        assert_eq!(name, "r1");
        assert_eq!(change.describe(), "set maxmemory live", "no password in it");
    }
}
