//! The unit files, sd_notify messages and the journal.

use super::*;
use std::collections::HashMap;

#[test]
fn units_pass_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "{analyze:?} is missing: install it with `apt-get install systemd`"
    );
    let dir = TestDir::new();
    let bin = util::bin().display().to_string();
    for name in ["redisrepd.service", "redisrepd@.service"] {
        let text = unit_text(name).replace("/usr/bin/redisrepd", &bin);
        assert!(text.contains(&bin), "{name} runs /usr/bin/redisrepd");
        fs::write(dir.join(name), text).expect("writing a unit copy");
    }
    // The template is verified through an instance of it. --man=no: Documentation= names
    // man:redisrepd(1), which the README's install steps put in place, not this machine.
    let verify = |units: &[&str]| {
        let mut cmd = Command::new(analyze);
        cmd.args(["verify", "--man=no"])
            .args(units.iter().map(|u| dir.join(u)));
        util::run(&mut cmd, QUICK)
    };
    let run = verify(&["redisrepd.service", "redisrepd@shop.service"]);
    run.expect_code(0);
    assert_eq!(
        format!("{}{}", run.stdout, run.stderr).trim(),
        "",
        "systemd-analyze verify complains\n{run}"
    );

    // The check is not vacuous: a misspelt key is reported.
    let bad = unit_text("redisrepd.service")
        .replace("/usr/bin/redisrepd", &bin)
        .replace("KillMode=", "KilMode=");
    fs::write(dir.join("broken.service"), bad).expect("writing a broken unit");
    let run = verify(&["broken.service"]);
    assert!(run.stderr.contains("KilMode"), "{run}");
}

/// The units and the code agree: the config path, the default directories, Type=notify,
/// and the KillMode that never SIGKILLs an instance.
#[test]
fn units_match_the_defaults_of_the_code() {
    let main = unit_settings(&unit_text("redisrepd.service"));
    let template = unit_settings(&unit_text("redisrepd@.service"));
    let help = util::run(Command::new(util::bin()).arg("--help"), QUICK);
    help.expect_code(0);
    assert!(
        help.stdout
            .contains("[default: /etc/redisrepd/redisrepd.toml]"),
        "{help}"
    );
    assert!(setting(&main, "ExecStart").ends_with("--config /etc/redisrepd/redisrepd.toml daemon"));
    assert!(setting(&template, "ExecStart").ends_with("--config /etc/redisrepd/%i.toml daemon"));
    for (unit, suffix) in [(&main, ""), (&template, "/%i")] {
        assert_eq!(setting(unit, "Type"), "notify");
        assert_eq!(setting(unit, "KillMode"), "process");
        assert_eq!(setting(unit, "Restart"), "on-failure");
        assert_eq!(setting(unit, "RuntimeDirectoryPreserve"), "yes");
        assert!(setting(unit, "ExecReload").ends_with(" reload"));
        for key in ["RuntimeDirectory", "StateDirectory", "LogsDirectory"] {
            assert_eq!(setting(unit, key), format!("redisrepd{suffix}"));
        }
        for key in [
            "RuntimeDirectoryMode",
            "StateDirectoryMode",
            "LogsDirectoryMode",
        ] {
            assert_eq!(
                setting(unit, key),
                "0711",
                "{key}: what the daemon sets with `user`"
            );
        }
    }
    // The plan of a file that does not set the directories shows the unit's.
    let dir = TestDir::new();
    let toml = dir.write(
        "g.toml",
        "[cluster]\nname = \"g\"\n[[instance]]\nname = \"m\"\nhost = \"h\"\n\
         bind = \"127.0.0.1\"\nport = 6379\n",
    );
    let run = util::run(util::redisrepd(&toml).args(["check", "--host", "h"]), QUICK);
    run.expect_code(0);
    for path in [
        "/run/redisrepd/m.conf",
        "/var/lib/redisrepd/m",
        "/run/redisrepd/h.sock",
    ] {
        assert!(run.stdout.contains(path), "{path}\n{run}");
    }
}

