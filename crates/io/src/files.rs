//! Files redisrepd writes: whole-or-nothing (temp file + rename) with explicit modes.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to `path` so that a reader sees the old file or the new one, never
/// half of one; the file gets `mode` from its creation (no window where it is readable).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` (and parents) if missing and sets its mode. Never deletes anything.
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// True when the RDB at `rdb` exists and no data file in the AOF directory `aof_dir` (its
/// base and incr files) was written after it: then the RDB holds everything the AOF does.
///
/// The manifest is not data: Redis 8.0 rewrites it during `SHUTDOWN` after
/// the final RDB save, to record where its last incr file ends, so its time says nothing
/// about which file is newer (counting it made a replica load its AOF, and full-sync,
/// after 7 of 14 graceful restarts on 8.0.2). Every write that reaches the AOF changes a
/// base or incr file.
pub fn rdb_at_least_as_new_as_aof(rdb: &Path, aof_dir: &Path) -> bool {
    let Ok(rdb_time) = fs::metadata(rdb).and_then(|m| m.modified()) else {
        return false;
    };
    let Ok(entries) = fs::read_dir(aof_dir) else {
        return true; // no AOF yet
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".manifest"))
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .all(|t| t <= rdb_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_rdb_is_newer_than_aof_data_whatever_the_manifest_says() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let rdb = dir.path().join("dump.rdb");
        let aof = dir.path().join("appendonlydir");
        fs::create_dir(&aof).unwrap();
        let t0 = SystemTime::now() - Duration::from_secs(60);
        let at = |path: &Path, t: SystemTime| {
            fs::write(path, b"x").unwrap();
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        // No RDB: never.
        assert!(!rdb_at_least_as_new_as_aof(&rdb, &aof));
        at(&aof.join("appendonly.aof.3.base.rdb"), t0);
        at(
            &aof.join("appendonly.aof.3.incr.aof"),
            t0 + Duration::from_secs(1),
        );
        at(&rdb, t0 + Duration::from_secs(2));
        // Redis 8's SHUTDOWN: the manifest rewritten after the final save.
        at(
            &aof.join("appendonly.aof.manifest"),
            t0 + Duration::from_secs(3),
        );
        assert!(rdb_at_least_as_new_as_aof(&rdb, &aof));
        // A write after the save (a crash later): the AOF is newer.
        at(
            &aof.join("appendonly.aof.3.incr.aof"),
            t0 + Duration::from_secs(4),
        );
        assert!(!rdb_at_least_as_new_as_aof(&rdb, &aof));
        // No AOF directory yet: the RDB is all there is.
        assert!(rdb_at_least_as_new_as_aof(&rdb, &dir.path().join("none")));
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.conf");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
