//! ACL users as every instance holds them, rendered (masked for people), and what a reload
//! changes in them live.

use std::path::Path;

use super::*;
use crate::config::{PasswordSource, Secret};
use crate::plan::{Step, reload, reload_diff};
use crate::render::render;
use crate::server::Server;

const TRIO: &str = "\n[[instance]]\nname = \"m\"\nhost = \"a\"\nbind = \"127.0.0.1\"\nport = 1\n\
    [[instance]]\nname = \"r\"\nhost = \"a\"\nbind = \"127.0.0.1\"\nport = 2\nreplica_of = \"m\"\n";

/// A group whose every password file is read: `app` (and `app.old`) hold `app-pw` (and
/// `app-old`), the cluster's `cl` (and `cl-old`).
fn group(text: &str) -> Group {
    let mut g = crate::config::parse(text, Path::new("/t.toml"), Path::new("/"))
        .unwrap_or_else(|e| panic!("{e}"))
        .group;
    let secret = |p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        Secret::new(format!("{}-pw", name.replace(".old", "-old")))
    };
    if let PasswordSource::Files(files) = &mut g.cluster.password {
        for f in files {
            f.secret = Some(secret(&f.path));
        }
    }
    for u in &mut g.users {
        for f in &mut u.password_files {
            f.secret = Some(secret(&f.path));
        }
    }
    g
}

fn with_users(users: &str) -> Group {
    group(&format!(
        "[cluster]\nname = \"t\"\npassword = \"cl\"\n{TRIO}{users}"
    ))
}

const APP: &str =
    "\n[[user]]\nname = \"app\"\npassword_file = \"app\"\nrules = \"~* +@all -@admin\"\n";

fn names(g: &Group) -> Vec<String> {
    users(g).into_iter().map(|u| u.name).collect()
}

#[test]
fn with_users_default_is_off_and_redisrepd_has_its_own_three() {
    let g = with_users(APP);
    assert_eq!(
        names(&g),
        [
            "default",
            DAEMON_USER,
            REPLICATION_USER,
            SENTINEL_USER,
            "app"
        ]
    );
    let m = g.instance("m").expect("m");
    let shown = render(&g, m, &Server::NEWEST_REDIS, Secrets::Show);
    assert!(shown.contains("\nuser default reset off\n"), "{shown}");
    assert!(
        shown.contains("\nuser app reset on >app-pw ~* +@all -@admin\n"),
        "{shown}"
    );
    assert!(
        shown.contains("\nuser redisrepd reset on >cl resetkeys resetchannels -@all +ping +info"),
        "{shown}"
    );
    assert!(
        shown.contains("\nuser redisrepd-replication reset on >cl resetkeys resetchannels -@all +psync +replconf +ping\n"),
        "{shown}"
    );
    assert!(
        shown.contains("\nmasteruser redisrepd-replication\nmasterauth cl\n"),
        "{shown}"
    );
    assert!(!shown.contains("requirepass"), "{shown}");
    let masked = render(&g, m, &Server::NEWEST_REDIS, Secrets::Mask);
    assert!(
        !masked.contains("app-pw") && !masked.contains(" >cl"),
        "{masked}"
    );
    assert!(
        masked.contains("user app reset on >******** ~*"),
        "{masked}"
    );
    assert_eq!(
        crate::endpoint::Endpoint::of(&g, m).user.as_deref(),
        Some(DAEMON_USER)
    );
}

#[test]
fn a_declared_default_is_on_with_its_own_password_and_rules() {
    let g = with_users(
        "\n[[user]]\nname = \"default\"\npassword_files = [\"app\", \"app.old\"]\nrules = \"~* +@read\"\n",
    );
    let d = &users(&g)[0];
    assert_eq!(
        d.line(Secrets::Show),
        "user default reset on >app-pw >app-old-pw ~* +@read"
    );
    assert_eq!(names(&g).iter().filter(|n| *n == "default").count(), 1);
}

