//! A small synchronous HTTP/1.1 server: one thread per connection, bounded in every way a
//! client can reach.
//!
//! This is appman-package-server's fork of tiny_http 0.12.0 (see `vendor/README.md` of the
//! project for the list of changes). What it keeps of tiny_http is the shape: a listener
//! whose connections are parsed into `Request`s and answered with `Response`s. What it
//! changes is everything a hostile client could use:
//!
//! - each connection is served end to end by its own thread, one request at a time
//!   (`connection`), so no client ever waits for another client's socket, and pipelined
//!   requests wait in the socket instead of in memory;
//! - request heads have a total deadline and bodies a minimum rate (`stream`), not just a
//!   per-read timeout;
//! - connections are capped in all and, once the server is busy (half of them open), per client
//!   address, and refused with `503` beyond (`Slots`);
//! - framing is strict (`head`, `body`): nothing that could let two parsers disagree about
//!   where a request ends is accepted;
//! - nothing on the accept path can panic or stop accepting.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod body;
mod common;
mod connection;
mod head;
mod response;
mod stream;
mod transport;

pub use body::BodyReader;
pub use common::{HTTPVersion, Header, Method, StatusCode};
pub use connection::Request;
pub use head::{Framing, FramingError, HeadError, RequestHead, read_head};
pub use response::{OnSent, Response, ResponseBody, Sent, StreamBody};
pub use transport::{Tls, Transport};

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Answers requests; called on the connection's own thread.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &mut Request<'_>) -> Response;

    /// A connection from `client` was refused with 503 because of `limit` (called on the
    /// accept thread: it must not block).
    fn refused(&self, _client: SocketAddr, _limit: Limit) {}

    /// A request from `client` was answered by this crate itself, before any `handle`, and
    /// its connection closed (called on the connection's thread).
    fn rejected(&self, _client: SocketAddr, _rejection: &Rejection<'_>) {}
}

/// Why a request was answered before it reached the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The head or its framing broke the protocol or a size limit (400, 413, 414, 417, 431,
    /// 501).
    Framing,
    /// The head was not complete within its deadline (408).
    Deadline,
}

/// A request answered by this crate itself.
#[derive(Debug)]
pub struct Rejection<'a> {
    pub status: u16,
    pub kind: RejectionKind,
    /// In words, for a log.
    pub reason: String,
    /// The method and target, when the head could be read.
    pub request: Option<(&'a Method, &'a str)>,
    /// Since the first byte of the head.
    pub elapsed: Duration,
}

/// Which connection limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The server was busy and the client already had `open` connections, at least its
    /// `share` (`max_connections_per_client`).
    PerClient { open: usize, share: usize },
    /// The server already had this many connections open.
    Total(usize),
}

/// How long clients may take.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// A new connection's first request must start within this time.
    pub first_request: Duration,
    /// An idle keep-alive connection is closed after this time.
    pub keep_alive: Duration,
    /// A request head must be complete this long after its first byte.
    pub request_head: Duration,
    /// A body must arrive at this rate on average (bytes per second) ...
    pub body_min_rate: u64,
    /// ... over any stretch of this length (the most a body may stall).
    pub body_grace: Duration,
    /// One write to a client that does not read may block this long; then the answer is
    /// abandoned and the connection closed.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            first_request: Duration::from_secs(20),
            keep_alive: Duration::from_secs(60),
            request_head: Duration::from_secs(10),
            body_min_rate: 1024,
            body_grace: Duration::from_secs(10),
            write: Duration::from_secs(20),
        }
    }
}

/// Limits of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client (an IPv4 address or an IPv6 /64).
    pub max_connections_per_client: usize,
    pub timeouts: Timeouts,
    /// Requests answered on one connection before it is closed (as nginx's
    /// `keepalive_requests`): bounds what a client that pipelines without reading can make us
    /// write before its connection ends.
    pub max_requests_per_connection: usize,
    /// Stack size of each connection's thread.
    pub thread_stack_size: usize,
    /// Serve HTTPS (every connection starts with a TLS handshake) instead of HTTP.
    pub tls: Option<Tls>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 4096,
            max_connections_per_client: 64,
            timeouts: Timeouts::default(),
            max_requests_per_connection: 1000,
            thread_stack_size: 1024 * 1024,
            tls: None,
        }
    }
}

