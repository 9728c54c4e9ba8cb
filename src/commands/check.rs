//! `redisrepd check`: validate the file and print a host's plan.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use redisrepd_core::config::{ConfigError, Group};

/// Validates the TOML and prints the start plan for `host` (default: this machine).
pub fn run(config: &Path, host: Option<&str>) -> Result<u8> {
    let checked = super::load(config)?;
    let group = &checked.group;
    redisrepd_io::config_file::check_hooks(group, config)?;
    let mut problems: Vec<String> = Vec::new();
    let binary = redisrepd_io::process::find_redis_server(&group.cluster.redis_server).ok();
    let server = match &binary {
        None => {
            eprintln!(
                "redisrepd: warning: {}: key `redis_server`: `{}` is not found or not executable \
                 here, so the [redis] directives are not checked against it; the daemon will \
                 refuse to start until it is installed (Debian, Ubuntu: `sudo apt-get install redis-server`)",
                config.display(),
                group.cluster.redis_server
            );
            None
        }
        Some(binary) => {
            let (_, server) = redisrepd_io::server_detect::configured(group, config)
                .map_err(anyhow::Error::msg)?;
            match redisrepd_io::acl_check::ask_server_and_users(group, binary) {
                Ok(found) => problems.extend(found.iter().map(ToString::to_string)),
                Err(why) => eprintln!(
                    "redisrepd: warning: {}: the [redis] directives are not checked: {why}",
                    config.display()
                ),
            }
            Some(server)
        }
    };
    // The TLS files as this host (or `--host`) reads them, and the server's verdict on them.
    let this_host = host.map_or_else(redisrepd_io::host::hostname, str::to_owned);
    let tls = redisrepd_io::tls_files::verify(group, &this_host, binary.as_deref());
    for w in &tls.warnings {
        eprintln!("redisrepd: warning: {}: {w}", config.display());
    }
    problems.extend(tls.errors.iter().map(ToString::to_string));
    if !problems.is_empty() {
        return Err(ConfigError {
            file: config.to_owned(),
            problems,
        }
        .into());
    }
    for w in user_warnings(group.cluster.user.as_deref()) {
        eprintln!("redisrepd: warning: {}: {w}", config.display());
    }
    let hosts: Vec<String> = match host {
        Some(h) => vec![h.to_owned()],
        None => {
            let me = redisrepd_io::host::hostname();
            if group.hosts().contains(&me.as_str()) {
                vec![me]
            } else {
                println!(
                    "this machine (`{me}`) runs no instance of this file; the plan of every host follows"
                );
                group.hosts().into_iter().map(str::to_owned).collect()
            }
        }
    };
    if let Some(server) = server {
        println!("server: {server} ({})", group.cluster.redis_server);
    }
    print!("{}", plan(group, &hosts));
    // The file can be right and the host still wrong for it (overcommit, open files, ...).
    println!("on each host, `redisrepd doctor` checks what its servers need of the machine");
    Ok(crate::EXIT_OK)
}

/// What `check` says about `user` on this machine: instances as root when `check` itself
/// runs as root (the daemon would too), or a `user` the daemon would not find.
fn user_warnings(user: Option<&str>) -> Vec<String> {
    match user {
        None if nix::unistd::geteuid().is_root() => vec![
            "no `user` in [cluster]: a daemon started as root runs the Redis instances as \
             root; set `user = \"redis\"` (Debian's redis-server package creates it)"
                .to_owned(),
        ],
        Some(name) if matches!(nix::unistd::User::from_name(name), Ok(None)) => vec![format!(
            "key `user`: no user `{name}` on this machine; the daemon will refuse to start \
             until it exists"
        )],
        _ => Vec::new(),
    }
}

/// The plan `check` prints: each host's instances in start order with their paths.
pub fn plan(group: &Group, hosts: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster `{}`: {} instance(s) on host(s) {}; configuration is valid",
        group.cluster.name,
        group.instances.len(),
        group.hosts().join(", ")
    );
    for host in hosts {
        let order = group.start_order(host);
        if order.is_empty() {
            let _ = writeln!(
                out,
                "host `{host}` runs no instance (hosts in the file: {})",
                group.hosts().join(", ")
            );
            continue;
        }
        let _ = writeln!(out, "host `{host}`, in start order:");
        for (n, inst) in order.iter().enumerate() {
            let role = match &inst.replica_of {
                None => "master".to_owned(),
                Some(up) => {
                    let addr = group.instance(up).map(|u| u.address()).unwrap_or_default();
                    format!("replica of `{up}` ({addr})")
                }
            };
            let _ = writeln!(
                out,
                "  {}. {} at {}, {role}",
                n + 1,
                inst.name,
                inst.address()
            );
            let _ = writeln!(out, "     config:   {}", group.conf_path(inst).display());
            let _ = writeln!(out, "     pid file: {}", group.pid_path(inst).display());
            let _ = writeln!(out, "     data dir: {}", group.data_path(inst).display());
            let log = group
                .log_path(inst)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the daemon's log".to_owned());
            let _ = writeln!(out, "     log:      {log}");
        }
        let _ = writeln!(
            out,
            "  control socket: {}",
            group.socket_path(host).display()
        );
    }
    out
}
