//! redisrepd's core: every decision, and no IO.
//!
//! Theory of operation. The TOML is read into a validated model ([`config`]); what an
//! instance's redis.conf says is [`render`]ed from it; what a verb does is a [`plan`];
//! which replica may resync now is the [`gate`]'s call; what a server's answers mean is
//! read by [`info`], [`rdb`], [`sentinel`] and [`server`]. The daemon's state machine
//! ([`machine`]) holds every instance's state and turns inputs (child exits, probe
//! results, control requests, the time as a value) into effects, which the `redisrepd-io`
//! crate carries out. This crate has no dependency that can start a process, open a socket
//! or talk to Redis, and clippy (`clippy.toml`) refuses the clock, the file system and
//! threads in it, so every decision is unit-tested without processes or sleeping.

// Unit tests build their inputs with the clock and temp files; the code under test may not.
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod acl;
pub mod backoff;
pub mod backup;
pub mod changes;
pub mod config;
pub mod control;
pub mod doctor;
pub mod endpoint;
pub mod endpoints;
pub mod gate;
pub mod haproxy;
pub mod history;
pub mod http;
pub mod info;
pub mod machine;
pub mod plan;
pub mod rdb;
pub mod render;
pub mod sentinel;
pub mod server;
pub mod status;
pub mod switchover;
pub mod tls;
pub mod topology;

/// Exit status: done.
pub const EXIT_OK: u8 = 0;
/// Exit status: failed; the message says what and why.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of `status` when an instance is not running or a replica not in sync.
pub const EXIT_DEGRADED: u8 = 3;
