//! The command line (`spec/cli.md`): clap definitions only; each verb's work is elsewhere.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run and supervise a Redis master/replica group described by one TOML file.
#[derive(Debug, Parser)]
#[command(name = "redisrepd", version, about, max_term_width = 100)]
pub struct Cli {
    /// The group's TOML file.
    #[arg(
        long,
        global = true,
        env = "REDISREPD_CONFIG",
        default_value = "/etc/redisrepd/redisrepd.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub verb: Verb,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Run the supervisor for this host's instances in the foreground.
    Daemon {
        /// The host whose instances to run (default: this machine's hostname).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// Serve /metrics and the health endpoints at http://ADDR:PORT (overrides `[http]
        /// listen` for this daemon).
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Start instances (and clear a `failed` state).
    Start(Targets),
    /// Stop instances with an authenticated SHUTDOWN that saves first.
    Stop(ForceTargets),
    /// Restart instances one at a time through the sync gate; masters last.
    Restart(ForceTargets),
    /// Show every instance of the group, on every host.
    Status {
        /// Only these instances.
        instances: Vec<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make the daemon(s) re-read the TOML and apply the difference.
    Reload {
        /// Only the daemon for this host (default: every daemon with a socket in run_dir).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Planned switchover: REPLICA becomes the master through Redis's FAILOVER (writes
    /// paused, not refused; no acknowledged write lost); the others follow it.
    Failover {
        /// The new master (default: the most up-to-date replica of the master).
        #[arg(long, value_name = "REPLICA")]
        to: Option<String>,
        /// Go ahead even if REPLICA is not in sync (FAILOVER ... FORCE).
        #[arg(long)]
        force: bool,
    },
    /// The master is gone: make REPLICA the master now and re-point the other replicas.
    Promote {
        /// The replica to make master.
        instance: String,
        /// Go ahead even if another replica has a higher replication offset.
        #[arg(long)]
        force: bool,
    },
    /// Print a haproxy.cfg whose frontend reaches the group's master (checked at each
    /// host's daemon over HTTP), and optionally a second one over its in-sync replicas.
    Haproxy {
        /// Where clients connect for writes.
        #[arg(long, value_name = "ADDR:PORT", default_value = crate::haproxy::DEFAULT_BIND)]
        bind: std::net::SocketAddr,
        /// Also a frontend here over the replicas that are online and in sync.
        #[arg(long, value_name = "ADDR:PORT")]
        replicas_bind: Option<std::net::SocketAddr>,
    },
    /// Validate the TOML and print the plan for a host.
    Check {
        /// The host whose plan to print (default: this machine's hostname).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Print the redis.conf generated for an instance (the sentinel.conf for a sentinel node).
    Render {
        /// The instance (or sentinel node).
        instance: String,
        /// Print the password instead of masking it.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// Instances named on the command line, or all of them.
#[derive(Debug, Clone, Args)]
pub struct Targets {
    /// Instance names.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub instances: Vec<String>,
    /// Every instance of the group.
    #[arg(long)]
    pub all: bool,
}

/// [`Targets`] plus `--force`.
#[derive(Debug, Clone, Args)]
pub struct ForceTargets {
    #[command(flatten)]
    pub targets: Targets,
    /// Go ahead even if a master loses its min-replicas quorum meanwhile, and stop an
    /// instance whose final save fails without saving.
    #[arg(long)]
    pub force: bool,
}
