/*!
Bounded reads of a package's bytes: metadata entries within `Limits::max_metadata_size`, the
zero padding after the archive, the raw file counted, hashed and bounded, and errors of the
gzip and tar layers turned into package errors that keep the limit they broke.
*/

use super::tarstream::{LimitExceeded, limit_io_error};
use super::{Limits, PackageError};
use openssl::sha::Sha1;
use std::io::{self, Read};

/// How much zero padding may follow the end of the archive inside the gzip stream.
const MAX_TAR_PADDING: u64 = 1 << 20;

/// Read a metadata entry as UTF-8 text, within the metadata size limit.
pub(super) fn read_metadata<R: Read>(
    entry: &mut R,
    name: &str,
    size: u64,
    limits: &Limits,
) -> Result<String, PackageError> {
    let bytes = read_bounded(entry, name, size, limits)?;
    String::from_utf8(bytes)
        .map_err(|_| PackageError::invalid(format!("entry '{name}' is not valid UTF-8 text")))
}

pub(super) fn read_bounded<R: Read>(
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
pub(super) fn drain_padding<R: Read>(rest: R) -> Result<(), PackageError> {
    let mut rest = rest.take(MAX_TAR_PADDING + 1);
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

pub(super) fn uncompressed_limit_message(max: u64) -> String {
    format!("the package's content exceeds the maximum uncompressed size of {max} bytes")
}

/// Turn an error from the gzip/tar layers into a package error, keeping limit violations.
pub(super) fn read_error(error: io::Error) -> PackageError {
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
        return PackageError::invalid(super::WRONG_FILE_TYPE);
    }
    PackageError::invalid(format!("the package data is corrupt: {error}"))
}

/// Counts and hashes the raw package bytes, and bounds their number.
pub(super) struct CountingReader<R> {
    pub(super) inner: R,
    pub(super) sha1: Sha1,
    pub(super) size: u64,
    pub(super) max_size: u64,
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
