//! Backups and restores (`redisrepd backup`, `[backup]`, `redisrepd restore`): which
//! instance a snapshot comes from, what the files are called, which old ones a schedule
//! prunes, and which data files a restore replaces. This module decides and does no IO;
//! [`take`] saves and copies a snapshot, [`place`] puts one in a data dir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Group, Instance};
use crate::info::Info;
use crate::server::Server;

/// What the JSON file beside a backup says (`<cluster>-<time>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub cluster: String,
    /// The instance the snapshot was taken on, and its host.
    pub instance: String,
    pub host: String,
    /// Its server, e.g. `"redis 7.0.15"`.
    pub server: String,
    /// When the snapshot was saved (UTC, RFC 3339).
    pub taken_at: String,
    /// The RDB format version.
    pub rdb_version: u32,
    /// The replication history the RDB carries (its `repl-id` and `repl-offset` fields).
    pub repl_id: Option<String>,
    pub repl_offset: Option<i64>,
    /// Keys in every database, from the instance's INFO just before the save.
    pub keys: i64,
    /// The RDB's size.
    pub bytes: u64,
    /// The RDB's own CRC64 (hex), checked over the copy; `null` when the server saves
    /// without a checksum (`rdbchecksum no`).
    pub crc64: Option<String>,
    /// The server that loaded the copy in a throw-away directory (the configured
    /// `redis_server`); `null` when the backup is too big for that to be cheap.
    #[serde(default)]
    pub load_tested_by: Option<String>,
}

/// What a daemon knows of its backups, for `status` and the metrics. Counts since the
/// daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// The daemon's host.
    pub host: String,
    /// A backup is being taken now.
    pub running: bool,
    /// When the last backup that verified was taken (Unix seconds), and where it went.
    pub last_success_unix: Option<i64>,
    pub last_file: Option<String>,
    pub last_size_bytes: Option<u64>,
    /// Backups that failed (saving, copying, verifying, pruning or uploading).
    pub failures_total: u64,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// `[backup] every`, in seconds, when backups are scheduled.
    pub every_s: Option<u64>,
}

impl BackupStatus {
    /// Whether there is anything to show: a schedule, or a backup taken or tried.
    pub fn is_empty(&self) -> bool {
        self.every_s.is_none()
            && !self.running
            && self.last_success_unix.is_none()
            && self.failures_total == 0
    }

    /// One line for `status`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        match (self.last_success_unix, &self.last_file) {
            (Some(t), Some(f)) => {
                let at = jiff::Timestamp::from_second(t)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let size = self.last_size_bytes.unwrap_or(0);
                parts.push(format!("last {at} ({size} bytes) {f}"));
            }
            _ => parts.push("none taken yet".to_owned()),
        }
        if let Some(e) = self.every_s {
            parts.push(format!("every {e}s"));
        }
        if self.running {
            parts.push("one running now".to_owned());
        }
        if self.failures_total > 0 {
            parts.push(format!(
                "{} failed, last: {}",
                self.failures_total,
                self.last_error.as_deref().unwrap_or("?")
            ));
        }
        format!("backup (host {}): {}", self.host, parts.join("; "))
    }
}

/// Where a replica replicates from, by name (its INFO's `master_host`/`master_port`).
fn upstream_of<'a>(group: &'a Group, info: &Info) -> Option<&'a Instance> {
    let host = info.get("master_host")?;
    let port = info.int("master_port")?;
    crate::topology::instance_at(group, host, u16::try_from(port).ok()?)
}

/// Why `name` (a replica) cannot give a backup now, or `None` when it is in sync.
fn not_in_sync(group: &Group, infos: &HashMap<String, Info>, inst: &Instance) -> Option<String> {
    let info = &infos[&inst.name];
    if info.sync_in_progress() || info.loading() {
        return Some("it is syncing".to_owned());
    }
    let Some(up) = upstream_of(group, info) else {
        return Some("its master is not an instance of this file".to_owned());
    };
    let Some(up_info) = infos.get(&up.name) else {
        return Some(format!("its master `{}` does not answer", up.name));
    };
    if !info.in_sync_with(up_info, inst.bind, inst.port) {
        return Some(format!("it is not in sync with `{}`", up.name));
    }
    None
}

/// The instance a backup is taken on: `[backup] from` when set (refused while it is a
/// replica that is not in sync: its snapshot would be stale, or it is syncing), else the
/// first replica in file order that is in sync with its upstream, else the group's actual
/// master (the one that answers as master and most others replicate from). `infos` holds
/// the INFO of every instance that answered.
pub fn choose_source<'a>(
    group: &'a Group,
    infos: &HashMap<String, Info>,
) -> Result<&'a Instance, String> {
    let is_replica = |i: &Instance| infos.get(&i.name).and_then(Info::role) == Some("replica");
    if let Some(from) = &group.backup.from {
        let inst = group
            .instance(from)
            .ok_or_else(|| format!("[backup] from: no instance `{from}`"))?;
        if !infos.contains_key(from) {
            return Err(format!(
                "`{from}` ([backup] from) does not answer: start it, or remove `from`"
            ));
        }
        if is_replica(inst)
            && let Some(why) = not_in_sync(group, infos, inst)
        {
            return Err(format!(
                "`{from}` ([backup] from) cannot give a backup now: {why}; try again once it \
                 is in sync"
            ));
        }
        return Ok(inst);
    }
    if let Some(replica) = group
        .instances
        .iter()
        .find(|i| is_replica(i) && not_in_sync(group, infos, i).is_none())
    {
        return Ok(replica);
    }
    let followers = |m: &Instance| {
        infos
            .values()
            .filter(|i| upstream_of(group, i).is_some_and(|u| u.name == m.name))
            .count()
    };
    group
        .instances
        .iter()
        .filter(|i| infos.get(&i.name).and_then(Info::role) == Some("master"))
        .max_by_key(|m| (followers(m), m.is_master()))
        .ok_or_else(|| "no instance of the group answers: nothing to back up".to_owned())
}

