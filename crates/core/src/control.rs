//! The control protocol between the CLI and a daemon: the requests and responses, one JSON
//! line each on a Unix socket (`redisrepd_io::control_socket` carries them). Shared by both
//! sides so they cannot drift apart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backup::BackupStatus;
use crate::status::InstanceStatus;

/// The longest request line a daemon reads; anything longer is cut off.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// What a client asks of a daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Start these instances (empty: all of this host's).
    Start { instances: Vec<String> },
    /// Stop these instances (empty: all of this host's).
    Stop { instances: Vec<String>, force: bool },
    /// Restart these instances one at a time (empty: all of this host's).
    Restart { instances: Vec<String>, force: bool },
    /// Report every local instance.
    Status,
    /// Re-read the TOML and apply the difference.
    Reload,
    /// Planned switchover to `to` (default: the most up-to-date replica of the master).
    Failover { to: Option<String>, force: bool },
    /// The master is gone: make `instance` the master.
    Promote { instance: String, force: bool },
    /// Maintenance pause for `for_ms` milliseconds: nothing automatic until then.
    Pause { for_ms: u64 },
    /// End the maintenance pause.
    Resume,
    /// The changes of master this daemon recorded.
    History,
    /// Take a backup on `instance` (run by this daemon) into `to` (default `[backup] dir`).
    Backup {
        instance: String,
        to: Option<PathBuf>,
    },
    /// Report this daemon's backups.
    BackupStatus,
    /// Replace the data of this host's instances, which must all be stopped: set every
    /// data file aside (`*.before-restore`) and give the snapshot `file` to `master` when
    /// this daemon runs it.
    Restore { file: PathBuf, master: String },
}

/// What a daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// The operation ended; `lines` say what happened, in order; `failed` are the indices
    /// of the lines that say what failed (the client prints them as errors).
    Done {
        ok: bool,
        lines: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<usize>,
    },
    /// The daemon's view of its instances.
    Status {
        host: String,
        instances: Vec<InstanceStatus>,
        /// How long this daemon's maintenance pause still holds (absent: not paused).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paused_for_ms: Option<u64>,
        /// The daemon's HTTP listener (`[http] listen`), when it has one.
        #[serde(default)]
        http: Option<crate::status::HttpEndpoint>,
        /// `[tls]`: the certificate files this host uses and when each ends.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tls_cert_expiry: Vec<crate::tls::CertExpiry>,
    },
    /// The changes of master a daemon recorded, oldest first.
    History {
        host: String,
        changes: Vec<crate::changes::Change>,
    },
    /// This daemon's backups.
    Backup { status: BackupStatus },
    /// The request was not understood or cannot be carried out.
    Error { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        for req in [
            Request::Start {
                instances: vec!["a".into()],
            },
            Request::Stop {
                instances: vec![],
                force: true,
            },
            Request::Restart {
                instances: vec!["a".into(), "b".into()],
                force: false,
            },
            Request::Status,
            Request::Reload,
            Request::History,
            Request::Backup {
                instance: "r1".into(),
                to: Some("/b".into()),
            },
            Request::BackupStatus,
            Request::Restore {
                file: "/b/x.rdb".into(),
                master: "m".into(),
            },
        ] {
            let text = serde_json::to_string(&req).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        }
        let resp = Response::Done {
            ok: false,
            lines: vec!["x".into(), "y".into()],
            failed: vec![1],
        };
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), resp);
        let resp = Response::History {
            host: "a".into(),
            changes: vec![crate::changes::Change {
                time: jiff::Timestamp::UNIX_EPOCH,
                old_master: "m".into(),
                new_master: "r1".into(),
                reason: crate::changes::Reason::Failover,
                repl_id: None,
                seen_by: vec!["a".into()],
            }],
        };
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), resp);
    }
}
