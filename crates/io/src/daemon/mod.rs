//! `redisrepd daemon`: sets up the host (paths, lock, control socket, signals, prober) and
//! runs the supervisor loop until every instance has stopped.
//!
//! Threads: the supervisor (this one) owns all state — the pure [`machine`] that decides,
//! and the [`runtime`] that carries its effects out; the signal thread, the socket acceptor
//! (one short thread per connection), the prober (with a worker per target) and the
//! workers that talk to Redis only send [`Event`]s to it (the workers' outcomes as the
//! machine's own inputs, [`Event::Machine`]). The recorder thread takes the changes of master from it (the
//! history file, the `[hooks]` program) and sends nothing back. The HTTP listener
//! (`redisrepd_core::http`) reads the view the runtime publishes after every event for the health
//! endpoints, and asks the loop only for `/metrics`, with a bounded wait. The loop sleeps
//! until the next event or the machine's next
//! deadline.

mod backup;
mod claim;
mod prober;
mod recorder;
mod runtime;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use tracing::{info, warn};

use crate::process::RunAs;
use redisrepd_core::config::Group;
use redisrepd_core::control::{Request, Response};
use redisrepd_core::info::Info;
use redisrepd_core::machine;

/// An INFO probe of instance `name`, asked at `asked_at`.
pub struct ProbeAnswer {
    pub name: String,
    pub asked_at: Instant,
    pub result: Result<Info, String>,
}

/// Everything the supervisor reacts to: what the OS and the control and HTTP threads
/// bring, which the runtime turns into the machine's inputs (or answers itself), and the
/// inputs the worker threads already made.
pub enum Event {
    /// An input for the machine as it is: the outcome of a worker's Redis, Sentinel or
    /// claim call (`ShutdownDone`, `ClaimResult`, `PasswordSet`, `LiveApplied`,
    /// `RoleChanged`, `AofRestored`, `SentinelAsked`, `SentinelReconfigured`).
    Machine(machine::Input),
    /// SIGCHLD: some child exited.
    ChildExited,
    /// An adopted instance (started by an earlier daemon) exited.
    AdoptedExited { name: String, pid: u32 },
    /// SIGTERM or SIGINT.
    Terminate,
    /// SIGHUP.
    Reload,
    /// INFO probes of instances (answers of one round that came together). Not inputs
    /// yet: the runtime adds what only it knows (the sync the instance's log named) and
    /// batches them.
    Probes(Vec<ProbeAnswer>),
    /// A scrape of the metrics endpoint: what only the supervisor knows, now.
    Metrics {
        reply: Sender<crate::metrics::Snapshot>,
    },
    /// A control request and where to send its answer.
    Control {
        request: Request,
        reply: Sender<Response>,
    },
}

/// The view the health endpoints decide on: published by the supervisor after every
/// event, read by the HTTP threads (`None` until the first).
pub type SharedView = Arc<RwLock<Option<Arc<redisrepd_core::endpoints::View>>>>;

/// Starts the HTTP listener at `addr`: `/metrics` asks the supervisor (a bounded wait),
/// the health endpoints read the published `view` and never wait on it.
fn spawn_http(
    addr: std::net::SocketAddr,
    tx: Sender<Event>,
    view: SharedView,
) -> Result<crate::http_server::SharedListenState> {
    let tx = Mutex::new(tx);
    let handler: crate::http_server::Handler =
        Arc::new(move |req: &redisrepd_core::http::Request| {
            if redisrepd_core::endpoints::is_endpoint(&req.path) {
                let view = view.read().ok().and_then(|v| v.clone());
                return redisrepd_core::endpoints::respond(req, view.as_deref(), Instant::now());
            }
            crate::metrics::respond(req, || {
                // The supervisor answers between two events; a daemon too busy for a second
                // gets a 503 scrape rather than a hung one.
                let (reply, answer) = mpsc::channel();
                tx.lock().ok()?.send(Event::Metrics { reply }).ok()?;
                answer.recv_timeout(Duration::from_secs(2)).ok()
            })
        });
    crate::http_server::spawn(addr, handler).context("starting the HTTP thread")
}

