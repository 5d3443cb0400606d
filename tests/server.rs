//! The server against SPEC.md: start-up output, every endpoint, selection rules, filters,
//! signatures, the upload/ and remove/ folders, configuration and the lock.

use crate::util::*;
use amps::package::signature::{TrustStore, digest_content, store_content};
use serde_json::json;
use std::path::Path;

fn start_empty() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    (dir, server)
}

#[test]
fn start_up_output_is_exact() {
    let (dir, server) = start_empty();
    let lines = server.lines.all();
    let data = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        lines,
        [
            "Qt ApplicationManager Package Server".to_string(),
            format!("> Data directory: {}", data.display()),
            "> Project: PROJECT".into(),
            "> Verify developer signature on upload: no".into(),
            "> Add store signature on download: no".into(),
            "> Scanning .packages".into(),
            " (none found)".into(),
            format!("> HTTP server listening on: 127.0.0.1:{}", server.port),
        ]
    );
    for folder in [".packages", "upload", "remove"] {
        assert!(dir.path().join(folder).is_dir(), "{folder}");
    }
}

#[test]
fn start_up_verifies_stored_packages_and_leaves_bad_ones_alone() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let packages = dir.path().join(".packages");
    std::fs::create_dir_all(&packages).unwrap();
    let good = make_package(
        work.path(),
        "io.example.good",
        &[("en", "Good")],
        &[],
        "1",
        None,
    );
    std::fs::copy(&good, packages.join("io.example.good_all.ampkg")).unwrap();
    std::fs::copy(&good, packages.join("wrong-name.ampkg")).unwrap();
    std::fs::write(packages.join("broken.ampkg"), b"not a package").unwrap();
    std::fs::write(packages.join(".amps-tmp-1-1"), b"left by a killed run").unwrap();
    let server = Server::start(dir.path(), &[]);
    let lines = server.lines.all();
    let scan = lines
        .iter()
        .position(|l| l == "> Scanning .packages")
        .unwrap();
    assert_eq!(
        lines[scan + 1..scan + 4],
        [
            " = skipping broken.ampkg (wrong file type)".to_string(),
            " + adding   io.example.good [all]".into(),
            " = skipping wrong-name.ampkg (invalid package name: expected io.example.good_all.ampkg, found wrong-name.ampkg)".into(),
        ]
    );
    assert_eq!(
        server.files(".packages"),
        [
            "broken.ampkg",
            "io.example.good_all.ampkg",
            "wrong-name.ampkg"
        ]
    );
    assert_eq!(server.list("").as_array().unwrap().len(), 1);
}

/// The sequence of the Qt original's own test of this tool.
#[test]
fn reference_api_sequence() {
    let Some(vectors) = vectors() else { return };
    let (_dir, server) = start_empty();
    let package = vectors.join("reference/test.appkg");

    assert_eq!(
        server.get("/hello").json(),
        json!({"status": "incompatible-project-id"})
    );
    assert_eq!(
        server.get("/hello?project-id=WRONG").json(),
        json!({"status": "incompatible-project-id"})
    );
    let hello = server.get("/hello?project-id=PROJECT");
    assert_eq!(hello.header("Content-Type"), Some("application/json"));
    assert_eq!(hello.json(), json!({"status": "ok"}));

    assert_eq!(
        server.upload(&package),
        json!({"status": "ok", "result": "added", "id": "com.pelagicore.test", "architecture": "all"})
    );
    assert_eq!(server.files(".packages"), ["com.pelagicore.test_all.ampkg"]);
    assert_eq!(
        server.get("/category/list").json(),
        json!(["test-category"])
    );
    assert_eq!(
        server.list(""),
        json!([{"id": "com.pelagicore.test", "architecture": "", "names": {"de": "Hallo", "en": "Hello"},
                "descriptions": {}, "version": "1.0", "categories": ["test-category"],
                "iconUrl": "package/icon?id=com.pelagicore.test&architecture=all"}])
    );
    let icon = server.get("/package/icon?id=com.pelagicore.test");
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("Content-Type"), Some("image/png"));
    assert_eq!(
        icon.body,
        std::fs::read(vectors.join("source/icon.png")).unwrap()
    );
    assert_eq!(server.get("/package/icon").status, 404);
    assert_eq!(
        server.get("/package/icon?id=com.pelagicore.nothing").status,
        404
    );

    assert_eq!(server.get("/package/download").status, 404);
    let download = server.get("/package/download?id=com.pelagicore.test");
    assert_eq!(download.status, 200);
    assert_eq!(
        download.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        download.header("Content-Disposition"),
        Some("attachment; filename=\"com.pelagicore.test_all.ampkg\"")
    );
    assert_eq!(download.body, std::fs::read(&package).unwrap());

    let remove = server.post_form(
        "/package/remove",
        "id=com.pelagicore.test&architecture=linux_x86_64",
    );
    assert_eq!(remove.json(), json!({"status": "fail", "removed": 0}));
    let remove = server.post_form("/package/remove", "id=com.pelagicore.test");
    assert_eq!(remove.json(), json!({"status": "ok", "removed": 1}));
    assert_eq!(server.get("/category/list").json(), json!([]));
    assert_eq!(server.list(""), json!([]));
    assert!(server.files(".packages").is_empty());

    assert_eq!(server.upload(&package)["result"], "added");
    assert_eq!(server.upload(&package)["result"], "no changes");
    let update = server.upload(&vectors.join("reference/test-update.appkg"));
    assert_eq!(update["result"], "updated");
    assert_eq!(server.list("")[0]["version"], "2.0");

    let lines = server.lines.all();
    let tail: Vec<&str> = lines
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "> Upload via HTTP:",
            " = skipping com.pelagicore.test [all] (no changes)",
            "> Upload via HTTP:",
            " ! updating com.pelagicore.test [all]"
        ]
    );
    assert!(lines.contains(&"> Remove via HTTP:".to_string()));
    assert!(lines.contains(&" - removing com.pelagicore.test [all]".to_string()));
    assert!(
        lines.contains(&" = skipping com.pelagicore.test [linux_x86_64] (no match)".to_string())
    );
}

