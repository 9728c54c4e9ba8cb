//! How to reach one instance (address, user and password) and why a SHUTDOWN did not complete:
//! plain data, shared by the supervisor's pure machine (which decides whom to talk to) and
//! `redis_io` (which does the talking).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ClientAuth, Group, Instance, Secret, Tls};

/// How to reach one instance.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    pub bind: IpAddr,
    pub port: u16,
    /// The ACL user to authenticate as (`None`: `default`, or no AUTH without a password).
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Passwords tried after `password` is refused: the second cluster password while it
    /// rotates, so that a daemon whose host reloaded first still reaches the instances of
    /// a host that has not.
    pub fallback: Vec<Secret>,
    /// `[tls]`: connect with TLS, verifying the server against the CA.
    pub tls: Option<Arc<ClientTls>>,
}

/// What a client of the group needs for TLS. The files are read at each connection, so a
/// rotated certificate (same path, new contents) is used by the next connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA every server is verified against.
    pub ca_file: PathBuf,
    /// Certificate/key pairs the client may present, in order; it presents the first it
    /// can read (its own host's, where each host holds only its own key). Empty when the
    /// servers ask for none (`client_auth = "no"`).
    pub pairs: Vec<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// The client side of a group's `[tls]`.
    pub fn of(tls: &Tls) -> ClientTls {
        ClientTls {
            ca_file: tls.ca_file.clone(),
            pairs: if tls.client_auth == ClientAuth::No {
                Vec::new()
            } else {
                tls.pairs()
            },
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.bind, self.port)
    }
}

impl Endpoint {
    /// The endpoint of an instance of `group`, with the group's password (the first of
    /// two), as redisrepd's own user when the file declares `[[user]]`.
    pub fn of(group: &Group, inst: &Instance) -> Endpoint {
        Endpoint {
            bind: inst.bind,
            port: inst.port,
            user: crate::acl::daemon_user(group).map(str::to_owned),
            password: group.password().cloned(),
            fallback: group.passwords().into_iter().skip(1).cloned().collect(),
            tls: group.tls.as_ref().map(|t| Arc::new(ClientTls::of(t))),
        }
    }
}

/// Why a SHUTDOWN did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownError {
    /// Redis answered with an error and stays up: its final save failed.
    Refused(String),
    /// Redis answered with an error and stays up while it rewrites its AOF (its INFO
    /// persistence, asked before or after the SHUTDOWN, shows `aof_rewrite_in_progress`
    /// or `aof_rewrite_scheduled`): after a full sync with `appendonly yes` it refuses
    /// to exit until its initial AOF is written ("Writing initial AOF, can't exit").
    RewritingAof(String),
    /// No answer within the timeout.
    Timeout,
    /// Could not connect or authenticate.
    Unreachable(String),
}

impl std::fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShutdownError::Refused(m) => write!(f, "Redis refused to shut down: {m}"),
            ShutdownError::RewritingAof(m) => {
                write!(f, "Redis refused to shut down while rewriting its AOF: {m}")
            }
            ShutdownError::Timeout => f.write_str("Redis did not finish SHUTDOWN in time"),
            ShutdownError::Unreachable(m) => write!(f, "cannot reach Redis: {m}"),
        }
    }
}
