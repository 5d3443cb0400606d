/*!
What identifies a package in the store. As in Qt's server, by default its id and architecture:
an upload replaces the package of the same id and architecture. With `--keep-versions`, as
the Deployment Server documents it, by (id, version, architecture, tag set): another version
or other tags are added beside the others, and only the same group replaces.

The group is the version (`0.0.0` without one) and, when the package has tags, `@` and its
simplified tags, sorted and comma-separated (`2.0@neptune,qt:6.8`). Its file in `.packages/`
is `<id>_<arch>@<group>.ampkg`, with bytes other than letters, digits and `._~+:,@-`
percent-encoded; a name that would exceed 255 bytes ends in a hash of the group instead. A file
with Qt's name (`<id>_<arch>.ampkg`, from before the option was on) is loaded as its group and
renamed when that group is replaced.
*/

use super::index::file_name;
use crate::package::PackageInfo;
use crate::package::digest::to_hex;
use crate::package::version::NO_VERSION;

/// Longest file name most file systems take.
const MAX_NAME: usize = 255;

/// The group of `info`: empty in Qt's identity, else version and tags.
pub fn group(info: &PackageInfo, keep_versions: bool) -> String {
    if !keep_versions {
        return String::new();
    }
    let version = info.version.as_deref().unwrap_or(NO_VERSION);
    let mut tags: Vec<String> = info.tags.iter().map(|t| t.to_string()).collect();
    tags.sort();
    if tags.is_empty() {
        version.to_string()
    } else {
        format!("{version}@{}", tags.join(","))
    }
}

/// The file name of a package of `id`, `arch` and `group` in `.packages/`.
pub fn stored_name(id: &str, arch: &str, group: &str) -> String {
    if group.is_empty() {
        return file_name(id, arch);
    }
    let mut encoded = String::with_capacity(group.len());
    for byte in group.bytes() {
        if byte.is_ascii_alphanumeric() || b"._~+:,@-".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    let name = format!("{id}_{arch}@{encoded}.ampkg");
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = to_hex(&openssl::sha::sha1(group.as_bytes()));
    format!("{id}_{arch}@{}.ampkg", &hash[..16])
}

/// Whether `name` is an acceptable file name for a package of `id`, `arch` and `group`.
pub fn acceptable_name(name: &str, id: &str, arch: &str, group: &str) -> bool {
    name == stored_name(id, arch, group) || name == file_name(id, arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_the_group() {
        assert_eq!(stored_name("app", "all", ""), "app_all.ampkg");
        assert_eq!(
            stored_name("app", "linux_x86_64", "2.0@neptune,qt:6.8"),
            "app_linux_x86_64@2.0@neptune,qt:6.8.ampkg"
        );
        assert_eq!(
            stored_name("app", "all", "1 beta/2"),
            "app_all@1%20beta%2F2.ampkg"
        );
        let long = stored_name("app", "all", &"9".repeat(300));
        assert!(long.len() < 64 && long.starts_with("app_all@"), "{long}");
    }
}