// ----- sd_notify and logs -------------------------------------------------------------

/// Under systemd's protocol: STATUS= lines while instances come up, READY=1 once the
/// master answers and both replicas have been started, WATCHDOG=1 at half of
/// WATCHDOG_USEC, RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a SIGHUP reload,
/// STOPPING=1 on SIGTERM; no systemd variable reaches an instance; plain uncoloured log.
#[test]
fn notify_socket_gets_ready_status_watchdog_reloading_and_stopping() {
    let mut c = cluster::one_host().build();
    let master = c.addr("master");
    let notes = Listener::bind(
        &c.dir.join("notify.sock"),
        Some(Box::new(move || match util::ping(master, Some(PASSWORD)) {
            Ok(()) => "test: master answered".to_owned(),
            Err(e) => format!("test: master did not answer: {e}"),
        })),
    );
    let socket = notes.path.clone();
    // As systemd's unit would set them: the unit's state directory is the TOML's data_dir,
    // its runtime directory is not the TOML's run_dir (the daemon warns).
    let data_dir = c.dir.join("data");
    c.start_daemon_with("a", |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "1000000")
            .env("RUNTIME_DIRECTORY", "/run/redisrepd/elsewhere")
            .env("STATE_DIRECTORY", &data_dir);
    });
    c.wait_socket("a");

    let ready = notes.wait_line("READY=1", 0);
    let texts = notes.texts();
    assert_eq!(
        texts.get(ready + 1).map(String::as_str),
        Some("test: master answered"),
        "READY=1 came before the master answered: {texts:#?}"
    );
    let statuses: Vec<&str> = texts[..ready]
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.strip_prefix("STATUS="))
        .collect();
    assert!(
        statuses
            .first()
            .is_some_and(|s| s.starts_with("0/3 online; master starting")),
        "{statuses:#?}"
    );
    let last = statuses.last().copied().unwrap_or_default();
    assert!(
        !last.contains("master"),
        "master online at READY=1: {statuses:#?}"
    );
    // "Every local replica has been started": both have a process.
    let s = c.status();
    for r in ["r1", "r2"] {
        assert!(s[r]["pid"].is_u64(), "{r} started by READY=1: {}", s[r]);
    }

    c.wait_healthy();
    util::wait_until(UP, "STATUS=3/3 online", || {
        notes
            .texts()
            .iter()
            .any(|t| t.lines().any(|l| l == "STATUS=3/3 online"))
    });
    let watchdog_from = notes.texts().len();
    let first = notes.wait_line("WATCHDOG=1", watchdog_from);
    notes.wait_line("WATCHDOG=1", first + 1);

    // Instances see no systemd variable (they would notify systemd themselves).
    for pid in c.redis_pids() {
        let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        for var in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
            assert!(!env.contains(var), "redis-server {pid} has {var}");
        }
    }

    c.daemon("a").proc.signal(Signal::SIGHUP);
    let reloading = notes.wait_line("RELOADING=1", ready + 1);
    let texts = notes.texts();
    let usec = texts[reloading]
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{:?}", texts[reloading]);
    notes.wait_line("READY=1", reloading + 1);

    c.daemon("a").proc.signal(Signal::SIGTERM);
    let stopping = notes.wait_line("STOPPING=1", reloading + 1);
    let status = c.daemon("a").proc.wait_exit(UP);
    assert_eq!(status.code(), Some(0), "{}", c.logs());
    let after: Vec<String> = notes.texts()[stopping..].to_vec();
    assert!(
        after
            .iter()
            .any(|t| t.starts_with("STATUS=") && t.contains("stopping")),
        "STATUS shows the instances stopping: {after:#?}"
    );
    let readies = notes
        .texts()
        .iter()
        .filter(|t| t.lines().any(|l| l == "READY=1"))
        .count();
    assert_eq!(readies, 2, "READY=1 at start and after the reload only");

    let log = c.daemon_log("a");
    assert!(log.contains("redisrepd daemon started"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal"
    );
    assert!(
        log.contains("key `run_dir` is ")
            && log.contains("but the systemd unit made /run/redisrepd/elsewhere for it"),
        "{log}"
    );
    assert!(!log.contains("key `data_dir` is "), "{log}");
}

