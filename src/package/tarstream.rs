/*!
The one tar reader: every place that reads a package's tar stream (verification, which also
marks where a signed download is cut, icons, the recompressed copy of a package that cannot be
cut) goes through `TarReader`, so they can never disagree about where an entry starts, what it
is called or how long it is.

It works on raw 512-byte blocks, as tar-rs does, but bounded everywhere input reaches: header
checksums are checked, sizes parsed strictly (octal or GNU base-256) with checked arithmetic,
pax records parsed by their length prefixes (a record repeated in one header, such as two
`size=` records, is refused), GNU long names and pax headers capped at 64 KiB each, at most one
of each per entry, and the stream as a whole bounded by the uncompressed-size limit. After the
first error the reader is fused: it returns that error again. Each entry keeps its raw head
(extension headers and header block, as read), so a copy can reproduce it byte for byte.
*/

use std::io::{self, Read};

/// Tar block size.
pub const BLOCK: usize = 512;
/// Largest tar extension header (pax, GNU long name) accepted.
pub const MAX_EXTENSION_HEADER: u64 = 64 * 1024;

/// Marks an I/O error as a limit violation, so it keeps its meaning through the layers above.
#[derive(Debug)]
pub struct LimitExceeded(pub String);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

pub fn limit_io_error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LimitExceeded(message))
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The head of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHead {
    /// Name: from a pax `path` record, else a GNU long name, else the header (with the ustar
    /// prefix).
    pub name: Vec<u8>,
    /// The header's type flag (`b'0'` or `0` regular file, `b'5'` directory, ...).
    pub kind: u8,
    /// Data size: from a pax `size` record, else the header.
    pub size: u64,
    /// The entry's extension headers and header block, exactly as read.
    pub raw: Vec<u8>,
}

impl EntryHead {
    pub fn is_regular(&self) -> bool {
        self.kind == b'0' || self.kind == 0
    }

    pub fn is_directory(&self) -> bool {
        self.kind == b'5'
    }
}

/// Reads the entries of a tar stream.
pub struct TarReader<R> {
    inner: R,
    /// Bytes read from `inner`, and the most allowed.
    total: u64,
    max_total: u64,
    limit_message: String,
    /// Data bytes of the current entry not read yet, and its padding after them.
    data_left: u64,
    padding_left: u64,
    /// The first error, returned again by every later call.
    failed: Option<(io::ErrorKind, String, bool)>,
    /// The end-of-archive marker was read.
    ended: bool,
}

impl<R: Read> TarReader<R> {
    /// A reader of at most `max_total` bytes of tar stream (headers included); going over is a
    /// limit error with `limit_message`.
    pub fn new(inner: R, max_total: u64, limit_message: String) -> TarReader<R> {
        TarReader {
            inner,
            total: 0,
            max_total,
            limit_message,
            data_left: 0,
            padding_left: 0,
            failed: None,
            ended: false,
        }
    }

