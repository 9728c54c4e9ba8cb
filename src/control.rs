//! The control protocol between the CLI and a daemon: one JSON request per line on a Unix
//! socket, one JSON response line back. Shared by both sides so they cannot drift apart.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::status::InstanceStatus;

/// The longest request line a daemon reads; anything longer is cut off.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// What a client asks of a daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Start these instances (empty: all of this host's).
    Start { instances: Vec<String> },
    /// Stop these instances (empty: all of this host's).
    Stop { instances: Vec<String>, force: bool },
    /// Restart these instances one at a time (empty: all of this host's).
    Restart { instances: Vec<String>, force: bool },
    /// Report every local instance.
    Status,
    /// Re-read the TOML and apply the difference.
    Reload,
}

/// What a daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// The operation ended; `lines` say what happened, in order.
    Done { ok: bool, lines: Vec<String> },
    /// The daemon's view of its instances.
    Status {
        host: String,
        instances: Vec<InstanceStatus>,
    },
    /// The request was not understood or cannot be carried out.
    Error { message: String },
}

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

/// Reads one request line from a client: at most [`MAX_REQUEST_BYTES`], within `timeout`.
pub fn read_request(stream: &UnixStream, timeout: Duration) -> Result<Request, String> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST_BYTES + 1));
    match reader.read_line(&mut line) {
        Ok(_) if line.len() as u64 > MAX_REQUEST_BYTES => Err(format!(
            "request longer than {MAX_REQUEST_BYTES} bytes: refused"
        )),
        Ok(0) => Err("empty request".to_owned()),
        Ok(_) => {
            serde_json::from_str(line.trim_end()).map_err(|e| format!("malformed request: {e}"))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err("no request within the time limit".to_owned())
        }
        Err(e) => Err(format!("cannot read the request: {e}")),
    }
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
    fn requests_and_responses_round_trip() {
        for req in [
            Request::Start {
                instances: vec!["a".into()],
            },
            Request::Stop {
                instances: vec![],
                force: true,
            },
            Request::Restart {
                instances: vec!["a".into(), "b".into()],
                force: false,
            },
            Request::Status,
            Request::Reload,
        ] {
            let text = serde_json::to_string(&req).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        }
        let resp = Response::Done {
            ok: true,
            lines: vec!["x".into()],
        };
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), resp);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"{\"op\":\"explode\"}\n").unwrap();
        let err = read_request(&b, Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("malformed"), "{err}");
    }
}
