//! The soak's group and what it reads of it: the TOML, the daemon, the CLI, the writer,
//! the master's full and partial syncs.

use super::*;

// ----- the group -----------------------------------------------------------------------

/// The soak's group: its dir, TOML, addresses, daemon. Dropping it kills the daemon and
/// every redis-server working under the dir.
pub(crate) struct Group {
    pub(crate) dir: PathBuf,
    pub(crate) toml: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) addrs: BTreeMap<&'static str, SocketAddr>,
    pub(crate) policy: BTreeMap<&'static str, usize>,
    pub(crate) daemon: Option<Child>,
    pub(crate) keep_dir: bool,
}

impl Group {
    pub(crate) fn new() -> Group {
        let dir = common::fresh_dir("soak");
        let mut addrs = BTreeMap::new();
        for name in ["master", "r1", "r2"] {
            addrs.insert(name, SocketAddr::from(([127, 0, 0, 1], free_port())));
        }
        let password = dir.join("password");
        std::fs::write(&password, format!("{PASSWORD}\n")).expect("password file");
        std::fs::set_permissions(
            &password,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod password");
        let g = Group {
            toml: dir.join("group.toml"),
            log: dir.join("daemon.log"),
            dir,
            addrs,
            policy: REPLICAS.iter().map(|r| (*r, 0)).collect(),
            daemon: None,
            keep_dir: false,
        };
        g.write_toml();
        g
    }

    pub(crate) fn addr(&self, name: &str) -> SocketAddr {
        self.addrs[name]
    }

    pub(crate) fn toml_text(&self) -> String {
        let mut t = String::from(
            "[cluster]\nname = \"soak\"\npassword_file = \"password\"\nrun_dir = \"run\"\n\
             data_dir = \"data\"\n\n\
             [supervise]\nstart_timeout = \"60s\"\nshutdown_timeout = \"30s\"\n\
             restart_delay = \"100ms\"\nrestart_delay_max = \"1s\"\nhealth_interval = \"100ms\"\n\
             crash_loop_limit = 1000\nsync_timeout = \"120s\"\n\n\
             [redis]\nsave = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"always\"\n\n",
        );
        for (name, addr) in &self.addrs {
            let _ = write!(
                t,
                "[[instance]]\nname = \"{name}\"\nhost = \"a\"\nbind = \"{}\"\nport = {}\n",
                addr.ip(),
                addr.port()
            );
            if let Some(p) = self.policy.get(name) {
                let _ = write!(
                    t,
                    "replica_of = \"master\"\n[instance.redis]\nmaxmemory-policy = \"{}\"\n",
                    POLICIES[*p]
                );
            }
            t.push('\n');
        }
        t
    }

    /// Writes group.toml atomically (temp file + rename).
    pub(crate) fn write_toml(&self) {
        let tmp = self.dir.join("group.toml.tmp");
        std::fs::write(&tmp, self.toml_text()).expect("writing group.toml");
        std::fs::rename(&tmp, &self.toml).expect("renaming group.toml");
    }

    /// A line in the daemon log, so the log reads alongside the steps.
    pub(crate) fn mark(&self, line: &str) {
        if let Ok(mut f) = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            let _ = writeln!(f, "===== soak: {line}");
        }
    }

