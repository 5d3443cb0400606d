/*!
What an upload through the Deployment Server's API (`POST /upload`) says of a package beside
the package itself: its description, short description, category and vendor. They are shown by
that API's `/app/list` and `/app/description`, and kept in `.extras/<package file>.json` with
the package's SHA-1, so they survive a restart and never stick to another package that later
takes the same file name. Written atomically through the folder's descriptor; a file that is
not ours, too large or of another package is ignored.
*/

use crate::fsutil::Dir;
use crate::package::digest::to_hex;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;

/// The folder in the data directory.
pub const EXTRAS_DIR: &str = ".extras";
/// Largest field kept, in bytes (the form fields are bounded by the upload's form anyway).
pub const MAX_FIELD: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadExtras {
    pub description: String,
    #[serde(rename = "shortDescription")]
    pub short_description: String,
    pub category: String,
    pub vendor: String,
}

impl UploadExtras {
    /// Bytes it keeps in memory.
    pub fn size(&self) -> u64 {
        (self.description.len()
            + self.short_description.len()
            + self.category.len()
            + self.vendor.len()) as u64
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    sha1: String,
    #[serde(flatten)]
    extras: UploadExtras,
}

fn record_name(package_file: &str) -> OsString {
    OsString::from(format!("{package_file}.json"))
}

/// Keep `extras` for the package stored as `package_file` with `sha1`.
pub fn save(
    dir: &Dir,
    package_file: &str,
    sha1: &[u8; 20],
    extras: &UploadExtras,
) -> std::io::Result<()> {
    let stored = Stored {
        sha1: to_hex(sha1),
        extras: extras.clone(),
    };
    let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
    dir.write_file(&record_name(package_file), &bytes)
}

/// What was kept for the package stored as `package_file` with `sha1`, if anything.
pub fn load(dir: &Dir, package_file: &str, sha1: &[u8; 20]) -> Option<UploadExtras> {
    let bytes = dir
        .read_file(&record_name(package_file), (4 * MAX_FIELD + 1024) as u64)
        .ok()?;
    let stored: Stored = serde_json::from_slice(&bytes).ok()?;
    (stored.sha1 == to_hex(sha1)).then_some(stored.extras)
}

/// Forget what was kept for `package_file`.
pub fn forget(dir: &Dir, package_file: &str) {
    let _ = dir.remove(&record_name(package_file));
}
