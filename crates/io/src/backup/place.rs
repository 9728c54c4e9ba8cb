//! A restore's file work on one host, done by the daemon that runs the instances (their
//! data dirs are on its host, owned by their user): every data file set aside as
//! `*.before-restore` (never deleted), and for the master the snapshot put where its
//! server will load it. The instances must be stopped.

use std::fs;
use std::path::Path;

use crate::process::RunAs;
use redisrepd_core::backup::DataFiles;

/// Renames every existing data file of an instance aside; returns what was moved where.
pub fn set_aside(files: &DataFiles) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for path in files.all() {
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let aside = redisrepd_core::backup::aside_path(&path, |p| fs::symlink_metadata(p).is_ok());
        fs::rename(&path, &aside).map_err(|e| {
            format!(
                "cannot set {} aside as {}: {e}",
                path.display(),
                aside.display()
            )
        })?;
        lines.push(format!(
            "{} set aside as {}",
            path.display(),
            aside.display()
        ));
    }
    Ok(lines)
}

/// Puts the snapshot `file` where the master loads it ([`DataFiles::restored_layout`]):
/// each copy verified, mode 0600, owned by the instances' user.
pub fn install(
    file: &Path,
    files: &DataFiles,
    run_as: Option<&RunAs>,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for (path, text) in files.restored_layout() {
        let dir = path.parent().unwrap_or(Path::new("."));
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            chown(dir, run_as)?;
        }
        match text {
            Some(text) => crate::files::write_atomic(&path, text.as_bytes(), 0o600)
                .and_then(|()| crate::backup::take::sync_dir(dir))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
            None => {
                crate::backup::take::copy_verified(
                    file,
                    &path,
                    crate::backup::take::Place::Replace,
                )?;
            }
        }
        chown(&path, run_as)?;
        lines.push(format!("{} written", path.display()));
    }
    Ok(lines)
}

fn chown(path: &Path, run_as: Option<&RunAs>) -> Result<(), String> {
    let Some(r) = run_as else { return Ok(()) };
    std::os::unix::fs::chown(path, Some(r.uid.as_raw()), Some(r.gid.as_raw()))
        .map_err(|e| format!("cannot give {} to uid {}: {e}", path.display(), r.uid))
}
