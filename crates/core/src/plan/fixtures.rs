//! Groups and servers the plan's tests share.

use std::path::Path;

use crate::config::Group;
use crate::server::Server;

pub(super) const CASCADE: &str = r#"
[cluster]
name = "t"
password = "pw"
[[instance]]
name = "m"
host = "a"
bind = "127.0.0.1"
port = 1
min_replicas_to_write = 1
[[instance]]
name = "leaf"
host = "b"
bind = "127.0.0.1"
port = 4
replica_of = "r1"
[[instance]]
name = "r1"
host = "b"
bind = "127.0.0.1"
port = 2
replica_of = "m"
[[instance]]
name = "r2"
host = "b"
bind = "127.0.0.1"
port = 3
replica_of = "m"
"#;

pub(super) fn group(text: &str) -> Group {
    crate::config::parse(text, Path::new("/t.toml"), Path::new("/"))
        .unwrap()
        .group
}

pub(super) const R70: Server = Server {
    kind: crate::server::Kind::Redis,
    version: crate::server::Version {
        major: 7,
        minor: 0,
        patch: 15,
    },
};

pub(super) fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(super) fn server(kind: crate::server::Kind, major: u32, minor: u32) -> Server {
    Server {
        kind,
        version: crate::server::Version {
            major,
            minor,
            patch: 0,
        },
    }
}

pub(super) const LOCAL: &str = r#"
[cluster]
name = "t"
[[instance]]
name = "m"
host = "a"
bind = "127.0.0.1"
port = 1
[[instance]]
name = "r1"
host = "a"
bind = "127.0.0.1"
port = 2
replica_of = "m"
[[instance]]
name = "r2"
host = "a"
bind = "127.0.0.1"
port = 3
replica_of = "m"
"#;
