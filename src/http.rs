//! The daemon's HTTP listener (`[http] listen`, `daemon --metrics`): serves `/metrics` and
//! the health endpoints over plain HTTP/1.1, one request per connection.
//!
//! Theory of operation. One thread binds the address and accepts; each connection gets a
//! short thread of its own (at most [`MAX_CONNECTIONS`] at once; past that a connection is
//! answered 503 at once), so a slow scrape or a silent client never holds up a load
//! balancer's check. Every connection is bounded by [`CLIENT_TIMEOUT`] and its request head
//! by [`MAX_REQUEST`]. What to answer is the caller's [`Handler`]: a function of the
//! request that must not wait on the supervisor loop for long (the daemon's reads a view
//! the supervisor published; `/metrics` asks the supervisor with a bounded wait).
//!
//! An address that cannot be bound does not stop the daemon: the error is logged, kept in
//! [`ListenState`] (which `status` shows) and the bind is tried again every
//! [`REBIND_EVERY`].

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a client may take to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request head read; a longer one gets 431.
const MAX_REQUEST: usize = 8 * 1024;

/// Connections served at once; more are answered 503 without a thread.
pub const MAX_CONNECTIONS: usize = 64;

/// How often an address that could not be bound is tried again.
pub const REBIND_EVERY: Duration = Duration::from_secs(5);

/// One request: method and target split into path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
}

impl Request {
    /// `HEAD` asks for the headers only.
    pub fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// e.g. `200 OK`.
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: the headers only.
    pub head_only: bool,
}

impl Reply {
    /// A plain-text answer (a newline is added).
    pub fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
            head_only: false,
        }
    }

    /// A JSON answer with status `code` (a newline is added).
    pub fn json(code: u16, body: &str) -> Reply {
        Reply {
            status: status_line(code),
            content_type: "application/json",
            body: format!("{body}\n"),
            head_only: false,
        }
    }

    /// The whole HTTP/1.1 response.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        let _ = write!(
            out,
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        let mut bytes = out.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

fn status_line(code: u16) -> &'static str {
    match code {
        200 => "200 OK",
        400 => "400 Bad Request",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        431 => "431 Request Header Fields Too Large",
        _ => "503 Service Unavailable",
    }
}

/// Parses a request head (up to and including the blank line). `Ok(None)`: not complete
/// yet.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Request>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(target)) = (req.method, req.path) else {
                return Err("bad request line".into());
            };
            let target = target.split('#').next().unwrap_or(target);
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q.to_owned())),
                None => (target, None),
            };
            Ok(Some(Request {
                method: method.to_owned(),
                path: path.to_owned(),
                query,
            }))
        }
        Err(e) => Err(format!("bad request: {e}")),
    }
}

/// Answers one request. Called on the connection's own thread.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// Where the listener listens, and why it does not when it cannot (for `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenState {
    pub address: SocketAddr,
    /// `None` while it listens; the bind error while it does not.
    pub error: Option<String>,
}

/// Shared between the listener thread and the supervisor (which shows it in `status`).
pub type SharedListenState = Arc<Mutex<ListenState>>;

/// Starts the listener for `addr` on a thread named `http`: binds (again every
/// [`REBIND_EVERY`] while it cannot, logging the error once) and serves with `handler`.
pub fn spawn(addr: SocketAddr, handler: Handler) -> io::Result<SharedListenState> {
    let state = Arc::new(Mutex::new(ListenState {
        address: addr,
        error: Some("not bound yet".into()),
    }));
    let shared = state.clone();
    std::thread::Builder::new()
        .name("http".to_owned())
        .spawn(move || {
            let mut logged: Option<String> = None;
            let listener = loop {
                match TcpListener::bind(addr) {
                    Ok(l) => break l,
                    Err(e) => {
                        let why = format!(
                            "cannot listen on {addr}: {e} (`[http] listen` or --metrics; \
                             trying again every {} s)",
                            REBIND_EVERY.as_secs()
                        );
                        if logged.as_ref() != Some(&why) {
                            tracing::error!("{why}");
                            logged = Some(why.clone());
                        }
                        if let Ok(mut s) = shared.lock() {
                            s.error = Some(why);
                        }
                        std::thread::sleep(REBIND_EVERY);
                    }
                }
            };
            tracing::info!(%addr, "serving /metrics and the health endpoints over HTTP");
            if let Ok(mut s) = shared.lock() {
                s.error = None;
            }
            serve(listener, CLIENT_TIMEOUT, handler);
        })?;
    Ok(state)
}

