//! `daemon --metrics` / `[metrics] listen`: the Prometheus endpoint over a real socket, and
//! what a scrape shows after a crash and a restart.

use std::net::SocketAddr;

use nix::sys::signal::Signal;

use crate::cluster::{self, UP};
use crate::util;
use redisrepd_testkit::http_get as get;

/// Waits until the endpoint answers HTTP at all.
fn wait_answering(addr: SocketAddr) -> (u16, String) {
    util::wait_for(UP, "the metrics endpoint to answer", || {
        get(addr, "/metrics").map_err(|e| e.to_string())
    })
}

fn metrics_addr() -> SocketAddr {
    let ip = util::loopback_ip();
    SocketAddr::new(ip, util::free_port(ip))
}

#[test]
fn daemon_serves_metrics_from_the_flag_and_from_the_toml() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let flag = metrics_addr();
    c.start_daemon_with("a", |cmd| {
        cmd.arg("--metrics").arg(flag.to_string());
    });
    c.wait_socket("a");
    let (code, body) = wait_answering(flag);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("redisrepd_instance_up"), "{body}");
    // `doctor`'s checks of this host, from the daemon's own thread.
    util::wait_until(UP, "the doctor's checks in the metrics", || {
        get(flag, "/metrics").is_ok_and(|(_, b)| {
            ["overcommit", "open-files", "memory", "disk", "clock"]
                .iter()
                .all(|c| b.contains(&format!("redisrepd_doctor_check{{check=\"{c}\"}}")))
        })
    });
    let (code, _) = get(flag, "/").expect("GET /");
    assert_eq!(code, 404);
    c.stop_daemon("a");

    // The same from `[metrics] listen` (a second group, its own daemon).
    let mut d = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let listen = metrics_addr();
    let text = format!("{}\n[metrics]\nlisten = \"{listen}\"\n", d.toml_text());
    d.dir.write("group.toml", text);
    d.start_daemon("a");
    let (code, body) = wait_answering(listen);
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_metrics_address_in_use_is_logged_and_the_daemon_runs_on() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .build();
    let taken = std::net::TcpListener::bind((util::loopback_ip(), 0)).unwrap();
    let addr = taken.local_addr().unwrap();
    c.start_daemon_with("a", |cmd| {
        cmd.arg("--metrics").arg(addr.to_string());
    });
    c.wait_socket("a");
    c.wait_healthy();
    let log = c.daemon_log("a");
    assert!(log.contains(&format!("cannot listen on {addr}")), "{log}");
    // Taken once it is free (tried again every few seconds).
    drop(taken);
    let (code, body) = wait_answering(addr);
    assert_eq!(code, 200, "{body}");
}

/// The value of one sample line (`name{labels} value`), labels written as in the output.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_scrape_shows_restarts_syncs_and_stops_after_a_crash_and_a_restart() {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .build();
    let addr = metrics_addr();
    c.start_daemon_with("a", |cmd| {
        cmd.arg("--metrics").arg(addr.to_string());
    });
    c.wait_socket("a");
    c.wait_healthy();
    let pid = c.pid("r1");
    util::kill(pid, Signal::SIGKILL);
    util::wait_for(UP, "r1 restarted after the crash", || {
        let s = c.status().remove("r1").unwrap();
        if s["restarts"] == 1 && s["state"] == "running" {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    c.cli(&["restart", "r1"]).expect_code(0);
    c.wait_healthy();
    let (code, body) = get(addr, "/metrics").expect("scrape");
    assert_eq!(code, 200, "{body}");
    let want = [
        (r#"redisrepd_instance_up{instance="r1",host="a"}"#, 1.0),
        (r#"redisrepd_instance_up{instance="master",host="a"}"#, 1.0),
        (r#"redisrepd_restarts_total{instance="r1"}"#, 1.0),
        (r#"redisrepd_restarts_total{instance="master"}"#, 0.0),
        // The first start and the crash restart: full syncs (the crash lost the replica's
        // state since its last save); the rolling restart: partial.
        (
            r#"redisrepd_syncs_total{instance="r1",kind="partial"}"#,
            1.0,
        ),
        (
            r#"redisrepd_stops_total{instance="r1",result="saved"}"#,
            1.0,
        ),
        (
            r#"redisrepd_stops_total{instance="r1",result="killed"}"#,
            0.0,
        ),
        (r#"redisrepd_gate_waiting{upstream="master"}"#, 0.0),
    ];
    for (series, value) in want {
        assert_eq!(sample(&body, series), Some(value), "{series}\n{body}");
    }
    let full = sample(&body, r#"redisrepd_syncs_total{instance="r1",kind="full"}"#);
    assert!(full.is_some_and(|n| n >= 1.0), "{body}");
    // The server the test matrix selected, as status names it ("redis 7.0.15").
    let status = c.status().remove("r1").unwrap();
    let (server, version) = status["server"]
        .as_str()
        .and_then(|s| s.split_once(' '))
        .expect("status names r1's server");
    let series =
        format!(r#"redisrepd_server_info{{instance="r1",server="{server}",version="{version}"}}"#);
    assert_eq!(sample(&body, &series), Some(1.0), "{series}\n{body}");
}
