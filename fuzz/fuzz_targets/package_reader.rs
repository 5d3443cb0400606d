//! The package reader on arbitrary input. Input starting with the gzip magic is read as a
//! package file; anything else is taken as a raw tar stream and gzipped first, so that the
//! fuzzer reaches the tar, metadata and digest checks.
#![no_main]

use amps::package::{Limits, read_package};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_package_size: 1 << 20,
        max_uncompressed_size: 4 << 20,
        max_entries: 64,
        max_metadata_size: 64 << 10,
    };
    if data.starts_with(&[0x1f, 0x8b]) {
        let _ = read_package(data, &limits);
    } else {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = gzip.write_all(data);
        if let Ok(compressed) = gzip.finish() {
            let _ = read_package(&compressed[..], &limits);
        }
    }
});
