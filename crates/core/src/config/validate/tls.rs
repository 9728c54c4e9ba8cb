//! `[tls]`: the certificate and key (one pair, or one per host), the CA, `client_auth`.
//!
//! Only the file's own rules live here; whether the files are readable, match, are signed
//! by the CA and are still valid is `redisrepd_io::tls_files`'s check (it reads them).

use std::path::PathBuf;

use super::Validator;
use crate::config::model::{ClientAuth, Instance, PerHost, SentinelNode, Tls};
use crate::config::raw;

impl Validator {
    pub(super) fn tls(
        &mut self,
        raw: raw::RawTls,
        instances: &[Instance],
        sentinels: &[SentinelNode],
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Tls {
        // Every host that runs a server presents a certificate.
        let mut hosts: Vec<&str> = Vec::new();
        for h in instances
            .iter()
            .map(|i| i.host.as_str())
            .chain(sentinels.iter().map(|s| s.host.as_str()))
        {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        let cert_file = self.per_host("tls.cert_file", raw.cert_file, &hosts, resolve);
        let key_file = self.per_host("tls.key_file", raw.key_file, &hosts, resolve);
        if matches!(cert_file, PerHost::Every(_)) != matches!(key_file, PerHost::Every(_)) {
            self.error(
                None,
                "tls.key_file",
                "is laid out unlike `cert_file`: write both as one path for every host, or \
                 both as a table per host",
            );
        }
        let client_auth = match raw.client_auth.as_deref() {
            None | Some("yes") => ClientAuth::Yes,
            Some("optional") => ClientAuth::Optional,
            Some("no") => ClientAuth::No,
            Some(other) => {
                self.error(
                    None,
                    "tls.client_auth",
                    format!("`{other}` is not one of \"yes\", \"optional\", \"no\""),
                );
                ClientAuth::Yes
            }
        };
        Tls {
            cert_file,
            key_file,
            ca_file: resolve(raw.ca_file),
            client_auth,
            contents: None,
        }
    }

    fn per_host(
        &mut self,
        key: &str,
        raw: raw::PerHostPath,
        hosts: &[&str],
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> PerHost {
        match raw {
            raw::PerHostPath::Every(p) => PerHost::Every(resolve(p)),
            raw::PerHostPath::PerHost(table) => {
                for (host, _) in &table {
                    if !hosts.contains(&host.as_str()) {
                        self.error(
                            None,
                            key,
                            format!(
                                "host `{host}` runs no instance or sentinel (hosts: {}): fix \
                                 the name or remove it",
                                hosts.join(", ")
                            ),
                        );
                    }
                }
                for host in hosts {
                    if !table.iter().any(|(h, _)| h == host) {
                        self.error(
                            None,
                            key,
                            format!(
                                "no path for host `{host}`, which runs servers: add `{host} = \
                                 \"PATH\"` to the table, or write one path for every host"
                            ),
                        );
                    }
                }
                PerHost::PerHost(table.into_iter().map(|(h, p)| (h, resolve(p))).collect())
            }
        }
    }
}
