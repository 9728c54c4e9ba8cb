//! A small synchronous Redis client: connecting with timeouts (AUTH, TLS), PING, INFO,
//! CONFIG GET, ROLE, and finding the master among a group's instances.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use redis::IntoConnectionInfo;

use crate::tls::TlsFiles;

/// How long one Redis call of [`connect`] may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `addr`, with AUTH when `password` is given, with 5 s connect/read/write
/// timeouts.
pub fn connect(addr: SocketAddr, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    connect_with(addr, password, TIMEOUT, TIMEOUT)
}

/// Connects to `addr` (AUTH when `password` is given) within `timeout`, then `io` as its
/// read and write timeout (room for slow replies).
pub fn connect_with(
    addr: SocketAddr,
    password: Option<&str>,
    timeout: Duration,
    io: Duration,
) -> redis::RedisResult<redis::Connection> {
    connect_with_tls(addr, password, None, timeout, io)
}

/// [`connect`] over TLS: the server's certificate must chain to `tls.ca` and name
/// `addr`'s IP; `tls.client` is presented when set.
pub fn connect_tls(
    addr: SocketAddr,
    password: Option<&str>,
    tls: &TlsFiles,
) -> redis::RedisResult<redis::Connection> {
    connect_with_tls(addr, password, Some(tls), TIMEOUT, TIMEOUT)
}

/// [`connect_with`], over TLS when `tls` is given (see [`connect_tls`]). The files are read
/// at each connection.
pub fn connect_with_tls(
    addr: SocketAddr,
    password: Option<&str>,
    tls: Option<&TlsFiles>,
    timeout: Duration,
    io: Duration,
) -> redis::RedisResult<redis::Connection> {
    // Redis 7.0 has no CLIENT SETINFO: do not send it.
    let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    let client = match tls {
        None => {
            let info = redis::ConnectionAddr::Tcp(addr.ip().to_string(), addr.port())
                .into_connection_info()?
                .set_redis_settings(settings);
            redis::Client::open(info)?
        }
        Some(tls) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| {
                    redis::RedisError::from(std::io::Error::new(
                        e.kind(),
                        format!("reading {}: {e}", path.display()),
                    ))
                })
            };
            let client_tls = match &tls.client {
                Some((cert, key)) => Some(redis::ClientTlsConfig {
                    client_cert: read(cert)?,
                    client_key: read(key)?,
                }),
                None => None,
            };
            // The IP as the host: rustls then checks the certificate's IP subjectAltNames,
            // as redisrepd's own client does.
            let info = redis::ConnectionAddr::TcpTls {
                host: addr.ip().to_string(),
                port: addr.port(),
                insecure: false,
                tls_params: None,
            }
            .into_connection_info()?
            .set_redis_settings(settings);
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls,
                    root_cert: Some(read(&tls.ca)?),
                },
            )?
        }
    };
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(io))?;
    con.set_write_timeout(Some(io))?;
    Ok(con)
}

/// [`connect_with`], then `CLIENT SETNAME name` (within `timeout`): a bench names its
/// connections as the daemon names its own, so that a demoted master's client drop treats
/// both alike. A server that refuses the name (an ACL without CLIENT) still serves the
/// connection; one that did not answer in time does not (a late reply would be taken for
/// the next command's).
pub fn connect_named(
    addr: SocketAddr,
    password: Option<&str>,
    timeout: Duration,
    io: Duration,
    name: &str,
) -> redis::RedisResult<redis::Connection> {
    let mut con = connect_with(addr, password, timeout, timeout)?;
    match redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query::<()>(&mut con)
    {
        Err(e) if e.code().is_none() => return Err(e),
        _ => {}
    }
    con.set_read_timeout(Some(io))?;
    con.set_write_timeout(Some(io))?;
    Ok(con)
}

/// Connects (with AUTH when `password` is given) and expects PONG to a PING.
pub fn ping(addr: SocketAddr, password: Option<&str>) -> redis::RedisResult<()> {
    ping_with(addr, password, None)
}

/// [`ping`], over TLS when `tls` is given.
pub fn ping_with(
    addr: SocketAddr,
    password: Option<&str>,
    tls: Option<&TlsFiles>,
) -> redis::RedisResult<()> {
    let mut con = connect_with_tls(addr, password, tls, TIMEOUT, TIMEOUT)?;
    let pong: String = redis::cmd("PING").query(&mut con)?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "PING answered",
            pong,
        )))
    }
}

/// The text of `INFO section`.
pub fn info_text(con: &mut redis::Connection, section: &str) -> redis::RedisResult<String> {
    redis::cmd("INFO").arg(section).query(con)
}

/// One INFO section as `field -> value`.
pub fn info(
    con: &mut redis::Connection,
    section: &str,
) -> redis::RedisResult<HashMap<String, String>> {
    Ok(parse_info(&info_text(con, section)?))
}

/// INFO text as `field -> value` (section headers and blank lines dropped).
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim_end().to_owned()))
        .collect()
}

/// A numeric INFO field, 0 when absent or not a number.
pub fn info_int(info: &HashMap<String, String>, field: &str) -> i64 {
    info.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The value of one setting, as CONFIG GET returns it.
pub fn config_get(con: &mut redis::Connection, key: &str) -> redis::RedisResult<String> {
    let mut pair: HashMap<String, String> = redis::cmd("CONFIG").arg("GET").arg(key).query(con)?;
    Ok(pair.remove(key).unwrap_or_default())
}

/// The first word of `ROLE` (`master`, `slave`, `sentinel`).
pub fn role(con: &mut redis::Connection) -> redis::RedisResult<String> {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(con)?;
    match reply.first() {
        Some(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "ROLE without a role",
        ))),
    }
}

/// A connection (made by `connect`) to the first of `addrs` whose ROLE is `master`, as a
/// client that discovers its master finds it; `None` when none answers as one.
pub fn connect_master(
    addrs: &[SocketAddr],
    mut connect: impl FnMut(SocketAddr) -> redis::RedisResult<redis::Connection>,
) -> Option<redis::Connection> {
    addrs.iter().find_map(|&addr| {
        let mut con = connect(addr).ok()?;
        (role(&mut con).ok()? == "master").then_some(con)
    })
}

/// How a failed command reads in a table: the error code (`READONLY`, `LOADING`, ...),
/// `timeout` or `connection`.
pub fn error_kind(e: &redis::RedisError) -> String {
    match e.code() {
        Some(code) => code.to_owned(),
        None if e.is_timeout() => "timeout".to_owned(),
        None if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            "connection".to_owned()
        }
        None => e.to_string(),
    }
}
