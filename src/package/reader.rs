/*!
Reading and verifying a package while it streams: gzip -> tar -> entries, in one pass.

Payload files are never written anywhere or held in memory: their bytes go through the digest
and the architecture detector chunk by chunk. Only the metadata entries (header, `info.yaml`,
icon, footers) are read into memory, each bounded by `Limits::max_metadata_size`. Everything
that input controls is bounded: file size, uncompressed size, entry count, tar extension
headers (`TarGuard`), YAML depth and node count. The first error ends the read.
*/

use super::arch::ArchDetector;
use super::digest::{PackageDigest, from_hex, to_hex};
use super::gzip::GzipMembers;
use super::manifest::{Footer, Header, Manifest, merge_footer, parse_header, parse_info};
use super::{FOOTER_ENTRY, HEADER_ENTRY, Limits, PackageError, PackageInfo};
use openssl::sha::Sha1;
use std::io::{self, BufReader, Read};
use tar::EntryType;
use unicode_normalization::UnicodeNormalization;

/// Read size for payload data and the input buffer size.
const CHUNK: usize = 256 * 1024;
/// Largest tar extension header (pax, GNU long name) we accept.
const MAX_EXTENSION_HEADER: u64 = 64 * 1024;
/// How much zero padding may follow the end of the archive inside the gzip stream.
const MAX_TAR_PADDING: u64 = 1 << 20;

/// Read and verify a package from `input`, keeping only its metadata.
pub fn read_package<R: Read>(input: R, limits: &Limits) -> Result<PackageInfo, PackageError> {
    let mut source = CountingReader {
        inner: input,
        sha1: Sha1::new(),
        size: 0,
        max_size: limits.max_package_size,
    };
    let (parts, digest) = {
        let gzip =
            GzipMembers::new(BufReader::with_capacity(CHUNK, &mut source)).map_err(read_error)?;
        let guard = TarGuard::new(gzip, limits.max_uncompressed_size);
        let mut archive = tar::Archive::new(guard);
        let mut state = ReadState::default();
        for entry in archive.entries().map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            state.entry(entry, limits)?;
        }
        let digest = state.check_complete()?;
        drain_padding(archive.into_inner())?;
        (state, digest)
    };
    // Reading the remainder of the file verifies the trailing zero padding and completes the hash.
    io::copy(&mut source, &mut io::sink()).map_err(read_error)?;
    parts.into_info(digest, source.sha1.finish(), source.size)
}

/// Where we are in the package's fixed entry order.
#[derive(Default, PartialEq, Eq, Debug, Clone, Copy)]
enum Stage {
    #[default]
    Header,
    Info,
    Icon,
    Payload,
    Footers,
}

#[derive(Default)]
struct ReadState {
    stage: Stage,
    entries: u64,
    uncompressed: u64,
    header: Option<Header>,
    manifest: Option<Manifest>,
    icon: Option<Vec<u8>>,
    footer: Footer,
    digest: PackageDigest,
    /// The architecture found so far and the file that showed it.
    architecture: Option<String>,
}

