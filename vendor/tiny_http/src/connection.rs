//! One connection, served end to end by its own thread: read a request, let the handler
//! answer it, write the answer, then read the next one.
//!
//! appman-package-server fork: replaces tiny_http's `ClientConnection` and its
//! sequential-reader/writer plumbing, which queued every pipelined request in memory and let
//! shared workers block on one client's socket. Here at most one request per connection is
//! in flight; pipelined requests wait in the socket. A body the handler did not read to its
//! end is not drained at the client's pace: the connection closes after the answer.

use crate::body::BodyReader;
use crate::common::{HTTPVersion, Header, Method};
use crate::head::{FramingError, HeadError, RequestHead, read_head};
use crate::response::{Response, write_response};
use crate::transport::{Tls, Transport};
use crate::{Handler, Rejection, RejectionKind, Timeouts};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Read buffer of a connection.
const READ_BUFFER: usize = 8 * 1024;
/// After an answer that closes a connection, how long and how much we read and discard (an
/// unread body, pipelined requests) so that the client sees the answer rather than a reset.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

type Reader = BufReader<Transport>;

/// A request as the handler sees it: its head, the client, and its body as a `Read`.
pub struct Request<'a> {
    head: RequestHead,
    remote_addr: SocketAddr,
    body: BodyReader<&'a mut Reader>,
    /// `100 Continue` is owed before the first read of the body.
    continue_pending: bool,
    body_started: bool,
    timeouts: &'a Timeouts,
}

impl Request<'_> {
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The request target (`/path?query`).
    pub fn url(&self) -> &str {
        &self.head.target
    }

    pub fn http_version(&self) -> HTTPVersion {
        self.head.version
    }

    pub fn headers(&self) -> &[Header] {
        &self.head.headers
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .headers
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_str())
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The announced body length; `None` for a chunked body (the length is unknown).
    pub fn body_length(&self) -> Option<u64> {
        match self.head.framing() {
            Ok(crate::head::Framing::Length(n)) => Some(n),
            Ok(crate::head::Framing::Empty) => Some(0),
            _ => None,
        }
    }

    /// The body. Reading it keeps the minimum rate or fails with `TimedOut`.
    pub fn as_reader(&mut self) -> &mut dyn Read {
        self
    }

    /// Whether the whole body has been read (an unread rest closes the connection).
    fn body_done(&mut self) -> bool {
        if self.body.is_done() {
            return true;
        }
        // A rest already in our buffer is skipped at no cost to anyone.
        if let Some(left) = self.body.length_left() {
            let buffered = self.body.inner().buffer().len() as u64;
            if left <= buffered {
                self.body.inner_mut().consume(left as usize);
                self.body.skipped(left);
                return true;
            }
        }
        false
    }
}

impl Read for Request<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.body_started {
            self.body_started = true;
            if self.continue_pending && !self.body.is_done() {
                self.continue_pending = false;
                self.body
                    .inner_mut()
                    .get_mut()
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            let t = self.timeouts;
            self.body
                .inner_mut()
                .get_mut()
                .timed_mut()
                .set_min_rate(t.body_min_rate, t.body_grace);
        }
        self.body.read(buf)
    }
}

/// A short answer, written before closing a connection whose request could not be read; the
/// handler is told (its request log, its counters).
fn refuse(
    reader: &mut Reader,
    handler: &dyn Handler,
    client: SocketAddr,
    rejection: Rejection<'_>,
) {
    // Told first: once the client sees the answer, it is counted.
    handler.rejected(client, &rejection);
    let response = Response::closing(rejection.status);
    if write_response(reader.get_mut(), response, false, true).is_ok() {
        linger(reader);
    }
}

/// What the HTTP layer answers to a head it could not read, if anything.
fn head_rejection(error: &HeadError, started: Instant) -> Option<Rejection<'static>> {
    let status = error.status()?;
    let (kind, reason) = match error {
        HeadError::Malformed(what) => (
            RejectionKind::Framing,
            format!("malformed request head: {what}"),
        ),
        HeadError::TooLarge(414) => (RejectionKind::Framing, "request line too long".to_string()),
        HeadError::TooLarge(_) => (
            RejectionKind::Framing,
            "header fields too large".to_string(),
        ),
        HeadError::Io(_) => (
            RejectionKind::Deadline,
            "request head not complete in time".to_string(),
        ),
        HeadError::Closed => return None,
    };
    Some(Rejection {
        status,
        kind,
        reason,
        request: None,
        elapsed: started.elapsed(),
    })
}

