//! `[tls]`'s files on this host: readable, a CA, a key that is the certificate's, a
//! certificate the CA signed that is valid now and names every address its servers listen
//! on. `check`, `reload` and the daemon's start refuse a file that fails ([`verify`]);
//! `status` and the metrics show how long each certificate has left ([`expiries`]).
//!
//! Theory of operation. [`check_files`] reads each file once and verifies the certificate as
//! redisrepd's own connections will (`redis_io::open_client`): rustls's
//! `WebPkiServerVerifier` with a root store from `ca_file`, at each server's `bind` as an
//! IP address. The verifier stops at its first objection, so what it cannot tell (the
//! dates, the names when the chain already failed, the extended key usage) is read with
//! x509-parser. The judgements and the words are the core's (`redisrepd_core::tls`).
//! [`verify`] then asks the configured server to load each pair that passed
//! (`server_check::ask_server_tls`): only it knows whether it was built with TLS and
//! whether OpenSSL takes the key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};

use redisrepd_core::config::{ConfigError, Group, Problem, Tls};
use redisrepd_core::tls::{self as judge, CertExpiry, Fault, Named, PairCheck, Usage, Validity};

/// What [`check_files`] found.
#[derive(Debug, Default)]
pub struct Findings {
    /// What must be fixed before the file is used.
    pub errors: Vec<Problem>,
    /// What should be fixed soon (a certificate near its end, a key others can read).
    pub warnings: Vec<Problem>,
    /// The pairs readable here that passed: the ones to ask the server about.
    pub sound: Vec<PairCheck>,
    /// Errors raised, each time (two pairs of the same files raise the same error, which is
    /// said once).
    raised: usize,
}

impl Findings {
    fn error(&mut self, key: &str, file: &Path, fault: Fault) {
        self.raised += 1;
        let p = fault.problem(key, file);
        if !self.errors.contains(&p) {
            self.errors.push(p);
        }
    }

    fn warn(&mut self, key: &str, message: String) {
        let p = Problem::new(None, key, message);
        if !self.warnings.contains(&p) {
            self.warnings.push(p);
        }
    }
}

impl Findings {
    /// Every error as one [`ConfigError`] naming `config_path`; `Ok` when there is none.
    pub fn refusal(&self, config_path: &Path) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(ConfigError {
            file: config_path.to_owned(),
            problems: self.errors.iter().map(ToString::to_string).collect(),
        })
    }
}

/// The whole TLS check of `group` on `this_host`: the files, then, when `server` is given,
/// its verdict on each pair that passed (a server that could not be asked is a warning).
/// Nothing without `[tls]`.
pub fn verify(group: &Group, this_host: &str, server: Option<&Path>) -> Findings {
    let Some(tls) = &group.tls else {
        return Findings::default();
    };
    let mut found = check_files(group, this_host, Timestamp::now());
    if let Some(server) = server {
        match crate::server_check::ask_server_tls(tls, &found.sound, server) {
            Ok(problems) => found.errors.extend(problems),
            Err(why) => found.warnings.push(Problem::new(
                None,
                "tls",
                format!(
                    "`{}` was not asked whether it loads the certificates: {why}",
                    server.display()
                ),
            )),
        }
    }
    found
}

/// Checks the files of `group`'s `[tls]` as they are on `this_host` at `now`: `ca_file`,
/// then each pair (another host's pair only when it is here).
pub fn check_files(group: &Group, this_host: &str, now: Timestamp) -> Findings {
    let mut found = Findings::default();
    let Some(tls) = &group.tls else {
        return found;
    };
    let verifier = check_ca(tls, now, &mut found);
    for pair in judge::pairs_to_check(group, tls, this_host) {
        if check_pair(tls, &pair, verifier.as_ref(), now, &mut found) {
            found.sound.push(pair);
        }
    }
    found
}

