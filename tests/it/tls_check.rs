//! `[tls]`'s files judged by `check`, the daemon's start and `reload`, and watched by
//! `status` and the metrics: certificates made with the `openssl` CLI in each test's dir
//! (a key that is unreadable or not the certificate's, a CA that did not sign it, an
//! expired one, one that does not name an instance's address, one near its end), and a
//! server built without TLS.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::{self, UP};
use crate::util::{self, Example, QUICK, Run, TestDir, chmod, redisrepd, run};

/// A small PKI in `dir/tls`: a CA, and certificates it (or another CA) signs.
struct Pki {
    dir: PathBuf,
}

/// How long a certificate is valid.
enum Valid {
    /// From now for this many days (`openssl x509 -days`).
    Days(u32),
    /// Between two dates (`openssl ca -startdate -enddate`: the way to a certificate that
    /// ended in the past on OpenSSL 3.0, whose `x509 -days` takes no negative number and
    /// which has no `-not_after` yet).
    Between(&'static str, &'static str),
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (the tests make their certificates with it)");
    assert!(
        out.status.success(),
        "openssl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A PKI with the CA `ca` (`ca.crt`, `ca.key`).
    fn new(test: &TestDir) -> Pki {
        let dir = test.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.ca("ca");
        pki
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A self-signed CA: `NAME.crt`, `NAME.key`.
    fn ca(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "3650",
                "-subj",
                &format!("/CN=redisrepd test {name}"),
            ],
        );
    }

    /// `NAME.crt` and `NAME.key`, signed by the CA `ca`, naming `ips`.
    fn cert(&self, name: &str, ips: &[IpAddr], ca: &str, valid: Valid) -> (PathBuf, PathBuf) {
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        let san: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName = {}\n", san.join(", ")),
        )
        .unwrap();
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        match valid {
            Valid::Days(days) => openssl(
                &self.dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_crt,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    &days.to_string(),
                    "-extfile",
                    &ext,
                ],
            ),
            Valid::Between(start, end) => {
                let db = self.dir.join(format!("{name}.db"));
                std::fs::create_dir_all(&db).unwrap();
                std::fs::write(db.join("index.txt"), "").unwrap();
                std::fs::write(db.join("serial"), "01\n").unwrap();
                let conf = format!("{name}.ca.cnf");
                std::fs::write(
                    self.dir.join(&conf),
                    format!(
                        "[ca]\ndefault_ca = d\n[d]\ndir = {}\ndatabase = $dir/index.txt\n\
                         serial = $dir/serial\nnew_certs_dir = $dir\ndefault_md = sha256\n\
                         policy = p\nunique_subject = no\nx509_extensions = e\n\
                         [p]\ncommonName = supplied\n[e]\nsubjectAltName = {}\n",
                        db.display(),
                        san.join(", ")
                    ),
                )
                .unwrap();
                openssl(
                    &self.dir,
                    &[
                        "ca",
                        "-batch",
                        "-config",
                        &conf,
                        "-cert",
                        &ca_crt,
                        "-keyfile",
                        &ca_key,
                        "-in",
                        &csr,
                        "-out",
                        &crt,
                        "-startdate",
                        start,
                        "-enddate",
                        end,
                    ],
                );
            }
        }
        (self.path(&crt), self.path(&key))
    }
}

/// The local example with its own addresses and `redis_server` set to `server`.
fn example(dir: &TestDir, server: &str) -> Example {
    let mut ex = Example::load("local");
    ex.isolate(dir);
    ex.toml["cluster"]
        .as_table_mut()
        .unwrap()
        .insert("redis_server".into(), server.into());
    ex
}

/// Writes `ex` with `[tls]`: one pair for every host.
fn with_tls(ex: &mut Example, dir: &TestDir, cert: &Path, key: &Path, ca: &Path) -> PathBuf {
    let mut tls = toml::Table::new();
    for (k, p) in [("cert_file", cert), ("key_file", key), ("ca_file", ca)] {
        tls.insert(k.into(), p.display().to_string().into());
    }
    ex.toml.insert("tls".into(), tls.into());
    ex.write(dir)
}

