/*!
HTTP: our own request and response types (`routes` is plain functions over them, testable
without sockets), and the server that feeds them from tiny_http's connection threads
(`server`).
*/

pub mod routes;
pub mod server;

use std::io::Read;
use std::sync::Arc;

/// Decoded request parameters, in order.
pub type Params = Vec<(String, String)>;

/// Split a request target into its path and decoded query parameters. Queries are
/// percent-decoded only, as Qt's server reads them: `+` is a plus (Qt clients build URLs with
/// `QUrlQuery`, which never encodes it). Malformed percent-encoding and parameters that are
/// not UTF-8 are refused (400), not guessed at.
pub fn parse_target(target: &str) -> Result<(&str, Params), String> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    check_encoding(query.as_bytes())?;
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|v| v.into_owned())
            .map_err(|_| "the parameters are not valid UTF-8".to_string())
    };
    let params = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect::<Result<Params, String>>()?;
    Ok((path, params))
}

/// Every `%` starts a two-digit hex escape, and the decoded bytes are UTF-8.
fn check_encoding(bytes: &[u8]) -> Result<(), String> {
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        let hex = rest.get(at + 1..at + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err("malformed percent-encoding in the parameters".into());
        }
        rest = &rest[at + 3..];
    }
    // Separators are ASCII, so the whole decodes as UTF-8 exactly when every part does.
    if percent_encoding::percent_decode(bytes)
        .decode_utf8()
        .is_err()
    {
        return Err("the parameters are not valid UTF-8".into());
    }
    Ok(())
}

/// Decode an `application/x-www-form-urlencoded` body (our extension for POST), strictly;
/// here `+` is a space, as the form encoding says.
pub fn parse_form(bytes: &[u8]) -> Result<Params, String> {
    check_encoding(bytes)?;
    Ok(form_urlencoded::parse(bytes).into_owned().collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Head,
    Other,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Head => "HEAD",
            Method::Other => "OTHER",
        }
    }
}

/// A request as the routes see it: method, path, decoded parameters, and the body.
pub struct Request<'a> {
    pub method: Method,
    pub path: String,
    /// Query parameters, then (for form POSTs) body parameters, in order.
    pub params: Params,
    pub content_length: Option<u64>,
    /// The client's address (`None` in tests without a socket).
    pub client: Option<std::net::SocketAddr>,
    pub body: &'a mut dyn Read,
}

impl Request<'_> {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of parameter `name`.
    pub fn non_empty_param(&self, name: &str) -> Option<&str> {
        self.param(name).filter(|v| !v.is_empty())
    }
}

impl Body {
    /// The bytes this body sends.
    pub fn length(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Shared(b) => b.len() as u64,
            Body::Reader { length, .. } => *length,
            Body::File {
                length,
                tail,
                range,
                ..
            } => match range {
                Some((first, last)) => last - first + 1,
                None => length + tail.len() as u64,
            },
        }
    }

    /// Only the bytes `first..=last` of this (whole) body.
    fn slice(self, first: u64, last: u64) -> Body {
        let bytes = |b: &[u8]| b[first as usize..=last as usize].to_vec();
        match self {
            Body::Empty => Body::Empty,
            Body::Bytes(b) => Body::Bytes(bytes(&b)),
            Body::Shared(b) => Body::Bytes(bytes(&b)),
            Body::Reader { reader, skip, .. } => Body::Reader {
                reader,
                length: last - first + 1,
                skip: skip + first,
            },
            Body::File {
                file, length, tail, ..
            } => Body::File {
                file,
                length,
                tail,
                range: Some((first, last)),
            },
        }
    }
}

/// What a `Range` header asks of a body of `total` bytes (RFC 9110 14.2).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one we answer with the whole body (several ranges, a malformed header).
    Whole,
    /// Bytes `first..=last`.
    Part(u64, u64),
    /// Nothing of the body can be given: 416.
    Unsatisfiable,
}

/// Read a `Range` header for a body of `total` bytes: a single `bytes=a-b`, `bytes=a-` or
/// `bytes=-n`; anything else is answered with the whole body, as RFC 9110 allows.
pub fn parse_range(header: &str, total: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if total == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part(total.saturating_sub(n), total - 1),
            None => RangeRequest::Whole,
        },
        (first, last) => match (number(first), last) {
            (Some(a), _) if a >= total => RangeRequest::Unsatisfiable,
            (Some(a), "") => RangeRequest::Part(a, total - 1),
            (Some(a), last) => match number(last) {
                Some(b) if b >= a => RangeRequest::Part(a, b.min(total - 1)),
                _ => RangeRequest::Whole,
            },
            (None, _) => RangeRequest::Whole,
        },
    }
}

impl Response {
    /// This answer for a request with `range` (and `if_range`): 206 with `Content-Range` for
    /// one satisfiable range of a 200 answer that accepts ranges, 416 for an unsatisfiable
    /// one, else unchanged. With `If-Range`, which we cannot evaluate yet, the whole body.
    pub fn for_range(mut self, range: Option<&str>, if_range: bool) -> Response {
        let accepts = self
            .headers
            .iter()
            .any(|(n, v)| *n == "Accept-Ranges" && v == "bytes");
        let (Some(range), true, 200, false) = (range, accepts, self.status, if_range) else {
            return self;
        };
        let total = self.body.length();
        match parse_range(range, total) {
            RangeRequest::Whole => self,
            RangeRequest::Part(first, last) => {
                self.status = 206;
                self.body = self.body.slice(first, last);
                self.with_header("Content-Range", format!("bytes {first}-{last}/{total}"))
            }
            RangeRequest::Unsatisfiable => Response {
                status: 416,
                headers: vec![("Content-Range", format!("bytes */{total}"))],
                body: Body::Empty,
                close: false,
            },
        }
    }
}

pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Bytes shared with a cache.
    Shared(Arc<Vec<u8>>),
    /// `length` bytes from a reader (an icon streamed from its package), after skipping
    /// `skip` bytes of it.
    Reader {
        reader: Box<dyn Read + Send>,
        length: u64,
        skip: u64,
    },
    /// `length` bytes of a file (sent with sendfile), then `tail`; of those, `range` only
    /// (first and last byte, inclusive) when set.
    File {
        file: std::fs::File,
        length: u64,
        tail: Vec<u8>,
        range: Option<(u64, u64)>,
    },
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// Close the connection after this answer (the request's body was broken or unread).
    pub close: bool,
}

impl Response {
    pub fn json(value: &serde_json::Value) -> Response {
        Response::json_body(Body::Bytes(value.to_string().into_bytes()))
    }

    pub fn json_body(body: Body) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", "application/json".into())],
            body,
            close: false,
        }
    }

    pub fn status(status: u16, message: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: Body::Bytes(format!("{message}\n").into_bytes()),
            close: false,
        }
    }

    /// 404 with an empty body, as Qt's server answers (its own test compares the body).
    pub fn not_found() -> Response {
        Response {
            status: 404,
            headers: Vec::new(),
            body: Body::Empty,
            close: false,
        }
    }

    /// This answer, closing the connection afterwards.
    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-200", 100), Part(0, 99));
        assert_eq!(parse_range("bytes=50-500", 100), Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        for whole in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "items=0-1",
            "bytes=x-",
            "bytes=-",
        ] {
            assert_eq!(parse_range(whole, 100), Whole, "{whole}");
        }
    }
}