#[test]
fn methods_paths_and_parameters() {
    let (dir, server) = start_empty();
    let package = make_package(
        dir.path(),
        "io.example.a",
        &[("en", "A")],
        &["x"],
        "1",
        None,
    );
    server.upload(&package);
    let wrong = server.request("DELETE", "/hello", &[], b"");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("Allow"), Some("GET, HEAD, POST"));
    let get_upload = server.get("/package/upload");
    assert_eq!(get_upload.status, 405);
    assert_eq!(get_upload.header("Allow"), Some("PUT"));
    assert_eq!(
        server
            .get("/package/remove?id=io.example.a")
            .header("Allow"),
        Some("POST")
    );
    assert_eq!(server.get("/nothing/here").status, 404);
    // `/` is the page for people (our extension); other unknown paths stay 404.
    assert_eq!(server.get("/").status, 200);
    assert_eq!(server.get("/static/").status, 404);
    // Parameters from a form body, and from the query of a POST.
    assert_eq!(
        server.post_form("/hello", "project-id=PROJECT").json(),
        json!({"status": "ok"})
    );
    assert_eq!(
        server
            .request("POST", "/hello?project-id=PROJECT", &[], b"")
            .json(),
        json!({"status": "ok"})
    );
    assert_eq!(
        server
            .post_form("/package/list", "category=x")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        server.post_form("/package/icon", "id=io.example.a").status,
        200
    );
    // Valid percent-encoding is decoded; malformed encoding and non-UTF-8 bytes are refused.
    assert_eq!(
        server.get("/hello?project-id=PRO%4aECT").json(),
        json!({"status": "ok"})
    );
    for bad in [
        "/hello?project-id=%zz",
        "/hello?project-id=%ff%fe",
        "/package/list?filter=%",
    ] {
        assert_eq!(server.get(bad).status, 400, "{bad}");
    }
    assert_eq!(server.post_form("/package/remove", "id=%e0%80").status, 400);
}

