//! `backup` and `restore`: the client side. `backup` chooses the instance (from what the
//! group's INFO says now) and asks the daemon that runs it; `restore` verifies the file,
//! then drives every daemon: stop all, set the data aside and give the file to the master,
//! start the master, then the replicas (which copy it through the sync gate).

use redisrepd_io::redis_io::Client as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::client::{ask, done};
use redisrepd_core::backup;
use redisrepd_core::config::Group;
use redisrepd_core::control::{Request, Response};
use redisrepd_core::info::Info;
use redisrepd_core::server::Server;
use redisrepd_io::redis_io::Endpoint;

/// INFO of every instance that answers.
fn ask_all(group: &Group) -> HashMap<String, Info> {
    let t = Duration::from_secs(2);
    std::thread::scope(|scope| {
        let asks: Vec<_> = group
            .instances
            .iter()
            .map(|i| {
                scope.spawn(move || {
                    Endpoint::of(group, i)
                        .info(t)
                        .ok()
                        .map(|info| (i.name.clone(), info))
                })
            })
            .collect();
        asks.into_iter()
            .filter_map(|a| a.join().ok().flatten())
            .collect()
    })
}

/// `backup [--to DIR]`.
pub fn backup(config: &Path, to: Option<PathBuf>) -> Result<u8> {
    let group = super::load_for_client(config)?.group;
    let infos = ask_all(&group);
    let source = backup::choose_source(&group, &infos).map_err(anyhow::Error::msg)?;
    let to = to
        .map(|d| std::path::absolute(&d).with_context(|| format!("--to {}", d.display())))
        .transpose()?;
    let request = Request::Backup {
        instance: source.name.clone(),
        to,
    };
    done(&source.host, ask(&group, &source.host, &request)?)
}

/// The group's actual master: the one that answers as master with the most replicas
/// following it; when none answers, the one a daemon here last recorded
/// (`topology_path`), else the configured one. The daemons start that one as the master.
fn actual_master(group: &Group, infos: &HashMap<String, Info>) -> String {
    let follows = |m: &str| {
        infos
            .values()
            .filter(|i| {
                let (Some(h), Some(p)) = (i.get("master_host"), i.int("master_port")) else {
                    return false;
                };
                u16::try_from(p)
                    .ok()
                    .and_then(|p| redisrepd_core::topology::instance_at(group, h, p))
                    .is_some_and(|u| u.name == m)
            })
            .count()
    };
    if let Some(m) = group
        .instances
        .iter()
        .filter(|i| infos.get(&i.name).and_then(Info::role) == Some("master"))
        .max_by_key(|m| (follows(&m.name), m.is_master()))
    {
        return m.name.clone();
    }
    for host in group.hosts() {
        if let Ok(text) = std::fs::read_to_string(group.topology_path(host))
            && let Ok(m) = redisrepd_core::topology::parse_file(&text, group)
        {
            return m;
        }
    }
    group.master().name.clone()
}