/// Every bind of the example, in file order, each once.
fn binds(ex: &Example) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for i in ex.instances() {
        let ip: IpAddr = i["bind"].as_str().unwrap().parse().unwrap();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// A path no server is at: `check` then warns that it cannot ask the server and judges the
/// files alone.
const NO_SERVER: &str = "/nonexistent/redis-server";

fn check(config: &Path) -> Run {
    run(redisrepd(config).args(["check", "--host", "local"]), QUICK)
}

/// `check` refuses the file: exit 1 (cli.md: an invalid configuration), every fragment on
/// stderr, the file named.
fn refused(out: &Run, config: &Path, fragments: &[&str]) {
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("redisrepd: {}: ", config.display())),
        "{out}"
    );
    for f in fragments {
        assert!(out.stderr.contains(f), "expected {f:?}\n{out}");
    }
    assert_eq!(out.stdout, "", "{out}");
}

/// How many problems `check` printed (its warnings apart).
fn problems(out: &Run) -> usize {
    out.stderr
        .lines()
        .filter(|l| !l.starts_with("redisrepd: warning: "))
        .count()
}

/// The server a line of target/servers.list names (`valkey-8.1`), when it is there.
fn listed_server(name: &str) -> Option<PathBuf> {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/servers.list");
    let text = std::fs::read_to_string(list).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|p| PathBuf::from(p.trim()))
        .filter(|p| p.exists())
}

#[test]
fn check_accepts_good_files_and_warns_under_fourteen_days() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let mut ex = example(&dir, NO_SERVER);
    let (cert, key) = pki.cert("soon", &binds(&ex), "ca", Valid::Days(5));
    let config = with_tls(&mut ex, &dir, &cert, &key, &pki.path("ca.crt"));
    let out = check(&config);
    out.expect_code(0);
    assert!(out.stdout.contains("configuration is valid"), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "key `tls.cert_file`: `{}` expires on ",
            cert.display()
        )),
        "{out}"
    );
    // 5 days from `openssl x509`, a second or so ago.
    assert!(
        ["in 4 days", "in 5 days"].iter().any(|d| out
            .stderr
            .contains(&format!("{d}: renew it, then `redisrepd reload`"))),
        "{out}"
    );
}

#[test]
fn check_refuses_an_unreadable_key() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let mut ex = example(&dir, NO_SERVER);
    let (cert, key) = pki.cert("good", &binds(&ex), "ca", Valid::Days(365));
    let config = with_tls(&mut ex, &dir, &cert, &key, &pki.path("ca.crt"));
    let mut cmd = redisrepd(&config);
    if nix::unistd::geteuid().is_root() {
        // Root reads any file: ask as `nobody`, who may read everything but the key (0600).
        chmod(dir.path(), 0o755);
        chmod(&pki.dir, 0o755);
        chmod(&key, 0o600);
        for f in [&cert, &pki.path("ca.crt"), &config] {
            chmod(f, 0o644);
        }
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        cmd = wrapped;
    } else {
        chmod(&key, 0o000);
    }
    let out = run(cmd.args(["check", "--host", "local"]), QUICK);
    refused(
        &out,
        &config,
        &[&format!(
            "key `tls.key_file`: `{}` cannot be read: Permission denied",
            key.display()
        )],
    );
}

#[test]
fn check_refuses_a_key_that_is_not_the_certificates() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let mut ex = example(&dir, NO_SERVER);
    let (cert, _) = pki.cert("good", &binds(&ex), "ca", Valid::Days(365));
    let (_, other_key) = pki.cert("other", &binds(&ex), "ca", Valid::Days(365));
    let config = with_tls(&mut ex, &dir, &cert, &other_key, &pki.path("ca.crt"));
    refused(
        &check(&config),
        &config,
        &[&format!(
            "key `tls.key_file`: `{}` is not the key of `{}`",
            other_key.display(),
            cert.display()
        )],
    );
}

