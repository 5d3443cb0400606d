/*!
The package digest: one SHA-256 over `extraSigned`, then every payload entry in archive order.

Files contribute their bytes followed by `F/<size>/<name>`, directories `D/0/<name>`. Both the
reader (verifying) and the writer (creating) feed the same `PackageDigest`, so the two can
never disagree on the rules.
*/

use crate::yaml::Node;
use openssl::sha::Sha256;

/// The running digest of a package.
pub struct PackageDigest {
    hasher: Sha256,
}

impl Default for PackageDigest {
    fn default() -> Self {
        PackageDigest {
            hasher: Sha256::new(),
        }
    }
}

impl PackageDigest {
    /// Cover the header's `extraSigned` value (QDataStream-encoded).
    pub fn add_extra_signed(&mut self, extra_signed: &Node) {
        let mut bytes = Vec::new();
        super::qdatastream::write_variant(&mut bytes, extra_signed);
        self.hasher.update(&bytes);
    }

    /// Feed a chunk of a payload file's content.
    pub fn add_file_data(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Close a payload file after its content.
    pub fn finish_file(&mut self, size: u64, name: &str) {
        self.hasher.update(format!("F/{size}/{name}").as_bytes());
    }

    /// Cover a directory entry (`name` without trailing slash).
    pub fn add_directory(&mut self, name: &str) {
        self.hasher.update(format!("D/0/{name}").as_bytes());
    }

    /// The 32 raw digest bytes.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finish()
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse 64 hex characters into a digest.
pub fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