/// The answer to a connection over a limit, written without waiting for the request.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
Content-Length: 0\r\nConnection: close\r\n\r\n";

/// The key connections are counted by: IPv4 addresses (IPv4-mapped IPv6 included) whole,
/// IPv6 addresses by their /64, which is what one client usually holds.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Open connections, counted in all and per client.
///
/// The per-client cap is a fair share under contention, not a quota: while fewer than
/// `busy_from` (half of `max_total`) connections are open, any address may open more, so a CI
/// host or a test farm behind one address can use the whole idle server. From `busy_from` on,
/// an address that holds `max_per_client` or more gets no more (`Limit::PerClient`), while
/// addresses below their share are admitted up to `max_total`. So an address can take more than
/// its share only of the first half of the connections, and the other half is left to addresses
/// within their share: a newcomer is refused only when the server is full, which takes
/// `max_total / 2 / max_per_client` other addresses (32 by default) each at its full share.
struct Slots {
    max_total: usize,
    max_per_client: usize,
    busy_from: usize,
    counts: Mutex<Counts>,
}

/// One open connection's place; dropping it (also while a panic unwinds) frees it.
struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent whatever panicked while holding the lock.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new(max_total: usize, max_per_client: usize) -> Slots {
        let max_total = max_total.max(1);
        Slots {
            max_total,
            max_per_client: max_per_client.max(1),
            busy_from: max_total / 2,
            counts: Mutex::default(),
        }
    }

    fn acquire(self: &Arc<Slots>, client: IpAddr) -> Result<Slot, Limit> {
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Limit::Total(self.max_total));
        }
        let busy = counts.total >= self.busy_from;
        let count = counts.per_client.entry(client).or_insert(0);
        if busy && *count >= self.max_per_client {
            return Err(Limit::PerClient {
                open: *count,
                share: self.max_per_client,
            });
        }
        *count += 1;
        counts.total += 1;
        Ok(Slot {
            slots: self.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.per_client.remove(&self.client);
            }
        }
    }
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
    slots: Arc<Slots>,
}

/// Reads how many connections a server has open (for metrics).
#[derive(Clone)]
pub struct OpenConnections(Arc<Slots>);

impl OpenConnections {
    pub fn get(&self) -> usize {
        self.0.lock().total
    }
}

impl std::fmt::Debug for OpenConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenConnections({})", self.get())
    }
}

