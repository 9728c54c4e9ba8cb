//! The serde mirror of the TOML file: field names are the contract of `docs/reference/config.md`.
//!
//! Only shape lives here (types, unknown keys, single-field rules such as name syntax).
//! Cross-field rules belong to `validate`, which turns these types into the model.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub cluster: RawCluster,
    #[serde(default)]
    pub supervise: RawSupervise,
    #[serde(default)]
    pub redis: toml::Table,
    #[serde(default)]
    pub instance: Vec<RawInstance>,
    /// `[metrics]`: the older name of `[http]`.
    #[serde(default)]
    pub metrics: RawHttp,
    #[serde(default)]
    pub http: RawHttp,
    pub sentinel: Option<RawSentinel>,
    #[serde(default)]
    pub hooks: RawHooks,
    #[serde(default)]
    pub backup: RawBackup,
    pub tls: Option<RawTls>,
    /// `[[user]]`: ACL users set on every instance.
    #[serde(default)]
    pub user: Vec<RawUser>,
}

/// One `[[user]]`: an ACL user, its password file(s) and its rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    pub password_file: Option<PathBuf>,
    pub password_files: Option<Vec<PathBuf>>,
    pub rules: String,
}

/// `[tls]`: every link encrypted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: PerHostPath,
    pub key_file: PerHostPath,
    pub ca_file: PathBuf,
    pub client_auth: Option<String>,
}

/// `cert_file = "PATH"` (every host) or `cert_file = { db1 = "PATH", db2 = "PATH" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum PerHostPath {
    Every(PathBuf),
    PerHost(Vec<(String, PathBuf)>),
}

impl TryFrom<toml::Value> for PerHostPath {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        match value {
            toml::Value::String(s) => Ok(PerHostPath::Every(s.into())),
            toml::Value::Table(t) => {
                let mut hosts = Vec::new();
                for (host, v) in t {
                    let toml::Value::String(s) = v else {
                        return Err(format!(
                            "the path for host `{host}` is not a string: write {host} = \"PATH\""
                        ));
                    };
                    hosts.push((host, PathBuf::from(s)));
                }
                Ok(PerHostPath::PerHost(hosts))
            }
            _ => Err("write one path for every host, \"PATH\", or one per host, \
                 { db1 = \"PATH\", db2 = \"PATH\" }"
                .to_owned()),
        }
    }
}

/// `[hooks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    /// `["PROGRAM", "ARG", ...]`, run after each change of master.
    pub on_role_change: Option<Vec<String>>,
    /// How long it may run before it is killed.
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub timeout: Option<Duration>,
}

/// `[backup]`: where backups go, and when the daemon takes them by itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    pub dir: Option<PathBuf>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub every: Option<Duration>,
    pub keep: Option<i64>,
    pub from: Option<String>,
    pub upload: Option<Vec<String>>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub upload_timeout: Option<Duration>,
}

/// `[sentinel]`: Sentinel decides failover.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinel {
    pub quorum: i64,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub down_after: Option<Duration>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub failover_timeout: Option<Duration>,
    pub nodes: Vec<RawSentinelNode>,
}

/// One entry of `[sentinel] nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinelNode {
    pub name: Name,
    pub host: String,
    pub bind: IpAddr,
    pub port: Port,
}

/// `[http]` (or its older name `[metrics]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Where `daemon` serves `/metrics` and the health endpoints.
    pub listen: Option<HttpListen>,
}

/// `listen = "ADDR:PORT"` (every host) or `listen = { host = "ADDR:PORT", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum HttpListen {
    Every(std::net::SocketAddr),
    PerHost(Vec<(String, std::net::SocketAddr)>),
}

impl TryFrom<toml::Value> for HttpListen {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        match value {
            toml::Value::String(s) => Listen::try_from(s).map(|l| HttpListen::Every(l.0)),
            toml::Value::Table(t) => {
                let mut hosts = Vec::new();
                for (host, v) in t {
                    let toml::Value::String(s) = v else {
                        return Err(format!(
                            "the address of host `{host}` is not a string: write                              {host} = \"ADDR:PORT\""
                        ));
                    };
                    let addr = Listen::try_from(s)
                        .map_err(|e| format!("host `{host}`: {e}"))?
                        .0;
                    hosts.push((host, addr));
                }
                Ok(HttpListen::PerHost(hosts))
            }
            _ => Err(
                "write one address for every host, listen = \"ADDR:PORT\", or one per \
                 host, listen = { db1 = \"ADDR:PORT\", db2 = \"ADDR:PORT\" }"
                    .to_owned(),
            ),
        }
    }
}

/// An `ADDR:PORT` to listen on (`[::1]:PORT` for IPv6).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Listen(pub std::net::SocketAddr);

impl TryFrom<String> for Listen {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse().map(Listen).map_err(|_| {
            format!(
                "`{value}` is not an address and port: write ADDR:PORT, e.g. \
                 \"127.0.0.1:9765\" (IPv6: \"[::1]:9765\")"
            )
        })
    }
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Name,
    pub password_file: Option<PathBuf>,
    /// One or two files: the first is used, both are accepted (rotation).
    pub password_files: Option<Vec<PathBuf>>,
    pub password: Option<String>,
    pub redis_server: Option<String>,
    pub run_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    pub user: Option<String>,
}

/// `[supervise]`: every key optional, defaults applied by `validate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSupervise {
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub start_timeout: Option<Duration>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub shutdown_timeout: Option<Duration>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub restart_delay: Option<Duration>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub restart_delay_max: Option<Duration>,
    pub crash_loop_limit: Option<u32>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub crash_loop_window: Option<Duration>,
    /// An integer or `"auto"`: any TOML value, so `validate` can name the key and say
    /// what is allowed instead of serde's "data did not match any variant".
    pub max_concurrent_syncs: Option<toml::Value>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub sync_timeout: Option<Duration>,
    #[serde(default, with = "jiff::fmt::serde::unsigned_duration::optional")]
    pub health_interval: Option<Duration>,
}

/// One `[[instance]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub name: Name,
    pub host: String,
    pub bind: IpAddr,
    /// More addresses it listens on (a virtual IP a hook moves), at the same port.
    #[serde(default)]
    pub extra_bind: Vec<IpAddr>,
    pub port: Port,
    pub replica_of: Option<String>,
    pub min_replicas_to_write: Option<u32>,
    pub min_replicas_max_lag: Option<u32>,
    #[serde(default)]
    pub redis: toml::Table,
}

/// A cluster or instance name: `[A-Za-z0-9_-]+`, because it becomes a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Ok(Name(value))
        } else {
            Err(format!(
                "`{value}` is not a valid name: use letters, digits, `_` and `-` only \
                 (it becomes part of file names)"
            ))
        }
    }
}

impl Name {
    /// The name as written.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A TCP port, 1-65535.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct Port(pub u16);

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match u16::try_from(value) {
            Ok(port) if port != 0 => Ok(Port(port)),
            _ => Err(format!("port {value} is out of range: use 1-65535")),
        }
    }
}