#[test]
fn architectures_are_stored_and_selected_with_fallback() {
    let (dir, server) = start_empty();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let generic = make_package(
        &work,
        "io.example.app",
        &[("en", "App")],
        &["tools"],
        "1",
        None,
    );
    let x86 = make_package(
        &work,
        "io.example.app",
        &[("en", "App x86")],
        &["tools"],
        "2",
        Some(&elf_header(0x3e)),
    );
    let arm = make_package(
        &work,
        "io.example.app",
        &[("en", "App arm")],
        &["tools"],
        "3",
        Some(&elf_header(0xb7)),
    );
    let big = make_package(
        &work,
        "io.example.big",
        &[("en", "Big")],
        &[],
        "1",
        Some(&vec![3u8; 2_000_000]),
    );
    assert_eq!(server.upload(&big)["status"], "ok");
    let response = server.get("/package/download?id=io.example.big");
    assert_eq!(
        response.header("Content-Length"),
        Some(std::fs::metadata(&big).unwrap().len().to_string().as_str())
    );
    assert_eq!(response.body, std::fs::read(&big).unwrap());
    assert_eq!(
        server
            .post_form("/package/remove", "id=io.example.big")
            .json()["removed"],
        1
    );
    let only_arm = make_package(
        &work,
        "io.example.armonly",
        &[("en", "Arm only")],
        &[],
        "1",
        Some(&elf_header(0xb7)),
    );
    assert_eq!(server.upload(&generic)["architecture"], "all");
    assert_eq!(server.upload(&x86)["architecture"], "linux_x86_64");
    assert_eq!(server.upload(&arm)["architecture"], "linux_arm_64");
    assert_eq!(server.upload(&only_arm)["architecture"], "linux_arm_64");
    assert_eq!(
        server.files(".packages"),
        [
            "io.example.app_all.ampkg",
            "io.example.app_linux_arm_64.ampkg",
            "io.example.app_linux_x86_64.ampkg",
            "io.example.armonly_linux_arm_64.ampkg"
        ]
    );
    // Without architecture: every package of every architecture, ordered by id then architecture.
    let all = server.list("");
    let keys: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().into(),
                p["architecture"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("io.example.app".into(), "".into()),
            ("io.example.app".into(), "linux_arm_64".into()),
            ("io.example.app".into(), "linux_x86_64".into()),
            ("io.example.armonly".into(), "linux_arm_64".into())
        ]
    );
    // With architecture: per id that architecture, else the platform independent one.
    let x86_list = server.list("?architecture=linux_x86_64");
    let versions: Vec<&str> = x86_list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2"]);
    let windows = server.list("?architecture=windows_x86_64");
    assert_eq!(windows.as_array().unwrap().len(), 1);
    assert_eq!(windows[0]["architecture"], "");
    // Download and icon: exact architecture, else the platform independent one.
    let download = |q: &str| server.get(&format!("/package/download?{q}"));
    assert_eq!(
        download("id=io.example.app&architecture=linux_arm_64").body,
        std::fs::read(&arm).unwrap()
    );
    assert_eq!(
        download("id=io.example.app&architecture=windows_x86_64").body,
        std::fs::read(&generic).unwrap()
    );
    assert_eq!(
        download("id=io.example.app").body,
        std::fs::read(&generic).unwrap()
    );
    assert_eq!(download("id=io.example.armonly").status, 404);
    assert_eq!(
        download("id=io.example.armonly&architecture=linux_arm_64").status,
        200
    );
    assert_eq!(
        server.get("/package/icon?id=io.example.armonly").status,
        404
    );
    // Remove by architecture name, `all` for the platform independent one.
    assert_eq!(
        server
            .post_form("/package/remove", "id=io.example.app&architecture=all")
            .json(),
        json!({"status": "ok", "removed": 1})
    );
    assert_eq!(
        server
            .post_form("/package/remove", "id=io.example.app")
            .json(),
        json!({"status": "ok", "removed": 2})
    );
}

#[test]
fn shared_architecture_vectors_are_stored_by_name() {
    let Some(vectors) = vectors() else { return };
    let (_dir, server) = start_empty();
    for (file, arch) in [
        ("arch-linux-x86_64.ampkg", "linux_x86_64"),
        ("arch-android-elf.so.ampkg", "android_arm_32"),
        ("arch-windows-pe.exe.ampkg", "windows_x86_64"),
        ("arch-macos-macho.ampkg", "macos_arm_64"),
        (
            "arch-macos-universal.ampkg",
            "macos_universal_arm_64+x86_64",
        ),
    ] {
        assert_eq!(
            server.upload(&vectors.join("more").join(file))["architecture"],
            arch,
            "{file}"
        );
        assert!(
            server
                .files(".packages")
                .contains(&format!("com.pelagicore.test_{arch}.ampkg"))
        );
    }
    let mixed = server.upload(&vectors.join("more/arch-mixed.ampkg"));
    assert_eq!(mixed["status"], "fail");
    assert!(
        mixed["message"]
            .as_str()
            .unwrap()
            .contains("mixed architectures")
    );
    let universal = server.list("?architecture=macos_universal_arm_64%2Bx86_64");
    assert_eq!(
        universal[0]["iconUrl"],
        "package/icon?id=com.pelagicore.test&architecture=macos_universal_arm_64%2Bx86_64"
    );
    assert_eq!(
        server
            .get(
                "/package/icon?id=com.pelagicore.test&architecture=macos_universal_arm_64%2Bx86_64"
            )
            .status,
        200
    );
}