/// The fields of one journald native-protocol datagram: `KEY=value\n`, or `KEY\n`, a
/// little-endian u64 length, the value and `\n`.
fn journal_fields(mut rest: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8_lossy(&line[..eq]).into_owned();
            fields.insert(key, String::from_utf8_lossy(&line[eq + 1..]).into_owned());
            rest = &rest[nl + 1..];
            continue;
        }
        let key = String::from_utf8_lossy(line).into_owned();
        let after = &rest[nl + 1..];
        let Some(len) = after
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .and_then(|l| usize::try_from(l).ok())
        else {
            break;
        };
        let Some(value) = after.get(8..8 + len) else {
            break;
        };
        fields.insert(key, String::from_utf8_lossy(value).into_owned());
        rest = after.get(8 + len + 1..).unwrap_or_default();
    }
    fields
}

/// With JOURNAL_STREAM naming its stderr, as systemd sets it, the daemon logs to the
/// journal, each instance's output with INSTANCE=<name>; with JOURNAL_STREAM naming
/// something else, plain text on stderr. The journal is a fake journald socket mounted
/// over /run in a mount namespace of the daemon's own (hence root).
#[test]
fn logs_go_to_the_journal_with_the_instance_as_a_field() {
    require_root("a mount namespace for a fake journald");
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let fake_run = c.dir.join("fake-run");
    fs::create_dir_all(fake_run.join("systemd/journal")).expect("mkdir");
    let journal = Listener::bind(&fake_run.join("systemd/journal/socket"), None);
    let wrapper: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount --bind \"$0\" /run && exec \"$@\"",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([fake_run.display().to_string()])
    .collect();
    // The daemon's stderr is its log file, which start_daemon_wrapped has created when it
    // calls this closure: that is the stream JOURNAL_STREAM names.
    let log = c.dir.join("daemon-a.log");
    c.start_daemon_wrapped("a", &wrapper, |cmd| {
        let meta = fs::metadata(&log).expect("daemon log");
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    });
    c.wait_socket("a");
    c.wait_state("master", "running");
    let entries = || -> Vec<HashMap<String, String>> {
        journal
            .messages()
            .iter()
            .map(|m| journal_fields(m))
            .collect()
    };
    util::wait_for(UP, "the master's output in the journal", || {
        let all = entries();
        all.iter()
            .find(|f| {
                f.get("INSTANCE").map(String::as_str) == Some("master")
                    && f.get("MESSAGE")
                        .is_some_and(|m| m.contains("Ready to accept connections"))
            })
            .map(|f| {
                assert_eq!(f["SYSLOG_IDENTIFIER"], "redisrepd");
                assert_eq!(f["PRIORITY"], "6", "info");
            })
            .ok_or_else(|| format!("{all:#?}"))
    });
    let all = entries();
    assert!(
        all.iter()
            .any(|f| f.get("MESSAGE").map(String::as_str) == Some("redisrepd daemon started")),
        "{all:#?}"
    );
    assert!(
        !c.daemon_log("a").contains("daemon started"),
        "nothing on stderr when it is the journal:\n{}",
        c.daemon_log("a")
    );
    assert_eq!(c.stop_daemon("a").code(), Some(0), "{}", c.logs());

    // A JOURNAL_STREAM inherited by a process whose stderr is elsewhere: plain text.
    let before = journal.messages().len();
    c.start_daemon_wrapped("a", &wrapper, |cmd| {
        cmd.env("JOURNAL_STREAM", "1:1");
    });
    c.wait_socket("a");
    c.wait_state("master", "running");
    let log = c.daemon_log("a");
    assert!(log.contains("redisrepd daemon started"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes off a terminal");
    assert_eq!(
        journal.messages().len(),
        before,
        "nothing sent to the journal"
    );
}

// ----- privileges ---------------------------------------------------------------------
