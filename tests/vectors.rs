//! Interop: every file in ../shared/vectors gives the outcome that vectors/README.md states.

use crate::util::{read, vectors};
use amps::package::signature::{TrustStore, digest_content, store_content};
use std::path::Path;

fn trust(dir: &Path, files: &[&str]) -> TrustStore {
    let paths: Vec<_> = files
        .iter()
        .map(|f| dir.join("certificates").join(f))
        .collect();
    TrustStore::from_files(&paths).unwrap()
}

#[test]
fn reference_packages_are_valid_with_their_metadata() {
    let Some(dir) = vectors() else { return };
    let test = read(&dir.join("reference/test.appkg")).unwrap();
    assert_eq!(test.id, "com.pelagicore.test");
    assert_eq!(test.architecture, None);
    assert!(
        test.digest_hex().starts_with("d6eb59daf7ec"),
        "{}",
        test.digest_hex()
    );
    assert_eq!(test.names["en"], "Hello");
    assert_eq!(test.names["de"], "Hallo");
    assert_eq!(test.version.as_deref(), Some("1.0"));
    assert_eq!(test.categories, vec!["test-category"]);
    assert_eq!(
        test.icon.as_deref(),
        Some(&std::fs::read(dir.join("source/icon.png")).unwrap()[..])
    );
    assert_eq!(test.file_size, 10240);

    for name in [
        "test-dev-signed.appkg",
        "test-store-signed.appkg",
        "test-store-dev-signed.appkg",
        "test-invalid-footer-signature.appkg",
    ] {
        let signed = read(&dir.join("reference").join(name)).unwrap();
        assert_eq!(signed.digest, test.digest, "{name}");
    }
    let update = read(&dir.join("reference/test-update.appkg")).unwrap();
    assert_ne!(update.digest, test.digest);
    assert_eq!(update.version.as_deref(), Some("2.0"));
    read(&dir.join("reference/test-update-dev-signed.appkg")).unwrap();

    let big = read(&dir.join("reference/bigtest.appkg")).unwrap();
    assert_eq!(big.id, "com.pelagicore.test.bigtest");
    assert_eq!(big.names["en"], "Big Test");
    assert_eq!(big.names["de"], "Grosser Test");
    assert_eq!(big.categories, vec!["big test category"]);
    assert_eq!(big.version, None);
    read(&dir.join("reference/bigtest-dev-signed.appkg")).unwrap();

    let red = read(&dir.join("reference/hello-world.red.appkg")).unwrap();
    assert_eq!(red.id, "hello-world.red");
    assert_eq!(red.names["en"], "Hello Updated Red");
    assert!(red.categories.is_empty());
}