#[test]
fn check_refuses_a_certificate_another_ca_signed() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    pki.ca("other-ca");
    let mut ex = example(&dir, NO_SERVER);
    let (cert, key) = pki.cert("stranger", &binds(&ex), "other-ca", Valid::Days(365));
    let ca = pki.path("ca.crt");
    let config = with_tls(&mut ex, &dir, &cert, &key, &ca);
    let out = check(&config);
    refused(
        &out,
        &config,
        &[&format!(
            "key `tls.cert_file`: `{}` is not signed by ca_file `{}`",
            cert.display(),
            ca.display()
        )],
    );
    assert_eq!(problems(&out), 1, "one problem, said once\n{out}");
}

#[test]
fn check_refuses_an_expired_certificate() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let mut ex = example(&dir, NO_SERVER);
    let (cert, key) = pki.cert(
        "old",
        &binds(&ex),
        "ca",
        Valid::Between("20190101000000Z", "20200101000000Z"),
    );
    let config = with_tls(&mut ex, &dir, &cert, &key, &pki.path("ca.crt"));
    let out = check(&config);
    refused(
        &out,
        &config,
        &[&format!(
            "key `tls.cert_file`: `{}` expired on 2020-01-01 00:00:00 UTC: renew it",
            cert.display()
        )],
    );
    assert_eq!(problems(&out), 1, "one problem, said once\n{out}");
}

#[test]
fn check_refuses_a_certificate_that_does_not_name_an_instances_address() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let mut ex = example(&dir, NO_SERVER);
    let ips = binds(&ex);
    // The master's address is left out (the example's first instance).
    let master = ex.addr("master").ip();
    assert_eq!(master, ips[0]);
    let (cert, key) = pki.cert("partial", &ips[1..], "ca", Valid::Days(365));
    let config = with_tls(&mut ex, &dir, &cert, &key, &pki.path("ca.crt"));
    refused(
        &check(&config),
        &config,
        &[&format!(
            "key `tls.cert_file`: `{}` does not name {master} (instance `master`): add \
             IP:{master} to its subjectAltName",
            cert.display()
        )],
    );
}

#[test]
fn check_refuses_a_server_built_without_tls() {
    let Some(valkey) = listed_server("valkey-8.1") else {
        eprintln!(
            "skipped: no valkey-8.1 in target/servers.list (the embedded Valkey build without \
             TLS this test asks)"
        );
        return;
    };
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let mut ex = example(&dir, &valkey.display().to_string());
    let (cert, key) = pki.cert("good", &binds(&ex), "ca", Valid::Days(365));
    let config = with_tls(&mut ex, &dir, &cert, &key, &pki.path("ca.crt"));
    refused(
        &check(&config),
        &config,
        &[&format!(
            "key `tls`: `{}` was built without TLS: use a build with TLS (make BUILD_TLS=yes; \
             Debian's packages have it) or remove [tls]",
            valkey.display()
        )],
    );
}