impl ReadState {
    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        limits: &Limits,
    ) -> Result<(), PackageError> {
        let raw_name = entry.path_bytes().into_owned();
        let name = entry_name(&raw_name)?;
        self.entries += 1;
        if self.entries > limits.max_entries {
            return Err(PackageError::Limit(format!(
                "the package has more than {} entries (the maximum entry count)",
                limits.max_entries
            )));
        }
        let size = entry.size();
        self.uncompressed = self.uncompressed.saturating_add(size);
        if self.uncompressed > limits.max_uncompressed_size {
            return Err(PackageError::Limit(uncompressed_limit_message(
                limits.max_uncompressed_size,
            )));
        }
        let kind = entry.header().entry_type();
        let is_dir = kind == EntryType::Directory;
        if !is_dir && !matches!(kind, EntryType::Regular) {
            return Err(PackageError::invalid(format!(
                "entry '{name}' is a {}: only regular files and directories are allowed",
                entry_type_name(kind)
            )));
        }
        let name = name.strip_suffix('/').unwrap_or(&name).to_string();

        if name == HEADER_ENTRY {
            if self.stage != Stage::Header {
                return Err(PackageError::invalid(format!(
                    "{HEADER_ENTRY} must be the first entry, and only the first"
                )));
            }
            let text = read_metadata(&mut entry, &name, size, limits)?;
            let header = parse_header(&text).map_err(PackageError::Invalid)?;
            if let Some(extra_signed) = &header.extra_signed {
                self.digest.add_extra_signed(extra_signed);
            }
            self.header = Some(header);
            self.stage = Stage::Info;
            return Ok(());
        }
        if self.stage == Stage::Header {
            return Err(PackageError::invalid(format!(
                "the first entry must be {HEADER_ENTRY}, but is '{name}'"
            )));
        }
        if name == FOOTER_ENTRY {
            match self.stage {
                Stage::Info => return Err(PackageError::invalid("the package has no info.yaml")),
                Stage::Icon => return Err(self.missing_icon(None)),
                _ => {}
            }
            let text = read_metadata(&mut entry, &name, size, limits)?;
            merge_footer(&text, &mut self.footer).map_err(PackageError::Invalid)?;
            self.stage = Stage::Footers;
            return Ok(());
        }
        if self.stage == Stage::Footers {
            return Err(PackageError::invalid(format!(
                "entry '{name}' follows the package footer: only footers may come last"
            )));
        }
        if name.starts_with("--") {
            return Err(PackageError::invalid(format!(
                "entry '{name}' uses a reserved name (starting with '--')"
            )));
        }
        check_path(&name)?;

        match (self.stage, is_dir) {
            (Stage::Info, _) if is_dir || name != "info.yaml" => Err(PackageError::invalid(
                format!("the first file in the package must be info.yaml, but is '{name}'"),
            )),
            (Stage::Info, _) => self.info_entry(&mut entry, &name, size, limits),
            (Stage::Icon, _) => {
                let icon = self.manifest.as_ref().and_then(|m| m.icon.clone());
                if is_dir || icon.as_deref() != Some(name.as_str()) {
                    return Err(self.missing_icon(Some(&name)));
                }
                let bytes = read_bounded(&mut entry, &name, size, limits)?;
                self.add_file(&bytes, size, &name)?;
                self.icon = Some(bytes);
                self.stage = Stage::Payload;
                Ok(())
            }
            (_, true) => {
                self.digest.add_directory(&name);
                Ok(())
            }
            (_, false) => self.stream_file(&mut entry, &name, size),
        }
    }

    fn info_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        size: u64,
        limits: &Limits,
    ) -> Result<(), PackageError> {
        let bytes = read_bounded(entry, name, size, limits)?;
        self.add_file(&bytes, size, name)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| PackageError::invalid("info.yaml is not valid UTF-8 text"))?;
        let manifest = parse_info(&text).map_err(PackageError::Invalid)?;
        let header_id = self
            .header
            .as_ref()
            .map(|h| h.package_id.as_str())
            .unwrap_or("");
        if manifest.id != header_id {
            return Err(PackageError::invalid(format!(
                "the package header's id '{header_id}' does not match the id '{}' in info.yaml",
                manifest.id
            )));
        }
        self.stage = if manifest.icon.is_some() {
            Stage::Icon
        } else {
            Stage::Payload
        };
        self.manifest = Some(manifest);
        Ok(())
    }

    fn missing_icon(&self, found: Option<&str>) -> PackageError {
        let icon = self
            .manifest
            .as_ref()
            .and_then(|m| m.icon.as_deref())
            .unwrap_or("");
        PackageError::invalid(match found {
            Some(found) => format!(
                "the icon '{icon}' named in info.yaml must be the second file in the package, but found '{found}'"
            ),
            None => format!("the icon '{icon}' named in info.yaml is missing from the package"),
        })
    }

    /// A small payload file already in memory (info.yaml, icon).
    fn add_file(&mut self, bytes: &[u8], size: u64, name: &str) -> Result<(), PackageError> {
        let mut detector = ArchDetector::default();
        detector.feed(bytes);
        self.digest.add_file_data(bytes);
        self.digest.finish_file(size, name);
        self.note_architecture(detector.finish())
    }

    /// A payload file of any size: hashed and inspected chunk by chunk.
    fn stream_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        size: u64,
    ) -> Result<(), PackageError> {
        let mut detector = ArchDetector::default();
        let mut buffer = vec![0u8; CHUNK.min(size as usize).max(1)];
        let mut remaining = size;
        while remaining > 0 {
            let want = buffer.len().min(remaining as usize);
            let n = entry.read(&mut buffer[..want]).map_err(read_error)?;
            if n == 0 {
                return Err(PackageError::invalid(format!(
                    "the package ends in the middle of entry '{name}'"
                )));
            }
            self.digest.add_file_data(&buffer[..n]);
            detector.feed(&buffer[..n]);
            remaining -= n as u64;
        }
        self.digest.finish_file(size, name);
        self.note_architecture(detector.finish())
    }

    fn note_architecture(&mut self, found: Option<String>) -> Result<(), PackageError> {
        match (&self.architecture, found) {
            (_, None) => Ok(()),
            (None, Some(found)) => {
                self.architecture = Some(found);
                Ok(())
            }
            (Some(known), Some(found)) if *known == found => Ok(()),
            (Some(known), Some(found)) => Err(PackageError::invalid(format!(
                "mixed architectures: {known} and {found}"
            ))),
        }
    }

    /// After the last entry: everything required was there, and the digest matches.
    fn check_complete(&mut self) -> Result<[u8; 32], PackageError> {
        match self.stage {
            Stage::Header => return Err(PackageError::invalid("the package is empty")),
            Stage::Info => return Err(PackageError::invalid("the package has no info.yaml")),
            Stage::Icon => return Err(self.missing_icon(None)),
            Stage::Payload => return Err(PackageError::invalid("the package has no footer")),
            Stage::Footers => {}
        }
        if !self.footer.has_format {
            return Err(PackageError::invalid(
                "the package footer has no format document (am-package-footer)",
            ));
        }
        let written = self
            .footer
            .digest
            .as_deref()
            .ok_or_else(|| PackageError::invalid("the package footer has no digest"))?;
        let expected = from_hex(&written.to_ascii_lowercase()).ok_or_else(|| {
            PackageError::invalid(format!(
                "the package footer's digest '{written}' is malformed"
            ))
        })?;
        let actual = std::mem::take(&mut self.digest).finish();
        if actual != expected {
            return Err(PackageError::invalid(format!(
                "package digest mismatch: the footer says {written}, the content gives {}",
                to_hex(&actual)
            )));
        }
        Ok(actual)
    }

    fn into_info(
        self,
        digest: [u8; 32],
        sha1: [u8; 20],
        file_size: u64,
    ) -> Result<PackageInfo, PackageError> {
        let (Some(header), Some(manifest)) = (self.header, self.manifest) else {
            return Err(PackageError::invalid("the package is incomplete"));
        };
        Ok(PackageInfo {
            id: header.package_id,
            architecture: self.architecture,
            names: manifest.names,
            descriptions: manifest.descriptions,
            version: manifest.version,
            categories: manifest.categories,
            icon: self.icon,
            disk_space_used: header.disk_space_used,
            extra: header.extra,
            extra_signed: header.extra_signed,
            digest,
            developer_signature: decode_signature(
                self.footer.developer_signature,
                "developerSignature",
            )?,
            store_signature: decode_signature(self.footer.store_signature, "storeSignature")?,
            sha1,
            file_size,
        })
    }
}

