//! Asking the configured server whether it takes the `[[user]]` rules: the part of `check`
//! and `reload` that only the server can judge (an unknown command or category, a rule
//! this version does not have, such as `%R~` key permissions or `(...)` selectors before
//! Redis 7.0).
//!
//! Theory of operation. The `port 0` probe of [`crate::server_check`] cannot tell: Redis
//! 7.0 checks a `user` line's syntax while it reads the file, but its commands and
//! categories only when it loads the users at start-up, after it has opened its listeners
//! (with none, it exits before). So this probe listens on a Unix socket in a private
//! temporary directory (mode 0700, nothing else), loads the users, each `off` and without a
//! password (no real password is ever written), and is killed once it says it is ready.
//! A refusal is either `*** FATAL CONFIG FILE ERROR` at the line of a user (syntax), or
//! `Error loading ACL rule '...' for the user named 'NAME'` (unknown command); each maps
//! back to its `[[user]]`, whose line is dropped before asking again, so one `check` names
//! every user the server refuses.

use std::path::Path;
use std::time::{Duration, Instant};

use redisrepd_core::config::{Group, Problem};

use crate::server_check::parse_fatal;

fn quote_path_for_probe(path: &Path) -> String {
    redisrepd_core::render::quote_path(&path.display().to_string())
}

/// [`crate::server_check::ask_server`], then [`ask_users`]: everything `check` and `reload`
/// ask the configured server.
pub fn ask_server_and_users(group: &Group, server: &Path) -> Result<Vec<Problem>, String> {
    let mut problems = crate::server_check::ask_server(group, server)?;
    problems.extend(ask_users(group, server)?);
    Ok(problems)
}

/// The probe's lines: a header that makes the server harmless, then one `user` line per
/// `[[user]]` (its name, `off`, its rules) with the user it came from.
pub fn probe_lines(group: &Group, dir: &Path) -> Vec<(String, Option<String>)> {
    let mut lines: Vec<(String, Option<String>)> = [
        "# redisrepd check: does the server take these ACL rules?".to_owned(),
        "port 0".to_owned(),
        format!(
            "unixsocket {}",
            quote_path_for_probe(&dir.join("probe.sock"))
        ),
        "unixsocketperm 700".to_owned(),
        "daemonize no".to_owned(),
        format!("dir {}", quote_path_for_probe(dir)),
        "logfile \"\"".to_owned(),
        "save \"\"".to_owned(),
        "appendonly no".to_owned(),
        "loglevel notice".to_owned(),
    ]
    .into_iter()
    .map(|l| (l, None))
    .collect();
    for u in &group.users {
        lines.push((
            format!("user {} reset off {}", u.name, u.rules.join(" ")),
            Some(u.name.clone()),
        ));
    }
    lines
}

/// What one run said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersVerdict {
    /// Every user loaded.
    Accepted,
    /// The server refused the user called this, for this reason.
    Refused {
        user: Option<String>,
        reason: String,
    },
}

/// Reads a run's output (stderr, then the log on stdout) against its lines.
pub fn users_verdict(
    lines: &[(String, Option<String>)],
    stdout: &str,
    stderr: &str,
) -> UsersVerdict {
    if let Some(fatal) = parse_fatal(stderr) {
        let user = fatal
            .line
            .and_then(|n| lines.get(n.checked_sub(1)?))
            .and_then(|(_, u)| u.clone());
        return UsersVerdict::Refused {
            user,
            reason: fatal.reason,
        };
    }
    // `Error loading ACL rule '+nosuchcmd' for the user named 'app': Unknown command or
    // category name in ACL`
    for l in stdout.lines().chain(stderr.lines()) {
        let Some((_, rest)) = l.split_once("Error loading ACL rule ") else {
            continue;
        };
        let (rule, named) = rest
            .split_once(" for the user named '")
            .unwrap_or((rest, ""));
        let (user, why) = named.split_once("': ").unwrap_or(("", named));
        return UsersVerdict::Refused {
            user: (!user.is_empty()).then(|| user.to_owned()),
            reason: format!("rule {rule}: {why}"),
        };
    }
    UsersVerdict::Accepted
}

