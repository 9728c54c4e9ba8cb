//! `backup`, `[backup] every/keep/upload` and `restore`: a snapshot taken on a replica (the
//! master does not fork), verified, pruned; a corrupt file refused with the group left
//! alone; a restore that brings every instance to exactly the backup's data, with RDB and
//! with AOF.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cluster::{self, Cluster, UP};
use crate::util;

/// A healthy group: master on host `a`, two replicas on host `b`.
fn group(redis: Option<&str>, extra: &str) -> Cluster {
    let mut b = cluster::master_and_two_replicas();
    if let Some(r) = redis {
        b = b.redis(r);
    }
    let mut c = b.build();
    c.extra_sections = extra.to_owned();
    c.write_config();
    c.start_daemon("a");
    c.start_daemon("b");
    c.wait_healthy();
    c
}

fn dbsize(c: &Cluster, name: &str) -> i64 {
    redis::cmd("DBSIZE")
        .query(&mut c.con(name))
        .unwrap_or_else(|e| panic!("DBSIZE on `{name}`: {e}"))
}

fn get(c: &Cluster, name: &str, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut c.con(name))
        .unwrap_or_else(|e| panic!("GET {key} on `{name}`: {e}"))
}

/// Writes `n` keys `prefix:i` on the master and waits until both replicas have them all.
fn write_keys(c: &Cluster, prefix: &str, n: usize, total: i64) {
    for i in 0..n {
        c.set(
            "master",
            &format!("{prefix}:{i}"),
            &format!("{prefix}-value-{i}"),
        );
    }
    for r in ["r1", "r2"] {
        util::wait_until(UP, &format!("`{r}` to have {total} keys"), || {
            dbsize(c, r) == total
        });
    }
}

/// The backups (RDB files) of cluster `test` in `dir`, sorted.
fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| {
        redisrepd_core::backup::is_backup_of("test", &p.file_name().unwrap().to_string_lossy())
    });
    v.sort();
    v
}

/// What forks and saves on the master: unchanged by a backup from a replica.
fn master_forks(c: &Cluster) -> (i64, i64, i64) {
    (
        c.info_int("master", "stats", "total_forks"),
        c.info_int("master", "stats", "latest_fork_usec"),
        c.info_int("master", "persistence", "rdb_changes_since_last_save"),
    )
}

#[test]
fn a_manual_backup_comes_from_a_replica_and_verifies() {
    let c = group(None, "");
    write_keys(&c, "k", 50, 50);
    let before = master_forks(&c);
    let dir = c.dir.join("bk");
    let run = c.cli(&["backup", "--to", dir.to_str().unwrap()]);
    run.expect_code(0).expect_hidden(cluster::PASSWORD);
    assert!(run.stdout.contains("backup of `r1`"), "{run}");
    assert_eq!(
        master_forks(&c),
        before,
        "the master forked or saved for the backup"
    );

    let files = backups_in(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let rdb = &files[0];
    let meta = std::fs::metadata(rdb).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077,
        0
    );
    let bytes = std::fs::read(rdb).unwrap();
    let verified = redisrepd_core::rdb::verify(&bytes).expect("the backup verifies");
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(rdb.with_extension("json")).unwrap())
            .unwrap();
    let server = util::test_server();
    assert_eq!(record["instance"], "r1", "{record}");
    assert_eq!(record["host"], "b", "{record}");
    assert_eq!(record["cluster"], "test");
    assert_eq!(record["server"], server.to_string());
    assert_eq!(record["keys"], 50);
    assert_eq!(record["bytes"], bytes.len() as u64);
    assert_eq!(record["rdb_version"], server.rdb_version());
    assert_eq!(
        record["crc64"],
        format!("{:016x}", verified.checksum.unwrap())
    );
    assert_eq!(record["load_tested_by"], server.to_string(), "{record}");
    let replid = c.info("master", "replication")["master_replid"].clone();
    assert_eq!(record["repl_id"], replid, "{record}");
    assert!(record["repl_offset"].as_i64().unwrap() > 0, "{record}");

    // `status` shows it: a line, and a field in the JSON.
    let run = c.cli(&["status"]);
    assert!(run.stdout.contains("backup (host b): last "), "{run}");
    let doc: Value = serde_json::from_str(&c.cli(&["status", "--json"]).stdout).unwrap();
    assert_eq!(
        doc["backups"][0]["last_file"],
        rdb.display().to_string(),
        "{doc}"
    );
}

