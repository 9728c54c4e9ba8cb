//! `[tls]`'s judgements that need no file: which pair a host checks and which addresses its
//! certificate must name, where a certificate stands in its validity period, and the words
//! `check`, `reload`, the daemon's start and `status` use for what is wrong.
//!
//! `redisrepd_io::tls_files` reads the files, verifies the certificates with rustls and
//! hands the facts (dates, names, the verifier's verdict) to these functions.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::{ClientAuth, Group, PerHost, Problem, Tls};

/// Under this many days before its end, a certificate is a warning (`check`, `status`).
pub const WARN_DAYS: i64 = 14;

const DAY_S: i64 = 86_400;

/// Where a certificate stands in its validity period at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Before its `notBefore`.
    NotYet { from: Timestamp },
    /// After its `notAfter`.
    Expired { on: Timestamp },
    /// Valid, but for less than [`WARN_DAYS`] more.
    EndsSoon { on: Timestamp, days_left: i64 },
    /// Valid for [`WARN_DAYS`] or more.
    Valid,
}

/// Where a certificate valid from `not_before` to `not_after` stands at `now`.
pub fn validity(not_before: Timestamp, not_after: Timestamp, now: Timestamp) -> Validity {
    if now < not_before {
        return Validity::NotYet { from: not_before };
    }
    if now > not_after {
        return Validity::Expired { on: not_after };
    }
    let left = not_after.as_second() - now.as_second();
    if left < WARN_DAYS * DAY_S {
        Validity::EndsSoon {
            on: not_after,
            days_left: left / DAY_S,
        }
    } else {
        Validity::Valid
    }
}

/// A date as the messages show it: `2020-01-01 00:00:00 UTC`.
pub fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// "in 3 days", "in 1 day", "in less than a day".
fn in_days(days: i64) -> String {
    match days {
        i64::MIN..=0 => "in less than a day".to_owned(),
        1 => "in 1 day".to_owned(),
        n => format!("in {n} days"),
    }
}

/// An address a certificate must name, and the server that listens there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub ip: IpAddr,
    /// `instance `m`` or `sentinel `s1``.
    pub server: String,
    /// An `extra_bind` (a VIP): redisrepd does not connect there, clients may.
    pub extra: bool,
}

/// The addresses the servers of `host` (`None`: of every host) listen on, each once: each
/// instance's `bind` and `extra_bind`, each sentinel's `bind`.
pub fn addresses(group: &Group, host: Option<&str>) -> Vec<Named> {
    let on = |h: &str| host.is_none_or(|want| want == h);
    let mut out: Vec<Named> = Vec::new();
    let mut add = |ip: IpAddr, server: String, extra: bool| {
        // An address two servers share (other ports) is checked once, for the first.
        match out.iter_mut().find(|n| n.ip == ip) {
            Some(n) => n.extra &= extra,
            None => out.push(Named { ip, server, extra }),
        }
    };
    for inst in group.instances.iter().filter(|i| on(&i.host)) {
        add(inst.bind, format!("instance `{}`", inst.name), false);
        for ip in &inst.extra_bind {
            add(*ip, format!("instance `{}`, extra_bind", inst.name), true);
        }
    }
    for node in group.sentinel.iter().flat_map(|s| &s.nodes) {
        if on(&node.host) {
            add(node.bind, format!("sentinel `{}`", node.name), false);
        }
    }
    out
}

/// One certificate/key pair to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCheck {
    /// The host it is for (`None`: every host).
    pub host: Option<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// It must be here: this host's pair (or the one for every host). Another host's pair
    /// is checked when it is here and skipped when it is not.
    pub required: bool,
    /// What it must name: the addresses of the servers that present it.
    pub names: Vec<Named>,
}

impl PairCheck {
    /// The TOML key of its certificate: `tls.cert_file`, or `tls.cert_file.HOST`.
    pub fn cert_key(&self) -> String {
        key_name("tls.cert_file", self.host.as_deref())
    }

    /// The TOML key of its private key: `tls.key_file`, or `tls.key_file.HOST`.
    pub fn key_key(&self) -> String {
        key_name("tls.key_file", self.host.as_deref())
    }
}

fn key_name(field: &str, host: Option<&str>) -> String {
    match host {
        None => field.to_owned(),
        Some(h) => format!("{field}.{h}"),
    }
}