/// What bounds one connection.
pub(crate) struct Limits<'a> {
    pub timeouts: &'a Timeouts,
    /// Requests answered before the connection closes.
    pub max_requests: usize,
    /// Set when the server stops: the connection closes after its current answer.
    pub stopping: &'a AtomicBool,
    /// Serve HTTPS.
    pub tls: Option<&'a Tls>,
}

/// Serve `socket` until the client leaves, breaks the protocol, is too slow, has sent its
/// most requests, or the server stops.
pub(crate) fn serve(
    socket: TcpStream,
    remote_addr: SocketAddr,
    handler: &dyn Handler,
    limits: &Limits<'_>,
) {
    let (timeouts, stopping) = (limits.timeouts, limits.stopping);
    let _ = socket.set_nodelay(true);
    if socket.set_write_timeout(Some(timeouts.write)).is_err() {
        return;
    }
    // A TLS handshake must be done within the time a first request has to start.
    let deadline = Instant::now() + timeouts.first_request;
    let Ok(transport) = Transport::new(socket, limits.tls, deadline) else {
        return;
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, transport);
    let mut idle = timeouts.first_request;
    for answered in 1.. {
        // Idle: wait for the first byte of a request.
        reader
            .get_mut()
            .timed_mut()
            .set_deadline(Instant::now() + idle);
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        reader
            .get_mut()
            .timed_mut()
            .set_deadline(started + timeouts.request_head);
        let head = match read_head(&mut reader) {
            Ok(head) => head,
            Err(error) => {
                if let Some(rejection) = head_rejection(&error, started) {
                    refuse(&mut reader, handler, remote_addr, rejection);
                }
                return;
            }
        };
        let framing = match head.framing() {
            Ok(framing) => framing,
            Err(error) => {
                let reason = match &error {
                    FramingError::Malformed(what) => format!("bad framing: {what}"),
                    FramingError::Unsupported(coding) => {
                        format!("unsupported transfer coding: {coding}")
                    }
                };
                let rejection = Rejection {
                    status: error.status(),
                    kind: RejectionKind::Framing,
                    reason,
                    request: Some((&head.method, &head.target)),
                    elapsed: started.elapsed(),
                };
                refuse(&mut reader, handler, remote_addr, rejection);
                return;
            }
        };
        let Ok(continue_pending) = head.expects_continue() else {
            let rejection = Rejection {
                status: 417,
                kind: RejectionKind::Framing,
                reason: "an Expect other than 100-continue".to_string(),
                request: Some((&head.method, &head.target)),
                elapsed: started.elapsed(),
            };
            refuse(&mut reader, handler, remote_addr, rejection);
            return;
        };
        let keep_alive = head.keep_alive();
        let head_only = head.method == Method::Head;
        let mut request = Request {
            head,
            remote_addr,
            body: BodyReader::new(&mut reader, framing),
            continue_pending,
            body_started: false,
            timeouts,
        };
        let response = handler.handle(&mut request);
        let body_done = request.body_done();
        drop(request);
        let close = response.close
            || !keep_alive
            || !body_done
            || answered >= limits.max_requests
            || stopping.load(Ordering::Relaxed);
        if write_response(reader.get_mut(), response, head_only, close).is_err() {
            return;
        }
        if close {
            // Linger only when the client may still be sending: an unread body, or more
            // requests already here. Otherwise the slot is free at once.
            if !body_done || !reader.buffer().is_empty() {
                linger(&mut reader);
            }
            return;
        }
        idle = timeouts.keep_alive;
    }
}

/// Close our side, then read and discard what the client still sends, briefly, so that
/// closing with unread data does not reset the connection before the client read our answer
/// (nginx's `lingering_close`). A client that closes in turn ends this at once.
fn linger(reader: &mut Reader) {
    reader.get_mut().shutdown_write();
    reader
        .get_mut()
        .timed_mut()
        .set_deadline(Instant::now() + LINGER_TIME);
    let mut discarded = 0;
    let mut buffer = [0u8; 8192];
    while discarded < LINGER_BYTES {
        match reader.get_mut().read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}