/// How long a connected client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the daemon for `host` until a stop signal; returns the exit status.
pub fn run(
    config_path: &Path,
    host: Option<String>,
    metrics: Option<std::net::SocketAddr>,
) -> Result<u8> {
    let checked = crate::config_file::load(config_path)?;
    for w in &checked.warnings {
        warn!("{}: {w}", config_path.display());
    }
    let group = checked.group;
    if let Err(e) = crate::config_file::check_hooks(&group, config_path) {
        // The instances matter more than the hook: run, and say it at every change.
        tracing::error!("{e}: each change of master will fail to run it until fixed");
    }
    let host = host.unwrap_or_else(crate::host::hostname);
    if group.start_order(&host).is_empty() {
        bail!(
            "{}: host `{host}` runs no instance of this file (hosts in it: {}); pass --host NAME",
            config_path.display(),
            group.hosts().join(", ")
        );
    }
    let (redis_server, server) =
        crate::server_detect::configured(&group, config_path).map_err(anyhow::Error::msg)?;
    info!(%server, binary = %redis_server.display(), "server");
    // Instances could not start (and redisrepd could not reach them) with TLS files that
    // fail: refused here with `check`'s words rather than as a crash loop.
    let tls = crate::tls_files::verify(&group, &host, Some(&redis_server));
    for w in &tls.warnings {
        warn!("{}: {w}", config_path.display());
    }
    tls.refusal(config_path)?;
    let run_as = run_as(&group)?;
    warn_unit_dirs(&group, config_path);
    prepare_dirs(&group, run_as.as_ref())?;
    let _lock = lock_host(&group, &host)?;
    let socket_path = group.socket_path(&host);
    let listener = listen_on(&socket_path)
        .with_context(|| format!("cannot listen on {}", socket_path.display()))?;
    let _socket_guard = RemoveOnDrop(socket_path.clone());

    let (tx, rx) = mpsc::channel::<Event>();
    let view: SharedView = Arc::new(RwLock::new(None));
    let http = match metrics.or_else(|| group.http.address(&host)) {
        Some(addr) => Some(spawn_http(addr, tx.clone(), view.clone())?),
        None => None,
    };
    spawn_signal_thread(tx.clone())?;
    spawn_acceptor(listener, tx.clone());
    let targets: prober::ProbeTargets = Arc::new(Mutex::new(Vec::new()));
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    {
        let (targets, tx, interval) =
            (targets.clone(), tx.clone(), group.supervise.health_interval);
        let cluster = group.cluster.name.clone();
        std::thread::Builder::new()
            .name("prober".into())
            .spawn(move || prober::run(targets, interval, tx, wake_rx, cluster))?;
    }
    info!(host = %host, socket = %socket_path.display(), "redisrepd daemon started");
    let config_abs = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned());
    // `doctor`'s checks, for the metrics: at start and every 10 minutes, off the
    // supervisor (they read /proc, /sys and the disks), on the file as it is then.
    let doctor = Arc::new(Mutex::new(Vec::new()));
    {
        let (doctor, path, host) = (doctor.clone(), config_path.to_owned(), host.clone());
        std::thread::Builder::new()
            .name("doctor".into())
            .spawn(move || {
                loop {
                    if let Ok(checked) = crate::config_file::load(&path) {
                        let worst = redisrepd_core::doctor::worst_per_check(
                            &crate::doctor::findings(&checked.group, &host),
                        );
                        if let Ok(mut d) = doctor.lock() {
                            *d = worst;
                        }
                    }
                    std::thread::sleep(Duration::from_secs(600));
                }
            })
            .context("starting the doctor thread")?;
    }
    let setup = runtime::Setup {
        config_path: config_abs,
        host,
        redis_server,
        server,
        run_as,
        events: tx,
        probe_targets: targets,
        wake_prober: wake_tx,
        view,
        http,
        doctor,
    };
    let mut rt = runtime::Runtime::start(group, setup, Instant::now());
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut last_watchdog = Instant::now();
    let mut last_trim = Instant::now();
    // An event taken from the queue that ended a batch of probes: handled next.
    let mut held: Option<Event> = None;
    loop {
        if let Some(code) = rt.exit_code {
            return Ok(code);
        }
        let now = Instant::now();
        let mut deadline = rt.next_deadline(now);
        if let Some(w) = watchdog {
            deadline = deadline.min(last_watchdog + w);
        }
        let event = match held.take() {
            Some(ev) => Ok(ev),
            None => rx.recv_timeout(deadline.saturating_duration_since(now)),
        };
        match event {
            Ok(Event::Probes(mut answers)) => {
                // The probes already queued behind them go with them, as one batch: the
                // machine's step over the whole group is taken once for them all, not once
                // each (O(N²) per round with N instances). The first other event ends the
                // batch and is handled next, so the order of events is kept.
                while let Ok(ev) = rx.try_recv() {
                    match ev {
                        Event::Probes(more) => answers.extend(more),
                        other => {
                            held = Some(other);
                            break;
                        }
                    }
                }
                rt.handle(Event::Probes(answers), Instant::now());
            }
            Ok(ev) => rt.handle(ev, Instant::now()),
            Err(RecvTimeoutError::Timeout) => rt.tick(Instant::now()),
            Err(RecvTimeoutError::Disconnected) => return Ok(redisrepd_core::EXIT_FAILED),
        }
        let now = Instant::now();
        if let Some(w) = watchdog
            && now >= last_watchdog + w
        {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            last_watchdog = now;
        }
        if now >= last_trim + HEAP_TRIM_INTERVAL {
            release_free_heap();
            last_trim = now;
        }
    }
}

