/*!
What an archive entry of a package may be called and be: names are UTF-8, taken in Unicode NFC
(as Qt's installer compares them), never absolute, never with `..` or reserved `--` names;
entry types are named in words for the messages that refuse them.
*/

use super::PackageError;
use unicode_normalization::UnicodeNormalization;

/// The entry's name as UTF-8 in Unicode NFC.
pub(super) fn entry_name(raw: &[u8]) -> Result<String, PackageError> {
    let name = std::str::from_utf8(raw).map_err(|_| {
        PackageError::invalid(format!(
            "entry name '{}' is not valid UTF-8",
            String::from_utf8_lossy(raw)
        ))
    })?;
    Ok(match unicode_normalization::is_nfc_quick(name.chars()) {
        unicode_normalization::IsNormalized::Yes => name.to_string(),
        _ => name.nfc().collect(),
    })
}

/// Refuse names that could land outside the extraction root.
pub(super) fn check_path(name: &str) -> Result<(), PackageError> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.starts_with('/') {
        Some("is an absolute path")
    } else if name.split('/').any(|c| c == "..") {
        Some("points outside the package ('..')")
    } else if name.split('/').any(|c| c.is_empty() || c == ".") {
        Some("is not a normalized path")
    } else if name.contains('\0') {
        Some("contains a NUL character")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(PackageError::invalid(format!(
            "entry name '{name}' {problem}"
        ))),
        None => Ok(()),
    }
}

pub(super) fn entry_type_name(kind: u8) -> &'static str {
    match kind {
        b'2' => "symbolic link",
        b'1' => "hard link",
        b'3' => "character device",
        b'4' => "block device",
        b'6' => "fifo",
        b'S' => "sparse file",
        _ => "special entry",
    }
}
