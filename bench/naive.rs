//! The naive way's redis.conf, shared by the benches that compare with it: what an
//! operator writes by hand is the same settings, minus redisrepd's own sync pacing.

use redisrepd_core::config::{Group, Instance};

/// `inst`'s generated redis.conf without `repl-diskless-sync-max-replicas` and
/// `repl-diskless-load`, the two directives that exist for redisrepd's sync gate.
pub fn conf(group: &Group, inst: &Instance) -> String {
    redisrepd_core::render::render(
        group,
        inst,
        &redisrepd_core::server::Server::NEWEST_REDIS,
        redisrepd_core::render::Secrets::Show,
    )
    .lines()
    .filter(|l| {
        !l.starts_with("repl-diskless-sync-max-replicas") && !l.starts_with("repl-diskless-load")
    })
    .map(|l| format!("{l}\n"))
    .collect()
}