/// Accepts forever, a thread per connection (at most [`MAX_CONNECTIONS`]).
pub fn serve(listener: TcpListener, timeout: Duration, handler: Handler) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                    let busy =
                        Reply::json(503, r#"{"ok":false,"reason":"too many requests at once"}"#);
                    let _ = (&stream).write_all(&busy.to_bytes());
                    continue;
                }
                let (mine, handler) = (active.clone(), handler.clone());
                let spawned = std::thread::Builder::new()
                    .name("http-client".to_owned())
                    .spawn(move || {
                        if let Err(e) = handle(stream, timeout, &*handler) {
                            tracing::debug!("http client: {e}");
                        }
                        mine.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            // E.g. EMFILE: the next accept may succeed; do not spin.
            Err(e) => {
                tracing::warn!("http: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// One connection: read the request head within `timeout`, answer, close.
fn handle(
    mut stream: TcpStream,
    timeout: Duration,
    handler: &(dyn Fn(&Request) -> Reply + Send + Sync),
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let reply = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(()); // closed before a whole request
        }
        head.extend_from_slice(&buf[..n]);
        match parse_head(&head) {
            Ok(Some(req)) => {
                let mut reply = handler(&req);
                reply.head_only = req.head_only();
                break reply;
            }
            Ok(None) if head.len() > MAX_REQUEST => {
                break Reply::text("431 Request Header Fields Too Large", "request too large");
            }
            Ok(None) => {}
            Err(e) => break Reply::text("400 Bad Request", &e),
        }
    };
    stream.write_all(&reply.to_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_into_path_and_query() {
        let r = parse_head(b"GET /replica/r1?max_lag=10 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/replica/r1");
        assert_eq!(r.query.as_deref(), Some("max_lag=10"));
        assert_eq!(parse_head(b"GET /x HTTP/1.1\r\nHost:").unwrap(), None);
        assert!(parse_head(b"\x01\x02 nonsense\r\n\r\n").is_err());
        let r = parse_head(b"HEAD /metrics#frag HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.head_only());
        assert_eq!((r.path.as_str(), r.query), ("/metrics", None));
    }

    #[test]
    fn replies_carry_length_and_close() {
        let r = Reply::json(503, r#"{"ok":false}"#);
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 13\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"ok\":false}\n"), "{text}");
        let head = Reply {
            head_only: true,
            ..r
        };
        assert!(
            String::from_utf8(head.to_bytes())
                .unwrap()
                .ends_with("\r\n\r\n")
        );
    }

    fn fetch(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Silent clients hold no one up: each connection has its own thread.
    #[test]
    fn a_silent_client_does_not_hold_up_the_others() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(|r: &Request| Reply::text("200 OK", &r.path));
        std::thread::spawn(move || serve(listener, Duration::from_secs(30), handler));
        let _silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let started = Instant::now();
        let out = fetch(addr, "GET /hello HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("/hello\n"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let bad = fetch(addr, "\x01 x\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
    }

    #[test]
    fn an_address_in_use_is_reported_not_fatal() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let state = spawn(addr, Arc::new(|_: &Request| Reply::text("200 OK", ""))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let e = state.lock().unwrap().error.clone().unwrap_or_default();
            if e.contains("cannot listen on") {
                assert!(
                    e.contains(&addr.to_string()) && e.contains("[http] listen"),
                    "{e}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "no bind error recorded: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
