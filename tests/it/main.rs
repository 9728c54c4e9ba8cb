//! The integration tests: one binary, one module per area, helpers in `util` and
//! `cluster`.
//!
//! Every test works in its own temp dir, on loopback addresses of its own, and kills every
//! process it starts (also when it panics). Tests that need redis-server fail, rather than
//! skip, when it is not installed. `REDISREPD_TEST_SERVER` selects another server (a path
//! to a redis-server or valkey-server) for every test config; `upgrade` always uses the
//! three servers `.ci/servers` provides.

mod acl;
mod adoption;
mod backup;
mod check;
mod clients;
mod cluster;
mod daemon;
mod doctor;
mod faults;
mod gate;
mod hooks;
mod logrotate;
mod metrics;
mod netns;
mod pause;
mod render_accepted;
mod roles;
mod sentinel;
mod sentinel_mode;
mod servers;
mod systemd;
mod tls;
mod tls_check;
mod upgrade;
mod util;
