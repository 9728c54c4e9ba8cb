//! redisrepd's effects: everything that touches the machine, carried out for the decisions
//! of `redisrepd-core`.
//!
//! Theory of operation. The daemon ([`daemon`]) owns the processes: one supervisor thread
//! feeds the core's state machine its inputs and a runtime (`daemon::runtime`) carries
//! out the effects it returns; small threads at the edges (the prober, the recorder, the
//! control socket, the HTTP listener) only send events. The rest are thin IO layers the
//! runtime and the CLI share: processes and pid files ([`process`]), files written whole
//! ([`files`]), Redis and Sentinel clients ([`redis_io`], [`sentinel_client`]), asking a
//! binary what it is ([`server_detect`], [`server_check`], [`acl_check`]), the control socket's wire
//! ([`control_socket`]), the HTTP listener ([`http_server`]), metrics ([`metrics`]),
//! the config and password files ([`config_file`]), the `[tls]` certificates ([`tls_files`]), backups' file work ([`backup`]) and
//! what `doctor` reads of the host ([`doctor`]).

pub mod acl_check;
pub mod backup;
pub mod config_file;
pub mod control_socket;
pub mod daemon;
pub mod doctor;
pub mod files;
pub mod host;
pub mod http_server;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod redis_io;
pub mod sentinel_client;
pub mod server_check;
pub mod server_detect;
pub mod tls_files;
