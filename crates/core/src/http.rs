//! HTTP/1.1 request heads and replies for the daemon's listener (`[http] listen`): what a
//! request asks and how an answer is written. Pure; the serving is
//! `redisrepd_io::http_server`.

use std::fmt::Write as _;

/// The largest request head read; a longer one gets 431.
pub const MAX_REQUEST: usize = 8 * 1024;

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
}