#[test]
fn list_filters_by_category_and_name() {
    let (dir, server) = start_empty();
    for (id, name, categories) in [
        ("io.example.one", "Hello World", vec!["games", "fun"]),
        ("io.example.two", "Calculator", vec!["tools"]),
        ("io.example.three", "hello again", vec!["tools", "fun"]),
    ] {
        server.upload(&make_package(
            dir.path(),
            id,
            &[("en", name), ("de", "Etwas")],
            &categories,
            "1",
            None,
        ));
    }
    let ids = |query: &str| -> Vec<String> {
        server
            .list(query)
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("?category=fun"), ["io.example.one", "io.example.three"]);
    assert_eq!(ids("?category=tools&filter=HELLO"), ["io.example.three"]);
    assert_eq!(ids("?filter=hello"), ["io.example.one", "io.example.three"]);
    assert_eq!(
        ids("?filter=etw"),
        ["io.example.one", "io.example.three", "io.example.two"]
    );
    assert!(ids("?category=nothing").is_empty());
    assert_eq!(
        server.get("/category/list").json(),
        json!(["fun", "games", "tools"])
    );
}

#[test]
fn invalid_packages_are_rejected_and_nothing_is_kept() {
    let Some(vectors) = vectors() else { return };
    let (_dir, server) = start_empty();
    let mut count = 0;
    for entry in std::fs::read_dir(vectors.join("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let answer = server.upload(&path);
        assert_eq!(answer["status"], "fail", "{}", path.display());
        assert!(!answer["message"].as_str().unwrap().is_empty());
        count += 1;
    }
    assert!(count >= 20);
    assert_eq!(server.list(""), json!([]));
    assert!(server.files(".packages").is_empty());
    assert_eq!(server.temp_files(), Vec::<String>::new());
    let empty = server.request("PUT", "/package/upload", &[], b"");
    assert_eq!(empty.json()["status"], "fail");
}

#[test]
fn upload_size_limit_gives_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[&"--max-package-size", &"1000"]);
    let package = make_package(
        dir.path(),
        "io.example.big",
        &[("en", "Big")],
        &[],
        "1",
        Some(&vec![7u8; 200_000]),
    );
    let answer = server.upload(&package);
    assert_eq!(answer["status"], "fail");
    assert_eq!(
        answer["message"],
        "the package is larger than the maximum package size of 1000 bytes"
    );
}

pub fn verify_store(info: &amps::package::PackageInfo, ca: &Path, hardware_id: &str) -> bool {
    let trust = TrustStore::from_files(&[ca]).unwrap();
    let content = store_content(&info.digest, hardware_id).unwrap();
    trust
        .verify(info.store_signature.as_ref().unwrap(), content.as_bytes())
        .is_ok()
}

#[test]
fn downloads_are_store_signed_for_the_hardware_id() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[&"--sc", &certs.store_p12(), &"--sp", &P12_PASSWORD],
    );
    assert!(
        server
            .lines
            .all()
            .contains(&"> Add store signature on download: yes".to_string())
    );
    let package = make_package(
        dir.path(),
        "io.example.signed",
        &[("en", "Signed")],
        &[],
        "1",
        Some(&noise(300_000)),
    );
    server.upload(&package);
    let original = read(&package).unwrap();
    for (query, hardware_id) in [
        ("&hardware-id=08154711", "08154711"),
        ("", ""),
        ("&hardware-id=", ""),
    ] {
        let response = server.get(&format!("/package/download?id=io.example.signed{query}"));
        assert_eq!(response.status, 200);
        let length: usize = response
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert_eq!(length, response.body.len());
        assert!(length > 300_000);
        let path = dir.path().join("download.ampkg");
        std::fs::write(&path, &response.body).unwrap();
        let info = read(&path).unwrap();
        assert_eq!(info.digest, original.digest, "the digest must not change");
        assert!(
            verify_store(&info, &certs.ca(), hardware_id),
            "'{hardware_id}'"
        );
        assert!(!verify_store(&info, &certs.ca(), "another-device"));
        // No signing time in the signature: the same request gives the same bytes.
        let again = server.get(&format!("/package/download?id=io.example.signed{query}"));
        assert!(
            again.body == response.body,
            "'{hardware_id}': two different downloads"
        );
    }
    // The system tar reads the two gzip members as one archive with one store footer.
    let listing = std::process::Command::new("tar")
        .arg("tzf")
        .arg(dir.path().join("download.ampkg"))
        .output()
        .unwrap();
    assert!(listing.status.success());
    assert_eq!(
        String::from_utf8(listing.stdout)
            .unwrap()
            .matches("--PACKAGE-FOOTER--")
            .count(),
        2
    );
}