    pub(crate) fn start_daemon(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.toml)
            .args(["daemon", "--host", "a"])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("daemon log"))
            .stderr(log);
        // Its own process group: a Ctrl-C in the terminal reaches only the soak.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.daemon = Some(cmd.spawn().expect("starting redisrepd daemon"));
    }

    pub(crate) fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// `Some(status)` when the daemon has exited on its own.
    pub(crate) fn daemon_exited(&mut self) -> Option<String> {
        let d = self.daemon.as_mut()?;
        match d.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Runs `redisrepd --config group.toml ARGS` with a deadline.
    pub(crate) fn cli(&self, args: &[&str], deadline: Duration) -> Run {
        common::cli(&self.dir, &self.toml, args, deadline, &|| false)
    }

    /// `status --json`: the run and the records by name.
    pub(crate) fn status(&self) -> (Run, BTreeMap<String, Value>) {
        let run = self.cli(&["status", "--json"], Duration::from_secs(30));
        let records = serde_json::from_str::<Value>(&run.stdout)
            .ok()
            .and_then(|doc| doc["instances"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i["name"].as_str().unwrap_or_default().to_owned(), i))
            .collect();
        (run, records)
    }

    /// The pid of each instance as its daemon reports it.
    pub(crate) fn pids(&self) -> BTreeMap<String, u32> {
        self.status()
            .1
            .into_iter()
            .filter_map(|(n, r)| Some((n, r["pid"].as_u64()? as u32)))
            .collect()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The daemon first (SIGKILL: it restarts nothing), then every instance left.
        self.kill_daemon();
        for pid in redis_under(&self.dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if self.keep_dir {
            eprintln!("soak: files kept in {}", self.dir.display());
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !redis_under(&self.dir).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ----- Redis ---------------------------------------------------------------------------

/// Room for slow replies (a check reads thousands of keys per pipeline).
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The acknowledged keys `addr` lacks (or holds with another value).
pub(crate) fn missing_on(addr: SocketAddr, acked: &[u64]) -> Result<Vec<u64>, String> {
    let mut con = REDIS
        .connect(addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    redisrepd_testkit::missing_keys(&mut con, "soak:", acked).map_err(|e| e.to_string())
}

// ----- the writer ----------------------------------------------------------------------

/// The testkit's writer: `SET soak:<n> <n>` to the master at `rate` per second (0: as
/// fast as it can), a write acknowledged on its `OK`; a failed connection is retried
/// after 20 ms. The soak pauses it (between two writes) to check.
pub(crate) fn writer(master: SocketAddr, rate: u64) -> Writer {
    Writer::start(
        Target::Fixed(master),
        WriterOpts {
            password: Some(PASSWORD.to_owned()),
            prefix: "soak:".to_owned(),
            pause: Duration::ZERO,
            rate,
            backoff: (Duration::from_millis(20), Duration::from_millis(20)),
            connect_timeout: Duration::from_millis(500),
            io_timeout: IO_TIMEOUT,
            max_run: Duration::from_secs(24 * 3600),
            ..WriterOpts::default()
        },
    )
}

// ----- full and partial syncs served by the master ------------------------------------

/// Reads the master's `sync_full` / `sync_partial_ok` / `sync_partial_err` every 100 ms
/// and keeps the last values seen per `run_id`: the counters start from 0 at each master
/// restart, so the totals are the sums over run ids.
pub(crate) struct SyncCounter {
    pub(crate) seen: Arc<Mutex<BTreeMap<String, [i64; 3]>>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) master: SocketAddr,
    pub(crate) handle: Option<JoinHandle<()>>,
}

impl SyncCounter {
    pub(crate) fn start(master: SocketAddr) -> SyncCounter {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    Self::read(master, &seen);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        SyncCounter {
            seen,
            stop,
            master,
            handle: Some(handle),
        }
    }

    pub(crate) fn read(master: SocketAddr, seen: &Mutex<BTreeMap<String, [i64; 3]>>) {
        let Ok(stats) = REDIS.info(master, "default") else {
            return;
        };
        let Some(run_id) = stats.get("run_id") else {
            return;
        };
        let now = [
            stats.sync_full(),
            stats.sync_partial_ok(),
            int(&stats, "sync_partial_err"),
        ];
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(run_id.to_owned()).or_default();
        for (e, n) in entry.iter_mut().zip(now) {
            *e = (*e).max(n);
        }
    }

    /// Reads the counters now: before the master is restarted or killed.
    pub(crate) fn sample(&self) {
        Self::read(self.master, &self.seen);
    }

    /// (full syncs, partial resyncs accepted, partial resyncs refused), summed over runs.
    pub(crate) fn totals(&self) -> [i64; 3] {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().fold([0; 3], |mut t, v| {
            for (t, v) in t.iter_mut().zip(v) {
                *t += v;
            }
            t
        })
    }

    pub(crate) fn master_runs(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for SyncCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