/// Every pair of `tls` to check on `this_host`, in file order.
pub fn pairs_to_check(group: &Group, tls: &Tls, this_host: &str) -> Vec<PairCheck> {
    match (&tls.cert_file, &tls.key_file) {
        (PerHost::Every(cert), PerHost::Every(key)) => vec![PairCheck {
            host: None,
            cert: cert.clone(),
            key: key.clone(),
            required: true,
            names: addresses(group, None),
        }],
        _ => tls
            .cert_file
            .all()
            .into_iter()
            .filter_map(|(host, cert)| {
                let host = host?;
                Some(PairCheck {
                    host: Some(host.to_owned()),
                    cert: cert.clone(),
                    key: tls.key_file.get(host)?.clone(),
                    required: host == this_host,
                    names: addresses(group, Some(host)),
                })
            })
            .collect(),
    }
}

/// The certificate files `host` uses, for the expiry metric and `status`: its own
/// certificate (when the file gives it one), then `ca_file`.
pub fn files_in_use(tls: &Tls, host: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = tls.cert_file.get(host).into_iter().cloned().collect();
    if !out.contains(&tls.ca_file) {
        out.push(tls.ca_file.clone());
    }
    out
}

/// What the certificate's extended key usage allows (absent extension: anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub server_auth: bool,
    pub client_auth: bool,
}

/// What can be wrong with a certificate or key, as the checks found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The file cannot be read (the OS's words).
    Unreadable(String),
    /// No PEM certificate in the file.
    NoCertificate,
    /// No PEM private key in the file.
    NoKey,
    /// The PEM or the certificate in it cannot be parsed (the parser's words).
    Malformed(String),
    /// The verifier does not reach `ca_file` from it.
    NotSignedBy { ca: PathBuf },
    /// Past its `notAfter`.
    Expired { on: Timestamp },
    /// Before its `notBefore`.
    NotValidYet { from: Timestamp },
    /// It does not name a server's address.
    DoesNotName { named: Named },
    /// Its extended key usage lacks serverAuth.
    NotForServers,
    /// Its extended key usage lacks clientAuth, and the servers ask clients for one.
    NotForClients { client_auth: ClientAuth },
    /// The key is not the certificate's.
    KeyMismatch { cert: PathBuf },
    /// Anything else the verifier refuses, in its words.
    Refused { ca: PathBuf, why: String },
    /// A certificate in `ca_file` the verifier cannot use as a root.
    BadRoot(String),
}

impl Fault {
    /// The message for `file`: what is wrong, and what to do.
    pub fn message(&self, file: &Path) -> String {
        let f = file.display();
        match self {
            Fault::Unreadable(e) => format!(
                "`{f}` cannot be read: {e}; give a readable PEM file (the daemon and `check` \
                 read it as the user they run as)"
            ),
            Fault::NoCertificate => format!(
                "`{f}` holds no certificate: give a PEM file with `-----BEGIN CERTIFICATE-----`"
            ),
            Fault::Malformed(e) => {
                format!("`{f}` cannot be parsed: {e}; give a PEM file as openssl writes it")
            }
            Fault::NoKey => format!(
                "`{f}` holds no private key: give an unencrypted PEM key (`PRIVATE KEY`, \
                 `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
            ),
            Fault::NotSignedBy { ca } => format!(
                "`{f}` is not signed by ca_file `{}`: give the certificate that CA issued, or \
                 the CA that issued it",
                ca.display()
            ),
            Fault::Expired { on } => {
                format!("`{f}` expired on {}: renew it", date(*on))
            }
            Fault::NotValidYet { from } => format!(
                "`{f}` is not valid yet (from {}): check this host's clock, or wait",
                date(*from)
            ),
            Fault::DoesNotName { named } => format!(
                "`{f}` does not name {} ({}): add IP:{} to its subjectAltName",
                named.ip, named.server, named.ip
            ),
            Fault::NotForServers => format!(
                "`{f}` is not for servers: its extendedKeyUsage lacks serverAuth; issue it with \
                 `extendedKeyUsage = serverAuth, clientAuth`"
            ),
            Fault::NotForClients { client_auth } => format!(
                "`{f}` is not for clients: its extendedKeyUsage lacks clientAuth, and with \
                 client_auth = \"{}\" replicas, sentinels and redisrepd present it as their \
                 client certificate; issue it with `extendedKeyUsage = serverAuth, \
                 clientAuth`, or set client_auth = \"no\"",
                client_auth.directive()
            ),
            Fault::KeyMismatch { cert } => format!(
                "`{f}` is not the key of `{}` (their public keys differ): give the key the \
                 certificate was issued for",
                cert.display()
            ),
            Fault::Refused { ca, why } => format!(
                "`{f}` does not verify against ca_file `{}`: {why}",
                ca.display()
            ),
            Fault::BadRoot(why) => format!(
                "`{f}` holds a certificate that cannot serve as a CA: {why}; give the CA's \
                 certificate in PEM"
            ),
        }
    }

