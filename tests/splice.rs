//! Signed downloads spliced into the uploaded file (`package::splice`), on the library: packages
//! of every gzip layout and compression level, each spliced download compared with what the
//! old recompressing signer made (`copy_entries`), read back by our reader and by Python's
//! `gzip` and `tarfile`.

use crate::util::*;
use amps::package::Limits;
use amps::package::splice::{Splice, rebuild_seam};
use amps::package::writer::{
    END_OF_ARCHIVE, SignatureKind, copy_entries, footer_entry, signature_footer_text,
};
use flate2::read::MultiGzDecoder;
use flate2::{Compress, Compression, FlushCompress, GzBuilder};
use std::io::{Read, Write};
use std::path::Path;

/// The uncompressed signature footer and end of archive a test download ends with.
fn new_footer() -> Vec<u8> {
    let mut tail = footer_entry(&signature_footer_text(
        SignatureKind::Store,
        b"a test signature",
    ));
    tail.extend_from_slice(&END_OF_ARCHIVE);
    tail
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("every member inflates, with a valid CRC-32 and length");
    out
}

/// Splice `package` as the server does and check the result; returns it.
fn check_splice(package: &[u8], what: &str) -> Vec<u8> {
    let info = read_bytes(package).unwrap_or_else(|e| panic!("{what}: {e}"));
    let Splice::Cut(cut) = &info.splice else {
        panic!("{what}: not cut: {:?}", info.splice);
    };
    let seam = match &cut.seam {
        Some(seam) => {
            let rebuilt = rebuild_seam(package, cut).unwrap();
            assert!(&rebuilt == seam, "{what}: the rebuilt seam is the same");
            seam.clone()
        }
        None => rebuild_seam(package, cut).unwrap(),
    };
    let footer = new_footer();
    let spliced = cut.assemble(package, &seam, &gzip(&footer));
    let mut expected = Vec::new();
    copy_entries(
        package,
        &mut expected,
        SignatureKind::Store,
        &Limits::default(),
    )
    .unwrap();
    expected.extend_from_slice(&footer);
    let mut got = Vec::new();
    MultiGzDecoder::new(&spliced[..])
        .read_to_end(&mut got)
        .unwrap_or_else(|e| {
            panic!("{what}: every member inflates, with a valid CRC-32 and length: {e}")
        });
    assert!(
        got == expected,
        "{what}: the spliced download inflates to the verified stream"
    );
    let again = read_bytes(&spliced).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(again.digest, info.digest, "{what}");
    assert_eq!(
        again.store_signature.as_deref(),
        Some(&b"a test signature"[..]),
        "{what}"
    );
    assert!(
        (spliced.len() as u64) < cut.keep + 64 + seam.len() as u64 + 4096,
        "{what}: only the tail is new"
    );
    spliced
}

fn level(tar: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(tar).unwrap();
    e.finish().unwrap()
}

/// One member per piece of `tar` split at `at`.
fn members(tar: &[u8], at: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for &end in at.iter().chain([&tar.len()]) {
        out.extend(level(&tar[start..end], 6));
        start = end;
    }
    out
}

/// A raw deflate stream with a sync flush (an empty stored block) every `every` bytes, in a
/// member whose header has FNAME, FCOMMENT, FEXTRA and, when `hcrc`, FHCRC.
fn flushed_member(tar: &[u8], every: usize, hcrc: bool) -> Vec<u8> {
    let mut header = vec![
        0x1f,
        0x8b,
        8,
        0x04 | 0x08 | 0x10 | if hcrc { 0x02 } else { 0 },
    ];
    header.extend_from_slice(&[0, 0, 0, 0, 0, 255]);
    header.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
    header.extend_from_slice(b"name.tar\0a comment\0");
    if hcrc {
        let crc = crc32fast::hash(&header) as u16;
        header.extend_from_slice(&crc.to_le_bytes());
    }
    let mut deflate = Compress::new(Compression::new(6), false);
    let mut body = Vec::with_capacity(tar.len() + 1024);
    for (n, chunk) in tar.chunks(every).enumerate() {
        let last = (n + 1) * every >= tar.len();
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let mut input = chunk;
        loop {
            body.reserve(chunk.len() + 1024);
            let before = deflate.total_in();
            let status = deflate.compress_vec(input, &mut body, flush).unwrap();
            input = &input[(deflate.total_in() - before) as usize..];
            if input.is_empty() && (!last || status == flate2::Status::StreamEnd) {
                break;
            }
        }
    }
    let mut member = header;
    member.extend_from_slice(&body);
    member.extend_from_slice(&crc32fast::hash(tar).to_le_bytes());
    member.extend_from_slice(&(tar.len() as u32).to_le_bytes());
    member
}

