//! Who listens on a port: the kernel's socket tables and the processes holding them,
//! read from /proc.

use std::io;
use std::net::IpAddr;
use std::path::Path;

/// Whether something already listens on `bind:port`.
pub fn port_in_use(bind: IpAddr, port: u16) -> bool {
    matches!(
        std::net::TcpListener::bind((bind, port)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse
    )
}

/// The TCP sockets listening in this network namespace, from /proc/net/tcp{,6}: read
/// once for several look-ups (the tables list every connection too, tens of thousands on a
/// busy host, and take a while to read).
pub struct Listeners(Vec<(String, String)>);

impl Listeners {
    /// Reads both tables, keeping the listening sockets (local address, inode).
    pub fn read() -> Listeners {
        let mut found = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if let (Some(local), Some(&"0A"), Some(inode)) = (f.get(1), f.get(3), f.get(9)) {
                    found.push(((*local).to_owned(), (*inode).to_owned()));
                }
            }
        }
        Listeners(found)
    }

    /// The inodes (as `socket:[N]`, what `/proc/PID/fd/*` link to) of those listening on
    /// `bind:port` or on `port` of every address.
    pub(super) fn inodes(&self, bind: IpAddr, port: u16) -> Vec<String> {
        self.0
            .iter()
            .filter(|(local, _)| blocks(local, bind, port))
            .map(|(_, inode)| format!("socket:[{inode}]"))
            .collect()
    }
}

/// The process listening on TCP `bind:port` (or on `port` of every address), as
/// "pid N (command)", found through /proc. Listeners on the same port of another address
/// are not it: on a host with several addresses they are often our own instances.
pub fn port_holder(bind: IpAddr, port: u16) -> Option<String> {
    let inodes = Listeners::read().inodes(bind, port);
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if holds_socket(pid, &inodes) == Some(true) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim()));
        }
    }
    Some("another process".to_owned())
}

/// Whether a listener at `local` (as /proc/net/tcp{,6} print it: hex address, colon, hex
/// port) keeps a server from binding `bind:port`.
fn blocks(local: &str, bind: IpAddr, port: u16) -> bool {
    let Some((addr, p)) = local.rsplit_once(':') else {
        return false;
    };
    if u16::from_str_radix(p, 16).ok() != Some(port) {
        return false;
    }
    match proc_net_addr(addr) {
        Some(ip) => ip == bind || ip.is_unspecified() || ip.to_canonical() == bind,
        None => true, // unparsable: rather name a holder than none
    }
}

/// An address from /proc/net/tcp{,6}: the kernel prints each 32-bit word of the address
/// (network byte order in memory) as a native-endian hex number.
fn proc_net_addr(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| {
            hex.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| u32::from_be(*w).to_be_bytes())
        .collect();
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether `pid` has one of the sockets `inodes` open; `None` when some of its file
/// descriptors cannot be read and none of those read is one.
pub(super) fn holds_socket(pid: u32, inodes: &[String]) -> Option<bool> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut unreadable = false;
    for fd in fds.flatten() {
        match std::fs::read_link(fd.path()) {
            Ok(target) if inodes.iter().any(|i| Path::new(i) == target) => return Some(true),
            Ok(_) => {}
            Err(_) => unreadable = true,
        }
    }
    (!unreadable).then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_are_read_in_network_order() {
        let v4 = if cfg!(target_endian = "little") {
            "0100007F"
        } else {
            "7F000001"
        };
        assert_eq!(proc_net_addr(v4), "127.0.0.1".parse().ok());
        assert_eq!(proc_net_addr("00000000"), "0.0.0.0".parse().ok());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(blocks(&format!("{v4}:1A0B"), here, 0x1A0B));
        assert!(
            !blocks(&format!("{v4}:1A0B"), other, 0x1A0B),
            "another address"
        );
        assert!(!blocks(&format!("{v4}:1A0C"), here, 0x1A0B), "another port");
        assert!(
            blocks("00000000:1A0B", other, 0x1A0B),
            "0.0.0.0 takes every address"
        );
        assert!(blocks(
            "00000000000000000000000000000000:1A0B",
            other,
            0x1A0B
        ));
    }

    #[test]
    fn port_holder_finds_our_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(port_in_use("127.0.0.1".parse().unwrap(), port));
        let holder = port_holder("127.0.0.1".parse().unwrap(), port).unwrap();
        assert!(holder.contains(&std::process::id().to_string()), "{holder}");
    }
}
