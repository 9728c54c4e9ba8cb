//! The replication group as redisrepd understands it: the validated model of the TOML file.
//!
//! Two stages, as in `docs/reference/config.md`: `raw` mirrors the file for serde,
//! `validate` turns it into a [`Group`] and collects every problem at once. [`parse`] is
//! pure (text in, model out); `redisrepd_io::config_file::load` adds the file-system facts
//! (reading the TOML and the password file).
//! Nothing here starts processes or talks to Redis.
//!
//! The model itself is in `model` (re-exported here); `validate` builds it from `raw` and
//! never uses this module, so the only way between them runs one way.

mod model;
mod raw;
mod validate;

use std::path::Path;

pub use model::{
    Backup, Checked, ClientAuth, Cluster, ConfigError, Directive, Group, Hook, Hooks, Http,
    HttpListen, Instance, MaxSyncs, PasswordFile, PasswordSource, PerHost, Problem, Secret,
    Sentinel, SentinelNode, Supervise, Tls, User, breaks_redis_conf,
};
pub use validate::MANAGED_DIRECTIVES;

/// Parses and validates TOML text. Pure: relative paths are resolved against `base_dir`,
/// the password file is not read (`redisrepd_io::config_file::load` reads it).
pub fn parse(text: &str, source: &Path, base_dir: &Path) -> Result<Checked, ConfigError> {
    validate::parse(text, source, base_dir)
}

#[cfg(test)]
mod tests;
