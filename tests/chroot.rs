//! The static binaries of `make dist`, each alone in an empty chroot: only the binary, a data
//! directory and the test's certificates. Run by `make test-dist` (as root; a visible skip
//! otherwise), with `AMPS_BIN_DIR` pointing at `dist/`.

use crate::util::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An empty root holding `binary` (from `AMPS_BIN_DIR`) and the test certificates, or `None`
/// (with a recorded skip) when this cannot run here.
fn chroot_with(binary_name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    if std::env::var_os("AMPS_BIN_DIR").is_none() {
        skip("the chroot tests need the static binaries: make test-dist");
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("chroot needs root");
        return None;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(binary(binary_name), root.path().join(binary_name)).unwrap();
    let certs = root.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ours = certificates();
    for (from, to) in [
        (ours.store_p12(), "store.p12"),
        (ours.dev_p12(), "dev.p12"),
        (ours.ca(), "ca.crt"),
        (ours.devca(), "devca.crt"),
    ] {
        std::fs::copy(from, certs.join(to)).unwrap();
    }
    let dir = root.path().to_path_buf();
    Some((root, dir))
}

fn in_chroot(root: &Path, program: &str) -> Command {
    let mut command = Command::new("chroot");
    command.arg(root).arg(format!("/{program}"));
    command
}

#[test]
#[ignore = "the static server in an empty chroot: make test-dist"]
fn chroot_the_static_server_runs_alone() {
    let Some((_keep, root)) = chroot_with("appman-package-server") else {
        return;
    };
    let mut command = in_chroot(&root, "appman-package-server");
    command.args([
        "--dd",
        "/data",
        "--la",
        "127.0.0.1:0",
        "--sc",
        "/certs/store.p12",
        "--sp",
        P12_PASSWORD,
    ]);
    let mut server = Server::launch(command, &root.join("data"));
    server.wait_until_listening();
    assert_eq!(
        server.get("/hello?project-id=PROJECT").json(),
        json!({"status": "ok"})
    );
    let work = tempfile::tempdir().unwrap();
    let package = make_package(work.path(), "io.example.chroot", &[], &[], "1", None);
    assert_eq!(server.upload(&package)["status"], "ok");
    let signed = server.get("/package/download?id=io.example.chroot&hardware-id=box1");
    let info = read_bytes(&signed.body).expect("the signed download reads back");
    let trust = amps::package::signature::TrustStore::from_files(&[certificates().ca()]).unwrap();
    let content = amps::package::signature::store_content(&info.digest, "box1").unwrap();
    trust
        .verify(&info.store_signature.unwrap(), content.as_bytes())
        .expect("store-signed for box1");
    assert_eq!(
        server
            .post_form("/package/remove", "id=io.example.chroot")
            .json(),
        json!({"status": "ok", "removed": 1})
    );
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().0, 0);
}

#[test]
#[ignore = "the static packager in an empty chroot: make test-dist"]
fn chroot_the_static_packager_creates_signs_and_verifies() {
    let Some((_keep, root)) = chroot_with("appman-packager") else {
        return;
    };
    let copied = Command::new("cp")
        .arg("-r")
        .arg(sample_source())
        .arg(root.join("src"))
        .status()
        .unwrap();
    assert!(copied.success());
    let run = |args: &[&str]| {
        let output = in_chroot(&root, "appman-packager")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&["create-package", "/hello.ampkg", "/src"]);
    run(&[
        "dev-sign-package",
        "/hello.ampkg",
        "/signed.ampkg",
        "/certs/dev.p12",
        P12_PASSWORD,
    ]);
    run(&[
        "dev-verify-package",
        "/signed.ampkg",
        "/certs/ca.crt",
        "/certs/devca.crt",
    ]);
    let info = read(&root.join("hello.ampkg")).unwrap();
    assert_eq!(
        info.digest_hex(),
        "833eca2b2bde4dc91bad5b1b66acb7462bc1f1470d546a40d46adaa3a9532eaa"
    );
}
