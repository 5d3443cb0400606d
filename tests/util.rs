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
