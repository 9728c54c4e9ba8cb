//! Taking a backup: `BGSAVE` on the chosen instance, the saved RDB copied atomically into
//! the backup dir and verified on the way, its JSON record beside it; pruning old ones and
//! running `upload`. Blocking IO with deadlines: run it off the supervisor thread.

use crate::redis_io::Client as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_io::{BgsaveError, Endpoint};
use redisrepd_core::backup::Record;
use redisrepd_core::config::{Group, Instance};
use redisrepd_core::info::Info;
use redisrepd_core::rdb::{self, Verifier};
use redisrepd_core::server::Server;

/// The biggest backup a load test is run on: loading takes as much memory as the data.
pub const LOAD_TEST_MAX_BYTES: u64 = 32 << 20;

/// How long the load test may take.
const LOAD_TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a snapshot may take to save before the backup is given up.
pub const SAVE_DEADLINE: Duration = Duration::from_secs(3600);

/// A backup in its place.
#[derive(Debug, Clone)]
pub struct Taken {
    pub path: PathBuf,
    pub record: Record,
}

/// Saves a snapshot on `source` (local to this host: its RDB is read from its data dir),
/// copies it to `dir` and verifies the copy. A replica must still be in sync when the save
/// starts. Nothing is left in `dir` when it fails.
///
/// With `load_test` (the configured server binary and its name), a backup of at most
/// [`LOAD_TEST_MAX_BYTES`] is also loaded by that server in a throw-away directory.
pub fn take(
    group: &Group,
    source: &Instance,
    dir: &Path,
    load_test: Option<(&Path, &str)>,
) -> Result<Taken, String> {
    let who = format!("`{}`", source.name);
    let ep = Endpoint::of(group, source);
    let t = Duration::from_secs(5);
    let before = ep.info(t).map_err(|e| format!("{who}: {e}"))?;
    if before.role() == Some("replica") && (before.sync_in_progress() || before.loading()) {
        return Err(format!("{who} is syncing: no backup from it now"));
    }
    let server = Server::from_info(&before)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let keys = before.keys();
    bgsave(&ep, &before, SAVE_DEADLINE).map_err(|e| format!("{who}: {e}"))?;
    let saved = redisrepd_core::backup::DataFiles::of(group, source, &Server::NEWEST_REDIS).rdb;
    create_dir(dir)?;
    // Names have seconds: another daemon's backup (say, one the master's host took while
    // the replicas were syncing) may have taken this one; never replaced, try the next.
    let mut attempt = 0;
    let (at, path, verified, head) = loop {
        attempt += 1;
        let at = jiff::Timestamp::now();
        let path = dir.join(redisrepd_core::backup::file_name(&group.cluster.name, at));
        let taken = path.exists();
        let copied = if taken {
            Err(format!("{} already exists", path.display()))
        } else {
            copy_verified(&saved, &path, Place::NoClobber)
        };
        match copied {
            Ok((verified, head)) => break (at, path, verified, head),
            Err(e) if attempt < 3 && path.exists() => {
                tracing::debug!("{e}; trying the next second's name");
                std::thread::sleep(Duration::from_millis(1000));
            }
            Err(e) => return Err(e),
        }
    };
    let load_tested_by = match load_test {
        Some((binary, name)) if verified.bytes <= LOAD_TEST_MAX_BYTES => {
            if let Err(e) = self::load_test(binary, &path, LOAD_TEST_TIMEOUT) {
                let _ = fs::remove_file(&path);
                return Err(format!("{name} cannot load the backup: {e}"));
            }
            Some(name.to_owned())
        }
        _ => None,
    };
    let position = rdb::repl_position(&head);
    let record = Record {
        cluster: group.cluster.name.clone(),
        instance: source.name.clone(),
        host: source.host.clone(),
        server,
        taken_at: at.to_string(),
        rdb_version: verified.header.version,
        repl_id: position.as_ref().map(|p| p.repl_id.clone()),
        repl_offset: position.map(|p| p.offset),
        keys,
        bytes: verified.bytes,
        crc64: verified.checksum.map(|c| format!("{c:016x}")),
        load_tested_by,
    };
    let json = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())? + "\n";
    let record_path = redisrepd_core::backup::record_path(&path);
    if let Err(e) = crate::files::write_atomic(&record_path, json.as_bytes(), 0o600)
        .and_then(|()| sync_dir(dir))
    {
        let _ = fs::remove_file(&path);
        return Err(format!("cannot write {}: {e}", record_path.display()));
    }
    Ok(Taken { path, record })
}

