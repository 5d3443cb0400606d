/*!
Writing packages: creating one from a directory as `appman-packager create-package` does, and
adding a signature footer to an existing one without touching its digest.

Footers are plain tar entries at the end of the archive, so signing never needs the payload
unpacked: the entries are copied block by block (`copy_entries`), then the new footer and the
end-of-archive blocks follow. The server uses the same pieces to store-sign downloads.
*/

use super::digest::{PackageDigest, to_hex};
use super::gzip::GzipMembers;
use super::manifest::{Footer, merge_footer, parse_info};
use super::reader::tar_reader;
use super::{FOOTER_ENTRY, HEADER_ENTRY, Limits, PackageError};
use crate::yaml::{Node, emit_map_entries, quote};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use unicode_normalization::UnicodeNormalization;

/// The two zero blocks that end a tar archive.
pub const END_OF_ARCHIVE: [u8; 1024] = [0; 1024];

/// Optional header metadata for `create_package`.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    /// The header's `extra` map (not covered by the digest).
    pub extra: Vec<(String, Node)>,
    /// The header's `extraSigned` map (covered by the digest).
    pub extra_signed: Vec<(String, Node)>,
}

/// What `create_package` wrote.
#[derive(Debug, Clone)]
pub struct CreateReport {
    pub header: String,
    pub footer: String,
    pub digest: [u8; 32],
}

/// One file or directory of the source tree, in archive order.
struct SourceEntry {
    path: PathBuf,
    /// Name in the archive: relative, `/`-separated, NFC.
    name: String,
    is_dir: bool,
    size: u64,
    executable: bool,
}

/// Create a package from `source_dir` into `output` (gzip'd tar).
pub fn create_package<W: Write>(
    source_dir: &Path,
    output: W,
    options: &CreateOptions,
) -> Result<CreateReport, PackageError> {
    let info_path = source_dir.join("info.yaml");
    let info_text = fs::read_to_string(&info_path)
        .map_err(|e| PackageError::io(format!("could not read {}", info_path.display()), e))?;
    let manifest = parse_info(&info_text).map_err(PackageError::Invalid)?;
    let entries = collect_entries(source_dir, manifest.icon.as_deref())?;

    let header = header_text(&manifest.id, disk_space_used(&entries), options);
    let mut digest = PackageDigest::default();
    let extra_signed = Node::Map(options.extra_signed.clone());
    if !options.extra_signed.is_empty() {
        digest.add_extra_signed(&extra_signed);
    }

    let mut builder = tar::Builder::new(GzEncoder::new(output, Compression::default()));
    append_bytes(&mut builder, HEADER_ENTRY, header.as_bytes())?;
    for entry in &entries {
        append_source_entry(&mut builder, entry, &mut digest)?;
    }
    let digest = digest.finish();
    let footer = footer_text(&digest);
    append_bytes(&mut builder, FOOTER_ENTRY, footer.as_bytes())?;
    let gzip = builder
        .into_inner()
        .map_err(|e| PackageError::io("could not write the package", e))?;
    gzip.finish()
        .map_err(|e| PackageError::io("could not write the package", e))?;
    Ok(CreateReport {
        header,
        footer,
        digest,
    })
}

/// The header text, with keys in Qt's (sorted) order.
fn header_text(id: &str, disk_space_used: u64, options: &CreateOptions) -> String {
    let mut body = vec![(
        "diskSpaceUsed".to_string(),
        Node::Scalar {
            text: disk_space_used.to_string(),
            plain: true,
        },
    )];
    if !options.extra.is_empty() {
        body.push(("extra".into(), Node::Map(options.extra.clone())));
    }
    if !options.extra_signed.is_empty() {
        body.push((
            "extraSigned".into(),
            Node::Map(options.extra_signed.clone()),
        ));
    }
    body.push(("packageId".into(), Node::string(id)));
    let mut text =
        "%YAML 1.1\n---\nformatType: 'am-package-header'\nformatVersion: 2\n---\n".to_string();
    emit_map_entries(&mut text, &body, 0);
    text
}

/// The first footer: format and digest.
pub fn footer_text(digest: &[u8; 32]) -> String {
    format!(
        "%YAML 1.1\n---\nformatType: 'am-package-footer'\nformatVersion: 2\n---\ndigest: '{}'\n",
        to_hex(digest)
    )
}

