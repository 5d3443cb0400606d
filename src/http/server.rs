/*!
The HTTP server: our fork of tiny_http (`vendor/tiny_http`) serves every connection end to end
on a thread of its own and calls `App::handle` there for each request, one at a time. We turn
its request into ours, run the route, and turn our response into its, with sendfile for files.

Everything that protects clients from each other lives in the fork: deadlines for request heads,
a minimum rate for bodies, write timeouts, strict framing, and connection caps in all and per
client. What lives here is the policy: the caps from the configuration, capped again by the
file descriptors we have, and the console line when a client hits one. A panic in a route
becomes a 500 for that request only.
*/

use super::routes::{State, handle};
use super::{Body, Method, Request, Response};
use crate::console::Console;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest form-encoded POST body we read for parameters.
const MAX_FORM_BODY: u64 = 64 * 1024;
/// A client that hits a connection limit is named on the console at most this often.
const REFUSAL_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Clients remembered for that; beyond, the oldest reports are forgotten.
const REFUSAL_REPORT_CLIENTS: usize = 4096;

/// How many connections the server keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        let defaults = tiny_http::ServerConfig::default();
        ConnectionLimits {
            max_connections: defaults.max_connections,
            max_connections_per_client: defaults.max_connections_per_client,
        }
    }
}

pub struct HttpServer {
    server: tiny_http::Server,
    pub local_addr: SocketAddr,
}

impl HttpServer {
    /// Serve `listener`.
    pub fn start(
        listener: TcpListener,
        limits: ConnectionLimits,
        state: Arc<State>,
        console: Console,
    ) -> Result<HttpServer, String> {
        let config = tiny_http::ServerConfig {
            max_connections: limits.max_connections,
            max_connections_per_client: limits.max_connections_per_client,
            ..tiny_http::ServerConfig::default()
        };
        let app = Arc::new(App {
            state,
            console,
            refusals: Mutex::default(),
        });
        let server = tiny_http::Server::start(listener, config, app)
            .map_err(|e| format!("could not start the HTTP server: {e}"))?;
        let local_addr = server.local_addr();
        Ok(HttpServer { server, local_addr })
    }

    /// Stop taking connections; open ones end after their current answer.
    pub fn stop(self) {
        self.server.stop();
    }
}

/// The routes, as tiny_http's handler.
struct App {
    state: Arc<State>,
    console: Console,
    /// When each client that hit a limit was last named on the console.
    refusals: Mutex<HashMap<IpAddr, Instant>>,
}

impl tiny_http::Handler for App {
    fn handle(&self, request: &mut tiny_http::Request<'_>) -> tiny_http::Response {
        let response = match read_parameters(request) {
            Ok((method, path, params)) => {
                let mut ours = Request {
                    method,
                    path,
                    params,
                    content_length: request.body_length(),
                    client: Some(request.remote_addr()),
                    body: request.as_reader(),
                };
                catch_unwind(AssertUnwindSafe(|| handle(&mut ours, &self.state)))
                    .unwrap_or_else(|_| Response::status(500, "Internal Server Error"))
                    .for_range(
                        request.header("Range"),
                        request.header("If-Range").is_some(),
                    )
            }
            Err(response) => response,
        };
        into_tiny_http(response)
    }

    fn refused(&self, client: IpAddr, limit: tiny_http::Limit) {
        let now = Instant::now();
        {
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if refusals
                .get(&client)
                .is_some_and(|last| now.duration_since(*last) < REFUSAL_REPORT_INTERVAL)
            {
                return;
            }
            if refusals.len() >= REFUSAL_REPORT_CLIENTS {
                refusals.retain(|_, last| now.duration_since(*last) < REFUSAL_REPORT_INTERVAL);
            }
            if refusals.len() >= REFUSAL_REPORT_CLIENTS {
                return;
            }
            refusals.insert(client, now);
        }
        let line = match limit {
            tiny_http::Limit::PerClient(n) => format!(
                "Refusing connections from {client}: it has {n} open, the most per client (--max-connections-per-client)"
            ),
            tiny_http::Limit::Total(n) => format!(
                "Refusing connections from {client}: {n} are open, the most in all (--max-connections)"
            ),
        };
        self.console.heading(&line);
    }
}

/// The method, the path and the parameters (query, then the form body of a POST), or the
/// 4xx answer for a request whose parameters cannot be read.
fn read_parameters(
    request: &mut tiny_http::Request<'_>,
) -> Result<(Method, String, super::Params), Response> {
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Head => Method::Head,
        _ => Method::Other,
    };
    let bad_request = |message: String| Response::status(400, &format!("Bad Request: {message}"));
    let (path, mut params) = super::parse_target(request.url()).map_err(bad_request)?;
    let path = path.to_string();
    let is_form = request.header("Content-Type").is_some_and(|v| {
        v.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    // Only a route that takes POST gets its form body decoded (a package POSTed to the upload
    // route by mistake is answered 405, not 400 for its "malformed" form).
    if method == Method::Post && is_form && super::routes::takes(&path, method) {
        let announced = request.body_length();
        let body = read_form(request.as_reader(), announced)?;
        params.extend(super::parse_form(&body).map_err(bad_request)?);
    }
    Ok((method, path, params))
}

/// Read a form body of at most `MAX_FORM_BODY` bytes, complete as announced.
fn read_form(body: &mut dyn Read, announced: Option<u64>) -> Result<Vec<u8>, Response> {
    if announced.is_some_and(|n| n > MAX_FORM_BODY) {
        return Err(Response::status(413, "Payload Too Large").closing());
    }
    let mut bytes = Vec::new();
    match body.take(MAX_FORM_BODY + 1).read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            return Err(Response::status(408, "Request Timeout").closing());
        }
        Err(e) => {
            return Err(Response::status(400, &format!("Bad Request: {e}")).closing());
        }
    }
    if bytes.len() as u64 > MAX_FORM_BODY {
        return Err(Response::status(413, "Payload Too Large").closing());
    }
    Ok(bytes)
}