#[test]
fn without_users_one_password_is_requirepass_and_two_are_defaults() {
    let one = with_users("");
    assert!(!acl_mode(&one) && lines(&one, Secrets::Show).is_empty());
    let m = one.instance("m").expect("m");
    let conf = render(&one, m, &Server::NEWEST_REDIS, Secrets::Show);
    assert!(conf.contains("requirepass cl\nmasterauth cl\n"), "{conf}");
    assert_eq!(crate::endpoint::Endpoint::of(&one, m).user, None);
    let two = group(&format!(
        "[cluster]\nname = \"t\"\npassword_files = [\"cl\", \"cl.old\"]\n{TRIO}"
    ));
    let conf = render(&two, m, &Server::NEWEST_REDIS, Secrets::Show);
    assert!(!conf.contains("requirepass"), "{conf}");
    assert!(!conf.contains("masteruser"), "{conf}");
    assert!(conf.contains("masterauth cl-pw\n"), "{conf}");
    assert!(
        conf.contains("user default reset on >cl-pw >cl-old-pw ~* &* +@all\n"),
        "{conf}"
    );
    // redisrepd uses the first, and the second when a server refuses the first.
    let ep = crate::endpoint::Endpoint::of(&two, m);
    assert_eq!(ep.password.as_ref().map(Secret::expose), Some("cl-pw"));
    let fallback: Vec<&str> = ep.fallback.iter().map(Secret::expose).collect();
    assert_eq!(fallback, ["cl-old-pw"]);
}

fn ops(change: &[AclOp]) -> Vec<String> {
    change
        .iter()
        .map(|o| format!("{} {}", o.args()[1], o.user()))
        .collect()
}

#[test]
fn a_reload_sets_added_and_changed_users_and_deletes_removed_ones_live() {
    let old = with_users(APP);
    let new = with_users(&format!(
        "{}\n[[user]]\nname = \"ops\"\npassword_file = \"ops\"\nrules = \"+info\"\n",
        APP.replace("-@admin", "-@admin -@dangerous")
    ));
    let c = auth_change(&old, &new);
    assert_eq!(ops(&c.users), ["SETUSER app", "SETUSER ops"]);
    assert!(c.config.is_empty() && c.last.is_empty(), "{c:?}");
    assert_eq!(c.describe(), "ACL users app, ops set");
    let SetUser { args, .. } = &c.users[0] else {
        panic!()
    };
    let args: Vec<&str> = args.iter().map(Secret::expose).collect();
    assert_eq!(
        args,
        [
            "reset",
            "on",
            ">app-pw",
            "~*",
            "+@all",
            "-@admin",
            "-@dangerous"
        ]
    );
    // Every instance takes it in place; nothing restarts.
    let r70 = Server::NEWEST_REDIS;
    let diff = reload_diff(&old, &new, "a", &r70, &r70);
    assert_eq!(diff.password_only, ["m", "r"]);
    assert!(diff.changed.is_empty() && diff.live.is_empty(), "{diff:?}");
    assert_eq!(
        diff.summary(),
        "reload: 2 changed live, 0 restarted, 0 added, 0 removed, 0 unchanged"
    );
    let steps = reload(&old, &new, &diff);
    assert!(matches!(&steps[0], Step::SetPassword { name, change } if name == "m" && *change == c));
    // Removed: deleted.
    let c = auth_change(&new, &old);
    assert_eq!(ops(&c.last), ["DELUSER ops"]);
    assert_eq!(ops(&c.users), ["SETUSER app"]);
    // Debug never shows a password.
    assert!(!format!("{c:?}{steps:?}").contains("app-pw"));
    // Nothing changed: nothing to do.
    assert!(auth_change(&new, &new).is_empty());
    let diff = reload_diff(&new, &new, "a", &r70, &r70);
    assert_eq!(diff.unchanged, ["m", "r"]);
}

use AclOp::SetUser;

#[test]
fn a_rotated_user_password_is_one_setuser_with_both_then_one() {
    let old = with_users(APP);
    let both = with_users(&APP.replace(
        "password_file = \"app\"",
        "password_files = [\"app\", \"app.old\"]",
    ));
    let c = auth_change(&old, &both);
    assert_eq!(ops(&c.users), ["SETUSER app"]);
    let SetUser { args, .. } = &c.users[0] else {
        panic!()
    };
    assert_eq!(args[2].expose(), ">app-pw");
    assert_eq!(args[3].expose(), ">app-old-pw");
    assert!(c.config.is_empty(), "replication is not concerned");
}