    /// The underlying stream (after the end of the archive: what follows it).
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn fail(&mut self, error: io::Error) -> io::Error {
        let is_limit = error
            .get_ref()
            .is_some_and(|e| e.downcast_ref::<LimitExceeded>().is_some());
        let message = match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<LimitExceeded>())
        {
            Some(limit) => limit.0.clone(),
            None => error.to_string(),
        };
        self.failed = Some((error.kind(), message, is_limit));
        error
    }

    fn fused(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|(kind, message, is_limit)| {
            if *is_limit {
                limit_io_error(message.clone())
            } else {
                io::Error::new(*kind, message.clone())
            }
        })
    }

    /// Read exactly `buf.len()` bytes; `Ok(false)` on a clean end of stream before any byte.
    fn read_exact_or_end(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(invalid("the archive ends in the middle of a block")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.count(buf.len() as u64)?;
        Ok(true)
    }

    fn count(&mut self, n: u64) -> io::Result<()> {
        self.total = self.total.saturating_add(n);
        if self.total > self.max_total {
            return Err(limit_io_error(self.limit_message.clone()));
        }
        Ok(())
    }

    /// Skip what is left of the current entry's data and padding.
    fn skip_rest(&mut self) -> io::Result<()> {
        let mut buffer = [0u8; 8192];
        while self.data_left > 0 {
            let want = buffer
                .len()
                .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
            let n = self.read_data(&mut buffer[..want])?;
            if n == 0 {
                return Err(invalid("the archive ends in the middle of an entry"));
            }
        }
        while self.padding_left > 0 {
            let n = self.padding_left as usize;
            if !self.read_exact_or_end(&mut buffer[..n])? {
                return Err(invalid("the archive ends in the middle of an entry"));
            }
            self.padding_left = 0;
        }
        Ok(())
    }

    /// The underlying stream, while reading.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Skip the rest of the current entry: the stream is then at the next entry's start.
    pub fn finish_entry(&mut self) -> io::Result<()> {
        if let Some(error) = self.fused() {
            return Err(error);
        }
        if self.ended {
            return Ok(());
        }
        self.skip_rest().map_err(|e| self.fail(e))
    }

    /// The next entry, skipping the rest of the current one; `None` at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<EntryHead>> {
        if let Some(error) = self.fused() {
            return Err(error);
        }
        if self.ended {
            return Ok(None);
        }
        match self.next_entry_inner() {
            Ok(entry) => Ok(entry),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn next_entry_inner(&mut self) -> io::Result<Option<EntryHead>> {
        self.skip_rest()?;
        let mut raw = Vec::with_capacity(BLOCK);
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax: Option<PaxRecords> = None;
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_exact_or_end(&mut block)? {
                return Err(invalid("the archive has no end-of-archive marker"));
            }
            if block.iter().all(|&b| b == 0) {
                if !raw.is_empty() {
                    return Err(invalid("an extension header without its entry"));
                }
                // The end-of-archive marker is two zero blocks; a lone one at the very end of
                // the stream is tolerated, as GNU tar does.
                let mut second = [0u8; BLOCK];
                if self.read_exact_or_end(&mut second)? && second.iter().any(|&b| b != 0) {
                    return Err(invalid("a zero block in the middle of the archive"));
                }
                self.ended = true;
                return Ok(None);
            }
            check_checksum(&block)?;
            let kind = block[156];
            let field_size = parse_size_field(&block[124..136])
                .ok_or_else(|| invalid("invalid size field in a tar header"))?;
            raw.extend_from_slice(&block);
            match kind {
                b'x' | b'g' | b'L' | b'K' => {
                    if field_size > MAX_EXTENSION_HEADER {
                        return Err(limit_io_error(format!(
                            "a tar extension header is {field_size} bytes, more than the limit of {MAX_EXTENSION_HEADER} bytes"
                        )));
                    }
                    let padded = field_size.div_ceil(BLOCK as u64) as usize * BLOCK;
                    let mut data = vec![0u8; padded];
                    if !self.read_exact_or_end(&mut data)? {
                        return Err(invalid("the archive ends in an extension header"));
                    }
                    raw.extend_from_slice(&data);
                    data.truncate(field_size as usize);
                    match kind {
                        b'x' if pax.is_some() => {
                            return Err(invalid("two pax headers for one entry"));
                        }
                        b'x' => pax = Some(PaxRecords::parse(&data)?),
                        b'L' if long_name.is_some() => {
                            return Err(invalid("two GNU long names for one entry"));
                        }
                        b'L' => {
                            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                            data.truncate(end);
                            long_name = Some(data);
                        }
                        // Global pax headers and long link names carry nothing we use; they
                        // were checked and bounded like the others.
                        _ => {}
                    }
                }
                _ => {
                    let pax = pax.unwrap_or_default();
                    let name = pax
                        .path
                        .or(long_name)
                        .unwrap_or_else(|| header_name(&block));
                    let size = pax.size.unwrap_or(field_size);
                    self.data_left = size;
                    self.padding_left = size.div_ceil(BLOCK as u64) * BLOCK as u64 - size;
                    return Ok(Some(EntryHead {
                        name,
                        kind,
                        size,
                        raw,
                    }));
                }
            }
        }
    }

    /// Read data of the current entry (0 at its end).
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(error) = self.fused() {
            return Err(error);
        }
        if self.data_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(e)),
            }
        };
        if n == 0 {
            return Err(self.fail(invalid("the archive ends in the middle of an entry")));
        }
        if let Err(e) = self.count(n as u64) {
            return Err(self.fail(e));
        }
        self.data_left -= n as u64;
        Ok(n)
    }

    /// The current entry's data as a `Read`.
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { reader: self }
    }
}

/// The data of the current entry.
pub struct EntryData<'a, R> {
    reader: &'a mut TarReader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_data(buf)
    }
}

