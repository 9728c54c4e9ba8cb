//! The steps: what each kind does, drawn from the seed before the run.

use super::*;

// ----- the steps -----------------------------------------------------------------------

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Kind {
    /// `restart NAME`, any instance.
    Restart,
    KillMaster,
    KillReplica,
    /// SIGKILL a daemon, start a new one.
    KillDaemon,
    /// SIGTERM a daemon (it stops its instances), start a new one.
    RebootHost,
    /// `failover --to` a replica, the group checked, `failover --to` the old master.
    FailoverAndBack,
    /// The same with no pause between the two.
    FailoverBackToBack,
    /// The master's host dies (daemon and instances SIGKILLed), `promote` a replica of the
    /// other host, the host comes back.
    PromoteAfterHostLoss,
    /// A `maxmemory-policy` changed on one instance, `reload`.
    Reload,
    /// A misspelt directive (`maxmemroy`) added, `reload` (must be refused and change
    /// nothing), the file put back, `reload` (must succeed and change nothing).
    ReloadBad,
    RestartAll,
}

/// The default mix. [`Kind::ReloadBad`] is left out (only `--kinds` selects it), so that
/// the seeds recorded in bench/README.md keep replaying the same steps.
pub(crate) const KINDS: [Kind; 10] = [
    Kind::Restart,
    Kind::KillMaster,
    Kind::KillReplica,
    Kind::KillDaemon,
    Kind::RebootHost,
    Kind::FailoverAndBack,
    Kind::FailoverBackToBack,
    Kind::PromoteAfterHostLoss,
    Kind::Reload,
    Kind::RestartAll,
];

/// One step: a kind and a number that picks its target among those that exist when it
/// runs (an instance, a replica of the master, a host).
#[derive(Clone, Copy)]
pub(crate) struct Step {
    pub(crate) kind: Kind,
    pub(crate) pick: usize,
}

impl Kind {
    /// The kind in words, for the report.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Restart => "`restart` an instance",
            Kind::KillMaster => "SIGKILL the master",
            Kind::KillReplica => "SIGKILL a replica",
            Kind::KillDaemon => "SIGKILL a daemon, start a new one",
            Kind::RebootHost => "reboot a host (daemon SIGTERM + start)",
            Kind::FailoverAndBack => "`failover --to` a replica, check, and back",
            Kind::FailoverBackToBack => "`failover --to` a replica and back, back to back",
            Kind::PromoteAfterHostLoss => "the master's host dies, `promote`, host back",
            Kind::Reload => "`reload`, a directive changed",
            Kind::ReloadBad => "`reload` of a misspelt directive, refused; file restored",
            Kind::RestartAll => "`restart --all`",
        }
    }
}

impl Step {
    /// What the step does, as the seed alone says it.
    pub(crate) fn describe(self) -> String {
        let p = self.pick;
        match self.kind {
            Kind::Restart => format!("`restart {}`", NAMES[p % NAMES.len()]),
            Kind::KillMaster => "SIGKILL the master".to_owned(),
            Kind::KillReplica => format!("SIGKILL replica #{}", p % 3 + 1),
            Kind::KillDaemon => format!("SIGKILL daemon {}, start a new one", HOSTS[p % 2]),
            Kind::RebootHost => format!("reboot host {} (daemon SIGTERM + start)", HOSTS[p % 2]),
            Kind::FailoverAndBack => format!("`failover --to` replica #{} and back", p % 3 + 1),
            Kind::FailoverBackToBack => {
                format!(
                    "`failover --to` replica #{} and back, back to back",
                    p % 3 + 1
                )
            }
            Kind::PromoteAfterHostLoss => "the master's host dies, `promote`".to_owned(),
            Kind::Reload => format!("`reload`, {}'s maxmemory-policy changed", NAMES[p % 4]),
            Kind::ReloadBad => {
                "`reload` of a misspelt directive, then of the file restored".to_owned()
            }
            Kind::RestartAll => "`restart --all`".to_owned(),
        }
    }
}

/// The step list of a seed: a pure function of it (and of the kinds allowed).
pub(crate) fn plan(seed: u64, steps: usize, kinds: &[Kind]) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..steps)
        .map(|_| Step {
            kind: kinds[rng.random_range(0..kinds.len())],
            pick: rng.random_range(0..12),
        })
        .collect()
}
