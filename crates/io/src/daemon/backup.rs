//! The daemon's part of backups and restores: the schedule (`[backup] every`), one
//! backup at a time per daemon, each in a worker thread (a save and a copy take as long
//! as the data is big; the supervisor never waits for them), and the counts `status` and
//! the metrics show. A restore's file work on this host is a worker too. The decisions are
//! in [`crate::backup`]; this only carries them out and keeps the score.

use crate::redis_io::Client as _;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::backup::take;
use crate::process::RunAs;
use crate::redis_io::Endpoint;
use redisrepd_core::backup::{self, BackupStatus, DataFiles};
use redisrepd_core::config::Group;
use redisrepd_core::control::Response;
use redisrepd_core::server::Server;

/// This daemon's backups: the schedule, the one running, the score.
pub struct Backups {
    running: Arc<AtomicBool>,
    status: Arc<Mutex<BackupStatus>>,
    /// When the next scheduled backup is due (`None`: no `[backup] every`).
    next_due: Option<Instant>,
    every: Option<Duration>,
    /// The configured server binary and its name, for the load test.
    server: Option<(PathBuf, String)>,
}

/// Clears the running flag when the worker ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Backups {
    /// The first scheduled backup is due one `every` after the daemon starts.
    pub fn new(group: &Group, host: &str, now: Instant) -> Backups {
        let every = group.backup.every;
        Backups {
            running: Arc::new(AtomicBool::new(false)),
            status: Arc::new(Mutex::new(BackupStatus {
                host: host.to_owned(),
                every_s: every.map(|e| e.as_secs()),
                ..BackupStatus::default()
            })),
            next_due: every.map(|e| now + e),
            every,
            server: None,
        }
    }

    /// Load-tests small backups with this server binary.
    pub fn with_server(mut self, binary: PathBuf, server: Server) -> Backups {
        self.server = Some((binary, server.to_string()));
        self
    }

    /// When the next scheduled backup is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_due
    }

    /// The score, for `status` and the metrics.
    pub fn status(&self) -> BackupStatus {
        let mut s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        s.running = self.running.load(Ordering::SeqCst);
        s
    }

    fn claim(&self) -> Option<Running> {
        self.running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Running(self.running.clone()))
    }

    /// `redisrepd backup`: on `instance`, which this daemon must run; answers `reply`
    /// when the backup is in place (or failed).
    pub fn manual(
        &self,
        group: &Group,
        host: &str,
        instance: &str,
        to: Option<PathBuf>,
        reply: Sender<Response>,
    ) {
        let error = |message: String| {
            let _ = reply.send(Response::Error { message });
        };
        let Some(inst) = group.instance(instance).cloned() else {
            return error(format!("no instance `{instance}` in the file"));
        };
        if inst.host != host {
            return error(format!(
                "instance `{instance}` runs on host `{}`, not `{host}`: ask its daemon",
                inst.host
            ));
        }
        let Some(guard) = self.claim() else {
            return error(
                "a backup is already being taken by this daemon: try again when it ends".into(),
            );
        };
        let (group, status, server) = (group.clone(), self.status.clone(), self.server.clone());
        spawn("backup", move || {
            let _guard = guard;
            let dir = to.unwrap_or_else(|| group.backup.dir.clone());
            let outcome = backup_and_upload(&group, &inst, &dir, None, server.as_ref());
            let response = match &outcome {
                Ok((_, lines)) => Response::Done {
                    ok: true,
                    lines: lines.clone(),
                    failed: Vec::new(),
                },
                Err(e) => Response::Error { message: e.clone() },
            };
            score(&status, outcome);
            let _ = reply.send(response);
        });
    }

    /// Time passed: starts the scheduled backup when it is due and this daemon runs the
    /// instance it must come from (each daemon with the schedule asks; the one that runs
    /// the source takes it). Never two at once: a backup still running skips this turn.
    /// While the group is paused (`paused`), a due backup is skipped: maintenance mode
    /// holds everything automatic (`redisrepd backup` still works).
    pub fn tick(&mut self, group: &Group, host: &str, paused: bool, now: Instant) {
        if group.backup.every != self.every {
            // Reloaded with another schedule.
            self.every = group.backup.every;
            self.next_due = self.every.map(|e| now + e);
            if let Ok(mut s) = self.status.lock() {
                s.every_s = self.every.map(|e| e.as_secs());
            }
        }
        let (Some(due), Some(every)) = (self.next_due, self.every) else {
            return;
        };
        if now < due {
            return;
        }
        self.next_due = Some(now + every);
        if paused {
            info!("scheduled backup skipped: the group is paused");
            return;
        }
        let Some(guard) = self.claim() else {
            warn!("scheduled backup skipped: the previous one is still running");
            return;
        };
        let (group, host, status) = (group.clone(), host.to_owned(), self.status.clone());
        let server = self.server.clone();
        spawn("backup-scheduled", move || {
            let _guard = guard;
            let infos = ask_all(&group);
            let source = match backup::choose_source(&group, &infos) {
                Ok(s) => s.clone(),
                Err(e) => {
                    // Every daemon sees the same group: only the one that would take
                    // the backup counts the failure (the configured master's host).
                    if group.master().host == host {
                        warn!("scheduled backup: {e}");
                        score(&status, Err(e));
                    }
                    return;
                }
            };
            if source.host != host {
                return; // the daemon of its host takes it
            }
            let keep = group.backup.keep;
            let outcome = backup_and_upload(
                &group,
                &source,
                &group.backup.dir,
                Some(keep),
                server.as_ref(),
            );
            score(&status, outcome);
        });
    }

    /// `restore`'s part on this host: every data file of this host's instances set aside,
    /// and `file` given to `master` when it runs here. Refused unless every one of them is
    /// stopped (`stopped(name)`).
    pub fn restore(
        &self,
        group: &Group,
        here: Here<'_>,
        request: (PathBuf, String),
        stopped: impl Fn(&str) -> bool,
        reply: Sender<Response>,
    ) {
        let (file, master) = request;
        let Here {
            host,
            server,
            run_as,
        } = here;
        let names: Vec<String> = group
            .start_order(host)
            .iter()
            .map(|i| i.name.clone())
            .collect();
        if let Some(up) = names.iter().find(|n| !stopped(n)) {
            let _ = reply.send(Response::Error {
                message: format!("instance `{up}` is not stopped: stop every instance first"),
            });
            return;
        }
        let Some(guard) = self.claim() else {
            let _ = reply.send(Response::Error {
                message: "a backup is being taken by this daemon: try again when it ends".into(),
            });
            return;
        };
        let group = group.clone();
        spawn("restore", move || {
            let _guard = guard;
            let result = (|| {
                let mut lines = Vec::new();
                if names.contains(&master) {
                    let v = take::verify_file(&file)?;
                    backup::refuse_unloadable(v.header, &[server])?;
                }
                for name in &names {
                    let Some(inst) = group.instance(name) else {
                        continue;
                    };
                    let files = DataFiles::of(&group, inst, &server);
                    lines.extend(crate::backup::place::set_aside(&files)?);
                    if *name == master {
                        lines.extend(crate::backup::place::install(
                            &file,
                            &files,
                            run_as.as_ref(),
                        )?);
                    }
                }
                for l in &lines {
                    info!("restore: {l}");
                }
                Ok::<_, String>(lines)
            })();
            let response = match result {
                Ok(lines) => Response::Done {
                    ok: true,
                    lines,
                    failed: Vec::new(),
                },
                Err(message) => {
                    warn!("restore: {message}");
                    Response::Error { message }
                }
            };
            let _ = reply.send(response);
        });
    }
}