/// Which signature a footer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    Developer,
    Store,
}

impl SignatureKind {
    fn field(self) -> &'static str {
        match self {
            SignatureKind::Developer => "developerSignature",
            SignatureKind::Store => "storeSignature",
        }
    }
}

/// A footer entry's text carrying one signature.
pub fn signature_footer_text(kind: SignatureKind, signature: &[u8]) -> String {
    format!(
        "%YAML 1.1\n---\n{}: {}\n",
        kind.field(),
        quote(&openssl::base64::encode_block(signature))
    )
}

/// Estimate of the installed size: files and directories in 4 KiB blocks, plus 10% and a
/// fixed allowance for file-system metadata (the real packager's figure is of this order).
fn disk_space_used(entries: &[SourceEntry]) -> u64 {
    let blocks: u64 = entries
        .iter()
        .map(|e| {
            if e.is_dir {
                4096
            } else {
                e.size.div_ceil(4096) * 4096
            }
        })
        .sum();
    (blocks + blocks / 10 + 512 * 1024).div_ceil(1024) * 1024
}

/// info.yaml, the icon, then everything else (sorted, directories before their contents).
fn collect_entries(root: &Path, icon: Option<&str>) -> Result<Vec<SourceEntry>, PackageError> {
    let mut all = Vec::new();
    walk(root, root, &mut all)?;
    let position =
        |all: &[SourceEntry], name: &str| all.iter().position(|e| !e.is_dir && e.name == name);
    let mut ordered = Vec::with_capacity(all.len());
    let info =
        position(&all, "info.yaml").ok_or_else(|| PackageError::invalid("info.yaml is missing"))?;
    ordered.push(all.remove(info));
    if let Some(icon) = icon {
        let icon_name: String = icon.nfc().collect();
        let at = position(&all, &icon_name).ok_or_else(|| {
            PackageError::invalid(format!("the icon '{icon}' named in info.yaml is missing"))
        })?;
        ordered.push(all.remove(at));
    }
    ordered.extend(all);
    Ok(ordered)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceEntry>) -> Result<(), PackageError> {
    let read = |e| PackageError::io(format!("could not read directory {}", dir.display()), e);
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| PackageError::io(format!("could not read {}", path.display()), e))?;
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let name = relative
            .to_str()
            .ok_or_else(|| {
                PackageError::invalid(format!("file name {} is not valid UTF-8", path.display()))
            })?
            .nfc()
            .collect::<String>();
        if name.starts_with("--") {
            return Err(PackageError::invalid(format!(
                "file name '{name}' is reserved (starting with '--')"
            )));
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            out.push(SourceEntry {
                path: path.clone(),
                name,
                is_dir: true,
                size: 0,
                executable: true,
            });
            walk(root, &path, out)?;
        } else if kind.is_file() {
            use std::os::unix::fs::PermissionsExt;
            out.push(SourceEntry {
                path,
                name,
                is_dir: false,
                size: meta.len(),
                executable: meta.permissions().mode() & 0o100 != 0,
            });
        } else {
            return Err(PackageError::invalid(format!(
                "{} is neither a file nor a directory (links and special files are not supported)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn new_header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(kind);
    header
}

fn append_bytes<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> Result<(), PackageError> {
    let mut header = new_header(data.len() as u64, 0o400, tar::EntryType::Regular);
    builder
        .append_data(&mut header, name, data)
        .map_err(|e| PackageError::io("could not write the package", e))
}

fn append_source_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &SourceEntry,
    digest: &mut PackageDigest,
) -> Result<(), PackageError> {
    let write_error = |e| PackageError::io("could not write the package", e);
    if entry.is_dir {
        digest.add_directory(&entry.name);
        let mut header = new_header(0, 0o500, tar::EntryType::Directory);
        return builder
            .append_data(&mut header, format!("{}/", entry.name), io::empty())
            .map_err(write_error);
    }
    let file = File::open(&entry.path)
        .map_err(|e| PackageError::io(format!("could not open {}", entry.path.display()), e))?;
    let mode = if entry.executable { 0o500 } else { 0o400 };
    let mut header = new_header(entry.size, mode, tar::EntryType::Regular);
    let mut hashing = HashingReader {
        inner: BufReader::with_capacity(256 * 1024, file).take(entry.size),
        digest,
        read: 0,
    };
    builder
        .append_data(&mut header, &entry.name, &mut hashing)
        .map_err(write_error)?;
    if hashing.read != entry.size {
        return Err(PackageError::invalid(format!(
            "{} changed size while it was being packaged",
            entry.path.display()
        )));
    }
    digest.finish_file(entry.size, &entry.name);
    Ok(())
}

struct HashingReader<'d, R> {
    inner: R,
    digest: &'d mut PackageDigest,
    read: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.add_file_data(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// A complete tar entry (header block, data, padding) for a footer.
pub fn footer_entry(text: &str) -> Vec<u8> {
    let mut header = new_header(text.len() as u64, 0o400, tar::EntryType::Regular);
    // The name is short and ASCII: set_path cannot fail.
    let _ = header.set_path(FOOTER_ENTRY);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Copy the tar entries of the (verified) package in `input` to `output` as uncompressed tar
/// blocks, without the end-of-archive blocks and without footers that carry a `drop` signature.
/// It reads with the same tar reader and limits as verification (`reader::tar_reader`), and
/// copies each entry's head exactly as read, so whatever verification accepted is copied
/// intact.
pub fn copy_entries<R: Read, W: Write>(
    input: R,
    output: &mut W,
    drop: SignatureKind,
    limits: &Limits,
) -> Result<(), PackageError> {
    let read_error =
        |e: io::Error| PackageError::invalid(format!("could not read the package: {e}"));
    let write_error = |e| PackageError::io("could not write the package", e);
    let gzip = GzipMembers::new(BufReader::with_capacity(256 * 1024, input)).map_err(read_error)?;
    let mut tar = tar_reader(gzip, limits);
    let mut buffer = vec![0u8; 256 * 1024];
    while let Some(head) = tar.next_entry().map_err(read_error)? {
        let padding = (head.size.div_ceil(512) * 512 - head.size) as usize;
        if head.name == FOOTER_ENTRY.as_bytes() {
            if head.size > limits.max_metadata_size {
                return Err(PackageError::invalid(format!(
                    "the package footer is {} bytes, more than the maximum metadata size",
                    head.size
                )));
            }
            let mut data = Vec::new();
            tar.data().read_to_end(&mut data).map_err(read_error)?;
            let mut fields = Footer::default();
            let text = String::from_utf8_lossy(&data);
            merge_footer(&text, &mut fields).map_err(PackageError::Invalid)?;
            let carries = match drop {
                SignatureKind::Developer => fields.developer_signature.is_some(),
                SignatureKind::Store => fields.store_signature.is_some(),
            };
            if carries && fields.digest.is_none() {
                continue;
            }
            output.write_all(&head.raw).map_err(write_error)?;
            output.write_all(&data).map_err(write_error)?;
        } else {
            output.write_all(&head.raw).map_err(write_error)?;
            loop {
                let n = tar.read_data(&mut buffer).map_err(read_error)?;
                if n == 0 {
                    break;
                }
                output.write_all(&buffer[..n]).map_err(write_error)?;
            }
        }
        output
            .write_all(&[0u8; 512][..padding])
            .map_err(write_error)?;
    }
    Ok(())
}

/// Write the package in `input` again to `output` with `signature` as a new footer, replacing
/// any earlier signature of the same kind. The digest is unchanged.
pub fn add_signature<R: Read, W: Write>(
    input: R,
    output: W,
    kind: SignatureKind,
    signature: &[u8],
    limits: &Limits,
) -> Result<(), PackageError> {
    let write_error = |e| PackageError::io("could not write the package", e);
    let mut gzip = GzEncoder::new(output, Compression::default());
    copy_entries(input, &mut gzip, kind, limits)?;
    gzip.write_all(&footer_entry(&signature_footer_text(kind, signature)))
        .map_err(write_error)?;
    gzip.write_all(&END_OF_ARCHIVE).map_err(write_error)?;
    gzip.finish().map_err(write_error)?;
    Ok(())
}