#[test]
fn store_signed_uploads_get_their_store_signature_replaced() {
    let Some(vectors) = vectors() else { return };
    let certs = vectors.join("certificates");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[&"--sc", &certs.join("store.p12"), &"--sp", &"password"],
    );
    server.upload(&vectors.join("reference/test-store-dev-signed.appkg"));
    let response = server.get("/package/download?id=com.pelagicore.test&hardware-id=device-2");
    let path = dir.path().join("d.ampkg");
    std::fs::write(&path, &response.body).unwrap();
    let info = read(&path).unwrap();
    assert!(verify_store(&info, &certs.join("ca.crt"), "device-2"));
    assert!(!verify_store(&info, &certs.join("ca.crt"), "foobar"));
    let dev = TrustStore::from_files(&[certs.join("ca.crt"), certs.join("devca.crt")]).unwrap();
    dev.verify(
        info.developer_signature.as_ref().unwrap(),
        digest_content(&info.digest).as_bytes(),
    )
    .unwrap();
}

#[test]
fn developer_signatures_are_checked_on_upload() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let unsigned = make_package(
        dir.path(),
        "io.example.dev",
        &[("en", "Dev")],
        &[],
        "1",
        None,
    );
    let signed = dir.path().join("signed.ampkg");
    assert!(
        packager(&[
            &"dev-sign-package",
            &unsigned,
            &signed,
            &certs.dev_p12(),
            &P12_PASSWORD
        ])
        .status
        .success()
    );

    let both = Server::start(dir.path(), &[&"--dc", &certs.ca(), &"--dc", &certs.devca()]);
    assert!(
        both.lines
            .all()
            .contains(&"> Verify developer signature on upload: yes".to_string())
    );
    assert_eq!(
        both.upload(&unsigned),
        json!({"status": "fail", "message": "no developer signature"})
    );
    assert_eq!(both.upload(&signed)["result"], "added");
    drop(both);

    for cas in [vec![certs.ca()], vec![certs.other_ca()]] {
        let data = tempfile::tempdir().unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = Vec::new();
        for ca in &cas {
            args.push(&"--dc");
            args.push(ca);
        }
        let server = Server::start(data.path(), &args);
        let answer = server.upload(&signed);
        assert_eq!(answer["status"], "fail");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid developer signature ("),
            "{message}"
        );
    }
}

#[test]
fn upload_folder_takes_complete_files_and_rejects_bad_ones() {
    let (dir, server) = start_empty();
    let work = tempfile::tempdir().unwrap();
    let first = make_package(
        work.path(),
        "io.example.first",
        &[("en", "First")],
        &[],
        "1",
        Some(&vec![9u8; 100_000]),
    );
    let second = make_package(
        work.path(),
        "io.example.second",
        &[("en", "Second")],
        &[],
        "1",
        None,
    );
    let upload = dir.path().join("upload");

    // A half-written file (its writer still has it open) is not taken...
    let bytes = std::fs::read(&first).unwrap();
    let mut writer = std::fs::File::create(upload.join("a-first.ampkg")).unwrap();
    use std::io::Write;
    writer.write_all(&bytes[..bytes.len() / 2]).unwrap();
    writer.flush().unwrap();
    // ...while a complete one dropped after it is.
    std::fs::copy(&second, upload.join(".b-second.part")).unwrap();
    std::fs::rename(upload.join(".b-second.part"), upload.join("b-second.ampkg")).unwrap();
    server
        .lines
        .wait_for_line(" + adding   io.example.second [all]", 0);
    assert!(
        upload.join("a-first.ampkg").exists(),
        "the half-written file was taken"
    );
    assert!(!upload.join("rejected").exists());
    writer.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(writer);
    server
        .lines
        .wait_for_line(" + adding   io.example.first [all]", 0);
    assert_eq!(server.files("upload"), Vec::<String>::new());
    assert_eq!(
        std::fs::read(dir.path().join(".packages/io.example.first_all.ampkg")).unwrap(),
        bytes
    );

    // A bad file is moved to upload/rejected/, unchanged.
    std::fs::write(upload.join(".bad.part"), b"garbage").unwrap();
    std::fs::rename(upload.join(".bad.part"), upload.join("bad.ampkg")).unwrap();
    server
        .lines
        .wait_for_line(" x failed   bad.ampkg (wrong file type (67617262))", 0);
    assert_eq!(
        std::fs::read(upload.join("rejected/bad.ampkg")).unwrap(),
        b"garbage"
    );
    let lines = server.lines.all();
    assert!(lines.iter().filter(|l| *l == "> Scanning upload").count() >= 2);
}