/// Our response as tiny_http's.
fn into_tiny_http(response: Response) -> tiny_http::Response {
    let body = match response.body {
        Body::Empty => tiny_http::ResponseBody::Empty,
        Body::Bytes(bytes) => tiny_http::ResponseBody::Bytes(bytes),
        Body::Shared(bytes) => tiny_http::ResponseBody::Shared(bytes),
        Body::File {
            file,
            length,
            tail,
            range,
        } => {
            let (first, last) =
                range.unwrap_or((0, (length + tail.len() as u64).saturating_sub(1)));
            let empty = length + tail.len() as u64 == 0;
            tiny_http::ResponseBody::Stream(Box::new(FileBody {
                file,
                file_length: length,
                tail,
                first,
                count: if empty { 0 } else { last - first + 1 },
            }))
        }
        Body::Reader {
            reader,
            length,
            skip,
        } => tiny_http::ResponseBody::Stream(Box::new(ReaderBody {
            reader,
            length,
            skip,
        })),
    };
    let mut out = tiny_http::Response::new(response.status, body);
    out.headers = response
        .headers
        .into_iter()
        .map(|(name, value)| tiny_http::Header::new(name, value))
        .collect();
    out.close = response.close;
    out
}

/// `count` bytes from `first` on of: `file_length` bytes of a file, then `tail` (the signature
/// footer of a signed download). A range may start in the file and end in the tail.
struct FileBody {
    file: File,
    file_length: u64,
    tail: Vec<u8>,
    first: u64,
    count: u64,
}

impl tiny_http::StreamBody for FileBody {
    fn length(&self) -> u64 {
        self.count
    }

    /// The head, the file with sendfile(2) (no copy through user space; safe because package
    /// files are never changed in place, only replaced), then the tail. The socket is corked
    /// meanwhile (as nginx's `tcp_nopush`): with `TCP_NODELAY` alone, the head and every
    /// pushed piece may leave as small segments.
    fn send(self: Box<Self>, head: &[u8], socket: &TcpStream) -> io::Result<()> {
        let cork = |on: libc::c_int| set_option(socket, libc::IPPROTO_TCP, libc::TCP_CORK, &on);
        cork(1)?;
        let mut out = socket;
        let end = self.first + self.count;
        let file_length = self.file_length;
        let in_file = self.first.min(file_length)..end.min(file_length);
        let in_tail = (self.first.max(file_length) - file_length) as usize
            ..(end.max(file_length) - file_length) as usize;
        let sent = out
            .write_all(head)
            .and_then(|()| {
                send_file(
                    &self.file,
                    in_file.start,
                    in_file.end - in_file.start,
                    socket,
                )
            })
            .and_then(|()| out.write_all(self.tail.get(in_tail).unwrap_or(&[])));
        cork(0)?;
        sent
    }
}

/// `length` bytes from a reader after skipping `skip`, copied in 64 KiB pieces.
struct ReaderBody {
    reader: Box<dyn Read + Send>,
    length: u64,
    skip: u64,
}

impl tiny_http::StreamBody for ReaderBody {
    fn length(&self) -> u64 {
        self.length
    }

    fn send(mut self: Box<Self>, head: &[u8], socket: &TcpStream) -> io::Result<()> {
        let mut out = socket;
        out.write_all(head)?;
        let skipped = io::copy(&mut (&mut self.reader).take(self.skip), &mut io::sink())?;
        if skipped < self.skip {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body is shorter than announced",
            ));
        }
        let copied = io::copy(&mut (&mut self.reader).take(self.length), &mut out)?;
        if copied < self.length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body is shorter than announced",
            ));
        }
        Ok(())
    }
}

fn set_option<T>(socket: &impl AsRawFd, level: i32, option: i32, value: &T) -> io::Result<()> {
    // SAFETY: a valid socket descriptor and a value of the size we pass.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Send `length` bytes of `file` from `start`, with sendfile(2).
fn send_file(file: &File, start: u64, length: u64, socket: &TcpStream) -> io::Result<()> {
    let mut offset = libc::off_t::try_from(start)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let mut left = length;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: two open descriptors and an offset variable we own.
        let sent =
            unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, chunk) };
        match sent {
            n if n > 0 => left -= n as u64,
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file is shorter than announced",
                ));
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}
