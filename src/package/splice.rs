/*!
Store-signed downloads spliced into the uploaded file (`shared/FORMAT.md`, "Signing without
rebuilding").

A signed download must decompress to the verified tar stream up to the *cut point* (the first
of a trailing run of old store-signature footers, or else the end-of-archive blocks), then a
new footer and the end-of-archive blocks. Deflate streams can be cut at any block boundary. So
while verification inflates the package anyway, `CutRecorder` keeps the last block boundary
before the cut point; the download is then

1. the package file's own bytes up to that boundary (sent with sendfile),
2. `Cut::closing`: the boundary's partial byte with the following block's bits cleared, an
   empty final stored block, and the member's CRC-32 and length there (when the boundary is
   the member's very start, the member is left out instead: nothing of it is kept),
3. the *seam*: a small gzip member holding the decompressed bytes between the boundary and
   the cut point (none when they are empty),
4. a member with the new footer and the end of the archive (`store::signing`).

libarchive reads consecutive members as one stream. The seam is built from bytes verification
saw; when they were more than `SEAM_BUFFER` (one very compressible block), only their SHA-256
is kept and `rebuild_seam` inflates the file again up to the cut point, checking the hash.
*/

use super::gzip::GzipMembers;
use flate2::Compression;
use flate2::write::GzEncoder;
use openssl::sha::Sha256;
use std::io::{self, BufReader, Read, Write};

/// Decompressed bytes between the last boundary and the read position that the recorder keeps
/// in memory; beyond, it keeps their hash only.
pub const SEAM_BUFFER: usize = 1 << 20;
/// Most decompressed bytes between the boundary and the cut point: beyond, the package is
/// signed the old way (a recompressed copy), since the seam would cost a recompression anyway.
pub const MAX_BETWEEN: u64 = 64 << 20;

/// A deflate block boundary, as the reader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// Bits of the file before the boundary.
    pub bit_position: u64,
    /// The file's byte holding the boundary, when it is not byte-aligned.
    pub partial_byte: u8,
    /// Decompressed bytes before the boundary (all members).
    pub out_position: u64,
    /// Where the boundary's member starts in the decompressed stream, and in the file.
    pub member_start: u64,
    pub member_file_start: u64,
    /// CRC-32 of the member's decompressed bytes before the boundary.
    pub member_crc: u32,
}

/// How a verified package's signed downloads are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Splice {
    Cut(Cut),
    /// Signed downloads are built from a recompressed copy, for this reason.
    Recompress(String),
}

/// Where a package is cut and how the kept bytes are closed (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Bytes of the package file sent as they are.
    pub keep: u64,
    /// The bytes closing the member after them (at most 14).
    pub closing: Vec<u8>,
    /// Decompressed offsets of the boundary and of the cut point.
    pub boundary: u64,
    pub cut: u64,
    /// SHA-256 of the decompressed bytes between them.
    pub between_sha256: [u8; 32],
    /// The seam member, when verification kept the bytes (else `rebuild_seam` makes it).
    pub seam: Option<Vec<u8>>,
}

impl Cut {
    fn new(boundary: &Boundary, cut: u64, between_sha256: [u8; 32], seam: Option<Vec<u8>>) -> Cut {
        // Nothing of the boundary's member is kept (its first block): leave the member out
        // rather than send it empty.
        let (keep, closing) = if boundary.out_position == boundary.member_start {
            (boundary.member_file_start, Vec::new())
        } else {
            (boundary.bit_position / 8, closing_bytes(boundary))
        };
        Cut {
            keep,
            closing,
            boundary: boundary.out_position,
            cut,
            between_sha256,
            seam,
        }
    }

    /// The whole signed download, in memory: `file` is the package file, `footer_member` the
    /// gzip member with the signature footer and the end of the archive. For tests and the
    /// fuzzer; the server sends the same pieces from the file.
    pub fn assemble(&self, file: &[u8], seam: &[u8], footer_member: &[u8]) -> Vec<u8> {
        let keep = usize::try_from(self.keep)
            .unwrap_or(usize::MAX)
            .min(file.len());
        [&file[..keep], &self.closing, seam, footer_member].concat()
    }
}

