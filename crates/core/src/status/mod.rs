//! What `status` shows: one record per instance, the table, the JSON and the exit status.
//! Building records is pure; the client and daemon fill in what they know.
//!
//! - [`record`]: the record, its state label, and what the records say about the group;
//! - [`tables`]: the default table, `--wide`, and the endpoint lines under them;
//! - [`sentinel`]: the sentinels' records and what they say together (Sentinel mode).
//!
//! The submodules never use this one: it only re-exports, so that `status::InstanceStatus`,
//! `status::table` … stay the public paths.

pub mod record;
pub mod sentinel;
pub mod tables;

pub use record::{
    HttpEndpoint, InstanceStatus, StateLabel, actual_master, backlog_warning, exit_code,
    replication_problem, upstream_name, warn_mixed_servers, write_refusal,
};
pub use sentinel::{SentinelStatus, SentinelSummary};
pub use tables::{NARROW_WIDTH, endpoints_table, table, wide_table};
