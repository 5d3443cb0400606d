//! Request heads: the request line and the header fields (RFC 9112 sections 2 to 5), and what
//! they say about the body that follows (section 6.3).
//!
//! appman-package-server fork: this replaces tiny_http's `client.rs` parser. The head is read
//! line by line here, bounded (line lengths, header count and bytes; bare CRs refused), then
//! tokenized by `httparse`, the fuzzed parser hyper and most Rust HTTP software rely on (methods
//! and field names as tokens, the single spaces of the request line, the version, the colon).
//! Our rules sit on top of it: targets of visible ASCII in origin or absolute form, values of
//! visible ASCII (httparse also takes obs-text), obsolete line folding named as such, and
//! everything that could make two parsers disagree about where a body ends is refused rather
//! than guessed at: `Transfer-Encoding` together with `Content-Length`, differing or
//! list-valued `Content-Length`s, transfer codings other than `chunked`.

use crate::common::{HTTPVersion, Header, Method};
use std::io::{self, BufRead};

/// Longest request line (method, target, version).
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// Longest header line.
pub const MAX_HEADER_LINE: usize = 64 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 256;
/// Most bytes of header fields in one request.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;
/// Empty lines tolerated before a request line (RFC 9112 2.2 says to ignore at least one).
const MAX_LEADING_EMPTY_LINES: usize = 4;

/// A parsed request line and its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request target in origin form (`/path?query`), or `*`.
    pub target: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
}

/// Why a request head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// The connection ended before a request started: close without an answer.
    Closed,
    /// Reading failed (a timeout, a reset, or the end of the stream inside the head).
    Io(io::Error),
    /// The head breaks the syntax: 400.
    Malformed(&'static str),
    /// The request line (414) or the header fields (431) exceed a limit.
    TooLarge(u16),
}

impl HeadError {
    /// The status to answer with before closing, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            HeadError::Closed => None,
            HeadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => Some(408),
            HeadError::Io(_) => None,
            HeadError::Malformed(_) => Some(400),
            HeadError::TooLarge(status) => Some(*status),
        }
    }
}

impl From<LineError> for HeadError {
    fn from(error: LineError) -> HeadError {
        match error {
            LineError::Io(e) => HeadError::Io(e),
            LineError::TooLong => HeadError::Malformed("line too long"),
            LineError::BareCr => HeadError::Malformed("a bare CR in a line"),
        }
    }
}

/// Why one line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    Io(io::Error),
    TooLong,
    BareCr,
}

/// Read one line ending in LF (a CR before it is dropped; a CR anywhere else is refused) into
/// `line`, at most `limit` bytes without its end. The end of the stream is `UnexpectedEof`.
pub(crate) fn read_line(
    reader: &mut impl BufRead,
    limit: usize,
    line: &mut Vec<u8>,
) -> Result<(), LineError> {
    line.clear();
    loop {
        let buffer = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buffer.is_empty() {
            return Err(LineError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside a line",
            )));
        }
        let (take, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (at, true),
            None => (buffer.len(), false),
        };
        // One byte over the limit may be the CR of a CRLF.
        if line.len() + take > limit + 1 {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&buffer[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > limit {
        return Err(LineError::TooLong);
    }
    if line.contains(&b'\r') {
        return Err(LineError::BareCr);
    }
    Ok(())
}

/// Read a request head. `HeadError::Closed` when the stream ends before the request line.
pub fn read_head(reader: &mut impl BufRead) -> Result<RequestHead, HeadError> {
    let mut line = Vec::new();
    let mut empty_lines = 0;
    loop {
        match read_line(reader, MAX_REQUEST_LINE, &mut line) {
            Ok(()) => {}
            Err(LineError::Io(e))
                if e.kind() == io::ErrorKind::UnexpectedEof && line.is_empty() =>
            {
                return Err(HeadError::Closed);
            }
            Err(LineError::TooLong) => return Err(HeadError::TooLarge(414)),
            Err(e) => return Err(e.into()),
        }
        if !line.is_empty() {
            break;
        }
        empty_lines += 1;
        if empty_lines > MAX_LEADING_EMPTY_LINES {
            return Err(HeadError::Malformed(
                "empty lines instead of a request line",
            ));
        }
    }
    // The head as httparse reads it: the lines we took, each ending in CRLF.
    let mut raw = line.clone();
    raw.extend_from_slice(b"\r\n");
    let (mut fields, mut header_bytes) = (0, 0);
    loop {
        match read_line(reader, MAX_HEADER_LINE, &mut line) {
            Ok(()) => {}
            Err(LineError::TooLong) => return Err(HeadError::TooLarge(431)),
            Err(e) => return Err(e.into()),
        }
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HeadError::Malformed("obsolete line folding in a header"));
        }
        header_bytes += line.len();
        fields += 1;
        if fields > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
            return Err(HeadError::TooLarge(431));
        }
        raw.extend_from_slice(&line);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    parse(&raw, fields)
}

