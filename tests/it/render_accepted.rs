//! Every example, rendered by the binary, is accepted by a real redis-server: each instance
//! starts, requires the password, has the settings the TOML asks for, and the replicas
//! link up with their upstream and receive its writes.

use std::net::SocketAddr;
use std::time::Duration;

use super::util::{
    Example, QUICK, RedisProc, TestDir, config_get, connect, info, redisrepd, run, wait_for,
};

/// Time for one redis-server to answer PING.
const START: Duration = Duration::from_secs(20);
/// Time for replication links to come up: Redis 7 waits `repl-diskless-sync-delay` (5 s)
/// before each full sync, and a cascade syncs one level after the other.
const SYNC: Duration = Duration::from_secs(60);

#[test]
fn seed_example_is_accepted_by_redis() {
    accept("seed");
}

#[test]
fn local_example_is_accepted_by_redis() {
    accept("local");
}

#[test]
fn cascade_example_is_accepted_by_redis() {
    accept("cascade");
}

/// Runs [`try_accept`], again with new ports when a redis-server lost a port race.
fn accept(example: &str) {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        match try_accept(example) {
            Ok(()) => return,
            Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {
                eprintln!("{example}: a port was taken before redis-server bound it; retrying");
            }
            Err(log) => panic!("{example}: a redis-server exited early: {log}"),
        }
    }
}

/// `Err(log)` when a redis-server exits before it answers; every other failure panics.
fn try_accept(example: &str) -> Result<(), String> {
    let dir = TestDir::new();
    let mut ex = Example::load(example);
    ex.isolate(&dir);
    let config = ex.write(&dir);
    let names: Vec<String> = ex
        .instances()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();

    // Dropped before `dir`: every server is killed before its files go.
    let mut servers = Vec::new();
    for name in &names {
        let out = run(
            redisrepd(&config).args(["render", name, "--show-secrets"]),
            QUICK,
        );
        out.expect_code(0);
        let conf = dir.write(format!("run/{name}.conf"), &out.stdout);
        std::fs::create_dir_all(dir.join("data").join(name)).unwrap();
        servers.push(RedisProc::spawn(&conf));
    }
    for (name, server) in names.iter().zip(&mut servers) {
        server.wait_ready(ex.addr(name), Some(&ex.password), START)?;
    }

    for name in &names {
        check_settings(&ex, &dir, name);
    }
    check_replication(&ex, &names);
    Ok(())
}

/// CONFIG GET on the running instance matches what the TOML asked for.
fn check_settings(ex: &Example, dir: &TestDir, name: &str) {
    let addr = ex.addr(name);
    let inst = ex.instance(name);

    let mut anonymous = connect(addr, None).expect("connecting without AUTH");
    let refused = redis::cmd("PING")
        .query::<String>(&mut anonymous)
        .expect_err("PING without AUTH must be refused");
    assert_eq!(refused.code(), Some("NOAUTH"), "{name}: {refused}");

    let mut con = connect(addr, Some(&ex.password)).expect("connecting with AUTH");
    let data_dir = std::fs::canonicalize(dir.join("data").join(name)).unwrap();
    let int = |key: &str, default: i64| {
        inst.get(key)
            .map_or(default, |v| v.as_integer().unwrap())
            .to_string()
    };
    let mut expected: Vec<(String, String)> = vec![
        ("port".into(), addr.port().to_string()),
        ("bind".into(), addr.ip().to_string()),
        ("replica-announce-ip".into(), addr.ip().to_string()),
        ("requirepass".into(), ex.password.clone()),
        ("masterauth".into(), ex.password.clone()),
        ("daemonize".into(), "no".into()),
        ("dir".into(), data_dir.display().to_string()),
        (
            "min-replicas-to-write".into(),
            int("min_replicas_to_write", 0),
        ),
        (
            "min-replicas-max-lag".into(),
            int("min_replicas_max_lag", 10),
        ),
    ];
    // [redis], then [instance.redis] over it.
    let mut directives = toml::Table::new();
    for table in [ex.toml.get("redis"), inst.get("redis")]
        .into_iter()
        .flatten()
    {
        directives.extend(table.as_table().unwrap().clone());
    }
    for (key, value) in &directives {
        expected.push((key.clone(), as_config_get(key, value)));
    }
    for (key, want) in expected {
        let got = config_get(&mut con, &key).unwrap();
        assert_eq!(got, want, "{}: CONFIG GET {key} on `{name}`", ex.name);
    }
}