/// How often the daemon hands freed heap back to the system: soon after a burst, so that
/// the memory a cold start needed is not what the daemon keeps at idle.
const HEAP_TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// Returns the heap's free pages to the system. glibc's malloc keeps what a burst freed
/// (a cold start of 60 instances: claim and probe threads in parallel): measured 43 MB
/// resident at idle afterwards, 12 MB after one trim. Measured in C with 60 threads'
/// arenas: the first trim after such a burst takes ~1.6 ms, the next ones ~10 µs.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases glibc's own free lists; it takes no
    // pointer and is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// The user instances run as: `user` when the daemon is root; refused when it is not root
/// and `user` names someone else.
fn run_as(group: &Group) -> Result<Option<RunAs>> {
    let euid = nix::unistd::geteuid();
    let Some(name) = &group.cluster.user else {
        if euid.is_root() {
            warn!("no `user` in [cluster]: Redis instances run as root; set `user = \"redis\"`");
        }
        return Ok(None);
    };
    let user = nix::unistd::User::from_name(name)?.with_context(|| {
        format!("key `user`: no user `{name}` on this machine; create it or change `user`")
    })?;
    if !euid.is_root() {
        if user.uid == euid {
            return Ok(None);
        }
        bail!(
            "key `user`: the daemon runs as uid {euid}, not root, so it cannot run instances as \
             `{name}`; start it as root or remove `user`"
        );
    }
    let cname = std::ffi::CString::new(name.as_str())?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid).unwrap_or_else(|_| vec![user.gid]);
    Ok(Some(RunAs {
        uid: user.uid,
        gid: user.gid,
        groups,
    }))
}

/// run_dir (0700), data_dir and log_dir (0750), owned by the daemon's user.
///
/// With instances running as `user` the three stay root's, mode 0711: the user may reach
/// its own paths inside (data_dir/<name>, its redis.conf, its log file, which the
/// supervisor hands to it) but can neither list them nor replace root's files (lock,
/// socket, pid files) with links. And systemd's StateDirectory= & co. chown the whole tree
/// back to root at every start when the top directory is not root's.
fn prepare_dirs(group: &Group, run_as: Option<&RunAs>) -> Result<()> {
    let c = &group.cluster;
    let (run_mode, dir_mode) = if run_as.is_some() {
        (0o711, 0o711)
    } else {
        (0o700, 0o750)
    };
    let mut dirs = vec![(&c.run_dir, run_mode), (&c.data_dir, dir_mode)];
    if let Some(log) = &c.log_dir {
        dirs.push((log, dir_mode));
    }
    for (dir, mode) in dirs {
        crate::files::ensure_dir(dir, mode)
            .with_context(|| format!("cannot create {} (mode {mode:o})", dir.display()))?;
    }
    Ok(())
}