/// `<cluster>-<UTC time>.rdb`, e.g. `main-20261202T080102Z.rdb`: sorting the names sorts
/// the backups by time.
pub fn file_name(cluster: &str, at: jiff::Timestamp) -> String {
    format!("{cluster}-{}.rdb", at.strftime("%Y%m%dT%H%M%SZ"))
}

/// Whether `name` is one of `cluster`'s backups (exactly `<cluster>-<8 digits>T<6
/// digits>Z.rdb`: not another cluster's whose name starts the same, nor any other file).
pub fn is_backup_of(cluster: &str, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(cluster)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix("Z.rdb"))
    else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 15
        && b[8] == b'T'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit)
}

/// The JSON file beside a backup.
pub fn record_path(rdb: &Path) -> PathBuf {
    rdb.with_extension("json")
}

/// Of the files named `names` in a backup dir, `cluster`'s backups (RDB names) to delete
/// so that the newest `keep` remain; the oldest first.
pub fn to_prune(cluster: &str, names: &[String], keep: u32) -> Vec<String> {
    let mut ours: Vec<&String> = names.iter().filter(|n| is_backup_of(cluster, n)).collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep as usize);
    ours.into_iter().take(excess).cloned().collect()
}

/// An instance's data files, as its configuration names them: what a restore sets aside
/// and replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFiles {
    /// `dbfilename` in the data dir.
    pub rdb: PathBuf,
    /// `appenddirname` (Redis 7.0+, Valkey) in the data dir.
    pub aof_dir: PathBuf,
    /// `appendfilename`: in the data dir for 6.2; the prefix of the parts in `aof_dir`
    /// for the others.
    pub aof_name: String,
    /// `appendonly yes`.
    pub aof_on: bool,
    /// The AOF is a directory with a manifest (see [`Server::multi_part_aof`]).
    pub multi_part: bool,
}

impl DataFiles {
    /// The data files of `inst` under `server`.
    pub fn of(group: &Group, inst: &Instance, server: &Server) -> DataFiles {
        let first = |key: &str, default: &str| {
            group
                .directive(inst, key)
                .and_then(|v| v.first().cloned())
                .unwrap_or_else(|| default.to_owned())
        };
        let data = group.data_path(inst);
        DataFiles {
            rdb: data.join(first("dbfilename", "dump.rdb")),
            aof_dir: data.join(first("appenddirname", "appendonlydir")),
            aof_name: first("appendfilename", "appendonly.aof"),
            aof_on: group
                .directive(inst, "appendonly")
                .is_some_and(|v| v.iter().any(|s| s.eq_ignore_ascii_case("yes"))),
            multi_part: server.multi_part_aof(),
        }
    }

    /// Every path that holds this instance's data (whether it exists or not): the RDB,
    /// the AOF directory, and a single-file AOF. AOF files are included with AOF off too:
    /// switched on later, an old AOF would bring old data back.
    pub fn all(&self) -> Vec<PathBuf> {
        let single = self
            .rdb
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.aof_name);
        vec![self.rdb.clone(), self.aof_dir.clone(), single]
    }

    /// What a master restored from a snapshot must find so that it loads the snapshot and
    /// nothing else: the RDB always; with `appendonly yes` also an AOF made of it, because
    /// a server with AOF on loads only its AOF and, finding none, starts empty (measured
    /// on 6.2, 7.0, 8.0 and Valkey 8.1). 7.0+ load an AOF directory whose manifest names
    /// the RDB as its base; 6.2 loads an `appendonly.aof` that is an RDB (the RDB preamble
    /// of `aof-use-rdb-preamble`). The manifest's text is returned with the base's path.
    pub fn restored_layout(&self) -> Vec<(PathBuf, Option<String>)> {
        let mut files = vec![(self.rdb.clone(), None)];
        if !self.aof_on {
            return files;
        }
        if self.multi_part {
            let base = format!("{}.1.base.rdb", self.aof_name);
            files.push((self.aof_dir.join(&base), None));
            files.push((
                self.aof_dir.join(format!("{}.manifest", self.aof_name)),
                Some(format!("file {base} seq 1 type b\n")),
            ));
        } else {
            files.push((self.all()[2].clone(), None));
        }
        files
    }
}

/// Refuses a snapshot that one of `servers` cannot load (RDB version, or Valkey's own
/// format on Redis).
pub fn refuse_unloadable(header: crate::rdb::Header, servers: &[Server]) -> Result<(), String> {
    for server in servers {
        crate::rdb::loadable_by(header, server)?;
    }
    Ok(())
}

/// The name a data file is set aside as: `<path>.before-restore`, or with `.2`, `.3`, ...
/// after it when an earlier restore left that one (nothing is ever deleted).
pub fn aside_path(path: &Path, exists: impl Fn(&Path) -> bool) -> PathBuf {
    let base = format!("{}.before-restore", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 2;
    while exists(&candidate) {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests;