#[test]
fn remove_folder_removes_by_id_and_by_id_and_architecture() {
    let (dir, server) = start_empty();
    let work = tempfile::tempdir().unwrap();
    server.upload(&make_package(
        work.path(),
        "io.example.r",
        &[("en", "R")],
        &[],
        "1",
        None,
    ));
    server.upload(&make_package(
        work.path(),
        "io.example.r",
        &[("en", "R")],
        &[],
        "2",
        Some(&elf_header(0x3e)),
    ));
    server.upload(&make_package(
        work.path(),
        "io.example.s",
        &[("en", "S")],
        &[],
        "1",
        None,
    ));
    let remove = dir.path().join("remove");
    std::fs::write(remove.join("io.example.r_linux_x86_64.ampkg"), b"").unwrap();
    server
        .lines
        .wait_for_line(" - removing io.example.r [linux_x86_64]", 0);
    std::fs::write(remove.join("io.example.nothing"), b"").unwrap();
    server
        .lines
        .wait_for_line(" = skipping io.example.nothing (no match)", 0);
    assert_eq!(
        server.files(".packages"),
        ["io.example.r_all.ampkg", "io.example.s_all.ampkg"]
    );
    std::fs::write(remove.join("io.example.s"), b"").unwrap();
    server
        .lines
        .wait_for_line(" - removing io.example.s [all]", 0);
    let lines = server.lines.all();
    assert!(lines.contains(&"> Scanning remove".to_string()));
    assert_eq!(server.files(".packages"), ["io.example.r_all.ampkg"]);
    server
        .lines
        .wait_for("remove/ to be empty", |_| server.files("remove").is_empty());
}

#[test]
fn folders_are_processed_at_start_uploads_first() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    for folder in ["upload", "remove"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
    }
    std::fs::copy(
        make_package(work.path(), "io.example.u", &[("en", "U")], &[], "1", None),
        dir.path().join("upload/u.ampkg"),
    )
    .unwrap();
    std::fs::copy(
        make_package(work.path(), "io.example.v", &[("en", "V")], &[], "1", None),
        dir.path().join("upload/v.ampkg"),
    )
    .unwrap();
    std::fs::write(dir.path().join("remove/io.example.v"), b"").unwrap();
    // Written long ago, as far as the quiet time is concerned: nothing here depends on how
    // fast the machine is.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for name in ["upload/u.ampkg", "upload/v.ampkg"] {
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(name))
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
    let server = Server::start(dir.path(), &[]);
    let lines = server.lines.all();
    let tail: Vec<&str> = lines.iter().skip(7).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "> Scanning upload",
            " + adding   io.example.u [all]",
            " + adding   io.example.v [all]",
            "> Scanning remove",
            " - removing io.example.v [all]",
            &format!("> HTTP server listening on: 127.0.0.1:{}", server.port)
        ]
    );
}

