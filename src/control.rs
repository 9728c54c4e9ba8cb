//! The control protocol between the CLI and a daemon: one JSON request per line on a Unix
//! socket, one JSON response line back. Shared by both sides so they cannot drift apart.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backup::BackupStatus;
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
    /// Planned switchover to `to` (default: the most up-to-date replica of the master).
    Failover { to: Option<String>, force: bool },
    /// The master is gone: make `instance` the master.
    Promote { instance: String, force: bool },
    /// Maintenance pause for `for_ms` milliseconds: nothing automatic until then.
    Pause { for_ms: u64 },
    /// End the maintenance pause.
    Resume,
    /// The changes of master this daemon recorded.
    History,
    /// Take a backup on `instance` (run by this daemon) into `to` (default `[backup] dir`).
    Backup {
        instance: String,
        to: Option<PathBuf>,
    },
    /// Report this daemon's backups.
    BackupStatus,
    /// Replace the data of this host's instances, which must all be stopped: set every
    /// data file aside (`*.before-restore`) and give the snapshot `file` to `master` when
    /// this daemon runs it.
    Restore { file: PathBuf, master: String },
}

/// What a daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// The operation ended; `lines` say what happened, in order; `failed` are the indices
    /// of the lines that say what failed (the client prints them as errors).
    Done {
        ok: bool,
        lines: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<usize>,
    },
    /// The daemon's view of its instances.
    Status {
        host: String,
        instances: Vec<InstanceStatus>,
        /// How long this daemon's maintenance pause still holds (absent: not paused).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paused_for_ms: Option<u64>,
        /// The daemon's HTTP listener (`[http] listen`), when it has one.
        #[serde(default)]
        http: Option<crate::status::HttpEndpoint>,
    },
    /// The changes of master a daemon recorded, oldest first.
    History {
        host: String,
        changes: Vec<crate::changes::Change>,
    },
    /// This daemon's backups.
    Backup { status: BackupStatus },
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
            Request::History,
            Request::Backup {
                instance: "r1".into(),
                to: Some("/b".into()),
            },
            Request::BackupStatus,
            Request::Restore {
                file: "/b/x.rdb".into(),
                master: "m".into(),
            },
        ] {
            let text = serde_json::to_string(&req).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        }
        let resp = Response::Done {
            ok: false,
            lines: vec!["x".into(), "y".into()],
            failed: vec![1],
        };
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), resp);
        let resp = Response::History {
            host: "a".into(),
            changes: vec![crate::changes::Change {
                time: jiff::Timestamp::UNIX_EPOCH,
                old_master: "m".into(),
                new_master: "r1".into(),
                reason: crate::changes::Reason::Failover,
                repl_id: None,
                seen_by: vec!["a".into()],
            }],
        };
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), resp);
    }

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