/// Reads `ca_file` and judges its certificates' dates; the verifier built on it, when it
/// holds a usable root.
fn check_ca(tls: &Tls, now: Timestamp, found: &mut Findings) -> Option<Arc<WebPkiServerVerifier>> {
    const KEY: &str = "tls.ca_file";
    let ca = &tls.ca_file;
    let certs = match read_certs(ca) {
        Ok(certs) => certs,
        Err(fault) => {
            found.error(KEY, ca, fault);
            return None;
        }
    };
    let mut roots = RootCertStore::empty();
    for der in &certs {
        match parse(der) {
            Ok(facts) => judge_dates(KEY, ca, &facts, now, found),
            Err(fault) => found.error(KEY, ca, fault),
        }
        if let Err(e) = roots.add(der.clone()) {
            found.error(KEY, ca, Fault::BadRoot(e.to_string()));
        }
    }
    if roots.is_empty() {
        return None;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .inspect_err(|e| found.error(KEY, ca, Fault::BadRoot(e.to_string())))
        .ok()
}

/// Checks one pair; whether it is here and passed.
fn check_pair(
    tls: &Tls,
    pair: &PairCheck,
    verifier: Option<&Arc<WebPkiServerVerifier>>,
    now: Timestamp,
    found: &mut Findings,
) -> bool {
    let (cert_key, key_key) = (pair.cert_key(), pair.key_key());
    let raised_before = found.raised;
    // Another host's pair need not be here (each host usually holds only its own key).
    if !pair.required && (!pair.cert.exists() || std::fs::File::open(&pair.key).is_err()) {
        return false;
    }
    let chain =
        read_certs(&pair.cert).inspect_err(|f| found.error(&cert_key, &pair.cert, f.clone()));
    let key = read_key(&pair.key).inspect_err(|f| found.error(&key_key, &pair.key, f.clone()));
    if let Some(mode) = loose_mode(&pair.key) {
        found.warn(
            &key_key,
            format!(
                "`{}` is readable by others (mode {mode:o}): run `chmod o-rwx {}`",
                pair.key.display(),
                pair.key.display()
            ),
        );
    }
    let Ok(chain) = chain else {
        return false;
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    let facts = match parse(leaf) {
        Ok(facts) => facts,
        Err(fault) => {
            found.error(&cert_key, &pair.cert, fault);
            return false;
        }
    };
    judge_dates(&cert_key, &pair.cert, &facts, now, found);
    for fault in judge::usage_faults(facts.usage, tls.client_auth) {
        found.error(&cert_key, &pair.cert, fault);
    }
    if let Ok(key) = key
        && keys_differ(leaf, key)
    {
        found.error(
            &key_key,
            &pair.key,
            Fault::KeyMismatch {
                cert: pair.cert.clone(),
            },
        );
    }
    let (extras, binds): (Vec<&Named>, Vec<&Named>) = pair.names.iter().partition(|n| n.extra);
    let mut names_known = false;
    if let Some(verifier) = verifier {
        names_known = true;
        let at = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(now.as_second()).unwrap_or(0),
        ));
        for named in &binds {
            let name = ServerName::IpAddress(named.ip.into());
            let Err(e) = verifier.verify_server_cert(leaf, intermediates, &name, &[], at) else {
                continue;
            };
            let fault = fault_of(&e, &tls.ca_file, named);
            let chain_failed = !matches!(fault, Fault::DoesNotName { .. });
            found.error(&cert_key, &pair.cert, fault);
            if chain_failed {
                // The verifier stopped before the names: read them from the certificate.
                names_known = false;
                break;
            }
        }
    }
    if !names_known {
        let binds: Vec<Named> = binds.iter().map(|n| (*n).clone()).collect();
        for named in judge::unnamed(&facts.ips, &binds) {
            let fault = Fault::DoesNotName {
                named: named.clone(),
            };
            found.error(&cert_key, &pair.cert, fault);
        }
    }
    let extras: Vec<Named> = extras.into_iter().cloned().collect();
    for named in judge::unnamed(&facts.ips, &extras) {
        found.warn(&cert_key, judge::extra_unnamed(&pair.cert, named));
    }
    found.raised == raised_before
}

/// The `notAfter` of every certificate file `host` uses (its own certificate and
/// `ca_file`; for a file of several, the earliest), or why it cannot be read: what the
/// metric and `status` show. Read afresh at each call, so a renewed file shows at once.
pub fn expiries(tls: &Tls, host: &str) -> Vec<CertExpiry> {
    judge::files_in_use(tls, host)
        .into_iter()
        .map(|file| {
            let earliest = read_certs(&file).and_then(|certs| {
                certs
                    .iter()
                    .map(|c| parse(c).map(|f| f.not_after))
                    .try_fold(None, |min: Option<Timestamp>, t| {
                        t.map(|t| Some(min.map_or(t, |m| m.min(t))))
                    })
            });
            match earliest {
                Ok(not_after) => CertExpiry {
                    file,
                    not_after,
                    error: None,
                },
                Err(fault) => CertExpiry {
                    error: Some(fault_words(&fault)),
                    file,
                    not_after: None,
                },
            }
        })
        .collect()
}

/// A fault's words without the file's name (the caller names it).
fn fault_words(fault: &Fault) -> String {
    match fault {
        Fault::Unreadable(e) | Fault::Malformed(e) => e.clone(),
        Fault::NoCertificate => "it holds no certificate".to_owned(),
        other => other.message(Path::new("the file")),
    }
}