#[test]
fn extra_signed_of_every_type_is_covered_by_the_digest() {
    let Some(dir) = vectors() else { return };
    for name in [
        "reference/test-extra.appkg",
        "reference/test-extra-dev-signed.appkg",
        "more/extra-signed-types.ampkg",
        "more/extra-signed-types-dev-signed.ampkg",
        "more/tags.ampkg",
    ] {
        let info = read(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(info.extra_signed.is_some(), "{name}");
    }
}

#[test]
fn architectures_are_detected() {
    let Some(dir) = vectors() else { return };
    for (name, expected) in [
        ("more/modern.ampkg", None),
        ("more/arch-linux-x86_64.ampkg", Some("linux_x86_64")),
        (
            "more/arch-linux-x86_64-store-signed.ampkg",
            Some("linux_x86_64"),
        ),
        ("more/arch-android-elf.so.ampkg", Some("android_arm_32")),
        ("more/arch-windows-pe.exe.ampkg", Some("windows_x86_64")),
        ("more/arch-macos-macho.ampkg", Some("macos_arm_64")),
        (
            "more/arch-macos-universal.ampkg",
            Some("macos_universal_arm_64+x86_64"),
        ),
    ] {
        let info = read(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.architecture.as_deref(), expected, "{name}");
    }
    let mixed = read(&dir.join("more/arch-mixed.ampkg"))
        .unwrap_err()
        .to_string();
    assert!(
        mixed.starts_with("mixed architectures: linux_x86_64 and windows_x86_64"),
        "{mixed}"
    );
}

#[test]
fn invalid_packages_are_rejected_with_their_reason() {
    let Some(dir) = vectors() else { return };
    let invalid = dir.join("invalid");
    for entry in std::fs::read_dir(&invalid).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "appkg") {
            let error = read(&path).unwrap_err().to_string();
            assert_eq!(error, "wrong file type", "{}", path.display());
        }
    }
    for (name, reason) in [
        ("test-invalid-header-formatversion", "formatVersion 'X'"),
        ("test-invalid-header-diskspaceused", "diskSpaceUsed '0'"),
        ("test-invalid-header-id", "invalid package id ':invalid'"),
        ("test-non-matching-header-id", "does not match"),
        ("test-tampered-extra-signed-header", "digest mismatch"),
        ("test-invalid-info-id", "invalid package id ':invalid'"),
        ("test-invalid-info", "info.yaml is not valid YAML"),
        ("test-invalid-file-order", "must be the second file"),
        ("test-invalid-footer-digest", "digest mismatch"),
        ("test-invalid-path", "'../invalid-path'"),
    ] {
        let error = read(&invalid.join(format!("{name}.ampkg")))
            .unwrap_err()
            .to_string();
        assert!(error.contains(reason), "{name}: {error}");
    }
}

#[test]
fn developer_signatures_verify_against_the_right_cas() {
    let Some(dir) = vectors() else { return };
    let chain = trust(&dir, &["ca.crt", "devca.crt"]);
    let root_only = trust(&dir, &["ca.crt"]);
    let other = trust(&dir, &["other-ca.crt"]);
    for name in [
        "reference/test-dev-signed.appkg",
        "reference/test-store-dev-signed.appkg",
        "reference/test-extra-dev-signed.appkg",
        "reference/test-update-dev-signed.appkg",
        "reference/bigtest-dev-signed.appkg",
        "more/extra-signed-types-dev-signed.ampkg",
    ] {
        let info = read(&dir.join(name)).unwrap();
        let signature = info.developer_signature.as_ref().unwrap();
        let content = digest_content(&info.digest);
        chain
            .verify(signature, content.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            root_only.verify(signature, content.as_bytes()).is_err(),
            "{name}"
        );
        assert!(
            other.verify(signature, content.as_bytes()).is_err(),
            "{name}"
        );
    }
    let forged = read(&dir.join("reference/test-invalid-footer-signature.appkg")).unwrap();
    let content = digest_content(&forged.digest);
    let signature = forged.developer_signature.unwrap();
    assert!(chain.verify(&signature, content.as_bytes()).is_err());
    let unsigned = read(&dir.join("reference/test.appkg")).unwrap();
    assert_eq!(unsigned.developer_signature, None);
    assert_eq!(unsigned.store_signature, None);
}

#[test]
fn store_signatures_verify_only_with_their_hardware_id() {
    let Some(dir) = vectors() else { return };
    let ca = trust(&dir, &["ca.crt"]);
    for (name, hardware_id) in [
        ("reference/test-store-signed.appkg", "foobar"),
        ("reference/test-store-dev-signed.appkg", "foobar"),
        ("more/arch-linux-x86_64-store-signed.ampkg", "08154711"),
        ("more/test-store-signed-nohwid.appkg", ""),
    ] {
        let info = read(&dir.join(name)).unwrap();
        let signature = info.store_signature.as_ref().unwrap();
        let verify = |id: &str| {
            ca.verify(
                signature,
                store_content(&info.digest, id).unwrap().as_bytes(),
            )
        };
        verify(hardware_id).unwrap_or_else(|e| panic!("{name}: {e}"));
        for wrong in ["", "foobaz", "08154712"] {
            if wrong != hardware_id {
                assert!(verify(wrong).is_err(), "{name} verified with '{wrong}'");
            }
        }
    }
}
