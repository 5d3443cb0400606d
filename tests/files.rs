//! Hostile files: whoever can write into `upload/` (or send one package) tries to make the
//! server serve or write files it should not, block, loop, or use memory without bound. Each
//! test asserts what a user would see: the secret is never served, nothing appears outside the
//! data directory, later uploads are still taken, SIGTERM still stops the server, a verified
//! package stays byte-identical, memory stays within the documented bound.

use crate::util::*;
use serde_json::json;
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Put `bytes` into `upload/name` the way tools do it: a dot file renamed when complete.
fn drop_file(upload: &Path, name: &str, bytes: &[u8]) {
    let part = upload.join(format!(".{name}.part"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(&part, upload.join(name)).unwrap();
}

/// A directory outside the data directory with a file `secret` in it.
fn secret_outside() -> (tempfile::TempDir, std::path::PathBuf) {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"the secret").unwrap();
    (outside, secret)
}

/// Nothing in `.packages/` is a link, and every file there is a regular file of ours.
fn assert_packages_are_plain_files(data: &Path) {
    for entry in std::fs::read_dir(data.join(".packages")).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{:?} is not a plain file",
            entry.path()
        );
        assert_eq!(meta.nlink(), 1, "{:?} has other names", entry.path());
    }
}

#[test]
fn links_fifos_and_devices_in_upload_are_refused_without_being_opened() {
    let dir = tempfile::tempdir().unwrap();
    let (_outside, secret) = secret_outside();
    let server = Server::start(dir.path(), &[]);
    let upload = dir.path().join("upload");
    symlink(&secret, upload.join("link.ampkg")).unwrap();
    mkfifo(&upload.join("fifo.ampkg"));
    server.lines.wait_for_line(
        " x failed   fifo.ampkg (a FIFO: only regular files are taken)",
        0,
    );
    server.lines.wait_for_line(
        " x failed   link.ampkg (a symbolic link: only regular files are taken)",
        0,
    );
    // Moved aside as they are (the link still a link), nothing served, nothing installed.
    assert!(
        std::fs::symlink_metadata(upload.join("rejected/link.ampkg"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(server.list("").as_array().unwrap().is_empty());
    assert_eq!(std::fs::read(&secret).unwrap(), b"the secret");
    // The scanner is not blocked: a later upload is taken, and SIGTERM stops the server.
    let package = make_package(dir.path(), "io.example.after", &[], &[], "1", None);
    drop_file(&upload, "after.ampkg", &std::fs::read(&package).unwrap());
    server
        .lines
        .wait_for_line(" + adding   io.example.after [all]", 0);
    assert_packages_are_plain_files(dir.path());
    server.signal(libc::SIGTERM);
    let (code, _) = server.wait_exit();
    assert_eq!(code, 0);
}

/// A package swapped for a symbolic link to a secret while it is verified: whatever the
/// timing, the secret is never served and no link reaches `.packages/`.
#[test]
fn a_package_swapped_for_a_link_during_verification_never_serves_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (_outside, secret) = secret_outside();
    let server = Server::start(dir.path(), &[]);
    let upload = dir.path().join("upload");
    // Big enough to take a while to verify.
    let package = make_package(
        dir.path(),
        "io.example.swap",
        &[],
        &[],
        "1",
        Some(&noise(8 << 20)),
    );
    let bytes = std::fs::read(&package).unwrap();
    for round in 0..5u64 {
        drop_file(&upload, "swap.ampkg", &bytes);
        std::thread::sleep(Duration::from_millis(100 * round));
        let link = upload.join(".swap.link");
        symlink(&secret, &link).unwrap();
        std::fs::rename(&link, upload.join("swap.ampkg")).unwrap();
        wait_until("the swapped file being dealt with", || {
            !upload.join("swap.ampkg").exists() && !upload.join("swap.ampkg").is_symlink()
        });
    }
    assert_packages_are_plain_files(dir.path());
    let download = server.get("/package/download?id=io.example.swap");
    if download.status == 200 {
        assert!(
            download.body == bytes,
            "a download that is not the verified package"
        );
    }
    assert!(!download.text().contains("the secret"));
}

/// The uploader keeps a hard link to the file it dropped and changes it after it was taken:
/// devices still download exactly what was verified.
#[test]
fn a_verified_package_stays_identical_whatever_happens_to_the_uploaded_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let upload = dir.path().join("upload");
    let package = make_package(dir.path(), "io.example.kept", &[], &[], "1", None);
    let bytes = std::fs::read(&package).unwrap();
    let keep = dir.path().join("kept-link");
    std::fs::write(upload.join(".kept.part"), &bytes).unwrap();
    std::fs::hard_link(upload.join(".kept.part"), &keep).unwrap();
    std::fs::rename(upload.join(".kept.part"), upload.join("kept.ampkg")).unwrap();
    server
        .lines
        .wait_for_line(" + adding   io.example.kept [all]", 0);
    std::fs::write(&keep, b"changed by the uploader").unwrap();
    assert!(server.get("/package/download?id=io.example.kept").body == bytes);
    let stored = std::fs::metadata(dir.path().join(".packages/io.example.kept_all.ampkg")).unwrap();
    assert_eq!(stored.permissions().mode() & 0o777, 0o644);
    assert_ne!(stored.ino(), std::fs::metadata(&keep).unwrap().ino());
    assert_packages_are_plain_files(dir.path());
}

/// `upload/rejected` as a link to another directory: rejected files never land there.
#[test]
fn a_rejected_folder_that_is_a_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let upload = dir.path().join("upload");
    symlink(outside.path(), upload.join("rejected")).unwrap();
    drop_file(&upload, "x.sh", b"echo owned");
    server.lines.wait_for_line(
        " x failed   upload/rejected (upload/rejected is a symbolic link: rejected files go to upload/rejected.1/)",
        0,
    );
    server
        .lines
        .wait_for_line(" x failed   x.sh (wrong file type (6563686f))", 0);
    // The console says where it went.
    server.lines.wait_for("where x.sh went", |lines| {
        lines.iter().any(|l| {
            l == " = keeping  x.sh in upload/rejected/x.sh"
                || l == " = keeping  x.sh in upload/rejected.1/x.sh"
        })
    });
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "a file was written outside the data directory"
    );
    // The link itself is an upload like any other: moved aside too, after which
    // upload/rejected/ is a folder of ours again. x.sh is in one of the two, never outside.
    let kept: Vec<_> = ["rejected/x.sh", "rejected.1/x.sh"]
        .iter()
        .map(|p| upload.join(p))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(kept.len(), 1, "x.sh kept once");
    assert!(
        !std::fs::symlink_metadata(kept[0].parent().unwrap())
            .unwrap()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&kept[0]).unwrap(), b"echo owned");
}