/// The provider redisrepd's connections use (ring, the only one built in).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, Fault> {
    std::fs::read(path).map_err(|e| Fault::Unreadable(e.to_string()))
}

/// The PEM certificates of `path`, in order; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Fault> {
    let bytes = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| Fault::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(Fault::NoCertificate);
    }
    Ok(certs)
}

/// The PEM private key of `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Fault> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Fault::NoKey,
        other => Fault::Malformed(other.to_string()),
    })
}

/// The mode of `path` when others may read it.
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let mode = std::fs::metadata(path).ok()?.mode() & 0o777;
    (mode & 0o007 != 0).then_some(mode)
}

/// Whether `key` is surely not `leaf`'s. A key ring cannot load (RSA-PSS, P-521) is left
/// to the server, which loads it with OpenSSL (`server_check::ask_server_tls`).
fn keys_differ(leaf: &CertificateDer<'static>, key: PrivateKeyDer<'static>) -> bool {
    let Ok(signing) = provider().key_provider.load_private_key(key) else {
        return false;
    };
    let certified = rustls::sign::CertifiedKey::new(vec![leaf.clone()], signing);
    matches!(
        certified.keys_match(),
        Err(rustls::Error::InconsistentKeys(
            rustls::InconsistentKeys::KeyMismatch
        ))
    )
}

/// What x509-parser reads of a certificate.
struct Facts {
    not_before: Timestamp,
    not_after: Timestamp,
    /// Its IP subjectAltNames.
    ips: Vec<IpAddr>,
    usage: Option<Usage>,
}

fn parse(der: &CertificateDer<'_>) -> Result<Facts, Fault> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Fault::Malformed(format!("not an X.509 certificate ({e})")))?;
    let time = |t: &x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp())
            .map_err(|e| Fault::Malformed(format!("a date out of range ({e})")))
    };
    let validity = cert.validity();
    let ips = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::IPAddress(b) => ip_of(b),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let usage = cert.extended_key_usage().ok().flatten().map(|eku| Usage {
        server_auth: eku.value.server_auth || eku.value.any,
        client_auth: eku.value.client_auth || eku.value.any,
    });
    Ok(Facts {
        not_before: time(&validity.not_before)?,
        not_after: time(&validity.not_after)?,
        ips,
        usage,
    })
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
        _ => None,
    }
}

/// Errors for a certificate out of its validity period, a warning for one near its end.
fn judge_dates(key: &str, file: &Path, facts: &Facts, now: Timestamp, found: &mut Findings) {
    match judge::validity(facts.not_before, facts.not_after, now) {
        Validity::NotYet { from } => found.error(key, file, Fault::NotValidYet { from }),
        Validity::Expired { on } => found.error(key, file, Fault::Expired { on }),
        Validity::EndsSoon { on, days_left } => {
            found.warn(key, judge::ends_soon(file, on, days_left));
        }
        Validity::Valid => {}
    }
}

