//! ACL users: the `[[user]]`s of the file, redisrepd's own users, and the `default` user,
//! as every instance must hold them; and how a running instance goes from one set to
//! another (`ACL SETUSER`, `ACL DELUSER`) without a restart.
//!
//! With `[[user]]` declared, the cluster password authenticates only redisrepd's own users,
//! each allowed what it needs ([`DAEMON_USER`], [`REPLICATION_USER`], [`SENTINEL_USER`]),
//! and `default` is off unless a `[[user]]` declares it. Without `[[user]]`, the cluster
//! password is the `default` user's, as before: `requirepass` with one password, the
//! `default` user's two passwords while it rotates (`password_files`).

use crate::config::{Group, Secret};
use crate::render::{MASK, Secrets};

/// The user redisrepd's daemons and verbs connect as.
pub const DAEMON_USER: &str = "redisrepd";
/// The user replicas authenticate to their upstream as (`masteruser`).
pub const REPLICATION_USER: &str = "redisrepd-replication";
/// The user the sentinels authenticate to the instances as (`sentinel auth-user`).
pub const SENTINEL_USER: &str = "redisrepd-sentinel";

/// The prefix no `[[user]]` may take: redisrepd's own users' names.
pub const RESERVED_PREFIX: &str = "redisrepd";

/// What the daemons' user may run: exactly the commands redisrepd sends to an instance
/// (`redis_io`: probes, SHUTDOWN, role changes, live config, the sync gate, backups,
/// switchovers, ACL changes at `reload`), no key and no channel.
pub const DAEMON_RULES: &[&str] = &[
    "resetkeys",
    "resetchannels",
    "-@all",
    "+ping",
    "+info",
    "+client|setname",
    "+client|id",
    "+client|list",
    "+client|kill",
    "+client|pause",
    "+client|unpause",
    "+config|get",
    "+config|set",
    "+replicaof",
    "+slaveof",
    "+failover",
    "+shutdown",
    "+bgsave",
    "+acl|setuser",
    "+acl|deluser",
];

/// What a replica needs on its upstream (Redis's ACL documentation).
pub const REPLICATION_RULES: &[&str] = &[
    "resetkeys",
    "resetchannels",
    "-@all",
    "+psync",
    "+replconf",
    "+ping",
];

/// What Sentinel needs on the instances (Redis's ACL documentation: "ACL rules for
/// Sentinel and Replicas"), plus `+replicaof` (the newer name of `SLAVEOF`) and
/// `+failover` (Valkey 9's Sentinel sends it).
pub const SENTINEL_RULES: &[&str] = &[
    "resetkeys",
    "allchannels",
    "-@all",
    "+multi",
    "+exec",
    "+slaveof",
    "+replicaof",
    "+ping",
    "+subscribe",
    "+publish",
    "+config|rewrite",
    "+role",
    "+info",
    "+client|setname",
    "+client|kill",
    "+script|kill",
    "+failover",
];

/// Everything, as `default` has it without ACL users.
const ALL_RULES: &[&str] = &["~*", "&*", "+@all"];

/// One ACL user as an instance must hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    /// `false`: `off` (nobody can authenticate as it).
    pub on: bool,
    /// Every password it accepts; none and `on`: `nopass`.
    pub passwords: Vec<Secret>,
    pub rules: Vec<String>,
}

impl AclUser {
    /// The rules after the name, passwords shown or masked: `reset on >pw ~* +@all`.
    /// `reset` first, so that `ACL SETUSER` with them gives exactly this user whatever it
    /// was (Redis applies one `ACL SETUSER` as a whole or not at all).
    pub fn args(&self, secrets: Secrets) -> Vec<String> {
        let mut out = vec![
            "reset".to_owned(),
            if self.on { "on" } else { "off" }.to_owned(),
        ];
        if self.passwords.is_empty() && self.on {
            out.push("nopass".to_owned());
        }
        for pw in &self.passwords {
            out.push(match secrets {
                Secrets::Show => format!(">{}", pw.expose()),
                Secrets::Mask => format!(">{MASK}"),
            });
        }
        out.extend(self.rules.iter().cloned());
        out
    }

    /// Its redis.conf line, `user NAME reset on >pw ...`.
    pub fn line(&self, secrets: Secrets) -> String {
        format!("user {} {}", self.name, self.args(secrets).join(" "))
    }
}

/// Whether the instances hold ACL users of redisrepd's making (`user` lines, no
/// `requirepass`): with `[[user]]`, or with two cluster passwords (the `default` user's,
/// while it rotates).
pub fn acl_mode(group: &Group) -> bool {
    !group.users.is_empty() || group.passwords().len() > 1
}

