//! TLS for test connections: what a test client trusts and presents ([`TlsFiles`]), and a
//! throw-away PKI made with the real `openssl` command ([`Pki`]), so that the servers see
//! certificates like an operator's, not ones a library made up.
//!
//! The commands are the ones docs/security.md ("TLS setup") shows, run in the PKI's
//! directory with relative names; keep the two alike.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fs_net::chmod;

/// What a test client needs for TLS: the CA it verifies the server against and, when the
/// server asks for one, the certificate and key it presents.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate (PEM) the server's certificate must chain to.
    pub ca: PathBuf,
    /// A client certificate and its key (PEM); `None` presents none.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// A CA and the certificates it signed, in one directory: `ca.crt`/`ca.key`, and per
/// issued name `<name>.crt`/`<name>.key` (keys mode 0600).
#[derive(Clone, Debug)]
pub struct Pki {
    /// The directory holding every file.
    pub dir: PathBuf,
}

/// How long the test certificates are valid: long enough for any test run, short enough
/// that a leftover is useless.
const DAYS: &str = "2";

impl Pki {
    /// Creates `dir` (if needed) and a CA in it (`ca.crt`, `ca.key`).
    ///
    /// ```text
    /// openssl req -x509 -new -nodes -newkey rsa:2048 -days 2 \
    ///   -subj "/CN=redisrepd test CA" -keyout ca.key -out ca.crt
    /// ```
    pub fn create(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {dir:?}: {e}"));
        let pki = Pki {
            dir: dir.to_owned(),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            DAYS,
            "-subj",
            "/CN=redisrepd test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        chmod(&pki.path("ca.key"), 0o600);
        pki
    }

    /// Issues `<name>.crt` and `<name>.key`, signed by the CA, for `ips` (IP
    /// subjectAltNames: clients check the address they dialled) and `localhost`, usable by
    /// a server and, for replication and Sentinel's links, as a client. Returns (cert,
    /// key).
    ///
    /// ```text
    /// cat > redis.ext <<'END'
    /// basicConstraints = CA:FALSE
    /// keyUsage = digitalSignature, keyEncipherment
    /// extendedKeyUsage = serverAuth, clientAuth
    /// subjectAltName = IP:127.0.0.1, IP:10.0.0.1, DNS:localhost
    /// END
    /// openssl req -new -nodes -newkey rsa:2048 -subj "/CN=redis" \
    ///   -keyout redis.key -out redis.csr
    /// openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    ///   -days 2 -extfile redis.ext -out redis.crt
    /// ```
    pub fn issue(&self, name: &str, ips: &[IpAddr]) -> (PathBuf, PathBuf) {
        let sans: Vec<String> = ips
            .iter()
            .map(|ip| format!("IP:{ip}"))
            .chain(["DNS:localhost".to_owned()])
            .collect();
        let ext = format!(
            "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth, clientAuth\nsubjectAltName = {}\n",
            sans.join(", ")
        );
        let (crt, key, csr, ext_file) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        std::fs::write(self.path(&ext_file), ext)
            .unwrap_or_else(|e| panic!("writing {:?}: {e}", self.path(&ext_file)));
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        chmod(&self.path(&key), 0o600);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            DAYS,
            "-extfile",
            &ext_file,
            "-out",
            &crt,
        ]);
        (self.path(&crt), self.path(&key))
    }

    /// A file of the PKI.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A client that trusts this CA and presents `<name>.crt` (issued before).
    pub fn client(&self, name: &str) -> TlsFiles {
        TlsFiles {
            ca: self.ca(),
            client: Some((
                self.path(&format!("{name}.crt")),
                self.path(&format!("{name}.key")),
            )),
        }
    }

    /// A client that trusts this CA and presents no certificate.
    pub fn anonymous(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca(),
            client: None,
        }
    }

    /// Runs `openssl ARGS` in the PKI's directory; panics with its output when it fails
    /// (or is not installed).
    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `openssl` ({e}): the TLS tests make their certificates with \
                     it; install it with `sudo apt-get install openssl`"
                )
            });
        assert!(
            out.status.success(),
            "openssl {} in {:?} failed ({}):\n{}",
            args.join(" "),
            self.dir,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
