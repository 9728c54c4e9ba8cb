//! One function per verb: the glue between the command line and the library.

mod backup;
mod check;
mod client;
mod doctor;

use anyhow::{Context, Result};

use crate::cli::{Cli, Verb};
use redisrepd_core::config::{self, Checked};
use redisrepd_core::render::{self, Secrets};

/// Runs the verb and returns its exit status.
pub fn dispatch(cli: Cli) -> Result<u8> {
    match cli.verb {
        Verb::Check { host } => check::run(&cli.config, host.as_deref()),
        Verb::Doctor { host } => doctor::run(&cli.config, host.as_deref()),
        Verb::Render {
            instance,
            show_secrets,
        } => {
            let checked = load(&cli.config)?;
            let group = &checked.group;
            let secrets = if show_secrets {
                Secrets::Show
            } else {
                Secrets::Mask
            };
            // A sentinel node: its file as the next start writes it, over what Sentinel
            // wrote last.
            if let Some(node) = group.sentinel_node(&instance) {
                let existing = std::fs::read_to_string(group.sentinel_conf_path(node)).ok();
                print!(
                    "{}",
                    render::sentinel::render_sentinel(group, node, existing.as_deref(), secrets)
                );
                return Ok(crate::EXIT_OK);
            }
            let inst = group
                .instance(&instance)
                .ok_or_else(|| no_instance(group, &instance, true))?;
            let (server, note) =
                redisrepd_io::server_detect::configured_or_newest(group, &cli.config)
                    .map_err(anyhow::Error::msg)?;
            if let Some(note) = note {
                eprintln!("redisrepd: note: {note}");
            }
            print!("{}", render::render(group, inst, &server, secrets));
            Ok(crate::EXIT_OK)
        }
        Verb::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "redisrepd", &mut std::io::stdout());
            Ok(crate::EXIT_OK)
        }
        Verb::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
            Ok(crate::EXIT_OK)
        }
        Verb::Daemon { host, metrics } => redisrepd_io::daemon::run(&cli.config, host, metrics),
        Verb::Start(t) => client::act(
            &cli.config,
            client::Action::Start,
            &crate::cli::ForceTargets {
                targets: t,
                force: false,
            },
        ),
        Verb::Stop(t) => client::act(&cli.config, client::Action::Stop, &t),
        Verb::Restart(t) => client::act(&cli.config, client::Action::Restart, &t),
        Verb::Status {
            instances,
            json,
            wide,
        } => client::status(&cli.config, &instances, json, wide),
        Verb::Reload { host } => client::reload(&cli.config, host.as_deref()),
        Verb::Pause { length } => client::pause(&cli.config, Some(length)),
        Verb::Resume => client::pause(&cli.config, None),
        Verb::Failover { to, force } => client::failover(&cli.config, to, force),
        Verb::Promote { instance, force } => client::promote(&cli.config, instance, force),
        Verb::History { json } => client::history(&cli.config, json),
        Verb::Haproxy {
            bind,
            replicas_bind,
        } => {
            let group = load_for_client(&cli.config)?.group;
            let cfg = redisrepd_core::haproxy::render(&group, bind, replicas_bind)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cli.config.display()))?;
            print!("{cfg}");
            Ok(crate::EXIT_OK)
        }
        Verb::Backup { to } => backup::backup(&cli.config, to),
        Verb::Restore { file, force } => backup::restore(&cli.config, &file, force),
    }
}

/// Loads the TOML and prints its warnings on stderr.
pub(crate) fn load(path: &std::path::Path) -> Result<Checked> {
    let checked = redisrepd_io::config_file::load(path)?;
    for w in &checked.warnings {
        eprintln!("redisrepd: warning: {}: {w}", path.display());
    }
    Ok(checked)
}

/// [`redisrepd_io::config_file::load_for_client`], printing its warnings on stderr: for the verbs that ask
/// daemons to act, which must work while the password file is unusable.
pub(crate) fn load_for_client(path: &std::path::Path) -> Result<Checked> {
    let checked = redisrepd_io::config_file::load_for_client(path)?;
    for w in &checked.warnings {
        eprintln!("redisrepd: warning: {}: {w}", path.display());
    }
    Ok(checked)
}

/// The instance names of a group, for "did you mean" lists.
pub(crate) fn names(group: &config::Group) -> String {
    group
        .instances
        .iter()
        .map(|i| format!("`{}`", i.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The usage error (exit status 2) for a name that is no instance of the file, listing the
/// ones it has (and its sentinel nodes, for the verbs that take them too).
pub(crate) fn no_instance(group: &config::Group, name: &str, sentinels: bool) -> anyhow::Error {
    let mut message = format!(
        "{}: no instance `{name}`; instances: {}",
        group.source.display(),
        names(group)
    );
    if let Some(s) = group.sentinel.as_ref().filter(|_| sentinels) {
        let nodes: Vec<String> = s.nodes.iter().map(|n| format!("`{}`", n.name)).collect();
        message.push_str(&format!("; sentinel nodes: {}", nodes.join(", ")));
    }
    crate::UsageError(message).into()
}
