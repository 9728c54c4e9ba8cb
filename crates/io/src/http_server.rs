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

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redisrepd_core::http::{MAX_REQUEST, Reply, Request, parse_head};

/// The longest a client may take to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more are answered 503 without a thread.
pub const MAX_CONNECTIONS: usize = 64;

/// How often an address that could not be bound is tried again.
pub const REBIND_EVERY: Duration = Duration::from_secs(5);

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
