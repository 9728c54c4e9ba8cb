//! The configuration from the file system: the TOML read and parsed
//! ([`redisrepd_core::config::parse`] decides), the password file read and its mode
//! judged, the `[hooks]` program looked up.

use std::path::{Path, PathBuf};

use redisrepd_core::config::{
    Checked, ConfigError, Group, PasswordSource, Problem, Secret, breaks_redis_conf, parse,
};

/// Reads, parses and validates the TOML at `path`, then reads the password file.
pub fn load(path: &Path) -> Result<Checked, ConfigError> {
    let mut checked = read_and_parse(path)?;
    let mut problems = Vec::new();
    if let Err(message) = read_password(&mut checked) {
        problems.push(format!("key `{}`: {message}", password_key(&checked.group)));
    }
    problems.extend(read_user_passwords(&mut checked));
    read_tls_contents(&mut checked);
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(ConfigError {
            file: path.to_owned(),
            problems,
        })
    }
}

/// The [cluster] key the password comes from, for messages.
fn password_key(group: &Group) -> &'static str {
    match group.cluster.password {
        PasswordSource::Files(_) => "password_files",
        _ => "password_file",
    }
}

/// Reads every `[[user]]`'s password files into the group; one problem per file that
/// cannot be used, naming the user and the file.
fn read_user_passwords(checked: &mut Checked) -> Vec<String> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for user in &mut checked.group.users {
        let key = if user.password_files.len() == 1 {
            format!("user.{}.password_file", user.name)
        } else {
            format!("user.{}.password_files", user.name)
        };
        for file in &mut user.password_files {
            match read_password_file(&file.path) {
                Ok((secret, loose)) => {
                    file.secret = Some(secret);
                    if let Some(mode) = loose {
                        warnings.push(loose_mode(&key, &file.path, mode));
                    }
                }
                Err(message) => problems.push(format!("key `{key}`: {message}")),
            }
        }
    }
    checked.warnings.extend(warnings);
    problems
}