/// The partial byte (its bits before the boundary kept, the rest cleared), an empty final
/// stored block (BFINAL 1, BTYPE 00, padding to the byte, LEN 0, NLEN 0xffff), then the
/// member's CRC-32 and length (mod 2^32), little-endian.
fn closing_bytes(boundary: &Boundary) -> Vec<u8> {
    let used = (boundary.bit_position % 8) as u32;
    let mut bits = u32::from(boundary.partial_byte) & ((1u32 << used) - 1);
    bits |= 1 << used; // BFINAL; BTYPE 00 follows
    let bit_count = used + 3;
    let mut closing: Vec<u8> = bits.to_le_bytes()[..bit_count.div_ceil(8) as usize].to_vec();
    closing.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    closing.extend_from_slice(&boundary.member_crc.to_le_bytes());
    let length = boundary.out_position - boundary.member_start;
    closing.extend_from_slice(&(length as u32).to_le_bytes());
    closing
}

/// The seam member for `between` (deterministic: the same bytes give the same member).
pub fn seam_member(between: &[u8]) -> io::Result<Vec<u8>> {
    if between.is_empty() {
        return Ok(Vec::new());
    }
    let mut seam = SeamWriter::new();
    seam.write_all(between)?;
    seam.finish()
}

/// Compresses the seam. The compressor's output depends on how its input is cut into
/// writes, so it always gets `SEAM_CHUNK` bytes at a time: the seam built while verifying and
/// the one rebuilt from the file are the same bytes.
struct SeamWriter {
    gzip: GzEncoder<Vec<u8>>,
    pending: Vec<u8>,
}

const SEAM_CHUNK: usize = 64 * 1024;

impl SeamWriter {
    fn new() -> SeamWriter {
        SeamWriter {
            gzip: GzEncoder::new(Vec::new(), Compression::fast()),
            pending: Vec::with_capacity(SEAM_CHUNK),
        }
    }

    fn finish(mut self) -> io::Result<Vec<u8>> {
        self.gzip.write_all(&self.pending)?;
        self.gzip.finish()
    }
}

impl Write for SeamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(SEAM_CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == SEAM_CHUNK {
            self.gzip.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Inflate the package in `file` again up to the cut point and build the seam from the bytes
/// between the boundary and it, checking they are the ones verification hashed.
pub fn rebuild_seam(file: impl Read, cut: &Cut) -> io::Result<Vec<u8>> {
    let mut gzip = GzipMembers::new(BufReader::with_capacity(256 * 1024, file))?;
    io::copy(&mut (&mut gzip).take(cut.boundary), &mut io::sink())?;
    let length = cut.cut - cut.boundary;
    let mut between = HashingWriter {
        hash: Sha256::new(),
        inner: SeamWriter::new(),
    };
    let copied = io::copy(&mut (&mut gzip).take(length), &mut between)?;
    let (hash, seam) = (between.hash.finish(), between.inner.finish()?);
    if copied != length || hash != cut.between_sha256 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the package file no longer holds the bytes that were verified",
        ));
    }
    Ok(if length == 0 { Vec::new() } else { seam })
}

