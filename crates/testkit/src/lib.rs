//! What the integration tests (tests/) and the benchmarks (bench/) share, one copy each:
//! a Redis connection and INFO ([`redis`]), TLS for it and a throw-away PKI ([`tls`]), waits with a deadline that name what they
//! waited for ([`wait`]), free ports and temp dirs ([`fs_net`]), child processes and the
//! servers running under a directory ([`proc`]), network namespaces ([`netns`]), and a
//! writer that counts acknowledged keys ([`writer`]).
//!
//! It takes plain types (addresses, paths, durations, strings) and does not depend on the
//! redisrepd package: what needs the project (its binary, its INFO parser, its examples)
//! stays in tests/it/util.rs and bench/common.rs.

pub mod fs_net;
pub mod netns;
pub mod proc;
pub mod redis;
pub mod tls;
pub mod wait;
pub mod writer;

pub use fs_net::{
    TestDir, chmod, free_local_port, free_port, fresh_dir, http_get, loopback_ip, loopback_ips,
};
pub use proc::{ProcGuard, Run, is_server_comm, kill, redis_and_forks_under, redis_under, run};
pub use redis::{
    config_get, connect, connect_master, connect_named, connect_tls, connect_with,
    connect_with_tls, error_kind, info, info_int, info_text, ping, ping_with, role,
};
pub use tls::{Pki, TlsFiles};
pub use wait::{try_wait_for, wait_for, wait_until};
pub use writer::{
    Failed, Paused, Probed, Prober, Seen, Target, Writer, WriterOpts, WriterReport, count_kinds,
    missing_keys,
};