/// `restore FILE --force`.
pub fn restore(config: &Path, file: &Path, force: bool) -> Result<u8> {
    let group = super::load_for_client(config)?.group;
    let file = std::path::absolute(file).with_context(|| file.display().to_string())?;
    // Nothing is touched before the file passed.
    let verified = redisrepd_io::backup::take::verify_file(&file)
        .map_err(|e| anyhow::anyhow!("restore refused, nothing changed: {e}"))?;
    let infos = ask_all(&group);
    let mut servers: Vec<Server> = infos.values().filter_map(Server::from_info).collect();
    match redisrepd_io::server_detect::configured(&group, config) {
        Ok((_, s)) => servers.push(s),
        Err(e) => eprintln!("redisrepd: note: {e}; checked against the running servers only"),
    }
    backup::refuse_unloadable(verified.header, &servers).map_err(|e| {
        anyhow::anyhow!("restore refused, nothing changed: {}: {e}", file.display())
    })?;
    if verified.checksum.is_none() {
        eprintln!(
            "redisrepd: warning: {} has no checksum (saved with `rdbchecksum no`): only its \
             header and end were checked",
            file.display()
        );
    }
    let master = actual_master(&group, &infos);
    if !force {
        bail!(
            "restore replaces the data of every instance: it stops them all, sets their data \
             aside (*.before-restore), gives {} to `{master}` and starts them; pass --force",
            file.display()
        );
    }
    // The hosts that run instances (a host with only a sentinel node has no data).
    let hosts: Vec<String> = group
        .hosts()
        .into_iter()
        .filter(|h| group.instances.iter().any(|i| i.host == *h))
        .map(str::to_owned)
        .collect();
    if let Some(h) = hosts.iter().find(|h| !group.socket_path(h).exists()) {
        bail!(
            "restore refused, nothing changed: no daemon for host `{h}` here ({} does not \
             exist); restore needs every host's daemon",
            group.socket_path(h).display()
        );
    }
    let master_host = group
        .instance(&master)
        .map(|i| i.host.clone())
        .unwrap_or_default();
    let names_on = |host: &str| -> Vec<String> {
        group
            .instances
            .iter()
            .filter(|i| i.host == host)
            .map(|i| i.name.clone())
            .collect()
    };
    println!(
        "restoring {} (RDB version {}, {} bytes) to `{master}`",
        file.display(),
        verified.header.version,
        verified.bytes
    );
    // Stop: every replica, then the master. A master's daemon records the replicas it
    // had when it stopped and waits for them when it starts again; counted from a probe
    // older than their stop, it would wait for replicas that start after it (on its own
    // host, one request at a time) until its timeouts end. So the master stops only once
    // its own INFO lists no replica, and after a status request, which makes its daemon
    // probe again.
    let mut order = hosts.clone();
    order.sort_by_key(|h| *h == master_host);
    for host in &order {
        let instances: Vec<String> = names_on(host)
            .into_iter()
            .filter(|n| *n != master)
            .collect();
        if instances.is_empty() {
            continue;
        }
        let request = Request::Stop {
            instances,
            force: true,
        };
        step(host, ask(&group, host, &request)?, "stopping")?;
    }
    if let Some(inst) = group.instance(&master) {
        let ep = Endpoint::of(&group, inst);
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until {
            match ep.info(Duration::from_secs(2)) {
                Ok(i)
                    if i.replicas
                        .iter()
                        .any(redisrepd_core::info::ReplicaLine::is_online) =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => break,
            }
        }
        let _ = ask(&group, &master_host, &Request::Status);
        let request = Request::Stop {
            instances: vec![master.clone()],
            force: true,
        };
        step(
            &master_host,
            ask(&group, &master_host, &request)?,
            "stopping",
        )?;
    }
    for host in &order {
        let request = Request::Restore {
            file: file.clone(),
            master: master.clone(),
        };
        step(host, ask(&group, host, &request)?, "replacing the data")?;
    }
    // Start every host's instances at once: a master's start returns when its replicas
    // are back, and they are on other hosts; the replicas wait for their master anyway.
    let answers = std::thread::scope(|scope| {
        let asks: Vec<_> = order
            .iter()
            .map(|host| {
                let request = Request::Start {
                    instances: names_on(host),
                };
                let group = &group;
                scope.spawn(move || (host, ask(group, host, &request)))
            })
            .collect();
        asks.into_iter()
            .filter_map(|a| a.join().ok())
            .collect::<Vec<_>>()
    });
    let mut failed = None;
    for (host, answer) in answers {
        if let Err(e) = answer.and_then(|r| step(host, r, "starting the instances")) {
            eprintln!("redisrepd: {e:#}");
            failed = Some(host);
        }
    }
    if let Some(host) = failed {
        bail!("restore: the data is in place, but host `{host}` did not start everything");
    }
    println!(
        "restored: every instance runs the data of {}",
        file.display()
    );
    Ok(crate::EXIT_OK)
}

/// Prints what a daemon did; an error stops the restore with what to do.
fn step(host: &str, response: Response, what: &str) -> Result<()> {
    match response {
        Response::Done { ok, lines, failed } => {
            super::client::print_lines(&format!("{host}: "), ok, &lines, &failed);
            if !ok {
                bail!(
                    "restore stopped while {what} on host `{host}` (see above); data set aside \
                     so far is kept as *.before-restore"
                );
            }
            Ok(())
        }
        Response::Error { message } => bail!(
            "restore stopped while {what} on host `{host}`: {message}; data set aside so far is \
             kept as *.before-restore"
        ),
        _ => bail!("host `{host}`: the daemon answered out of turn"),
    }
}
