/*!
A streaming `multipart/form-data` reader (RFC 7578, RFC 2046 5.1) over a request body, for the
Deployment Server's `/upload`: parts are read one after another, each part's data as a `Read`,
so a package streams to its file and is never held in memory.

Written here because the maintained Rust parsers (multer, multra, s3s-multipart) are async,
and the synchronous `multipart` crate is unmaintained. Bounded in every way a client reaches:
the boundary (1 to 70 characters), part headers (16 KiB, 8 fields), the number of parts, the
preamble; a body that ends before the closing delimiter is an error, never a short part that
looks complete.
*/

use std::io::{self, Read};

/// Most parts read.
pub const MAX_PARTS: usize = 16;
/// Largest part head.
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a part head.
const MAX_FIELDS: usize = 8;
/// Largest preamble skipped before the first delimiter.
const MAX_PREAMBLE: usize = 64 * 1024;
/// Read buffer.
const BUFFER: usize = 64 * 1024;

/// Why a body is not a well-formed form.
#[derive(Debug)]
pub enum MultipartError {
    /// The body breaks the format (said in words).
    Malformed(String),
    /// Reading the body failed (a timeout, a cut connection).
    Io(io::Error),
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipartError::Malformed(why) => write!(f, "malformed multipart body: {why}"),
            MultipartError::Io(e) => write!(f, "the upload was interrupted: {e}"),
        }
    }
}

fn malformed<T>(why: &str) -> Result<T, MultipartError> {
    Err(MultipartError::Malformed(why.to_string()))
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let value = params.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
    })?;
    let valid = (1..=70).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !value.ends_with(' ');
    valid.then(|| value.to_string())
}

/// A part's name and file name (`Content-Disposition: form-data; name="x"; filename="y"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHead {
    pub name: String,
    pub filename: Option<String>,
}

/// Where the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// In a part's data.
    Data,
    /// Just after a delimiter: a part head or the end follows.
    Delimiter,
    End,
}

/// Reads the parts of one body.
pub struct Multipart<'a> {
    body: &'a mut dyn Read,
    /// `\r\n--<boundary>`.
    delimiter: Vec<u8>,
    buffer: Vec<u8>,
    start: usize,
    eof: bool,
    state: State,
    parts: usize,
}

impl<'a> Multipart<'a> {
    pub fn new(body: &'a mut dyn Read, boundary: &str) -> Multipart<'a> {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        // The body starts with `--<boundary>`: as if a CRLF came before it.
        let mut buffer = Vec::with_capacity(BUFFER + delimiter.len());
        buffer.extend_from_slice(b"\r\n");
        Multipart {
            body,
            delimiter,
            buffer,
            start: 0,
            eof: false,
            state: State::Preamble,
            parts: 0,
        }
    }

    /// Read more of the body into the buffer; false at its end.
    fn fill(&mut self) -> Result<bool, MultipartError> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let old = self.buffer.len();
        self.buffer.resize(old + BUFFER, 0);
        let n = loop {
            match self.body.read(&mut self.buffer[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buffer.truncate(old);
                    return Err(MultipartError::Io(e));
                }
            }
        };
        self.buffer.truncate(old + n);
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Data of the current part (or the preamble) into `out`; 0 at its end (the delimiter is
    /// then consumed).
    fn read_data(&mut self, out: &mut [u8]) -> Result<usize, MultipartError> {
        loop {
            let available = &self.buffer[self.start..];
            if let Some(at) = find(available, &self.delimiter) {
                if at == 0 {
                    self.start += self.delimiter.len();
                    self.state = State::Delimiter;
                    return Ok(0);
                }
                let n = at.min(out.len());
                out[..n].copy_from_slice(&available[..n]);
                self.start += n;
                return Ok(n);
            }
            // Everything but what may be the start of a delimiter is data.
            let safe = available.len().saturating_sub(self.delimiter.len() - 1);
            if safe > 0 {
                let n = safe.min(out.len());
                out[..n].copy_from_slice(&available[..n]);
                self.start += n;
                return Ok(n);
            }
            if !self.fill()? {
                return malformed("the body ends inside a part (no closing delimiter)");
            }
        }
    }

    /// The next part's head, or `None` after the closing delimiter. The rest of the current
    /// part is skipped.
    pub fn next_part(&mut self) -> Result<Option<PartHead>, MultipartError> {
        let mut sink = [0u8; 4096];
        let mut skipped = 0;
        while matches!(self.state, State::Preamble | State::Data) {
            let n = self.read_data(&mut sink)?;
            if self.state == State::Preamble {
                skipped += n;
                if skipped > MAX_PREAMBLE {
                    return malformed("no delimiter at the start of the body");
                }
            }
        }
        if self.state == State::End {
            return Ok(None);
        }
        // After a delimiter: `--` ends the body; otherwise padding, CRLF, and a part head.
        let line = self.read_line()?;
        if line.starts_with(b"--") {
            self.state = State::End;
            return Ok(None);
        }
        if !line.iter().all(|&b| b == b' ' || b == b'\t') {
            return malformed("a delimiter followed by something else than a line end");
        }
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return malformed("too many parts");
        }
        let head = self.read_head()?;
        self.state = State::Data;
        Ok(Some(head))
    }

    /// One line (without its CRLF), at most `MAX_HEAD` bytes.
    fn read_line(&mut self) -> Result<Vec<u8>, MultipartError> {
        loop {
            let available = &self.buffer[self.start..];
            if let Some(at) = find(available, b"\r\n") {
                let line = available[..at].to_vec();
                self.start += at + 2;
                return Ok(line);
            }
            if available.len() > MAX_HEAD {
                return malformed("a part head line is too long");
            }
            if !self.fill()? {
                return malformed("the body ends inside a part head");
            }
        }
    }

    fn read_head(&mut self) -> Result<PartHead, MultipartError> {
        let mut disposition: Option<String> = None;
        let mut size = 0;
        for _ in 0..=MAX_FIELDS {
            let line = self.read_line()?;
            if line.is_empty() {
                let Some(value) = disposition else {
                    return malformed("a part without Content-Disposition");
                };
                return parse_disposition(&value);
            }
            size += line.len();
            if size > MAX_HEAD {
                return malformed("a part head is too large");
            }
            let Ok(line) = String::from_utf8(line) else {
                return malformed("a part head that is not UTF-8");
            };
            let Some((name, value)) = line.split_once(':') else {
                return malformed("a part head field without ':'");
            };
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                disposition = Some(value.trim().to_string());
            }
        }
        malformed("too many fields in a part head")
    }