/// Tokenize a complete head (`raw`, with `fields` header fields) with httparse, then apply our
/// rules to what it found.
fn parse(raw: &[u8], fields: usize) -> Result<RequestHead, HeadError> {
    let mut slots = vec![httparse::EMPTY_HEADER; fields];
    let mut request = httparse::Request::new(&mut slots);
    match request.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        // We gave it the whole head: incomplete means malformed.
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("the request head is incomplete"));
        }
        Err(error) => return Err(HeadError::Malformed(describe(error))),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed("the request head is incomplete"));
    };
    if !target.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(HeadError::Malformed(
            "the request target is not visible ASCII",
        ));
    }
    let mut headers = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        if !field
            .value
            .iter()
            .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b))
        {
            return Err(HeadError::Malformed(
                "a header value that is not visible ASCII",
            ));
        }
        let value = String::from_utf8_lossy(field.value);
        headers.push(Header::new(field.name, value.trim_matches([' ', '\t'])));
    }
    Ok(RequestHead {
        method: Method::from_token(method),
        target: origin_form(target.to_string())?,
        version: HTTPVersion(1, minor),
        headers,
    })
}

/// What httparse found wrong, in words.
fn describe(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "a header name that is not a token",
        httparse::Error::HeaderValue => "a header value that is not visible ASCII",
        httparse::Error::NewLine => "a line that does not end in CRLF",
        httparse::Error::Status => "a malformed status",
        httparse::Error::Token => "the request line is not 'method target version'",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "the HTTP version is not 1.0 or 1.1",
    }
}

/// The origin form of a target: as it is, or the path and query of an absolute form.
fn origin_form(target: String) -> Result<String, HeadError> {
    if target.starts_with('/') || target == "*" {
        return Ok(target);
    }
    let lower = target.to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        if lower.starts_with(scheme) {
            let rest = &target[scheme.len()..];
            return Ok(match rest.find(['/', '?']) {
                Some(at) if rest.as_bytes()[at] == b'/' => rest[at..].to_string(),
                Some(at) => format!("/{}", &rest[at..]),
                None => "/".to_string(),
            });
        }
    }
    Err(HeadError::Malformed("the request target is not a path"))
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// Why the framing of a body cannot be trusted; the connection closes after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// 400: contradictory or malformed framing.
    Malformed(&'static str),
    /// 501: a transfer coding we do not implement.
    Unsupported(String),
}

impl FramingError {
    pub fn status(&self) -> u16 {
        match self {
            FramingError::Malformed(_) => 400,
            FramingError::Unsupported(_) => 501,
        }
    }
}

/// An `Expect` other than `100-continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownExpectation;

