//! The invariants checked after every step, and the checker that drives the steps.

use super::*;

// ----- the invariants ------------------------------------------------------------------

/// A broken promise: which, and the evidence.
pub(crate) struct Failure {
    pub(crate) invariant: &'static str,
    pub(crate) detail: String,
}

pub(crate) fn fail(invariant: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        invariant,
        detail: detail.into(),
    }
}

/// `Ok(master)` when exactly one instance answers as master and every other one is its
/// replica, link up, not syncing or loading, its offset within [`OFFSET_SLACK`] of the
/// master's; else which promise does not hold (yet) and why.
pub(crate) fn shape(
    infos: &[Result<Info, String>],
    addrs: &[SocketAddr; 4],
) -> Result<usize, Failure> {
    let masters: Vec<usize> = (0..4)
        .filter(|i| {
            infos[*i]
                .as_ref()
                .is_ok_and(|inf| inf.role() == Some("master"))
        })
        .collect();
    if masters.len() != 1 {
        let names: Vec<&str> = masters.iter().map(|i| NAMES[*i]).collect();
        return Err(fail(
            "exactly one master",
            format!("{} instances answer as master: {names:?}", masters.len()),
        ));
    }
    let m = masters[0];
    let m_info = infos[m]
        .as_ref()
        .map_err(|e| fail("exactly one master", e.clone()))?;
    let m_off = m_info.repl_offset().unwrap_or(0);
    for i in (0..4).filter(|i| *i != m) {
        let name = NAMES[i];
        let inf = infos[i].as_ref().map_err(|e| {
            fail(
                "every replica in sync",
                format!("`{name}` does not answer: {e}"),
            )
        })?;
        let host = inf.get("master_host").unwrap_or_default();
        let port = inf.get("master_port").unwrap_or_default();
        let follows = host == addrs[m].ip().to_string() && port == addrs[m].port().to_string();
        let off = common::int(inf, "slave_repl_offset");
        let why = if inf.role() != Some("slave") && inf.role() != Some("replica") {
            Some(format!("role {:?}", inf.role()))
        } else if !follows {
            Some(format!(
                "replicates from {host}:{port}, not from `{}`",
                NAMES[m]
            ))
        } else if inf.master_link_up() != Some(true) {
            Some("link down".to_owned())
        } else if inf.sync_in_progress() || inf.loading() {
            Some("syncing or loading".to_owned())
        } else if off + OFFSET_SLACK < m_off {
            Some(format!("offset {off}, the master's {m_off}"))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(fail("every replica in sync", format!("`{name}`: {why}")));
        }
    }
    Ok(m)
}

/// `INFO replication` of `addr` as the server wrote it.
pub(crate) fn info_text(addr: SocketAddr) -> Result<String, String> {
    let mut c = common::connect(
        addr,
        PASSWORD,
        Duration::from_millis(500),
        Duration::from_secs(3),
    )
    .map_err(|e| e.to_string())?;
    redis::cmd("INFO")
        .arg("replication")
        .query(&mut c)
        .map_err(|e| e.to_string())
}

// ----- the run -------------------------------------------------------------------------

/// What one kind of step took.
#[derive(Default)]
pub(crate) struct KindTally {
    pub(crate) count: usize,
    /// Seconds of the fault itself (the verbs, the kills) and until the checks passed.
    pub(crate) step_s: Vec<f64>,
    pub(crate) check_s: Vec<f64>,
}

/// One persistence mode's run.
pub(crate) struct Checker {
    pub(crate) g: Group,
    pub(crate) load: Load,
    /// Acknowledged writes excused from the checks: acknowledged only by replicas on a
    /// host that was then lost with its master (`WAIT 1` promises no more).
    pub(crate) excused: BTreeSet<u64>,
    /// Acknowledged writes a host loss may have taken (acknowledged since the last check
    /// by no more replicas than the lost host held besides its master): excused if missing.
    pub(crate) at_risk: BTreeSet<u64>,
    /// How many acknowledged writes the last check found (those before it are on every
    /// instance).
    pub(crate) checked: usize,
    /// The instance the group must settle on as master: the configured one at first,
    /// then the one the last role-changing verb made master. A crash or a restart keeps
    /// it: its daemon starts it as master again, after a catch-up from an instance that
    /// is master for the moment when its replicas are ahead; the checks wait for that
    /// hand-back, so that the next step aims at the group as it stays.
    pub(crate) expected: usize,
    /// The steps done, as they ran (their targets resolved).
    pub(crate) done: Vec<String>,
    pub(crate) tally: BTreeMap<Kind, KindTally>,
    /// Acknowledged writes found missing.
    pub(crate) lost: usize,
}