/// This daemon, for a restore: its host, its server, the instances' user.
pub struct Here<'a> {
    pub host: &'a str,
    pub server: Server,
    pub run_as: Option<RunAs>,
}

/// A backup, then with `keep` (scheduled) the pruning, then the upload.
fn backup_and_upload(
    group: &Group,
    source: &redisrepd_core::config::Instance,
    dir: &std::path::Path,
    keep: Option<u32>,
    server: Option<&(PathBuf, String)>,
) -> Result<(BackupStatus, Vec<String>), String> {
    let started = Instant::now();
    let load_test = server.map(|(b, n)| (b.as_path(), n.as_str()));
    let taken =
        take::take(group, source, dir, load_test).map_err(|e| format!("backup failed: {e}"))?;
    let r = &taken.record;
    info!(
        instance = %r.instance,
        file = %taken.path.display(),
        bytes = r.bytes,
        keys = r.keys,
        "backup taken and verified in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mut lines = vec![format!(
        "backup of `{}` ({}, RDB version {}, {} keys, {} bytes, crc64 {}) in {}",
        r.instance,
        r.server,
        r.rdb_version,
        r.keys,
        r.bytes,
        r.crc64
            .as_deref()
            .unwrap_or("none: the server saves without a checksum"),
        taken.path.display()
    )];
    if let Some(keep) = keep {
        let gone = take::prune(dir, &group.cluster.name, keep)
            .map_err(|e| format!("backup taken in {}, but {e}", taken.path.display()))?;
        for g in gone {
            info!(file = %g.display(), "old backup deleted (keep = {keep})");
            lines.push(format!("deleted {} (keep = {keep})", g.display()));
        }
    }
    if !group.backup.upload.is_empty() {
        match take::upload(
            &group.backup.upload,
            &taken.path,
            group.backup.upload_timeout,
        ) {
            Ok(output) => {
                for l in output.lines() {
                    info!(file = %taken.path.display(), "upload: {l}");
                }
                lines.push(format!("uploaded with `{}`", group.backup.upload[0]));
            }
            Err(e) => {
                return Err(format!(
                    "backup taken in {}, but its upload failed: {e}",
                    taken.path.display()
                ));
            }
        }
    }
    Ok((done_status(&taken), lines))
}