/// `BGSAVE`, and waits until that save has ended well: no save in progress, the last
/// one `ok`, and more saves than before (`rdb_saves`, 7.0+) or a newer `rdb_last_save_time`
/// (6.2, whose clock is in seconds: the save starts in a second after the last one).
/// A save or AOF rewrite already under way is waited out first.
fn bgsave(ep: &Endpoint, before: &Info, deadline: Duration) -> Result<(), String> {
    let until = Instant::now() + deadline;
    let t = Duration::from_secs(5);
    let mut before = before.clone();
    let mut conn = ep.connect(t).map_err(|e| e.to_string())?;
    loop {
        if before.int("rdb_saves").is_none() {
            // A save that ended in this second would look like ours.
            let last = before.int("rdb_last_save_time").unwrap_or(0);
            while jiff::Timestamp::now().as_second() <= last && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        match crate::redis_io::bgsave_on(&mut conn) {
            Ok(()) => break,
            Err(BgsaveError::InProgress(_)) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(200));
                before = ep.info(t)?;
            }
            Err(e) => return Err(format!("BGSAVE failed: {e}")),
        }
    }
    loop {
        let now = ep.info(t)?;
        let ended = now.int("rdb_bgsave_in_progress") == Some(0);
        let newer = match (now.int("rdb_saves"), before.int("rdb_saves")) {
            (Some(n), Some(b)) => n > b,
            _ => now.int("rdb_last_save_time") > before.int("rdb_last_save_time"),
        };
        if ended && newer {
            return match now.get("rdb_last_bgsave_status") {
                Some("ok") => Ok(()),
                other => Err(format!(
                    "its BGSAVE failed (rdb_last_bgsave_status:{}); see its log",
                    other.unwrap_or("?")
                )),
            };
        }
        if ended && now.get("rdb_last_bgsave_status") == Some("err") {
            return Err("its BGSAVE failed (rdb_last_bgsave_status:err); see its log".into());
        }
        if Instant::now() >= until {
            return Err(format!(
                "its BGSAVE did not finish within {}s",
                deadline.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `binary` on the RDB `rdb` in a throw-away directory (no TCP port, a Unix socket
/// in that directory only, nothing saved), and waits for it to say it loaded the data; then kills
/// it.
pub fn load_test(binary: &Path, rdb: &Path, timeout: Duration) -> Result<(), String> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
    std::os::unix::fs::symlink(rdb, dir.path().join("dump.rdb"))
        .map_err(|e| format!("cannot link the backup into {}: {e}", dir.path().display()))?;
    let mut child = Command::new(binary)
        .arg("--port")
        .arg("0")
        .arg("--dir")
        .arg(dir.path())
        // A server that listens nowhere exits: a socket in the private temp dir (0700).
        .arg("--unixsocket")
        .arg(dir.path().join("s"))
        .args(["--unixsocketperm", "700"])
        .args([
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--logfile", ""])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let until = Instant::now() + timeout;
    let mut last = Vec::new();
    let verdict = loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) if line.contains("DB loaded from disk") => break Ok(()),
            Ok(line) => {
                last.push(line);
                if last.len() > 5 {
                    last.remove(0);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break Err(format!("it exited: {}", last.join(" / ")));
            }
            Err(_) if left.is_zero() => {
                break Err(format!("not loaded within {}s", timeout.as_secs()));
            }
            Err(_) => {}
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    verdict
}

/// Creates the backup dir (mode 0750) if missing; an existing one keeps its mode.
fn create_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    crate::files::ensure_dir(dir, 0o750)
        .map_err(|e| format!("cannot create the backup dir {}: {e}", dir.display()))
}

/// Copies `from` to `to` through a temp file (mode 0600: it holds the data) that is
/// verified as an RDB, fsynced, then renamed into place; fsyncs the dir. Returns the
/// verdict and the file's first bytes. Nothing is left at `to` on failure.
pub fn copy_verified(
    from: &Path,
    to: &Path,
    place: Place,
) -> Result<(rdb::Verified, Vec<u8>), String> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut src =
            File::open(from).map_err(|e| format!("cannot open {}: {e}", from.display()))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let mut verifier = Verifier::new();
        let mut head = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", from.display()))?;
            if n == 0 {
                break;
            }
            if head.len() < rdb::HEAD_BYTES {
                let want = (rdb::HEAD_BYTES - head.len()).min(n);
                head.extend_from_slice(&buf[..want]);
            }
            verifier.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        let verified = verifier
            .finish()
            .map_err(|e| format!("{}: {e}", from.display()))?;
        out.sync_all()
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        match place {
            Place::Replace => fs::rename(&tmp, to)
                .map_err(|e| format!("cannot rename to {}: {e}", to.display()))?,
            // A link fails when the name exists; a rename would replace it.
            Place::NoClobber => {
                fs::hard_link(&tmp, to)
                    .map_err(|e| format!("cannot link {}: {e}", to.display()))?;
                let _ = fs::remove_file(&tmp);
            }
        }
        sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
        Ok((verified, head))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// How [`copy_verified`] puts its copy in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Over whatever has that name.
    Replace,
    /// Only if nothing has that name.
    NoClobber,
}

/// fsync on a directory: a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Verifies a whole file as an RDB.
pub fn verify_file(path: &Path) -> Result<rdb::Verified, String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut verifier = Verifier::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n]);
    }
    verifier
        .finish()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Deletes all but the newest `keep` of `cluster`'s backups in `dir` (each RDB with its
/// JSON); returns what it deleted, or why it could not.
pub fn prune(dir: &Path, cluster: &str, keep: u32) -> Result<Vec<PathBuf>, String> {
    let names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut gone = Vec::new();
    for name in redisrepd_core::backup::to_prune(cluster, &names, keep) {
        let rdb = dir.join(&name);
        fs::remove_file(&rdb).map_err(|e| format!("cannot delete {}: {e}", rdb.display()))?;
        let _ = fs::remove_file(redisrepd_core::backup::record_path(&rdb));
        gone.push(rdb);
    }
    Ok(gone)
}

/// The arguments of `upload`: each `{}` replaced by the backup's path, or the path
/// appended when there is none (`rclone copy {} remote:dir` and `aws s3 cp {} s3://b/`
/// take the destination last).
pub fn upload_args(args: &[String], path: &Path) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = args
        .iter()
        .map(|a| {
            if a == "{}" {
                path.as_os_str().to_owned()
            } else {
                a.into()
            }
        })
        .collect();
    if !args.iter().any(|a| a == "{}") {
        out.push(path.as_os_str().to_owned());
    }
    out
}

