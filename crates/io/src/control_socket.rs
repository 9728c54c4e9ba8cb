//! The control socket's wire: one JSON request line from a client, one JSON response line
//! back (the messages are [`redisrepd_core::control`]'s, shared by both sides).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use redisrepd_core::control::{MAX_REQUEST_BYTES, Request, Response};

/// Sends one request and waits for the answer (operations can take as long as a rolling
/// restart, so there is no read timeout).
pub fn call(socket: &Path, request: &Request) -> io::Result<Response> {
    let mut stream = UnixStream::connect(socket)?;
    let mut line = serde_json::to_string(request).map_err(io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        ));
    }
    serde_json::from_str(&reply).map_err(io::Error::other)
}

/// Reads one request line from a client: at most [`MAX_REQUEST_BYTES`], within `timeout`
/// for the whole line (a client that trickles bytes is cut off as one that sends none).
/// Anything after the newline is ignored: one request per connection.
pub fn read_request(mut stream: &UnixStream, timeout: Duration) -> Result<Request, String> {
    let deadline = Instant::now() + timeout;
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no request within the time limit".to_owned());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let end = buf[..n].iter().position(|b| *b == b'\n');
                line.extend_from_slice(&buf[..end.unwrap_or(n)]);
                if line.len() as u64 > MAX_REQUEST_BYTES {
                    return Err(format!(
                        "request longer than {MAX_REQUEST_BYTES} bytes: refused"
                    ));
                }
                if end.is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no request within the time limit".to_owned());
            }
            Err(e) => return Err(format!("cannot read the request: {e}")),
        }
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty request".to_owned());
    }
    serde_json::from_slice(&line).map_err(|e| format!("malformed request: {e}"))
}

/// Writes one response line.
pub fn write_response(mut stream: &UnixStream, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_string(response).map_err(io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_must_arrive_whole_within_the_timeout() {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            // One byte every 20 ms, never a newline: each read gets data in time.
            for _ in 0..100 {
                if (&a).write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let started = Instant::now();
        let err = read_request(&b, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("time limit"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        drop(b);
        writer.join().unwrap();
    }

    #[test]
    fn oversized_and_empty_requests_are_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = (&a).write_all(&vec![b'x'; MAX_REQUEST_BYTES as usize + 1]);
        });
        let err = read_request(&b, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        drop(b);
        writer.join().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"  \n{\"op\":\"status\"}\n").unwrap();
        let err = read_request(&b, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("empty request"), "{err}");
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"{\"op\":\"status\"}\nleftover").unwrap();
        assert_eq!(
            read_request(&b, Duration::from_secs(5)),
            Ok(Request::Status)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"{\"op\":\"explode\"}\n").unwrap();
        let err = read_request(&b, Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("malformed"), "{err}");
    }
}