/// What a finished run reports.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Steps that passed their checks.
    pub(crate) passed: usize,
    pub(crate) acked: usize,
    pub(crate) excused: usize,
    pub(crate) lost: usize,
    pub(crate) refused: BTreeMap<String, u64>,
    pub(crate) tally: BTreeMap<Kind, KindTally>,
    pub(crate) seconds: f64,
    /// Each broken promise: the step (1-based in the seed's list), what it did, and what
    /// broke.
    pub(crate) failures: Vec<(usize, String, Failure)>,
}

impl Checker {
    /// A verb that must succeed. A refusal the daemon marks as of the moment ("try again":
    /// a crashed master's catch-up still hands the role back) is asked again within
    /// [`SETTLE`]; the group is in a safe shape meanwhile (the checks passed), only busy.
    pub(crate) fn verb(&self, args: &[&str]) -> Result<(), Failure> {
        let until = Instant::now() + SETTLE;
        let mut run = self.g.cli(args);
        while !run.ok() && run.stderr.contains("try again") && Instant::now() < until {
            eprintln!(
                "faults: `{}` refused for the moment, asked again: {}",
                args.join(" "),
                run.stderr.lines().next().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
            run = self.g.cli(args);
        }
        if run.ok() {
            Ok(())
        } else {
            Err(fail(
                "the verb succeeds",
                format!("{}\n{}{}", run.one_line(), run.stdout, run.stderr),
            ))
        }
    }

    /// The group's master now (exactly one answers as master), within [`SETTLE`].
    pub(crate) fn master(&self) -> Result<usize, Failure> {
        let mut last = None;
        let until = Instant::now() + SETTLE;
        loop {
            let infos = self.g.infos();
            match shape(&infos, &self.g.addrs) {
                Ok(m) => return Ok(m),
                Err(f) if f.invariant == "exactly one master" => last = Some(f),
                // In sync or not, one master answers: that is all a step needs to aim.
                Err(_) => {
                    if let Some(m) = (0..4).find(|i| {
                        infos[*i]
                            .as_ref()
                            .is_ok_and(|inf| inf.role() == Some("master"))
                    }) {
                        return Ok(m);
                    }
                }
            }
            if Instant::now() >= until || trio::interrupted() {
                return Err(last.unwrap_or_else(|| fail("exactly one master", "none answers")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The replicas of master `m`, in name order.
    pub(crate) fn replicas_of(m: usize) -> Vec<usize> {
        (0..4).filter(|i| *i != m).collect()
    }

    /// Runs one step's faults; returns what it aimed at, in words.
    pub(crate) fn run_step(&mut self, step: Step) -> Result<String, Failure> {
        let p = step.pick;
        match step.kind {
            Kind::Restart => {
                let name = NAMES[p % 4];
                self.verb(&["restart", name])?;
                Ok(format!("restart {name}"))
            }
            Kind::KillMaster => {
                let m = self.master()?;
                let pid = self
                    .g
                    .kill_instance(m)
                    .map_err(|e| fail("the fault applies", e))?;
                Ok(format!("SIGKILL {} (pid {pid})", NAMES[m]))
            }
            Kind::KillReplica => {
                let m = self.master()?;
                let r = Self::replicas_of(m)[p % 3];
                let pid = self
                    .g
                    .kill_instance(r)
                    .map_err(|e| fail("the fault applies", e))?;
                Ok(format!("SIGKILL {} (pid {pid})", NAMES[r]))
            }
            Kind::KillDaemon => {
                let h = p % 2;
                self.g.kill_daemon(h);
                self.g
                    .start_daemon(h)
                    .map_err(|e| fail("the daemon starts", e))?;
                Ok(format!("SIGKILL daemon {}, new one", HOSTS[h]))
            }
            Kind::RebootHost => {
                let h = p % 2;
                self.g
                    .stop_daemon(h)
                    .map_err(|e| fail("the daemon stops on SIGTERM", e))?;
                self.g
                    .start_daemon(h)
                    .map_err(|e| fail("the daemon starts", e))?;
                Ok(format!("reboot host {}", HOSTS[h]))
            }
            Kind::FailoverAndBack | Kind::FailoverBackToBack => {
                let m = self.master()?;
                let to = Self::replicas_of(m)[p % 3];
                self.verb(&["failover", "--to", NAMES[to]])?;
                self.expected = to;
                if step.kind == Kind::FailoverAndBack {
                    self.check()?;
                    self.wait_writes();
                }
                self.verb(&["failover", "--to", NAMES[m]])?;
                self.expected = m;
                Ok(format!(
                    "failover --to {} then --to {}{}",
                    NAMES[to],
                    NAMES[m],
                    if step.kind == Kind::FailoverBackToBack {
                        " (back to back)"
                    } else {
                        ""
                    }
                ))
            }
            Kind::PromoteAfterHostLoss => self.promote_after_host_loss(),
            Kind::Reload => {
                let i = p % 4;
                self.g.policy[i] = 1 - self.g.policy[i];
                self.g.write_toml();
                self.verb(&["reload"])?;
                Ok(format!(
                    "reload ({} maxmemory-policy {})",
                    NAMES[i], POLICIES[self.g.policy[i]]
                ))
            }
            Kind::ReloadBad => {
                let pids: Vec<Option<u32>> = (0..4).map(|i| self.g.pid(i)).collect();
                self.g.bad = true;
                self.g.write_toml();
                let run = self.g.cli(&["reload"]);
                self.g.bad = false;
                self.g.write_toml();
                if run.ok() {
                    return Err(fail(
                        "a file that fails the checker changes nothing",
                        format!("`reload` accepted `maxmemroy`: {}", run.one_line()),
                    ));
                }
                self.verb(&["reload"])?;
                let now: Vec<Option<u32>> = (0..4).map(|i| self.g.pid(i)).collect();
                if now != pids {
                    return Err(fail(
                        "a file that fails the checker changes nothing",
                        format!("pids before the refused reload {pids:?}, after {now:?}"),
                    ));
                }
                Ok(format!("reload refused ({})", run.one_line()))
            }
            Kind::RestartAll => {
                self.verb(&["restart", "--all"])?;
                Ok("restart --all".to_owned())
            }
        }
    }

    /// The master's host dies: its daemon and instances SIGKILLed. The most advanced
    /// replica of the other host is promoted, then the host comes back. Writes that only
    /// replicas of the lost host acknowledged are excused (`WAIT 1` promised no more).
    pub(crate) fn promote_after_host_loss(&mut self) -> Result<String, Failure> {
        let m = self.master()?;
        let h = HOST_OF[m];
        self.g.kill_daemon(h);
        let on_host: Vec<usize> = (0..4).filter(|i| HOST_OF[*i] == h).collect();
        for i in &on_host {
            // An instance may be between two runs: then it has no live pid to kill.
            let _ = self.g.kill_instance(*i);
        }
        trio::wait(
            "the lost host's instances gone",
            Duration::from_secs(10),
            || match on_host.iter().find(|i| {
                common::connect(
                    self.g.addrs[**i],
                    PASSWORD,
                    Duration::from_millis(200),
                    Duration::from_secs(1),
                )
                .is_ok()
            }) {
                Some(i) => Err(format!("`{}` still answers", NAMES[*i])),
                None => Ok(()),
            },
        )
        .map_err(|e| fail("the fault applies", e))?;
        // No master now, so no write is acknowledged until the promotion: what is at risk
        // was acknowledged since the last check.
        let at_risk = {
            let paused = self.load.pause();
            let others = on_host.len() as i64 - 1;
            (self.checked..paused.acked.len())
                .filter(|k| paused.acked_by[*k] <= others)
                .map(|k| paused.acked[k].1)
                .collect()
        };
        self.at_risk = at_risk;
        let infos = self.g.infos();
        let best = (0..4)
            .filter(|i| HOST_OF[*i] != h)
            .filter_map(|i| {
                infos[i]
                    .as_ref()
                    .ok()
                    .map(|inf| (common::int(inf, "slave_repl_offset"), i))
            })
            .max()
            .map(|(_, i)| i)
            .ok_or_else(|| fail("the fault applies", "no replica answers on the other host"))?;
        self.verb(&["promote", NAMES[best]])?;
        self.expected = best;
        self.g
            .start_daemon(h)
            .map_err(|e| fail("the daemon starts", e))?;
        Ok(format!(
            "host {} lost with {}, promote {}, host back",
            HOSTS[h], NAMES[m], NAMES[best]
        ))
    }
}

impl Checker {
    /// Until [`WRITES_BEFORE`] more writes are acknowledged (at most 10 s: a group that
    /// takes none is the checks' business, not this wait's).
    pub(crate) fn wait_writes(&self) {
        let _ = self
            .load
            .wait_writes_within(WRITES_BEFORE, Duration::from_secs(10));
    }

    /// The promises, with the writer paused: within [`SETTLE`] exactly one master, the
    /// expected one, and every other instance its replica, in sync; then every
    /// acknowledged write on it.
    pub(crate) fn check(&mut self) -> Result<(), Failure> {
        let paused = self.load.pause();
        let until = Instant::now() + SETTLE;
        let m = loop {
            let infos = self.g.infos();
            let f = match shape(&infos, &self.g.addrs) {
                Ok(m) if m == self.expected => break m,
                // A settled shape around another master: a role change still under way
                // (a crashed master's catch-up not handed back yet), or one nobody asked.
                Ok(m) => fail(
                    "the master stays the one asked for",
                    format!(
                        "`{}` is master with every replica in sync, `{}` expected",
                        NAMES[m], NAMES[self.expected]
                    ),
                ),
                Err(f) => f,
            };
            if Instant::now() >= until || trio::interrupted() {
                return Err(Failure {
                    detail: format!("not so within {SETTLE:?}: {}", f.detail),
                    ..f
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let wanted: Vec<u64> = paused
            .acked
            .iter()
            .map(|(_, n)| *n)
            .filter(|n| !self.excused.contains(n))
            .collect();
        let total = paused.acked.len();
        let addr = self.g.addrs[m];
        let until = Instant::now() + READ_BACK;
        let missing = loop {
            let missing = trio::missing_on(addr, PREFIX, &wanted);
            match missing {
                Ok(v) if v.is_empty() => break v,
                _ if Instant::now() < until && !trio::interrupted() => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(v) => break v,
                Err(e) => return Err(fail("acknowledged writes readable", e)),
            }
        };
        let (excused, lost): (Vec<u64>, Vec<u64>) =
            missing.into_iter().partition(|n| self.at_risk.contains(n));
        self.at_risk.clear();
        self.excused.extend(&excused);
        if !lost.is_empty() {
            self.lost = lost.len();
            return Err(fail(
                "no acknowledged write lost",
                format!(
                    "{} of {} acknowledged writes missing on the master `{}`, e.g. {:?} (last \
                     acknowledged: {:?}; excused: {})",
                    lost.len(),
                    wanted.len(),
                    NAMES[m],
                    lost.iter()
                        .take(10)
                        .map(|n| format!("{PREFIX}{n}"))
                        .collect::<Vec<_>>(),
                    paused.acked.last().map(|(_, n)| n),
                    self.excused.len()
                ),
            ));
        }
        self.checked = total;
        Ok(())
    }

    /// Everything a failure report shows besides the broken promise.
    pub(crate) fn evidence(&self) -> String {
        let mut e = String::new();
        let infos = self.g.infos();
        for (i, inf) in infos.iter().enumerate() {
            let _ = writeln!(
                e,
                "--- `{}` ({}, host {}, pid {:?}):",
                NAMES[i],
                self.g.addrs[i],
                HOSTS[HOST_OF[i]],
                self.g.pid(i)
            );
            let _ = inf;
            match info_text(self.g.addrs[i]) {
                Ok(text) => {
                    let _ = writeln!(e, "{}", text.trim_end());
                }
                Err(err) => {
                    let _ = writeln!(e, "  does not answer: {err}");
                }
            }
        }
        let status = self.g.cli(&["status"]);
        let _ = writeln!(
            e,
            "--- `redisrepd status`:\n{}{}",
            status.stdout, status.stderr
        );
        for (h, host) in HOSTS.iter().enumerate() {
            let _ = writeln!(
                e,
                "--- daemon {host} (last 40 lines of {}):\n{}",
                self.g.daemon_log(h).display(),
                self.g.log_tail(h, 40)
            );
        }
        e
    }
}
