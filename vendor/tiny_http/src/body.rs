//! Request bodies: exactly `Content-Length` bytes, or the chunked coding decoded strictly
//! (RFC 9112 7.1).
//!
//! appman-package-server fork: replaces `EqualReader`, `FusedReader` and the
//! `chunked_transfer` decoder. A body that ends early is an error, never a short body that
//! looks complete; chunk-size lines, extensions and trailers are bounded; sizes use checked
//! arithmetic; and after the first error every read returns that error again (fused), so a
//! caller can never read past a broken body into the next request.

use crate::head::{Framing, LineError, read_line};
use std::io::{self, BufRead, Read};

/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer fields after the last chunk, and their bytes in all.
const MAX_TRAILERS: usize = 64;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Debug)]
enum State {
    /// Bytes of a `Content-Length` body left.
    Length {
        left: u64,
        total: u64,
    },
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Bytes of the current chunk left.
    ChunkData {
        left: u64,
    },
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// Reading trailer fields after the last chunk.
    Trailers {
        count: usize,
        bytes: usize,
    },
    Done,
    Failed {
        kind: io::ErrorKind,
        message: String,
    },
}

/// A request body over the connection's buffered reader.
#[derive(Debug)]
pub struct BodyReader<R> {
    inner: R,
    state: State,
}

impl<R: BufRead> BodyReader<R> {
    pub fn new(inner: R, framing: Framing) -> BodyReader<R> {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(total) => State::Length { left: total, total },
            Framing::Chunked => State::ChunkSize,
        };
        BodyReader { inner, state }
    }

    /// Whether the body was read to its end (and nothing of it is left on the connection).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes of a `Content-Length` body not read yet (`None` for chunked or failed bodies).
    pub fn length_left(&self) -> Option<u64> {
        match self.state {
            State::Length { left, .. } => Some(left),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Mark `n` bytes of a `Content-Length` body as read by the caller (who consumed them
    /// from the underlying reader directly).
    pub(crate) fn skipped(&mut self, n: u64) {
        if let State::Length { left, .. } = &mut self.state {
            *left = left.saturating_sub(n);
            if *left == 0 {
                self.state = State::Done;
            }
        }
    }

    pub(crate) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(crate) fn inner(&self) -> &R {
        &self.inner
    }

    fn fail(&mut self, kind: io::ErrorKind, message: String) -> io::Error {
        self.state = State::Failed {
            kind,
            message: message.clone(),
        };
        io::Error::new(kind, message)
    }

    fn fail_with(&mut self, error: io::Error) -> io::Error {
        let message = error.to_string();
        self.fail(error.kind(), message)
    }

    fn line(&mut self, limit: usize, line: &mut Vec<u8>) -> io::Result<()> {
        match read_line(&mut self.inner, limit, line) {
            Ok(()) => Ok(()),
            Err(LineError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.fail(
                io::ErrorKind::UnexpectedEof,
                "the chunked body ended before its last chunk".into(),
            )),
            Err(LineError::Io(e)) => Err(self.fail_with(e)),
            Err(LineError::TooLong) => Err(self.fail(
                io::ErrorKind::InvalidData,
                "a line of the chunked body is too long".into(),
            )),
            Err(LineError::BareCr) => Err(self.fail(
                io::ErrorKind::InvalidData,
                "a bare CR in the chunked body".into(),
            )),
        }
    }

    /// Read at most `left` bytes of data into `buf`; the end of the stream is an error.
    fn data(&mut self, buf: &mut [u8], left: u64) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(self.fail(
                        io::ErrorKind::UnexpectedEof,
                        "the body ended before its announced end".into(),
                    ));
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail_with(e)),
            }
        }
    }
}

/// The size of a chunk-size line: hex digits, then optional whitespace and extensions.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty()
        || rest
            .iter()
            .find(|b| **b != b' ' && **b != b'\t')
            .is_some_and(|b| *b == b';');
    if !rest_ok {
        return None;
    }
    // At most 16 hex digits: fits a u64.
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut line = Vec::new();
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Failed { kind, ref message } => {
                    return Err(io::Error::new(kind, message.clone()));
                }
                State::Length { left, total } => {
                    let n = match self.data(buf, left) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            let message =
                                format!("the body ended after {} of {total} bytes", total - left);
                            return Err(self.fail(io::ErrorKind::UnexpectedEof, message));
                        }
                        Err(e) => return Err(e),
                    };
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length { left, total }
                    };
                    return Ok(n);
                }
                State::ChunkSize => {
                    self.line(MAX_CHUNK_LINE, &mut line)?;
                    self.state = match parse_chunk_size(&line) {
                        Some(0) => State::Trailers { count: 0, bytes: 0 },
                        Some(left) => State::ChunkData { left },
                        None => {
                            return Err(self.fail(
                                io::ErrorKind::InvalidData,
                                "a malformed chunk size".into(),
                            ));
                        }
                    };
                }
                State::ChunkData { left } => {
                    let n = self.data(buf, left)?;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData { left }
                    };
                    return Ok(n);
                }
                State::ChunkEnd => {
                    self.line(0, &mut line)?;
                    self.state = State::ChunkSize;
                }
                State::Trailers { count, bytes } => {
                    self.line(MAX_TRAILER_BYTES, &mut line)?;
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(0);
                    }
                    let (count, bytes) = (count + 1, bytes + line.len());
                    if count > MAX_TRAILERS || bytes > MAX_TRAILER_BYTES {
                        return Err(
                            self.fail(io::ErrorKind::InvalidData, "too many trailer fields".into())
                        );
                    }
                    self.state = State::Trailers { count, bytes };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], framing: Framing) -> (io::Result<Vec<u8>>, usize) {
        let mut input = bytes;
        let mut body = BodyReader::new(&mut input, framing);
        let mut out = Vec::new();
        let result = body.read_to_end(&mut out).map(|_| out);
        // A second read after an error gives the error again.
        if result.is_err() {
            assert!(body.read(&mut [0u8; 8]).is_err());
        }
        (result, input.len())
    }

    #[test]
    fn reads_exactly_the_content_length() {
        let (body, left) = read_all(b"hello world", Framing::Length(5));
        assert_eq!(body.unwrap(), b"hello");
        assert_eq!(left, 6);
        let (body, _) = read_all(b"hel", Framing::Length(5));
        assert_eq!(
            body.unwrap_err().to_string(),
            "the body ended after 3 of 5 bytes"
        );
        assert_eq!(read_all(b"next", Framing::Empty).0.unwrap(), b"");
    }

    #[test]
    fn decodes_chunked_bodies() {
        let (body, left) = read_all(
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT",
            Framing::Chunked,
        );
        assert_eq!(body.unwrap(), b"hello world");
        assert_eq!(left, 4);
        let (body, _) = read_all(b"5\nhello\n0\n\n", Framing::Chunked);
        assert_eq!(body.unwrap(), b"hello");
    }

    #[test]
    fn refuses_broken_chunked_bodies() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhello world\r\n0\r\n\r\n",
            b"5\r\nhel",
            b"100\r\nabc",
            b"5\r\nhello\r\n",
            b"11111111111111111\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"",
        ] {
            assert!(read_all(bad, Framing::Chunked).0.is_err(), "{bad:?}");
        }
        let trailers = format!("0\r\n{}\r\n", "T: x\r\n".repeat(MAX_TRAILERS + 1));
        assert!(read_all(trailers.as_bytes(), Framing::Chunked).0.is_err());
    }
}
