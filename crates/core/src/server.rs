//! Which server a `redis_server` binary (or a running instance) is: Redis or Valkey, and
//! its version, and what follows from that (directives it knows, RDB version, SHUTDOWN
//! flags, FAILOVER, process name). Pure: asking a binary is `redisrepd_io::server_detect`.

use std::fmt;

use crate::info::Info;

/// Redis or Valkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Redis,
    Valkey,
}

impl Kind {
    /// Lower-case name, as shown to users ("redis", "valkey").
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Valkey => "valkey",
        }
    }
}

/// A server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Parses `7.0.15` (a missing patch counts as 0; trailing text after digits is ignored).
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split('.');
        let num = |p: Option<&str>| -> Option<u32> {
            let p = p?;
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = num(parts.next()).unwrap_or(0);
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    const fn new(major: u32, minor: u32) -> Version {
        Version {
            major,
            minor,
            patch: 0,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A server: what it is and which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Server {
    pub kind: Kind,
    pub version: Version,
}

impl fmt::Display for Server {
    /// "redis 7.0.15", "valkey 8.1.8".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.version)
    }
}

/// The process names (`/proc/PID/comm`) of every server kind.
pub const PROCESS_NAMES: [&str; 2] = ["redis-server", "valkey-server"];

/// The oldest versions redisrepd supports.
const OLDEST_REDIS: Version = Version::new(6, 2);
const OLDEST_VALKEY: Version = Version::new(7, 2);

impl Server {
    /// What is assumed when the binary cannot be asked (it is not installed here, e.g.
    /// `render` on a workstation): the newest Redis behaviour.
    pub const NEWEST_REDIS: Server = Server {
        kind: Kind::Redis,
        version: Version::new(8, 0),
    };

    /// Parses the output of `<binary> --version`:
    /// `Redis server v=7.0.15 sha=... malloc=... bits=64 build=...` or
    /// `Valkey server v=8.1.8 ...`.
    pub fn parse_version_output(text: &str) -> Result<Server, String> {
        let line = text.lines().next().unwrap_or("").trim();
        let kind = if line.starts_with("Redis server ") {
            Kind::Redis
        } else if line.starts_with("Valkey server ") {
            Kind::Valkey
        } else {
            return Err(format!(
                "its `--version` says `{line}`, which is neither a Redis nor a Valkey server"
            ));
        };
        let version = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .and_then(Version::parse)
            .ok_or_else(|| format!("no version in its `--version` output `{line}`"))?;
        Ok(Server { kind, version })
    }

    /// The server a running instance reports in `INFO server`: Valkey says
    /// `server_name:valkey` and `valkey_version` (its `redis_version` is frozen at 7.2.4).
    pub fn from_info(info: &Info) -> Option<Server> {
        if info.get("server_name") == Some("valkey") || info.get("valkey_version").is_some() {
            let version = Version::parse(info.get("valkey_version")?)?;
            return Some(Server {
                kind: Kind::Valkey,
                version,
            });
        }
        let version = Version::parse(info.get("redis_version")?)?;
        Some(Server {
            kind: Kind::Redis,
            version,
        })
    }

    /// Refuses servers older than redisrepd supports.
    pub fn check_supported(&self) -> Result<(), String> {
        let oldest = match self.kind {
            Kind::Redis => OLDEST_REDIS,
            Kind::Valkey => OLDEST_VALKEY,
        };
        if self.version < oldest {
            return Err(format!(
                "{self} is not supported: redisrepd needs Redis {} or newer, or Valkey {} or \
                 newer",
                short(OLDEST_REDIS),
                short(OLDEST_VALKEY)
            ));
        }
        Ok(())
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version >= Version::new(major, minor)
    }

    /// Whether it knows `repl-diskless-sync-max-replicas` (Redis 7.0+, every Valkey).
    pub fn knows_diskless_sync_max_replicas(&self) -> bool {
        self.kind == Kind::Valkey || self.at_least(7, 0)
    }

    /// The RDB format version it writes; it loads this and every older one.
    pub fn rdb_version(&self) -> u32 {
        match self.kind {
            Kind::Valkey => 11,
            Kind::Redis if self.at_least(7, 4) => 12,
            Kind::Redis if self.at_least(7, 2) => 11,
            Kind::Redis if self.at_least(7, 0) => 10,
            Kind::Redis => 9,
        }
    }

    /// Whether its AOF is a directory of parts with a manifest (`appenddirname`, Redis 7.0+,
    /// every Valkey) rather than the one file `appendfilename` in the data dir (6.2).
    pub fn multi_part_aof(&self) -> bool {
        self.kind == Kind::Valkey || self.at_least(7, 0)
    }

    /// Whether a master restarted from its RDB keeps its replication id (as
    /// `master_replid2`), so its replicas resume with a partial resync (Redis 7.0+, Valkey).
    pub fn master_restart_keeps_replid(&self) -> bool {
        self.kind == Kind::Valkey || self.at_least(7, 0)
    }

    /// Whether SHUTDOWN takes NOW, FORCE and ABORT (and `shutdown-timeout` exists).
    pub fn has_shutdown_flags(&self) -> bool {
        self.kind == Kind::Valkey || self.at_least(7, 0)
    }

    /// Whether it has the FAILOVER command (6.2+, so every supported server).
    pub fn has_failover(&self) -> bool {
        self.kind == Kind::Valkey || self.at_least(6, 2)
    }

    /// The process name (`/proc/PID/comm`) of its server process.
    pub fn process_name(&self) -> &'static str {
        match self.kind {
            Kind::Redis => "redis-server",
            Kind::Valkey => "valkey-server",
        }
    }
}

fn short(v: Version) -> String {
    format!("{}.{}", v.major, v.minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(v: &str) -> Server {
        Server {
            kind: Kind::Redis,
            version: Version::parse(v).unwrap(),
        }
    }
    fn valkey(v: &str) -> Server {
        Server {
            kind: Kind::Valkey,
            version: Version::parse(v).unwrap(),
        }
    }

    #[test]
    fn parses_version_output_of_both_servers() {
        let r = Server::parse_version_output(
            "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0\n",
        )
        .unwrap();
        assert_eq!(r, redis("7.0.15"));
        assert_eq!(r.to_string(), "redis 7.0.15");
        let v = Server::parse_version_output(
            "Valkey server v=8.1.8 sha=00000000:1 malloc=libc bits=64 build=7eb4ebc9d7e91f4e",
        )
        .unwrap();
        assert_eq!(v, valkey("8.1.8"));
        assert_eq!(v.to_string(), "valkey 8.1.8");
        let err = Server::parse_version_output("KeyDB server v=6.3.4").unwrap_err();
        assert!(err.contains("neither a Redis nor a Valkey"), "{err}");
        let err = Server::parse_version_output("Redis server sha=1").unwrap_err();
        assert!(err.contains("no version"), "{err}");
    }

    #[test]
    fn reads_the_server_from_info() {
        let valkey_info = Info::parse(
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\n",
        );
        assert_eq!(Server::from_info(&valkey_info), Some(valkey("8.1.8")));
        let redis_info = Info::parse("redis_version:6.2.14\r\nredis_mode:standalone\r\n");
        assert_eq!(Server::from_info(&redis_info), Some(redis("6.2.14")));
        assert_eq!(Server::from_info(&Info::parse("role:master\r\n")), None);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(Version::parse("7.10.0").unwrap() > Version::parse("7.2.4").unwrap());
        assert_eq!(Version::parse("8.0").unwrap().to_string(), "8.0.0");
        assert_eq!(Version::parse("x"), None);
    }

    #[test]
    fn capabilities_follow_the_version_table() {
        let r62 = redis("6.2.14");
        let r70 = redis("7.0.15");
        let v81 = valkey("8.1.8");
        assert!(!r62.knows_diskless_sync_max_replicas());
        assert!(r70.knows_diskless_sync_max_replicas());
        assert!(v81.knows_diskless_sync_max_replicas());
        assert!(valkey("7.2.5").knows_diskless_sync_max_replicas());
        let rdb: Vec<u32> = ["6.2.0", "7.0.0", "7.2.4", "7.4.1", "8.0.2", "8.2.0"]
            .iter()
            .map(|v| redis(v).rdb_version())
            .collect();
        assert_eq!(rdb, [9, 10, 11, 12, 12, 12]);
        assert_eq!(valkey("7.2.5").rdb_version(), 11);
        assert_eq!(v81.rdb_version(), 11);
        assert!(!r62.master_restart_keeps_replid() && r70.master_restart_keeps_replid());
        assert!(v81.master_restart_keeps_replid());
        assert!(!r62.has_shutdown_flags() && r70.has_shutdown_flags());
        assert!(r62.has_failover() && v81.has_failover());
        assert_eq!(r70.process_name(), "redis-server");
        assert_eq!(v81.process_name(), "valkey-server");
        assert!(PROCESS_NAMES.contains(&r62.process_name()));
        assert!(PROCESS_NAMES.contains(&v81.process_name()));
    }

    #[test]
    fn old_servers_are_refused() {
        let err = redis("6.0.16").check_supported().unwrap_err();
        assert!(err.contains("redis 6.0.16 is not supported"), "{err}");
        assert!(
            err.contains("Redis 6.2") && err.contains("Valkey 7.2"),
            "{err}"
        );
        assert!(redis("6.2.0").check_supported().is_ok());
        assert!(valkey("7.0.0").check_supported().is_err());
        assert!(valkey("7.2.0").check_supported().is_ok());
    }
}
