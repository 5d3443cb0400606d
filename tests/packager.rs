//! Our `appman-packager`: create, sign and verify round trips, exit codes, interop with the
//! real toolchain's certificates.

use crate::util::{
    P12_PASSWORD, certificates, create, packager, read, sample_source, status, vectors,
};
use amps::package::signature::{TrustStore, digest_content, store_content};
use std::path::Path;

#[test]
fn created_package_reads_back_with_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let package = create(dir.path(), "hello.ampkg", &sample_source(), &[]);
    let info = read(&package).unwrap();
    assert_eq!(info.id, "io.example.hello");
    assert_eq!(info.architecture, None);
    assert_eq!(info.names["de"], "Hallo Rust");
    assert_eq!(info.version.as_deref(), Some("1.0.0"));
    // Sorted, as Qt reads them.
    assert_eq!(info.categories, vec!["demo", "samples"]);
    // The real appman-packager create-package 6.4.2 gives this digest for testdata/sample: a
    // known answer that holds without ../shared (our reader and writer could agree on a
    // wrong digest).
    assert_eq!(
        info.digest_hex(),
        "833eca2b2bde4dc91bad5b1b66acb7462bc1f1470d546a40d46adaa3a9532eaa"
    );
    assert_eq!(
        info.icon.unwrap(),
        std::fs::read(sample_source().join("icon.png")).unwrap()
    );
    // The system tar (an independent reader) sees the entries in the packager's order.
    let listing = std::process::Command::new("tar")
        .arg("tzf")
        .arg(&package)
        .output()
        .unwrap();
    let names = String::from_utf8(listing.stdout).unwrap();
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "--PACKAGE-HEADER--",
            "info.yaml",
            "icon.png",
            "qml/",
            "qml/main.qml",
            "--PACKAGE-FOOTER--"
        ]
    );
    // No temporary file is left beside the output.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn extra_metadata_goes_into_the_header_and_signed_part_into_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let signed_file = dir.path().join("signed.yaml");
    std::fs::write(&signed_file, "nested: {list: [1, 'two', 3.5, ~, true]}\n").unwrap();
    let plain = create(dir.path(), "plain.ampkg", &sample_source(), &[]);
    let extra = create(
        dir.path(),
        "extra.ampkg",
        &sample_source(),
        &[
            "-m",
            "tags: [qt:5.12, neptune]",
            "-s",
            "{big: 5000000000, octal: 017}",
            "-S",
            signed_file.to_str().unwrap(),
        ],
    );
    let plain = read(&plain).unwrap();
    let extra = read(&extra).unwrap();
    assert_ne!(
        plain.digest, extra.digest,
        "extraSigned must change the digest"
    );
    let json = amps::yaml::to_json(extra.extra_signed.as_ref().unwrap());
    assert_eq!(
        json,
        serde_json::json!({"big": 5000000000u64, "octal": 15, "nested": {"list": [1, "two", 3.5, null, true]}})
    );
    let tags = amps::yaml::to_json(extra.extra.as_ref().unwrap());
    assert_eq!(tags, serde_json::json!({"tags": ["qt:5.12", "neptune"]}));
}

#[test]
fn verbose_json_dump_shows_header_and_footer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.ampkg");
    let output = packager(&[
        &"create-package",
        &"--verbose",
        &"--json",
        &out,
        &sample_source(),
    ]);
    assert!(output.status.success());
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(dump["packageId"], "io.example.hello");
    assert_eq!(dump["digest"], read(&out).unwrap().digest_hex());
}