/// How CONFIG GET reports a directive written as `value` in the TOML.
fn as_config_get(key: &str, value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) if key == "maxmemory" => bytes(s).to_string(),
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Boolean(b) => if *b { "yes" } else { "no" }.to_owned(),
        // A repeated directive (`save`) reads back as one space-separated value.
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        other => panic!("{key}: the examples hold no {}", other.type_str()),
    }
}

/// A redis.conf memory size (`1gb`, `512mb`, `100kb`: powers of 1024) in bytes.
fn bytes(size: &str) -> u64 {
    let lower = size.to_ascii_lowercase();
    for (suffix, factor) in [("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("b", 1)] {
        if let Some(n) = lower.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * factor;
        }
    }
    lower.parse().unwrap()
}

/// Every replica links up with the instance named in its `replica_of`, announces its own
/// address, and receives a write made on the master.
fn check_replication(ex: &Example, names: &[String]) {
    let pw = Some(ex.password.as_str());
    let mut master = None;
    for name in names {
        let addr = ex.addr(name);
        let Some(upstream) = ex.instance(name).get("replica_of") else {
            master = Some(addr);
            continue;
        };
        let up = ex.addr(upstream.as_str().unwrap());
        let what = format!("`{name}` ({addr}) to be in sync with {up}");
        wait_for(SYNC, &what, || replica_state(addr, pw, up));
        let what = format!("{up} to list `{name}` as an online replica at {addr}");
        wait_for(SYNC, &what, || listed_replica(up, pw, addr));
    }

    let master = master.expect("the group has a master");
    let value = format!("written-on-{}", ex.name);
    // With min-replicas-to-write, the master accepts writes once it has counted enough
    // good replicas, up to a second after they are online.
    wait_for(SYNC, "the master to accept a write", || {
        let mut con = connect(master, pw)?;
        redis::cmd("SET")
            .arg("probe")
            .arg(&value)
            .query::<String>(&mut con)
    });
    for name in names {
        let addr = ex.addr(name);
        let what = format!("`{name}` to have the master's write");
        wait_for(SYNC, &what, || {
            let mut con = connect(addr, pw).map_err(|e| e.to_string())?;
            let got: Option<String> = redis::cmd("GET")
                .arg("probe")
                .query(&mut con)
                .map_err(|e| e.to_string())?;
            if got.as_deref() == Some(value.as_str()) {
                Ok(())
            } else {
                Err(format!("GET probe = {got:?}"))
            }
        });
    }
}

/// `Ok` when the replica at `addr` reports an up link to `upstream`.
fn replica_state(addr: SocketAddr, pw: Option<&str>, upstream: SocketAddr) -> Result<(), String> {
    let mut con = connect(addr, pw).map_err(|e| e.to_string())?;
    let repl = info(&mut con, "replication").map_err(|e| e.to_string())?;
    let field = |k: &str| repl.get(k).map(String::as_str).unwrap_or("");
    let ok = field("role") == "slave"
        && field("master_host") == upstream.ip().to_string()
        && field("master_port") == upstream.port().to_string()
        && field("master_link_status") == "up";
    if ok { Ok(()) } else { Err(format!("{repl:?}")) }
}

/// `Ok` when the instance at `upstream` lists an online replica that announced `replica`.
fn listed_replica(
    upstream: SocketAddr,
    pw: Option<&str>,
    replica: SocketAddr,
) -> Result<(), String> {
    let mut con = connect(upstream, pw).map_err(|e| e.to_string())?;
    let repl = info(&mut con, "replication").map_err(|e| e.to_string())?;
    let line = format!("ip={},port={},state=online,", replica.ip(), replica.port());
    let listed = repl
        .iter()
        .any(|(k, v)| k.starts_with("slave") && v.starts_with(&line));
    if listed {
        Ok(())
    } else {
        Err(format!("{repl:?}"))
    }
}
