//! Hostile packages: each is rejected with a message that says what is wrong, within the
//! limits, and the server stays up, small and clean.

use crate::util::*;
use serde_json::json;

/// A valid start followed by 100,000 directory entries.
fn many_entries() -> Vec<u8> {
    let mut many = RawTar::valid_start();
    for i in 0..100_000 {
        many.bytes
            .extend_from_slice(&tar_header(format!("d{i}/").as_bytes(), b'5', 0));
    }
    many.finish()
}

/// A 4 GiB file of zeros, of which the first 4 MiB are there (a few KiB compressed).
fn zip_bomb() -> Vec<u8> {
    let mut zeros = RawTar::valid_start().bytes;
    zeros.extend_from_slice(&tar_header(b"zeros", b'0', 4 << 30));
    zeros.extend_from_slice(&vec![0u8; 4 << 20]);
    gzip(&zeros)
}

fn rejection(bytes: &[u8]) -> String {
    match read_bytes(bytes) {
        Ok(info) => panic!("accepted a hostile package: {}", info.id),
        Err(e) => e.to_string(),
    }
}

fn assert_rejected(bytes: &[u8], expected: &str) {
    let message = rejection(bytes);
    assert!(
        message.contains(expected),
        "expected '{expected}' in: {message}"
    );
}

#[test]
fn links_devices_and_fifos_are_refused() {
    for (kind, what) in [
        (b'1', "hard link"),
        (b'2', "symbolic link"),
        (b'3', "character device"),
        (b'4', "block device"),
        (b'6', "fifo"),
    ] {
        let package = RawTar::valid_start().entry(b"evil", kind, b"").finish();
        assert_rejected(
            &package,
            &format!("entry 'evil' is a {what}: only regular files and directories are allowed"),
        );
    }
}

#[test]
fn paths_outside_the_package_and_reserved_names_are_refused() {
    for (name, expected) in [
        (&b"/etc/passwd"[..], "is an absolute path"),
        (b"../x", "points outside the package"),
        (b"a/../../x", "points outside the package"),
        (b"a//b", "not a normalized path"),
        (b"--evil", "reserved name"),
        (b"\xff\xfe-name", "is not valid UTF-8"),
    ] {
        assert_rejected(
            &RawTar::valid_start()
                .file("ok", b"x")
                .entry(name, b'0', b"data")
                .finish(),
            expected,
        );
    }
}

#[test]
fn structure_errors_are_named() {
    let second_header = RawTar::valid_start()
        .file("--PACKAGE-HEADER--", TEST_HEADER.as_bytes())
        .finish();
    assert_rejected(
        &second_header,
        "must be the first entry, and only the first",
    );
    assert_rejected(
        &RawTar::valid_start().file("x", b"1").finish(),
        "the package has no footer",
    );
    assert_rejected(
        &RawTar::default()
            .file("info.yaml", TEST_INFO.as_bytes())
            .finish(),
        "the first entry must be --PACKAGE-HEADER--",
    );
    let after_footer = RawTar::valid_start()
        .file(
            "--PACKAGE-FOOTER--",
            b"formatType: 'am-package-footer'\nformatVersion: 2\n---\ndigest: '00'\n",
        )
        .file("late", b"x")
        .finish();
    assert_rejected(&after_footer, "follows the package footer");
    assert_rejected(&RawTar::default().finish(), "the package is empty");
    // Data after the end of the archive, and zero padding between gzip members.
    assert_eq!(
        read_bytes(&RawTar::valid().finish()).unwrap().id,
        "io.example.hostile"
    );
    let mut trailing = RawTar::valid().bytes;
    trailing.extend_from_slice(&[0u8; 1024]);
    trailing.extend_from_slice(b"hidden data");
    assert_rejected(
        &gzip(&trailing),
        "unexpected data after the end of the archive",
    );
    let mut padded = gzip(&RawTar::valid().bytes);
    padded.extend_from_slice(&[0u8; 100]);
    padded.extend_from_slice(&gzip(&[0u8; 1024]));
    assert_rejected(&padded, "unexpected data after the end of the gzip stream");
    // Without the padding, the same two members are one valid package.
    let mut members = gzip(&RawTar::valid().bytes);
    members.extend_from_slice(&gzip(&[0u8; 1024]));
    read_bytes(&members).unwrap();
}

