//! `redisrepd doctor`: what [`redisrepd_core::doctor`] judges on this host (read by
//! [`redisrepd_io::doctor`]), one line per check, and the exit status.

use std::path::Path;

use anyhow::Result;

use redisrepd_core::doctor;

/// Checks this host (or `host`) for what its instances need; exit 0, 1 or 3 (docs/reference/cli.md).
pub fn run(config: &Path, host: Option<&str>) -> Result<u8> {
    let checked = super::load(config)?;
    let group = &checked.group;
    let host = host.map_or_else(redisrepd_io::host::hostname, str::to_owned);
    let local = group.start_order(&host);
    if local.is_empty() {
        println!(
            "host `{host}` runs no instance of {} (hosts: {}): only the host-wide checks follow; pass --host NAME",
            config.display(),
            group.hosts().join(", ")
        );
    }
    let findings = redisrepd_io::doctor::findings(group, &host);
    for f in &findings {
        match &f.fix {
            Some(fix) => println!(
                "{:<8} {:<11} {}\n{:<20} fix: {fix}",
                f.level, f.check, f.what, ""
            ),
            None => println!("{:<8} {:<11} {}", f.level, f.check, f.what),
        }
    }
    Ok(doctor::exit_status(&findings))
}
