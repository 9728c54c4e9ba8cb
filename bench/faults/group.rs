//! The hosts (namespaces or loopback addresses) and the group on them: its TOML, daemons,
//! verbs, faults and the instances' answers.

use super::*;

// ----- the hosts -----------------------------------------------------------------------

/// Where the hosts are: network namespaces (root) or loopback addresses.
pub(crate) struct Hosts {
    pub(crate) ips: [IpAddr; 2],
    /// The namespaces, host `a`'s then host `b`'s; `None` on loopback.
    pub(crate) netns: Option<([String; 2], redisrepd_testkit::netns::Netns)>,
}

impl Hosts {
    pub(crate) fn new(loopback: bool) -> Hosts {
        let root = nix::unistd::geteuid().is_root() && which::which("ip").is_ok();
        if loopback || !root {
            return Hosts {
                ips: [
                    "127.0.0.111".parse().expect("an IP"),
                    "127.0.0.112".parse().expect("an IP"),
                ],
                netns: None,
            };
        }
        let pid = std::process::id();
        let names = [format!("rrd-{pid}-fa"), format!("rrd-{pid}-fb")];
        let veths = [format!("rrd{pid}fa"), format!("rrd{pid}fb")];
        let ips = ["192.168.77.101", "192.168.77.102"];
        let ns = redisrepd_testkit::netns::Netns::pair(
            [&names[0], &names[1]],
            [&veths[0], &veths[1]],
            ips,
        );
        Hosts {
            ips: ips.map(|i| i.parse().expect("an IP")),
            netns: Some((names, ns)),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match &self.netns {
            Some((names, _)) => format!(
                "network namespaces {} ({}) and {} ({})",
                names[0], self.ips[0], names[1], self.ips[1]
            ),
            None => format!("loopback addresses {} and {}", self.ips[0], self.ips[1]),
        }
    }

    /// Runs `f` where host `b` is: in its namespace (threads and processes started from
    /// there are in it too), or here.
    pub(crate) fn run_in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.netns {
            Some((names, _)) => redisrepd_testkit::netns::in_ns(&names[1], f),
            None => f(),
        }
    }
}

// ----- the group -----------------------------------------------------------------------

/// One run's group: dir, TOML, addresses, daemons. Dropping it kills the daemons and
/// every server working under the dir, and removes the dir unless it is to be kept.
pub(crate) struct Group {
    pub(crate) dir: PathBuf,
    pub(crate) toml: PathBuf,
    pub(crate) addrs: [SocketAddr; 4],
    pub(crate) server: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) policy: [usize; 4],
    /// Whether the file carries a misspelt directive (`maxmemroy`), which the checker
    /// must reject.
    pub(crate) bad: bool,
    /// The namespace of each host, when there are namespaces.
    pub(crate) netns: Option<[String; 2]>,
    pub(crate) daemons: [Option<Child>; 2],
    pub(crate) keep: bool,
}

impl Group {
    /// A fresh dir and TOML for the group that starts at step `first` (0-based).
    pub(crate) fn new(hosts: &Hosts, server: &Path, mode: Mode, first: usize) -> Group {
        let dir = common::fresh_dir(&format!("faults-{}-{first}", mode.label()));
        let addrs: [SocketAddr; 4] = std::array::from_fn(|i| {
            let ip = hosts.ips[HOST_OF[i]];
            // In a namespace the addresses are the group's own; on loopback, free ports.
            let port = match hosts.netns {
                Some(_) => 6379 + (i % 2) as u16,
                None => redisrepd_testkit::free_port(ip),
            };
            SocketAddr::new(ip, port)
        });
        let password = dir.join("password");
        std::fs::write(&password, format!("{PASSWORD}\n")).expect("writing the password file");
        redisrepd_testkit::chmod(&password, 0o600);
        std::fs::create_dir_all(dir.join("log")).expect("creating the log dir");
        let g = Group {
            toml: dir.join("group.toml"),
            dir,
            addrs,
            server: server.to_owned(),
            mode,
            policy: [0; 4],
            bad: false,
            netns: hosts.netns.as_ref().map(|(n, _)| n.clone()),
            daemons: [None, None],
            keep: false,
        };
        g.write_toml();
        g
    }

    pub(crate) fn toml_text(&self) -> String {
        let mut t = format!(
            "[cluster]\nname = \"faults\"\npassword_file = \"password\"\nredis_server = \"{}\"\n\
             run_dir = \"run\"\ndata_dir = \"data\"\nlog_dir = \"log\"\n\n\
             [supervise]\nstart_timeout = \"60s\"\nshutdown_timeout = \"30s\"\n\
             restart_delay = \"100ms\"\nrestart_delay_max = \"1s\"\nhealth_interval = \"100ms\"\n\
             crash_loop_limit = 1000\nsync_timeout = \"60s\"\n\n[redis]\n{}\n",
            self.server.display(),
            self.mode.redis()
        );
        if self.bad {
            t.insert_str(t.len() - 1, "maxmemroy = \"1gb\"\n");
        }
        for (i, name) in NAMES.iter().enumerate() {
            let _ = write!(
                t,
                "[[instance]]\nname = \"{name}\"\nhost = \"{}\"\nbind = \"{}\"\nport = {}\n",
                HOSTS[HOST_OF[i]],
                self.addrs[i].ip(),
                self.addrs[i].port()
            );
            if i > 0 {
                t.push_str("replica_of = \"master\"\n");
            }
            let _ = writeln!(
                t,
                "[instance.redis]\nmaxmemory-policy = \"{}\"\n",
                POLICIES[self.policy[i]]
            );
        }
        t
    }