    /// The fault as a [`Problem`] of `key`, about `file`.
    pub fn problem(&self, key: &str, file: &Path) -> Problem {
        Problem::new(None, key, self.message(file))
    }
}

/// The warning for a certificate that ends within [`WARN_DAYS`].
pub fn ends_soon(file: &Path, on: Timestamp, days_left: i64) -> String {
    format!(
        "`{}` expires on {}, {}: renew it, then `redisrepd reload`",
        file.display(),
        date(on),
        in_days(days_left)
    )
}

/// The warning for an `extra_bind` the certificate does not name: redisrepd never connects
/// there, but a client that does and verifies the name refuses the server.
pub fn extra_unnamed(file: &Path, named: &Named) -> String {
    format!(
        "`{}` does not name {} ({}): clients that connect there and verify the server's \
         name refuse it; add IP:{} to its subjectAltName",
        file.display(),
        named.ip,
        named.server,
        named.ip
    )
}

/// The addresses of `names` that `sans` (the certificate's IP subjectAltNames) lack.
pub fn unnamed<'a>(sans: &[IpAddr], names: &'a [Named]) -> Vec<&'a Named> {
    names.iter().filter(|n| !sans.contains(&n.ip)).collect()
}

/// The faults of a certificate's extended key usage for `tls` (`None`: no extension).
pub fn usage_faults(usage: Option<Usage>, client_auth: ClientAuth) -> Vec<Fault> {
    let Some(u) = usage else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if !u.server_auth {
        out.push(Fault::NotForServers);
    }
    if !u.client_auth && client_auth != ClientAuth::No {
        out.push(Fault::NotForClients { client_auth });
    }
    out
}

