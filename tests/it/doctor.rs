//! `doctor` on this machine: every check has its line, the exit status follows the worst
//! level, and a setting the host cannot give is named with its fix.

use super::util::{Example, QUICK, Run, TestDir, redisrepd, run};

fn doctor(config: &std::path::Path) -> Run {
    run(redisrepd(config).args(["doctor", "--host", "local"]), QUICK)
}

/// The level word of every report line (`ok`, `warning`, `problem`), fix lines skipped.
fn levels(out: &Run) -> Vec<(String, String)> {
    out.stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect()
}

#[test]
fn doctor_reports_every_check_and_exits_by_the_worst() {
    let dir = TestDir::new();
    let config = Example::load("local").write(&dir);
    let out = doctor(&config);
    let lines = levels(&out);
    let checks: Vec<&str> = lines.iter().map(|(_, c)| c.as_str()).collect();
    for c in [
        "overcommit",
        "thp",
        "somaxconn",
        "open-files",
        "memory",
        "disk",
        "clock",
    ] {
        assert!(checks.contains(&c), "no `{c}` line\n{out}");
    }
    // One open-files and one disk line per instance of the host.
    assert_eq!(
        checks.iter().filter(|c| **c == "open-files").count(),
        3,
        "{out}"
    );
    let worst = lines
        .iter()
        .map(|(l, _)| l.as_str())
        .fold("ok", |w, l| match (w, l) {
            ("problem", _) | (_, "problem") => "problem",
            ("warning", _) | (_, "warning") => "warning",
            _ => "ok",
        });
    out.expect_code(match worst {
        "problem" => 1,
        "warning" => 3,
        _ => 0,
    });
    // Every line that is not ok says what to do.
    let unfixed = out
        .stdout
        .lines()
        .zip(out.stdout.lines().skip(1).chain(std::iter::once("")))
        .filter(|(l, next)| {
            !l.starts_with("ok ") && !l.starts_with(' ') && !next.trim_start().starts_with("fix: ")
        })
        .count();
    assert_eq!(unfixed, 0, "{out}");
}

#[test]
fn doctor_names_what_the_host_cannot_give_and_its_fix() {
    let dir = TestDir::new();
    let mut ex = Example::load("local");
    // More clients than any descriptor limit here gives, a backlog over any somaxconn, and
    // more memory than the machine has.
    let redis = ex.toml["redis"]
        .as_table_mut()
        .expect("[redis] in the example");
    redis.insert("maxclients".into(), "4000000".into());
    redis.insert("tcp-backlog".into(), "2000000".into());
    redis.insert("maxmemory".into(), "100000gb".into());
    let config = ex.write(&dir);
    let out = doctor(&config);
    out.expect_code(1);
    for fragment in [
        "is below maxclients 4000000 + 32",
        "LimitNOFILE=4000032",
        "is below tcp-backlog 2000000 of `",
        "net.core.somaxconn=2000000",
        "a fork under write load can run the host out of memory",
    ] {
        assert!(
            out.stdout.contains(fragment),
            "expected {fragment:?}\n{out}"
        );
    }
}