fn done_status(taken: &take::Taken) -> BackupStatus {
    BackupStatus {
        last_success_unix: Some(jiff::Timestamp::now().as_second()),
        last_file: Some(taken.path.display().to_string()),
        last_size_bytes: Some(taken.record.bytes),
        ..BackupStatus::default()
    }
}

/// Records an outcome in the score (and logs a failure).
fn score(status: &Mutex<BackupStatus>, outcome: Result<(BackupStatus, Vec<String>), String>) {
    let Ok(mut s) = status.lock() else { return };
    match outcome {
        Ok((done, _)) => {
            s.last_success_unix = done.last_success_unix;
            s.last_file = done.last_file;
            s.last_size_bytes = done.last_size_bytes;
            s.last_error = None;
        }
        Err(e) => {
            warn!("{e}");
            s.failures_total += 1;
            s.last_error = Some(e);
        }
    }
}

/// INFO of every instance of the group that answers.
fn ask_all(group: &Group) -> HashMap<String, redisrepd_core::info::Info> {
    let t = Duration::from_secs(2);
    group
        .instances
        .iter()
        .filter_map(|i| {
            Endpoint::of(group, i)
                .info(t)
                .ok()
                .map(|info| (i.name.clone(), info))
        })
        .collect()
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.to_owned()).spawn(f) {
        warn!("cannot start the {name} thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(every: &str) -> Group {
        let text = format!(
            "[cluster]\nname = \"t\"\npassword = \"x\"\n\
             [[instance]]\nname = \"m\"\nhost = \"a\"\nbind = \"127.0.0.1\"\nport = 1\n\
             [backup]\n{every}\n"
        );
        redisrepd_core::config::parse(
            &text,
            std::path::Path::new("/t.toml"),
            std::path::Path::new("/"),
        )
        .unwrap()
        .group
    }

    #[test]
    fn no_schedule_no_deadline() {
        let now = Instant::now();
        let b = Backups::new(&group(""), "a", now);
        assert_eq!(b.next_deadline(), None);
        assert!(b.status().is_empty());
    }

    #[test]
    fn a_due_backup_is_skipped_while_paused_and_the_schedule_moves_on() {
        let now = Instant::now();
        let g = group("every = \"10s\"");
        let mut b = Backups::new(&g, "a", now);
        assert_eq!(b.next_deadline(), Some(now + Duration::from_secs(10)));
        b.tick(&g, "a", true, now + Duration::from_secs(5));
        assert_eq!(
            b.next_deadline(),
            Some(now + Duration::from_secs(10)),
            "not due yet"
        );
        let due = now + Duration::from_secs(11);
        b.tick(&g, "a", true, due);
        assert_eq!(b.next_deadline(), Some(due + Duration::from_secs(10)));
        let s = b.status();
        assert!(!s.running && s.failures_total == 0 && s.last_success_unix.is_none());
        assert_eq!(s.every_s, Some(10));
    }

    #[test]
    fn a_reload_with_another_schedule_restarts_it() {
        let now = Instant::now();
        let mut b = Backups::new(&group("every = \"1h\""), "a", now);
        let later = now + Duration::from_secs(60);
        b.tick(&group("every = \"30s\""), "a", true, later);
        assert_eq!(b.next_deadline(), Some(later + Duration::from_secs(30)));
        b.tick(&group(""), "a", true, later);
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.status().every_s, None);
    }

    #[test]
    fn only_one_at_a_time() {
        let b = Backups::new(&group(""), "a", Instant::now());
        let first = b.claim();
        assert!(first.is_some() && b.claim().is_none() && b.status().running);
        drop(first);
        assert!(b.claim().is_some());
    }
}