impl Server {
    /// Serve connections of `listener` with `handler`, from a thread of its own.
    pub fn start(
        listener: TcpListener,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let slots = Arc::new(Slots::new(
            config.max_connections,
            config.max_connections_per_client,
        ));
        let accept_thread = {
            let (stopping, slots) = (stopping.clone(), slots.clone());
            thread::Builder::new()
                .name("http-accept".into())
                .spawn(move || accept_loop(&listener, &config, &handler, &slots, &stopping))?
        };
        Ok(Server {
            local_addr,
            stopping,
            accept_thread: Some(accept_thread),
            slots,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A reader of the number of open connections.
    pub fn open_connections(&self) -> OpenConnections {
        OpenConnections(self.slots.clone())
    }

    /// Stop accepting connections; open ones close after their current answer.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop with a connection of our own.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok()
            && let Some(thread) = self.accept_thread.take()
        {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    config: &ServerConfig,
    handler: &Arc<dyn Handler>,
    slots: &Arc<Slots>,
    stopping: &Arc<AtomicBool>,
) {
    while !stopping.load(Ordering::SeqCst) {
        let (socket, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory (EMFILE, ENFILE, ENOMEM, ENOBUFS): the
                // connection waits in the backlog while we pause; a connection the client
                // aborted (ECONNABORTED) is simply gone.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) {
                    thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let slot = match slots.acquire(client_key(peer.ip())) {
            Ok(slot) => slot,
            Err(limit) => {
                // Told first: once the client sees the refusal, it is counted.
                handler.refused(peer, limit);
                // A TLS client cannot read a plain 503: it only sees the close.
                if config.tls.is_none() {
                    refuse(socket);
                }
                continue;
            }
        };
        let (handler, stopping) = (handler.clone(), stopping.clone());
        let timeouts = config.timeouts.clone();
        let tls = config.tls.clone();
        let max_requests = config.max_requests_per_connection.max(1);
        let spawned = thread::Builder::new()
            .stack_size(config.thread_stack_size)
            .spawn(move || {
                let _slot = slot;
                // Nothing here should panic; if the handler does, only this connection ends.
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    let limits = connection::Limits {
                        timeouts: &timeouts,
                        max_requests,
                        stopping: &stopping,
                        tls: tls.as_ref(),
                    };
                    connection::serve(socket, peer, handler.as_ref(), &limits)
                }));
            });
        if spawned.is_err() {
            // The closure, with the socket and the slot, was dropped: the connection closes
            // and its slot is free. Pause as for any shortage of resources.
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Answer a connection over a limit with 503 without reading from it or blocking.
fn refuse(socket: TcpStream) {
    if socket.set_nonblocking(true).is_ok() {
        let _ = (&socket).write(REFUSED);
    }
    let _ = socket.shutdown(std::net::Shutdown::Write);
}

/// For fuzzing: parse pipelined requests from `data` as a connection would, reading each
/// body to its end. Returns the heads read.
#[doc(hidden)]
pub fn parse_pipelined(data: &[u8]) -> Vec<RequestHead> {
    use std::io::Read;
    let mut input = data;
    let mut heads = Vec::new();
    loop {
        let Ok(head) = read_head(&mut input) else {
            return heads;
        };
        let framing = head.framing();
        let _ = head.expects_continue();
        let _ = head.keep_alive();
        heads.push(head);
        let Ok(framing) = framing else { return heads };
        let mut body = BodyReader::new(&mut input, framing);
        let mut sink = [0u8; 4096];
        loop {
            match body.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return heads,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_clients_by_address_and_ipv6_prefix() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2:3".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn slots_are_capped_and_freed() {
        let slots = Arc::new(Slots::new(3, 1));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = slots.acquire(a).unwrap();
        let over = Limit::PerClient { open: 1, share: 1 };
        assert_eq!(slots.acquire(a).err(), Some(over));
        let _second = slots.acquire(b).unwrap();
        let _third = slots.acquire("10.0.0.3".parse().unwrap()).unwrap();
        assert_eq!(slots.acquire(b).err(), Some(Limit::Total(3)));
        drop(first);
        assert!(slots.acquire(a).is_ok());
        assert_eq!(slots.lock().total, 2);
    }

    #[test]
    fn the_per_client_cap_applies_only_once_half_are_open() {
        let slots = Arc::new(Slots::new(8, 2));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        // Idle: one address may open up to half of all.
        let held: Vec<Slot> = (0..4).map(|_| slots.acquire(a).unwrap()).collect();
        // Busy now: the address over its share is refused, a newcomer is not.
        let over = Limit::PerClient { open: 4, share: 2 };
        assert_eq!(slots.acquire(a).err(), Some(over));
        let newcomer: Vec<Slot> = (0..2).map(|_| slots.acquire(b).unwrap()).collect();
        let at_share = Limit::PerClient { open: 2, share: 2 };
        assert_eq!(slots.acquire(b).err(), Some(at_share));
        let others: Vec<Slot> = ["10.0.0.3", "10.0.0.4"]
            .iter()
            .map(|ip| slots.acquire(ip.parse().unwrap()).unwrap())
            .collect();
        assert_eq!(
            slots.acquire("10.0.0.5".parse().unwrap()).err(),
            Some(Limit::Total(8))
        );
        drop((held, newcomer, others));
        assert_eq!(slots.lock().total, 0);
        assert!(slots.lock().per_client.is_empty());
    }

    #[test]
    fn parses_pipelined_requests() {
        let heads = parse_pipelined(
            b"GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\n\r\n",
        );
        let targets: Vec<&str> = heads.iter().map(|h| h.target.as_str()).collect();
        assert_eq!(targets, ["/a", "/b", "/c"]);
    }
}