/// Under systemd, warns when a directory of the TOML is not the one the unit creates
/// (RuntimeDirectory= etc.): with ProtectSystem=strict it is not writable, and two groups
/// of redisrepd@.service would share it.
fn warn_unit_dirs(group: &Group, config_path: &Path) {
    let c = &group.cluster;
    let pairs = [
        ("RUNTIME_DIRECTORY", "run_dir", Some(&c.run_dir)),
        ("STATE_DIRECTORY", "data_dir", Some(&c.data_dir)),
        ("LOGS_DIRECTORY", "log_dir", c.log_dir.as_ref()),
    ];
    for (var, key, configured) in pairs {
        let (Some(unit_dirs), Some(configured)) = (std::env::var_os(var), configured) else {
            continue;
        };
        let unit_dirs = std::env::split_paths(&unit_dirs).collect::<Vec<_>>();
        if !unit_dirs.iter().any(|d| d == configured) {
            warn!(
                "{}: key `{key}` is {}, but the systemd unit made {} for it (${var}); point \
                 `{key}` there or allow the path in the unit (ReadWritePaths=)",
                config_path.display(),
                configured.display(),
                unit_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            );
        }
    }
}

/// One daemon per host and run_dir: an exclusive lock on `run_dir/<host>.lock`.
fn lock_host(group: &Group, host: &str) -> Result<File> {
    let path = group.cluster.run_dir.join(format!("{host}.lock"));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another redisrepd (pid {}) already runs host `{host}` with run_dir {}",
            holder.trim(),
            group.cluster.run_dir.display()
        );
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// A listener whose `path` appears only once it listens, with mode 0600: bound and
/// chmod-ed as `<host>.new` beside it, then renamed onto `path` (replacing a stale socket:
/// we hold the host lock). Bound in place, `path` would exist between bind() and listen(),
/// when a connect fails with ECONNREFUSED, and before the chmod; yet clients (`--all`,
/// `status`) and the tests take an existing socket file for a daemon that answers.
fn listen_on(path: &Path) -> std::io::Result<UnixListener> {
    // No longer than `path`: a socket's path has a length limit (sun_path).
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp); // stale: left by a daemon that died here
    let listener = UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spawn_signal_thread(tx: Sender<Event>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(signal_event(sig)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// The event for a signal the daemon listens to (SIGTERM, SIGINT, SIGHUP, SIGCHLD).
fn signal_event(sig: i32) -> Event {
    match sig {
        SIGCHLD => Event::ChildExited,
        SIGHUP => Event::Reload,
        _ => Event::Terminate,
    }
}

fn spawn_acceptor(listener: UnixListener, tx: Sender<Event>) {
    let _ = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let tx = tx.clone();
                let _ = std::thread::Builder::new()
                    .name("client".into())
                    .spawn(move || serve_client(stream, tx));
            }
        });
}

/// Answers one client: only root and the daemon's own user are admitted.
fn serve_client(stream: UnixStream, tx: Sender<Event>) {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let me = nix::unistd::geteuid().as_raw();
    let allowed = getsockopt(&stream, PeerCredentials).is_ok_and(|c| c.uid() == 0 || c.uid() == me);
    if !allowed {
        // Take the request first (same cap and timeout): closing on an unread request
        // would fail the client's write (EPIPE) before it could read why.
        let _ = crate::control_socket::read_request(&stream, REQUEST_TIMEOUT);
        let _ = crate::control_socket::write_response(
            &stream,
            &Response::Error {
                message: "permission denied: only root and the daemon's user may control it".into(),
            },
        );
        return;
    }
    let response = match crate::control_socket::read_request(&stream, REQUEST_TIMEOUT) {
        Err(message) => Response::Error { message },
        Ok(request) => {
            let (reply_tx, reply_rx) = mpsc::channel();
            if tx
                .send(Event::Control {
                    request,
                    reply: reply_tx,
                })
                .is_err()
            {
                return;
            }
            match reply_rx.recv() {
                Ok(r) => r,
                Err(_) => Response::Error {
                    message: "the daemon stopped before answering".into(),
                },
            }
        }
    };
    let _ = crate::control_socket::write_response(&stream, &response);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_signal_is_its_event() {
        assert!(matches!(signal_event(SIGCHLD), Event::ChildExited));
        assert!(matches!(signal_event(SIGHUP), Event::Reload));
        assert!(matches!(signal_event(SIGTERM), Event::Terminate));
        assert!(matches!(signal_event(SIGINT), Event::Terminate));
    }
}
