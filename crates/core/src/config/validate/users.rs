//! `[[user]]`: names, password files, rules; and `[cluster] password_files`.
//!
//! Whether the server takes the rules is asked of the server itself
//! (`redisrepd_io::server_check`); whether the files can be read is
//! `redisrepd_io::config_file`'s (it reads them).

use std::collections::HashSet;
use std::path::PathBuf;

use super::Validator;
use crate::acl;
use crate::config::model::{PasswordFile, User};
use crate::config::raw::RawUser;

/// How many password files a user (or the cluster) may list: the one in use and the one
/// it replaces.
pub const MAX_PASSWORD_FILES: usize = 2;

impl Validator {
    /// `password_files` in [cluster] or in a [[user]] (`what` names it for messages):
    /// one or two files.
    pub(super) fn password_files(
        &mut self,
        what: &str,
        files: Vec<PathBuf>,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Vec<PasswordFile> {
        if files.is_empty() {
            self.error(
                None,
                what,
                "is empty: list one password file, or two while rotating",
            );
        } else if files.len() > MAX_PASSWORD_FILES {
            self.error(
                None,
                what,
                format!(
                    "lists {} files: at most two (the new password first, the old one second)",
                    files.len()
                ),
            );
        }
        let files: Vec<PasswordFile> = files
            .into_iter()
            .map(|p| PasswordFile {
                path: resolve(p),
                secret: None,
            })
            .collect();
        if files.len() == 2 && files[0].path == files[1].path {
            self.error(None, what, "lists the same file twice: list it once");
        }
        files
    }

    pub(super) fn users(
        &mut self,
        raw: Vec<RawUser>,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
        cluster_has_password: bool,
    ) -> Vec<User> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for u in raw {
            let key = format!("user.{}", u.name);
            if u.name.is_empty()
                || !u
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c))
            {
                self.error(
                    None,
                    "user.name",
                    format!(
                        "`{}` is not a valid user name: use letters, digits, `_`, `-`, `.` \
                         and `@`",
                        u.name
                    ),
                );
                continue;
            }
            if u.name.starts_with(acl::RESERVED_PREFIX) {
                self.error(
                    None,
                    &key,
                    format!(
                        "`{}` is taken: redisrepd's own users are `{}`, `{}` and `{}` (every \
                         name starting with `{}` is kept for them); choose another name",
                        u.name,
                        acl::DAEMON_USER,
                        acl::REPLICATION_USER,
                        acl::SENTINEL_USER,
                        acl::RESERVED_PREFIX
                    ),
                );
                continue;
            }
            if !seen.insert(u.name.clone()) {
                self.error(
                    None,
                    &key,
                    "is declared by more than one [[user]]: names must be unique",
                );
                continue;
            }
            let files = match (u.password_file, u.password_files) {
                (Some(_), Some(_)) => {
                    self.error(
                        None,
                        &format!("{key}.password_files"),
                        "both `password_file` and `password_files` are set: keep one",
                    );
                    Vec::new()
                }
                (Some(one), None) => {
                    self.password_files(&format!("{key}.password_file"), vec![one], resolve)
                }
                (None, Some(list)) => {
                    self.password_files(&format!("{key}.password_files"), list, resolve)
                }
                (None, None) => {
                    self.error(
                        None,
                        &format!("{key}.password_file"),
                        "is missing: give the user `password_file` (or `password_files`, \
                         two while rotating)",
                    );
                    Vec::new()
                }
            };
            let rules: Vec<String> = u.rules.split_whitespace().map(str::to_owned).collect();
            for r in &rules {
                if acl::is_password_rule(r) {
                    self.error(
                        None,
                        &format!("{key}.rules"),
                        format!(
                            "`{}` sets or clears passwords: passwords come from \
                             `password_file`/`password_files`; remove it from `rules`",
                            if r.starts_with(['>', '<', '#', '!']) {
                                &r[..1]
                            } else {
                                r.as_str()
                            }
                        ),
                    );
                } else if r.contains(['"', '\'', '\\']) {
                    self.error(
                        None,
                        &format!("{key}.rules"),
                        format!("`{r}` holds a quote or a backslash, which redis.conf cannot carry safely"),
                    );
                }
            }
            out.push(User {
                name: u.name,
                password_files: files,
                rules,
            });
        }
        if !out.is_empty() && !cluster_has_password {
            self.error(
                None,
                "password_file",
                "[[user]] needs a cluster password (`password_file`, `password_files` or \
                 `password` in [cluster]): it authenticates redisrepd's own users",
            );
        }
        out
    }
}
