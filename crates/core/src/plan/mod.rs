//! What a start, stop, restart or reload means as an ordered list of steps, and when a stop
//! must be refused. Pure: the supervisor carries the steps out.
//!
//! - [`steps`]: the steps and the orders of start, stop and restart;
//! - [`live`]: a redis.conf directive parser and what of a change a running server takes;
//! - [`reload`]: how two versions of the file differ per instance, and the reload's steps;
//! - [`checks`]: the refusals (an RDB version a server cannot load, a quorum broken).
//!
//! The submodules use one another, never this one: it only re-exports, so that
//! `plan::Step`, `plan::reload_diff` … stay the public paths.

pub mod checks;
#[cfg(test)]
mod fixtures;
pub mod live;
pub mod reload;
pub mod steps;

pub use checks::{RdbRefusal, check_quorum, check_servers};
pub use live::{LiveChange, TLS_FILE_KEYS, Upstream, live_change};
pub use reload::{ReloadDiff, reload, reload_diff};
pub use steps::{Step, restart, restart_master_away, start, stop};
