//! A reload's reading: the TOML again, checked as `check` does, with what its server is.

use std::collections::HashMap;
use std::time::Duration;

use tracing::warn;

use super::Runtime;
use crate::redis_io::{Client as _, Endpoint};
use redisrepd_core::machine::Loaded;
use redisrepd_core::server::Server;

impl Runtime {
    /// Reads the TOML again, asks its `redis_server` what it is and whether it accepts the
    /// file's directives and `[tls]` files (the whole of `check`), and when the server is not
    /// `current` (a rolling upgrade), asks the instances on other hosts what they run.
    pub(super) fn load_config(&self, current: Server) -> Result<Loaded, String> {
        let checked = crate::config_file::load(&self.config_path).map_err(|e| e.to_string())?;
        crate::config_file::check_hooks(&checked.group, &self.config_path)
            .map_err(|e| e.to_string())?;
        for w in &checked.warnings {
            warn!("{}: {w}", self.config_path.display());
        }
        let group = checked.group;
        let (binary, server) = crate::server_detect::configured(&group, &self.config_path)?;
        // The server's own verdict on the [redis] directives, as `check` asks it, before
        // anything is touched: a directive it rejects would otherwise be tried live, then
        // written into a config the instance cannot start with.
        match crate::acl_check::ask_server_and_users(&group, &binary) {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                return Err(redisrepd_core::config::ConfigError {
                    file: self.config_path.clone(),
                    problems: problems.iter().map(ToString::to_string).collect(),
                }
                .to_string());
            }
            // As `check`: the file's own checks passed; say what was not asked.
            Err(why) => warn!(
                "{}: the [redis] directives are not checked against `{}`: {why}",
                self.config_path.display(),
                binary.display()
            ),
        }
        // The certificates as this host's servers would load them: a reload must not
        // write a redis.conf (or re-point a sentinel) at files they cannot use.
        let tls = crate::tls_files::verify(&group, &self.host, Some(&binary));
        for w in &tls.warnings {
            warn!("{}: {w}", self.config_path.display());
        }
        tls.refusal(&self.config_path).map_err(|e| e.to_string())?;
        let mut remote_servers = HashMap::new();
        if server != current {
            // A short timeout each: a reload is rare, and a host that is down is unknown.
            for inst in group.instances.iter().filter(|i| i.host != self.host) {
                let info = Endpoint::of(&group, inst).info(Duration::from_millis(500));
                if let Some(s) = info.ok().as_ref().and_then(Server::from_info) {
                    remote_servers.insert(inst.name.clone(), s);
                }
            }
        }
        Ok(Loaded {
            group,
            binary,
            server,
            remote_servers,
        })
    }
}
