//! `[tls]`: one pair or one per host, `client_auth`, the managed `tls-*` directives.

use super::*;

fn err(text: &str) -> String {
    problems(text).join("\n")
}

fn two_hosts() -> String {
    [
        inst("m", "a", "10.0.0.1", 6379, None),
        inst("r", "b", "10.0.0.2", 6379, Some("m")),
    ]
    .concat()
}

#[test]
fn one_pair_for_every_host_with_defaults() {
    let text = format!(
        "{CLUSTER}[tls]\ncert_file = \"tls/r.crt\"\nkey_file = \"tls/r.key\"\nca_file = \"/pki/ca.crt\"\n{}",
        two_hosts()
    );
    let tls = ok(&text).group.tls.expect("tls");
    assert_eq!(tls.client_auth, ClientAuth::Yes, "Redis's own default");
    assert_eq!(tls.ca_file, PathBuf::from("/pki/ca.crt"));
    for host in ["a", "b"] {
        assert_eq!(
            tls.pair(host),
            Some((
                &PathBuf::from("/etc/redisrepd/tls/r.crt"),
                &PathBuf::from("/etc/redisrepd/tls/r.key")
            ))
        );
    }
    assert_eq!(tls.pairs().len(), 1);
}

#[test]
fn a_pair_per_host() {
    let text = format!(
        "{CLUSTER}[tls]\ncert_file = {{ a = \"a.crt\", b = \"b.crt\" }}\n\
         key_file = {{ a = \"a.key\", b = \"b.key\" }}\nca_file = \"ca.crt\"\nclient_auth = \"no\"\n{}",
        two_hosts()
    );
    let tls = ok(&text).group.tls.expect("tls");
    assert_eq!(tls.client_auth, ClientAuth::No);
    assert_eq!(
        tls.pair("b").map(|(c, _)| c.clone()),
        Some(PathBuf::from("/etc/redisrepd/b.crt"))
    );
    assert_eq!(
        tls.pairs(),
        vec![
            ("/etc/redisrepd/a.crt".into(), "/etc/redisrepd/a.key".into()),
            ("/etc/redisrepd/b.crt".into(), "/etc/redisrepd/b.key".into()),
        ]
    );
}

#[test]
fn a_host_without_a_pair_or_a_pair_without_a_host_is_named() {
    let text = format!(
        "{CLUSTER}[tls]\ncert_file = {{ a = \"a.crt\", c = \"c.crt\" }}\n\
         key_file = {{ a = \"a.key\", b = \"b.key\" }}\nca_file = \"ca.crt\"\n{}",
        two_hosts()
    );
    let e = err(&text);
    assert!(
        e.contains("key `tls.cert_file`: host `c` runs no instance or sentinel"),
        "{e}"
    );
    assert!(
        e.contains("key `tls.cert_file`: no path for host `b`"),
        "{e}"
    );
}

#[test]
fn key_laid_out_unlike_cert_and_unknown_client_auth_are_rejected() {
    let text = format!(
        "{CLUSTER}[tls]\ncert_file = \"r.crt\"\nkey_file = {{ a = \"a.key\", b = \"b.key\" }}\n\
         ca_file = \"ca.crt\"\nclient_auth = \"sometimes\"\n{}",
        two_hosts()
    );
    let e = err(&text);
    assert!(
        e.contains("key `tls.key_file`: is laid out unlike `cert_file`"),
        "{e}"
    );
    assert!(
        e.contains("key `tls.client_auth`: `sometimes` is not one of"),
        "{e}"
    );
}

#[test]
fn tls_directives_in_redis_point_at_tls() {
    let text = format!(
        "{CLUSTER}[redis]\ntls-port = 6380\ntls_cert_file = \"x\"\n{}",
        trio()
    );
    let e = err(&text);
    assert!(
        e.contains("redisrepd manages `tls-port` itself; use [tls]"),
        "{e}"
    );
    assert!(
        e.contains("redisrepd manages `tls-cert-file` itself; use `cert_file` in [tls]"),
        "{e}"
    );
}