/// What a daemon says of one certificate file it uses (`status`): its end, or why it could
/// not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertExpiry {
    pub file: PathBuf,
    /// Its `notAfter` (for `ca_file`: the earliest of its certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    /// Why it could not be read or parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CertExpiry {
    /// Seconds from `now` until its end (negative: ended), when known.
    pub fn seconds_left(&self, now: Timestamp) -> Option<i64> {
        Some(self.not_after?.as_second() - now.as_second())
    }

    /// The line `status` prints for it, when it deserves one: ended, ending within
    /// [`WARN_DAYS`], or unreadable by the daemon of `host`.
    pub fn warning(&self, host: &str, now: Timestamp) -> Option<String> {
        let f = self.file.display();
        if let Some(e) = &self.error {
            return Some(format!(
                "host `{host}`: the daemon cannot read `{f}`: {e}; `redisrepd check` says more"
            ));
        }
        let on = self.not_after?;
        let left = self.seconds_left(now)?;
        if left < 0 {
            Some(format!(
                "host `{host}`: `{f}` expired on {}: renew it, then `redisrepd reload`",
                date(on)
            ))
        } else if left < WARN_DAYS * DAY_S {
            Some(format!(
                "host `{host}`: {}",
                ends_soon(&self.file, on, left / DAY_S)
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn group(tls: &str) -> Group {
        let text = format!(
            "[cluster]\nname = \"g\"\n{tls}\n\
             [[instance]]\nname = \"m\"\nhost = \"a\"\nbind = \"10.0.0.1\"\nport = 7000\n\
             extra_bind = [\"10.0.0.9\"]\n\
             [[instance]]\nname = \"r\"\nhost = \"b\"\nbind = \"10.0.0.2\"\nport = 7000\n\
             replica_of = \"m\"\n\
             [[instance]]\nname = \"r2\"\nhost = \"b\"\nbind = \"10.0.0.2\"\nport = 7001\n\
             replica_of = \"m\"\n"
        );
        crate::config::parse(&text, Path::new("/etc/g.toml"), Path::new("/etc"))
            .expect("valid")
            .group
    }

    const EVERY: &str =
        "[tls]\ncert_file = \"r.crt\"\nkey_file = \"r.key\"\nca_file = \"ca.crt\"\n";
    const PER_HOST: &str = "[tls]\ncert_file = { a = \"a.crt\", b = \"b.crt\" }\n\
         key_file = { a = \"a.key\", b = \"b.key\" }\nca_file = \"ca.crt\"\n";

    #[test]
    fn validity_at_each_side_of_the_period() {
        let (from, to) = (t("2026-01-01T00:00:00Z"), t("2026-12-31T00:00:00Z"));
        assert_eq!(
            validity(from, to, t("2025-12-31T23:59:59Z")),
            Validity::NotYet { from }
        );
        assert_eq!(
            validity(from, to, t("2027-01-01T00:00:00Z")),
            Validity::Expired { on: to }
        );
        assert_eq!(
            validity(from, to, t("2026-12-21T12:00:00Z")),
            Validity::EndsSoon {
                on: to,
                days_left: 9
            }
        );
        assert_eq!(
            validity(from, to, t("2026-12-30T23:00:00Z")),
            Validity::EndsSoon {
                on: to,
                days_left: 0
            }
        );
        // Exactly 14 days left is not yet a warning; a second less is.
        assert_eq!(
            validity(from, to, t("2026-12-17T00:00:00Z")),
            Validity::Valid
        );
        assert!(matches!(
            validity(from, to, t("2026-12-17T00:00:01Z")),
            Validity::EndsSoon { days_left: 13, .. }
        ));
    }

    #[test]
    fn one_pair_for_every_host_must_be_here_and_name_every_server() {
        let g = group(EVERY);
        let pairs = pairs_to_check(&g, g.tls.as_ref().unwrap(), "elsewhere");
        assert_eq!(pairs.len(), 1);
        let p = &pairs[0];
        assert!(p.required);
        assert_eq!(
            (p.cert_key(), p.key_key()),
            ("tls.cert_file".into(), "tls.key_file".into())
        );
        let ips: Vec<(String, &str, bool)> = p
            .names
            .iter()
            .map(|n| (n.ip.to_string(), n.server.as_str(), n.extra))
            .collect();
        assert_eq!(
            ips,
            [
                ("10.0.0.1".into(), "instance `m`", false),
                ("10.0.0.9".into(), "instance `m`, extra_bind", true),
                ("10.0.0.2".into(), "instance `r`", false),
            ]
        );
    }

    #[test]
    fn a_pair_per_host_names_its_own_hosts_servers_and_only_this_hosts_is_required() {
        let g = group(PER_HOST);
        let pairs = pairs_to_check(&g, g.tls.as_ref().unwrap(), "b");
        let seen: Vec<(Option<&str>, bool, usize, String)> = pairs
            .iter()
            .map(|p| (p.host.as_deref(), p.required, p.names.len(), p.cert_key()))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("a"), false, 2, "tls.cert_file.a".into()),
                (Some("b"), true, 1, "tls.cert_file.b".into()),
            ]
        );
        assert_eq!(pairs[1].key, PathBuf::from("/etc/b.key"));
    }

    #[test]
    fn sentinels_are_named_too() {
        let text = format!(
            "{EVERY}[sentinel]\nquorum = 1\nnodes = [{{ name = \"s1\", host = \"b\", \
             bind = \"10.0.0.3\", port = 26379 }}]\n"
        );
        let g = group(&text);
        let names = addresses(&g, Some("b"));
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[1].server, "sentinel `s1`");
    }

    #[test]
    fn files_in_use_are_this_hosts_certificate_and_the_ca() {
        let g = group(PER_HOST);
        let tls = g.tls.as_ref().unwrap();
        assert_eq!(
            files_in_use(tls, "a"),
            [PathBuf::from("/etc/a.crt"), PathBuf::from("/etc/ca.crt")]
        );
        assert_eq!(files_in_use(tls, "z"), [PathBuf::from("/etc/ca.crt")]);
    }

    #[test]
    fn messages_name_the_file_and_say_what_to_do() {
        let file = Path::new("/etc/r.crt");
        let named = Named {
            ip: "10.0.0.1".parse().unwrap(),
            server: "instance `m`".into(),
            extra: false,
        };
        let cases = [
            (
                Fault::NotSignedBy {
                    ca: "/etc/ca.crt".into(),
                },
                "`/etc/r.crt` is not signed by ca_file `/etc/ca.crt`",
            ),
            (
                Fault::Expired {
                    on: t("2020-01-01T00:00:00Z"),
                },
                "`/etc/r.crt` expired on 2020-01-01 00:00:00 UTC: renew it",
            ),
            (
                Fault::NotValidYet {
                    from: t("2030-01-01T00:00:00Z"),
                },
                "`/etc/r.crt` is not valid yet (from 2030-01-01 00:00:00 UTC)",
            ),
            (
                Fault::DoesNotName { named },
                "`/etc/r.crt` does not name 10.0.0.1 (instance `m`): add IP:10.0.0.1 to its \
                 subjectAltName",
            ),
        ];
        for (fault, want) in cases {
            let p = fault.problem("tls.cert_file", file).to_string();
            assert!(p.starts_with("key `tls.cert_file`: "), "{p}");
            assert!(p.contains(want), "{p}");
        }
        assert_eq!(
            ends_soon(file, t("2026-12-31T00:00:00Z"), 1),
            "`/etc/r.crt` expires on 2026-12-31 00:00:00 UTC, in 1 day: renew it, then \
             `redisrepd reload`"
        );
    }

    #[test]
    fn names_missing_from_the_san_list() {
        let names = [
            Named {
                ip: "10.0.0.1".parse().unwrap(),
                server: "instance `m`".into(),
                extra: false,
            },
            Named {
                ip: "::1".parse().unwrap(),
                server: "instance `r`".into(),
                extra: false,
            },
        ];
        let sans = ["10.0.0.1".parse().unwrap()];
        let missing = unnamed(&sans, &names);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].server, "instance `r`");
    }

    #[test]
    fn usage_must_allow_servers_and_clients_when_they_present_it() {
        let only_server = Some(Usage {
            server_auth: true,
            client_auth: false,
        });
        assert_eq!(usage_faults(None, ClientAuth::Yes), []);
        assert_eq!(usage_faults(only_server, ClientAuth::No), []);
        assert_eq!(
            usage_faults(only_server, ClientAuth::Optional),
            [Fault::NotForClients {
                client_auth: ClientAuth::Optional
            }]
        );
        let only_client = Some(Usage {
            server_auth: false,
            client_auth: true,
        });
        assert_eq!(
            usage_faults(only_client, ClientAuth::Yes),
            [Fault::NotForServers]
        );
    }

    #[test]
    fn status_warns_under_fourteen_days_and_when_unreadable() {
        let now = t("2026-12-01T00:00:00Z");
        let e = |not_after: &str| CertExpiry {
            file: "/etc/r.crt".into(),
            not_after: Some(t(not_after)),
            error: None,
        };
        assert_eq!(e("2027-01-01T00:00:00Z").warning("a", now), None);
        let soon = e("2026-12-06T00:00:00Z");
        assert_eq!(soon.seconds_left(now), Some(5 * DAY_S));
        let w = soon.warning("a", now).unwrap();
        assert!(
            w.starts_with("host `a`: `/etc/r.crt` expires on 2026-12-06 00:00:00 UTC, in 5 days"),
            "{w}"
        );
        let w = e("2026-11-01T00:00:00Z").warning("a", now).unwrap();
        assert!(w.contains("expired on 2026-11-01"), "{w}");
        let unreadable = CertExpiry {
            file: "/etc/r.crt".into(),
            not_after: None,
            error: Some("Permission denied".into()),
        };
        assert!(
            unreadable
                .warning("a", now)
                .unwrap()
                .contains("cannot read `/etc/r.crt`: Permission denied")
        );
        // The JSON leaves out what is unknown.
        let json = serde_json::to_value(e("2027-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"file": "/etc/r.crt", "not_after": "2027-01-01T00:00:00Z"})
        );
    }
}
