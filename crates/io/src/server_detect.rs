//! Asking a `redis_server` binary what it is (`<binary> --version`): the IO side of
//! [`redisrepd_core::server`], whose table says what each server can do.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redisrepd_core::server::Server;

/// How long `--version` may take before the binary is given up on.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`detect`] could not tell what a binary is, or refuses it. Each message is a
/// sentence about the binary; callers add the file and the `redis_server` key.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// It could not be started.
    #[error("cannot run `{} --version`: {source}", .binary.display())]
    CannotRun {
        binary: PathBuf,
        source: std::io::Error,
    },
    /// It did not exit within [`VERSION_TIMEOUT`] (it was killed).
    #[error("`{} --version` did not answer within {} s", .binary.display(), VERSION_TIMEOUT.as_secs())]
    Timeout { binary: PathBuf },
    /// Waiting for it failed.
    #[error("waiting for `{} --version`: {source}", .binary.display())]
    Wait {
        binary: PathBuf,
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("`{} --version` failed ({status})", .binary.display())]
    Failed {
        binary: PathBuf,
        status: std::process::ExitStatus,
    },
    /// Its output names no Redis or Valkey version.
    #[error("`{}`: {reason}", .binary.display())]
    Unrecognized { binary: PathBuf, reason: String },
    /// A server redisrepd does not support (too old).
    #[error("`{}`: {reason}", .binary.display())]
    Unsupported {
        binary: PathBuf,
        server: Server,
        reason: String,
    },
}

/// Asks `binary` what it is (`<binary> --version`, killed after 10 s) and checks that
/// redisrepd supports it.
pub fn detect(binary: &Path) -> Result<Server, DetectError> {
    let path = || binary.to_path_buf();
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| DetectError::CannotRun {
            binary: path(),
            source,
        })?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DetectError::Timeout { binary: path() });
            }
            Err(source) => {
                return Err(DetectError::Wait {
                    binary: path(),
                    source,
                });
            }
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(DetectError::Failed {
            binary: path(),
            status,
        });
    }
    let server =
        Server::parse_version_output(&out).map_err(|reason| DetectError::Unrecognized {
            binary: path(),
            reason,
        })?;
    server
        .check_supported()
        .map_err(|reason| DetectError::Unsupported {
            binary: path(),
            server,
            reason,
        })?;
    Ok(server)
}

/// The configured `redis_server` of `group`, resolved on PATH and asked what it is. The
/// error names the file and the key.
pub fn configured(
    group: &redisrepd_core::config::Group,
    config: &Path,
) -> Result<(PathBuf, Server), String> {
    let name = &group.cluster.redis_server;
    let key = format!("{}: key `redis_server`", config.display());
    let path = crate::process::find_redis_server(name).map_err(|e| format!("{key}: {e}"))?;
    let server = detect(&path).map_err(|e| {
        format!("{key}: {e}; set `redis_server` in [cluster] to a Redis 6.2+ or Valkey 7.2+ server")
    })?;
    Ok((path, server))
}

/// For verbs that only read the file (`check`, `render`): the configured server when it is
/// installed here; otherwise the newest Redis behaviour and a note saying so. A binary that
/// is there but unsupported is still an error.
pub fn configured_or_newest(
    group: &redisrepd_core::config::Group,
    config: &Path,
) -> Result<(Server, Option<String>), String> {
    if crate::process::find_redis_server(&group.cluster.redis_server).is_err() {
        let note = format!(
            "{}: key `redis_server`: `{}` is not installed here, so the output is for {} \
             (the newest Redis behaviour); it may differ for the server the daemon runs",
            config.display(),
            group.cluster.redis_server,
            Server::NEWEST_REDIS
        );
        return Ok((Server::NEWEST_REDIS, Some(note)));
    }
    configured(group, config).map(|(_, s)| (s, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redisrepd_core::server::{Kind, Version};

    fn valkey(v: &str) -> Server {
        Server {
            kind: Kind::Valkey,
            version: Version::parse(v).unwrap(),
        }
    }

    #[test]
    fn detect_runs_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let good = script(
            "good",
            "echo 'Valkey server v=8.1.8 sha=0 malloc=libc bits=64'",
        );
        assert_eq!(detect(&good).ok(), Some(valkey("8.1.8")));
        let old = script("old", "echo 'Redis server v=5.0.7 sha=0'");
        let err = detect(&old).unwrap_err();
        assert!(matches!(err, DetectError::Unsupported { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "`{}`: redis 5.0.7 is not supported: redisrepd needs Redis 6.2 or newer, or \
                 Valkey 7.2 or newer",
                old.display()
            )
        );
        let failing = script("failing", "exit 3");
        let err = detect(&failing).unwrap_err();
        assert!(matches!(err, DetectError::Failed { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("`{} --version` failed (exit status: 3)", failing.display())
        );
        let other = script("other", "echo 'KeyDB server v=6.3.4'");
        let err = detect(&other).unwrap_err();
        assert!(matches!(err, DetectError::Unrecognized { .. }), "{err:?}");
        let err = detect(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, DetectError::CannotRun { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot run `"), "{err}");
    }
}
