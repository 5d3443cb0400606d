/*!
Reading and verifying a package while it streams: gzip -> tar -> entries, in one pass.

Payload files are never written anywhere or held in memory: their bytes go through the digest
and the architecture detector chunk by chunk. Only the metadata entries (header, `info.yaml`,
icon, footers) are read into memory, each bounded by `Limits::max_metadata_size`. Everything
that input controls is bounded: file size, uncompressed size, entry count, tar extension
headers (`tarstream`, the one tar reader, shared with signing), YAML depth and node count. The
first error ends the read.
*/

use super::arch::ArchDetector;
use super::digest::{PackageDigest, from_hex, to_hex};
use super::entry_names::{check_path, entry_name, entry_type_name};
use super::gzip::GzipMembers;
use super::manifest::{Footer, Header, Manifest, merge_footer, parse_header, parse_info};
use super::reading::{
    CountingReader, drain_padding, read_bounded, read_error, read_metadata,
    uncompressed_limit_message,
};
use super::splice::{CutPoint, CutRecorder, Splice};
use super::tarstream::{EntryHead, TarReader};
use super::{FOOTER_ENTRY, HEADER_ENTRY, Limits, PackageError, PackageInfo};
use openssl::sha::Sha1;
use std::io::{self, BufReader, Read};

/// Read size for payload data and the input buffer size.
const CHUNK: usize = 256 * 1024;

/// Read and verify a package from `input`, keeping only its metadata.
pub fn read_package<R: Read>(input: R, limits: &Limits) -> Result<PackageInfo, PackageError> {
    let mut source = CountingReader {
        inner: input,
        sha1: Sha1::new(),
        size: 0,
        max_size: limits.max_package_size,
    };
    let (parts, digest, splice) = {
        let gzip = GzipMembers::new(BufReader::with_capacity(CHUNK, &mut source))
            .map_err(read_error)?
            .record_cut();
        let mut tar = tar_reader(gzip, limits);
        let mut state = ReadState::default();
        let mut cut = CutChoice::default();
        loop {
            // The gzip layer is exactly at the next entry's start: a possible cut point.
            tar.finish_entry().map_err(read_error)?;
            let at = tar.inner_mut().position();
            if let Some(recorder) = tar.inner_mut().recorder() {
                recorder.mark(at);
            }
            let Some(head) = tar.next_entry().map_err(read_error)? else {
                cut.end_of_archive(tar.inner_mut().recorder());
                break;
            };
            let only_store_signature = state.entry(&head, &mut tar.data(), limits)?;
            cut.after_entry(only_store_signature, tar.inner_mut().recorder());
        }
        let digest = state.check_complete()?;
        drain_padding(tar.into_inner())?;
        (state, digest, cut.into_splice())
    };
    // Reading the remainder of the file verifies the trailing zero padding and completes the hash.
    io::copy(&mut source, &mut io::sink()).map_err(read_error)?;
    let info = parts.into_info(digest, source.sha1.finish(), source.size, splice)?;
    if info.listed_size() > limits.max_listed_size() {
        return Err(PackageError::Limit(format!(
            "the names, descriptions and categories are {} bytes, more than the {} bytes a package may list (a sixteenth of the maximum metadata size)",
            info.listed_size(),
            limits.max_listed_size()
        )));
    }
    Ok(info)
}

/// The icon of a (verified) package, read from its file: the third entry, after the header
/// and `info.yaml`. Returns a reader of exactly its bytes, and their number.
pub fn icon_reader<R: Read>(
    input: R,
    limits: &Limits,
) -> io::Result<(u64, IconReader<GzipMembers<BufReader<R>>>)> {
    let gzip = GzipMembers::new(BufReader::with_capacity(64 * 1024, input))?;
    let mut tar = tar_reader(gzip, limits);
    let no_icon = || io::Error::new(io::ErrorKind::InvalidData, "the package has no icon entry");
    // Verification checked the order: the header, info.yaml, then the icon.
    for _ in 0..2 {
        tar.next_entry()?.ok_or_else(no_icon)?;
    }
    let icon = tar.next_entry()?.ok_or_else(no_icon)?;
    Ok((icon.size, IconReader { tar }))
}

/// The bytes of a package's icon, streamed from the package file.
pub struct IconReader<R> {
    tar: TarReader<R>,
}

impl<R: Read> Read for IconReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tar.read_data(buf)
    }
}

/// The tar reader over a package's decompressed stream, bounded as `limits` say. Headers and
/// padding come on top of the content: they get some room beyond the content limit (which
/// `ReadState` checks exactly, entry by entry).
pub fn tar_reader<R: Read>(decompressed: R, limits: &Limits) -> TarReader<R> {
    let max = limits.max_uncompressed_size;
    TarReader::new(
        decompressed,
        max.saturating_add(max / 8 + (1 << 20)),
        uncompressed_limit_message(max),
    )
}

