/*!
HTTP: our own request and response types (`routes` is plain functions over them, testable
without sockets), and the server that feeds them from tiny_http's connection threads
(`server`).
*/

pub mod bodies;
pub mod card;
pub mod conditional;
pub mod ds;
pub mod html;
pub mod multipart;
pub mod origin;
pub mod page;
pub mod routes;
pub mod serve;
pub mod server;
pub mod state;
pub mod tls;
pub mod upload;

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

/// `path` with percent-encoded unreserved characters (letters, digits, `-._~`) decoded, as
/// RFC 3986 6.2.2.2 says they are equivalent (Qt's server routes `/hel%6Co` to `/hello`);
/// every other escape (`%2F`, `%00`, ...) stays as it is, so it can never reach a route.
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
        match decoded {
            Some(b) => {
                out.push(b as char);
                i += 3;
            }
            None => {
                // Paths reach us as ASCII (the fork refuses anything else).
                out.push(bytes[i] as char);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
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
    pub headers: RequestHeaders,
    pub body: &'a mut dyn Read,
}

/// The request header fields the server acts on (each the first of its name, except
/// `If-None-Match`, whose fields are joined as one list).
#[derive(Debug, Default, Clone)]
pub struct RequestHeaders {
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub authorization: Option<String>,
    /// Where the client reached us (the page's curl example, `origin`).
    pub host: Option<String>,
    /// What a browser says of where the request comes from (`origin`).
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    /// The formats the client takes (`/metrics`).
    pub accept: Option<String>,
    /// The Deployment Server's session (`ds::session`).
    pub cookie: Option<String>,
    /// The body's type (the multipart `/upload`).
    pub content_type: Option<String>,
}

impl Request<'_> {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of parameter `name`, in order.
    pub fn params_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| k == name)
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
                None => length + tail.len(),
            },
            Body::Object(part) => match part.range {
                Some((first, last)) => last - first + 1,
                None => part.length + part.tail.len(),
            },
        }
    }

    /// Only the bytes `first..=last` of this (whole) body.
    pub(crate) fn slice(self, first: u64, last: u64) -> Body {
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
            Body::Object(mut part) => {
                part.range = Some((first, last));
                part.opened = None;
                Body::Object(part)
            }
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
        tail: Tail,
        range: Option<(u64, u64)>,
    },
    /// An object in the S3 store (read with ranged GETs), then a tail.
    Object(Box<ObjectPart>),
}

/// `length` bytes of an object in the S3 store, then `tail`; of those, `range` only when set.
pub struct ObjectPart {
    pub object: crate::s3::RemoteObject,
    pub length: u64,
    pub tail: Tail,
    pub range: Option<(u64, u64)>,
    /// The object's part, opened before the status is sent (`bodies::open_objects`).
    pub opened: Option<crate::s3::ObjectReader>,
}

/// What follows a file in a `Body::File`: pieces shared with caches (the closing bytes, seam
/// and signature footer of a signed download), never copied per connection.
#[derive(Default)]
pub struct Tail(pub Vec<Arc<Vec<u8>>>);

impl Tail {
    pub fn len(&self) -> u64 {
        self.0.iter().map(|piece| piece.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the bytes `range` of the tail.
    pub fn write_range(
        &self,
        range: std::ops::Range<u64>,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let mut start = 0u64;
        for piece in &self.0 {
            let end = start + piece.len() as u64;
            let (from, to) = (range.start.max(start), range.end.min(end));
            if from < to {
                out.write_all(&piece[(from - start) as usize..(to - start) as usize])?;
            }
            start = end;
        }
        Ok(())
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// Close the connection after this answer (the request's body was broken or unread).
    pub close: bool,
    /// What the request log adds to this answer's line (a download's package and device).
    pub log_note: Option<String>,
}

impl Response {
    /// `value` as the JSON answer, an object's keys sorted as Qt's `QJsonObject` writes them.
    pub fn json(value: &serde_json::Value) -> Response {
        let text = match value {
            serde_json::Value::Object(map) => {
                let mut sorted = map.clone();
                sorted.sort_keys();
                serde_json::Value::Object(sorted).to_string()
            }
            other => other.to_string(),
        };
        Response::json_body(Body::Bytes(text.into_bytes()))
    }

    pub fn json_body(body: Body) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", "application/json".into())],
            body,
            close: false,
            log_note: None,
        }
    }

    /// `status` with the fail JSON, `{"status": "fail", "message": ...}`.
    pub fn fail(status: u16, message: &str) -> Response {
        let mut response =
            Response::json(&serde_json::json!({ "status": "fail", "message": message }));
        response.status = status;
        response
    }

    /// A shared answer that cannot be given: 503 with `Retry-After` while clients hold too
    /// many unread answers, 500 for one larger than the server builds; the fail JSON says
    /// which.
    pub fn unanswerable(error: &crate::store::answers::AnswerError) -> Response {
        use crate::store::answers::AnswerError;
        match error {
            AnswerError::Busy => {
                Response::fail(503, &error.to_string()).with_header("Retry-After", "5")
            }
            AnswerError::TooLarge(_) => Response::fail(500, &error.to_string()),
        }
    }

    pub fn status(status: u16, message: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: Body::Bytes(format!("{message}\n").into_bytes()),
            close: false,
            log_note: None,
        }
    }

    /// 404 with an empty body, as Qt's server answers (its own test compares the body).
    pub fn not_found() -> Response {
        Response {
            status: 404,
            headers: Vec::new(),
            body: Body::Empty,
            close: false,
            log_note: None,
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