#[test]
fn developer_signature_round_trip_and_exit_codes() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let package = create(dir.path(), "p.ampkg", &sample_source(), &[]);
    let signed = dir.path().join("signed.ampkg");
    let output = packager(&[
        &"dev-sign-package",
        &package,
        &signed,
        &certs.dev_p12(),
        &P12_PASSWORD,
    ]);
    assert_eq!(status(&output).0, 0, "{}", status(&output).1);
    assert_eq!(
        read(&signed).unwrap().digest,
        read(&package).unwrap().digest
    );

    let verify = |pkg: &Path, cas: &[&Path]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"dev-verify-package", &pkg];
        for ca in cas {
            args.push(ca);
        }
        status(&packager(&args))
    };
    assert_eq!(verify(&signed, &[&certs.ca(), &certs.devca()]).0, 0);
    let (code, stderr) = verify(&signed, &[&certs.ca()]);
    assert_eq!(
        code, 2,
        "the embedded intermediate must not be used (NOCHAIN)"
    );
    assert!(
        stderr.starts_with("ERROR: invalid developer signature"),
        "{stderr}"
    );
    assert_eq!(verify(&signed, &[&certs.other_ca()]).0, 2);
    let (code, stderr) = verify(&package, &[&certs.ca(), &certs.devca()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("has no developer signature"), "{stderr}");

    // A wrong password is an error naming the file, and no output appears.
    let never = dir.path().join("never.ampkg");
    let (code, stderr) = status(&packager(&[
        &"dev-sign-package",
        &package,
        &never,
        &certs.dev_p12(),
        &"wrong",
    ]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("dev.p12") && stderr.contains("password"),
        "{stderr}"
    );
    assert!(!never.exists());
}

#[test]
fn store_signature_binds_to_the_hardware_id() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let package = create(dir.path(), "p.ampkg", &sample_source(), &[]);
    let dev_signed = dir.path().join("dev.ampkg");
    let output = packager(&[
        &"dev-sign-package",
        &package,
        &dev_signed,
        &certs.dev_p12(),
        &P12_PASSWORD,
    ]);
    assert!(output.status.success());
    for hardware_id in ["", "08154711"] {
        let signed = dir.path().join(format!("store-{hardware_id}.ampkg"));
        let output = packager(&[
            &"store-sign-package",
            &dev_signed,
            &signed,
            &certs.store_p12(),
            &P12_PASSWORD,
            &hardware_id,
        ]);
        assert!(output.status.success(), "{}", status(&output).1);
        let verify = |id: &str| {
            status(&packager(&[
                &"store-verify-package",
                &signed,
                &certs.ca(),
                &id,
            ]))
            .0
        };
        assert_eq!(verify(hardware_id), 0);
        assert_eq!(verify("another-device"), 2);
        // The developer signature survives store signing.
        let dev = status(&packager(&[
            &"dev-verify-package",
            &signed,
            &certs.ca(),
            &certs.devca(),
        ]));
        assert_eq!(dev.0, 0, "{}", dev.1);
        // Signing again replaces the store signature rather than adding one.
        let again = dir.path().join("again.ampkg");
        let output = packager(&[
            &"store-sign-package",
            &signed,
            &again,
            &certs.store_p12(),
            &P12_PASSWORD,
            &"other",
        ]);
        assert!(output.status.success());
        assert_eq!(
            status(&packager(&[
                &"store-verify-package",
                &again,
                &certs.ca(),
                &"other"
            ]))
            .0,
            0
        );
        let footers = std::process::Command::new("tar")
            .arg("tzf")
            .arg(&again)
            .output()
            .unwrap();
        let count = String::from_utf8(footers.stdout)
            .unwrap()
            .matches("--PACKAGE-FOOTER--")
            .count();
        assert_eq!(count, 3, "digest, developer and one store footer");
    }
}

#[test]
fn our_signatures_verify_with_the_real_toolchain_certificates() {
    let Some(vectors) = vectors() else { return };
    let certs = vectors.join("certificates");
    let dir = tempfile::tempdir().unwrap();
    let package = create(dir.path(), "p.ampkg", &sample_source(), &[]);
    let signed = dir.path().join("s.ampkg");
    let output = packager(&[
        &"dev-sign-package",
        &package,
        &signed,
        &certs.join("dev1.p12"),
        &"password",
    ]);
    assert!(output.status.success());
    let info = read(&signed).unwrap();
    let trust = TrustStore::from_files(&[certs.join("ca.crt"), certs.join("devca.crt")]).unwrap();
    trust
        .verify(
            info.developer_signature.as_ref().unwrap(),
            digest_content(&info.digest).as_bytes(),
        )
        .unwrap();
    let store_signed = dir.path().join("t.ampkg");
    let output = packager(&[
        &"store-sign-package",
        &signed,
        &store_signed,
        &certs.join("store.p12"),
        &"password",
        &"foobar",
    ]);
    assert!(output.status.success());
    let info = read(&store_signed).unwrap();
    let root = TrustStore::from_files(&[certs.join("ca.crt")]).unwrap();
    let content = store_content(&info.digest, "foobar").unwrap();
    root.verify(info.store_signature.as_ref().unwrap(), content.as_bytes())
        .unwrap();
}

