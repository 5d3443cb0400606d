//! Spliced signed downloads through the real server: downloads with and without hardware id,
//! byte ranges across every piece, the uploaded file's own bytes first, `.cache/` small, its
//! records kept across restarts, and a forged or linked record never served.

use crate::util::*;
use std::path::Path;

/// The sizes of the files in `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn the_server_splices_signed_downloads_into_the_uploaded_file() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let args: [&dyn AsRef<std::ffi::OsStr>; 4] =
        [&"--sc", &certs.store_p12(), &"--sp", &P12_PASSWORD];
    let server = Server::start(dir.path(), &args);
    let big = make_package(
        dir.path(),
        "io.example.big",
        &[],
        &[],
        "1",
        Some(&noise(8 << 20)),
    );
    let small = make_package(dir.path(), "io.example.small", &[], &[], "1", None);
    // A package signed the old way (a footer after the store signature): it still works.
    let odd = dir.path().join("odd.ampkg");
    std::fs::write(
        &odd,
        crate::splice::raw_package_with_footers(&[
            "%YAML 1.1\n---\nstoreSignature: 'c3RvcmU='\n",
            "%YAML 1.1\n---\ndeveloperSignature: 'ZGV2'\n",
        ]),
    )
    .unwrap();
    for package in [&big, &small, &odd] {
        assert_eq!(server.upload(package)["status"], "ok");
    }
    server.lines.wait_for("the recompression note", |lines| {
        lines
            .iter()
            .any(|l| l.contains("made from a recompressed copy"))
    });
    let mut downloads = Vec::new();
    for (id, file) in [
        ("io.example.big", &big),
        ("io.example.small", &small),
        ("io.example.hostile", &odd),
    ] {
        let uploaded = std::fs::read(file).unwrap();
        for hardware_id in ["", "08154711"] {
            let target = format!("/package/download?id={id}&hardware-id={hardware_id}");
            let whole = server.get(&target);
            assert_eq!(whole.status, 200, "{target}");
            let info = read_bytes(&whole.body).unwrap_or_else(|e| panic!("{target}: {e}"));
            assert!(info.store_signature.is_some());
            assert_eq!(info.digest, read_bytes(&uploaded).unwrap().digest);
            // Byte ranges around every piece boundary, reassembled.
            let total = whole.body.len();
            let mut reassembled = Vec::new();
            let mut first = 0;
            let mut ends: Vec<usize> = [3000, 2000, 500]
                .into_iter()
                .filter_map(|back| total.checked_sub(back))
                .chain([total / 3])
                .collect();
            ends.push(total - 1);
            ends.sort();
            ends.dedup();
            for last in ends {
                let range = format!("bytes={first}-{last}");
                let part = server.request("GET", &target, &[("Range", &range)], b"");
                assert_eq!(part.status, 206, "{target} {range}");
                reassembled.extend_from_slice(&part.body);
                first = last + 1;
            }
            assert!(reassembled == whole.body, "{target}: the ranges join up");
            downloads.push((target, uploaded.clone(), whole.body));
        }
    }
    // The big one: the uploaded file's own bytes, then a small tail.
    let (_, uploaded, signed) = &downloads[0];
    let common = uploaded
        .iter()
        .zip(signed)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        common as f64 > uploaded.len() as f64 * 0.99,
        "{common} of {}",
        uploaded.len()
    );
    assert!(signed.len() < uploaded.len() + 64 * 1024);
    let cache = dir.path().join(".cache");
    let packages = dir.path().join(".packages");
    wait_until("the seam record of the big package", || {
        server.files(".cache").iter().any(|f| f.ends_with(".seam"))
    });
    assert!(
        folder_bytes(&cache) * 100 <= folder_bytes(&packages),
        ".cache/ holds {} bytes beside {} in .packages/",
        folder_bytes(&cache),
        folder_bytes(&packages)
    );

    // A restart keeps the record and serves the same bytes; what older versions left goes.
    let record = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seam"))
        .unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&record).unwrap());
    drop(server);
    let stale = cache.join(format!("{}.body.gz", "0".repeat(40)));
    std::fs::write(&stale, b"a body an older version built").unwrap();
    let server = Server::start(dir.path(), &args);
    assert!(!stale.exists());
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&record).unwrap()),
        inode,
        "the record was kept as it was"
    );
    for (target, _, before) in &downloads {
        let again = server.get(target);
        assert!(
            &again.body == before,
            "{target}: the same bytes after a restart"
        );
    }
}