impl RequestHead {
    /// The values of every header called `name`, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.is(name))
            .map(|h| h.value.as_str())
    }

    /// The comma-separated elements of every header called `name`, trimmed, empty ones left
    /// out (RFC 9110 5.6.1).
    fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name)
            .flat_map(|v| v.split(','))
            .map(|e| e.trim_matches([' ', '\t']))
            .filter(|e| !e.is_empty())
    }

    /// The body's framing, per RFC 9112 6.3, refusing whatever is ambiguous.
    pub fn framing(&self) -> Result<Framing, FramingError> {
        // RFC 9112 3.2: two Hosts are as ambiguous as two lengths.
        if self.values("Host").nth(1).is_some() {
            return Err(FramingError::Malformed("more than one Host"));
        }
        let has_transfer_encoding = self.values("Transfer-Encoding").next().is_some();
        let has_content_length = self.values("Content-Length").next().is_some();
        if has_transfer_encoding {
            if has_content_length {
                return Err(FramingError::Malformed(
                    "Transfer-Encoding together with Content-Length",
                ));
            }
            if self.version < HTTPVersion(1, 1) {
                return Err(FramingError::Malformed(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            let codings: Vec<&str> = self.list("Transfer-Encoding").collect();
            return match codings.as_slice() {
                [coding] if coding.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
                [] => Err(FramingError::Malformed("an empty Transfer-Encoding")),
                _ => Err(FramingError::Unsupported(codings.join(", "))),
            };
        }
        let mut length = None;
        for value in self.values("Content-Length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FramingError::Malformed(
                    "a Content-Length that is not one number",
                ));
            }
            let n: u64 = value
                .parse()
                .map_err(|_| FramingError::Malformed("a Content-Length too large"))?;
            if length.is_some_and(|l| l != n) {
                return Err(FramingError::Malformed("differing Content-Length headers"));
            }
            length = Some(n);
        }
        Ok(match length {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        })
    }

    /// Whether the client waits for `100 Continue` before sending its body; an error for an
    /// expectation we cannot meet (417).
    pub fn expects_continue(&self) -> Result<bool, UnknownExpectation> {
        let mut expects = false;
        for element in self.list("Expect") {
            if element.eq_ignore_ascii_case("100-continue") {
                expects = true;
            } else {
                return Err(UnknownExpectation);
            }
        }
        Ok(expects && self.version >= HTTPVersion(1, 1))
    }

    /// Whether the client allows another request on this connection (RFC 9112 9.3).
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.list("Connection")
                .any(|t| t.eq_ignore_ascii_case(token))
        };
        if has("close") {
            return false;
        }
        self.version >= HTTPVersion(1, 1) || has("keep-alive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<RequestHead, HeadError> {
        read_head(&mut text.as_bytes())
    }

    fn framing(headers: &str) -> Result<Framing, FramingError> {
        head(&format!("PUT / HTTP/1.1\r\n{headers}\r\n"))
            .unwrap()
            .framing()
    }

    #[test]
    fn reads_a_request_head() {
        let h =
            head("GET /hello?x=1 HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Pad: \t v \r\n\r\n").unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.target, "/hello?x=1");
        assert_eq!(h.version, HTTPVersion(1, 1));
        assert_eq!(h.values("x-pad").collect::<Vec<_>>(), ["v"]);
        assert_eq!(h.values("X-Empty").collect::<Vec<_>>(), [""]);
        assert_eq!(head("\r\nGET / HTTP/1.0\n\n").unwrap().target, "/");
        assert_eq!(
            head("GET http://h:1/a?b HTTP/1.1\r\n\r\n").unwrap().target,
            "/a?b"
        );
        assert_eq!(
            head("GET http://h?b HTTP/1.1\r\n\r\n").unwrap().target,
            "/?b"
        );
        assert!(matches!(head(""), Err(HeadError::Closed)));
    }

    #[test]
    fn refuses_malformed_heads() {
        for bad in [
            "GET /hello\r\n\r\n",
            "GET  /hello HTTP/1.1\r\n\r\n",
            "GET /hello HTTP/2.0\r\n\r\n",
            "GET /he llo HTTP/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET hello HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nX : y\r\n\r\n",
            "GET / HTTP/1.1\r\nX: y\r\n z\r\n\r\n",
            "GET / HTTP/1.1\r\nX: \x7f\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nnocolon\r\n\r\n",
            "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(head(bad), Err(HeadError::Malformed(_))),
                "{bad:?}: {:?}",
                head(bad)
            );
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert!(matches!(head(&long), Err(HeadError::TooLarge(414))));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(head(&many), Err(HeadError::TooLarge(431))));
        let cut = head("GET / HTTP/1.1\r\nHost: a\r\n");
        assert!(matches!(cut, Err(HeadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof));
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        assert_eq!(framing(""), Ok(Framing::Empty));
        assert_eq!(framing("Content-Length: 0\r\n"), Ok(Framing::Empty));
        assert_eq!(framing("Content-Length: 41\r\n"), Ok(Framing::Length(41)));
        assert_eq!(
            framing("Content-Length: 41\r\nContent-Length: 41\r\n"),
            Ok(Framing::Length(41))
        );
        assert_eq!(
            framing("Transfer-Encoding: Chunked\r\n"),
            Ok(Framing::Chunked)
        );
        for malformed in [
            "Content-Length: 41, 41\r\n",
            "Content-Length: 41\r\nContent-Length: 42\r\n",
            "Content-Length: +41\r\n",
            "Content-Length: -1\r\n",
            "Content-Length:\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Content-Length: 4 1\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: ,\r\n",
            "Host: a\r\nHost: b\r\n",
        ] {
            assert!(
                matches!(framing(malformed), Err(FramingError::Malformed(_))),
                "{malformed:?}"
            );
        }
        for unsupported in [
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\n",
        ] {
            assert!(
                matches!(framing(unsupported), Err(FramingError::Unsupported(_))),
                "{unsupported:?}"
            );
        }
        let old = head("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(old.framing().is_err());
    }

    #[test]
    fn reads_connection_and_expect() {
        let h = |t: &str| head(t).unwrap();
        assert!(h("GET / HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!h("GET / HTTP/1.1\r\nConnection: x, Close\r\n\r\n").keep_alive());
        assert!(!h("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(h("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive());
        assert_eq!(
            h("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expects_continue(),
            Ok(true)
        );
        assert_eq!(h("PUT / HTTP/1.1\r\n\r\n").expects_continue(), Ok(false));
        assert!(
            h("PUT / HTTP/1.1\r\nExpect: magic\r\n\r\n")
                .expects_continue()
                .is_err()
        );
    }

    #[test]
    fn every_visible_ascii_target_is_still_taken() {
        let target: String = (0x21u8..=0x7e)
            .map(char::from)
            .filter(|c| *c != '#')
            .collect();
        let text = format!("GET /{target} HTTP/1.1\r\nX-Obs: caf\u{e9}\r\n\r\n");
        // A non-ASCII value is still refused (httparse alone would take obs-text).
        assert!(matches!(
            read_head(&mut text.as_bytes()),
            Err(HeadError::Malformed(_))
        ));
        let text = format!("GET /{target} HTTP/1.1\r\n\r\n");
        let head = read_head(&mut text.as_bytes()).unwrap();
        assert_eq!(head.target, format!("/{target}"));
    }
}