#[test]
fn config_file_command_line_precedence_and_create_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amps-config.yaml");
    std::fs::write(&config, "%YAML 1.1\n---\nformatType: amps-configuration\nformatVersion: 1\n---\nlistenAddress: '127.0.0.1:0'\nprojectId: 'HELLO'\n").unwrap();
    // The config file's project id, used from the current directory without --dd.
    let mut server = Server::spawn_in(dir.path(), &[]);
    server.wait_until_listening();
    assert!(server.lines.all().contains(&"> Project: HELLO".to_string()));
    assert_eq!(
        server.get("/hello?project-id=HELLO").json(),
        json!({"status": "ok"})
    );
    drop(server);
    // The command line wins.
    let server = Server::start(dir.path(), &[&"--pi", &"CLI"]);
    assert_eq!(
        server.get("/hello?project-id=CLI").json(),
        json!({"status": "ok"})
    );
    drop(server);
    // --cc writes the effective configuration, keeping the file's other settings.
    let server = Server::start(dir.path(), &[&"--pi", &"WRITTEN", &"--cc"]);
    drop(server);
    let written =
        amps::config::parse_config_file(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(written.project_id.as_deref(), Some("WRITTEN"));
    assert_eq!(written.listen_address.as_deref(), Some("127.0.0.1:0"));
    // Only values that differ from the defaults are written.
    let fresh = tempfile::tempdir().unwrap();
    let server = Server::start(fresh.path(), &[&"--pi", &"PROJECT", &"--cc"]);
    drop(server);
    let text = std::fs::read_to_string(fresh.path().join("amps-config.yaml")).unwrap();
    assert!(
        text.starts_with("%YAML 1.1\n---\nformatType: amps-configuration\nformatVersion: 1\n---\n"),
        "{text}"
    );
    assert!(!text.contains("projectId"), "{text}");
}

#[test]
fn bad_configuration_and_arguments_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("amps-config.yaml"),
        "formatType: something-else\nformatVersion: 1\n---\n",
    )
    .unwrap();
    let (code, stderr) = Server::start_failing(dir.path(), &[]).wait_exit();
    assert_eq!(code, 2);
    let expected = format!(
        "ERROR: Failed to parse config file {}: ",
        dir.path().join("amps-config.yaml").display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = Server::spawn_in(empty.path(), &[]).wait_exit();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("amps-config.yaml"), "{stderr}");
    let (code, _) = Server::spawn_in(empty.path(), &[&"--bogus"]).wait_exit();
    assert_eq!(code, 1);
    let (code, stderr) =
        Server::start_failing(empty.path(), &[&"--sc", &"/nonexistent/store.p12"]).wait_exit();
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/store.p12"), "{stderr}");
    let certs = certificates();
    let (code, stderr) = Server::start_failing(
        empty.path(),
        &[&"--sc", &certs.store_p12(), &"--sp", &"wrong"],
    )
    .wait_exit();
    assert_eq!(code, 2);
    assert!(
        stderr.contains("store.p12") && stderr.contains("password"),
        "{stderr}"
    );
    let (code, stderr) =
        Server::start_failing(empty.path(), &[&"--dc", &"/nonexistent/ca.crt"]).wait_exit();
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/ca.crt"), "{stderr}");
    let (code, _) = Server::start_failing(empty.path(), &[&"--pi", &""]).wait_exit();
    assert_eq!(code, 2);
}

#[test]
fn the_lock_keeps_a_second_server_out_but_not_after_a_kill() {
    let (dir, first) = start_empty();
    let (code, stderr) = Server::start_failing(dir.path(), &[]).wait_exit();
    assert_eq!(code, 2);
    let expected = format!(
        "ERROR: could not lock the data directory {} - there is an existing .lock file (belonging to pid {})",
        std::fs::canonicalize(dir.path()).unwrap().display(),
        first.child.id()
    );
    assert_eq!(stderr.trim_end(), expected);
    first.signal(libc::SIGKILL);
    let (code, _) = first.wait_exit();
    assert_eq!(code, -1);
    assert!(
        dir.path().join(".lock").exists(),
        "a killed server leaves its .lock"
    );
    let third = Server::start(dir.path(), &[]);
    assert_eq!(
        third.get("/hello?project-id=PROJECT").json(),
        json!({"status": "ok"})
    );
}

#[test]
fn sigterm_and_sigint_end_the_server_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let (dir, server) = start_empty();
        server.signal(signal);
        let (code, stderr) = server.wait_exit();
        assert_eq!(code, 0, "{stderr}");
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!left.contains(&".lock".to_string()), "{left:?}");
        assert_eq!(temp_files(dir.path()), Vec::<String>::new());
    }
}