#[test]
fn a_rotated_cluster_password_gives_the_internal_users_both_and_masterauth_the_first() {
    let text = |pw: &str| format!("[cluster]\nname = \"t\"\n{pw}\n{TRIO}{APP}");
    let old = group(&text("password_files = [\"cl.old\"]"));
    let both = group(&text("password_files = [\"cl\", \"cl.old\"]"));
    let c = auth_change(&old, &both);
    assert_eq!(
        ops(&c.users),
        [
            "SETUSER redisrepd",
            "SETUSER redisrepd-replication",
            "SETUSER redisrepd-sentinel"
        ]
    );
    let SetUser { args, .. } = &c.users[1] else {
        panic!()
    };
    assert_eq!(args[2].expose(), ">cl-pw");
    assert_eq!(args[3].expose(), ">cl-old-pw");
    let config: Vec<(&str, &str)> = c
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(config, [("masterauth", "cl-pw")]);
    let new = group(&text("password_files = [\"cl\"]"));
    let c = auth_change(&both, &new);
    assert_eq!(c.users.len(), 3);
    assert!(c.config.is_empty(), "masterauth stays the first: {c:?}");
}

#[test]
fn turning_users_on_and_off_moves_default_last_and_redisrepd_after_it() {
    let plain = with_users("");
    let users = with_users(APP);
    let on = auth_change(&plain, &users);
    assert_eq!(
        ops(&on.users),
        [
            "SETUSER redisrepd",
            "SETUSER redisrepd-replication",
            "SETUSER redisrepd-sentinel",
            "SETUSER app"
        ]
    );
    let config: Vec<(&str, &str)> = on
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(config, [("masteruser", REPLICATION_USER)]);
    assert_eq!(ops(&on.last), ["SETUSER default", "KILL default"]);
    assert!(
        on.describe().contains("default's connections closed"),
        "{}",
        on.describe()
    );
    let off = auth_change(&users, &plain);
    let config: Vec<(&str, &str)> = off
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(config, [("masteruser", ""), ("requirepass", "cl")]);
    assert_eq!(
        ops(&off.last),
        [
            "DELUSER redisrepd-replication",
            "DELUSER redisrepd-sentinel",
            "DELUSER app",
            "SETUSER default",
            "DELUSER redisrepd"
        ]
    );
    // Without users, a changed password is what it always was.
    let other = group(&format!(
        "[cluster]\nname = \"t\"\npassword = \"cl2\"\n{TRIO}"
    ));
    let c = auth_change(&plain, &other);
    assert!(c.users.is_empty() && c.last.is_empty(), "{c:?}");
    let config: Vec<(&str, &str)> = c
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(config, [("masterauth", "cl2"), ("requirepass", "cl2")]);
}

#[test]
fn a_user_whose_password_is_not_read_is_off_never_nopass() {
    let g = crate::config::parse(
        &format!("[cluster]\nname = \"t\"\npassword_file = \"cl\"\n{TRIO}{APP}"),
        Path::new("/t.toml"),
        Path::new("/"),
    )
    .expect("valid")
    .group;
    for u in users(&g).iter().filter(|u| u.name != "default") {
        assert!(!u.on, "{}", u.name);
        assert!(!u.line(Secrets::Show).contains("nopass"), "{}", u.name);
    }
}

#[test]
fn password_rules_are_told_apart() {
    for r in [
        ">x",
        "<x",
        "#abc",
        "!abc",
        "nopass",
        "resetpass",
        "reset",
        "RESET",
    ] {
        assert!(is_password_rule(r), "{r}");
    }
    for r in [
        "~*", "+@all", "on", "off", "allkeys", "-@admin", "%R~x", "(~x",
    ] {
        assert!(!is_password_rule(r), "{r}");
    }
}