/// Whether redisrepd's own users exist (with `[[user]]`): the daemons then connect as
/// [`DAEMON_USER`], replicas as [`REPLICATION_USER`], sentinels as [`SENTINEL_USER`].
pub fn internal_users(group: &Group) -> bool {
    !group.users.is_empty()
}

/// The user redisrepd connects to an instance as (`None`: `default`).
pub fn daemon_user(group: &Group) -> Option<&'static str> {
    internal_users(group).then_some(DAEMON_USER)
}

/// The `masteruser` of every instance (`None`: replicas authenticate as `default`).
pub fn master_user(group: &Group) -> Option<&'static str> {
    internal_users(group).then_some(REPLICATION_USER)
}

/// The ACL users every instance holds, `default` first, then redisrepd's own, then the
/// `[[user]]`s in file order. Without ACL mode ([`acl_mode`]) this is the `default` user
/// that `requirepass` (or its absence) makes, which is rendered as `requirepass`.
pub fn users(group: &Group) -> Vec<AclUser> {
    let cluster: Vec<Secret> = group.passwords().into_iter().cloned().collect();
    let all = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    if !internal_users(group) {
        return vec![AclUser {
            name: "default".to_owned(),
            on: true,
            passwords: cluster,
            rules: all(ALL_RULES),
        }];
    }
    // A user whose password is not known (its file unread) is off, never `nopass`.
    let declared = |u: &crate::config::User| AclUser {
        name: u.name.clone(),
        on: !u.passwords().is_empty(),
        passwords: u.passwords().into_iter().cloned().collect(),
        rules: u.rules.clone(),
    };
    let mut out = vec![group.user("default").map(declared).unwrap_or(AclUser {
        name: "default".to_owned(),
        on: false,
        passwords: Vec::new(),
        rules: Vec::new(),
    })];
    for (name, rules) in [
        (DAEMON_USER, DAEMON_RULES),
        (REPLICATION_USER, REPLICATION_RULES),
        (SENTINEL_USER, SENTINEL_RULES),
    ] {
        out.push(AclUser {
            name: name.to_owned(),
            on: !cluster.is_empty(),
            passwords: cluster.clone(),
            rules: all(rules),
        });
    }
    out.extend(
        group
            .users
            .iter()
            .filter(|u| u.name != "default")
            .map(declared),
    );
    out
}

/// The redis.conf lines of the ACL users (empty without ACL mode: `requirepass` then).
pub fn lines(group: &Group, secrets: Secrets) -> Vec<String> {
    if !acl_mode(group) {
        return Vec::new();
    }
    users(group).iter().map(|u| u.line(secrets)).collect()
}

/// One ACL command a running instance takes.
#[derive(Clone, PartialEq, Eq)]
pub enum AclOp {
    /// `ACL SETUSER name args...` (passwords inside: never printed).
    SetUser { name: String, args: Vec<Secret> },
    /// `ACL DELUSER name`: its connections are closed.
    DelUser { name: String },
    /// `CLIENT KILL USER name SKIPME yes`: the connections of a user turned off (which
    /// Redis leaves open, refusing every command with NOPERM), so that they reconnect and
    /// authenticate again: a replica's link as its replication user (the replica keeps
    /// its master cached: a partial resync), a sentinel's as its own.
    KillClients { name: String },
}

impl std::fmt::Debug for AclOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AclOp::SetUser { name, .. } => write!(f, "SetUser({name})"),
            AclOp::DelUser { name } => write!(f, "DelUser({name})"),
            AclOp::KillClients { name } => write!(f, "KillClients({name})"),
        }
    }
}