#[test]
fn a_forged_seam_record_is_never_served() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let args: [&dyn AsRef<std::ffi::OsStr>; 4] =
        [&"--sc", &certs.store_p12(), &"--sp", &P12_PASSWORD];
    let server = Server::start(dir.path(), &args);
    // Noise, then 6 MiB of zeros: the last deflate block holds more than verification keeps,
    // so after a restart the seam comes from the record (or is rebuilt), not from memory.
    let mut payload = noise(4 << 20);
    payload.resize(payload.len() + (6 << 20), 0);
    let big = make_package(dir.path(), "io.example.big", &[], &[], "1", Some(&payload));
    let amps::package::splice::Splice::Cut(cut) = read(&big).unwrap().splice else {
        panic!("not cut")
    };
    assert!(cut.seam.is_none(), "the seam is rebuilt, then recorded");
    server.upload(&big);
    let target = "/package/download?id=io.example.big";
    let before = server.get(target).body;
    wait_until("the seam record", || {
        server.files(".cache").iter().any(|f| f.ends_with(".seam"))
    });
    drop(server);
    // Same first line, other seam bytes; then a record that is a link to elsewhere.
    let cache = dir.path().join(".cache");
    let name = server_files(&cache, ".seam");
    let record = std::fs::read(cache.join(&name)).unwrap();
    let head = record.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut forged = record[..head].to_vec();
    forged.extend(gzip(b"forged bytes in place of the verified ones"));
    for attempt in 0..2 {
        if attempt == 0 {
            std::fs::write(cache.join(&name), &forged).unwrap();
        } else {
            std::fs::remove_file(cache.join(&name)).unwrap();
            let elsewhere = dir.path().join("elsewhere");
            std::fs::write(&elsewhere, &forged).unwrap();
            std::os::unix::fs::symlink(&elsewhere, cache.join(&name)).unwrap();
        }
        let server = Server::start(dir.path(), &args);
        let after = server.get(target).body;
        assert!(
            after == before,
            "attempt {attempt}: the verified bytes, not the record's"
        );
    }
    let elsewhere = std::fs::read(dir.path().join("elsewhere")).unwrap();
    assert!(elsewhere == forged, "nothing was written through the link");
}

fn server_files(dir: &Path, suffix: &str) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(suffix))
        .unwrap()
}

/// `.cache/` replaced by a link to a folder elsewhere before a start: the link is replaced
/// by a folder of ours, and nothing is written through it.
#[test]
fn a_linked_cache_folder_is_never_followed() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, data.join(".cache")).unwrap();
    let args: [&dyn AsRef<std::ffi::OsStr>; 4] =
        [&"--sc", &certs.store_p12(), &"--sp", &P12_PASSWORD];
    let server = Server::start(&data, &args);
    let big = make_package(
        dir.path(),
        "io.example.big",
        &[],
        &[],
        "1",
        Some(&noise(4 << 20)),
    );
    server.upload(&big);
    assert!(read_bytes(&server.get("/package/download?id=io.example.big").body).is_ok());
    wait_until("the seam record", || {
        server.files(".cache").iter().any(|f| f.ends_with(".seam"))
    });
    let cache = std::fs::symlink_metadata(data.join(".cache")).unwrap();
    assert!(cache.is_dir(), "a folder of ours, not the link");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}