/// The warning for a password file others may read.
fn loose_mode(key: &str, path: &Path, mode: u32) -> Problem {
    Problem::new(
        None,
        key,
        format!(
            "`{}` is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ),
    )
}

/// Notes a digest of the `[tls]` files this host can read (the CA, every readable pair), so
/// that a reload sees certificates rotated in place. Unreadable files count as absent:
/// `check` reports them.
fn read_tls_contents(checked: &mut Checked) {
    use std::hash::{Hash as _, Hasher as _};
    let Some(tls) = checked.group.tls.as_mut() else {
        return;
    };
    // Same keys in every process of one build: the digest is only compared within a daemon.
    let mut h = std::hash::DefaultHasher::new();
    std::fs::read(&tls.ca_file).ok().hash(&mut h);
    for (cert, key) in tls.pairs() {
        std::fs::read(cert).ok().hash(&mut h);
        std::fs::read(key).ok().hash(&mut h);
    }
    tls.contents = Some(h.finish());
}

/// [`hook_problem`] as a [`ConfigError`] naming the file: `check` and `reload` refuse such
/// a file (the daemon that starts with it only says so: supervising Redis matters more).
pub fn check_hooks(group: &Group, path: &Path) -> Result<(), ConfigError> {
    hook_problem(group).map_err(|message| ConfigError {
        file: path.to_owned(),
        problems: vec![format!("key `hooks.on_role_change`: {message}")],
    })
}

/// The `[hooks]` program must exist and be executable now, not first at a failover.
pub fn hook_problem(group: &Group) -> Result<(), String> {
    let Some(hook) = &group.hooks.on_role_change else {
        return Ok(());
    };
    let program = &hook.program;
    if program.components().count() == 1 && !program.is_absolute() {
        return which::which(program).map(|_| ()).map_err(|_| {
            format!(
                "`{}` is not found on PATH: give its full path",
                program.display()
            )
        });
    }
    let meta = std::fs::metadata(program).map_err(|e| {
        format!(
            "`{}` cannot be used: {e}; give the path of an executable",
            program.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "`{}` is not a file: give the path of an executable",
            program.display()
        ));
    }
    if nix::unistd::access(program, nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(format!(
            "`{}` is not executable: run `chmod +x {}`",
            program.display(),
            program.display()
        ));
    }
    Ok(())
}

/// [`load`] for the verbs that ask daemons to act (start, stop, restart, status): a
/// password file that cannot be used is a warning, not an error. Each daemon keeps the
/// password its instances were started with, so an emptied or deleted file must not lock
/// an operator out of stopping them; only reading instances that no daemon here runs
/// needs the password, and those then answer "authentication failed".
pub fn load_for_client(path: &Path) -> Result<Checked, ConfigError> {
    let mut checked = read_and_parse(path)?;
    // The verbs connect as redisrepd's own user: the users' own files do not matter here.
    let _ = read_user_passwords(&mut checked);
    if let Err(message) = read_password(&mut checked) {
        checked.warnings.push(Problem::new(
            None,
            password_key(&checked.group),
            format!(
                "{message}; asking the daemons anyway (they keep the password they started \
                 with), but instances no daemon here runs cannot be read"
            ),
        ));
    }
    Ok(checked)
}

/// Reads and parses the TOML at `path`; the password file is left unread.
fn read_and_parse(path: &Path) -> Result<Checked, ConfigError> {
    let fail = |message: String| ConfigError {
        file: path.to_owned(),
        problems: vec![message],
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(format!(
            "cannot read the configuration: {e}; pass --config PATH or set REDISREPD_CONFIG"
        ))
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let base_dir = absolute
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &absolute, &base_dir)
}

/// Reads the password file(s), if the group has them, into the group.
fn read_password(checked: &mut Checked) -> Result<(), String> {
    match &mut checked.group.cluster.password {
        PasswordSource::File {
            path: pw_path,
            secret,
        } => {
            let (value, loose) = read_password_file(pw_path)?;
            *secret = Some(value);
            if let Some(mode) = loose {
                let warning = loose_mode("password_file", pw_path, mode);
                checked.warnings.push(warning);
            }
        }
        PasswordSource::Files(files) => {
            let mut problems = Vec::new();
            let mut warnings = Vec::new();
            for file in files {
                match read_password_file(&file.path) {
                    Ok((value, loose)) => {
                        file.secret = Some(value);
                        if let Some(mode) = loose {
                            warnings.push(loose_mode("password_files", &file.path, mode));
                        }
                    }
                    Err(e) => problems.push(e),
                }
            }
            checked.warnings.extend(warnings);
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
        }
        PasswordSource::None | PasswordSource::Inline(_) => {}
    }
    Ok(())
}

/// Reads a one-line password file; returns the password and, when group or others may read
/// the file, its mode.
fn read_password_file(path: &Path) -> Result<(Secret, Option<u32>), String> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(format!(
            "`{}` is empty: write the password on its first line",
            path.display()
        ));
    }
    if line.chars().any(breaks_redis_conf) {
        return Err(format!(
            "the password in `{}` contains whitespace or a quote, which redis.conf cannot \
             carry safely: choose another",
            path.display()
        ));
    }
    let mode = std::fs::metadata(path)
        .map(|m| m.mode() & 0o777)
        .unwrap_or(0);
    let loose = (mode & 0o077 != 0).then_some(mode);
    Ok((Secret::new(line), loose))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CLUSTER: &str = "[cluster]\nname = \"t\"\npassword = \"secret\"\n";

    /// A master and two replicas on one host `h`.
    fn trio() -> String {
        "[[instance]]\nname = \"m\"\nhost = \"h\"\nbind = \"10.0.0.1\"\nport = 6379\n\
         [[instance]]\nname = \"r1\"\nhost = \"h\"\nbind = \"10.0.0.2\"\nport = 6379\nreplica_of = \"m\"\n\
         [[instance]]\nname = \"r2\"\nhost = \"h\"\nbind = \"10.0.0.2\"\nport = 6380\nreplica_of = \"m\"\n"
            .to_owned()
    }

    // ---- load: the file system part ----

    /// Writes `password_file = "pw"` TOML plus the password file (`None`: no file) in a temp
    /// dir and loads it.
    fn load_with_password_file(
        content: Option<&str>,
        mode: u32,
    ) -> (tempfile::TempDir, Result<Checked, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("group.toml");
        std::fs::write(
            &toml,
            format!(
                "[cluster]\nname = \"t\"\npassword_file = \"pw\"\n{}",
                trio()
            ),
        )
        .unwrap();
        if let Some(content) = content {
            let pw = dir.path().join("pw");
            std::fs::write(&pw, content).unwrap();
            std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let result = load(&toml);
        (dir, result)
    }

    #[test]
    fn load_reads_the_password_file() {
        let (dir, result) = load_with_password_file(Some("hunter2\n"), 0o600);
        let c = result.unwrap();
        assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
        assert_eq!(c.group.password().map(Secret::expose), Some("hunter2"));
        assert_eq!(c.group.source, dir.path().join("group.toml"));
        assert_eq!(c.group.cluster.run_dir, Path::new("/run/redisrepd"));
    }

    #[test]
    fn load_rejects_a_missing_password_file() {
        let (dir, result) = load_with_password_file(None, 0);
        let err = result.unwrap_err();
        let shown = err.to_string();
        let pw = dir.path().join("pw");
        assert_eq!(err.problems.len(), 1, "{shown}");
        assert!(
            shown.starts_with(&format!(
                "{}: key `password_file`: cannot read `{}`",
                dir.path().join("group.toml").display(),
                pw.display()
            )),
            "{shown}"
        );
    }

    #[test]
    fn load_rejects_a_password_file_that_is_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pw")).unwrap();
        let toml = dir.path().join("group.toml");
        std::fs::write(
            &toml,
            format!(
                "[cluster]\nname = \"t\"\npassword_file = \"pw\"\n{}",
                trio()
            ),
        )
        .unwrap();
        let shown = load(&toml).unwrap_err().to_string();
        assert!(
            shown.contains("key `password_file`: cannot read"),
            "{shown}"
        );
    }

    #[test]
    fn load_rejects_an_empty_password_file() {
        for content in ["", "\n", "\nsecond-line\n"] {
            let (_dir, result) = load_with_password_file(Some(content), 0o600);
            let shown = result.unwrap_err().to_string();
            assert!(
                shown.contains("key `password_file`: `") && shown.contains("` is empty"),
                "{content:?}: {shown}"
            );
        }
    }

    #[test]
    fn load_rejects_a_password_that_redis_conf_cannot_carry() {
        for bad in ["two words\n", "it's\n", "say\"hi\"\n"] {
            let (_dir, result) = load_with_password_file(Some(bad), 0o600);
            let shown = result.unwrap_err().to_string();
            assert!(shown.contains("key `password_file`: "), "{bad:?}: {shown}");
            assert!(
                shown.contains("contains whitespace or a quote"),
                "{bad:?}: {shown}"
            );
        }
    }

    #[test]
    fn load_warns_about_a_password_file_readable_by_others() {
        let (dir, result) = load_with_password_file(Some("hunter2"), 0o644);
        let c = result.unwrap();
        assert_eq!(c.group.password().map(Secret::expose), Some("hunter2"));
        assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
        let w = &c.warnings[0];
        assert_eq!(w.key, "password_file");
        let shown = w.to_string();
        let pw = dir.path().join("pw");
        assert!(shown.starts_with("key `password_file`: "), "{shown}");
        assert!(shown.contains("mode 644"), "{shown}");
        assert!(
            shown.contains(&format!("chmod 600 {}", pw.display())),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn load_warns_about_a_group_readable_password_file() {
        let (_dir, result) = load_with_password_file(Some("hunter2"), 0o640);
        assert_eq!(result.unwrap().warnings.len(), 1);
    }

    #[test]
    fn load_of_a_missing_file_says_how_to_point_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let shown = load(&missing).unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!(
                "{}: cannot read the configuration",
                missing.display()
            )),
            "{shown}"
        );
        assert!(shown.contains("--config"), "{shown}");
    }

    #[test]
    fn load_errors_never_contain_the_password() {
        // A file that fails after the password is known must not echo it.
        let (_dir, result) = load_with_password_file(Some("hunter2 x"), 0o600);
        assert!(!result.unwrap_err().to_string().contains("hunter2"));
    }

    #[test]
    fn load_refuses_a_hook_that_does_not_exist_or_is_not_executable() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("group.toml");
        let write = |program: &str| {
            std::fs::write(
                &toml,
                format!(
                    "{CLUSTER}[hooks]\non_role_change = [\"{program}\"]\n{}",
                    trio()
                ),
            )
            .unwrap();
        };
        write("hook.sh");
        let err = check_hooks_of(&toml);
        assert!(
            err.contains("key `hooks.on_role_change`: `hook.sh` is not found on PATH"),
            "{err}"
        );
        write("./hook.sh");
        let err = check_hooks_of(&toml);
        assert!(
            err.contains("key `hooks.on_role_change`") && err.contains("No such file"),
            "{err}"
        );
        let script = dir.path().join("hook.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_hooks_of(&toml);
        assert!(err.contains("is not executable: run `chmod +x"), "{err}");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let group = load(&toml).expect("loads").group;
        check_hooks(&group, &toml).expect("an executable hook");
    }

    #[test]
    fn load_reads_every_users_password_files_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("group.toml");
        let user = |files: &str| {
            format!(
                "{CLUSTER}{}\n[[user]]\nname = \"app\"\npassword_files = [{files}]\n\
                 rules = \"+get\"\n",
                trio()
            )
        };
        let write = |name: &str, text: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("new", "app-new\n", 0o600);
        write("old", "app-old\n", 0o644);
        std::fs::write(&toml, user("\"new\", \"old\"")).unwrap();
        let c = load(&toml).expect("loads");
        let app = c.group.user("app").expect("app");
        let pws: Vec<&str> = app.passwords().iter().map(|s| s.expose()).collect();
        assert_eq!(pws, ["app-new", "app-old"]);
        assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
        assert_eq!(c.warnings[0].key, "user.app.password_files");
        assert!(c.warnings[0].message.contains("mode 644"));
        std::fs::write(&toml, user("\"new\", \"missing\"")).unwrap();
        let shown = load(&toml).unwrap_err().to_string();
        assert!(
            shown.contains(&format!(
                "key `user.app.password_files`: cannot read `{}`",
                dir.path().join("missing").display()
            )),
            "{shown}"
        );
        write("empty", "\n", 0o600);
        std::fs::write(&toml, user("\"empty\"")).unwrap();
        let shown = load(&toml).unwrap_err().to_string();
        assert!(shown.contains("key `user.app.password_file`: `"), "{shown}");
        assert!(shown.contains("` is empty"), "{shown}");
        assert!(!shown.contains("app-new"), "{shown}");
    }

    /// What `check` says of the hook of the file at `toml` (it loads whatever the hook).
    fn check_hooks_of(toml: &Path) -> String {
        let group = load(toml).expect("loads").group;
        check_hooks(&group, toml).unwrap_err().to_string()
    }
}