struct HashingWriter<W> {
    hash: Sha256,
    inner: W,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What the gzip layer keeps while verification reads, so that a cut can be made at any entry
/// start it marks: the last boundary, and the decompressed bytes since (up to `SEAM_BUFFER`,
/// then their hash).
#[derive(Default)]
pub struct CutRecorder {
    latest: Option<Boundary>,
    since: Vec<u8>,
    /// All bytes since the latest boundary, once `since` is full.
    overflow: Option<Sha256>,
    mark: Option<Mark>,
}

/// The state at a marked entry start.
struct Mark {
    at: u64,
    boundary: Boundary,
    between: Between,
}

enum Between {
    /// The first bytes of `since`.
    InSince(usize),
    Owned(Vec<u8>),
    Hashed([u8; 32]),
}

/// A cut point with what a `Cut` is made of.
pub struct CutPoint {
    at: u64,
    boundary: Boundary,
    between: Result<Vec<u8>, [u8; 32]>,
}

impl CutRecorder {
    pub(super) fn output(&mut self, bytes: &[u8]) {
        if self.latest.is_none() || bytes.is_empty() {
            return;
        }
        if let Some(hash) = &mut self.overflow {
            hash.update(bytes);
            return;
        }
        let room = SEAM_BUFFER - self.since.len();
        if bytes.len() <= room {
            self.since.extend_from_slice(bytes);
        } else {
            let mut hash = Sha256::new();
            hash.update(&self.since);
            hash.update(bytes);
            self.overflow = Some(hash);
        }
    }

    pub(super) fn boundary(&mut self, boundary: Boundary) {
        if let Some(mark) = &mut self.mark
            && let Between::InSince(length) = mark.between
        {
            let mut bytes = std::mem::take(&mut self.since);
            bytes.truncate(length);
            mark.between = Between::Owned(bytes);
        }
        self.since.clear();
        self.overflow = None;
        self.latest = Some(boundary);
    }

    /// Remember the state at decompressed offset `at` (the reader's position: the gzip layer
    /// never reads ahead of it), replacing an earlier mark.
    pub fn mark(&mut self, at: u64) {
        self.mark = self.latest.map(|boundary| Mark {
            at,
            boundary,
            between: match &self.overflow {
                Some(hash) => Between::Hashed(hash.clone().finish()),
                None => Between::InSince(self.since.len()),
            },
        });
    }

    /// The marked position as a cut point.
    pub fn take_mark(&mut self) -> Option<CutPoint> {
        let mark = self.mark.take()?;
        let between = match mark.between {
            Between::InSince(length) => Ok(self.since[..length.min(self.since.len())].to_vec()),
            Between::Owned(bytes) => Ok(bytes),
            Between::Hashed(hash) => Err(hash),
        };
        Some(CutPoint {
            at: mark.at,
            boundary: mark.boundary,
            between,
        })
    }
}

impl CutPoint {
    /// The cut, with its seam built when the bytes are at hand.
    pub fn into_splice(self) -> Splice {
        let length = self.at - self.boundary.out_position;
        if length > MAX_BETWEEN {
            return Splice::Recompress(format!(
                "{length} decompressed bytes lie between the last deflate block boundary and the end of the archive (more than {MAX_BETWEEN})"
            ));
        }
        let (hash, seam) = match self.between {
            Ok(bytes) => match seam_member(&bytes) {
                Ok(seam) => (openssl::sha::sha256(&bytes), Some(seam)),
                Err(e) => return Splice::Recompress(format!("could not build the seam: {e}")),
            },
            Err(hash) => (hash, None),
        };
        Splice::Cut(Cut::new(&self.boundary, self.at, hash, seam))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_bytes_keep_the_bits_before_the_boundary_and_clear_the_rest() {
        let boundary = |bit_position, partial_byte| Boundary {
            bit_position,
            partial_byte,
            out_position: 10,
            member_start: 4,
            member_file_start: 0,
            member_crc: 0x0403_0201,
        };
        let trailer = [0x00, 0x00, 0xff, 0xff, 1, 2, 3, 4, 6, 0, 0, 0];
        // Aligned: a byte of its own, 0b001.
        assert_eq!(
            closing_bytes(&boundary(80, 0xff)),
            [&[0x01][..], &trailer].concat()
        );
        // Three bits used: they stay, bit 3 is BFINAL, the rest clear.
        assert_eq!(
            closing_bytes(&boundary(83, 0xff)),
            [&[0x0f][..], &trailer].concat()
        );
        // Six bits used: BTYPE spills into a second byte.
        assert_eq!(
            closing_bytes(&boundary(86, 0xff)),
            [&[0x7f, 0x00][..], &trailer].concat()
        );
    }
}
