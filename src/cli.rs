//! The command line (`docs/reference/cli.md`): clap definitions only; each verb's work is elsewhere.

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
        /// Every column (address, configured role, server, uptime, restarts, link,
        /// offset) and whole notes, however wide.
        #[arg(long, conflicts_with = "json")]
        wide: bool,
    },
    /// Make the daemon(s) re-read the TOML and apply the difference.
    Reload {
        /// Only the daemon for this host (default: every daemon with a socket in run_dir).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Planned switchover: writes paused for milliseconds while REPLICA catches up, then it
    /// becomes the master (no acknowledged write lost); the others follow it.
    Failover {
        /// The new master (default: the most up-to-date replica of the master).
        #[arg(long, value_name = "REPLICA")]
        to: Option<String>,
        /// Go ahead even if REPLICA is not in sync (Redis's FAILOVER ... FORCE).
        #[arg(long)]
        force: bool,
    },
    /// Maintenance mode for the whole group: until `resume` (or the deadline), no daemon
    /// restarts, re-points, repairs or fails over anything by itself; verbs still work.
    Pause {
        /// How long (e.g. "30m", "2h"); the pause ends by itself then.
        #[arg(long = "for", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        length: std::time::Duration,
    },
    /// End the maintenance pause: automatic actions run again.
    Resume,
    /// The master is gone: make REPLICA the master now and re-point the other replicas.
    Promote {
        /// The replica to make master.
        instance: String,
        /// Go ahead even if another replica has a higher replication offset.
        #[arg(long)]
        force: bool,
    },
    /// Every change of the group's master, oldest first: when (UTC), from which master to
    /// which, and why; merged from every daemon reachable here.
    History {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a haproxy.cfg whose frontend reaches the group's master (checked at each
    /// host's daemon over HTTP), and optionally a second one over its in-sync replicas.
    Haproxy {
        /// Where clients connect for writes.
        #[arg(long, value_name = "ADDR:PORT", default_value = redisrepd_core::haproxy::DEFAULT_BIND)]
        bind: std::net::SocketAddr,
        /// Also a frontend here over the replicas that are online and in sync.
        #[arg(long, value_name = "ADDR:PORT")]
        replicas_bind: Option<std::net::SocketAddr>,
    },
    /// Take a snapshot now on a replica in sync (the master only when there is none),
    /// verify it, and keep it as DIR/<cluster>-<UTC time>.rdb with a JSON file beside it.
    Backup {
        /// Where to keep it, on the host of the instance it is taken on (default:
        /// `[backup] dir`).
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
    },
    /// Replace the group's data with the snapshot FILE: stop every instance, set their
    /// data aside (*.before-restore), give FILE to the master, start it, let the replicas
    /// copy it.
    Restore {
        /// The snapshot (an RDB file, e.g. one `backup` kept), on the master's host.
        file: PathBuf,
        /// Required: every instance is stopped and the group's data replaced.
        #[arg(long)]
        force: bool,
    },
    /// Validate the TOML and print the plan for a host.
    Check {
        /// The host whose plan to print (default: this machine's hostname).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Check this host for what its servers need (overcommit, huge pages, backlog, open
    /// files, memory, disk, clock): one line each with the fix; exit 0 ok, 1 a problem, 3
    /// only warnings.
    Doctor {
        /// The host whose instances to check for (default: this machine's hostname).
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

/// A duration as the TOML writes them ("90s", "30m", "1h 30m"), more than zero.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("`{text}` is not a duration like 30m or 2h: {e}"))?;
    std::time::Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}`: the pause must last more than zero"))
}
