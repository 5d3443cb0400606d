/*!
Answers as tiny_http sends them: bodies in memory as they are, files with sendfile(2) (or read
in blocks under TLS) followed by a computed tail, and readers copied in blocks.
*/

use super::{Body, ObjectPart, Response};
use std::fs::File;
use std::io::{self, Read, Write};

/// Our response as tiny_http's.
pub fn into_tiny_http(response: Response) -> tiny_http::Response {
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
            let (first, count) = span(length, &tail, range);
            tiny_http::ResponseBody::Stream(Box::new(FileBody {
                file,
                file_length: length,
                tail,
                first,
                count,
            }))
        }
        Body::Object(part) => {
            let (first, count) = span(part.length, &part.tail, part.range);
            let ObjectPart {
                object,
                length,
                tail,
                opened,
                ..
            } = *part;
            tiny_http::ResponseBody::Stream(Box::new(ObjectBody {
                reader: opened.or_else(|| object_reader(&object, length, first, count)),
                object_length: length,
                tail,
                first,
                count,
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
    tail: super::Tail,
    first: u64,
    count: u64,
}

impl tiny_http::StreamBody for FileBody {
    fn length(&self) -> u64 {
        self.count
    }

    /// The head, the file, then the tail, on a corked socket (as nginx's `tcp_nopush`: with
    /// `TCP_NODELAY` alone, the head and every pushed piece, or every 16 KiB TLS record, may
    /// leave as a small segment; over TLS, corking took downloads from about 0.8 of nginx's
    /// speed to par in `make bench`). Plain connections send the file with sendfile(2), with no
    /// copy through user space (safe because package files are never changed in place, only
    /// replaced); TLS must read it to encrypt it.
    fn send(self: Box<Self>, head: &[u8], out: &mut tiny_http::Transport) -> io::Result<()> {
        let (in_file, in_tail) = split(self.first, self.count, self.file_length);
        let (start, length) = (in_file.start, in_file.end - in_file.start);
        rustix::net::sockopt::set_tcp_cork(out.tcp(), true)?;
        let sent = out
            .write_all(head)
            .and_then(|()| match out.plain_socket() {
                Some(socket) => send_file(&self.file, start, length, socket),
                None => copy_file(&self.file, start, length, out),
            })
            .and_then(|()| self.tail.write_range(in_tail, out));
        rustix::net::sockopt::set_tcp_cork(out.tcp(), false)?;
        sent
    }
}

/// `count` bytes from `first` on of: an object in the S3 store, then `tail`. Only the bytes
/// asked for are fetched (one ranged GET, resumed when cut short).
struct ObjectBody {
    /// The object's part of the answer, already opened (`open_objects`).
    reader: Option<crate::s3::ObjectReader>,
    object_length: u64,
    tail: super::Tail,
    first: u64,
    count: u64,
}

impl tiny_http::StreamBody for ObjectBody {
    fn length(&self) -> u64 {
        self.count
    }

    fn send(self: Box<Self>, head: &[u8], out: &mut tiny_http::Transport) -> io::Result<()> {
        let (in_object, in_tail) = split(self.first, self.count, self.object_length);
        out.write_all(head)?;
        if let Some(mut reader) = self.reader {
            let copied = io::copy(&mut reader, out)?;
            if copied < in_object.end - in_object.start {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the object is shorter than announced",
                ));
            }
        }
        self.tail.write_range(in_tail, out)
    }
}

/// The first byte and the byte count a body of `length` bytes (of a file or an object) and
/// `tail` sends: `range` only, when set.
fn span(length: u64, tail: &super::Tail, range: Option<(u64, u64)>) -> (u64, u64) {
    match range {
        Some((first, last)) => (first, last - first + 1),
        None => (0, length + tail.len()),
    }
}

/// `count` bytes from `first` of a body whose first `length` bytes come from a file or an
/// object: the part in it, and the part in the tail (offsets within the tail).
fn split(first: u64, count: u64, length: u64) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
    let end = first + count;
    (
        first.min(length)..end.min(length),
        first.max(length) - length..end.max(length) - length,
    )
}

/// A reader of the object's part of `count` bytes from `first`, if any.
fn object_reader(
    object: &crate::s3::RemoteObject,
    length: u64,
    first: u64,
    count: u64,
) -> Option<crate::s3::ObjectReader> {
    let end = (first + count).min(length);
    (first < end).then(|| object.objects.reader(&object.name, first, end))
}

/// Start fetching an object body before its status is sent: when the object store cannot
/// serve it, the answer is `503` with `Retry-After` (a server fault, said on the console), not
/// a `200` whose body breaks off.
pub fn open_objects(mut response: Response, console: &crate::console::Console) -> Response {
    let Body::Object(part) = &mut response.body else {
        return response;
    };
    let (first, count) = span(part.length, &part.tail, part.range);
    let Some(mut reader) = object_reader(&part.object, part.length, first, count) else {
        return response;
    };
    match reader.open() {
        Ok(()) => {
            part.opened = Some(reader);
            response
        }
        Err(e) => {
            console.event(&crate::console::Event::Failed {
                file: part.object.name.clone(),
                reason: e.to_string(),
            });
            Response::status(503, "Service Unavailable: the object store does not answer")
                .with_header("Retry-After", "5")
        }
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

    fn send(mut self: Box<Self>, head: &[u8], out: &mut tiny_http::Transport) -> io::Result<()> {
        out.write_all(head)?;
        let skipped = io::copy(&mut (&mut self.reader).take(self.skip), &mut io::sink())?;
        if skipped < self.skip {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body is shorter than announced",
            ));
        }
        let copied = io::copy(&mut (&mut self.reader).take(self.length), out)?;
        if copied < self.length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body is shorter than announced",
            ));
        }
        Ok(())
    }
}

/// Blocks of a file copied through user space (TLS): four full TLS records, so system calls
/// are few, yet small enough that thousands of TLS downloads stay within a few hundred MiB
/// (256 KiB blocks were no faster in `make bench`).
const COPY_BLOCK: usize = 64 * 1024;

/// Write `length` bytes of `file` from `start` to `out`, in `COPY_BLOCK`s read with pread.
fn copy_file(file: &File, start: u64, length: u64, out: &mut impl Write) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buffer = vec![0u8; COPY_BLOCK.min(length as usize)];
    let (mut offset, end) = (start, start + length);
    while offset < end {
        let want = (end - offset).min(buffer.len() as u64) as usize;
        let n = match file.read_at(&mut buffer[..want], offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file is shorter than announced",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buffer[..n])?;
        offset += n as u64;
    }
    Ok(())
}

/// Send `length` bytes of `file` from `start`, with sendfile(2).
fn send_file(file: &File, start: u64, length: u64, socket: &std::net::TcpStream) -> io::Result<()> {
    let mut offset = start;
    let mut left = length;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        match rustix::fs::sendfile(socket, file, Some(&mut offset), chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file is shorter than announced",
                ));
            }
            Ok(n) => left -= n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