/// A rejected file that cannot be moved stays and is verified once, not in a loop; long names
/// get a shortened free name; only the newest 100 rejected files are kept.
#[test]
fn rejected_files_are_verified_once_and_kept_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload");
    std::fs::create_dir_all(&upload).unwrap();
    // Every name for the rejected folder is taken by a plain file.
    for name in
        std::iter::once("rejected".to_string()).chain((1..=9).map(|n| format!("rejected.{n}")))
    {
        std::fs::write(upload.join(&name), b"not a folder").unwrap();
    }
    let server = Server::start(dir.path(), &[]);
    // The blockers themselves are bad uploads that cannot be moved: each said once.
    server.lines.wait_for_line(
        " x failed   rejected.9 (could not move it to rejected/: upload/rejected is a regular file; it stays)",
        0,
    );
    drop_file(&upload, "stuck.ampkg", b"garbage");
    server.lines.wait_for_line(
        " x failed   stuck.ampkg (could not move it to rejected/: upload/rejected is a regular file; it stays)",
        0,
    );
    // Later passes happen (a valid upload is taken) without the stuck file being seen again.
    let package = make_package(dir.path(), "io.example.later", &[], &[], "1", None);
    drop_file(&upload, "zz-later.ampkg", &std::fs::read(&package).unwrap());
    server
        .lines
        .wait_for_line(" + adding   io.example.later [all]", 0);
    let stuck = server
        .lines
        .all()
        .iter()
        .filter(|l| l.contains("stuck.ampkg"))
        .count();
    assert_eq!(stuck, 2, "{:?}", server.lines.all());
    drop(server);

    // With the folder free: a 255-byte name that is taken in rejected/ gets a shortened one.
    for name in
        std::iter::once("rejected".to_string()).chain((1..=9).map(|n| format!("rejected.{n}")))
    {
        std::fs::remove_file(upload.join(&name)).unwrap();
    }
    std::fs::remove_file(upload.join("stuck.ampkg")).unwrap();
    let long = "l".repeat(255);
    std::fs::create_dir_all(upload.join("rejected")).unwrap();
    std::fs::write(upload.join("rejected").join(&long), b"earlier").unwrap();
    let server = Server::start(dir.path(), &[]);
    std::fs::write(upload.join(".long"), b"garbage").unwrap();
    std::fs::rename(upload.join(".long"), upload.join(&long)).unwrap();
    let shortened = format!("{}.1", "l".repeat(253));
    wait_until("the long name moved", || {
        upload.join("rejected").join(&shortened).exists()
    });
    // 120 more rejects: the oldest are dropped, 100 stay.
    for i in 0..120 {
        std::fs::write(upload.join(format!("bad-{i:03}")), b"garbage").unwrap();
    }
    wait_until("all rejects handled", || {
        std::fs::read_dir(&upload)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("bad-"))
    });
    assert_eq!(
        std::fs::read_dir(upload.join("rejected")).unwrap().count(),
        100
    );
    assert!(
        server
            .lines
            .all()
            .iter()
            .any(|l| l.starts_with(" - dropping rejected/")
                && l.ends_with("(only the newest 100 rejected files are kept)"))
    );
}