    /// Writes group.toml atomically (temp file + rename).
    pub(crate) fn write_toml(&self) {
        let tmp = self.dir.join("group.toml.tmp");
        std::fs::write(&tmp, self.toml_text()).expect("writing group.toml");
        std::fs::rename(&tmp, &self.toml).expect("renaming group.toml");
    }

    pub(crate) fn daemon_log(&self, host: usize) -> PathBuf {
        self.dir.join(format!("daemon-{}.log", HOSTS[host]))
    }

    /// A line in both daemon logs, so that they read alongside the steps.
    pub(crate) fn mark(&self, line: &str) {
        for h in 0..2 {
            if let Ok(mut f) = std::fs::File::options()
                .create(true)
                .append(true)
                .open(self.daemon_log(h))
            {
                use std::io::Write as _;
                let _ = writeln!(f, "===== faults: {line}");
            }
        }
    }

    /// Starts host `h`'s daemon (in its namespace) and waits for its control socket.
    pub(crate) fn start_daemon(&mut self, h: usize) -> Result<(), String> {
        let socket = self.dir.join("run").join(format!("{}.sock", HOSTS[h]));
        // A SIGKILLed daemon leaves its socket: wait for the new one's.
        let _ = std::fs::remove_file(&socket);
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns[h]]).arg(trio::BIN);
                c
            }
            None => Command::new(trio::BIN),
        };
        cmd.arg("--config")
            .arg(&self.toml)
            .args(["daemon", "--host", HOSTS[h]])
            .env_remove("REDISREPD_CONFIG");
        let child = trio::spawn_logged(&mut cmd, &self.daemon_log(h))?;
        self.daemons[h] = Some(child);
        trio::wait(
            &format!("daemon {}'s control socket", HOSTS[h]),
            Duration::from_secs(60),
            || {
                if let Some(Ok(Some(status))) = self.daemons[h].as_mut().map(Child::try_wait) {
                    return Err(format!("the daemon exited ({status})"));
                }
                socket
                    .exists()
                    .then_some(())
                    .ok_or_else(|| "absent".to_owned())
            },
        )
    }

    pub(crate) fn kill_daemon(&mut self, h: usize) {
        if let Some(mut d) = self.daemons[h].take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// SIGTERM to host `h`'s daemon, and wait for it to exit (it stops its instances).
    pub(crate) fn stop_daemon(&mut self, h: usize) -> Result<(), String> {
        let Some(mut d) = self.daemons[h].take() else {
            return Ok(());
        };
        trio::kill_pid(d.id(), Signal::SIGTERM);
        let status = trio::wait(
            &format!("daemon {} to exit after SIGTERM", HOSTS[h]),
            VERB_DEADLINE,
            || {
                d.try_wait()
                    .ok()
                    .flatten()
                    .ok_or_else(|| "running".to_owned())
            },
        );
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("daemon {} exited {s} after SIGTERM", HOSTS[h])),
            Err(e) => {
                let _ = d.kill();
                let _ = d.wait();
                Err(e)
            }
        }
    }

    pub(crate) fn cli(&self, args: &[&str]) -> Run {
        common::cli(
            &self.dir,
            &self.toml,
            args,
            VERB_DEADLINE,
            &trio::interrupted,
        )
    }

    /// The pid in an instance's pid file (the daemon writes it).
    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        let f = self.dir.join("run").join(format!("{}.pid", NAMES[i]));
        std::fs::read_to_string(f)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// SIGKILL to an instance, by its pid file, if that pid is a server's.
    pub(crate) fn kill_instance(&self, i: usize) -> Result<u32, String> {
        let pid = self
            .pid(i)
            .ok_or_else(|| format!("no pid file for `{}`", NAMES[i]))?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !redisrepd_testkit::is_server_comm(&comm) {
            return Err(format!("`{}`'s pid {pid} is not a server", NAMES[i]));
        }
        trio::kill_pid(pid, Signal::SIGKILL);
        // Gone, not just signalled: a check right after must not read the dying server.
        trio::wait(
            &format!("`{}` (pid {pid}) gone after SIGKILL", NAMES[i]),
            Duration::from_secs(10),
            || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat)
                    if !stat
                        .rsplit_once(") ")
                        .is_some_and(|(_, s)| s.starts_with('Z')) =>
                {
                    Err("still running".to_owned())
                }
                _ => Ok(()),
            },
        )?;
        Ok(pid)
    }

    /// INFO replication of each instance (`Err` when it does not answer).
    pub(crate) fn infos(&self) -> Vec<Result<Info, String>> {
        self.addrs
            .iter()
            .map(|a| {
                common::info(
                    *a,
                    PASSWORD,
                    "replication",
                    Duration::from_millis(500),
                    Duration::from_secs(3),
                )
            })
            .collect()
    }

    /// Host `h`'s daemon log from the mark of step `n` on (at most `lines` lines).
    pub(crate) fn log_since_step(&self, h: usize, n: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(self.daemon_log(h)).unwrap_or_default();
        let mark = format!("===== faults: step {n}/");
        let from = log.rfind(&mark).unwrap_or(log.len());
        log[from..]
            .lines()
            .take(lines)
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) fn log_tail(&self, h: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(self.daemon_log(h)).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The daemons first (SIGKILL: they restart nothing), then every server left.
        for h in 0..2 {
            self.kill_daemon(h);
        }
        for pid in redisrepd_testkit::redis_and_forks_under(&self.dir) {
            trio::kill_pid(pid, Signal::SIGKILL);
        }
        // Gone before the next group takes the same ports.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redisrepd_testkit::redis_and_forks_under(&self.dir).is_empty()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.keep {
            eprintln!("faults: files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
