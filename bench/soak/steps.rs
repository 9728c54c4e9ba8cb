//! The soak itself: a step, then the group healthy again and every acknowledged write
//! in place.

use super::*;

// ----- the soak ------------------------------------------------------------------------

/// Why the soak stopped early.
pub(crate) struct Failure {
    pub(crate) step: u64,
    pub(crate) what: String,
}

pub(crate) struct Soak<'a> {
    pub(crate) g: Group,
    pub(crate) writer: Writer,
    pub(crate) syncs: SyncCounter,
    pub(crate) tally: Tally,
    pub(crate) lost: Vec<(String, u64)>,
    pub(crate) interrupted: &'a AtomicBool,
    pub(crate) step: u64,
}

impl Soak<'_> {
    pub(crate) fn fail(&self, what: String) -> Failure {
        Failure {
            step: self.step,
            what,
        }
    }

    /// A verb that must succeed; `stop`/`restart` refused for min-replicas reasons are
    /// retried with `--force` (counted).
    pub(crate) fn verb(&mut self, kind: Kind, args: &[&str]) -> Result<(), Failure> {
        let run = self.g.cli(args, VERB_DEADLINE);
        if run.code == Some(0) {
            return Ok(());
        }
        let refused = run.stderr.contains("--force") && run.stderr.contains("refused");
        if refused && matches!(args.first(), Some(&"stop" | &"restart")) {
            let mut forced = vec![args[0], "--force"];
            forced.extend(&args[1..]);
            self.tally.by_kind.entry(kind).or_default().forced += 1;
            let again = self.g.cli(&forced, VERB_DEADLINE);
            if again.code == Some(0) {
                return Ok(());
            }
            return Err(self.fail(format!("{run}\nthen with --force:\n{again}")));
        }
        Err(self.fail(format!("a verb failed:\n{run}")))
    }

    pub(crate) fn kill(&self, name: &str, pids: &BTreeMap<String, u32>) -> Result<u32, Failure> {
        let pid = *pids
            .get(name)
            .ok_or_else(|| self.fail(format!("no pid for `{name}` in status")))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)
            .map_err(|e| self.fail(format!("kill -9 {pid} (`{name}`): {e}")))?;
        Ok(pid)
    }

    /// Runs one step: the fault, then waits until the group is healthy again, with the
    /// instances it restarts under a new pid and the ones it must leave alone under the
    /// same pid as before.
    pub(crate) fn step(&mut self, kind: Kind, replica: &'static str) -> Result<(), Failure> {
        let pids = self.g.pids();
        if pids.len() != 3 {
            return Err(self.fail(format!("status reports pids {pids:?}, not three")));
        }
        let mut must_change: Vec<(&str, u32)> = Vec::new();
        let mut must_keep: Vec<(&str, u32)> = Vec::new();
        let pid_of = |n: &str| pids.get(n).copied().unwrap_or(0);
        if matches!(
            kind,
            Kind::RestartMaster | Kind::RestartAll | Kind::KillMaster
        ) {
            self.syncs.sample();
        }
        match kind {
            Kind::StopStartReplica => {
                self.verb(kind, &["stop", replica])?;
                self.verb(kind, &["start", replica])?;
                must_change.push((replica, pid_of(replica)));
            }
            Kind::RestartReplica => {
                self.verb(kind, &["restart", replica])?;
                must_change.push((replica, pid_of(replica)));
            }
            Kind::RestartMaster => {
                self.verb(kind, &["restart", "master"])?;
                must_change.push(("master", pid_of("master")));
            }
            Kind::RestartAll => {
                self.verb(kind, &["restart", "--all"])?;
                for n in ["master", "r1", "r2"] {
                    must_change.push((n, pid_of(n)));
                }
            }
            Kind::KillReplica => {
                let pid = self.kill(replica, &pids)?;
                must_change.push((replica, pid));
            }
            Kind::KillMaster => {
                let pid = self.kill("master", &pids)?;
                must_change.push(("master", pid));
            }
            Kind::ReloadUnchanged => {
                self.verb(kind, &["reload"])?;
                for n in ["master", "r1", "r2"] {
                    must_keep.push((n, pid_of(n)));
                }
            }
            Kind::ReloadChanged => {
                if let Some(p) = self.g.policy.get_mut(replica) {
                    *p = 1 - *p;
                }
                self.g.write_toml();
                self.verb(kind, &["reload"])?;
                // `maxmemory-policy` is applied live (CONFIG SET, no restart): every
                // instance keeps its pid, and the replica answers the new value.
                let want = POLICIES[self.g.policy[replica]];
                let got: Result<String, String> = REDIS
                    .connect(self.g.addrs[replica], IO_TIMEOUT)
                    .and_then(|mut c| {
                        redis::cmd("CONFIG")
                            .arg("GET")
                            .arg("maxmemory-policy")
                            .query::<Vec<String>>(&mut c)
                    })
                    .map(|pair| pair.get(1).cloned().unwrap_or_default())
                    .map_err(|e| e.to_string());
                if got.as_deref() != Ok(want) {
                    return Err(self.fail(format!(
                        "after the reload `{replica}` has maxmemory-policy {got:?}, not `{want}`"
                    )));
                }
                for n in ["master", "r1", "r2"] {
                    must_keep.push((n, pid_of(n)));
                }
            }
            Kind::KillDaemon => {
                self.g.kill_daemon();
                self.g.mark("daemon SIGKILLed; starting a new one");
                self.g.start_daemon();
                for n in ["master", "r1", "r2"] {
                    must_keep.push((n, pid_of(n)));
                }
            }
        }
        self.wait_healthy(&must_change, &must_keep)
    }

    /// Waits until `status` exits 0 with every instance running under a pid its daemon
    /// reports; `start`s an instance that is `failed` (counted).
    pub(crate) fn wait_healthy(
        &mut self,
        must_change: &[(&str, u32)],
        must_keep: &[(&str, u32)],
    ) -> Result<(), Failure> {
        let until = Instant::now() + HEALTHY_DEADLINE;
        loop {
            if let Some(status) = self.g.daemon_exited() {
                return Err(self.fail(format!("the daemon exited on its own ({status})")));
            }
            let (run, records) = self.g.status();
            let mut complaint = None;
            for (name, rec) in &records {
                if rec["state"] == "failed" {
                    self.g.mark(&format!("`{name}` is failed: start it"));
                    self.tally.failed_started += 1;
                    let start = self.g.cli(&["start", name], VERB_DEADLINE);
                    if start.code != Some(0) {
                        return Err(self.fail(format!("`{name}` failed, and:\n{start}")));
                    }
                }
            }
            if run.code != Some(0) {
                complaint = Some(format!("status exits {:?}", run.code));
            } else if !run.stderr.trim().is_empty() {
                complaint = Some(format!("status complains: {}", run.stderr.trim()));
            } else if records.len() != 3 || records.values().any(|r| r["pid"].is_null()) {
                complaint = Some("not every instance reported by the daemon".to_owned());
            }
            let pid = |n: &str| records.get(n).and_then(|r| r["pid"].as_u64());
            for (n, old) in must_change {
                if complaint.is_none() && pid(n) == Some(u64::from(*old)) {
                    complaint = Some(format!("`{n}` still runs under its old pid {old}"));
                }
            }
            if complaint.is_none() {
                for (n, old) in must_keep {
                    if pid(n) != Some(u64::from(*old)) {
                        // A real finding, not a wait: the step must not restart it.
                        return Err(self.fail(format!(
                            "`{n}` was restarted (pid {old} -> {:?}) by a step that must leave it running",
                            pid(n)
                        )));
                    }
                }
                return Ok(());
            }
            let complaint = complaint.unwrap_or_default();
            if Instant::now() >= until || self.interrupted.load(Ordering::Relaxed) {
                let table = self.g.cli(&["status"], Duration::from_secs(30));
                return Err(self.fail(format!(
                    "not healthy within {HEALTHY_DEADLINE:?}: {complaint}\n{table}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pauses the writer and checks every acknowledged key: on the master, then on each
    /// replica once it follows the master's replication id at or past the master's offset
    /// (every acknowledged write is below that offset, or in the data set it synced).
    pub(crate) fn check(&mut self) -> Result<(), Failure> {
        let started = Instant::now();
        let paused = self.writer.pause();
        let acked = &paused.acked_numbers();
        let master = self.g.addr("master");
        let stop = self.interrupted;
        let missing = common::wait_for(CATCH_UP_DEADLINE, stop, || missing_on(master, acked))
            .map_err(|e| self.fail(format!("reading the master: {e}")))?;
        if !missing.is_empty() {
            self.lost
                .extend(missing.iter().map(|n| ("master".to_owned(), *n)));
            return Err(self.fail(format!(
                "{} of {} acknowledged writes missing on the master, first {:?}",
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(10)]
            )));
        }
        for r in REPLICAS {
            let addr = self.g.addr(r);
            common::wait_for(CATCH_UP_DEADLINE, stop, || {
                // The master's id and offset are read anew each time: a master restarted
                // without a backlog takes a new replication id when its first replica
                // connects, and `status` may have said "in sync" just before that (its
                // records are as old as the last probe).
                let m = REDIS
                    .info(master, "replication")
                    .map_err(|e| format!("master: {e}"))?;
                let replid = m.get("master_replid").unwrap_or_default();
                let offset = m.repl_offset().unwrap_or(0);
                let i = REDIS.info(addr, "replication")?;
                let (link, id, off) = (
                    i.get("master_link_status").unwrap_or_default(),
                    i.get("master_replid").unwrap_or_default(),
                    int(&i, "slave_repl_offset"),
                );
                if link == "up" && id == replid && off >= offset {
                    Ok(())
                } else {
                    Err(format!(
                        "`{r}`: link {link}, replid {id} offset {off}; master {replid} {offset}"
                    ))
                }
            })
            .map_err(|e| self.fail(format!("`{r}` does not catch up: {e}")))?;
            let missing = common::wait_for(CATCH_UP_DEADLINE, stop, || missing_on(addr, acked))
                .map_err(|e| self.fail(format!("reading `{r}`: {e}")))?;
            if !missing.is_empty() {
                self.lost.extend(missing.iter().map(|n| (r.to_owned(), *n)));
                return Err(self.fail(format!(
                    "{} of {} acknowledged writes missing on `{r}` (at the master's offset), first {:?}",
                    missing.len(),
                    acked.len(),
                    &missing[..missing.len().min(10)]
                )));
            }
        }
        drop(paused);
        self.tally.check_s += started.elapsed().as_secs_f64();
        Ok(())
    }
}