fn padded(mut gz: Vec<u8>) -> Vec<u8> {
    gz.resize(gz.len().div_ceil(10240) * 10240, 0);
    gz
}

fn package_with_payload(dir: &Path, payload: &[u8]) -> Vec<u8> {
    std::fs::read(make_package(
        dir,
        "io.example.splice",
        &[],
        &[],
        "1",
        Some(payload),
    ))
    .unwrap()
}

fn text(n: usize) -> Vec<u8> {
    let words = ["alpha ", "beta ", "gamma ", "delta\n", "epsilon ", "zeta "];
    let mut out = Vec::with_capacity(n);
    let mut state = 7u32;
    while out.len() < n {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.extend_from_slice(words[(state >> 16) as usize % words.len()].as_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn every_level_and_content_splices_to_the_verified_stream() {
    let dir = tempfile::tempdir().unwrap();
    let payloads: [(&str, Vec<u8>); 4] = [
        ("small", b"#!/bin/sh\necho hello\n".to_vec()),
        ("incompressible", noise(3 << 20)),
        ("text", text(2 << 20)),
        ("zeros", vec![0u8; 9 << 20]),
    ];
    for (name, payload) in &payloads {
        let package = package_with_payload(dir.path(), payload);
        check_splice(&package, &format!("{name}, as packed"));
        let tar = gunzip(&package);
        for n in [0, 1, 6, 9] {
            check_splice(&level(&tar, n), &format!("{name}, level {n}"));
        }
        check_splice(&padded(level(&tar, 6)), &format!("{name}, zero padding"));
    }
}

#[test]
fn zeros_beyond_the_seam_buffer_are_rebuilt_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let package = package_with_payload(dir.path(), &vec![0u8; 9 << 20]);
    let tar = gunzip(&package);
    // zlib-style level 9 puts megabytes of zeros into one block: more than the recorder keeps.
    let packed = level(&tar, 9);
    let info = read_bytes(&packed).unwrap();
    let Splice::Cut(cut) = &info.splice else {
        panic!("{:?}", info.splice)
    };
    assert!(
        cut.seam.is_none() && cut.cut - cut.boundary > amps::package::splice::SEAM_BUFFER as u64,
        "the last block holds more than the recorder keeps: only its hash is kept"
    );
    check_splice(&packed, "zeros, level 9");
}

#[test]
fn every_gzip_layout_splices_to_the_verified_stream() {
    let dir = tempfile::tempdir().unwrap();
    let package = package_with_payload(dir.path(), &text(300_000));
    let tar = gunzip(&package);
    let end = tar.len();
    let layouts: Vec<(&str, Vec<u8>)> = vec![
        ("two members", members(&tar, &[end / 2])),
        (
            "a member per 512 bytes at the end",
            members(&tar, &[end - 2048, end - 1536, end - 1024, end - 512]),
        ),
        (
            "a member ending at the end-of-archive blocks",
            members(&tar, &[end - 1024]),
        ),
        (
            "members and padding",
            padded(members(&tar, &[7, 1000, end - 100])),
        ),
        ("header fields", flushed_member(&tar, 1 << 30, false)),
        (
            "header fields and FHCRC",
            flushed_member(&tar, 1 << 30, true),
        ),
        (
            "sync flush every 1000 bytes",
            flushed_member(&tar, 1000, false),
        ),
        (
            "sync flush every 512 bytes",
            flushed_member(&tar, 512, true),
        ),
        ("sync flush every 77 bytes", flushed_member(&tar, 77, false)),
        ("stored blocks", level(&tar, 0)),
        ("named, with a comment", {
            let mut e = GzBuilder::new()
                .filename("package.tar")
                .comment("comment")
                .extra(vec![1, 2, 3, 4])
                .write(Vec::new(), Compression::new(1));
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        }),
    ];
    for (what, packed) in layouts {
        check_splice(&packed, what);
    }
}

#[test]
fn a_cut_in_the_first_block_and_signed_packages() {
    let dir = tempfile::tempdir().unwrap();
    let package = make_package(dir.path(), "io.example.first", &[], &[], "1", None);
    let bytes = std::fs::read(&package).unwrap();
    let info = read_bytes(&bytes).unwrap();
    let Splice::Cut(cut) = &info.splice else {
        panic!()
    };
    assert_eq!(
        cut.boundary, 0,
        "one block: the boundary is the member's start"
    );
    // Nothing of that member is kept: it is left out, not sent empty.
    assert_eq!((cut.keep, cut.closing.len()), (0, 0));
    check_splice(&bytes, "cut in the first block");

    let certs = certificates();
    let dev = dir.path().join("dev.ampkg");
    let store = dir.path().join("store.ampkg");
    let both = dir.path().join("both.ampkg");
    let (dev_p12, store_p12) = (certs.dev_p12(), certs.store_p12());
    let runs: [[&dyn AsRef<std::ffi::OsStr>; 6]; 3] = [
        [
            &"dev-sign-package",
            &package,
            &dev,
            &dev_p12,
            &P12_PASSWORD,
            &"",
        ],
        [
            &"store-sign-package",
            &package,
            &store,
            &store_p12,
            &P12_PASSWORD,
            &"hw",
        ],
        [
            &"store-sign-package",
            &dev,
            &both,
            &store_p12,
            &P12_PASSWORD,
            &"",
        ],
    ];
    for args in runs {
        let args = if args[0].as_ref() == "dev-sign-package" {
            &args[..5]
        } else {
            &args[..]
        };
        let result = packager(args);
        assert!(result.status.success(), "{}", status(&result).1);
    }
    let spliced = check_splice(&std::fs::read(&dev).unwrap(), "developer-signed");
    assert!(read_bytes(&spliced).unwrap().developer_signature.is_some());
    // The old store signature is replaced: it is gone from the spliced stream.
    let spliced = check_splice(&std::fs::read(&store).unwrap(), "store-signed");
    assert_eq!(
        gunzip(&spliced)
            .windows(14)
            .filter(|w| w == b"storeSignature")
            .count(),
        1
    );
    let spliced = check_splice(
        &std::fs::read(&both).unwrap(),
        "developer- and store-signed",
    );
    assert!(read_bytes(&spliced).unwrap().developer_signature.is_some());
}

#[test]
fn a_footer_after_the_store_signature_is_signed_the_old_way() {
    // Store footer, then a developer footer: a cut would keep the old store footer.
    let package = raw_package_with_footers(&[
        "%YAML 1.1\n---\nstoreSignature: 'c3RvcmU='\n",
        "%YAML 1.1\n---\ndeveloperSignature: 'ZGV2'\n",
    ]);
    let info = read_bytes(&package).unwrap();
    assert!(
        matches!(&info.splice, Splice::Recompress(reason) if reason.contains("follows")),
        "{:?}",
        info.splice
    );
    // Two store footers in a row are both replaced.
    let package = raw_package_with_footers(&[
        "%YAML 1.1\n---\nstoreSignature: 'c3RvcmU='\n",
        "%YAML 1.1\n---\nstoreSignature: 'c3RvcmUy'\n",
    ]);
    let spliced = check_splice(&package, "two store footers");
    assert_eq!(
        gunzip(&spliced)
            .windows(14)
            .filter(|w| w == b"storeSignature")
            .count(),
        1
    );
}

/// `RawTar::valid()` with more footer entries after the digest footer.
pub fn raw_package_with_footers(footers: &[&str]) -> Vec<u8> {
    let mut tar = RawTar::valid();
    for footer in footers {
        tar = tar.file("--PACKAGE-FOOTER--", footer.as_bytes());
    }
    tar.finish()
}

#[test]
fn the_real_packagers_vectors_splice_and_read_back_in_python() {
    let Some(vectors) = vectors() else { return };
    let mut checked = 0;
    for folder in ["reference", "more"] {
        let mut files: Vec<_> = std::fs::read_dir(vectors.join(folder))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "appkg" || e == "ampkg"))
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            if read_bytes(&bytes).is_err() {
                continue; // the vectors of invalid packages
            }
            let what = file.display().to_string();
            let spliced = check_splice(&bytes, &what);
            python_reads_the_same(&spliced, &bytes, &what);
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} vectors");
}

