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

/// True when the RDB at `rdb` exists and no file in the AOF directory `aof_dir` was
/// written after it: then the RDB holds everything the AOF does.
pub fn rdb_at_least_as_new_as_aof(rdb: &Path, aof_dir: &Path) -> bool {
    let Ok(rdb_time) = fs::metadata(rdb).and_then(|m| m.modified()) else {
        return false;
    };
    let Ok(entries) = fs::read_dir(aof_dir) else {
        return true; // no AOF yet
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .all(|t| t <= rdb_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
