//! Verification and splicing on random packages, valid and broken: every spliced signed
//! download must inflate (every member with a valid CRC-32 and ISIZE) to exactly what the
//! recompressing signer makes: the verified tar stream without its store-signature footers,
//! then the new footer and the end of the archive. Input starting with the gzip magic is read
//! as a package file; anything else builds a valid package whose payload, gzip members and
//! compression levels come from the input, so the fuzzer reaches many deflate layouts.
#![no_main]

use amps::package::splice::{Splice, rebuild_seam};
use amps::package::writer::{
    END_OF_ARCHIVE, SignatureKind, copy_entries, footer_entry, footer_text, signature_footer_text,
};
use amps::package::{Limits, read_package};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

const LIMITS: Limits = Limits {
    max_package_size: 1 << 20,
    max_uncompressed_size: 4 << 20,
    max_entries: 64,
    max_metadata_size: 64 << 10,
};

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level % 10));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn tar_entry(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_path(name).unwrap();
    header.set_size(data.len() as u64);
    header.set_mode(0o400);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A valid package from `data`: its payload, then gzip members split and compressed as the
/// first bytes say.
fn package_from(data: &[u8]) -> Vec<u8> {
    let (control, payload) = data.split_at(data.len().min(8));
    let header = "%YAML 1.1\n---\nformatType: 'am-package-header'\nformatVersion: 2\n---\ndiskSpaceUsed: 4096\npackageId: 'io.fuzz'\n";
    let info = "formatVersion: 1\nformatType: am-package\n---\nid: 'io.fuzz'\nname: {en: 'F'}\napplications:\n- id: 'io.fuzz'\n  runtime: 'native'\n  code: 'x'\n";
    let mut digest = amps::package::digest::PackageDigest::default();
    for (name, bytes) in [("info.yaml", info.as_bytes()), ("x", payload)] {
        digest.add_file_data(bytes);
        digest.finish_file(bytes.len() as u64, name);
    }
    let mut tar = Vec::new();
    tar_entry(&mut tar, "--PACKAGE-HEADER--", header.as_bytes());
    tar_entry(&mut tar, "info.yaml", info.as_bytes());
    tar_entry(&mut tar, "x", payload);
    tar_entry(&mut tar, "--PACKAGE-FOOTER--", footer_text(&digest.finish()).as_bytes());
    if control.first().is_some_and(|c| c & 1 == 1) {
        tar_entry(&mut tar, "--PACKAGE-FOOTER--", b"%YAML 1.1\n---\nstoreSignature: 'c3Q='\n");
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in control.iter().enumerate().skip(1) {
        let end = (start + usize::from(c) * 97 + 1).min(tar.len());
        out.extend(gzip(&tar[start..end], u32::from(control[i - 1])));
        start = end;
    }
    out.extend(gzip(&tar[start..], 6));
    out
}

fuzz_target!(|data: &[u8]| {
    let package = if data.starts_with(&[0x1f, 0x8b]) {
        data.to_vec()
    } else {
        package_from(data)
    };
    let Ok(info) = read_package(&package[..], &LIMITS) else {
        return;
    };
    let Splice::Cut(cut) = &info.splice else { return };
    let seam = match &cut.seam {
        Some(seam) => seam.clone(),
        None => rebuild_seam(&package[..], cut).expect("the seam can be rebuilt"),
    };
    let mut footer = footer_entry(&signature_footer_text(SignatureKind::Store, b"sig"));
    footer.extend_from_slice(&END_OF_ARCHIVE);
    let spliced = cut.assemble(&package, &seam, &gzip(&footer, 1));
    let mut got = Vec::new();
    MultiGzDecoder::new(&spliced[..])
        .read_to_end(&mut got)
        .expect("every member inflates with a valid CRC-32 and ISIZE");
    let mut expected = Vec::new();
    copy_entries(&package[..], &mut expected, SignatureKind::Store, &LIMITS).unwrap();
    expected.extend_from_slice(&footer);
    assert!(got == expected, "the spliced download is the verified stream");
});
