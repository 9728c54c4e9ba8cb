//! The packaged logrotate file (pkg/redisrepd.logrotate) with the real `logrotate`: it
//! rotates the instances' log files, and each server writes its next line to a new file
//! without being signalled.

use std::process::Command;

use crate::cluster::{self, UP};
use crate::util::{self, run};

#[test]
fn the_packaged_logrotate_file_rotates_the_instances_logs() {
    if Command::new("logrotate").arg("--version").output().is_err() {
        panic!("this test needs logrotate (Debian: apt-get install logrotate)");
    }
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .cluster("log_dir = \"log\"")
        .build();
    c.start_daemon("a");
    c.wait_healthy();
    let log = c.dir.join("log/master.log");
    util::wait_until(UP, "the master to write its log", || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    // The packaged file, pointed at this test's log_dir.
    let packaged = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/redisrepd.logrotate"),
    )
    .expect("pkg/redisrepd.logrotate");
    assert!(
        packaged.contains("/var/log/redisrepd/*.log {"),
        "{packaged}"
    );
    let conf = c.dir.write(
        "logrotate.conf",
        packaged.replace(
            "/var/log/redisrepd/",
            &format!("{}/", c.dir.join("log").display()),
        ),
    );
    let state = c.dir.join("logrotate.state");
    let out = run(
        Command::new("logrotate")
            .arg("--force")
            .arg("--state")
            .arg(&state)
            .arg(&conf),
        util::QUICK,
    );
    out.expect_code(0);
    let rotated = c.dir.join("log/master.log.1");
    assert!(rotated.exists(), "{out}");
    // Something the server logs: a background save.
    let mut con = c.con("master");
    let _: () = redis::cmd("BGSAVE").query(&mut con).expect("BGSAVE");
    util::wait_until(UP, "the master to log into a new file", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Background saving"))
    });
    c.wait_healthy();
}