impl AclOp {
    /// The command and its arguments.
    pub fn args(&self) -> Vec<String> {
        match self {
            AclOp::SetUser { name, args } => ["ACL", "SETUSER", name]
                .into_iter()
                .map(str::to_owned)
                .chain(args.iter().map(|a| a.expose().to_owned()))
                .collect(),
            AclOp::DelUser { name } => vec!["ACL".to_owned(), "DELUSER".to_owned(), name.clone()],
            AclOp::KillClients { name } => ["CLIENT", "KILL", "USER", name, "SKIPME", "yes"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The user it changes.
    pub fn user(&self) -> &str {
        match self {
            AclOp::SetUser { name, .. } | AclOp::DelUser { name } | AclOp::KillClients { name } => {
                name
            }
        }
    }
}

/// What a running instance must be told when the file goes from `old` to `new`, in the
/// order it is told: new or changed users (`default` aside), then the settings
/// (`masteruser`, `masterauth`, `requirepass`), then removed users, then `default` (the
/// connection that tells it may be `default`'s) and, when it goes off, the closing of its
/// connections, then, when users are dropped altogether, redisrepd's own (which closes
/// that connection). Empty when nothing changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthChange {
    /// `ACL SETUSER` of the users added or changed, `default` aside.
    pub users: Vec<AclOp>,
    /// `CONFIG SET key value`, in order.
    pub config: Vec<(String, Secret)>,
    /// `ACL DELUSER` of removed users, `default`'s `ACL SETUSER` if it changed (and the
    /// closing of its connections when it goes off), and `ACL DELUSER` of
    /// [`DAEMON_USER`] when it goes.
    pub last: Vec<AclOp>,
}

impl AuthChange {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.config.is_empty() && self.last.is_empty()
    }

    /// For the reload's reply: `ACL users app, ops set; masterauth set`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let set: Vec<&str> = self
            .users
            .iter()
            .chain(&self.last)
            .filter(|o| matches!(o, AclOp::SetUser { .. }))
            .map(AclOp::user)
            .collect();
        if !set.is_empty() {
            parts.push(format!("ACL users {} set", set.join(", ")));
        }
        let del: Vec<&str> = self
            .last
            .iter()
            .filter(|o| matches!(o, AclOp::DelUser { .. }))
            .map(AclOp::user)
            .collect();
        if !del.is_empty() {
            parts.push(format!("ACL users {} deleted", del.join(", ")));
        }
        for op in &self.last {
            if let AclOp::KillClients { name } = op {
                parts.push(format!("{name}'s connections closed"));
            }
        }
        let keys: Vec<&str> = self.config.iter().map(|(k, _)| k.as_str()).collect();
        if !keys.is_empty() {
            parts.push(format!("{} set", keys.join(", ")));
        }
        parts.join("; ")
    }
}

/// How the users and passwords of a running instance go from `old` to `new`.
/// Without ACL mode on either side and with the password changed, this is what it always
/// was: `CONFIG SET masterauth` and `requirepass`.
pub fn auth_change(old: &Group, new: &Group) -> AuthChange {
    let mut change = AuthChange::default();
    let (old_users, new_users) = (users(old), users(new));
    let setuser = |u: &AclUser| AclOp::SetUser {
        name: u.name.clone(),
        args: u.args(Secrets::Show).into_iter().map(Secret::new).collect(),
    };
    let legacy = !acl_mode(old) && !acl_mode(new);
    for u in &new_users {
        let was = old_users.iter().find(|o| o.name == u.name);
        if was == Some(u) {
            continue;
        }
        if legacy {
            // `requirepass` below does the same to `default`, and CONFIG GET agrees.
            continue;
        }
        if u.name == "default" {
            change.last.push(setuser(u));
            if !u.on && was.is_some_and(|w| w.on) {
                change.last.push(AclOp::KillClients {
                    name: u.name.clone(),
                });
            }
        } else {
            change.users.push(setuser(u));
        }
    }
    let value = |s: Option<&Secret>| s.cloned().unwrap_or_else(|| Secret::new(""));
    if master_user(old) != master_user(new) {
        change.config.push((
            "masteruser".to_owned(),
            Secret::new(master_user(new).unwrap_or("")),
        ));
    }
    if old.password() != new.password() {
        change
            .config
            .push(("masterauth".to_owned(), value(new.password())));
    }
    // `requirepass` stands for `default`'s password where the file renders it.
    if !acl_mode(new) && (acl_mode(old) || old.password() != new.password()) {
        change
            .config
            .push(("requirepass".to_owned(), value(new.password())));
    }
    // Removed users before `default`, except redisrepd's own: deleting it closes the
    // connection that says so (after its reply), so it goes last.
    let removed = |o: &&AclUser| !new_users.iter().any(|u| u.name == o.name);
    let mut del: Vec<AclOp> = old_users
        .iter()
        .filter(removed)
        .filter(|o| o.name != DAEMON_USER)
        .map(|o| AclOp::DelUser {
            name: o.name.clone(),
        })
        .collect();
    del.append(&mut change.last);
    if old_users
        .iter()
        .filter(removed)
        .any(|o| o.name == DAEMON_USER)
    {
        del.push(AclOp::DelUser {
            name: DAEMON_USER.to_owned(),
        });
    }
    change.last = del;
    change
}

/// A rule token that sets or clears passwords: passwords come from files, never from the
/// TOML's `rules`.
pub fn is_password_rule(token: &str) -> bool {
    let lower = token.to_ascii_lowercase();
    token.starts_with(['>', '<', '#', '!'])
        || ["nopass", "resetpass", "reset"].contains(&lower.as_str())
}

#[cfg(test)]
mod tests;