#[test]
fn colours_follow_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let run = |vars: &[(&str, &str)]| -> String {
        let mut command = std::process::Command::new(binary("appman-package-server"));
        command.args(["--dd", dir.path().to_str().unwrap(), "--la", "127.0.0.1:0"]);
        command
            .env_remove("AM_FORCE_COLOR_OUTPUT")
            .env_remove("NO_COLOR");
        for (k, v) in vars {
            command.env(k, v);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut first,
        )
        .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        first
    };
    assert_eq!(run(&[]), "Qt ApplicationManager Package Server\n");
    assert!(run(&[("AM_FORCE_COLOR_OUTPUT", "on")]).contains('\x1b'));
    assert!(run(&[("AM_FORCE_COLOR_OUTPUT", "on"), ("NO_COLOR", "1")]).contains('\x1b'));
    assert_eq!(
        run(&[("AM_FORCE_COLOR_OUTPUT", "off")]),
        "Qt ApplicationManager Package Server\n"
    );
}

#[test]
fn an_upload_folder_that_is_a_symbolic_link_is_not_followed() {
    // Whoever swaps upload/ for a link must not make the server read (or move files) elsewhere;
    // to put upload/ on another file system, mount it there.
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("upload")).unwrap();
    let package = make_package(elsewhere.path(), "io.example.far", &[], &[], "1", None);
    let server = Server::start(dir.path(), &[]);
    server.lines.wait_for_line(
        " x failed   upload (the folder upload is a symbolic link)",
        0,
    );
    assert!(package.exists());
    assert!(server.list("").as_array().unwrap().is_empty());
    assert_eq!(
        server.get("/hello?project-id=PROJECT").json(),
        serde_json::json!({"status": "ok"})
    );
}

#[test]
fn downloads_and_icons_answer_byte_ranges() {
    let certs = certificates();
    let p12 = certs.store_p12();
    for signed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = if signed {
            vec![&"--sc", &p12, &"--sp", &P12_PASSWORD]
        } else {
            vec![]
        };
        let server = Server::start(dir.path(), &args);
        let package = make_package(
            dir.path(),
            "io.example.ranged",
            &[],
            &[],
            "1",
            Some(&noise(200_000)),
        );
        server.upload(&package);
        let target = "/package/download?id=io.example.ranged&hardware-id=r1";
        let whole = server.get(target);
        assert_eq!(whole.header("Accept-Ranges"), Some("bytes"));
        let total = whole.body.len();
        // Start, middle, end (for a signed download the end lies in the signature tail), in
        // pieces that assemble back into the whole.
        let cuts = [0, 1000, total / 2, total - 300, total];
        let mut assembled = Vec::new();
        for pair in cuts.windows(2) {
            let range = format!("bytes={}-{}", pair[0], pair[1] - 1);
            let part = server.request("GET", target, &[("Range", &range)], b"");
            assert_eq!(part.status, 206, "{range}");
            assert_eq!(
                part.header("Content-Range"),
                Some(format!("bytes {}-{}/{total}", pair[0], pair[1] - 1).as_str())
            );
            assembled.extend_from_slice(&part.body);
        }
        assert!(
            assembled == whole.body,
            "signed {signed}: the parts differ from the whole"
        );
        read_bytes(&assembled).expect("the assembled download reads back");
        let suffix = server.request("GET", target, &[("Range", "bytes=-100")], b"");
        assert!(suffix.body == whole.body[total - 100..]);
        let past = server.request("GET", target, &[("Range", &format!("bytes={total}-"))], b"");
        assert_eq!(past.status, 416);
        assert_eq!(
            past.header("Content-Range"),
            Some(format!("bytes */{total}").as_str())
        );
        let several = server.request("GET", target, &[("Range", "bytes=0-1,5-6")], b"");
        assert_eq!(several.status, 200);
        assert!(several.body == whole.body);
        // curl -C - resumes a cut download to a byte-identical file.
        if std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok()
        {
            let file = dir.path().join("partial.ampkg");
            std::fs::write(&file, &whole.body[..total / 3]).unwrap();
            let url = format!("http://127.0.0.1:{}{target}", server.port);
            let status = std::process::Command::new("curl")
                .args(["-s", "-f", "-C", "-", "-o"])
                .arg(&file)
                .arg(&url)
                .status()
                .unwrap();
            assert!(status.success());
            assert!(
                std::fs::read(&file).unwrap() == whole.body,
                "resumed file differs"
            );
        }
        let icon = server.get("/package/icon?id=io.example.ranged");
        let part = server.request(
            "GET",
            "/package/icon?id=io.example.ranged",
            &[("Range", "bytes=1-3")],
            b"",
        );
        assert_eq!(part.status, 206);
        assert!(part.body == icon.body[1..4]);
    }
}
