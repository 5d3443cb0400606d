//! A TCP stream whose reads have a deadline, not only a per-read timeout.
//!
//! appman-package-server fork, after Apache's `mod_reqtimeout`: a per-read timeout alone lets
//! a client that sends one byte just before each timeout hold its connection for ever. Here
//! every read waits at most until the current deadline. For a request head the deadline is
//! fixed (the whole head must arrive in time); for a body it moves: each byte received buys
//! `1 / rate` seconds, but never more than `grace` ahead of now, so a body must keep the
//! minimum rate on average over any `grace`-long stretch.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Rate {
    bytes_per_second: u64,
    grace: Duration,
}

/// The read side of a connection, with a deadline.
#[derive(Debug)]
pub struct TimedStream {
    socket: TcpStream,
    deadline: Instant,
    rate: Option<Rate>,
    /// The read timeout last set on the socket, to skip setting it again.
    timeout_set: Option<Duration>,
}

pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client was too slow")
}

impl TimedStream {
    pub fn new(socket: TcpStream) -> TimedStream {
        TimedStream {
            socket,
            deadline: Instant::now(),
            rate: None,
            timeout_set: None,
        }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Reads must be done by `deadline`.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.rate = None;
    }

    /// Reads must keep `bytes_per_second` on average, with `grace` of credit at most.
    pub fn set_min_rate(&mut self, bytes_per_second: u64, grace: Duration) {
        self.deadline = Instant::now() + grace;
        self.rate = Some(Rate {
            bytes_per_second: bytes_per_second.max(1),
            grace,
        });
    }

    fn credit(&mut self, bytes: usize) {
        if let Some(rate) = self.rate {
            let earned = Duration::from_secs_f64(bytes as f64 / rate.bytes_per_second as f64);
            self.deadline = (self.deadline + earned).min(Instant::now() + rate.grace);
        }
    }
}

impl Read for TimedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            // Below a millisecond the deadline has passed, for all practical purposes.
            if left < Duration::from_millis(1) {
                return Err(timed_out());
            }
            // Set the socket's timeout again only when it is off by more than a little: a
            // shorter one makes us come round once more, a longer one overshoots by 100 ms.
            if self
                .timeout_set
                .is_none_or(|set| set.abs_diff(left) > Duration::from_millis(100))
            {
                self.socket.set_read_timeout(Some(left))?;
                self.timeout_set = Some(left);
            }
            match self.socket.read(buf) {
                Ok(n) => {
                    self.credit(n);
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.timeout_set = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for TimedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.socket).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&self.socket).flush()
    }
}

impl Write for &TimedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.socket).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&self.socket).flush()
    }
}