/// Python's `gzip` and `tarfile` read `spliced` as the same entries with the same bytes as
/// the verified package `original` (store footers aside), plus the new footer.
fn python_reads_the_same(spliced: &[u8], original: &[u8], what: &str) {
    let Some(python) = python3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("spliced"), dir.path().join("original"));
    std::fs::write(&a, spliced).unwrap();
    std::fs::write(&b, original).unwrap();
    let script = r#"
import gzip, hashlib, sys, tarfile
def entries(path):
    out = []
    with tarfile.open(path, mode="r:gz") as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isfile() else b""
            if m.name == "--PACKAGE-FOOTER--" and b"storeSignature" in data and b"digest" not in data:
                continue
            out.append((m.name, m.size, hashlib.sha256(data).hexdigest()))
    return out
gzip.decompress(open(sys.argv[1], "rb").read())
spliced, original = entries(sys.argv[1]), entries(sys.argv[2])
assert spliced == original, (spliced, original)
print(len(spliced))
"#;
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn python3() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip("python3 is not installed: spliced downloads not read back with Python");
    }
    found.then_some("python3")
}

/// `tar` compressed by C zlib (through Python) with `options`: a `compressobj` call's
/// arguments after the level, and how often to flush.
fn zlib_gzip(python: &str, tar: &[u8], strategy: &str, flush: &str, every: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tar");
    std::fs::write(&input, tar).unwrap();
    let script = format!(
        r#"
import sys, zlib
data = open(sys.argv[1], "rb").read()
c = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.{strategy})
out = []
for i in range(0, len(data), {every}):
    out.append(c.compress(data[i:i + {every}]))
    out.append(c.flush(zlib.{flush}))
out.append(c.flush(zlib.Z_FINISH))
sys.stdout.buffer.write(b"".join(out))
"#
    );
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn c_zlib_fixed_and_flushed_blocks_splice_to_the_verified_stream() {
    let Some(python) = python3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tar = gunzip(&package_with_payload(dir.path(), &text(200_000)));
    for (strategy, flush, every) in [
        ("Z_FIXED", "Z_NO_FLUSH", 1 << 30),
        ("Z_FIXED", "Z_BLOCK", 3000),
        ("Z_DEFAULT_STRATEGY", "Z_FULL_FLUSH", 10_000),
        ("Z_DEFAULT_STRATEGY", "Z_SYNC_FLUSH", 511),
        ("Z_HUFFMAN_ONLY", "Z_PARTIAL_FLUSH", 4096),
        ("Z_RLE", "Z_NO_FLUSH", 1 << 30),
    ] {
        let packed = zlib_gzip(python, &tar, strategy, flush, every);
        check_splice(&packed, &format!("zlib {strategy}, {flush} every {every}"));
    }
}