/// A file whose lease cannot be taken (the server runs as another user) is taken only after it
/// stopped changing, never half-written.
#[test]
fn a_file_another_user_is_still_writing_is_not_taken() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("needs root to run the server as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload");
    std::fs::create_dir_all(upload.join("rejected")).unwrap();
    let nobody = 65534;
    for path in [dir.path(), &upload, &upload.join("rejected")] {
        std::os::unix::fs::chown(path, Some(nobody), Some(nobody)).unwrap();
    }
    let server = Server::start_as_user(dir.path(), &[], nobody);
    let package = make_package(
        dir.path(),
        "io.example.slowcopy",
        &[],
        &[],
        "1",
        Some(&noise(200_000)),
    );
    let bytes = std::fs::read(&package).unwrap();
    // Written by root, in pieces, for longer than the unchanged time.
    let mut writer = std::fs::File::create(upload.join("slowcopy.ampkg")).unwrap();
    let pieces: Vec<&[u8]> = bytes.chunks(bytes.len() / 25 + 1).collect();
    for piece in pieces {
        std::io::Write::write_all(&mut writer, piece).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(writer);
    server
        .lines
        .wait_for_line(" + adding   io.example.slowcopy [all]", 0);
    assert!(
        !server.lines.all().iter().any(|l| l.contains(" x failed")),
        "{:?}",
        server.lines.all()
    );
    assert!(server.get("/package/download?id=io.example.slowcopy").body == bytes);
}

/// Names are printed with control characters escaped: one event is one line.
#[test]
fn names_cannot_forge_console_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let upload = dir.path().join("upload");
    drop_file(&upload, "evil\n + adding   forged [all]\x1b[2K", b"garbage");
    server.lines.wait_for_line(
        " x failed   evil\\n + adding   forged [all]\\x1b[2K (wrong file type (67617262))",
        0,
    );
    assert!(
        !server
            .lines
            .all()
            .iter()
            .any(|l| l.starts_with(" + adding   forged") || l.contains('\x1b'))
    );
}

/// A footer of 2 MiB is accepted on upload and copied intact into signed downloads, which
/// verify; two size records in a pax header are refused without a large allocation.
#[test]
fn signed_downloads_copy_every_footer_verification_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates();
    let server = Server::start(
        dir.path(),
        &[&"--sc", &certs.store_p12(), &"--sp", &P12_PASSWORD],
    );
    let padding = format!("padding: '{}'\n", "p".repeat(2 << 20));
    let big_footer = raw_package("io.example.footer", "", b"\x89PNG", &padding);
    let answer = server.request("PUT", "/package/upload", &[], &big_footer);
    assert_eq!(answer.json()["status"], "ok", "{}", answer.text());
    let signed = server.get("/package/download?id=io.example.footer&hardware-id=dev1");
    assert_eq!(signed.status, 200);
    let info = read_bytes(&signed.body).expect("the signed download reads back");
    assert!(info.store_signature.is_some());
    assert_eq!(info.digest, read_bytes(&big_footer).unwrap().digest);

    let mut twice = RawTar::valid_start()
        .entry(b"././@PaxHeader", b'x', b"13 size=5000\n11 size=10\n")
        .bytes;
    twice.extend_from_slice(&tar_header(b"payload", b'0', 0));
    twice.extend_from_slice(&[7u8; 5120]);
    let answer = server.request("PUT", "/package/upload", &[], &gzip(&twice));
    assert_eq!(
        answer.json(),
        json!({"status": "fail", "message": "the package data is corrupt: the pax record 'size' appears twice"})
    );
    assert!(server.peak_rss_kib() < 100 * 1024);
}