#[test]
fn help_version_and_usage_errors() {
    let help = packager(&[&"--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("store-verify-package"));
    for command in [
        "create-package",
        "dev-sign-package",
        "dev-verify-package",
        "store-sign-package",
        "store-verify-package",
    ] {
        let help = packager(&[&command, &"--help"]);
        assert!(help.status.success(), "{command}");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains(command),
            "{command}"
        );
    }
    assert!(packager(&[&"--version"]).status.success());
    let (code, stderr) = status(&packager(&[&"create-package", &"only-one"]));
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("ERROR: wrong number of arguments"),
        "{stderr}"
    );
    let (code, stderr) = status(&packager(&[&"frobnicate"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown command 'frobnicate'"), "{stderr}");
}

#[test]
fn create_refuses_links_and_reports_a_missing_info_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    std::fs::create_dir(&source).unwrap();
    let out = dir.path().join("x.ampkg");
    let (code, stderr) = status(&packager(&[&"create-package", &out, &source]));
    assert_eq!(code, 1);
    assert!(stderr.contains("info.yaml"), "{stderr}");
    for f in ["info.yaml", "icon.png"] {
        std::fs::copy(sample_source().join(f), source.join(f)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", source.join("link")).unwrap();
    let (code, stderr) = status(&packager(&[&"create-package", &out, &source]));
    assert_eq!(code, 1);
    assert!(stderr.contains("links"), "{stderr}");
    assert!(!out.exists());
}

/// Signature errors say what to do, in the packager's verify commands and in the server: an
/// intermediate CA that was not given is named; a CA that issued nothing in the chain is
/// said so, without that hint; a store signature for another device says so; success prints
/// one line.
#[test]
fn signature_errors_are_in_words() {
    let certs = certificates();
    let dir = tempfile::tempdir().unwrap();
    let package = create(dir.path(), "p.ampkg", &sample_source(), &[]);
    let signed = dir.path().join("signed.ampkg");
    let output = packager(&[
        &"dev-sign-package",
        &package,
        &signed,
        &certs.dev_p12(),
        &P12_PASSWORD,
    ]);
    assert!(output.status.success());
    let (ca, devca, other) = (certs.ca(), certs.devca(), certs.other_ca());
    let dev_verify = |cas: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"dev-verify-package", &signed];
        args.extend_from_slice(cas);
        packager(&args)
    };
    let ok = dev_verify(&[&ca, &devca]);
    assert!(ok.status.success());
    let line = String::from_utf8_lossy(&ok.stdout).to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with("the developer signature of ") && line.contains("is valid"),
        "{line}"
    );
    let (code, stderr) = status(&dev_verify(&[&ca]));
    assert_eq!(code, 2);
    assert!(stderr.contains("give the intermediate CA"), "{stderr}");
    let (code, stderr) = status(&dev_verify(&[&other]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("none of the given CA certificates"),
        "{stderr}"
    );
    assert!(!stderr.contains("intermediate"), "{stderr}");

    let store_signed = dir.path().join("store.ampkg");
    let output = packager(&[
        &"store-sign-package",
        &package,
        &store_signed,
        &certs.store_p12(),
        &P12_PASSWORD,
        &"08154711",
    ]);
    assert!(output.status.success());
    let store_verify =
        |hardware_id: &str| packager(&[&"store-verify-package", &store_signed, &ca, &hardware_id]);
    assert!(store_verify("08154711").status.success());
    let (code, stderr) = status(&store_verify("another-device"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("does not match the hardware id 'another-device' (it was signed for another device, or for none)"),
        "{stderr}"
    );
    let (code, stderr) = status(&store_verify(""));
    assert_eq!(code, 2);
    assert!(stderr.contains("give its hardware id"), "{stderr}");

    // The server says the same of uploads.
    for (cas, expected, hint) in [
        (vec![&ca], "give the intermediate CA", true),
        (vec![&other], "none of the given CA certificates", false),
    ] {
        let data = dir.path().join(format!("data-{hint}"));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = Vec::new();
        for ca in &cas {
            args.push(&"--dc");
            args.push(*ca);
        }
        let server = crate::util::Server::start(&data, &args);
        let answer = server.upload(&signed);
        let message = answer["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("invalid developer signature ("),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
        assert_eq!(message.contains("intermediate"), hint, "{message}");
    }
}
