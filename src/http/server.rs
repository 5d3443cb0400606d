/*!
The HTTP server: a pool of worker threads, each looping on one `tiny_http::Server::recv()`.

tiny_http parses requests on its own connection threads; our workers turn each request into
our `Request`, run the route, and stream the `Response` back. Every accepted socket has read
and write timeouts: tiny_http has no setting for them, but Linux copies `SO_RCVTIMEO` and
`SO_SNDTIMEO` from the listening socket to the sockets it accepts, so we set them on the
listener we hand to tiny_http. A panic in a route becomes a 500, never a dead worker.
*/

use super::routes::{State, handle};
use super::{Body, Method, Request, Response};
use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection may stay silent (reading) or stalled (writing). A stalled upload is
/// answered 400 after one such wait and its connection shut down at once.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest form-encoded POST body we read for parameters.
const MAX_FORM_BODY: u64 = 64 * 1024;
/// Number of request workers.
pub const WORKERS: usize = 16;

pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    pub local_addr: SocketAddr,
}

impl HttpServer {
    /// Bind `address` and start the workers.
    pub fn start(address: SocketAddr, state: Arc<State>) -> Result<HttpServer, String> {
        let listener = TcpListener::bind(address)
            .map_err(|e| format!("could not listen on {address}: {e}"))?;
        set_socket_options(&listener, SOCKET_TIMEOUT)
            .map_err(|e| format!("could not set socket options: {e}"))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| format!("could not read the listening address: {e}"))?;
        let server = Arc::new(
            tiny_http::Server::from_listener(listener, None)
                .map_err(|e| format!("could not start the HTTP server: {e}"))?,
        );
        let stopping = Arc::new(AtomicBool::new(false));
        let workers = (0..WORKERS)
            .map(|_| {
                let (server, state, stopping) = (server.clone(), state.clone(), stopping.clone());
                std::thread::spawn(move || worker(&server, &state, &stopping))
            })
            .collect();
        Ok(HttpServer {
            server,
            workers,
            stopping,
            local_addr,
        })
    }

    /// Stop taking requests; returns once idle workers have ended (busy ones finish later).
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers {
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
    }
}

/// Options for every accepted socket, set on the listener (Linux copies them on accept):
/// read and write timeouts, and no Nagle delay (tiny_http writes headers and body separately,
/// which with Nagle and delayed ACKs costs 40 ms per response).
fn set_socket_options(listener: &TcpListener, timeout: Duration) -> io::Result<()> {
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        set_option(listener, libc::SOL_SOCKET, option, &value)?;
    }
    set_option(
        listener,
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        &(1 as libc::c_int),
    )
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

fn worker(server: &tiny_http::Server, state: &State, stopping: &AtomicBool) {
    while !stopping.load(Ordering::SeqCst) {
        // An error here is `unblock` (we are stopping) or a passing accept problem.
        let Ok(request) = server.recv() else { continue };
        if stopping.load(Ordering::SeqCst) {
            let _ = request.respond(tiny_http::Response::empty(503));
            break;
        }
        serve(request, state);
    }
}

fn serve(mut request: tiny_http::Request, state: &State) {
    let response = match read_parameters(&mut request) {
        Ok((method, path, params)) => {
            let content_length = request.body_length().map(|n| n as u64);
            let mut ours = Request {
                method,
                path,
                params,
                content_length,
                body: request.as_reader(),
            };
            catch_unwind(AssertUnwindSafe(|| handle(&mut ours, state)))
                .unwrap_or_else(|_| Response::status(500, "Internal Server Error"))
        }
        Err(response) => response,
    };
    let _ = respond(request, response);
}

/// The method, the path and the parameters (query, then the form body of a POST), or the
/// 4xx answer for a request whose parameters cannot be read.
fn read_parameters(
    request: &mut tiny_http::Request,
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
    let is_form = request.headers().iter().any(|h| {
        h.field.equiv("Content-Type")
            && h.value
                .as_str()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
    });
    if method == Method::Post && is_form {
        let announced = request.body_length();
        let body = read_form(request.as_reader(), announced)?;
        params.extend(super::parse_form(&body).map_err(bad_request)?);
    }
    Ok((method, path, params))
}

/// Read a form body of at most `MAX_FORM_BODY` bytes, complete as announced.
fn read_form(body: &mut dyn Read, announced: Option<usize>) -> Result<Vec<u8>, Response> {
    let mut bytes = Vec::new();
    body.take(MAX_FORM_BODY + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| Response::status(400, "Bad Request: the body could not be read"))?;
    if bytes.len() as u64 > MAX_FORM_BODY {
        return Err(Response::status(413, "Payload Too Large"));
    }
    if announced.is_some_and(|n| bytes.len() < n) {
        return Err(Response::status(
            400,
            "Bad Request: the body is shorter than announced",
        ));
    }
    Ok(bytes)
}

/// Send `response`: status and headers, then the body in as few copies as possible.
fn respond(request: tiny_http::Request, response: Response) -> io::Result<()> {
    let headers = response
        .headers
        .iter()
        .filter_map(|(name, value)| {
            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
        })
        .collect();
    let head = tiny_http::Response::new(
        tiny_http::StatusCode(response.status),
        headers,
        io::empty(),
        Some(0),
        None,
    );
    let close = response.close;
    match response.body {
        Body::Empty => request.respond_with_parts(head, None, &[], send_file, close),
        Body::Bytes(bytes) => request.respond_with_parts(head, None, &bytes, send_file, close),
        Body::Shared(bytes) => request.respond_with_parts(head, None, &bytes, send_file, close),
        Body::File { file, length, tail } => {
            request.respond_with_parts(head, Some((file, length)), &tail, send_file, close)
        }
    }
}

/// Send `length` bytes of `file`, from its start, with sendfile(2): no copy through user
/// space. Safe for us because package files are never changed in place, only replaced. The
/// socket is corked meanwhile (as nginx's `tcp_nopush`): with `TCP_NODELAY` alone, every
/// pushed piece may leave as a small segment.
fn send_file(file: &File, length: u64, socket: &TcpStream) -> io::Result<()> {
    let cork = |on: libc::c_int| set_option(socket, libc::IPPROTO_TCP, libc::TCP_CORK, &on);
    cork(1)?;
    let sent = send_file_corked(file, length, socket);
    cork(0)?;
    sent
}

fn send_file_corked(file: &File, length: u64, socket: &TcpStream) -> io::Result<()> {
    let mut offset: libc::off_t = 0;
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