/// Metadata-heavy packages: memory stays bounded by bytes, large icons are served from the
/// package (with a warning), and each distinct list query costs at most its answer.
#[test]
fn memory_stays_bounded_with_metadata_heavy_packages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let big_icon = vec![0u8; 4 << 20];
    // 15 MB of descriptions in all: just under what the server keeps for a store.
    let description = format!("description: {{en: '{}'}}\n", "d".repeat(150 * 1024));
    for i in 0..100 {
        let package = raw_package(
            &format!("io.example.heavy{i:03}"),
            &description,
            &big_icon,
            "",
        );
        let answer = server.request("PUT", "/package/upload", &[], &package);
        assert_eq!(answer.json()["status"], "ok", "{}", answer.text());
    }
    for arch in [
        "",
        "?architecture=linux_x86_64",
        "?architecture=linux_arm64",
        "?category=x",
    ] {
        server.get(&format!("/package/list{arch}"));
    }
    assert_eq!(server.list("").as_array().unwrap().len(), 100);
    let icon = server.get("/package/icon?id=io.example.heavy042");
    assert_eq!(icon.status, 200);
    assert!(icon.body == big_icon);
    assert!(server.lines.all().iter().any(|l| l.starts_with(
        " ! warning  io.example.heavy042 [all] (its icon is 4194304 bytes: Qt's installer refuses icons over 262144 bytes"
    )));
    let peak = server.peak_rss_kib();
    eprintln!("100 packages with 150 KiB descriptions and 4 MiB icons: peak RSS {peak} KiB");
    assert!(peak < 150 * 1024, "peak RSS {peak} KiB");
    // More listed metadata than a sixteenth of the metadata limit is refused, naming it.
    let huge = format!("description: {{en: '{}'}}\n", "d".repeat(300 * 1024));
    let answer = server.request(
        "PUT",
        "/package/upload",
        &[],
        &raw_package("io.example.huge", &huge, b"x", ""),
    );
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("more than the 262144 bytes a package may list"),
        "{}",
        answer.text()
    );
}

/// `--cc` with a password writes a file only the server's user can read, and only after the
/// certificate loaded; a `.lock` link never makes the server write elsewhere; an id that looks
/// like a temporary name survives a restart.
#[test]
fn small_file_hazards_are_closed() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = Server::start_failing(
        dir.path(),
        &[&"--cc", &"--sc", &certs.store_p12(), &"--sp", &"wrong"],
    )
    .wait_exit();
    assert_eq!(code, 2, "{stderr}");
    assert!(!dir.path().join("amps-config.yaml").exists());
    drop(Server::start(
        dir.path(),
        &[&"--cc", &"--sc", &certs.store_p12(), &"--sp", &P12_PASSWORD],
    ));
    let mode = std::fs::metadata(dir.path().join("amps-config.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let locked = tempfile::tempdir().unwrap();
    let victim = locked.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let data = locked.path().join("data");
    std::fs::create_dir(&data).unwrap();
    symlink(&victim, data.join(".lock")).unwrap();
    let (code, stderr) = Server::start_failing(&data, &[]).wait_exit();
    assert_eq!(code, 2);
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    std::fs::remove_file(data.join(".lock")).unwrap();
    std::fs::hard_link(&victim, data.join(".lock")).unwrap();
    let (code, stderr) = Server::start_failing(&data, &[]).wait_exit();
    assert_eq!(code, 2);
    assert!(stderr.contains("is not a plain file"), "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    let tricky = tempfile::tempdir().unwrap();
    let server = Server::start(tricky.path(), &[]);
    let package = raw_package(".amps-tmp-1-1", "", b"x", "");
    assert_eq!(
        server
            .request("PUT", "/package/upload", &[], &package)
            .json()["status"],
        "ok"
    );
    drop(server);
    let server = Server::start(tricky.path(), &[]);
    assert_eq!(server.list("").as_array().unwrap().len(), 1);
}

/// The README's figure: resident memory per package in the worst case the limits allow (a
/// 256 KiB icon kept in memory, 256 KiB of listed text), and for the shared list answers.
#[test]
#[ignore = "a measurement for the README: make test-long"]
fn memory_per_package_in_the_worst_case() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let rss = || server.rss_kib();
    let icon = noise(256 * 1024);
    let text = format!("description: {{en: '{}'}}\n", "d".repeat(255 * 1024));
    let before = rss();
    // 60 of them: just under the 16 MiB of listed text and of icons the store keeps.
    for i in 0..60 {
        let package = raw_package(&format!("io.example.worst{i:03}"), &text, &icon, "");
        assert_eq!(
            server
                .request("PUT", "/package/upload", &[], &package)
                .json()["status"],
            "ok"
        );
    }
    let loaded = rss();
    for query in ["", "?architecture=a", "?architecture=b", "?architecture=c"] {
        server.get(&format!("/package/list{query}"));
    }
    let listed = rss();
    eprintln!(
        "60 worst-case packages: {} KiB per package; after 4 list queries of {} KiB each: +{} KiB (peak {} KiB)",
        (loaded - before) / 60,
        server.get("/package/list").body.len() / 1024,
        listed.saturating_sub(loaded),
        server.peak_rss_kib()
    );
}
