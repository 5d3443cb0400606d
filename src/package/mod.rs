/*!
The Qt Application Manager package format (`.ampkg`): reading and verifying, creating, and
signing packages bit-compatibly with the real `appman-packager` (see `shared/FORMAT.md`).

`reader` verifies a package while it streams and keeps only its metadata; `writer` creates
packages and adds signature footers; `signature` does the PKCS#7 work. Every rejection is a
`PackageError` whose message names what is wrong, so the server can show it to the uploader.
*/

pub mod abi;
pub mod arch;
pub mod digest;
mod entry_names;
pub mod gzip;
pub mod inflate;
pub mod manifest;
pub mod qdatastream;
pub mod reader;
mod reading;
pub mod signature;
pub mod splice;
pub mod tags;
pub mod tarstream;
pub mod version;
pub mod writer;

use crate::yaml::Node;
use std::collections::BTreeMap;
use std::fmt;
use std::io;

pub use reader::read_package;

/// The reason given for a file that is not gzip at all.
pub const WRONG_FILE_TYPE: &str = "wrong file type";

/// Name of the first archive entry.
pub const HEADER_ENTRY: &str = "--PACKAGE-HEADER--";
/// Name of the last archive entries.
pub const FOOTER_ENTRY: &str = "--PACKAGE-FOOTER--";

/// Everything the server needs to know about a verified package.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageInfo {
    pub id: String,
    /// `None` for platform independent packages.
    pub architecture: Option<String>,
    pub names: BTreeMap<String, String>,
    pub descriptions: BTreeMap<String, String>,
    /// `None` when `info.yaml` has no version.
    pub version: Option<String>,
    pub categories: Vec<String>,
    pub icon: Option<Vec<u8>>,
    pub disk_space_used: u64,
    pub extra: Option<Node>,
    pub extra_signed: Option<Node>,
    /// The tags of `extra` and `extraSigned`, normalized and simplified (sorted).
    pub tags: Vec<tags::Tag>,
    pub digest: [u8; 32],
    pub developer_signature: Option<Vec<u8>>,
    pub store_signature: Option<Vec<u8>>,
    /// SHA-1 of the whole package file as read.
    pub sha1: [u8; 20],
    /// Size of the whole package file as read.
    pub file_size: u64,
    /// How store-signed downloads of it are made.
    pub splice: splice::Splice,
}

impl PackageInfo {
    /// Bytes of what `/package/list` shows of this package (names, descriptions, categories,
    /// version, tags).
    pub fn listed_size(&self) -> u64 {
        let map = |m: &BTreeMap<String, String>| -> usize {
            m.iter().map(|(k, v)| k.len() + v.len()).sum()
        };
        let size: usize = map(&self.names)
            + map(&self.descriptions)
            + self.categories.iter().map(String::len).sum::<usize>()
            + self.version.as_deref().map_or(0, str::len)
            + self.tags.iter().map(|t| t.to_string().len()).sum::<usize>();
        size as u64
    }

    /// Take out the seam verification built for signed downloads (the store keeps it apart,
    /// within a bound of its own).
    pub fn take_seam(&mut self) -> Option<Vec<u8>> {
        match &mut self.splice {
            splice::Splice::Cut(cut) => cut.seam.take(),
            splice::Splice::Recompress(_) => None,
        }
    }

    /// The architecture as stored in file names: `all` for platform independent packages.
    pub fn architecture_name(&self) -> &str {
        self.architecture.as_deref().unwrap_or("all")
    }

    /// The digest as lower-case hex.
    pub fn digest_hex(&self) -> String {
        digest::to_hex(&self.digest)
    }
}

/// Resource limits for reading a package; every one of them is controlled by untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the package file (compressed), in bytes.
    pub max_package_size: u64,
    /// Maximum sum of all entry sizes (uncompressed), in bytes.
    pub max_uncompressed_size: u64,
    /// Maximum number of archive entries.
    pub max_entries: u64,
    /// Maximum size of each metadata entry: header, footer, `info.yaml` and icon, in bytes.
    pub max_metadata_size: u64,
}

impl Limits {
    /// Most bytes of names, descriptions, categories and version that a package may have:
    /// what the server keeps in memory for `/package/list`. A sixteenth of the metadata limit
    /// (256 KiB by default), so that memory grows by bytes the README can promise.
    pub fn max_listed_size(&self) -> u64 {
        self.max_metadata_size / 16
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_package_size: 1 << 30,
            max_uncompressed_size: 2 << 30,
            max_entries: 10_000,
            max_metadata_size: 4 << 20,
        }
    }
}

/// Why a package could not be read, created or signed.
#[derive(Debug)]
pub enum PackageError {
    /// The package is not valid.
    Invalid(String),
    /// The package exceeds one of the configured `Limits`.
    Limit(String),
    /// A file could not be read or written (not the package's fault).
    Io(String, io::Error),
    /// Signing or verifying failed.
    Signature(signature::SignatureError),
}

impl PackageError {
    pub(crate) fn invalid(message: impl Into<String>) -> PackageError {
        PackageError::Invalid(message.into())
    }

    pub(crate) fn io(context: impl Into<String>, error: io::Error) -> PackageError {
        PackageError::Io(context.into(), error)
    }
}

impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackageError::Invalid(message) | PackageError::Limit(message) => f.write_str(message),
            PackageError::Io(context, error) => write!(f, "{context}: {error}"),
            PackageError::Signature(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for PackageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PackageError::Io(_, error) => Some(error),
            PackageError::Signature(error) => Some(error),
            _ => None,
        }
    }
}

/// For writing outputs through `fsutil::write_atomically`.
impl From<io::Error> for PackageError {
    fn from(error: io::Error) -> Self {
        PackageError::Io("could not write the output file".into(), error)
    }
}

impl From<signature::SignatureError> for PackageError {
    fn from(error: signature::SignatureError) -> Self {
        PackageError::Signature(error)
    }
}

/// Check a package id: 1..150 printable ASCII characters, none of `<>:"/\|?*`, not only spaces.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 150 {
        return Err(format!(
            "invalid package id '{id}': must be 1 to 150 characters long"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(' '..='~').contains(c) || "<>:\"/\\|?*".contains(*c))
    {
        return Err(format!(
            "invalid package id '{id}': must not contain '{}'",
            c.escape_default()
        ));
    }
    if id.trim_start_matches(' ').is_empty() {
        return Err(format!(
            "invalid package id '{id}': must not be only spaces"
        ));
    }
    Ok(())
}