/// With a server built with TLS, good files pass its probe too; a pair per host, with
/// another host's pair absent here, checks this host's alone.
#[test]
fn check_asks_the_server_and_skips_another_hosts_absent_pair() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let mut ex = example(&dir, &util::redis_server().display().to_string());
    // Two hosts: `replica-b` moves to host `other`.
    ex.instances_mut()
        .find(|i| i["name"].as_str() == Some("replica-b"))
        .unwrap()
        .insert("host".into(), "other".into());
    let local: Vec<IpAddr> = ex
        .instances()
        .filter(|i| i["host"].as_str() == Some("local"))
        .map(|i| i["bind"].as_str().unwrap().parse().unwrap())
        .collect();
    let (cert, key) = pki.cert("local", &local, "ca", Valid::Days(365));
    let table = |mine: &Path, theirs: &str| {
        let mut t = toml::Table::new();
        t.insert("local".into(), mine.display().to_string().into());
        t.insert("other".into(), theirs.into());
        toml::Value::from(t)
    };
    let mut tls = toml::Table::new();
    tls.insert("cert_file".into(), table(&cert, "/elsewhere/other.crt"));
    tls.insert("key_file".into(), table(&key, "/elsewhere/other.key"));
    tls.insert(
        "ca_file".into(),
        pki.path("ca.crt").display().to_string().into(),
    );
    ex.toml.insert("tls".into(), tls.into());
    let config = ex.write(&dir);
    let out = check(&config);
    if out.stderr.contains("was built without TLS") {
        eprintln!(
            "skipped: the suite's server `{}` was built without TLS",
            util::redis_server().display()
        );
        return;
    }
    out.expect_code(0);
    assert!(!out.stderr.contains("tls"), "{out}");
    // The other host's pair is checked on its host: `--host other` requires it.
    let out = run(redisrepd(&config).args(["check", "--host", "other"]), QUICK);
    refused(
        &out,
        &config,
        &["key `tls.cert_file.other`: `/elsewhere/other.crt` cannot be read"],
    );
}

/// A key rustls's ring cannot load (P-521) is judged by the server alone: its refusal, in
/// its own words, names the files.
#[test]
fn check_reports_the_servers_own_words_for_a_key_only_it_can_load() {
    let dir = TestDir::new();
    let pki = Pki::new(&dir);
    let server = util::redis_server();
    let mut ex = example(&dir, &server.display().to_string());
    let (cert, _) = pki.cert("good", &binds(&ex), "ca", Valid::Days(365));
    openssl(
        &pki.dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-521",
            "-out",
            "p521.key",
        ],
    );
    let key = pki.path("p521.key");
    let config = with_tls(&mut ex, &dir, &cert, &key, &pki.path("ca.crt"));
    let out = check(&config);
    if out.stderr.contains("was built without TLS") {
        eprintln!(
            "skipped: the suite's server `{}` was built without TLS",
            server.display()
        );
        return;
    }
    refused(
        &out,
        &config,
        &[
            &format!(
                "key `tls.cert_file`: `{}` refuses `{}` with key `{}` and ca_file `{}`: ",
                server.display(),
                cert.display(),
                key.display(),
                pki.path("ca.crt").display()
            ),
            "key values mismatch",
        ],
    );
}

/// A group on one host with `[tls]`: a master and a replica, the pair `cert`/`key`.
fn tls_cluster(
    pki_of: impl FnOnce(&Pki, &[IpAddr]) -> (PathBuf, PathBuf),
) -> (cluster::Cluster, Pki) {
    let mut c = cluster::Builder::new()
        .instance("master", "a", None)
        .instance("r1", "a", Some("master"))
        .build();
    let pki = Pki::new(&c.dir);
    let ips: Vec<IpAddr> = c.members.iter().map(|m| m.ip).collect();
    let (cert, key) = pki_of(&pki, &ips);
    c.extra_sections = tls_section(&cert, &key, &pki.path("ca.crt"));
    c.write_config();
    (c, pki)
}

fn tls_section(cert: &Path, key: &Path, ca: &Path) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\n",
        cert.display(),
        key.display(),
        ca.display()
    )
}

/// Whether the suite's server has TLS; says why a test is skipped when not.
fn suite_server_has_tls(c: &cluster::Cluster) -> bool {
    let out = c.cli(&["check", "--host", "a"]);
    if out.stderr.contains("was built without TLS") {
        eprintln!(
            "skipped: the suite's server `{}` was built without TLS",
            c.redis_server.display()
        );
        return false;
    }
    out.expect_code(0);
    true
}