fn decode_signature(text: Option<String>, field: &str) -> Result<Option<Vec<u8>>, PackageError> {
    let Some(text) = text else { return Ok(None) };
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    openssl::base64::decode_block(&compact)
        .map(Some)
        .map_err(|_| {
            PackageError::invalid(format!("the package footer's {field} is not valid base64"))
        })
}

/// The entry's name as UTF-8 in Unicode NFC.
fn entry_name(raw: &[u8]) -> Result<String, PackageError> {
    let name = std::str::from_utf8(raw).map_err(|_| {
        PackageError::invalid(format!(
            "entry name '{}' is not valid UTF-8",
            String::from_utf8_lossy(raw)
        ))
    })?;
    Ok(match unicode_normalization::is_nfc_quick(name.chars()) {
        unicode_normalization::IsNormalized::Yes => name.to_string(),
        _ => name.nfc().collect(),
    })
}

/// Refuse names that could land outside the extraction root.
fn check_path(name: &str) -> Result<(), PackageError> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.starts_with('/') {
        Some("is an absolute path")
    } else if name.split('/').any(|c| c == "..") {
        Some("points outside the package ('..')")
    } else if name.split('/').any(|c| c.is_empty() || c == ".") {
        Some("is not a normalized path")
    } else if name.contains('\0') {
        Some("contains a NUL character")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(PackageError::invalid(format!(
            "entry name '{name}' {problem}"
        ))),
        None => Ok(()),
    }
}

fn entry_type_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Symlink => "symbolic link",
        EntryType::Link => "hard link",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "fifo",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}

/// Read a metadata entry as UTF-8 text, within the metadata size limit.
fn read_metadata<R: Read>(
    entry: &mut R,
    name: &str,
    size: u64,
    limits: &Limits,
) -> Result<String, PackageError> {
    let bytes = read_bounded(entry, name, size, limits)?;
    String::from_utf8(bytes)
        .map_err(|_| PackageError::invalid(format!("entry '{name}' is not valid UTF-8 text")))
}