/// The records of a pax extended header that we use.
#[derive(Default)]
struct PaxRecords {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

impl PaxRecords {
    /// Parse `"<length> <key>=<value>\n"` records by their length prefixes.
    fn parse(mut data: &[u8]) -> io::Result<PaxRecords> {
        let mut records = PaxRecords::default();
        let mut seen: Vec<&[u8]> = Vec::new();
        while !data.is_empty() {
            let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
            let length: usize = std::str::from_utf8(&data[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
                .filter(|&n| digits > 0 && n > digits + 1 && n <= data.len())
                .ok_or_else(|| invalid("a malformed pax record length"))?;
            let record = &data[..length];
            if record[digits] != b' ' || record[length - 1] != b'\n' {
                return Err(invalid("a malformed pax record"));
            }
            let body = &record[digits + 1..length - 1];
            let equals = body
                .iter()
                .position(|&b| b == b'=')
                .filter(|&at| at > 0)
                .ok_or_else(|| invalid("a pax record without a key"))?;
            let (key, value) = (&body[..equals], &body[equals + 1..]);
            if seen.contains(&key) {
                return Err(invalid(format!(
                    "the pax record '{}' appears twice",
                    String::from_utf8_lossy(key)
                )));
            }
            seen.push(key);
            match key {
                b"path" => records.path = Some(value.to_vec()),
                b"size" => {
                    let size = std::str::from_utf8(value)
                        .ok()
                        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| invalid("a malformed pax size record"))?;
                    records.size = Some(size);
                }
                _ => {}
            }
            data = &data[length..];
        }
        Ok(records)
    }
}

/// The header's own name: `prefix/name` for ustar headers, `name` otherwise.
fn header_name(block: &[u8; BLOCK]) -> Vec<u8> {
    let field = |range: std::ops::Range<usize>| {
        let bytes = &block[range];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes[..end].to_vec()
    };
    let name = field(0..100);
    let is_ustar = &block[257..263] == b"ustar\0";
    let prefix = if is_ustar {
        field(345..500)
    } else {
        Vec::new()
    };
    if prefix.is_empty() {
        name
    } else {
        [prefix, b"/".to_vec(), name].concat()
    }
}

/// The header checksum: the sum of its bytes with the checksum field taken as spaces
/// (unsigned, or signed as some old tars wrote it).
fn check_checksum(block: &[u8; BLOCK]) -> io::Result<()> {
    let stored = parse_octal(&block[148..156])
        .ok_or_else(|| invalid("invalid checksum field in a tar header"))?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(invalid("a tar header with a wrong checksum"))
    }
}

/// Octal text padded with spaces or NULs.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

/// A tar numeric size field: octal text, or GNU base-256 when the high bit is set.
pub fn parse_size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    parse_octal(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], kind: u8, size: u64) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[..name.len()].copy_from_slice(name);
        block[100..107].copy_from_slice(b"0000644");
        block[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        block[156] = kind;
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        block
    }

    fn entry(name: &[u8], kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = header(name, kind, data.len() as u64).to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    fn pax(records: &[&str]) -> Vec<u8> {
        let mut data = String::new();
        for record in records {
            let mut length = record.len() + 3;
            loop {
                let text = format!("{length} {record}\n");
                if text.len() == length {
                    data = data + &text;
                    break;
                }
                length = text.len();
            }
        }
        entry(b"PaxHeader", b'x', data.as_bytes())
    }

    fn read_all(stream: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut reader = TarReader::new(stream, 1 << 30, "too big".into());
        let mut out = Vec::new();
        while let Some(head) = reader.next_entry()? {
            let mut data = Vec::new();
            reader.data().read_to_end(&mut data)?;
            out.push((head.name, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_entries_and_extension_headers() {
        let long = "d/".repeat(80) + "file";
        let stream = [
            entry(b"a.txt", b'0', b"hello"),
            pax(&["path=pax/name", "mtime=1"]),
            entry(b"short", b'0', b"world"),
            entry(b"././@LongLink", b'L', format!("{long}\0").as_bytes()),
            entry(b"cut", b'0', b""),
            vec![0u8; 1024],
        ]
        .concat();
        let entries = read_all(&stream).unwrap();
        let names: Vec<String> = entries
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(names, ["a.txt", "pax/name", long.as_str()]);
        assert_eq!(entries[1].1, b"world");
    }

    #[test]
    fn a_pax_size_overrides_the_header_and_may_not_repeat() {
        let mut data = b"0123456789".to_vec();
        data.resize(BLOCK, 0);
        let stream = [
            pax(&["size=10"]),
            header(b"sized", b'0', 0).to_vec(),
            data.clone(),
            vec![0u8; 1024],
        ]
        .concat();
        assert_eq!(read_all(&stream).unwrap()[0].1, b"0123456789");
        let twice = [
            pax(&["size=10", "size=600"]),
            header(b"sized", b'0', 0).to_vec(),
            data,
        ]
        .concat();
        let error = read_all(&twice).unwrap_err().to_string();
        assert!(error.contains("'size' appears twice"), "{error}");
    }

    #[test]
    fn refuses_what_is_malformed_or_too_large() {
        let mut bad_sum = entry(b"a", b'0', b"x");
        bad_sum[0] = b'b';
        let huge_pax = header(b"PaxHeader", b'x', 1 << 20).to_vec();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("checksum", bad_sum),
            ("limit", huge_pax),
            ("end-of-archive", entry(b"a", b'0', b"x")),
            ("middle of an entry", header(b"a", b'0', 5000).to_vec()),
            (
                "zero block",
                [vec![0u8; BLOCK], entry(b"a", b'0', b"x")].concat(),
            ),
            (
                "record length",
                [
                    entry(b"PaxHeader", b'x', b"99 path=x\n"),
                    entry(b"a", b'0', b""),
                ]
                .concat(),
            ),
        ];
        for (what, stream) in cases {
            let error = read_all(&stream).unwrap_err().to_string();
            assert!(error.contains(what), "{what}: {error}");
        }
        let big = entry(b"a", b'0', &[1; 5000]);
        let mut small = TarReader::new(&big[..], 1024, "over".into());
        small.next_entry().unwrap();
        let mut sink = Vec::new();
        let error = small.data().read_to_end(&mut sink).unwrap_err();
        assert!(error.get_ref().unwrap().is::<LimitExceeded>());
        // Fused: the same error again.
        assert_eq!(small.next_entry().unwrap_err().to_string(), "over");
    }
}
