//! redisrepd under systemd and as root: the unit files (`systemd-analyze verify`, and the
//! defaults they share with the code), sd_notify messages, the journal, instances running
//! as `user` under the unit's capability bounding set, the control socket's peer check,
//! where the password must never show up, and the operator's comforts (completions, man).
//!
//! Tests that need root say so and fail when not run as root (CI runs as root). They
//! create a system user `redisrepd-test` (with a supplementary group `redisrepd-test-x`)
//! when it is missing, and leave it for the next run.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};

use crate::cluster::{self, Cluster, PASSWORD, UP};
use crate::util::{self, QUICK, TestDir};

const TEST_USER: &str = "redisrepd-test";
const TEST_GROUP: &str = "redisrepd-test-x";

// ----- helpers ------------------------------------------------------------------------

#[track_caller]
fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root ({what}); CI runs the tests as root: run them as root, e.g. \
         `sudo -E cargo test systemd::`"
    );
}

/// An unprivileged user with a supplementary group of its own.
struct TestUser {
    uid: Uid,
    gid: Gid,
    extra_gid: Gid,
}

/// `redisrepd-test`, created (with `redisrepd-test-x` as a supplementary group) when
/// missing. Another test process may be creating it at the same moment: useradd then
/// fails on the lock or on "already exists", and the next round finds it.
fn test_user() -> TestUser {
    static CREATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    util::wait_for(UP, "the test user and its group", || {
        use nix::unistd::{Group, User};
        let group = Group::from_name(TEST_GROUP).ok().flatten();
        let user = User::from_name(TEST_USER).ok().flatten();
        let cmd = match (&group, &user) {
            (None, _) => vec!["groupadd", "--system", TEST_GROUP],
            (Some(_), None) => vec![
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--groups",
                TEST_GROUP,
                TEST_USER,
            ],
            (Some(g), Some(u)) => {
                let name = std::ffi::CString::new(TEST_USER).expect("no NUL");
                let groups = nix::unistd::getgrouplist(&name, u.gid).unwrap_or_default();
                if groups.contains(&g.gid) {
                    return Ok(TestUser {
                        uid: u.uid,
                        gid: u.gid,
                        extra_gid: g.gid,
                    });
                }
                vec!["usermod", "--append", "--groups", TEST_GROUP, TEST_USER]
            }
        };
        let out = Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .map_err(|e| format!("{}: {e}", cmd[0]))?;
        Err(format!(
            "{cmd:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// A copy of the group's TOML that anyone may read, without the password file (which
/// only its owner may read): for clients run as other users.
fn public_toml(c: &Cluster) -> PathBuf {
    let path = c.dir.join("public.toml");
    let text = c.toml_text().replace("password_file = \"password\"\n", "");
    fs::write(&path, text).expect("public.toml");
    util::chmod(&path, 0o644);
    path
}

fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("the user `nobody` exists")
}

/// Chowns a path and everything below it.
fn chown_tree(path: &Path, uid: Uid, gid: Gid) {
    std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))
        .unwrap_or_else(|e| panic!("chown {path:?}: {e}"));
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        for e in fs::read_dir(path).expect("read_dir").flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// Every regular file below `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{d:?}: {e}"))
            .flatten()
        {
            let path = e.path();
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// One `Key:` line of /proc/<pid>/status, split into its fields.
fn proc_status(pid: u32, key: &str) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key}: in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn owner_and_mode(path: &Path) -> (u32, u32) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    (m.uid(), m.mode() & 0o7777)
}

/// The password is nowhere it must not be: in no argv or environment of `pids`, in no
/// log (the daemon's, and redis logs under the test dir's `log/`), in no file that group
/// or others may read.
#[track_caller]
fn assert_password_hidden(c: &Cluster, pids: &[u32], password: &str) {
    for pid in pids {
        for what in ["cmdline", "environ"] {
            let bytes = fs::read(format!("/proc/{pid}/{what}"))
                .unwrap_or_else(|e| panic!("/proc/{pid}/{what}: {e}"));
            assert!(
                !String::from_utf8_lossy(&bytes).contains(password),
                "the password is in /proc/{pid}/{what}"
            );
        }
    }
    for path in files_under(c.dir.path()) {
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned();
        if !text.contains(password) {
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        assert!(
            !name.ends_with(".log"),
            "the password is logged in {path:?}"
        );
        assert_eq!(
            owner_and_mode(&path).1 & 0o077,
            0,
            "{path:?} holds the password and group or others may read it"
        );
    }
}

/// A unix datagram socket that collects what is sent to it (sd_notify messages, or
/// journald's native protocol), on a thread, until dropped.
struct Listener {
    path: PathBuf,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Binds `path`; `on_ready`, if given, runs on the listening thread the moment a
    /// message with `READY=1` arrives, and its answer is stored right after that message
    /// (together with it).
    fn bind(path: &Path, on_ready: Option<Box<dyn Fn() -> String + Send>>) -> Listener {
        let socket = UnixDatagram::bind(path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        // The daemon may run as another user (or root without CAP_DAC_OVERRIDE).
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).expect("chmod socket");
        let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (got, stop) = (got.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let msg = buf[..n].to_vec();
                    let ready = String::from_utf8_lossy(&msg)
                        .lines()
                        .any(|l| l == "READY=1");
                    // The answer is stored with the message, in one step: a reader that
                    // sees READY=1 sees what was true the moment it arrived.
                    let answer = on_ready.as_ref().filter(|_| ready).map(|f| f());
                    let mut got = got.lock().expect("lock");
                    got.push(msg);
                    got.extend(answer.map(String::into_bytes));
                }
            })
        };
        Listener {
            path: path.to_owned(),
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        self.got.lock().expect("lock").clone()
    }

    /// The messages as text, one entry per datagram.
    fn texts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    /// Waits for a datagram with the line `line` at index `from` or later; its index.
    #[track_caller]
    fn wait_line(&self, line: &str, from: usize) -> usize {
        util::wait_for(UP, &format!("`{line}` on {:?}", self.path), || {
            let texts = self.texts();
            texts
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, t)| t.lines().any(|l| l == line))
                .map(|(i, _)| i)
                .ok_or_else(|| format!("{texts:#?}"))
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `KEY=value` lines of the units, in order (continuation lines are not used).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn unit_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn setting(settings: &[(String, String)], key: &str) -> String {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// Capability numbers (linux/capability.h) of the names the unit may use.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_FOWNER" => 3,
        "CAP_FSETID" => 4,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_SETPCAP" => 8,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_SYS_PTRACE" => 19,
        "CAP_SYS_RESOURCE" => 24,
        other => panic!("add {other} to cap_number"),
    }
}

/// `setpriv` arguments that run a program the way redisrepd.service runs the daemon: its
/// CapabilityBoundingSet= and NoNewPrivileges=yes; and the bounding set as a bit mask.
fn unit_sandbox() -> (Vec<String>, u64) {
    let settings = unit_settings(&unit_text("redisrepd.service"));
    assert_eq!(setting(&settings, "NoNewPrivileges"), "yes");
    let caps = setting(&settings, "CapabilityBoundingSet");
    let names: Vec<&str> = caps.split_whitespace().collect();
    let mask = names.iter().fold(0u64, |m, n| m | 1 << cap_number(n));
    let spec = names
        .iter()
        .map(|n| format!("+{}", n.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let args = ["setpriv", "--no-new-privs", "--bounding-set"]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("-all,{spec}")])
        .collect();
    (args, mask)
}

// ----- the unit files -----------------------------------------------------------------

/// `systemd-analyze verify` on copies of both units whose Exec lines run the binary cargo
/// built (verify checks that it exists and is executable). It must print nothing at all:
/// no unknown key, no bad value, no missing program.
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

/// A root daemon with `user` set, under the unit's capability bounding set and
/// NoNewPrivileges: every instance runs as the user, its group and its supplementary
/// groups, without capabilities; the instance's own paths belong to the user while the
/// top directories stay root's (mode 0711); a replica restarted gracefully resumes from
/// its RDB (CAP_DAC_READ_SEARCH); a stop that must escalate to signals works (CAP_KILL);
/// the password is in no argv, environment, log or file others may read.
#[test]
fn instances_run_as_the_user_under_the_units_capabilities() {
    require_root("starting instances as another user");
    let user = test_user();
    let mut c = cluster::one_host()
        .cluster(&format!("user = \"{TEST_USER}\"\nlog_dir = \"log\""))
        .supervise("shutdown_timeout", "\"1s\"")
        .redis("save = [\"3600 1\"]\nappendonly = \"yes\"\n")
        .build();
    // tempfile makes the test dir 0700 root: the user must be able to reach its paths.
    util::chmod(c.dir.path(), 0o755);
    let (sandbox, cap_mask) = unit_sandbox();
    c.start_daemon_wrapped("a", &sandbox, |_| {});
    c.wait_socket("a");
    c.wait_healthy();

    let daemon = c.daemon("a").proc.pid();
    assert_eq!(
        proc_status(daemon, "Uid")[0],
        "0",
        "the daemon runs as root"
    );
    let bounding = u64::from_str_radix(&proc_status(daemon, "CapBnd")[0], 16).expect("hex");
    assert_eq!(
        bounding, cap_mask,
        "the daemon runs with the unit's bounding set"
    );
    assert_eq!(proc_status(daemon, "NoNewPrivs"), ["1"]);

    let pids = c.redis_pids();
    assert_eq!(pids.len(), 3, "{}", c.logs());
    let (uid, gid) = (user.uid.to_string(), user.gid.to_string());
    for &pid in &pids {
        assert_eq!(proc_status(pid, "Uid"), [uid.as_str(); 4], "redis {pid}");
        assert_eq!(proc_status(pid, "Gid"), [gid.as_str(); 4], "redis {pid}");
        let groups = proc_status(pid, "Groups");
        assert!(
            groups.contains(&user.extra_gid.to_string()) && groups.contains(&gid),
            "redis {pid} has the user's groups: {groups:?}"
        );
        assert_eq!(proc_status(pid, "CapEff"), ["0000000000000000"]);
    }

    for top in ["run", "data", "log"] {
        assert_eq!(owner_and_mode(&c.dir.join(top)), (0, 0o711), "{top}/");
    }
    for name in ["master", "r1", "r2"] {
        let uid = user.uid.as_raw();
        assert_eq!(owner_and_mode(&c.data_dir(name)).0, uid, "data/{name}");
        assert_eq!(
            owner_and_mode(&c.run_dir().join(format!("{name}.conf"))),
            (uid, 0o600),
            "run/{name}.conf"
        );
        let log = c.dir.join("log").join(format!("{name}.log"));
        assert_eq!(owner_and_mode(&log).0, uid, "log/{name}.log");
        let text = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("Ready to accept connections"),
            "{log:?}: {text}"
        );
    }

    // A graceful restart of a replica with AOF resumes from its RDB (a partial resync):
    // the daemon compares the RDB's and the AOF's dates in the user's data dir, which
    // root may read only with CAP_DAC_READ_SEARCH (else: a silent full sync).
    let run = c.cli(&["restart", "r2"]);
    let r2_log = || fs::read_to_string(c.dir.join("log/r2.log")).unwrap_or_default();
    assert!(
        run.status.success()
            && run.stdout.contains("r2: running")
            && run.stdout.contains("partial resync"),
        "{run}\n--- log/r2.log:\n{}",
        r2_log()
    );

    // A stop that SHUTDOWN cannot do (the process is frozen) escalates to SIGTERM and
    // SIGKILL, signals to a process of another user: CAP_KILL.
    let r1 = c.pid("r1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(r1 as i32), Signal::SIGSTOP)
        .expect("SIGSTOP r1");
    let run = c.cli(&["stop", "r1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("r1: stopped"), "{run}");
    let log = c.daemon_log("a");
    assert!(
        log.contains("SIGKILL"),
        "the stop escalated to SIGKILL:\n{log}"
    );
    c.cli(&["start", "r1"]).expect_code(0);
    c.wait_healthy();

    // A new password, applied in place by a reload: neither shows anywhere it must not.
    let new_password = "pw-Rot4-never-leak";
    c.dir.write("password", format!("{new_password}\n"));
    let run = c.cli(&["reload"]);
    assert!(
        run.status.success() && run.stdout.matches("password changed in place").count() == 3,
        "{run}\n{}",
        c.logs()
    );
    util::ping(c.addr("master"), Some(new_password)).expect("the new password works");
    let mut pids = c.redis_pids();
    pids.push(daemon);
    for password in [PASSWORD, new_password] {
        assert_password_hidden(&c, &pids, password);
    }

    assert_eq!(c.stop_daemon("a").code(), Some(0), "{}", c.logs());
    assert!(c.redis_pids().is_empty(), "every instance stopped");
    for name in ["master", "r1", "r2"] {
        let rdb = c.data_dir(name).join("dump.rdb");
        assert_eq!(owner_and_mode(&rdb).0, user.uid.as_raw(), "{rdb:?}");
    }
}

/// The control socket serves root and the daemon's own user, and refuses anyone else by
/// the peer's credentials, even when the file system lets them connect.
#[test]
fn control_socket_serves_root_and_the_daemons_user_only() {
    require_root("running the daemon and clients as other users");
    let user = test_user();
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    // The daemon runs as the test user, as if started by it: it owns the test dir.
    chown_tree(c.dir.path(), user.uid, user.gid);
    c.start_daemon_with("a", |cmd| {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    });
    c.wait_socket("a");
    c.wait_state("master", "running"); // root is served

    let as_user = |uid: Uid, gid: Gid, config: &Path, args: &[&str]| {
        let mut cmd = util::redisrepd(config);
        cmd.args(args).uid(uid.as_raw()).gid(gid.as_raw());
        util::run(&mut cmd, QUICK)
    };
    // The daemon's own user is served.
    let run = as_user(user.uid, user.gid, &c.config, &["reload", "--host", "a"]);
    run.expect_code(0);
    assert!(run.stdout.contains("nothing to do"), "{run}");

    // Anyone else is refused by the daemon itself: open the file system to them first,
    // and give them a copy of the TOML they may read (without the password file).
    let nobody = nobody();
    let public = public_toml(&c);
    util::chmod(c.dir.path(), 0o711);
    util::chmod(&c.run_dir(), 0o711);
    util::chmod(&c.run_dir().join("a.sock"), 0o666);
    let run = as_user(nobody.uid, nobody.gid, &public, &["reload", "--host", "a"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("permission denied: only root and the daemon's user may control it"),
        "{run}"
    );
    let run = as_user(nobody.uid, nobody.gid, &public, &["stop", "master"]);
    run.expect_code(1);
    assert!(run.stderr.contains("permission denied"), "{run}");
    assert_eq!(c.status()["master"]["state"], "running", "nothing changed");
}

/// A daemon that is not root cannot run instances as someone else: it refuses to start.
#[test]
fn a_daemon_without_root_refuses_another_user() {
    require_root("running the daemon as another user");
    let user = test_user();
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .cluster("user = \"nobody\"")
        .build();
    chown_tree(c.dir.path(), user.uid, user.gid);
    c.start_daemon_with("a", |cmd| {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    });
    let status = c.daemon("a").proc.wait_exit(UP);
    assert_eq!(status.code(), Some(1));
    let log = c.daemon_log("a");
    assert!(
        log.contains(&format!("the daemon runs as uid {}, not root", user.uid))
            && log.contains("cannot run instances as `nobody`"),
        "{log}"
    );
    assert!(c.redis_pids().is_empty());
}

/// `check` warns when run as root about a file without `user` (the daemon would run the
/// instances as root), and about a `user` this machine does not have; not otherwise.
#[test]
fn check_warns_about_instances_as_root() {
    require_root("checking as root and as nobody");
    let c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let warning =
        "no `user` in [cluster]: a daemon started as root runs the Redis instances as root";
    let run = c.cli(&["check", "--host", "a"]);
    run.expect_code(0);
    assert!(run.stderr.contains(warning), "{run}");

    let with_user = |user: &str| {
        let text = c
            .toml_text()
            .replace("[cluster]\n", &format!("[cluster]\nuser = \"{user}\"\n"));
        let path = c.dir.write(format!("{user}.toml"), text);
        util::run(util::redisrepd(&path).args(["check", "--host", "a"]), QUICK)
    };
    let run = with_user("nobody");
    run.expect_code(0);
    assert!(!run.stderr.contains("`user`"), "{run}");
    let run = with_user("no-such-user-rrd");
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("key `user`: no user `no-such-user-rrd` on this machine"),
        "{run}"
    );

    // Not root: no word about root.
    let nobody = nobody();
    let public = public_toml(&c);
    util::chmod(c.dir.path(), 0o755);
    let mut cmd = util::redisrepd(&public);
    cmd.args(["check", "--host", "a"])
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw());
    let run = util::run(&mut cmd, QUICK);
    run.expect_code(0);
    assert!(!run.stderr.contains(warning), "{run}");
}

// ----- operator comforts --------------------------------------------------------------

/// `completions SHELL` prints a script naming every verb (bash's parses), `man` a roff
/// page; an unknown shell is a usage error.
#[test]
fn completions_and_man_page() {
    let verbs = [
        "daemon", "start", "stop", "restart", "status", "reload", "check", "render",
    ];
    let dir = TestDir::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = util::run(
            Command::new(util::bin()).args(["completions", shell]),
            QUICK,
        );
        run.expect_code(0);
        for verb in verbs {
            assert!(run.stdout.contains(verb), "{shell} completion lacks {verb}");
        }
        if shell == "bash" {
            let script = dir.write("redisrepd.bash", &run.stdout);
            util::run(Command::new("bash").arg("-n").arg(&script), QUICK).expect_code(0);
        }
    }
    util::run(
        Command::new(util::bin()).args(["completions", "tcsh"]),
        QUICK,
    )
    .expect_code(2);

    let run = util::run(Command::new(util::bin()).arg("man"), QUICK);
    run.expect_code(0);
    assert!(run.stdout.contains(".TH redisrepd 1"), "{run}");
    for verb in verbs {
        assert!(run.stdout.contains(verb), "the man page lacks {verb}");
    }
}

/// A replica whose master's host is down does not hold READY=1 back: systemd's start job
/// would otherwise wait for another machine.
#[test]
fn ready_does_not_wait_for_a_master_on_a_host_that_is_down() {
    let mut c = cluster::master_and_two_replicas().build();
    let notes = Listener::bind(&c.dir.join("notify.sock"), None);
    let socket = notes.path.clone();
    c.start_daemon_with("b", |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket);
    });
    c.wait_socket("b");
    notes.wait_line("READY=1", 0);
    let s = c.status();
    assert_eq!(s["r1"]["state"], "starting", "{}", s["r1"]);
    assert!(
        s["r1"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("waiting for upstream `master`")),
        "{}",
        s["r1"]
    );
}