fn read_bounded<R: Read>(
    entry: &mut R,
    name: &str,
    size: u64,
    limits: &Limits,
) -> Result<Vec<u8>, PackageError> {
    if size > limits.max_metadata_size {
        return Err(PackageError::Limit(format!(
            "entry '{name}' is {size} bytes, more than the maximum metadata size of {} bytes",
            limits.max_metadata_size
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 != size {
        return Err(PackageError::invalid(format!(
            "the package ends in the middle of entry '{name}'"
        )));
    }
    Ok(bytes)
}

/// After the end-of-archive marker only zero blocks may follow, and not too many.
fn drain_padding<R: Read>(guard: TarGuard<R>) -> Result<(), PackageError> {
    let mut rest = guard.inner.take(MAX_TAR_PADDING + 1);
    let mut buffer = [0u8; 8192];
    let mut total = 0u64;
    loop {
        let n = rest.read(&mut buffer).map_err(read_error)?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        if total > MAX_TAR_PADDING || buffer[..n].iter().any(|&b| b != 0) {
            return Err(PackageError::invalid(
                "unexpected data after the end of the archive",
            ));
        }
    }
}

fn uncompressed_limit_message(max: u64) -> String {
    format!("the package's content exceeds the maximum uncompressed size of {max} bytes")
}

/// Marks an I/O error as a limit violation, so it keeps its meaning through the tar layer.
#[derive(Debug)]
struct LimitExceeded(String);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

fn limit_io_error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LimitExceeded(message))
}

/// Turn an error from the gzip/tar layers into a package error, keeping limit violations.
fn read_error(error: io::Error) -> PackageError {
    let mut current: Option<&(dyn std::error::Error + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(e) = current {
        if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
            return PackageError::Limit(limit.0.clone());
        }
        current = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|e| e as _),
            None => e.source(),
        };
    }
    if super::gzip::is_wrong_file_type(&error) {
        return PackageError::invalid("wrong file type");
    }
    PackageError::invalid(format!("the package data is corrupt: {error}"))
}

/// Counts and hashes the raw package bytes, and bounds their number.
struct CountingReader<R> {
    inner: R,
    sha1: Sha1,
    size: u64,
    max_size: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha1.update(&buf[..n]);
        self.size += n as u64;
        if self.size > self.max_size {
            return Err(limit_io_error(format!(
                "the package is larger than the maximum package size of {} bytes",
                self.max_size
            )));
        }
        Ok(n)
    }
}

/// Watches the tar stream between decompressor and tar parser: bounds the total bytes and the
/// size of extension headers (pax, GNU long names), which the tar crate reads into memory.
struct TarGuard<R> {
    inner: R,
    max_total: u64,
    total: u64,
    /// Bytes of the current header block seen so far.
    header: Vec<u8>,
    /// Data bytes (padded to 512) left before the next header block.
    data_left: u64,
    /// The data of a pax header being collected (with padding) and its real length.
    pax: Option<(Vec<u8>, usize)>,
    /// A size from a pax header that overrides the next header's size field.
    pax_size: Option<u64>,
}

impl<R: Read> TarGuard<R> {
    fn new(inner: R, max_total: u64) -> Self {
        TarGuard {
            inner,
            max_total,
            total: 0,
            header: Vec::with_capacity(512),
            data_left: 0,
            pax: None,
            pax_size: None,
        }
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.data_left > 0 {
                let n = (self.data_left.min(data.len() as u64)) as usize;
                if let Some((pax, _)) = &mut self.pax {
                    pax.extend_from_slice(&data[..n]);
                }
                self.data_left -= n as u64;
                data = &data[n..];
                if self.data_left == 0
                    && let Some((mut pax, len)) = self.pax.take()
                {
                    pax.truncate(len);
                    self.pax_size = pax_size_record(&pax);
                }
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == 512 {
                self.header_complete()?;
                self.header.clear();
            }
        }
        Ok(())
    }

    fn header_complete(&mut self) -> io::Result<()> {
        let block = &self.header;
        if block.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let kind = block[156];
        let field_size = parse_size_field(&block[124..136]).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "invalid size field in a tar header",
            )
        })?;
        let size = match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if field_size > MAX_EXTENSION_HEADER {
                    return Err(limit_io_error(format!(
                        "a tar extension header is {field_size} bytes, more than the limit of {MAX_EXTENSION_HEADER} bytes"
                    )));
                }
                if kind == b'x' {
                    let padded = field_size.div_ceil(512) * 512;
                    self.pax = Some((Vec::with_capacity(padded as usize), field_size as usize));
                }
                field_size
            }
            _ => self.pax_size.take().unwrap_or(field_size),
        };
        self.data_left = size.div_ceil(512).saturating_mul(512);
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        // Headers and padding come on top of the content: allow them some room.
        if self.total
            > self
                .max_total
                .saturating_add(self.max_total / 8 + (1 << 20))
        {
            return Err(limit_io_error(uncompressed_limit_message(self.max_total)));
        }
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

/// A tar numeric size field: octal text, or GNU base-256 when the high bit is set.
fn parse_size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// The `size` record of pax extended header data (`"<len> size=<n>\n"` records).
fn pax_size_record(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    text.lines()
        .filter_map(|record| record.split_once(' ').map(|(_, kv)| kv))
        .filter_map(|kv| kv.strip_prefix("size="))
        .next_back()
        .and_then(|v| v.parse().ok())
}