#[test]
fn yaml_bombs_and_deep_nesting_are_refused() {
    let bomb = "%YAML 1.1\n---\nformatType: 'am-package-header'\nformatVersion: 2\n---\ndiskSpaceUsed: 1\npackageId: 'io.example.hostile'\nextra:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n  d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
    assert_rejected(
        &RawTar::default()
            .file("--PACKAGE-HEADER--", bomb.as_bytes())
            .finish(),
        "aliases are not supported",
    );
    for nesting in [
        "[".repeat(20_000) + &"]".repeat(20_000),
        "{a: ".repeat(20_000) + &"}".repeat(20_000),
    ] {
        let header = format!("{TEST_HEADER}extraSigned: {{deep: {nesting}}}\n");
        assert_rejected(
            &RawTar::default()
                .file("--PACKAGE-HEADER--", header.as_bytes())
                .finish(),
            "the package header is not valid YAML",
        );
    }
    let block: String = (0..20_000)
        .map(|i| format!("{}k:\n", " ".repeat(i % 200)))
        .collect();
    let header = format!("{TEST_HEADER}extra:\n{block}");
    assert!(
        read_bytes(
            &RawTar::default()
                .file("--PACKAGE-HEADER--", header.as_bytes())
                .finish()
        )
        .is_err()
    );
}

#[test]
fn oversized_metadata_entry_counts_and_contents_hit_their_limits() {
    let big = vec![b'a'; 20 << 20];
    let mut header = TEST_HEADER.as_bytes().to_vec();
    header.extend_from_slice(b"# ");
    header.extend_from_slice(&big);
    assert_rejected(
        &RawTar::default()
            .file("--PACKAGE-HEADER--", &header)
            .finish(),
        "more than the maximum metadata size of 4194304 bytes",
    );
    let info = RawTar::default()
        .file("--PACKAGE-HEADER--", TEST_HEADER.as_bytes())
        .file("info.yaml", &big)
        .finish();
    assert_rejected(
        &info,
        "entry 'info.yaml' is 20971520 bytes, more than the maximum metadata size",
    );

    assert_rejected(
        &many_entries(),
        "more than 10000 entries (the maximum entry count)",
    );

    // A 4 GiB file of zeros: refused from its header, before any of it is inflated.
    assert_rejected(
        &zip_bomb(),
        "exceeds the maximum uncompressed size of 2147483648 bytes",
    );
    // Smaller limits hold while data streams too.
    let limits = amps::package::Limits {
        max_uncompressed_size: 1 << 20,
        ..Default::default()
    };
    let stream = RawTar::valid_start()
        .file("zeros", &vec![0u8; 5 << 20])
        .finish();
    let message = amps::package::read_package(&stream[..], &limits)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("maximum uncompressed size of 1048576 bytes"),
        "{message}"
    );
}

#[test]
fn tar_extension_headers_are_bounded() {
    // A pax header and a GNU long name far larger than any real one.
    let pax = RawTar::valid_start()
        .entry(b"././@PaxHeader", b'x', &vec![b'a'; 1 << 20])
        .file("x", b"1")
        .finish();
    assert_rejected(&pax, "tar extension header is 1048576 bytes");
    let long = RawTar::valid_start()
        .entry(b"././@LongLink", b'L', &vec![b'a'; 1 << 20])
        .file("x", b"1")
        .finish();
    assert_rejected(&long, "tar extension header is 1048576 bytes");
    // A well-formed pax size record is honoured, not misread: the package is valid.
    let payload = [7u8; 5000];
    let mut digest = amps::package::digest::PackageDigest::default();
    for (name, data) in [
        ("info.yaml", TEST_INFO.as_bytes()),
        ("icon.png", &b"\x89PNG fake"[..]),
        ("payload", &payload[..]),
    ] {
        digest.add_file_data(data);
        digest.finish_file(data.len() as u64, name);
    }
    let footer = amps::package::writer::footer_text(&digest.finish());
    let mut sized = RawTar::valid_start()
        .entry(b"././@PaxHeader", b'x', b"13 size=5000\n")
        .bytes;
    sized.extend_from_slice(&tar_header(b"payload", b'0', 0));
    sized.extend_from_slice(&[7u8; 5120]);
    let sized = RawTar { bytes: sized }
        .file("--PACKAGE-FOOTER--", footer.as_bytes())
        .finish();
    let info = read_bytes(&sized).expect("a pax size record is honoured");
    assert_eq!(info.id, "io.example.hostile");
    // Two size records in one pax header could make two readers disagree: refused.
    let twice = RawTar::valid_start()
        .entry(b"././@PaxHeader", b'x', b"13 size=5000\n11 size=10\n")
        .file("payload", &payload)
        .finish();
    assert_rejected(&twice, "the pax record 'size' appears twice");
}

