//! Asking a `redis_server` binary what it is (`<binary> --version`): the IO side of
//! [`redisrepd_core::server`], whose table says what each server can do.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redisrepd_core::server::Server;

/// How long `--version` may take before the binary is given up on.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks `binary` what it is (`<binary> --version`, killed after 10 s) and checks that
/// redisrepd supports it. Errors are sentences about the binary; callers add the file and
/// the `redis_server` key.
pub fn detect(binary: &Path) -> Result<Server, String> {
    let shown = binary.display();
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run `{shown} --version`: {e}"))?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown} --version` did not answer within {} s",
                    VERSION_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for `{shown} --version`: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(format!("`{shown} --version` failed ({status})"));
    }
    let server = Server::parse_version_output(&out).map_err(|e| format!("`{shown}`: {e}"))?;
    server
        .check_supported()
        .map_err(|e| format!("`{shown}`: {e}"))?;
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
        assert_eq!(detect(&good), Ok(valkey("8.1.8")));
        let old = script("old", "echo 'Redis server v=5.0.7 sha=0'");
        assert!(detect(&old).unwrap_err().contains("not supported"));
        let failing = script("failing", "exit 3");
        assert!(detect(&failing).unwrap_err().contains("failed"));
        assert!(
            detect(&dir.path().join("missing"))
                .unwrap_err()
                .contains("cannot run")
        );
    }
}
