/*!
What `.cache/` holds: per package a small *seam record* (`<sha1>.seam`), and for the rare
package that cannot be cut (`Splice::Recompress`) its recompressed signing body
(`<sha1>.body.gz`, with `<sha1>.body.gz.check`).

A seam record is written only when it is at most 1% of its package's size, so `.cache/` stays
under 1% of the store; a smaller package's seam is rebuilt from the package when needed. Every
file here is opened by descriptor relative to `.cache/`, never through a link, and nothing read
from it is trusted: a record must name the package file's size, modification time and inode
and the cut verification found, and its seam must decompress to the bytes verification hashed.
*/

use super::index::Entry;
use crate::fsutil::{Dir, FileStat};
use crate::package::digest::to_hex;
use crate::package::splice::Cut;
use flate2::read::MultiGzDecoder;
use std::ffi::OsString;
use std::io::{self, Read};

const RECORD_MAGIC: &str = "amps-seam-1";

/// The name of the seam record of a package with SHA-1 `sha1`.
pub fn seam_name(sha1: &[u8; 20]) -> OsString {
    format!("{}.seam", to_hex(sha1)).into()
}

/// The name of the recompressed signing body, and of the file saying what it is.
pub fn body_name(sha1: &[u8; 20]) -> OsString {
    format!("{}.body.gz", to_hex(sha1)).into()
}

pub fn body_check_name(sha1: &[u8; 20]) -> OsString {
    format!("{}.body.gz.check", to_hex(sha1)).into()
}

/// Whether a seam of `seam_length` bytes is kept on disk for a package of `file_size` bytes.
pub fn worth_recording(seam_length: usize, file_size: u64) -> bool {
    (RECORD_HEAD_BYTES + seam_length) as u64 * 100 <= file_size
}

/// Room for the record's first line.
const RECORD_HEAD_BYTES: usize = 256;

/// The first line of the record of `entry` cut at `cut`: what it must match.
fn record_head(entry: &Entry, cut: &Cut) -> String {
    let modified = entry
        .modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{RECORD_MAGIC} {} {modified} {} {} {} {} {}\n",
        entry.info.file_size,
        entry.inode,
        cut.keep,
        cut.boundary,
        cut.cut,
        to_hex(&cut.between_sha256)
    )
}

/// Write the record of `entry`'s `seam`.
pub fn write_seam(cache: &Dir, entry: &Entry, cut: &Cut, seam: &[u8]) -> io::Result<()> {
    let mut record = record_head(entry, cut).into_bytes();
    record.extend_from_slice(seam);
    cache.write_file(&seam_name(&entry.info.sha1), &record)
}

/// The seam recorded for `entry`, if its record is there and true.
pub fn read_seam(cache: &Dir, entry: &Entry, cut: &Cut) -> Option<Vec<u8>> {
    let max = RECORD_HEAD_BYTES as u64 + entry.info.file_size / 100;
    let record = cache.read_file(&seam_name(&entry.info.sha1), max).ok()?;
    let head = record_head(entry, cut);
    let seam = record.strip_prefix(head.as_bytes())?;
    seam_matches(seam, cut).then(|| seam.to_vec())
}

/// Whether `seam` decompresses to exactly the bytes between `cut`'s boundary and cut point.
pub fn seam_matches(seam: &[u8], cut: &Cut) -> bool {
    let length = cut.cut - cut.boundary;
    if seam.is_empty() {
        return length == 0 && cut.between_sha256 == openssl::sha::sha256(b"");
    }
    let mut hash = openssl::sha::Sha256::new();
    let mut decoder = MultiGzDecoder::new(seam).take(length + 1);
    let mut buffer = [0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hash.update(&buffer[..n]);
                total += n as u64;
            }
            Err(_) => return false,
        }
    }
    total == length && hash.finish() == cut.between_sha256
}

/// What a recompressed body's check file says: the body file's size, time and inode.
pub fn body_check_text(stat: &FileStat) -> String {
    format!("{} {} {}\n", stat.size, stat.mtime_ns, stat.ino)
}
