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

/// The bytes of an even number of hex characters.
pub fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{YamlLimits, parse_documents};

    /// Known answers computed by hand from FORMAT.md ("Digest"), independent of our writer:
    /// our reader and writer agreeing with each other proves nothing.
    #[test]
    fn digests_files_directories_and_extra_signed_as_format_md_says() {
        let mut digest = PackageDigest::default();
        digest.add_file_data(b"hel");
        digest.add_file_data(b"lo");
        digest.finish_file(5, "a.txt");
        digest.add_directory("d");
        // sha256(b"hello" b"F/5/a.txt" b"D/0/d")
        assert_eq!(
            to_hex(&digest.finish()),
            "d5baa5097fb4cb764abc571996c6d68b5727aa60590c069d3449dbae76d2f28f"
        );
        let extra = parse_documents("a: 1\n", &YamlLimits::default()).unwrap();
        let mut digest = PackageDigest::default();
        digest.add_extra_signed(&extra[0]);
        digest.add_file_data(b"hello");
        digest.finish_file(5, "a.txt");
        // sha256(QVariantMap{a: int 1} b"hello" b"F/5/a.txt")
        assert_eq!(
            to_hex(&digest.finish()),
            "bed6511a7d3788f51822caed9a437b71524e2014a4af228818d7a59b7ae18b45"
        );
        assert_eq!(
            to_hex(&PackageDigest::default().finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
