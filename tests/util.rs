//! Shared helpers for the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shared interoperability vectors, or `None` (with a notice) when they are absent.
pub fn vectors() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: ../shared/vectors is absent, interop checks not run");
        None
    }
}

/// Read a package file with the default limits.
pub fn read(path: &Path) -> Result<amps::package::PackageInfo, amps::package::PackageError> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    amps::package::read_package(file, &amps::package::Limits::default())
}

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509, X509NameBuilder};
use std::process::{Command, Output};

/// The password of every generated PKCS#12 file.
pub const P12_PASSWORD: &str = "password";

/// Throwaway certificates, made like the vectors' ones: a root CA, a developer intermediate CA
/// with a developer certificate under it (its PKCS#12 carries the intermediate), a store
/// certificate under the root, and an unrelated root with its own certificate.
pub struct Certificates {
    pub dir: PathBuf,
}

impl Certificates {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn devca(&self) -> PathBuf {
        self.dir.join("devca.crt")
    }
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }
    pub fn dev_p12(&self) -> PathBuf {
        self.dir.join("dev.p12")
    }
    pub fn store_p12(&self) -> PathBuf {
        self.dir.join("store.p12")
    }
    pub fn other_p12(&self) -> PathBuf {
        self.dir.join("other.p12")
    }

    /// Generate the set into `dir` (once per test process, then reused).
    pub fn generate(dir: &Path) -> Certificates {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, ca_key) = certificate("Test Root CA", None, true);
        let (devca, devca_key) = certificate("Test Developer CA", Some((&ca, &ca_key)), true);
        let (dev, dev_key) = certificate("Developer 1", Some((&devca, &devca_key)), false);
        let (store, store_key) = certificate("Test Store", Some((&ca, &ca_key)), false);
        let (other_ca, other_ca_key) = certificate("Other Root CA", None, true);
        let (other, other_key) = certificate("Other", Some((&other_ca, &other_ca_key)), false);
        let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
        write("ca.crt", ca.to_pem().unwrap());
        write("devca.crt", devca.to_pem().unwrap());
        write("other-ca.crt", other_ca.to_pem().unwrap());
        write("dev.p12", p12(&dev, &dev_key, &[&devca]));
        write("store.p12", p12(&store, &store_key, &[]));
        write("other.p12", p12(&other, &other_key, &[]));
        Certificates {
            dir: dir.to_path_buf(),
        }
    }
}

fn certificate(
    name: &str,
    issuer: Option<(&X509, &PKey<Private>)>,
    is_ca: bool,
) -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut subject = X509NameBuilder::new().unwrap();
    subject
        .append_entry_by_text("O", "appman-rs tests")
        .unwrap();
    subject.append_entry_by_text("CN", name).unwrap();
    let subject = subject.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&subject).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(3650).unwrap())
        .unwrap();
    if is_ca {
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder
            .append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
            .unwrap();
    } else {
        builder
            .append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .digital_signature()
                    .non_repudiation()
                    .build()
                    .unwrap(),
            )
            .unwrap();
    }
    match issuer {
        Some((issuer, issuer_key)) => {
            builder.set_issuer_name(issuer.subject_name()).unwrap();
            builder.sign(issuer_key, MessageDigest::sha256()).unwrap();
        }
        None => {
            builder.set_issuer_name(&subject).unwrap();
            builder.sign(&key, MessageDigest::sha256()).unwrap();
        }
    }
    // Backdate a little against clock skew between signing and verifying.
    (builder.build(), key)
}

fn p12(certificate: &X509, key: &PKey<Private>, chain: &[&X509]) -> Vec<u8> {
    let mut builder = Pkcs12::builder();
    builder.name("test").pkey(key).cert(certificate);
    if !chain.is_empty() {
        let mut stack = Stack::new().unwrap();
        for c in chain {
            stack.push((*c).clone()).unwrap();
        }
        builder.ca(stack);
    }
    builder.build2(P12_PASSWORD).unwrap().to_der().unwrap()
}

/// Certificates shared by all tests of this process.
pub fn certificates() -> &'static Certificates {
    static CERTS: std::sync::OnceLock<Certificates> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("amps-test-certs-{}", std::process::id()));
        Certificates::generate(&dir)
    })
}

/// The project's sample package source.
pub fn sample_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sample")
}

/// Run our packager with `args`.
pub fn packager(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appman-packager"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

/// The exit code and stderr of a finished command.
pub fn status(output: &Output) -> (i32, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Build a package from `source` into `dir/name` with our packager.
pub fn create(dir: &Path, name: &str, source: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create-package"];
    for e in extra {
        args.push(e);
    }
    args.push(&out);
    args.push(&source);
    let output = packager(&args);
    assert!(
        output.status.success(),
        "create-package failed: {}",
        status(&output).1
    );
    out
}