/// Runs `[backup] upload` with the backup's path in place of `{}` or appended (no shell),
/// killed after `timeout`. Returns its output (stdout then stderr) when it exits 0.
pub fn upload(program: &[String], path: &Path, timeout: Duration) -> Result<String, String> {
    let (cmd, args) = program
        .split_first()
        .ok_or_else(|| "[backup] upload names no program".to_owned())?;
    let mut child = Command::new(cmd)
        .args(upload_args(args, path))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a timeout kills what it started too (which would
        // otherwise hold its output pipes open).
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            // Read to the end (a full pipe would block the program), keep the start.
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let mut buf = [0u8; 8192];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if s.len() < 64 * 1024 {
                        s.extend_from_slice(&buf[..n]);
                    }
                }
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let until = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) if s.success() => Ok(output),
        Some(s) => Err(format!("`{cmd}` failed ({s}): {}", output.trim())),
        None => Err(format!(
            "`{cmd}` did not finish within {}s and was killed: {}",
            timeout.as_secs(),
            output.trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_replaces_braces_or_goes_last() {
        let p = Path::new("/b/x.rdb");
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            upload_args(&args(&["copy", "{}", "remote:r/"]), p),
            ["copy", "/b/x.rdb", "remote:r/"]
        );
        assert_eq!(upload_args(&args(&["-v"]), p), ["-v", "/b/x.rdb"]);
    }

    #[test]
    fn upload_output_failure_and_timeout() {
        let p = Path::new("/b/x.rdb");
        let sh = |script: &str| {
            vec![
                "sh".to_owned(),
                "-c".to_owned(),
                script.to_owned(),
                "sh".to_owned(),
            ]
        };
        let out = upload(&sh("echo got $1"), p, Duration::from_secs(10)).unwrap();
        assert_eq!(out.trim(), "got /b/x.rdb");
        let err = upload(&sh("echo nope >&2; exit 3"), p, Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("nope") && err.contains("3"), "{err}");
        let err = upload(&sh("sleep 30"), p, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("killed"), "{err}");
    }
}
