//! `redisrepd haproxy`: the haproxy.cfg that sends clients to the group's master (and,
//! optionally, to its in-sync replicas). Pure: the group and the two addresses in, the
//! file's text out.
//!
//! Every instance is a server of the write backend; HAProxy checks each over HTTP against
//! its own host's daemon (`GET /master/<instance>`, `crate::endpoints`), which answers 200
//! only for the group's actual master. So the decision is the daemons', not one
//! instance's `role:master`: an old master back from a partition stays out. The checks
//! are fast (every 200 ms; down after 2 failures, up after 1) and a server marked down
//! has its client connections cut (`on-marked-down shutdown-sessions`), so that pooled
//! connections reconnect to the new master instead of lingering on the old one.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::config::{Group, HttpListen, Instance};

/// The write frontend's address when `--bind` is not given.
pub const DEFAULT_BIND: &str = "127.0.0.1:6380";

/// How often HAProxy checks each server.
pub const CHECK_INTERVAL_MS: u32 = 200;

/// The address HAProxy checks `inst` at: its host's `[http] listen` (an unspecified IP,
/// `0.0.0.0` or `::`, means the instance's own address on that host).
fn check_address(group: &Group, inst: &Instance) -> Result<SocketAddr, String> {
    let key = "key `http.listen`";
    let listen = group.http.listen.as_ref().ok_or_else(|| {
        format!(
            "{key}: not set; the checks go to each host's daemon: set [http] listen, one \
             address per host (listen = {{ host = \"ADDR:PORT\", ... }})"
        )
    })?;
    let addr = match listen {
        HttpListen::PerHost(_) => group
            .http
            .address(&inst.host)
            .ok_or_else(|| format!("{key}: no address for host `{}`", inst.host))?,
        HttpListen::Every(addr) => {
            let hosts = group.hosts();
            if !addr.ip().is_unspecified() && hosts.len() > 1 {
                return Err(format!(
                    "{key}: one address, {addr}, for the daemons of {} hosts ({}): HAProxy \
                     needs each host's own; write one per host, listen = {{ {} = \
                     \"ADDR:PORT\", ... }}, or listen on 0.0.0.0:{} (each server is then \
                     checked at its instance's address)",
                    hosts.len(),
                    hosts.join(", "),
                    hosts[0],
                    addr.port()
                ));
            }
            *addr
        }
    };
    Ok(if addr.ip().is_unspecified() {
        SocketAddr::new(inst.bind, addr.port())
    } else {
        addr
    })
}

/// `ip:port` as HAProxy writes it (IPv6 in brackets).
fn hp(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The whole haproxy.cfg; `bind` is the write frontend, `replicas_bind` the optional read
/// frontend. Errors name the key to fix.
pub fn render(
    group: &Group,
    bind: SocketAddr,
    replicas_bind: Option<SocketAddr>,
) -> Result<String, String> {
    let mut checks = Vec::new();
    for inst in &group.instances {
        checks.push((inst, check_address(group, inst)?));
    }
    let cluster = &group.cluster.name;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# haproxy.cfg for the redisrepd group `{cluster}` (HAProxy 2.2 or newer), written by\n\
         # `redisrepd haproxy` from {}.\n\
         # Run it with `haproxy -f FILE`; generate it again after adding or removing\n\
         # instances or changing [http] listen.\n\
         #\n\
         # Clients connect to {} for writes: it reaches the group's master and nothing\n\
         # else. Each instance is checked at its host's redisrepd daemon over HTTP every\n\
         # {CHECK_INTERVAL_MS} ms (/master/<instance> answers 200 only for the group's actual\n\
         # master); a server marked down has its client connections closed, so clients\n\
         # reconnect and land on the new master.",
        group.source.display(),
        hp(bind)
    );
    if let Some(r) = replicas_bind {
        let _ = writeln!(
            o,
            "# Reads may go to {}: the replicas that are online and in sync\n\
             # (/replica/<instance>).",
            hp(r)
        );
    }
    let _ = writeln!(
        o,
        "\nglobal\n    maxconn 4096\n\n\
         defaults\n    mode tcp\n\
         \x20   # A connection that a server refuses or does not accept within 1 s is retried\n\
         \x20   # (after HAProxy's turn-around of at most that second), on another server when\n\
         \x20   # one is up: a master that just died, not yet marked down, holds no client long.\n\
         \x20   timeout connect 1s\n    retries 2\n    option redispatch 1\n\
         \x20   # Pooled client connections sit idle between commands (and subscribers for\n\
         \x20   # long): an hour before HAProxy closes an idle one; TCP keepalives find dead\n\
         \x20   # peers sooner. Lower both if your clients do not reconnect on their own.\n\
         \x20   timeout client 1h\n    timeout server 1h\n\
         \x20   option clitcpka\n    option srvtcpka\n\
         \x20   timeout check 1s\n\
         \x20   default-server inter {CHECK_INTERVAL_MS}ms fall 2 rise 1 on-marked-down shutdown-sessions"
    );
    let _ = writeln!(
        o,
        "\nfrontend {cluster}_write\n    bind {}\n    default_backend {cluster}_master",
        hp(bind)
    );
    backend(
        &mut o,
        &format!("{cluster}_master"),
        "master",
        "roundrobin",
        &checks,
    );
    if let Some(r) = replicas_bind {
        let _ = writeln!(
            o,
            "\nfrontend {cluster}_read\n    bind {}\n    default_backend {cluster}_replicas",
            hp(r)
        );
        backend(
            &mut o,
            &format!("{cluster}_replicas"),
            "replica",
            "leastconn",
            &checks,
        );
    }
    Ok(o)
}

