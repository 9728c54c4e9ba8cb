//! Unit tests of the config model: [`parse`] on strings for every rule of
//! `docs/reference/config.md` (reading the file and the password file is tested in
//! `redisrepd_io::config_file`).

use super::*;
use std::path::PathBuf;
use std::time::Duration;

mod model;
mod rules;
mod sentinel;
mod tls;
mod users;

pub(super) const SOURCE: &str = "/etc/redisrepd/test.toml";
pub(super) const BASE: &str = "/etc/redisrepd";

/// `[cluster]` with an inline password, so that no test trips the no-password warning by
/// accident.
pub(super) const CLUSTER: &str = "[cluster]\nname = \"t\"\npassword = \"secret\"\n";

/// One `[[instance]]` table; `extra` is appended verbatim (more keys, `[instance.redis]`).
pub(super) fn inst(
    name: &str,
    host: &str,
    bind: &str,
    port: u16,
    replica_of: Option<&str>,
) -> String {
    let mut s = format!(
        "\n[[instance]]\nname = \"{name}\"\nhost = \"{host}\"\nbind = \"{bind}\"\nport = {port}\n"
    );
    if let Some(up) = replica_of {
        s.push_str(&format!("replica_of = \"{up}\"\n"));
    }
    s
}

/// A valid group: master `m` with replicas `r1` and `r2`, all on host `h`.
pub(super) fn trio() -> String {
    [
        inst("m", "h", "10.0.0.1", 6379, None),
        inst("r1", "h", "10.0.0.2", 6379, Some("m")),
        inst("r2", "h", "10.0.0.2", 6380, Some("m")),
    ]
    .concat()
}

pub(super) fn try_parse(text: &str) -> Result<Checked, ConfigError> {
    parse(text, Path::new(SOURCE), Path::new(BASE))
}

#[track_caller]
pub(super) fn ok(text: &str) -> Checked {
    match try_parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid file, got:\n{e}\n--- file:\n{text}"),
    }
}

#[track_caller]
pub(super) fn problems(text: &str) -> Vec<String> {
    match try_parse(text) {
        Ok(c) => panic!("expected errors, the file is valid: {c:?}\n--- file:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, Path::new(SOURCE));
            e.problems
        }
    }
}

/// Asserts the file fails with exactly one problem, which contains every fragment.
#[track_caller]
pub(super) fn one_problem(text: &str, fragments: &[&str]) -> String {
    let problems = problems(text);
    assert_eq!(problems.len(), 1, "expected one problem: {problems:#?}");
    let p = &problems[0];
    for f in fragments {
        assert!(p.contains(f), "problem {p:?} should contain {f:?}");
    }
    p.clone()
}

/// The one warning of a valid file, displayed.
#[track_caller]
pub(super) fn one_warning(text: &str) -> Problem {
    let warnings = ok(text).warnings;
    assert_eq!(warnings.len(), 1, "expected one warning: {warnings:#?}");
    warnings[0].clone()
}