#[test]
fn scheduled_backups_keep_the_newest_and_are_uploaded() {
    let dir = util::TestDir::new();
    let bk = dir.join("bk");
    std::fs::create_dir_all(&bk).unwrap();
    // Not ours: never pruned.
    for other in [
        "other-20200101T000000Z.rdb",
        "test-notes.txt",
        "test-2020.rdb",
    ] {
        std::fs::write(bk.join(other), "x").unwrap();
    }
    let uploads = dir.join("uploads");
    let extra = format!(
        "[backup]\ndir = \"{}\"\nevery = \"1s\"\nkeep = 2\n\
         upload = [\"sh\", \"-c\", \"echo \\\"$1\\\" >> {}\", \"sh\"]\n",
        bk.display(),
        uploads.display()
    );
    let c = group(None, &extra);
    write_keys(&c, "k", 10, 10);
    let before = master_forks(&c);
    let uploaded = || {
        std::fs::read_to_string(&uploads)
            .unwrap_or_default()
            .lines()
            .count()
    };
    util::wait_until(UP, "four scheduled backups uploaded", || uploaded() >= 4);
    // Each backup is pruned before it is uploaded; the next one may be on its way.
    util::wait_until(UP, "two backups kept", || backups_in(&bk).len() == 2);
    for other in [
        "other-20200101T000000Z.rdb",
        "test-notes.txt",
        "test-2020.rdb",
    ] {
        assert!(bk.join(other).exists(), "{other} was deleted");
    }
    for rdb in backups_in(&bk) {
        assert!(rdb.with_extension("json").exists(), "{}", rdb.display());
    }
    let (forks, fork_usec, _) = master_forks(&c);
    assert_eq!(
        (forks, fork_usec),
        (before.0, before.1),
        "the master forked"
    );
    let doc: Value = serde_json::from_str(&c.cli(&["status", "--json"]).stdout).unwrap();
    // Host a may have taken one from the master at first, while the replicas were syncing.
    let b = doc["backups"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["host"] == "b"))
        .unwrap_or_else(|| panic!("no backup from host b: {doc}"));
    assert_eq!(b["failures_total"], 0, "{doc}");
    assert!(b["last_success_unix"].as_i64().is_some(), "{doc}");
    assert_eq!(b["every_s"], 1);
}

/// A copy of `from` with the bytes `f` makes of it.
fn damaged(from: &Path, to: &Path, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(from).unwrap();
    f(&mut bytes);
    std::fs::write(to, bytes).unwrap();
    to.to_owned()
}

#[test]
fn a_corrupt_file_is_refused_and_the_group_left_alone() {
    let c = group(None, "");
    write_keys(&c, "k", 20, 20);
    let dir = c.dir.join("bk");
    c.cli(&["backup", "--to", dir.to_str().unwrap()])
        .expect_code(0);
    let good = backups_in(&dir).remove(0);
    let pids: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();

    let flipped = damaged(&good, &c.dir.join("flipped.rdb"), |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
    });
    let cut = damaged(&good, &c.dir.join("cut.rdb"), |b| {
        b.truncate(b.len() * 2 / 3)
    });
    // A format newer than any server here loads, with a checksum that matches.
    let too_new = damaged(&good, &c.dir.join("new.rdb"), |b| {
        b[5..9].copy_from_slice(b"0099");
        let n = b.len();
        let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&b[..n - 8]);
        b[n - 8..].copy_from_slice(&crc.to_le_bytes());
    });
    for (file, why) in [
        (&flipped, "damaged"),
        (&cut, "truncated"),
        (&too_new, "RDB version 99"),
    ] {
        let run = c.cli(&["restore", file.to_str().unwrap(), "--force"]);
        run.expect_code(1);
        assert!(
            run.stderr.contains(why) && run.stderr.contains("nothing changed"),
            "{why}: {run}"
        );
    }
    // A good file without --force: refused too.
    let run = c.cli(&["restore", good.to_str().unwrap()]);
    run.expect_code(1);
    assert!(run.stderr.contains("--force"), "{run}");

    let after: Vec<u32> = ["master", "r1", "r2"].iter().map(|n| c.pid(n)).collect();
    assert_eq!(pids, after, "an instance was restarted");
    for n in ["master", "r1", "r2"] {
        assert_eq!(dbsize(&c, n), 20, "`{n}`");
    }
    let aside: Vec<_> = std::fs::read_dir(c.data_dir("master"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("before-restore"))
        .collect();
    assert!(aside.is_empty(), "data set aside: {aside:?}");
    c.wait_healthy();
}