/// Where a signed download of the package is cut: the start of the trailing footers that
/// carry nothing but a store signature (they are replaced), or else the end of the archive.
#[derive(Default)]
struct CutChoice {
    point: Option<CutPoint>,
    refused: Option<String>,
}

impl CutChoice {
    fn after_entry(&mut self, only_store_signature: bool, recorder: Option<&mut CutRecorder>) {
        if only_store_signature {
            if self.point.is_none() {
                self.point = recorder.and_then(CutRecorder::take_mark);
            }
        } else if self.point.take().is_some() {
            self.refused = Some("a footer follows the store signature's footer".into());
        }
    }

    fn end_of_archive(&mut self, recorder: Option<&mut CutRecorder>) {
        if self.point.is_none() {
            self.point = recorder.and_then(CutRecorder::take_mark);
        }
    }

    fn into_splice(self) -> Splice {
        match (self.refused, self.point) {
            (Some(reason), _) => Splice::Recompress(reason),
            (None, Some(point)) => point.into_splice(),
            (None, None) => Splice::Recompress("no deflate block boundary was found".into()),
        }
    }
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
    /// Check and take in one entry. True when it is a footer with a store signature and no
    /// digest: signing drops it.
    fn entry(
        &mut self,
        head: &EntryHead,
        entry: &mut impl Read,
        limits: &Limits,
    ) -> Result<bool, PackageError> {
        let name = entry_name(&head.name)?;
        self.entries += 1;
        if self.entries > limits.max_entries {
            return Err(PackageError::Limit(format!(
                "the package has more than {} entries (the maximum entry count)",
                limits.max_entries
            )));
        }
        let size = head.size;
        self.uncompressed = self.uncompressed.saturating_add(size);
        if self.uncompressed > limits.max_uncompressed_size {
            return Err(PackageError::Limit(uncompressed_limit_message(
                limits.max_uncompressed_size,
            )));
        }
        let is_dir = head.is_directory();
        if !is_dir && !head.is_regular() {
            return Err(PackageError::invalid(format!(
                "entry '{name}' is a {}: only regular files and directories are allowed",
                entry_type_name(head.kind)
            )));
        }
        let name = name.strip_suffix('/').unwrap_or(&name).to_string();

        if name == HEADER_ENTRY {
            if self.stage != Stage::Header {
                return Err(PackageError::invalid(format!(
                    "{HEADER_ENTRY} must be the first entry, and only the first"
                )));
            }
            let text = read_metadata(entry, &name, size, limits)?;
            let header = parse_header(&text).map_err(PackageError::Invalid)?;
            if let Some(extra_signed) = &header.extra_signed {
                self.digest.add_extra_signed(extra_signed);
            }
            self.header = Some(header);
            self.stage = Stage::Info;
            return Ok(false);
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
            let text = read_metadata(entry, &name, size, limits)?;
            let mut footer = Footer::default();
            merge_footer(&text, &mut footer).map_err(PackageError::Invalid)?;
            let only_store_signature = footer.store_signature.is_some() && footer.digest.is_none();
            self.footer.absorb(footer);
            self.stage = Stage::Footers;
            return Ok(only_store_signature);
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

        let payload = match (self.stage, is_dir) {
            (Stage::Info, _) if is_dir || name != "info.yaml" => Err(PackageError::invalid(
                format!("the first file in the package must be info.yaml, but is '{name}'"),
            )),
            (Stage::Info, _) => self.info_entry(entry, &name, size, limits),
            (Stage::Icon, _) => {
                let icon = self.manifest.as_ref().and_then(|m| m.icon.clone());
                if is_dir || icon.as_deref() != Some(name.as_str()) {
                    return Err(self.missing_icon(Some(&name)));
                }
                let bytes = read_bounded(entry, &name, size, limits)?;
                self.add_file(&bytes, size, &name)?;
                self.icon = Some(bytes);
                self.stage = Stage::Payload;
                Ok(())
            }
            (_, true) => {
                self.digest.add_directory(&name);
                Ok(())
            }
            (_, false) => self.stream_file(entry, &name, size),
        };
        payload.map(|()| false)
    }

    fn info_entry(
        &mut self,
        entry: &mut impl Read,
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
    fn stream_file(
        &mut self,
        entry: &mut impl Read,
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
        splice: Splice,
    ) -> Result<PackageInfo, PackageError> {
        let (Some(header), Some(manifest)) = (self.header, self.manifest) else {
            return Err(PackageError::invalid("the package is incomplete"));
        };
        let tags = super::tags::package_tags(header.extra.as_ref(), header.extra_signed.as_ref())
            .map_err(PackageError::invalid)?;
        Ok(PackageInfo {
            tags,
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
            splice,
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
