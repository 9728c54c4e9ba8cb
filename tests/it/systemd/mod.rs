//! redisrepd under systemd and as root: the unit files (`systemd-analyze verify`, and the
//! defaults they share with the code), sd_notify messages, the journal, instances running
//! as `user` under the unit's capability bounding set, the control socket's peer check,
//! where the password must never show up, and the operator's comforts (completions, man).
//!
//! Tests that need root say so and fail when not run as root (CI runs as root). They
//! create a system user `redisrepd-test` (with a supplementary group `redisrepd-test-x`)
//! when it is missing, and leave it for the next run.

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
// The tests, by what they look at: the unit files, sd_notify and the journal; users,
// the control socket's peers, the password, the operator's comforts.
mod units;
mod users;
