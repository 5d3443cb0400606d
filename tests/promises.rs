//! The smaller promises of the threat model: a server fault is never a client's 4xx, settings
//! files are bounded regular files, short tokens and non-deterministic signing keys are refused
//! at start, every answer says `nosniff`, and dates never lie.

use crate::util::*;
use std::path::Path;

/// A small tmpfs mounted at a new directory, unmounted on drop; `None` (a visible skip) where
/// mounting is not allowed.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            skip(
                "cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): full-disk test not run",
            );
            return None;
        }
        Some(SmallDisk { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .output();
    }
}

#[test]
fn a_full_disk_is_a_server_fault_that_clients_retry() {
    let packages = tempfile::tempdir().unwrap();
    let big = make_package(
        packages.path(),
        "io.example.big",
        &[],
        &[],
        "1",
        Some(&noise(3 << 20)),
    );
    let small = make_package(packages.path(), "io.example.small", &[], &[], "1", None);
    let Some(disk) = SmallDisk::mount(2 << 20) else {
        return;
    };
    let data = disk.path.join("data");
    {
        let server = Server::start(&data, &[]);
        let answer = server.request("PUT", "/package/upload", &[], &std::fs::read(&big).unwrap());
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert_eq!(answer.header("Retry-After"), Some("10"));
        assert_eq!(answer.json()["status"], "fail");
        assert!(
            answer.json()["message"]
                .as_str()
                .unwrap()
                .contains("could not store")
        );
        // Nothing is left behind, and the server goes on.
        assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
        assert_eq!(server.upload(&small)["status"], "ok");
        assert_eq!(server.get("/hello?project-id=PROJECT").status, 200);
    }
}

#[test]
fn settings_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 2 << 20]).unwrap();
    // The configuration file: a FIFO, a link to /dev/zero, a huge file.
    for (target, what) in [
        (fifo.as_path(), "not a regular file (a FIFO)"),
        (Path::new("/dev/zero"), "not a regular file (a device)"),
        (big.as_path(), "larger than 1048576 bytes"),
    ] {
        let config = data.join("amps-config.yaml");
        let _ = std::fs::remove_file(&config);
        std::os::unix::fs::symlink(target, &config).unwrap();
        let (code, stderr) = Server::start_failing(&data, &[]).wait_exit();
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("amps-config.yaml") && stderr.contains(what),
            "{stderr}"
        );
        std::fs::remove_file(&config).unwrap();
    }
    // Key, certificate and token files.
    let certs = certificates();
    let (cert, key) = (certs.tls_cert(), certs.tls_key());
    let fifo_arg: &dyn AsRef<std::ffi::OsStr> = &fifo;
    for args in [
        vec![
            &"--tls-cert" as &dyn AsRef<std::ffi::OsStr>,
            fifo_arg,
            &"--tls-key",
            &key,
        ],
        vec![&"--tls-cert", &cert, &"--tls-key", &"/dev/zero"],
        vec![&"--upload-token-file", fifo_arg],
        vec![&"--sc", fifo_arg, &"--sp", &P12_PASSWORD],
    ] {
        let (code, stderr) = Server::start_failing(&data, &args).wait_exit();
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
}

#[test]
fn short_tokens_and_ecdsa_store_keys_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, stderr) =
        Server::start_failing(&data, &[&"--upload-token", &"short-token"]).wait_exit();
    assert_ne!(code, 0);
    assert!(stderr.contains("at least 16"), "{stderr}");

    let p12 = dir.path().join("ecdsa.p12");
    std::fs::write(&p12, ecdsa_p12()).unwrap();
    let (code, stderr) =
        Server::start_failing(&data, &[&"--sc", &p12, &"--sp", &P12_PASSWORD]).wait_exit();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("ECDSA") && stderr.contains("RSA"),
        "{stderr}"
    );
}

/// A PKCS#12 file with a self-signed ECDSA (P-256) certificate and its key.
fn ecdsa_p12() -> Vec<u8> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = openssl::pkey::PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "ecdsa store").unwrap();
    let name = name.build();
    let mut builder = openssl::x509::X509::builder().unwrap();
    builder.set_version(2).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    let not_before = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
    let not_after = openssl::asn1::Asn1Time::days_from_now(30).unwrap();
    builder.set_not_before(&not_before).unwrap();
    builder.set_not_after(&not_after).unwrap();
    builder
        .sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let certificate = builder.build();
    openssl::pkcs12::Pkcs12::builder()
        .name("store")
        .pkey(&key)
        .cert(&certificate)
        .build2(P12_PASSWORD)
        .unwrap()
        .to_der()
        .unwrap()
}

#[test]
fn every_answer_says_nosniff() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let package = make_package(dir.path(), "io.example.typed", &[], &[], "1", None);
    server.upload(&package);
    for target in [
        "/hello?project-id=PROJECT",
        "/package/list",
        "/package/icon?id=io.example.typed",
        "/package/download?id=io.example.typed",
        "/category/list",
        "/nothing",
        "/",
    ] {
        let answer = server.get(target);
        assert_eq!(
            answer.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{target}"
        );
    }
    // The HTTP layer's own refusals too.
    let raw = raw_http(
        server.port,
        b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    );
    let refused = parse_response(&raw);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("X-Content-Type-Options"), Some("nosniff"));
}

/// Seconds of an HTTP date.
fn seconds(date: &str) -> u64 {
    httpdate::parse_http_date(date)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn dates_tell_versions_apart_and_follow_the_signing_certificate() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = certs.store_p12();
    let server = Server::start(&data, &[&"--sc", &store, &"--sp", &P12_PASSWORD]);
    let package = make_package(dir.path(), "io.example.dated", &[], &[], "1", None);
    server.upload(&package);
    let target = "/package/download?id=io.example.dated";
    // Whenever a date is sent, it is at least a second older than the answer: a version
    // changed within the same second cannot hide behind it.
    let answer = server.get(target);
    if let Some(modified) = answer.header("Last-Modified") {
        assert!(seconds(modified) < seconds(answer.header("Date").unwrap()));
    }
    wait_until("Last-Modified, a second after the upload", || {
        server.get(target).header("Last-Modified").is_some()
    });
    let before = server
        .get(target)
        .header("Last-Modified")
        .unwrap()
        .to_string();
    drop(server);

    // Another signing certificate: every signed download is newer than copies signed before.
    let other = certs.other_p12();
    let server = Server::start(&data, &[&"--sc", &other, &"--sp", &P12_PASSWORD]);
    let since = server.request("GET", target, &[("If-Modified-Since", &before)], b"");
    assert_eq!(since.status, 200, "the bytes changed with the certificate");
    wait_until("Last-Modified with the new certificate", || {
        server.get(target).header("Last-Modified").is_some()
    });
    let after = server
        .get(target)
        .header("Last-Modified")
        .unwrap()
        .to_string();
    assert!(seconds(&after) > seconds(&before), "{before} then {after}");
    // The same certificate again keeps its date across a restart.
    drop(server);
    let server = Server::start(&data, &[&"--sc", &other, &"--sp", &P12_PASSWORD]);
    assert_eq!(
        server.get(target).header("Last-Modified"),
        Some(after.as_str())
    );
}