/// Back up, write more, restore: every instance has exactly the backup's keys.
fn restore_drill(redis: Option<&str>) {
    let c = group(redis, "");
    write_keys(&c, "early", 30, 30);
    let dir = c.dir.join("bk");
    c.cli(&["backup", "--to", dir.to_str().unwrap()])
        .expect_code(0);
    let file = backups_in(&dir).remove(0);
    write_keys(&c, "late", 10, 40);
    c.set("master", "early:0", "changed after the backup");
    for r in ["r1", "r2"] {
        util::wait_until(UP, "the change replicated", || {
            get(&c, r, "early:0").as_deref() == Some("changed after the backup")
        });
    }

    let run = c.cli(&["restore", file.to_str().unwrap(), "--force"]);
    run.expect_code(0).expect_hidden(cluster::PASSWORD);
    c.wait_healthy();
    for n in ["master", "r1", "r2"] {
        util::wait_until(UP, &format!("`{n}` to have the backup's 30 keys"), || {
            dbsize(&c, n) == 30
        });
        assert_eq!(
            get(&c, n, "early:0").as_deref(),
            Some("early-value-0"),
            "`{n}`"
        );
        assert_eq!(
            get(&c, n, "early:29").as_deref(),
            Some("early-value-29"),
            "`{n}`"
        );
        assert_eq!(get(&c, n, "late:0"), None, "`{n}`");
    }
    // The old data is kept beside, never deleted.
    for n in ["master", "r1", "r2"] {
        let aside = std::fs::read_dir(c.data_dir(n))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".before-restore"));
        assert!(aside, "`{n}`: nothing set aside\n{run}");
    }
    // The restored data survives a restart of the master (with AOF: the AOF holds it).
    c.set("master", "after", "restore");
    c.cli(&["restart", "master"]).expect_code(0);
    c.wait_healthy();
    assert_eq!(dbsize(&c, "master"), 31);
    assert_eq!(
        get(&c, "master", "early:1").as_deref(),
        Some("early-value-1")
    );
}

#[test]
fn restore_brings_every_instance_to_the_backup_with_rdb() {
    restore_drill(None);
}

#[test]
fn restore_brings_every_instance_to_the_backup_with_aof() {
    restore_drill(Some(
        "save = [\"3600 1\"]\nappendonly = \"yes\"\nappendfsync = \"everysec\"\n",
    ));
}

#[test]
fn the_load_test_runs_the_server_on_the_file() {
    use redisrepd_io::backup::take::load_test;
    let dir = util::TestDir::new();
    let server = util::redis_server();
    let t = std::time::Duration::from_secs(30);
    // An RDB every server of the matrix loads (6.2's format, the oldest).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb/redis-6.2.rdb");
    load_test(&server, &fixture, t).expect("the server loads a 6.2 RDB");
    let too_new = damaged(&fixture, &dir.join("new.rdb"), |b| {
        b[5..9].copy_from_slice(b"0099");
        let n = b.len();
        let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&b[..n - 8]);
        b[n - 8..].copy_from_slice(&crc.to_le_bytes());
    });
    let err = load_test(&server, &too_new, t).unwrap_err();
    assert!(err.contains("exited"), "{err}");
}

#[test]
fn after_a_failover_the_restore_goes_to_the_actual_master() {
    let c = group(None, "");
    write_keys(&c, "early", 20, 20);
    c.cli(&["failover", "--to", "r1"]).expect_code(0);
    c.wait_healthy();
    let dir = c.dir.join("bk");
    let run = c.cli(&["backup", "--to", dir.to_str().unwrap()]);
    run.expect_code(0);
    // r1 is the master now: the backup comes from a replica of it.
    assert!(!run.stdout.contains("backup of `r1`"), "{run}");
    let file = backups_in(&dir).remove(0);
    c.set("r1", "late", "x");
    let run = c.cli(&["restore", file.to_str().unwrap(), "--force"]);
    run.expect_code(0);
    assert!(run.stdout.contains("to `r1`"), "{run}");
    c.wait_healthy();
    assert_eq!(c.info("r1", "replication")["role"], "master");
    for n in ["master", "r1", "r2"] {
        util::wait_until(UP, &format!("`{n}` to have the backup's 20 keys"), || {
            dbsize(&c, n) == 20
        });
        assert_eq!(get(&c, n, "late"), None, "`{n}`");
    }
}

#[test]
fn a_failed_upload_counts_as_a_failed_backup_and_keeps_the_file() {
    let dir = util::TestDir::new();
    let bk = dir.join("bk");
    let extra = format!(
        "[backup]\ndir = \"{}\"\nevery = \"1s\"\nkeep = 5\n\
         upload = [\"sh\", \"-c\", \"echo no route to bucket >&2; exit 7\"]\n",
        bk.display()
    );
    let c = group(None, &extra);
    let failed = || -> Option<Value> {
        let doc: Value = serde_json::from_str(&c.cli(&["status", "--json"]).stdout).ok()?;
        doc["backups"]
            .as_array()?
            .iter()
            .find(|b| b["failures_total"].as_u64().unwrap_or(0) >= 1 && b["last_error"].is_string())
            .cloned()
    };
    let b = util::wait_for(UP, "a failed upload counted", || {
        failed().ok_or_else(|| c.cli(&["status", "--json"]).stdout)
    });
    let err = b["last_error"].as_str().unwrap();
    assert!(
        err.contains("upload failed") && err.contains("no route to bucket"),
        "{b}"
    );
    assert!(!backups_in(&bk).is_empty(), "the backup itself is kept");
    let run = c.cli(&["status"]);
    assert!(run.stdout.contains("failed, last: "), "{run}");
}