/// Asks `server` whether it takes every `[[user]]`'s rules; one problem per user it
/// refuses, naming the user. `Err` when the server could not be asked.
pub fn ask_users(group: &Group, server: &Path) -> Result<Vec<Problem>, String> {
    if group.users.is_empty() {
        return Ok(Vec::new());
    }
    let dir = tempfile::Builder::new()
        .prefix("redisrepd-acl-check.")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let mut lines = probe_lines(group, dir.path());
    let shown = server.display().to_string();
    let mut problems = Vec::new();
    for _ in 0..=group.users.len() {
        match run_once(server, dir.path(), &lines)? {
            UsersVerdict::Accepted => return Ok(problems),
            UsersVerdict::Refused { user, reason } => {
                let Some(user) = user.filter(|u| group.user(u).is_some()) else {
                    problems.push(Problem::new(
                        None,
                        "user",
                        format!("`{shown}` refuses the [[user]] rules: {reason}"),
                    ));
                    return Ok(problems);
                };
                let rules = group
                    .user(&user)
                    .map(|u| u.rules.join(" "))
                    .unwrap_or_default();
                problems.push(Problem::new(
                    None,
                    &format!("user.{user}.rules"),
                    format!(
                        "`{shown}` refuses `{rules}`: {reason}; fix the rules (Redis 6.2 has \
                         no `%R~`/`%W~` key permissions and no `(...)` selectors)"
                    ),
                ));
                lines.retain(|(_, u)| u.as_deref() != Some(user.as_str()));
            }
        }
    }
    Ok(problems)
}

/// How long one probe run may take to say it is ready or refuse.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the server once on the probe, waits until it refuses (exits) or is ready
/// (then kills it), and reads what it said.
fn run_once(
    server: &Path,
    dir: &Path,
    lines: &[(String, Option<String>)],
) -> Result<UsersVerdict, String> {
    let text: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let probe = crate::server_check::Probe::spawn(server, dir, "acl-probe", &text)?;
    let (mut child, out_path, err_path) = (probe.child, probe.out, probe.err);
    let deadline = Instant::now() + PROBE_TIMEOUT;
    // Polled: the server gives no other sign of being ready than its log line.
    loop {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        let log = crate::server_check::read(&out_path);
        // "Ready to accept connections unix" (7.2+), "The server is now ready to accept
        // connections at PATH" (6.2, 7.0).
        let ready = log
            .to_ascii_lowercase()
            .contains("ready to accept connections");
        if ready || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (stdout, stderr) = (
        crate::server_check::read(&out_path),
        crate::server_check::read(&err_path),
    );
    Ok(users_verdict(lines, &stdout, &stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<(String, Option<String>)> {
        vec![
            ("port 0".to_owned(), None),
            ("user app reset off +get".to_owned(), Some("app".to_owned())),
            ("user ops reset off %R~x".to_owned(), Some("ops".to_owned())),
        ]
    }

    #[test]
    fn a_syntax_error_maps_to_the_user_of_its_line() {
        let stderr = "\n*** FATAL CONFIG FILE ERROR (Redis 6.2.14) ***\n\
                      Reading the configuration file, at line 3\n\
                      >>> 'user ops reset off %R~x'\n\
                      Error in user declaration '%R~x': Syntax error\n";
        assert_eq!(
            users_verdict(&lines(), "", stderr),
            UsersVerdict::Refused {
                user: Some("ops".into()),
                reason: "Error in user declaration '%R~x': Syntax error".into()
            }
        );
    }

    #[test]
    fn an_unknown_command_maps_to_the_user_it_names() {
        let log = "1:M 02 Dec 2026 17:01:27.562 # Error loading ACL rule '+nosuchcmd' for the \
                   user named 'app': Unknown command or category name in ACL\n\
                   1:M 02 Dec 2026 17:01:27.562 # Critical error while loading ACLs. Exiting.\n";
        let UsersVerdict::Refused { user, reason } = users_verdict(&lines(), log, "") else {
            panic!("accepted")
        };
        assert_eq!(user.as_deref(), Some("app"));
        assert_eq!(
            reason,
            "rule '+nosuchcmd': Unknown command or category name in ACL"
        );
        assert_eq!(
            users_verdict(&lines(), "Ready to accept connections", ""),
            UsersVerdict::Accepted
        );
    }
}
