//! Responses: a status, header fields and a body of known length, written once.
//!
//! appman-package-server fork: replaces tiny_http's `Response<R>`. Every answer carries
//! `Content-Length` (never chunked), bodies in memory go out in the same write as the head,
//! and a streamed body (a file sent with sendfile) gets the head to write itself, so it can
//! cork the socket around both.

use crate::common::{Header, StatusCode};
use crate::transport::Transport;
use std::io::{self, Write};
use std::sync::Arc;

/// A body that writes itself to the connection, e.g. with sendfile when it is plain TCP
/// (`Transport::plain_socket`).
pub trait StreamBody: Send {
    /// The number of bytes `send` writes after the head.
    fn length(&self) -> u64;
    /// Write `head`, then exactly `length()` bytes, to `out`.
    fn send(self: Box<Self>, head: &[u8], out: &mut Transport) -> io::Result<()>;
}

/// What follows the head.
pub enum ResponseBody {
    Empty,
    Bytes(Vec<u8>),
    /// Bytes shared with a cache.
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>),
    Stream(Box<dyn StreamBody>),
}

impl ResponseBody {
    pub fn length(&self) -> u64 {
        match self {
            ResponseBody::Empty => 0,
            ResponseBody::Bytes(b) => b.len() as u64,
            ResponseBody::Shared(b) => (**b).as_ref().len() as u64,
            ResponseBody::Stream(s) => s.length(),
        }
    }
}

/// What became of an answer, for `Response::on_sent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Bytes of body the answer has (none for HEAD, 204 and 304).
    pub body_bytes: u64,
    /// Whether all of it was written.
    pub complete: bool,
}

/// Called once the answer was written, or failed to be.
pub type OnSent = Box<dyn FnOnce(Sent) + Send>;

/// An answer to one request.
pub struct Response {
    pub status: StatusCode,
    /// Header fields; `Content-Length`, `Connection`, `Transfer-Encoding` and `Date` are
    /// the server's own and are dropped here.
    pub headers: Vec<Header>,
    pub body: ResponseBody,
    /// Close the connection after this answer.
    pub close: bool,
    /// Told when the answer has been written (a request log).
    pub on_sent: Option<OnSent>,
}

impl Response {
    pub fn new(status: u16, body: ResponseBody) -> Response {
        Response {
            status: StatusCode(status),
            headers: Vec::new(),
            body,
            close: false,
            on_sent: None,
        }
    }

    /// An empty answer with `status`, closing the connection.
    pub fn closing(status: u16) -> Response {
        let mut response = Response::new(status, ResponseBody::Empty);
        response.close = true;
        response
    }
}

/// Whether a status forbids a body (RFC 9110 6.4.1).
fn has_no_body(status: StatusCode) -> bool {
    status.0 < 200 || status.0 == 204 || status.0 == 304
}

/// The status line and header fields of `response`, ending in the empty line.
pub(crate) fn head_bytes(response: &Response, close: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let status = response.status;
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nDate: {}\r\n",
        status.0,
        status.default_reason_phrase(),
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    // Every answer: browsers must not guess a type (a package, a JSON answer or an error
    // text is never a script or a page).
    head.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    for header in &response.headers {
        let ours = [
            "Content-Length",
            "Connection",
            "Transfer-Encoding",
            "Date",
            "X-Content-Type-Options",
        ];
        if ours.iter().any(|name| header.is(name)) {
            continue;
        }
        let _ = write!(head, "{}: {}\r\n", header.name, header.value);
    }
    if !has_no_body(status) {
        let _ = write!(head, "Content-Length: {}\r\n", response.body.length());
    }
    if close {
        head.extend_from_slice(b"Connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Write `response` to `out`: the head, and the body unless `head_only` (HEAD requests);
/// then tell its `on_sent`.
pub(crate) fn write_response(
    out: &mut Transport,
    mut response: Response,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let on_sent = response.on_sent.take();
    let without_body = head_only || has_no_body(response.status);
    let body_bytes = if without_body {
        0
    } else {
        response.body.length()
    };
    let result = write_parts(out, response, without_body, close);
    if let Some(on_sent) = on_sent {
        on_sent(Sent {
            body_bytes,
            complete: result.is_ok(),
        });
    }
    result
}

fn write_parts(
    out: &mut Transport,
    response: Response,
    without_body: bool,
    close: bool,
) -> io::Result<()> {
    let head = head_bytes(&response, close);
    if without_body {
        return out.write_all(&head);
    }
    match response.body {
        ResponseBody::Empty => out.write_all(&head),
        ResponseBody::Bytes(bytes) => out.write_both(&head, &bytes),
        ResponseBody::Shared(bytes) => out.write_both(&head, (*bytes).as_ref()),
        ResponseBody::Stream(stream) => stream.send(&head, out),
    }
}
