//! What a connection reads from and writes to: the TCP socket itself, or TLS over it.
//!
//! appman-package-server fork: replaces the original's `ssl-openssl` plumbing (a
//! `RefinedTcpStream` behind a mutex shared by a reader and a writer half). Both variants sit
//! on a `TimedStream`, so deadlines and the minimum body rate hold for TLS too: they are
//! enforced on the socket's reads, under the TLS layer, and a handshake gets the deadline
//! of a first request. Only a plain connection exposes its socket, for sendfile.

use crate::stream::TimedStream;
use openssl::ssl::{SslAcceptor, SslStream};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

/// The TLS configuration of a server.
#[derive(Clone)]
pub struct Tls(pub Arc<SslAcceptor>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// A connection's byte stream.
pub enum Transport {
    Plain(TimedStream),
    Tls(Box<SslStream<TimedStream>>),
}

impl Transport {
    /// `socket` as is, or after a TLS handshake that must be done by `deadline`.
    pub(crate) fn new(
        socket: TcpStream,
        tls: Option<&Tls>,
        deadline: Instant,
    ) -> io::Result<Transport> {
        let mut timed = TimedStream::new(socket);
        timed.set_deadline(deadline);
        match tls {
            None => Ok(Transport::Plain(timed)),
            Some(Tls(acceptor)) => acceptor
                .accept(timed)
                .map(|stream| Transport::Tls(Box::new(stream)))
                .map_err(|e| io::Error::other(format!("TLS handshake failed: {e}"))),
        }
    }

    /// The deadline-keeping stream under everything.
    pub(crate) fn timed_mut(&mut self) -> &mut TimedStream {
        match self {
            Transport::Plain(timed) => timed,
            Transport::Tls(stream) => stream.get_mut(),
        }
    }

    /// The socket, when the bytes go to it unchanged (sendfile, corking).
    pub fn plain_socket(&self) -> Option<&TcpStream> {
        match self {
            Transport::Plain(timed) => Some(timed.socket()),
            Transport::Tls(_) => None,
        }
    }

    /// The TCP socket under everything, for socket options only (writing to it directly
    /// would bypass TLS).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(timed) => timed.socket(),
            Transport::Tls(stream) => stream.get_ref().socket(),
        }
    }

    /// Whether this is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Say we are done writing: TLS's close_notify, then the socket's FIN.
    pub(crate) fn shutdown_write(&mut self) {
        if let Transport::Tls(stream) = self {
            let _ = stream.shutdown();
        }
        let _ = self.timed_mut().socket().shutdown(Shutdown::Write);
    }

    /// Write `first`, then `second`, in as few writes (segments, TLS records) as we can.
    pub(crate) fn write_both(&mut self, first: &[u8], second: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(timed) => write_vectored_all(timed.socket(), first, second),
            Transport::Tls(stream) => {
                // One buffer up to a few records; beyond, the head's own record is no cost.
                if second.len() <= 64 * 1024 {
                    let mut both = Vec::with_capacity(first.len() + second.len());
                    both.extend_from_slice(first);
                    both.extend_from_slice(second);
                    stream.write_all(&both)
                } else {
                    stream.write_all(first)?;
                    stream.write_all(second)
                }
            }
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(timed) => timed.read(buf),
            Transport::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(timed) => (&*timed).write(buf),
            Transport::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(timed) => (&*timed).flush(),
            Transport::Tls(stream) => stream.flush(),
        }
    }
}

/// Write `first` then `second` to `socket` with writev, so a small answer leaves in one
/// segment.
fn write_vectored_all(mut socket: &TcpStream, first: &[u8], second: &[u8]) -> io::Result<()> {
    let mut done = 0usize;
    let total = first.len() + second.len();
    while done < total {
        let result = if done < first.len() {
            socket.write_vectored(&[io::IoSlice::new(&first[done..]), io::IoSlice::new(second)])
        } else {
            socket.write(&second[done - first.len()..])
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