#[test]
fn random_bytes_behind_a_gzip_magic_are_refused() {
    let mut bytes = vec![0x1f, 0x8b];
    bytes.extend_from_slice(&noise(100_000));
    assert_rejected(&bytes, "the package data is corrupt");
    let mut valid_header_random_body = gzip(b"")[..10].to_vec();
    valid_header_random_body.extend_from_slice(&noise(100_000));
    assert!(read_bytes(&valid_header_random_body).is_err());
    assert_rejected(&gzip(&noise(100_000)), "checksum");
}

/// Over HTTP: every hostile package fails with a message, the server keeps answering, stays
/// small, and keeps nothing.
#[test]
fn the_server_survives_hostile_uploads() {
    let (dir, server) = {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &[]);
        (dir, server)
    };
    let mut random = vec![0x1f, 0x8b];
    random.extend_from_slice(&noise(1 << 20));
    let hostile = [
        RawTar::valid_start().entry(b"link", b'2', b"").finish(),
        RawTar::valid_start()
            .entry(b"../../etc/passwd", b'0', b"x")
            .finish(),
        RawTar::valid_start()
            .file("--PACKAGE-HEADER--", TEST_HEADER.as_bytes())
            .finish(),
        RawTar::valid_start().file("x", b"1").finish(),
        RawTar::default()
            .file(
                "--PACKAGE-HEADER--",
                format!(
                    "{TEST_HEADER}extra: {}{}\n",
                    "[".repeat(20_000),
                    "]".repeat(20_000)
                )
                .as_bytes(),
            )
            .finish(),
        RawTar::default()
            .file("--PACKAGE-HEADER--", &vec![b'#'; 20 << 20])
            .finish(),
        many_entries(),
        zip_bomb(),
        random,
    ];
    for package in &hostile {
        let answer = server
            .request("PUT", "/package/upload", &[], package)
            .json();
        assert_eq!(answer["status"], "fail");
        assert!(!answer["message"].as_str().unwrap().is_empty());
        assert_eq!(
            server.get("/hello?project-id=PROJECT").json(),
            json!({"status": "ok"})
        );
    }
    let peak_kib = server.peak_rss_kib();
    eprintln!("peak RSS after the hostile uploads: {} KiB", peak_kib);
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    assert!(server.files(".packages").is_empty());
    assert_eq!(server.temp_files(), Vec::<String>::new());
    assert_eq!(server.list(""), json!([]));
    // The server first: its scanner would recreate folders in a directory being removed.
    drop(server);
    drop(dir);
}

/// Inputs the fuzz targets once crashed on (`tests/fuzz-regressions/`), replayed through the
/// same checks as the targets.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("yaml_metadata") {
            let text = String::from_utf8_lossy(&data);
            for doc in amps::yaml::parse_documents(&text, &Default::default()).unwrap_or_default() {
                if let amps::yaml::Node::Map(entries) = &doc {
                    let mut emitted = String::new();
                    amps::yaml::emit_map_entries(&mut emitted, entries, 0);
                    let again = amps::yaml::parse_documents(&emitted, &Default::default())
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(
                        amps::yaml::to_json(&again[0]).to_string(),
                        amps::yaml::to_json(&doc).to_string(),
                        "{name}"
                    );
                }
            }
        }
        count += 1;
    }
    assert!(count >= 1);
}