/// The verifier's objection in the core's words, for the server at `named`.
fn fault_of(e: &rustls::Error, ca: &Path, named: &Named) -> Fault {
    let when = |t: &UnixTime| {
        Timestamp::from_second(i64::try_from(t.as_secs()).unwrap_or(i64::MAX)).unwrap_or_default()
    };
    let refused = || Fault::Refused {
        ca: ca.to_owned(),
        why: e.to_string(),
    };
    let rustls::Error::InvalidCertificate(ce) = e else {
        return refused();
    };
    match ce {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            Fault::NotSignedBy { ca: ca.to_owned() }
        }
        CertificateError::ExpiredContext { not_after, .. } => Fault::Expired {
            on: when(not_after),
        },
        CertificateError::NotValidYetContext { not_before, .. } => Fault::NotValidYet {
            from: when(not_before),
        },
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Fault::DoesNotName {
                named: named.clone(),
            }
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            Fault::NotForServers
        }
        _ => refused(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs openssl in `dir` (the tests make their certificates with it).
    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    /// A CA and a certificate it signed for 30 days, naming 10.0.0.1, with `ext` as its
    /// extensions file (beside the SAN).
    fn pki(ext: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=ca",
        ]);
        openssl(d, &ca);
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", "r.key", "-out", "r.csr", "-subj", "/CN=r"]);
        openssl(d, &req);
        std::fs::write(
            d.join("r.ext"),
            format!("subjectAltName = IP:10.0.0.1\n{ext}"),
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "r.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "r.crt",
                "-days",
                "30",
                "-extfile",
                "r.ext",
            ],
        );
        dir
    }

    fn group(dir: &Path, extra_bind: &str, client_auth: &str) -> Group {
        let text = format!(
            "[cluster]\nname = \"g\"\n[tls]\ncert_file = \"r.crt\"\nkey_file = \"r.key\"\n\
             ca_file = \"ca.crt\"\nclient_auth = \"{client_auth}\"\n\
             [[instance]]\nname = \"m\"\nhost = \"h\"\nbind = \"10.0.0.1\"\nport = 7000\n\
             extra_bind = [{extra_bind}]\n"
        );
        redisrepd_core::config::parse(&text, &dir.join("g.toml"), dir)
            .expect("valid")
            .group
    }

    fn texts(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_pair_passes_and_its_dates_are_judged_at_now() {
        let dir = pki("");
        let g = group(dir.path(), "", "yes");
        let now = Timestamp::now();
        let found = check_files(&g, "h", now);
        assert_eq!(texts(&found.errors), Vec::<String>::new());
        assert_eq!(texts(&found.warnings), Vec::<String>::new());
        assert_eq!(found.sound.len(), 1);

        // 20 days and an hour on: 9 full days left, a warning.
        let later = now + jiff::SignedDuration::from_hours(20 * 24 + 1);
        let found = check_files(&g, "h", later);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let w = texts(&found.warnings).join("\n");
        assert!(
            w.contains("key `tls.cert_file`: `") && w.contains("in 9 days"),
            "{w}"
        );

        // A year on: expired, said once (the verifier says it too).
        let found = check_files(&g, "h", now + jiff::SignedDuration::from_hours(365 * 24));
        let e = texts(&found.errors);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("expired on "), "{e:?}");
        assert!(found.sound.is_empty());

        // Before it was made: not valid yet (the CA neither).
        let found = check_files(&g, "h", now - jiff::SignedDuration::from_hours(24));
        let e = texts(&found.errors).join("\n");
        assert!(
            e.contains("key `tls.cert_file`: `") && e.contains("is not valid yet"),
            "{e}"
        );
        assert!(
            e.contains("key `tls.ca_file`: `") && e.contains("is not valid yet"),
            "{e}"
        );
    }

    #[test]
    fn an_extra_bind_the_certificate_does_not_name_is_a_warning() {
        let dir = pki("");
        let g = group(dir.path(), "\"10.0.0.9\"", "yes");
        let found = check_files(&g, "h", Timestamp::now());
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let w = texts(&found.warnings).join("\n");
        assert!(
            w.contains("does not name 10.0.0.9 (instance `m`, extra_bind): clients that connect"),
            "{w}"
        );
    }

    #[test]
    fn a_server_only_certificate_is_refused_when_clients_present_it() {
        let dir = pki("extendedKeyUsage = serverAuth\n");
        let found = check_files(&group(dir.path(), "", "no"), "h", Timestamp::now());
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let found = check_files(&group(dir.path(), "", "yes"), "h", Timestamp::now());
        let e = texts(&found.errors).join("\n");
        assert!(
            e.contains("is not for clients: its extendedKeyUsage lacks clientAuth"),
            "{e}"
        );

        let dir = pki("extendedKeyUsage = clientAuth\n");
        let found = check_files(&group(dir.path(), "", "no"), "h", Timestamp::now());
        let e = texts(&found.errors).join("\n");
        assert!(e.contains("is not for servers"), "{e}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_and_a_loose_key_are_named() {
        let dir = pki("");
        std::fs::write(dir.path().join("ca.crt"), "not a certificate\n").unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
        std::fs::set_permissions(dir.path().join("r.key"), mode).unwrap();
        let found = check_files(&group(dir.path(), "", "yes"), "h", Timestamp::now());
        let e = texts(&found.errors).join("\n");
        assert!(
            e.contains("key `tls.ca_file`: `") && e.contains("holds no certificate"),
            "{e}"
        );
        let w = texts(&found.warnings).join("\n");
        assert!(
            w.contains("is readable by others (mode 644): run `chmod o-rwx"),
            "{w}"
        );
    }

    #[test]
    fn expiries_read_this_hosts_certificate_and_the_ca() {
        let dir = pki("");
        let g = group(dir.path(), "", "yes");
        let tls = g.tls.as_ref().unwrap();
        let now = Timestamp::now();
        let e = expiries(tls, "h");
        assert_eq!(e.len(), 2);
        let days = |c: &CertExpiry| c.seconds_left(now).unwrap() / 86_400;
        assert!((29..=30).contains(&days(&e[0])), "{e:?}");
        assert!(days(&e[1]) > 3000, "{e:?}");
        std::fs::remove_file(dir.path().join("r.crt")).unwrap();
        let e = expiries(tls, "h");
        assert_eq!(e[0].not_after, None);
        assert!(
            e[0].error.as_deref().unwrap().contains("No such file"),
            "{e:?}"
        );
    }
}
