//! The service sections: `[supervise]`, `[hooks]`, `[http]` and `[backup]`.

use std::path::PathBuf;
use std::time::Duration;

use super::Validator;
use crate::config::model::{
    Backup, Group, Hook, Hooks, Http, HttpListen, Instance, MaxSyncs, Supervise,
};
use crate::config::raw;
impl Validator {
    pub(super) fn hooks(
        &mut self,
        raw: raw::RawHooks,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Hooks {
        let timeout = raw.timeout.unwrap_or(Hooks::DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            self.error(None, "hooks.timeout", "must be longer than zero");
        }
        let on_role_change = match raw.on_role_change {
            None => None,
            Some(argv) => match argv.split_first() {
                Some((program, args)) if !program.trim().is_empty() => {
                    // A path is taken from the TOML's directory; a bare name from PATH.
                    let program = if program.contains('/') {
                        resolve(PathBuf::from(program))
                    } else {
                        PathBuf::from(program)
                    };
                    Some(Hook {
                        program,
                        args: args.to_vec(),
                    })
                }
                _ => {
                    self.error(
                        None,
                        "hooks.on_role_change",
                        "names no program: write [\"PROGRAM\", \"ARG\", ...] or remove the key",
                    );
                    None
                }
            },
        };
        Hooks {
            on_role_change,
            timeout,
        }
    }

    /// `[http]`, or `[metrics]` (its older name); a table needs every host that runs
    /// instances, and only those.
    pub(super) fn http(
        &mut self,
        http: raw::RawHttp,
        metrics: raw::RawHttp,
        instances: &[Instance],
    ) -> Http {
        let listen = match (http.listen, metrics.listen) {
            (Some(_), Some(_)) => {
                self.error(
                    None,
                    "metrics.listen",
                    "both [http] and [metrics] set `listen`: [metrics] is the older name of \
                     [http]; keep only `[http] listen`",
                );
                return Http::default();
            }
            (Some(l), None) | (None, Some(l)) => l,
            (None, None) => return Http::default(),
        };
        let listen = match listen {
            raw::HttpListen::Every(addr) => HttpListen::Every(addr),
            raw::HttpListen::PerHost(hosts) => {
                let mut runs: Vec<&str> = Vec::new();
                for i in instances {
                    if !runs.contains(&i.host.as_str()) {
                        runs.push(&i.host);
                    }
                }
                for (host, _) in &hosts {
                    if !runs.contains(&host.as_str()) {
                        self.error(
                            None,
                            "http.listen",
                            format!(
                                "host `{host}` runs no instance (hosts: {}): fix the name or \
                                 remove it",
                                runs.join(", ")
                            ),
                        );
                    }
                }
                for host in &runs {
                    if !hosts.iter().any(|(h, _)| h == host) {
                        self.error(
                            None,
                            "http.listen",
                            format!(
                                "no address for host `{host}`, which runs instances: add \
                                 `{host} = \"ADDR:PORT\"` to the table, or write one address \
                                 for every host (listen = \"ADDR:PORT\")"
                            ),
                        );
                    }
                }
                HttpListen::PerHost(hosts)
            }
        };
        Http {
            listen: Some(listen),
        }
    }

    pub(super) fn backup(
        &mut self,
        raw: raw::RawBackup,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Backup {
        let keep = match raw.keep {
            None => Backup::DEFAULT_KEEP,
            Some(k) => u32::try_from(k)
                .ok()
                .filter(|k| *k >= 1)
                .unwrap_or_else(|| {
                    self.error(
                        None,
                        "backup.keep",
                        format!("is {k}: keep at least 1 backup"),
                    );
                    Backup::DEFAULT_KEEP
                }),
        };
        if raw.every.is_some_and(|d| d < Duration::from_secs(1)) {
            self.error(
                None,
                "backup.every",
                "is shorter than 1s: write e.g. \"1h\"",
            );
        }
        let upload_empty = raw
            .upload
            .as_ref()
            .is_some_and(|u| u.first().is_none_or(String::is_empty));
        let upload = raw.upload.unwrap_or_default();
        if upload_empty {
            self.error(
                None,
                "backup.upload",
                "names no program: write [\"PROGRAM\", \"ARG\", ...] or remove the key",
            );
        }
        Backup {
            dir: resolve(raw.dir.unwrap_or_else(|| Backup::DEFAULT_DIR.into())),
            every: raw.every,
            keep,
            from: raw.from,
            upload,
            upload_timeout: raw.upload_timeout.unwrap_or(Backup::DEFAULT_UPLOAD_TIMEOUT),
        }
    }

    /// `[backup] from` names an instance of the file.
    pub(super) fn backup_source(&mut self, g: &Group) {
        if let Some(from) = &g.backup.from
            && g.instance(from).is_none()
        {
            let names: Vec<String> = g
                .instances
                .iter()
                .map(|i| format!("`{}`", i.name))
                .collect();
            self.error(
                None,
                "backup.from",
                format!(
                    "names no instance `{from}`; instances: {}",
                    names.join(", ")
                ),
            );
        }
    }

    pub(super) fn supervise(&mut self, raw: raw::RawSupervise) -> Supervise {
        let d = Supervise::default();
        let mut s = Supervise {
            start_timeout: raw.start_timeout.unwrap_or(d.start_timeout),
            shutdown_timeout: raw.shutdown_timeout.unwrap_or(d.shutdown_timeout),
            restart_delay: raw.restart_delay.unwrap_or(d.restart_delay),
            restart_delay_max: raw.restart_delay_max.unwrap_or(d.restart_delay_max),
            crash_loop_limit: raw.crash_loop_limit.unwrap_or(d.crash_loop_limit),
            crash_loop_window: raw.crash_loop_window.unwrap_or(d.crash_loop_window),
            max_concurrent_syncs: d.max_concurrent_syncs,
            sync_timeout: raw.sync_timeout.unwrap_or(d.sync_timeout),
            health_interval: raw.health_interval.unwrap_or(d.health_interval),
        };
        for (key, value) in [
            ("start_timeout", s.start_timeout),
            ("shutdown_timeout", s.shutdown_timeout),
            ("sync_timeout", s.sync_timeout),
            ("health_interval", s.health_interval),
            ("crash_loop_window", s.crash_loop_window),
        ] {
            if value.is_zero() {
                self.error(
                    None,
                    &format!("supervise.{key}"),
                    "must be longer than zero",
                );
            }
        }
        if s.restart_delay_max < s.restart_delay {
            self.error(
                None,
                "supervise.restart_delay_max",
                "is shorter than `restart_delay`: make it at least as long",
            );
        }
        if s.crash_loop_limit == 0 {
            self.error(None, "supervise.crash_loop_limit", "must be at least 1");
        }
        if let Some(v) = &raw.max_concurrent_syncs {
            s.max_concurrent_syncs = self.max_syncs(v);
        }
        s
    }

    /// `max_concurrent_syncs`: an integer of at least 1, or `"auto"`. A bad value is
    /// reported and replaced by the default, so the other checks still run.
    fn max_syncs(&mut self, value: &toml::Value) -> MaxSyncs {
        let allowed = "use an integer of at least 1 (how many replicas of one upstream may \
                       sync at once), or \"auto\" (as many as its memory allows)";
        let problem = match value {
            toml::Value::Integer(n) => match u32::try_from(*n) {
                Ok(n) if n >= 1 => return MaxSyncs::Fixed(n),
                Ok(_) | Err(_) if *n <= 0 => {
                    format!("is {n}: at least 1, or no replica could ever sync; {allowed}")
                }
                _ => format!("is {n}, too large; {allowed}"),
            },
            toml::Value::String(s) if s == "auto" => return MaxSyncs::Auto,
            toml::Value::String(s) => format!("is \"{s}\"; {allowed}"),
            other => format!("is a {}; {allowed}", other.type_str()),
        };
        self.error(None, "supervise.max_concurrent_syncs", problem);
        Supervise::default().max_concurrent_syncs
    }
}