#[test]
fn the_daemon_refuses_to_start_on_failing_tls_files() {
    let (mut c, _) = tls_cluster(|pki, ips| {
        pki.cert(
            "old",
            ips,
            "ca",
            Valid::Between("20190101000000Z", "20200101000000Z"),
        )
    });
    c.start_daemon_with("a", |_| {});
    let status = c.daemon("a").proc.wait_exit(UP);
    assert_eq!(status.code(), Some(1), "{}", c.daemon_log("a"));
    let log = c.daemon_log("a");
    assert!(
        log.contains(&format!(
            "{}: key `tls.cert_file`: `{}` expired on 2020-01-01 00:00:00 UTC",
            c.config.display(),
            c.dir.join("tls/old.crt").display()
        )),
        "{log}"
    );
    assert!(
        util::redis_under(c.dir.path()).is_empty(),
        "nothing started"
    );
}

/// The metric and `status` on a running TLS group whose certificate ends in 5 days; then a
/// reload onto a certificate that does not name the replica's address is refused and
/// changes nothing.
#[test]
fn a_running_group_shows_its_certificates_ends_and_refuses_a_reload_onto_a_bad_one() {
    let (mut c, pki) = tls_cluster(|pki, ips| pki.cert("soon", ips, "ca", Valid::Days(5)));
    if !suite_server_has_tls(&c) {
        return;
    }
    let ip = util::loopback_ip();
    let metrics = SocketAddr::new(ip, util::free_port(ip));
    c.start_daemon_with("a", |cmd| {
        cmd.arg("--metrics").arg(metrics.to_string());
    });
    c.wait_socket("a");
    c.wait_healthy();

    // The gauge, per file this host uses, read at the scrape: 4 to 5 days left.
    let (code, body) = util::wait_for(UP, "a scrape", || {
        redisrepd_testkit::http_get(metrics, "/metrics").map_err(|e| e.to_string())
    });
    assert_eq!(code, 200, "{body}");
    let seconds = |file: &Path| {
        let series = format!(
            "redisrepd_tls_cert_expiry_seconds{{file=\"{}\"}} ",
            file.display()
        );
        body.lines()
            .find_map(|l| l.strip_prefix(&series)?.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no {series}\n{body}"))
    };
    let cert = pki.path("soon.crt");
    let left = seconds(&cert);
    assert!((4 * 86_400..=5 * 86_400).contains(&left), "{left}\n{body}");
    assert!(seconds(&pki.path("ca.crt")) > 3000 * 86_400, "{body}");

    // `status`: a warning line, and the JSON field.
    let out = c.cli(&["status"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains(&format!(
            "warning: host `a`: `{}` expires on ",
            cert.display()
        )),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.cli(&["status", "--json"]).stdout).expect("status JSON");
    let certs = json["tls_cert_expiry"].as_array().expect("tls_cert_expiry");
    assert_eq!(certs.len(), 2, "{json}");
    assert_eq!(certs[0]["host"], "a");
    assert_eq!(certs[0]["file"], cert.display().to_string());
    assert!(
        certs[0]["seconds_left"].as_i64().unwrap() <= 5 * 86_400,
        "{json}"
    );

    // A reload onto a certificate without the replica's address: refused, nothing changes.
    let names = ["master", "r1"];
    let pids: Vec<u32> = names.iter().map(|n| c.pid(n)).collect();
    let run_dir = c.run_dir();
    let confs = || -> Vec<String> {
        names
            .iter()
            .map(|n| std::fs::read_to_string(run_dir.join(format!("{n}.conf"))).unwrap())
            .collect()
    };
    let before = confs();
    let r1 = c.member("r1").ip;
    let (bad, bad_key) = pki.cert("bad", &[c.member("master").ip], "ca", Valid::Days(365));
    c.extra_sections = tls_section(&bad, &bad_key, &pki.path("ca.crt"));
    c.write_config();
    let run = c.cli(&["reload"]);
    run.expect_code(1);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("reload refused, nothing changed"), "{run}");
    assert!(
        said.contains(&format!(
            "key `tls.cert_file`: `{}` does not name {r1} (instance `r1`)",
            bad.display()
        )),
        "{run}"
    );
    c.wait_healthy();
    assert_eq!(names.map(|n| c.pid(n)).to_vec(), pids, "nothing restarted");
    assert_eq!(confs(), before, "no config rewritten");
}