    /// A reader of the current part's data.
    pub fn part(&mut self) -> PartReader<'_, 'a> {
        PartReader { multipart: self }
    }
}

/// The current part's data, as a `Read`; errors are `InvalidData` (malformed) or the body's
/// own.
pub struct PartReader<'m, 'a> {
    multipart: &'m mut Multipart<'a>,
}

impl Read for PartReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.multipart.state != State::Data || out.is_empty() {
            return Ok(0);
        }
        self.multipart.read_data(out).map_err(|e| match e {
            MultipartError::Io(e) => e,
            MultipartError::Malformed(why) => io::Error::new(io::ErrorKind::InvalidData, why),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `form-data; name="x"; filename="y"`: quoted values may escape `"` and `\` with `\`.
fn parse_disposition(value: &str) -> Result<PartHead, MultipartError> {
    let (kind, mut rest) = value.split_once(';').unwrap_or((value, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return malformed("a part that is not form-data");
    }
    let (mut name, mut filename) = (None, None);
    while !rest.trim().is_empty() {
        let trimmed = rest.trim_start();
        let Some((param, after)) = trimmed.split_once('=') else {
            return malformed("a Content-Disposition parameter without a value");
        };
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let Some(end) = end else {
                return malformed("an unterminated quoted Content-Disposition value");
            };
            (value, &quoted[end..])
        } else {
            let (value, after) = after.split_once(';').unwrap_or((after, ""));
            (value.trim().to_string(), after)
        };
        match param.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value),
            "filename" => filename = Some(value),
            _ => {}
        }
        rest = after.trim_start().strip_prefix(';').unwrap_or(after);
    }
    match name {
        Some(name) => Ok(PartHead { name, filename }),
        None => malformed("a part without a name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &[u8], chunk: usize) -> Result<Vec<(PartHead, Vec<u8>)>, MultipartError> {
        struct Trickle<'b>(&'b [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut source = Trickle(body, chunk);
        let mut multipart = Multipart::new(&mut source, "XyZ");
        let mut out = Vec::new();
        while let Some(head) = multipart.next_part()? {
            let mut data = Vec::new();
            multipart
                .part()
                .read_to_end(&mut data)
                .map_err(MultipartError::Io)?;
            out.push((head, data));
        }
        Ok(out)
    }

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\nA \"quoted\"\r\n--X text\r\n--XyZ\r\nContent-Disposition: form-data; name=\"package\"; filename=\"a \\\"b\\\".ampkg\"\r\nContent-Type: application/octet-stream\r\n\r\n\x1f\x8b\r\n--XyY\r\n--XyZ--\r\n";

    #[test]
    fn reads_parts_whatever_the_chunks() {
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            let parts = parts(BODY, chunk).unwrap();
            assert_eq!(parts.len(), 2);
            assert_eq!(parts[0].0.name, "description");
            assert_eq!(parts[0].1, b"A \"quoted\"\r\n--X text");
            assert_eq!(parts[1].0.filename.as_deref(), Some("a \"b\".ampkg"));
            assert_eq!(parts[1].1, b"\x1f\x8b\r\n--XyY");
        }
    }

    #[test]
    fn refuses_broken_bodies() {
        let cut = &BODY[..BODY.len() - 10];
        assert!(parts(cut, 5).is_err());
        assert!(parts(b"--XyZ\r\n\r\nno disposition\r\n--XyZ--", 5).is_err());
        assert!(
            parts(
                b"--XyZ\r\nContent-Disposition: attachment\r\n\r\nx\r\n--XyZ--",
                5
            )
            .is_err()
        );
        let many: Vec<u8> = (0..20)
            .flat_map(|_| b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n".to_vec())
            .collect();
        assert!(parts(&many, 100).is_err());
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("text/plain; boundary=x"), None);
    }
}