fn backend(
    o: &mut String,
    name: &str,
    check: &str,
    balance: &str,
    servers: &[(&Instance, SocketAddr)],
) {
    let _ = writeln!(
        o,
        "\nbackend {name}\n    balance {balance}\n    option httpchk\n\
         \x20   http-check send meth GET uri-lf /{check}/%[srv_name] ver HTTP/1.1 hdr Host redisrepd\n\
         \x20   http-check expect status 200"
    );
    for (inst, at) in servers {
        let _ = writeln!(
            o,
            "    server {} {} check addr {} port {}",
            inst.name,
            hp(SocketAddr::new(inst.bind, inst.port)),
            at.ip(),
            at.port()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn group(http: &str) -> Group {
        let text = format!(
            "[cluster]\nname = \"shop\"\npassword = \"p\"\n{http}\n\
             [[instance]]\nname = \"m\"\nhost = \"db1\"\nbind = \"10.0.0.1\"\nport = 6379\n\
             [[instance]]\nname = \"r1\"\nhost = \"db2\"\nbind = \"10.0.0.2\"\nport = 6379\nreplica_of = \"m\"\n\
             [[instance]]\nname = \"r2\"\nhost = \"db2\"\nbind = \"10.0.0.2\"\nport = 6380\nreplica_of = \"m\"\n"
        );
        crate::config::parse(&text, Path::new("/etc/redisrepd/shop.toml"), Path::new("/"))
            .unwrap()
            .group
    }

    fn bind() -> SocketAddr {
        DEFAULT_BIND.parse().unwrap()
    }

    const TABLE: &str = "[http]\nlisten = { db1 = \"10.0.0.1:9765\", db2 = \"10.0.0.2:9765\" }";

    #[test]
    fn every_instance_is_checked_at_its_hosts_daemon() {
        let cfg = render(&group(TABLE), bind(), None).unwrap();
        for want in [
            "frontend shop_write\n    bind 127.0.0.1:6380\n    default_backend shop_master\n",
            "backend shop_master\n    balance roundrobin\n    option httpchk\n",
            "http-check send meth GET uri-lf /master/%[srv_name] ver HTTP/1.1 hdr Host redisrepd\n",
            "    http-check expect status 200\n",
            "    server m 10.0.0.1:6379 check addr 10.0.0.1 port 9765\n",
            "    server r1 10.0.0.2:6379 check addr 10.0.0.2 port 9765\n",
            "    server r2 10.0.0.2:6380 check addr 10.0.0.2 port 9765\n",
            "default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions\n",
            "    mode tcp\n",
            "    timeout client 1h\n",
        ] {
            assert!(cfg.contains(want), "missing {want:?}\n{cfg}");
        }
        assert!(
            !cfg.contains("_read"),
            "no read frontend unless asked:\n{cfg}"
        );
        assert!(cfg.contains("/etc/redisrepd/shop.toml"));
    }

    #[test]
    fn the_read_frontend_checks_replicas() {
        let cfg = render(&group(TABLE), bind(), Some("0.0.0.0:6381".parse().unwrap())).unwrap();
        for want in [
            "frontend shop_read\n    bind 0.0.0.0:6381\n    default_backend shop_replicas\n",
            "backend shop_replicas\n    balance leastconn\n",
            "uri-lf /replica/%[srv_name]",
        ] {
            assert!(cfg.contains(want), "missing {want:?}\n{cfg}");
        }
        assert_eq!(cfg.matches("server r1 ").count(), 2, "{cfg}");
    }

    #[test]
    fn an_unspecified_address_means_each_instances_own() {
        let cfg = render(&group("[http]\nlisten = \"0.0.0.0:9765\""), bind(), None).unwrap();
        assert!(
            cfg.contains("server m 10.0.0.1:6379 check addr 10.0.0.1 port 9765"),
            "{cfg}"
        );
        assert!(
            cfg.contains("server r2 10.0.0.2:6380 check addr 10.0.0.2 port 9765"),
            "{cfg}"
        );
        let cfg = render(
            &group("[metrics]\nlisten = \"[::]:9765\""),
            "[::1]:6380".parse().unwrap(),
            None,
        )
        .unwrap();
        assert!(cfg.contains("bind [::1]:6380\n"), "{cfg}");
        assert!(cfg.contains("check addr 10.0.0.1 port 9765"), "{cfg}");
    }

    #[test]
    fn one_specific_address_for_several_hosts_or_none_is_refused() {
        let e = render(&group("[http]\nlisten = \"10.0.0.1:9765\""), bind(), None).unwrap_err();
        assert!(e.starts_with("key `http.listen`: one address, 10.0.0.1:9765, for the daemons of 2 hosts (db1, db2)"), "{e}");
        assert!(e.contains("listen = { db1 = \"ADDR:PORT\", ... }"), "{e}");
        let e = render(&group(""), bind(), None).unwrap_err();
        assert!(e.starts_with("key `http.listen`: not set"), "{e}");
    }
}
